//! Registry faults injected by the in-process OCI registry, seen through
//! pullgate: every one ends in a refusal (fail closed), never in a pull of
//! something unverified, and never in a hang past the client's deadline.

use std::time::Duration;

use pullgate_proto::runtime::v1::image_service_client::ImageServiceClient;
use pullgate_proto::runtime::v1::{ImageSpec, PullImageRequest};
use pullgate_tests::cri;
use pullgate_tests::image::PushedImage;
use pullgate_tests::oci_registry::RequestKind;
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::testbed::OciTestbed;
use tonic::Code;

struct Bed {
    testbed: OciTestbed,
    pullgate: Pullgate,
    image: PushedImage,
    /// Digest of the signature envelope blob.
    envelope: String,
}

/// A signed image in the in-process registry and pullgate in front of containerd.
async fn bed() -> anyhow::Result<Bed> {
    let testbed = OciTestbed::start().await?;
    let image = testbed.push_unsigned("app/faulty", "v1").await?;
    let signature = testbed.sign("app/faulty", &image, &testbed.pki).await?;
    let pullgate = testbed
        .start_pullgate_with(&testbed.pullgate_config())
        .await?;
    Ok(Bed {
        envelope: signature.envelope.digest,
        testbed,
        pullgate,
        image,
    })
}

impl Bed {
    fn tag_ref(&self) -> String {
        self.testbed.image_ref("app/faulty", "v1")
    }

    async fn pull_with_timeout(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<Result<String, tonic::Status>> {
        let ch = cri::connect(self.pullgate.socket()).await?;
        let mut req = tonic::Request::new(PullImageRequest {
            image: Some(ImageSpec {
                image: self.tag_ref(),
                ..Default::default()
            }),
            auth: None,
        });
        req.set_timeout(timeout);
        Ok(ImageServiceClient::new(ch)
            .pull_image(req)
            .await
            .map(|r| r.into_inner().image_ref))
    }

    async fn is_in_containerd(&self) -> anyhow::Result<bool> {
        let direct = cri::connect(self.testbed.containerd.socket()).await?;
        let pinned = self.image.pinned_ref(&self.testbed.host(), "app/faulty");
        Ok(cri::image_status(&direct, &pinned).await?.is_some())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn referrers_server_error_fails_closed_then_recovers() {
    let bed = bed().await.unwrap();
    bed.testbed
        .registry
        .fail_next(RequestKind::Referrers, 1, 500);
    let status = bed
        .pull_with_timeout(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("failing closed"),
        "{}",
        status.message()
    );
    assert!(!bed.is_in_containerd().await.unwrap());
    // The failure was not cached: the next pull verifies and succeeds.
    bed.pull_with_timeout(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap_or_else(|s| panic!("{s:?}\n{}", bed.pullgate.log_tail()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn hanging_registry_is_cut_off_at_the_clients_deadline() {
    let bed = bed().await.unwrap();
    bed.testbed.registry.set_hang(RequestKind::Referrers, true);
    let status = bed
        .pull_with_timeout(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(!bed.is_in_containerd().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn registry_down_fails_closed() {
    let bed = bed().await.unwrap();
    bed.testbed.registry.set_down(true);
    let status = bed
        .pull_with_timeout(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&bed.tag_ref()),
        "{}",
        status.message()
    );
    assert!(!bed.is_in_containerd().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn oversized_or_corrupt_signature_blob_is_a_denial_not_an_outage() {
    let bed = bed().await.unwrap();
    // 8 MiB where a signature envelope should be: over the 1 MiB cap, refused before buffering.
    bed.testbed
        .registry
        .serve_oversized(&bed.envelope, 8 << 20, true);
    let status = bed
        .pull_with_timeout(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("cannot fetch it"),
        "{}",
        status.message()
    );
    assert!(!bed.is_in_containerd().await.unwrap());
}
