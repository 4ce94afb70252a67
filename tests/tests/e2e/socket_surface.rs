//! The CRI socket serves an allowlist: nothing that is not the v1 CRI (or
//! gRPC health) reaches containerd, so no image gets onto the node around
//! the gate — not through containerd's own API (`ctr`), not through
//! `runtime.v1alpha2`, and not by giving an unsigned image a name that
//! spells an allowed digest.

use std::time::Duration;

use pullgate_proto::runtime::v1::{
    ImageSpec, ImageStatusRequest, ImageStatusResponse, PullImageRequest, PullImageResponse,
    VersionRequest, VersionResponse,
};
use pullgate_tests::cri;
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::testbed::DockerTestbed;
use tonic::Code;

/// How long `ctr images pull` may take before the test gives up on it.
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether containerd itself (its own socket) holds any trace of the image
/// under `image` or `pinned` in `k8s.io`: an image record or a CRI image.
async fn present_in_containerd(
    bed: &DockerTestbed,
    image: &str,
    pinned: &str,
) -> anyhow::Result<bool> {
    let direct = cri::connect(bed.containerd.socket()).await?;
    for name in [image, pinned] {
        if cri::containerd_image(&direct, name).await?.is_some()
            || cri::image_status(&direct, name).await?.is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn pull_request(image: &str) -> PullImageRequest {
    PullImageRequest {
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..ImageSpec::default()
        }),
        auth: None,
        sandbox_config: None,
    }
}

/// Lines of pullgate's log that warn about refusing `method`.
fn refusal_warnings(pullgate: &Pullgate, method: &str) -> anyhow::Result<usize> {
    Ok(std::fs::read_to_string(pullgate.log_path())?
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("refused") && l.contains(method))
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn ctr_through_the_cri_socket_cannot_pull() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_unsigned("app/ctr", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let reference = bed.image_ref("app/ctr", "v1");

    // containerd's own client, pointed at pullgate: content, leases and
    // images services, no CRI call at all.
    let out = tokio::time::timeout(
        CTR_TIMEOUT,
        tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(pullgate.socket())
            .args([
                "--namespace",
                cri::K8S_NAMESPACE,
                "images",
                "pull",
                "--plain-http",
            ])
            .arg(&reference)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ctr finished")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ctr pulled through pullgate:\n{stderr}"
    );
    assert!(
        stderr.contains("Unimplemented") || stderr.contains("not serve"),
        "{stderr}"
    );
    let pinned = image.pinned_ref(&bed.host(), "app/ctr");
    assert!(!present_in_containerd(&bed, &reference, &pinned)
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn v1alpha2_and_unknown_methods_are_unimplemented() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_unsigned("app/alpha", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let via = cri::connect(pullgate.socket()).await.unwrap();
    let reference = bed.image_ref("app/alpha", "v1");

    // v1alpha2's PullImage has v1's wire format; containerd 1.6 serves it.
    const ALPHA_PULL: &str = "/runtime.v1alpha2.ImageService/PullImage";
    for _ in 0..3 {
        let status = cri::call::<_, PullImageResponse>(&via, ALPHA_PULL, pull_request(&reference))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert!(status.message().contains(ALPHA_PULL), "{status:?}");
    }
    let pinned = image.pinned_ref(&bed.host(), "app/alpha");
    assert!(!present_in_containerd(&bed, &reference, &pinned)
        .await
        .unwrap());
    // Logged once, however often it is called.
    assert_eq!(
        refusal_warnings(&pullgate, ALPHA_PULL).unwrap(),
        1,
        "{}",
        pullgate.log_tail()
    );

    // A v1alpha2 read, containerd's own version service, an ImageService
    // method pullgate does not know: all refused.
    let v = VersionRequest {
        version: "v1alpha2".to_owned(),
    };
    for path in [
        "/runtime.v1alpha2.RuntimeService/Version",
        "/containerd.services.version.v1.Version/Version",
        "/runtime.v1.ImageService/PullImageV2",
    ] {
        let status = cri::call::<_, VersionResponse>(&via, path, v.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        assert!(status.message().contains(path), "{status:?}");
    }

    // What the kubelet and crictl use still works.
    cri::version(&via).await.unwrap();
    assert!(cri::list_images(&via).await.is_ok());
    let status: ImageStatusResponse = cri::call(
        &via,
        "/runtime.v1.ImageService/ImageStatus",
        ImageStatusRequest {
            image: pull_request(&reference).image,
            verbose: false,
        },
    )
    .await
    .unwrap();
    assert!(status.image.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_name_spelling_an_allowed_digest_does_not_show_an_unsigned_image() {
    let bed = DockerTestbed::start().await.unwrap();
    let signed = bed.push_signed("app/good", "v1").await.unwrap();
    let unsigned = bed.push_unsigned("app/evil", "v1").await.unwrap();
    let config = bed.pullgate_config().to_toml().replacen(
        "[server]\n",
        "[server]\nenforce_image_status = true\n",
        1,
    );
    let pullgate = Pullgate::start(&config, bed.dir()).await.unwrap();
    let via = cri::connect(pullgate.socket()).await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();

    // The signed image goes through pullgate: an allow verdict for its digest.
    let good = bed.image_ref("app/good", "v1");
    cri::pull(&via, &good)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(cri::image_status(&via, &good).await.unwrap().is_some());

    // The unsigned one is pulled around pullgate, then given a second name,
    // through containerd's images API, that spells the allowed digest.
    let evil = bed.image_ref("app/evil", "v1");
    cri::pull(&direct, &evil).await.unwrap();
    let disguise = format!("{}/app/evil@{}", bed.host(), signed.digest);
    cri::containerd_tag(&direct, &evil, &disguise)
        .await
        .unwrap();
    let record = cri::containerd_image(&direct, &disguise)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.target.unwrap().digest, unsigned.digest);
    // containerd's CRI picks the new name up from its event stream.
    let mut seen = None;
    for _ in 0..100 {
        seen = cri::image_status(&direct, &disguise).await.unwrap();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.expect("containerd's CRI reports the disguised name");
    assert!(seen.repo_digests.contains(&disguise), "{seen:?}");

    // Through pullgate it stays hidden, under either name.
    assert!(
        cri::image_status(&via, &disguise).await.unwrap().is_none(),
        "an unsigned image shown through a name that spells an allowed digest\n{}",
        pullgate.log_tail()
    );
    assert!(cri::image_status(&via, &evil).await.unwrap().is_none());
    // The signed image is still shown.
    assert!(cri::image_status(&via, &good).await.unwrap().is_some());
}
