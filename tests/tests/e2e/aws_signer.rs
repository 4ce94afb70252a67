//! AWS Signer signatures through the real binary and a real containerd:
//! envelopes with AWS Signer's header set (from a test PKI shaped like AWS
//! Signer's, `signer::AwsSignerPki`), attached through the referrers API of
//! the in-process OCI registry, revocation asked of `aws_api::AwsApi` (a
//! loopback stand-in that checks the SigV4 signature of every request).
//!
//! No real AWS Signer signature is used: none is public.

use pullgate_testkit::AwsSignerPki;
use pullgate_tests::aws_api::{self, Answer, AwsApi};
use pullgate_tests::cri;
use pullgate_tests::image::PushedImage;
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::signer::{attach_signature, ReferrersMode};
use pullgate_tests::testbed::OciTestbed;
use serde_json::json;
use tonic::Code;

const STORE: &str = "aws-signer-ts";
const PROFILE: &str = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release";
const OTHER_PROFILE: &str = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/nightly";
const SIGNED_AT: &str = "2025-06-01T00:00:00Z";

fn job(n: u32) -> String {
    format!("arn:aws:signer:us-west-2:123456789012:/signing-jobs/00000000-0000-4000-8000-{n:012}")
}

/// The testbed with the AWS-shaped root in `signingAuthority:aws-signer-ts`
/// and a trust policy over `*` at `level` trusting `identities`.
async fn testbed(level: &str, identities: &[&str]) -> anyhow::Result<(OciTestbed, AwsSignerPki)> {
    let bed = OciTestbed::start().await?;
    let pki = AwsSignerPki::new()?;
    pki.write_trust_store(&bed.dir().join("truststore"), STORE)?;
    let doc = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "aws-signer",
            "registryScopes": ["*"],
            "signatureVerification": { "level": level },
            "trustStores": [format!("signingAuthority:{STORE}")],
            "trustedIdentities": identities,
        }]
    });
    std::fs::write(bed.trust_policy_path(), serde_json::to_vec_pretty(&doc)?)?;
    Ok((bed, pki))
}

/// Pushes a unique image signed by `profile_version` in job `job`.
async fn push_signed(
    bed: &OciTestbed,
    pki: &AwsSignerPki,
    repo: &str,
    profile_version: &str,
    job: &str,
) -> anyhow::Result<PushedImage> {
    let image = bed.push_unsigned(repo, "v1").await?;
    let envelope = pki.sign_jws(&image.descriptor(), profile_version, job, SIGNED_AT);
    attach_signature(&bed.host(), repo, &image, &envelope, ReferrersMode::Api).await?;
    Ok(image)
}

/// pullgate with `[aws_signer]` pointed at `api` and static credentials in its environment.
async fn start(bed: &OciTestbed, api: &AwsApi) -> anyhow::Result<Pullgate> {
    start_with(bed, api, "").await
}

/// [`start`], with more `[aws_signer]` keys.
async fn start_with(bed: &OciTestbed, api: &AwsApi, aws_extra: &str) -> anyhow::Result<Pullgate> {
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "[aws_signer]\nregion = \"us-west-2\"\nendpoint = \"{}\"\ntimeout_ms = 500\n{aws_extra}",
        api.url()
    );
    config.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), aws_api::ACCESS_KEY_ID.into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            aws_api::SECRET_ACCESS_KEY.into(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    bed.start_pullgate_with(&config).await
}

async fn in_containerd(bed: &OciTestbed, image: &str) -> anyhow::Result<bool> {
    let direct = cri::connect(bed.containerd.socket()).await?;
    Ok(cri::image_status(&direct, image).await?.is_some())
}

fn assert_denied(status: &tonic::Status, image: &PushedImage, needle: &str, log: &str) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}\n{log}");
    let msg = status.message();
    assert!(msg.contains("denied by policy \"aws-signer\""), "{msg}");
    assert!(msg.contains(&image.digest), "{msg}");
    assert!(msg.contains(needle), "{needle:?} not in: {msg}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn strict_allows_a_trusted_profile_and_denies_the_rest() {
    let (bed, pki) = testbed("strict", &[PROFILE]).await.unwrap();
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let good = push_signed(&bed, &pki, "app/good", &format!("{PROFILE}/Ver1"), &job(1))
        .await
        .unwrap();
    let revoked = push_signed(
        &bed,
        &pki,
        "app/revoked",
        &format!("{PROFILE}/Ver1"),
        &job(2),
    )
    .await
    .unwrap();
    let other = push_signed(
        &bed,
        &pki,
        "app/other",
        &format!("{OTHER_PROFILE}/Ver1"),
        &job(3),
    )
    .await
    .unwrap();
    let down = push_signed(&bed, &pki, "app/down", &format!("{PROFILE}/Ver1"), &job(4))
        .await
        .unwrap();
    bed.push_unsigned("app/unsigned", "v1").await.unwrap();
    let pullgate = start(&bed, &api).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // Trusted profile, not revoked: pulled, pinned, after one signed revocation call.
    let good_ref = bed.image_ref("app/good", "v1");
    cri::pull(&ch, &good_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &good_ref).await.unwrap());
    let calls = api.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].signature_ok, "{:?}", calls[0].signature_problem);
    assert_eq!(calls[0].params["jobArn"], [job(1)]);
    assert_eq!(calls[0].params["certificateHashes"].len(), 4);
    let _ = good;

    // Revoked: denied, and containerd never pulled it.
    api.set_answer(Answer::Revoked);
    let revoked_ref = bed.image_ref("app/revoked", "v1");
    let s = cri::pull(&ch, &revoked_ref).await.unwrap_err();
    assert_denied(&s, &revoked, "revoked", &pullgate.log_tail());
    assert!(!in_containerd(&bed, &revoked_ref).await.unwrap());

    // Another signing profile: denied without asking Signer about it being trusted.
    api.set_answer(Answer::NotRevoked);
    let other_ref = bed.image_ref("app/other", "v1");
    let s = cri::pull(&ch, &other_ref).await.unwrap_err();
    assert_denied(&s, &other, "is not trusted", &pullgate.log_tail());
    assert!(!in_containerd(&bed, &other_ref).await.unwrap());

    // Signer failing: strict refuses.
    api.set_answer(Answer::ServerError);
    let down_ref = bed.image_ref("app/down", "v1");
    let s = cri::pull(&ch, &down_ref).await.unwrap_err();
    assert_denied(&s, &down, "HTTP 500", &pullgate.log_tail());
    assert!(!in_containerd(&bed, &down_ref).await.unwrap());

    // Unsigned: denied.
    let unsigned_ref = bed.image_ref("app/unsigned", "v1");
    let s = cri::pull(&ch, &unsigned_ref).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(!in_containerd(&bed, &unsigned_ref).await.unwrap());
}

