//! Attestations judged under `[[scope.attestations]]`: cosign's own
//! attestation bundle (`tests/vectors/cosign/oci-attestation.sigstore.json`,
//! verdicts from its `SOURCE.md`) with conditions on its predicate, and
//! the judging rules on made-up outcomes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pullgate_policy::requirements::{Requirements, ScopeRequirement};
use pullgate_policy::{Digest, Repository};

use super::*;
use crate::verify::cosign::trust::{CosignTrust, SigstoreRoot};

const PREDICATE: &str = "https://cosign.sigstore.dev/attestation/v1";
const DIGEST: &str = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/vectors")
            .join(rel),
    )
    .unwrap()
}

/// 2026-09-01T00:00:00Z: after the vector was made.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_788_220_800)
}

/// A keyless scope trusting the vector's signer, requiring `predicate` with `conditions`.
fn scope(predicate: &str, conditions: &[&str]) -> ScopeRequirement {
    let conditions: Vec<String> = conditions.iter().map(|c| format!("'{c}'")).collect();
    let toml = format!(
        "[[scope]]\nname = \"att\"\nregistry_scopes = [\"127.0.0.1:60943/repo\"]\nsignature_kinds = [\"cosign\"]\n\
         [scope.cosign]\ntrusted_root = \"/etc/pullgate/trusted_root.json\"\n\
         [[scope.cosign.identities]]\nissuer = \"https://github.com/login/oauth\"\nsubject_regex = \"^cody@soyland\\\\.com$\"\n\
         [[scope.attestations]]\npredicate_type = \"{predicate}\"\nconditions = [{}]\n",
        conditions.join(", ")
    );
    Requirements::from_toml(&toml).unwrap().scopes()[0].clone()
}

fn verify_vector(scope: &ScopeRequirement, digest: &Digest) -> Outcome {
    let rel = "cosign/trusted_root_pgi.json";
    let trust = CosignTrust {
        keys: Vec::new(),
        root: Some(Arc::new(SigstoreRoot::from_json(rel, &read(rel)).unwrap())),
    };
    let repository: Repository = "127.0.0.1:60943/repo".parse().unwrap();
    verify(
        Fetched::Bundle(&read("cosign/oci-attestation.sigstore.json")),
        scope.attestations(),
        scope.cosign().unwrap(),
        &trust,
        ImageSubject {
            repository: &repository,
            digest,
        },
        now(),
    )
}

fn manifest() -> Digest {
    Digest::sha256_of(b"the referrer manifest")
}

fn judge_one(
    scope: &ScopeRequirement,
    outcome: Outcome,
) -> Result<Option<SystemTime>, Result<AttestationUnmet, GateError>> {
    let found = [Found {
        manifest: manifest(),
        outcome,
    }];
    judge(
        &found,
        scope.attestations(),
        Duration::from_secs(3600),
        now(),
    )
}

#[test]
fn cosign_attestation_bundle_meets_a_condition_on_its_predicate() {
    let digest: Digest = DIGEST.parse().unwrap();
    let s = scope(
        PREDICATE,
        &[r#"predicate.Data.contains("\"foo\": \"bar\"")"#],
    );
    let outcome = verify_vector(&s, &digest);
    let Outcome::Verified {
        index: 0,
        statement,
        until: None,
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(statement.predicate["Timestamp"], "2025-02-28T19:18:11Z");
    assert!(matches!(judge_one(&s, outcome), Ok(None)));
}

#[test]
fn cosign_attestation_bundle_failing_a_condition_is_denied_naming_it() {
    let digest: Digest = DIGEST.parse().unwrap();
    let condition = r#"predicate.Data == "{}""#;
    let s = scope(PREDICATE, &[condition]);
    let unmet = judge_one(&s, verify_vector(&s, &digest))
        .unwrap_err()
        .unwrap();
    assert!(matches!(
        &unmet.denial,
        AttestationDenial::Condition { condition: c, failure: ConditionFailure::False, .. } if c == condition
    ));
    let text = unmet.to_string();
    assert!(
        text.starts_with(&format!("the attestation {PREDICATE} (sha256:")),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "fails condition '{condition}' (it evaluated to false)"
        )),
        "{text}"
    );
    // A missing field denies with the evaluator's error.
    let s = scope(PREDICATE, &["predicate.buildDefinition.x == 1"]);
    let unmet = judge_one(&s, verify_vector(&s, &digest))
        .unwrap_err()
        .unwrap();
    assert!(matches!(
        unmet.denial,
        AttestationDenial::Condition {
            failure: ConditionFailure::Error { .. },
            ..
        }
    ));
}

