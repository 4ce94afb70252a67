//! The decision on AWS Signer signatures: the verifier's report, the Signer
//! revocation answer from a loopback stand-in (`pullgate_tests::aws_api`,
//! which verifies the SigV4 signature), and the statement's identities and
//! level, through `judge::judge` as `notary::check` runs them.

use pullgate_policy::config::AwsSignerConfig;
use pullgate_policy::{SigningProfileRefusal, TrustPolicyDocument};
use pullgate_tests::aws_api::{self, Answer, AwsApi};

use std::time::Duration;

use super::*;
use crate::revocation_fetch::aws_signer::{AwsSignerRevocation, Environment};
use crate::verify::mint::AsCertificate as _;
use crate::verify::revocation::NoRevocationData;
use crate::verify::{self, notary};
use pullgate_testkit as mint;

const PROFILE: &str = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release";
const VERSION: &str = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release/Ab12Cd34Ef";
const JOB: &str = "arn:aws:signer:us-west-2:123456789012:/signing-jobs/2f6e3b1c";

fn statement(level: &str, identities: &str) -> Statement {
    let doc = format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"aws","registryScopes":["*"],"signatureVerification":{{"level":"{level}"}},"trustStores":["signingAuthority:aws-signer-ts"],"trustedIdentities":{identities}}}]}}"#
    );
    TrustPolicyDocument::from_json(doc.as_bytes())
        .unwrap()
        .statements()[0]
        .clone()
}

fn now() -> SystemTime {
    verify::rfc3339::parse("2030-01-01T00:00:00Z").unwrap()
}

fn target() -> Digest {
    mint::TARGET_DIGEST.parse().unwrap()
}

/// The report of an AWS Signer-shaped envelope signed with `profile_version`,
/// before any revocation answer.
fn report(profile_version: &str, leaf_until: (i32, u8, u8), signed_at: &str) -> Report {
    let pki = mint::aws_signer_pki((2020, 1, 1), leaf_until).unwrap();
    let header = mint::aws_signer_header(profile_version, JOB, signed_at, "2035-01-01T00:00:00Z");
    let env = mint::envelope(&header, &mint::payload(), &pki.leaf.key, &pki.x5c());
    let root = [pki.root.certificate()];
    let anchors = notary::Anchors {
        ca: Vec::new(),
        signing_authority: root.iter().collect(),
        tsa: Vec::new(),
    };
    notary::verify(
        notary::MEDIA_TYPE_JWS,
        &env,
        &anchors,
        notary::Options::default(),
        &NoRevocationData,
        now(),
    )
}

fn not_revoked(profile_version: &str) -> Report {
    let mut r = report(profile_version, (2040, 1, 1), "2024-03-01T10:00:00Z");
    r.set_aws_signer_revocation(Ok(()));
    r
}

