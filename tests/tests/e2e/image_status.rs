//! `ImageStatus` enforcement: an image on the node without an allow verdict
//! is reported absent through pullgate, so the kubelet pulls it (and
//! pullgate verifies it).

use pullgate_tests::cri;
use pullgate_tests::testbed::OciTestbed;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_image_pulled_around_the_proxy_is_absent_until_verified() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_unsigned("app/sideloaded", "v1").await.unwrap();
    bed.push_signed("app/signed-sideloaded", "v1")
        .await
        .unwrap();
    let mut config = bed.pullgate_config();
    config.extra = String::new();
    let toml =
        config
            .to_toml()
            .replacen("[server]\n", "[server]\nenforce_image_status = true\n", 1);
    let pullgate = pullgate_tests::pullgate::Pullgate::start(&toml, bed.dir())
        .await
        .unwrap();
    let proxied = cri::connect(pullgate.socket()).await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();

    // Pulled straight from containerd's socket: pullgate never saw them.
    let unsigned = bed.image_ref("app/sideloaded", "v1");
    let signed = bed.image_ref("app/signed-sideloaded", "v1");
    cri::pull(&direct, &unsigned).await.unwrap();
    cri::pull(&direct, &signed).await.unwrap();
    assert!(cri::image_status(&direct, &unsigned)
        .await
        .unwrap()
        .is_some());

    // Through pullgate, both look absent: the kubelet would pull them.
    assert!(
        cri::image_status(&proxied, &unsigned)
            .await
            .unwrap()
            .is_none(),
        "unverified image visible through pullgate\n{}",
        pullgate.log_tail()
    );
    assert!(cri::image_status(&proxied, &signed)
        .await
        .unwrap()
        .is_none());
    // An image containerd does not have is answered as containerd answers.
    let unknown = bed.image_ref("app/never-pulled", "v1");
    assert!(cri::image_status(&proxied, &unknown)
        .await
        .unwrap()
        .is_none());

    // The kubelet's pull goes through pullgate: the unsigned one is denied
    // and stays hidden; the signed one is verified and shows up.
    let status = cri::pull(&proxied, &unsigned).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(cri::image_status(&proxied, &unsigned)
        .await
        .unwrap()
        .is_none());
    cri::pull(&proxied, &signed)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    let shown = cri::image_status(&proxied, &signed).await.unwrap();
    let direct_view = cri::image_status(&direct, &signed).await.unwrap();
    assert_eq!(
        shown, direct_view,
        "an allowed image's status is containerd's, untouched"
    );
    assert!(shown.is_some());
}