/// Issue 23.5: an allow that relied on Signer's "not revoked" answer lives
/// no longer than that answer's cache time: once it has passed, the next
/// pull asks Signer again and a revocation made since denies the image
/// (with the allow TTL, 3600 s, it was served from the cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_revocation_ends_the_allow_within_the_signer_cache_time() {
    let (bed, pki) = testbed("strict", &[PROFILE]).await.unwrap();
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let image = push_signed(&bed, &pki, "app/later", &format!("{PROFILE}/Ver1"), &job(9))
        .await
        .unwrap();
    let pullgate = start_with(&bed, &api, "cache_ttl_secs = 1\n")
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/later", "v1");
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert_eq!(api.calls().len(), 1);
    // The profile is revoked in Signer; the answer's cache time passes.
    api.set_answer(Answer::Revoked);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let s = cri::pull(&ch, &tag_ref).await.unwrap_err();
    assert_denied(&s, &image, "revoked", &pullgate.log_tail());
    assert_eq!(api.calls().len(), 2, "Signer was asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn wildcard_is_refused_and_permissive_logs_an_unreachable_signer() {
    // '*' never admits an AWS Signer signature.
    let (bed, pki) = testbed("strict", &["*"]).await.unwrap();
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let image = push_signed(&bed, &pki, "app/any", &format!("{PROFILE}/Ver1"), &job(5))
        .await
        .unwrap();
    let pullgate = start(&bed, &api).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let any_ref = bed.image_ref("app/any", "v1");
    let s = cri::pull(&ch, &any_ref).await.unwrap_err();
    assert_denied(&s, &image, "\"*\"", &pullgate.log_tail());
    assert!(!in_containerd(&bed, &any_ref).await.unwrap());
    drop(pullgate);

    // Permissive: Signer answering 500 is logged, the pull goes ahead.
    let (bed, pki) = testbed("permissive", &[PROFILE]).await.unwrap();
    api.set_answer(Answer::ServerError);
    push_signed(
        &bed,
        &pki,
        "app/logged",
        &format!("{PROFILE}/Ver2"),
        &job(6),
    )
    .await
    .unwrap();
    let pullgate = start(&bed, &api).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let logged_ref = bed.image_ref("app/logged", "v1");
    cri::pull(&ch, &logged_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &logged_ref).await.unwrap());
    assert!(
        pullgate
            .log_tail()
            .contains("AWS Signer revocation status could not be obtained"),
        "{}",
        pullgate.log_tail()
    );
}

/// Issue 23, item 9: on EKS with Pod Identity the credentials come from the
/// container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`,
/// with the token in `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`); pullgate
/// did not read it, so under `strict` every AWS Signer image was denied
/// (revocation status unknown for want of credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn eks_pod_identity_credentials_sign_the_revocation_call() {
    let (bed, pki) = testbed("strict", &[PROFILE]).await.unwrap();
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    api.expect_session_credentials();
    api.expect_container_authorization("pod-identity-token");
    push_signed(&bed, &pki, "app/pod", &format!("{PROFILE}/Ver1"), &job(40))
        .await
        .unwrap();
    let token = bed.dir().join("eks-pod-identity-token");
    std::fs::write(&token, "pod-identity-token\n").unwrap();
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "[aws_signer]\nregion = \"us-west-2\"\nendpoint = \"{}\"\ntimeout_ms = 500\n",
        api.url()
    );
    config.env = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            format!(
                "{}{}v1/credentials",
                api.url(),
                aws_api::CONTAINER_CREDENTIALS_PATH
            ),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
            token.display().to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let image = bed.image_ref("app/pod", "v1");
    cri::pull(&ch, &image)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &image).await.unwrap());
    assert_eq!(api.container_calls(), 1);
    let calls = api.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].signature_ok, "{:?}", calls[0].signature_problem);
}