#[test]
fn trusted_by_profile_arn_or_version_arn_only() {
    let by_profile = statement("strict", &format!(r#"["{PROFILE}"]"#));
    assert!(judge::judge(&by_profile, not_revoked(VERSION), &target()).is_ok());
    // Any version of the profile.
    assert!(judge::judge(
        &by_profile,
        not_revoked(&format!("{PROFILE}/Zz99")),
        &target()
    )
    .is_ok());
    let by_version = statement("strict", &format!(r#"["{VERSION}"]"#));
    assert!(judge::judge(&by_version, not_revoked(VERSION), &target()).is_ok());
    match judge::judge(
        &by_version,
        not_revoked(&format!("{PROFILE}/Zz99")),
        &target(),
    ) {
        Err(FailureReason::UntrustedSigningProfile { why, .. }) => {
            assert_eq!(why, SigningProfileRefusal::NotListed)
        }
        other => panic!("{other:?}"),
    }
    // Another profile is denied.
    let other = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/other/Ab12Cd34Ef";
    assert!(matches!(
        judge::judge(&by_profile, not_revoked(other), &target()),
        Err(FailureReason::UntrustedSigningProfile { .. })
    ));
    // '*' is refused for AWS Signer signatures, whatever the level enforces.
    let wildcard = statement("strict", r#"["*"]"#);
    match judge::judge(&wildcard, not_revoked(VERSION), &target()) {
        Err(e @ FailureReason::UntrustedSigningProfile { .. }) => {
            assert!(e.to_string().contains("\"*\""), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // x509.subject never admits them, even naming AWS Signer's own subject.
    let subject = statement(
        "strict",
        r#"["x509.subject: C=US, ST=WA, L=Seattle, O=AWS, OU=AWS Cryptography, CN=AWS Signer"]"#,
    );
    assert!(matches!(
        judge::judge(&subject, not_revoked(VERSION), &target()),
        Err(FailureReason::UntrustedSigningProfile {
            why: SigningProfileRefusal::NoSigningProfiles,
            ..
        })
    ));
}

#[test]
fn expired_leaf_with_valid_authentic_signing_time_is_allowed() {
    let by_profile = statement("strict", &format!(r#"["{PROFILE}"]"#));
    let mut r = report(VERSION, (2021, 1, 1), "2020-06-01T00:00:00Z");
    r.set_aws_signer_revocation(Ok(()));
    assert!(judge::judge(&by_profile, r, &target()).is_ok());
}

/// Revocation as Signer answers it, through the real client and a SigV4-checking endpoint.
#[tokio::test]
async fn revocation_answers_under_strict_and_permissive() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let cfg = AwsSignerConfig {
        endpoint: Some(api.url()),
        timeout_ms: 300,
        // Every case below asks again.
        cache_ttl_secs: 0,
        ..AwsSignerConfig::default()
    };
    let env = Environment {
        access_key_id: Some(aws_api::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(aws_api::SECRET_ACCESS_KEY.to_owned()),
        imds_disabled: true,
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&cfg, env).unwrap();
    let strict = statement("strict", &format!(r#"["{PROFILE}"]"#));
    let permissive = statement("permissive", &format!(r#"["{PROFILE}"]"#));
    let deadline = Deadline::after(Duration::from_secs(20));
    for (answer, strict_ok) in [
        (Answer::NotRevoked, true),
        (Answer::Revoked, false),
        (Answer::ServerError, false),
        (Answer::Hang, false),
    ] {
        api.set_answer(answer);
        // One report for each statement: deciding consumes it.
        let mut r = report(VERSION, (2040, 1, 1), "2024-03-01T10:00:00Z");
        let mut again = report(VERSION, (2040, 1, 1), "2024-03-01T10:00:00Z");
        let query = r.aws_signer.clone().unwrap();
        let answer_got = client.status(&query, now(), deadline).await;
        again.set_aws_signer_revocation(answer_got.clone());
        r.set_aws_signer_revocation(answer_got);
        let s = judge::judge(&strict, r, &target());
        assert_eq!(s.is_ok(), strict_ok, "strict, {answer:?}: {s:?}");
        if !strict_ok {
            assert!(
                matches!(
                    &s,
                    Err(FailureReason::Check {
                        validation: Validation::Revocation,
                        ..
                    })
                ),
                "{s:?}"
            );
        }
        // Permissive logs a revocation failure instead of enforcing it.
        match judge::judge(&permissive, again, &target()) {
            Ok(accepted) => {
                assert_eq!(
                    accepted.logged.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
                    if strict_ok {
                        vec![]
                    } else {
                        vec![Validation::Revocation]
                    },
                    "permissive, {answer:?}"
                );
            }
            Err(e) => panic!("permissive, {answer:?}: {e}"),
        }
    }
    let calls = api.calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.signature_ok));
    assert_eq!(calls[0].region.as_deref(), Some("us-west-2"));
}

/// Issue 23.5: an allow that relied on Signer's "not revoked" answer lives
/// no longer than that answer's cache time, however late in it the answer
/// was served from the cache; persisted verdicts carry the same end.
#[tokio::test]
async fn an_allow_lives_no_longer_than_the_signer_answer() {
    use crate::gate::verdict::{self, Examined, SignatureResult, Ttls};
    use pullgate_policy::requirements::{ScopeRequirement, SignatureKind};
    use pullgate_policy::Enforcement;

    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let cfg = AwsSignerConfig {
        endpoint: Some(api.url()),
        timeout_ms: 2000,
        cache_ttl_secs: 300,
        ..AwsSignerConfig::default()
    };
    let env = Environment {
        access_key_id: Some(aws_api::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(aws_api::SECRET_ACCESS_KEY.to_owned()),
        imds_disabled: true,
        ..Environment::default()
    };
    let client = AwsSignerRevocation::new(&cfg, env).unwrap();
    let deadline = Deadline::after(Duration::from_secs(20));
    let strict = statement("strict", &format!(r#"["{PROFILE}"]"#));
    let r = report(VERSION, (2040, 1, 1), "2024-03-01T10:00:00Z");
    let query = r.aws_signer.clone().unwrap();
    let until = client.checked(&query, now(), deadline).await.unwrap();
    assert_eq!(until, now() + Duration::from_secs(300));
    // Served from the cache 200 s later: the same end, not extended.
    let later = now() + Duration::from_secs(200);
    assert_eq!(
        client.checked(&query, later, deadline).await.unwrap(),
        until
    );
    assert_eq!(api.calls().len(), 1);

    let mut r = r;
    r.set_aws_signer_revocation(Ok(()));
    let mut accepted = judge::judge(&strict, r, &target()).unwrap();
    accepted.revocation_until = relied_until(
        strict.enforcement(Validation::Revocation),
        None,
        Some(until),
    );
    let examined = [Examined {
        signature: target(),
        layer: None,
        kind: Some(SignatureKind::Notation),
        result: SignatureResult::Accepted(accepted),
    }];
    let ttls = Ttls {
        allow: Duration::from_secs(3600),
        deny: Duration::from_secs(30),
    };
    match verdict::judge(&examined, &ScopeRequirement::default(), ttls, later) {
        verdict::Judgement::Allowed { ttl, .. } => assert_eq!(ttl, Duration::from_secs(100)),
        other => panic!("{other:?}"),
    }
    // OCSP or CRL data ending sooner bounds it sooner.
    let sooner = now() + Duration::from_secs(60);
    assert_eq!(
        relied_until(Enforcement::Enforce, Some(sooner), Some(until)),
        Some(sooner)
    );
    // A level that only logs revocation relied on no answer.
    assert_eq!(relied_until(Enforcement::Log, None, Some(until)), None);
    assert_eq!(relied_until(Enforcement::Skip, None, Some(until)), None);
}

/// Skipping revocation in the policy asks nothing; the check stays unrun for the level to skip.
#[test]
fn revocation_not_asked_leaves_strict_failing() {
    let strict = statement("strict", &format!(r#"["{PROFILE}"]"#));
    let unasked = || report(VERSION, (2040, 1, 1), "2024-03-01T10:00:00Z");
    assert!(matches!(
        judge::judge(&strict, unasked(), &target()),
        Err(FailureReason::Check {
            validation: Validation::Revocation,
            ..
        })
    ));
    let skipping = {
        let doc = format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"aws","registryScopes":["*"],"signatureVerification":{{"level":"strict","override":{{"revocation":"skip"}}}},"trustStores":["signingAuthority:aws-signer-ts"],"trustedIdentities":["{PROFILE}"]}}]}}"#
        );
        TrustPolicyDocument::from_json(doc.as_bytes())
            .unwrap()
            .statements()[0]
            .clone()
    };
    assert!(judge::judge(&skipping, unasked(), &target()).is_ok());
}

/// An answer is served from the cache until its cache time ends at the
/// caller's `now`, then asked again; `cache_entries = 0` keeps none.
#[tokio::test]
async fn a_cached_answer_ends_at_its_cache_time() {
    let api = AwsApi::start(Answer::NotRevoked).await.unwrap();
    let env = Environment {
        access_key_id: Some(aws_api::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(aws_api::SECRET_ACCESS_KEY.to_owned()),
        imds_disabled: true,
        ..Environment::default()
    };
    let cfg = AwsSignerConfig {
        endpoint: Some(api.url()),
        timeout_ms: 2000,
        cache_ttl_secs: 300,
        ..AwsSignerConfig::default()
    };
    let client = AwsSignerRevocation::new(&cfg, env.clone()).unwrap();
    let deadline = Deadline::after(Duration::from_secs(20));
    let query = report(VERSION, (2040, 1, 1), "2024-03-01T10:00:00Z")
        .aws_signer
        .unwrap();
    client.checked(&query, now(), deadline).await.unwrap();
    let last_cached = now() + Duration::from_secs(299);
    client.checked(&query, last_cached, deadline).await.unwrap();
    assert_eq!(api.calls().len(), 1);
    let ended = now() + Duration::from_secs(300);
    let until = client.checked(&query, ended, deadline).await.unwrap();
    assert_eq!(
        api.calls().len(),
        2,
        "asked again once the cache time ended"
    );
    assert_eq!(until, ended + Duration::from_secs(300));

    let none = AwsSignerConfig {
        cache_entries: 0,
        ..cfg
    };
    let client = AwsSignerRevocation::new(&none, env).unwrap();
    client.checked(&query, now(), deadline).await.unwrap();
    client.checked(&query, now(), deadline).await.unwrap();
    assert_eq!(api.calls().len(), 4, "nothing cached");
}