#[test]
fn the_time_condition_caps_the_verdict() {
    // The vector's predicate Timestamp is 2025-02-28T19:18:11Z; "within 2
    // years" holds at `now` (2026-09-01) and stops at 2027-02-28T19:18:11Z.
    let digest: Digest = DIGEST.parse().unwrap();
    let s = scope(
        PREDICATE,
        &[r#"now - timestamp(predicate.Timestamp) <= duration("17520h")"#],
    );
    let found = [Found {
        manifest: manifest(),
        outcome: verify_vector(&s, &digest),
    }];
    let end = UNIX_EPOCH + Duration::from_secs(1_740_770_291 + 17_520 * 3600);
    // An allow TTL that reaches past the end is cut to it, to the second.
    let long = end.duration_since(now()).unwrap() + Duration::from_secs(86_400);
    assert!(matches!(judge(&found, s.attestations(), long, now()), Ok(Some(t)) if t == end));
    // One that ends earlier is not.
    assert!(matches!(
        judge(&found, s.attestations(), Duration::from_secs(3600), now()),
        Ok(None)
    ));
}

#[test]
fn another_image_or_another_predicate_type_does_not_count() {
    let s = scope(PREDICATE, &[]);
    // Attached to another image: the statement's subject is not it.
    let other = Digest::sha256_of(b"another image");
    let outcome = verify_vector(&s, &other);
    assert!(
        matches!(outcome, Outcome::Rejected { index: 0, .. }),
        "{outcome:?}"
    );
    let unmet = judge_one(&s, outcome).unwrap_err().unwrap();
    assert!(matches!(unmet.denial, AttestationDenial::Rejected { .. }));
    // A requirement of another predicate type: the bundle is not one.
    let s = scope("https://slsa.dev/provenance/v1", &[]);
    let digest: Digest = DIGEST.parse().unwrap();
    let outcome = verify_vector(&s, &digest);
    assert!(matches!(outcome, Outcome::Irrelevant), "{outcome:?}");
    let unmet = judge_one(&s, outcome).unwrap_err().unwrap();
    assert!(matches!(unmet.denial, AttestationDenial::Missing));
    assert!(unmet
        .to_string()
        .starts_with("no signed attestation https://slsa.dev/provenance/v1 of this digest"));
}

#[test]
fn an_unexaminable_attestation_leaves_a_missing_one_undecided() {
    let s = scope(PREDICATE, &[]);
    assert!(matches!(
        judge_one(&s, Outcome::Inconclusive(GateError::Deadline)),
        Err(Err(GateError::Deadline))
    ));
    // With none found at all: missing.
    assert!(matches!(
        judge(&[], s.attestations(), Duration::from_secs(60), now()),
        Err(Ok(AttestationUnmet {
            denial: AttestationDenial::Missing,
            ..
        }))
    ));
}

#[test]
fn a_signature_that_ends_sooner_bounds_the_allow() {
    let s = scope(PREDICATE, &[]);
    let digest: Digest = DIGEST.parse().unwrap();
    let Outcome::Verified { statement, .. } = verify_vector(&s, &digest) else {
        panic!("verified")
    };
    let soon = now() + Duration::from_secs(60);
    let found = [Found {
        manifest: manifest(),
        outcome: Outcome::Verified {
            index: 0,
            statement,
            until: Some(soon),
        },
    }];
    assert!(matches!(
        judge(&found, s.attestations(), Duration::from_secs(3600), now()),
        Ok(Some(t)) if t == soon
    ));
}

#[test]
fn a_missing_attestation_among_capped_candidates_names_the_cap() {
    let unmet = AttestationUnmet {
        predicate_type: PREDICATE.to_owned(),
        denial: AttestationDenial::MissingAmongFirst {
            examined: 32,
            listed: 500,
        },
    };
    let text = unmet.to_string();
    assert!(
        text.starts_with(&format!("no signed attestation {PREDICATE} of this digest among the 32 most promising of the 500 candidates listed")),
        "{text}"
    );
    assert!(text.contains("[registry.limits] max_signatures"), "{text}");
}
