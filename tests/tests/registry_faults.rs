//! Registry faults injected by the in-process OCI registry, seen through
//! pullgate: every one ends in a refusal (fail closed), never in a pull of
//! something unverified, and never in a hang past the client's deadline.

use std::time::Duration;

use pullgate_proto::runtime::v1::image_service_client::ImageServiceClient;
use pullgate_proto::runtime::v1::{ImageSpec, PullImageRequest};
use pullgate_tests::containerd::Containerd;
use pullgate_tests::cri;
use pullgate_tests::image::{push_random_image, PushedImage};
use pullgate_tests::oci_registry::{OciRegistry, RequestKind};
use pullgate_tests::pullgate::{Pullgate, PullgateConfig};
use pullgate_tests::signer::{attach_signature, trust_policy_json, ReferrersMode, TestPki};
use tonic::Code;

struct Bed {
    registry: OciRegistry,
    containerd: Containerd,
    pullgate: Pullgate,
    image: PushedImage,
    _dir: tempfile::TempDir,
}

/// A signed image in the in-process registry and pullgate in front of containerd.
async fn bed() -> Bed {
    let registry = OciRegistry::start().await;
    let host = registry.host();
    let containerd = Containerd::start(&[&host]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("faults").unwrap();
    pki.write_trust_store(&dir.path().join("truststore"), "e2e")
        .unwrap();
    let policy = trust_policy_json(&["*"], "e2e", &[&pki.trusted_identity()]);
    std::fs::write(
        dir.path().join("trustpolicy.json"),
        serde_json::to_vec(&policy).unwrap(),
    )
    .unwrap();
    let image = push_random_image(&host, "app/faulty", "v1").await.unwrap();
    let envelope = pki.sign_jws(&image.descriptor()).unwrap();
    attach_signature(&host, "app/faulty", &image, &envelope, ReferrersMode::Api)
        .await
        .unwrap();
    let mut config = PullgateConfig::in_dir(dir.path(), containerd.socket());
    config.plain_http = vec![host];
    let pullgate = Pullgate::start_with(&config, dir.path()).await.unwrap();
    Bed {
        registry,
        containerd,
        pullgate,
        image,
        _dir: dir,
    }
}

impl Bed {
    fn tag_ref(&self) -> String {
        format!("{}/app/faulty:v1", self.registry.host())
    }

    async fn pull_with_timeout(&self, timeout: Duration) -> Result<String, tonic::Status> {
        let ch = cri::connect(self.pullgate.socket()).await.unwrap();
        let mut req = tonic::Request::new(PullImageRequest {
            image: Some(ImageSpec {
                image: self.tag_ref(),
                ..Default::default()
            }),
            auth: None,
        });
        req.set_timeout(timeout);
        ImageServiceClient::new(ch)
            .pull_image(req)
            .await
            .map(|r| r.into_inner().image_ref)
    }

    async fn assert_absent_from_containerd(&self) {
        let direct = cri::connect(self.containerd.socket()).await.unwrap();
        let pinned = self.image.pinned_ref(&self.registry.host(), "app/faulty");
        assert!(cri::image_status(&direct, &pinned).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn referrers_server_error_fails_closed_then_recovers() {
    let bed = bed().await;
    bed.registry.fail_next(RequestKind::Referrers, 1, 500);
    let status = bed
        .pull_with_timeout(Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("failing closed"),
        "{}",
        status.message()
    );
    bed.assert_absent_from_containerd().await;
    // The failure was not cached: the next pull verifies and succeeds.
    bed.pull_with_timeout(Duration::from_secs(30))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", bed.pullgate.log_tail()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn hanging_registry_is_cut_off_at_the_clients_deadline() {
    let bed = bed().await;
    bed.registry.set_hang(RequestKind::Referrers, true);
    let status = bed
        .pull_with_timeout(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    bed.assert_absent_from_containerd().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn registry_down_fails_closed() {
    let bed = bed().await;
    bed.registry.set_down(true);
    let status = bed
        .pull_with_timeout(Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&bed.tag_ref()),
        "{}",
        status.message()
    );
    bed.assert_absent_from_containerd().await;
}
