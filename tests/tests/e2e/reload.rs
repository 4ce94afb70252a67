//! Policy reload: a changed trust policy changes the next verdict, even for a
//! cached digest; an invalid one is refused and the old policy keeps serving.

use pullgate_testkit::TestPki;
use pullgate_tests::cri;
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::testbed::OciTestbed;
use tonic::Code;

fn sighup(pullgate: &Pullgate) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(pullgate.pid().to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -HUP failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_changed_policy_file_changes_the_verdict_of_a_cached_digest() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_signed("app/reloaded", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let image = bed.image_ref("app/reloaded", "v1");
    cri::pull(&ch, &image)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    // The verdict is cached now; the next pull under the same policy is a hit.
    cri::pull(&ch, &image).await.unwrap();

    // Trust someone else instead; the file watcher (default 2 s) sees the change.
    let stranger = TestPki::new("stranger").unwrap();
    bed.write_trust_policy(&["*"], &[&stranger]).unwrap();
    pullgate.wait_for_log("policy reloaded").await.unwrap();

    let status = cri::pull(&ch, &image).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("not a trusted identity"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_invalid_policy_is_refused_and_the_old_one_keeps_serving() {
    let bed = OciTestbed::start().await.unwrap();
    let first = bed.push_signed("app/steady", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/steady", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));

    std::fs::write(
        bed.trust_policy_path(),
        b"{\"version\": \"1.0\", \"trustPolicies\": [",
    )
    .unwrap();
    sighup(&pullgate).unwrap();
    pullgate.wait_for_log("new policy refused").await.unwrap();

    // A digest never seen before is verified under the old policy: allowed.
    let second = bed.push_signed("app/steady", "v2").await.unwrap();
    assert_ne!(first.digest, second.digest);
    cri::pull(&ch, &bed.image_ref("app/steady", "v2"))
        .await
        .unwrap_or_else(|s| panic!("old policy not serving: {s:?}\n{}", pullgate.log_tail()));
    // And an unsigned one is still denied.
    bed.push_unsigned("app/steady", "unsigned").await.unwrap();
    let status = cri::pull(&ch, &bed.image_ref("app/steady", "unsigned"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn removing_the_last_ca_of_a_store_distrusts_it_at_once() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_signed("app/distrusted", "v1").await.unwrap();
    // Only SIGHUP reloads here: the reload below is the signal's.
    let toml = bed.pullgate_config().to_toml().replacen(
        "[trust]\n",
        "[trust]\nreload_interval_ms = 0\n",
        1,
    );
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let image = bed.image_ref("app/distrusted", "v1");
    cri::pull(&ch, &image)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));

    // The operator removes the CA's certificate: the named store is empty now.
    let store = bed.dir().join("truststore/x509/ca/e2e");
    for entry in std::fs::read_dir(&store).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    sighup(&pullgate).unwrap();
    pullgate.wait_for_log("policy reloaded").await.unwrap();

    // The allow cached before is not served; the denial says why.
    let status = cri::pull(&ch, &image)
        .await
        .expect_err("the removed CA is still trusted");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("trust store ca:e2e is empty"),
        "{}",
        status.message()
    );
    let log = std::fs::read_to_string(pullgate.log_path()).unwrap();
    assert!(log.contains("named trust store is empty"), "{log}");
}
