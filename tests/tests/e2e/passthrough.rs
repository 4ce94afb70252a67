//! Every RPC pullgate does not inspect reaches containerd as opaque frames.

use pullgate_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use pullgate_proto::runtime::v1::ListPodSandboxRequest;
use pullgate_tests::cri;
use pullgate_tests::testbed::DockerTestbed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn runtime_and_image_service_calls_pass_through() {
    let bed = DockerTestbed::start().await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let via = cri::connect(pullgate.socket()).await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();

    // RuntimeService.
    let v_via = cri::version(&via).await.unwrap();
    let v_direct = cri::version(&direct).await.unwrap();
    assert_eq!(v_via, v_direct);
    let sandboxes = RuntimeServiceClient::new(via.clone())
        .list_pod_sandbox(ListPodSandboxRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(sandboxes.items.is_empty());

    // ImageService calls other than PullImage.
    let image = bed.push_signed("app/pass", "v1").await.unwrap();
    let tag_ref = bed.image_ref("app/pass", "v1");
    cri::pull(&via, &tag_ref).await.unwrap();
    let listed = cri::list_images(&via).await.unwrap();
    assert!(
        listed.iter().any(|i| i.repo_tags.contains(&tag_ref)),
        "{listed:?}"
    );
    cri::remove_image(&via, &tag_ref).await.unwrap();
    assert!(cri::image_status(&direct, &tag_ref)
        .await
        .unwrap()
        .is_none());
    let _ = image;

    // Errors from containerd come back as containerd sent them.
    let missing = cri::image_status(&via, "127.0.0.1:1/none/such:v1")
        .await
        .unwrap();
    assert!(missing.is_none());
}
