//! A verdict is keyed by the trust policy statement and the repository that
//! decided it: the same digest in two repositories under different
//! statements gets each statement's own verdict, whichever repository is
//! pulled first, and under one statement each repository's signatures are
//! looked at in that repository.

use pullgate_testkit::TestPki;
use pullgate_tests::cri;
use pullgate_tests::image::PushedImage;
use pullgate_tests::testbed::{OciTestbed, STORE};
use serde_json::json;
use tonic::Code;

/// Two strict statements over one trust store: `prod` trusts the testbed's
/// signer, `dev` trusts only `stranger`.
fn write_two_statements(bed: &OciTestbed, stranger: &TestPki) -> anyhow::Result<()> {
    let doc = json!({
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "prod",
                "registryScopes": [format!("{}/prod/app", bed.host())],
                "signatureVerification": { "level": "strict" },
                "trustStores": [format!("ca:{STORE}")],
                "trustedIdentities": [bed.pki.trusted_identity()],
            },
            {
                "name": "dev",
                "registryScopes": [format!("{}/dev/app", bed.host())],
                "signatureVerification": { "level": "strict" },
                "trustStores": [format!("ca:{STORE}")],
                "trustedIdentities": [stranger.trusted_identity()],
            }
        ]
    });
    std::fs::write(bed.trust_policy_path(), serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}

/// Pushes one image as `prod/app:<tag>` and `dev/app:<tag>` (one digest),
/// signed by the testbed's signer in both repositories.
async fn push_in_both(bed: &OciTestbed, tag: &str) -> anyhow::Result<PushedImage> {
    let image = bed.push_unsigned("prod/app", tag).await?;
    bed.registry
        .put_manifest("dev/app", tag, &image.media_type, image.manifest.clone());
    assert_eq!(
        bed.registry.tag_digest("dev/app", tag).as_deref(),
        Some(image.digest.as_str())
    );
    bed.sign("prod/app", &image, &bed.pki).await?;
    bed.sign("dev/app", &image, &bed.pki).await?;
    Ok(image)
}

fn assert_untrusted(status: &tonic::Status, digest: &str) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    assert!(
        msg.contains(digest)
            && msg.contains("denied by policy \"dev\"")
            && msg.contains("not a trusted identity"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn one_digest_under_two_statements_gets_each_statements_verdict() {
    let bed = OciTestbed::start().await.unwrap();
    let stranger = TestPki::new("stranger").unwrap();
    write_two_statements(&bed, &stranger).unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // Allow first, then deny: prod's allow is not served to dev.
    let first = push_in_both(&bed, "v1").await.unwrap();
    cri::pull(&ch, &bed.image_ref("prod/app", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    let status = cri::pull(&ch, &bed.image_ref("dev/app", "v1"))
        .await
        .expect_err("dev was served prod's allow");
    assert_untrusted(&status, &first.digest);
    // And prod's allow still stands (a hit, not re-verified).
    bed.registry.reset_counts();
    cri::pull(&ch, &bed.image_ref("prod/app", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert_eq!(bed.registry.counts().referrers, 0);

    // Deny first, then allow: dev's denial does not block prod.
    let second = push_in_both(&bed, "v2").await.unwrap();
    assert_ne!(first.digest, second.digest);
    let status = cri::pull(&ch, &bed.image_ref("dev/app", "v2"))
        .await
        .unwrap_err();
    assert_untrusted(&status, &second.digest);
    cri::pull(&ch, &bed.image_ref("prod/app", "v2"))
        .await
        .unwrap_or_else(|s| {
            panic!(
                "prod was served dev's denial: {s:?}\n{}",
                pullgate.log_tail()
            )
        });
    // dev's denial still stands.
    let status = cri::pull(&ch, &bed.image_ref("dev/app", "v2"))
        .await
        .unwrap_err();
    assert_untrusted(&status, &second.digest);
}

/// Signatures are discovered per repository: a digest with no signature in
/// `app/a` is denied there, and that denial is not served to `app/b` of the
/// same statement, where the digest is signed (nor `app/b`'s allow to `app/a`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_denial_in_one_repository_is_not_served_to_another_of_the_same_statement() {
    let bed = OciTestbed::start().await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let image = bed.push_unsigned("app/a", "v1").await.unwrap();
    bed.registry
        .put_manifest("app/b", "v1", &image.media_type, image.manifest.clone());
    bed.sign("app/b", &image, &bed.pki).await.unwrap();

    let no_signature = |status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains(&image.digest)
                && status.message().contains("no Notary Project signature"),
            "{status:?}"
        );
    };
    no_signature(
        cri::pull(&ch, &bed.image_ref("app/a", "v1"))
            .await
            .expect_err("unsigned in app/a"),
    );
    cri::pull(&ch, &bed.image_ref("app/b", "v1"))
        .await
        .unwrap_or_else(|s| {
            panic!(
                "app/b was served app/a's denial: {s:?}\n{}",
                pullgate.log_tail()
            )
        });
    no_signature(
        cri::pull(&ch, &bed.image_ref("app/a", "v1"))
            .await
            .expect_err("app/a was served app/b's allow"),
    );
}
