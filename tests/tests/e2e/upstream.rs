//! containerd's answers come back through pullgate as containerd sent them
//! — errors included, code and message byte for byte, in gRPC's
//! Trailers-Only form — and pullgate keeps working when containerd restarts.

use anyhow::Context as _;
use prost::Message as _;
use pullgate_proto::runtime::v1::{ImageSpec, PullImageRequest};
use pullgate_testkit::notation::trust_policy_json;
use pullgate_tests::testbed::DockerTestbed;
use pullgate_tests::{cri, raw_h2};
use tonic::Code;

/// CRI v1 `ContainerStatusRequest` (not in pullgate's proto: pullgate never decodes it).
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerStatusRequest {
    #[prost(string, tag = "1")]
    container_id: String,
    #[prost(bool, tag = "2")]
    verbose: bool,
}

/// Any response, ignored.
#[derive(Clone, PartialEq, prost::Message)]
struct Ignored {}

const CONTAINER_STATUS: &str = "/runtime.v1.RuntimeService/ContainerStatus";
const PULL_IMAGE: &str = "/runtime.v1.ImageService/PullImage";

/// A trust policy: level `skip` for `skipped` (pullgate forwards its pulls
/// unchanged), the testbed's strict statement for everything else.
fn write_policy_with_skip(bed: &DockerTestbed, skipped: &str) -> anyhow::Result<()> {
    let mut doc = trust_policy_json(&["*"], "e2e", &[&bed.pki.trusted_identity()]);
    let statements = doc["trustPolicies"]
        .as_array_mut()
        .context("trustPolicies is an array")?;
    statements.push(serde_json::json!({
        "name": "skipped",
        "registryScopes": [skipped],
        "signatureVerification": { "level": "skip" },
    }));
    std::fs::write(bed.trust_policy_path(), serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn containerd_errors_pass_through_intact() {
    let bed = DockerTestbed::start().await.unwrap();
    write_policy_with_skip(&bed, &bed.scope("app/skipped")).unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let via = cri::connect(pullgate.socket()).await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();

    // A pull the gate lets through (level skip) and containerd fails: the
    // tag is not in the registry.
    let missing = bed.image_ref("app/skipped", "missing");
    let from_containerd = cri::pull(&direct, &missing).await.unwrap_err();
    let through_pullgate = cri::pull(&via, &missing).await.unwrap_err();
    assert_ne!(from_containerd.code(), Code::Ok);
    assert_eq!(
        (through_pullgate.code(), through_pullgate.message()),
        (from_containerd.code(), from_containerd.message()),
        "containerd's error changed on the way\n{}",
        pullgate.log_tail()
    );
    // On the wire: one HEADERS frame that ends the stream, as containerd
    // sent it (gRPC's Trailers-Only), not HEADERS + DATA without trailers.
    let request = PullImageRequest {
        image: Some(ImageSpec {
            image: missing.clone(),
            ..ImageSpec::default()
        }),
        auth: None,
        sandbox_config: None,
    }
    .encode_to_vec();
    let direct_raw = raw_h2::unary(bed.containerd.socket(), b"localhost", PULL_IMAGE, &request)
        .await
        .unwrap();
    assert!(direct_raw.trailers_only(), "containerd: {direct_raw:?}");
    let raw = raw_h2::unary(pullgate.socket(), b"localhost", PULL_IMAGE, &request)
        .await
        .unwrap();
    assert!(raw.trailers_only(), "pullgate: {raw:?}");

    // The same for an RPC forwarded opaquely.
    let unknown = ContainerStatusRequest {
        container_id: "no-such-container".to_owned(),
        verbose: false,
    };
    let from_containerd = cri::call::<_, Ignored>(&direct, CONTAINER_STATUS, unknown.clone())
        .await
        .unwrap_err();
    let through_pullgate = cri::call::<_, Ignored>(&via, CONTAINER_STATUS, unknown.clone())
        .await
        .unwrap_err();
    assert_eq!(
        from_containerd.code(),
        Code::NotFound,
        "{from_containerd:?}"
    );
    assert_eq!(
        (through_pullgate.code(), through_pullgate.message()),
        (from_containerd.code(), from_containerd.message())
    );
    let raw = raw_h2::unary(
        pullgate.socket(),
        b"localhost",
        CONTAINER_STATUS,
        &unknown.encode_to_vec(),
    )
    .await
    .unwrap();
    assert!(raw.trailers_only(), "pullgate: {raw:?}");

    // pullgate's own denial still reads as pullgate's.
    let image = bed.push_unsigned("app/unsigned", "v1").await.unwrap();
    let unsigned = bed.image_ref("app/unsigned", "v1");
    let denied = cri::pull(&via, &unsigned).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().starts_with(&format!(
            "image {unsigned} ({}) denied by policy",
            image.digest
        )),
        "{denied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn pulls_work_again_after_containerd_restarts() {
    let mut bed = DockerTestbed::start().await.unwrap();
    bed.push_signed("app/before", "v1").await.unwrap();
    bed.push_signed("app/after", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let via = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&via, &bed.image_ref("app/before", "v1"))
        .await
        .unwrap();

    bed.containerd.restart().await.unwrap();

    // The first pull after the restart succeeds: no pullgate restart, no retry.
    let after = bed.image_ref("app/after", "v1");
    cri::pull(&via, &after)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    // The tag pullgate creates through the images API is there at once.
    assert!(cri::containerd_image(&direct, &after)
        .await
        .unwrap()
        .is_some());
    // containerd's CRI plugin learns of that tag from its image events,
    // asynchronously; a freshly restarted containerd may take a moment.
    let mut shown = false;
    for _ in 0..50 {
        if cri::image_status(&direct, &after).await.unwrap().is_some() {
            shown = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(shown, "ImageStatus({after}) never found the pulled image");
}
