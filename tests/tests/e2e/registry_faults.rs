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
    let pullgate = testbed.start_pullgate().await?;
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
            sandbox_config: None,
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

/// A hot pull by tag while the registry is down: the verdict for the digest
/// the tag pointed at is cached, but pullgate keeps no tag → digest mapping,
/// so the tag cannot be resolved and the pull fails closed; by digest, the
/// cached verdict allows it without the registry and containerd is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_hot_pull_by_tag_fails_closed_while_the_registry_is_down() {
    use pullgate_tests::pullgate::audit_records;
    let bed = OciTestbed::start().await.unwrap();
    let image = bed.push_signed("app/hot", "v1").await.unwrap();
    let audit = bed.dir().join("audit.log");
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "[audit]\npath = {}\n",
        toml::Value::String(audit.display().to_string())
    );
    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let tag = bed.image_ref("app/hot", "v1");
    cri::pull(&ch, &tag).await.unwrap();
    bed.registry.set_down(true);

    let status = cri::pull(&ch, &tag).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("while resolving tag v1")
            && status.message().ends_with("failing closed"),
        "{}",
        status.message()
    );

    let pinned = format!("{}/app/hot@{}", bed.host(), image.digest);
    let by_digest = cri::pull(&ch, &pinned).await;
    let records = audit_records(&audit, 3).await;
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[1]["verdict"], "error", "{records:?}");
    assert_eq!(records[2]["verdict"], "allow", "{records:?}");
    assert_eq!(records[2]["cached"], true, "{records:?}");
    // What follows is containerd's: 1.6 asks the registry for the manifest
    // even when it holds the content, and fails the same way.
    if let Err(status) = by_digest {
        assert!(
            !status.message().contains("signature verification"),
            "{status:?}"
        );
    }
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

/// pullgate in front of `testbed`'s containerd, with requirements scope
/// `lenient` over `<host>/app/lenient` set to `fail_open`.
async fn fail_open_pullgate(testbed: &OciTestbed) -> anyhow::Result<Pullgate> {
    let path = testbed.dir().join("requirements.toml");
    std::fs::write(
        &path,
        format!(
            "[[scope]]\nname = \"lenient\"\nregistry_scopes = [\"{}/app/lenient\"]\non_registry_error = \"fail_open\"\n",
            testbed.host()
        ),
    )?;
    let quoted = toml::Value::String(path.display().to_string()).to_string();
    let toml = testbed.pullgate_config().to_toml().replacen(
        "[trust]\n",
        &format!("[trust]\nrequirements = {quoted}\n"),
        1,
    );
    Pullgate::start(&toml, testbed.dir()).await
}

async fn in_containerd(testbed: &OciTestbed, image: &PushedImage) -> anyhow::Result<bool> {
    let direct = cri::connect(testbed.containerd.socket()).await?;
    let pinned = image.pinned_ref(&testbed.host(), "app/lenient");
    Ok(cri::image_status(&direct, &pinned).await?.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn fail_open_denies_a_listed_signature_the_registry_will_not_serve() {
    let testbed = OciTestbed::start().await.unwrap();
    let pullgate = fail_open_pullgate(&testbed).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // The publisher lists a signature and deletes its envelope: 404.
    let gone = testbed.push_unsigned("app/lenient", "gone").await.unwrap();
    let signature = testbed
        .sign("app/lenient", &gone, &testbed.pki)
        .await
        .unwrap();
    testbed.registry.remove_blob(&signature.envelope.digest);
    let status = cri::pull(&ch, &testbed.image_ref("app/lenient", "gone"))
        .await
        .expect_err("an image whose only signature answers 404 was allowed under fail_open");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("cannot fetch it") && status.message().contains(&gone.digest),
        "{}",
        status.message()
    );
    assert!(!in_containerd(&testbed, &gone).await.unwrap());

    // Or answers 403 for it: the same.
    let forbidden = testbed
        .push_unsigned("app/lenient", "forbidden")
        .await
        .unwrap();
    testbed
        .sign("app/lenient", &forbidden, &testbed.pki)
        .await
        .unwrap();
    // Both `hosts.toml` endpoints of the testbed (the host entry, then
    // `server`) lead to this registry, and a 403 moves on to the next one.
    testbed.registry.fail_next(RequestKind::BlobGet, 2, 403);
    let status = cri::pull(&ch, &testbed.image_ref("app/lenient", "forbidden"))
        .await
        .expect_err("an image whose only signature answers 403 was allowed under fail_open");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(!in_containerd(&testbed, &forbidden).await.unwrap());

    // A real outage still fails open (503 while discovering).
    let outage = testbed
        .push_unsigned("app/lenient", "outage")
        .await
        .unwrap();
    testbed.registry.fail_next(RequestKind::Referrers, 1, 503);
    cri::pull(&ch, &testbed.image_ref("app/lenient", "outage"))
        .await
        .unwrap_or_else(|s| panic!("a 503 did not fail open: {s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&testbed, &outage).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn fail_open_never_forwards_a_tag_that_does_not_resolve() {
    let testbed = OciTestbed::start().await.unwrap();
    let pullgate = fail_open_pullgate(&testbed).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // A tag that does not exist: pullgate's refusal, not containerd's.
    let status = cri::pull(&ch, &testbed.image_ref("app/lenient", "missing"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("failing closed")
            && status.message().contains("has no such content"),
        "{}",
        status.message()
    );

    // A tag that answers 404 to pullgate and then serves an unsigned image
    // to containerd: never forwarded unpinned.
    let racy = testbed.push_unsigned("app/lenient", "racy").await.unwrap();
    // Both endpoints of its hosts.toml (the host entry, then `server`) answer 404.
    testbed.registry.fail_next(RequestKind::ResolveHead, 2, 404);
    let status = cri::pull(&ch, &testbed.image_ref("app/lenient", "racy"))
        .await
        .expect_err("a tag that answered 404 was forwarded unpinned under fail_open");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!in_containerd(&testbed, &racy).await.unwrap());
    let direct = cri::connect(testbed.containerd.socket()).await.unwrap();
    assert!(
        cri::image_status(&direct, &testbed.image_ref("app/lenient", "racy"))
            .await
            .unwrap()
            .is_none(),
        "containerd holds the unsigned image\n{}",
        pullgate.log_tail()
    );
}
