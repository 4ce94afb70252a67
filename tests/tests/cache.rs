//! The verdict cache seen from outside: one verification for a rollout.

use pullgate_tests::cri;
use pullgate_tests::testbed::OciTestbed;

/// A DaemonSet rolling out on one node: 100 pulls of one new image at once
/// must cause exactly one signature discovery at the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs containerd"]
async fn hundred_concurrent_pulls_of_a_new_image_cause_one_referrers_request() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_signed("app/rollout", "v1").await.unwrap();
    let pullgate = bed
        .start_pullgate_with(&bed.pullgate_config())
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    bed.registry.reset_counts();

    let image = bed.image_ref("app/rollout", "v1");
    let mut pulls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let ch = ch.clone();
        let image = image.clone();
        pulls.spawn(async move { cri::pull(&ch, &image).await });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(r) = pulls.join_next().await {
        let id = r
            .unwrap()
            .unwrap_or_else(|s| panic!("pull failed: {s:?}\n{}", pullgate.log_tail()));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 1, "every pull got the same image: {ids:?}");
    let counts = bed.registry.counts();
    assert_eq!(
        counts.referrers,
        1,
        "one verification for 100 pulls: {counts:?}\n{}",
        pullgate.log_tail()
    );
}
