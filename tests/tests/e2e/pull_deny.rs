//! Pulls pullgate refuses, and what containerd holds after (nothing).

use pullgate_testkit::TestPki;
use pullgate_tests::cri;
use pullgate_tests::image::{push_random_image, tag_manifest};
use pullgate_tests::signer::{attach_signature, ReferrersMode};
use pullgate_tests::testbed::DockerTestbed;
use tonic::Code;

/// Asserts the status is a denial naming image and digest, and returns its message.
fn assert_denied(status: &tonic::Status, image: &str, digest: &str) -> String {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message().to_owned();
    assert!(msg.starts_with(&format!("image {image}")), "{msg}");
    assert!(
        msg.contains(digest),
        "message does not name the digest: {msg}"
    );
    assert!(msg.contains("denied by policy"), "{msg}");
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn unsigned_image_is_denied_and_never_reaches_containerd() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_unsigned("app/unsigned", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let tag_ref = bed.image_ref("app/unsigned", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let msg = assert_denied(&status, &tag_ref, &image.digest);
    assert!(msg.contains("no Notary Project signature"), "{msg}");

    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert!(cri::image_status(&direct, &tag_ref)
        .await
        .unwrap()
        .is_none());
    let pinned = image.pinned_ref(&bed.host(), "app/unsigned");
    assert!(cri::image_status(&direct, &pinned).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn signature_from_an_untrusted_ca_is_denied() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_unsigned("app/untrusted", "v1").await.unwrap();
    let stranger = TestPki::new("stranger").unwrap();
    bed.sign("app/untrusted", &image, &stranger).await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let tag_ref = bed.image_ref("app/untrusted", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let msg = assert_denied(&status, &tag_ref, &image.digest);
    assert!(msg.contains("authenticity check failed"), "{msg}");
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert!(cri::image_status(&direct, &tag_ref)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn signature_of_another_image_attached_to_this_one_is_denied() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let signed_elsewhere = push_random_image(&host, "app/other", "v1").await.unwrap();
    let victim = push_random_image(&host, "app/victim", "v1").await.unwrap();
    // A valid signature by the trusted signer, but of the other image's digest.
    let envelope = bed.pki.sign_jws(&signed_elsewhere.descriptor());
    attach_signature(
        &host,
        "app/victim",
        &victim,
        &envelope,
        ReferrersMode::TagSchema,
    )
    .await
    .unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let tag_ref = bed.image_ref("app/victim", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let msg = assert_denied(&status, &tag_ref, &victim.digest);
    assert!(
        msg.contains(&format!("it signs {}", signed_elsewhere.digest)),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn tag_moved_to_an_unsigned_image_after_a_verified_pull_is_denied() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    bed.push_signed("app/moving", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/moving", "v1");
    cri::pull(&ch, &tag_ref).await.unwrap();

    let intruder = push_random_image(&host, "app/moving", "intruder")
        .await
        .unwrap();
    tag_manifest(&host, "app/moving", "v1", &intruder)
        .await
        .unwrap();
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    assert_denied(&status, &tag_ref, &intruder.digest);
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let pinned = intruder.pinned_ref(&host, "app/moving");
    assert!(cri::image_status(&direct, &pinned).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn unreachable_registry_fails_closed() {
    let bed = DockerTestbed::start().await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    // Nothing listens on port 1; the `*` statement applies, so verification is required.
    let image = "127.0.0.1:1/app/gone:v1";
    let status = cri::pull(&ch, image).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains(image), "{}", status.message());
    assert!(
        status.message().contains("failing closed"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn image_outside_every_registry_scope_is_denied() {
    let bed = DockerTestbed::start().await.unwrap();
    bed.write_trust_policy(&[&bed.scope("app/only-this")], &[&bed.pki])
        .unwrap();
    let image = bed.push_signed("app/elsewhere", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/elsewhere", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("no trust policy statement"),
        "{}",
        status.message()
    );
    let _ = image;
}
