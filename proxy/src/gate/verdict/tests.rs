//! The verdict rules as a table: (requirements, signature results, now) → judgement.

use std::time::UNIX_EPOCH;

use pullgate_policy::requirements::{CosignRejection, CosignSigner, Requirements};
use pullgate_policy::{Repository, Validation};

use super::*;

const ALLOW: Duration = Duration::from_secs(3600);
const DENY: Duration = Duration::from_secs(60);
const A: &str = "C=US, ST=WA, O=Acme, CN=builder";
const B: &str = "C=US, ST=WA, O=Acme, CN=scanner";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000)
}

fn at(secs_from_now: i64) -> Option<SystemTime> {
    let now = now();
    Some(if secs_from_now >= 0 {
        now + Duration::from_secs(secs_from_now.unsigned_abs())
    } else {
        now - Duration::from_secs(secs_from_now.unsigned_abs())
    })
}

fn sig(n: u8) -> Digest {
    format!("sha256:{:064x}", n).parse().unwrap()
}

/// An accepted signature by `subject`, without any bound on its lifetime.
fn good(n: u8, subject: &str) -> Examined {
    bounded(n, subject, None, None, None)
}

/// An accepted signature by `subject` bounded by its certificate's
/// `notAfter`, its signed expiry and its revocation data's `nextUpdate`.
fn bounded(
    n: u8,
    subject: &str,
    not_after: Option<SystemTime>,
    expiry: Option<SystemTime>,
    revocation_until: Option<SystemTime>,
) -> Examined {
    Examined {
        signature: sig(n),
        layer: None,
        kind: Some(SignatureKind::Notation),
        result: SignatureResult::Accepted(Accepted {
            subject: subject.to_owned(),
            cosign: None,
            not_after,
            expiry,
            revocation_until,
            logged: Vec::new(),
        }),
    }
}

/// An accepted cosign signature (layer 0 of a `.sig` manifest) by `signer`.
fn cosign(n: u8, signer: CosignSigner) -> Examined {
    Examined {
        signature: sig(n),
        layer: Some(0),
        kind: Some(SignatureKind::Cosign),
        result: SignatureResult::Accepted(Accepted {
            subject: signer.to_string(),
            cosign: Some(signer),
            not_after: None,
            expiry: None,
            revocation_until: None,
            logged: Vec::new(),
        }),
    }
}

fn key(name: &str) -> CosignSigner {
    CosignSigner::Key {
        name: name.to_owned(),
    }
}

fn keyless(subject: &str) -> CosignSigner {
    CosignSigner::Keyless {
        issuer: "https://token.actions.githubusercontent.com".to_owned(),
        subject: subject.to_owned(),
    }
}

/// A cosign signature (layer 2 of a `.sig` manifest) made with a key the scope does not list.
fn cosign_bad(n: u8) -> Examined {
    Examined {
        signature: sig(n),
        layer: Some(2),
        kind: Some(SignatureKind::Cosign),
        result: SignatureResult::Rejected(FailureReason::CosignRejected(
            CosignRejection::UntrustedKey {
                name: "other.pub".to_owned(),
            },
        )),
    }
}

/// A signature that failed on its content.
fn bad(n: u8) -> Examined {
    Examined {
        signature: sig(n),
        layer: None,
        kind: Some(SignatureKind::Notation),
        result: SignatureResult::Rejected(FailureReason::NotRun {
            validation: Validation::Authenticity,
        }),
    }
}

/// A signature that could not be fetched (the registry did not answer in time).
fn unfetched(n: u8) -> Examined {
    Examined {
        signature: sig(n),
        layer: None,
        kind: Some(SignatureKind::Notation),
        result: SignatureResult::Inconclusive(GateError::Deadline),
    }
}

/// The built-in default scope (one trusted signer), or one scope from `toml`.
fn scope(toml: &str) -> Requirements {
    if toml.is_empty() {
        return Requirements::default();
    }
    Requirements::from_toml(&format!(
        "[[scope]]\nname = \"release\"\nregistry_scopes = [\"r.example/app\"]\n{toml}"
    ))
    .unwrap()
}

/// What a judgement comes to, comparably.
#[derive(Debug, PartialEq)]
enum Expect {
    Allowed(Vec<&'static str>, Duration),
    /// The denial's metrics label and a phrase its text must contain.
    Denied(&'static str, &'static str),
    Inconclusive,
}

fn summary(j: &Judgement, expected: &Expect) -> bool {
    match (j, expected) {
        (Judgement::Allowed { signers, ttl }, Expect::Allowed(want, want_ttl)) => {
            signers == want && ttl == want_ttl
        }
        (Judgement::Denied { reason, ttl }, Expect::Denied(label, phrase)) => {
            *ttl == DENY && reason.label() == *label && reason.to_string().contains(phrase)
        }
        (Judgement::Inconclusive(_), Expect::Inconclusive) => true,
        _ => false,
    }
}

#[test]
fn the_verdict_rules() {
    let min2 = "min_signers = 2";
    let named_b = format!("identities = [\"x509.subject: {B}\"]");
    let named_ab = format!("identities = [\"x509.subject: {A}\", \"x509.subject: {B}\"]");
    let cosign_only = "signature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [\"/k/release.pub\", \"/k/qa.pub\"]\n";
    let either = "signature_kinds = [\"notation\", \"cosign\"]\n[scope.cosign]\nkeys = [\"/k/release.pub\"]\n";
    let one_of_each = "signature_kinds = [\"notation\", \"cosign\"]\nmin_signers = 2\n[scope.cosign]\nkeys = [\"/k/release.pub\"]\n";
    let named_b_or_cosign = format!("signature_kinds = [\"notation\", \"cosign\"]\n{named_b}\n[scope.cosign]\nkeys = [\"/k/release.pub\"]\n");
    let two_keys = "signature_kinds = [\"cosign\"]\nmin_signers = 2\n[scope.cosign]\nkeys = [\"/k/release.pub\", \"/k/qa.pub\"]\n";
    let release = "cosign key release.pub";
    #[rustfmt::skip]
    let table: Vec<(&str, &str, Vec<Examined>, Expect)> = vec![
        ("one good signature",
            "", vec![good(1, A)], Expect::Allowed(vec![A], ALLOW)),
        ("none found",
            "", vec![], Expect::Denied("no_signature", "no Notary Project signature")),
        ("all failed: the first failure is named",
            "", vec![bad(1), bad(2)],
            Expect::Denied("signatures_rejected", "none of the 2 signatures passed; the first: signature sha256:000000000000")),
        ("one failed",
            "", vec![bad(7)], Expect::Denied("signatures_rejected", "authenticity check failed")),
        ("a failure before a good signature does not matter",
            "", vec![bad(1), good(2, A)], Expect::Allowed(vec![A], ALLOW)),
        ("a transient fetch failure and no accepted signature: inconclusive",
            "", vec![bad(1), unfetched(2)], Expect::Inconclusive),
        ("a transient failure, but the requirements are met anyway: allowed",
            "", vec![unfetched(1), good(2, A)], Expect::Allowed(vec![A], ALLOW)),
        ("min_signers unmet",
            min2, vec![good(1, A), bad(2)],
            Expect::Denied("requirements_unmet", "1 distinct trusted signer(s) signed it, 2 required")),
        ("min_signers counts distinct signers",
            min2, vec![good(1, A), good(2, A)],
            Expect::Denied("requirements_unmet", "2 required")),
        ("min_signers met",
            min2, vec![good(1, A), good(2, B)], Expect::Allowed(vec![A, B], ALLOW)),
        ("min_signers unmet while a signature could not be fetched: inconclusive",
            min2, vec![good(1, A), unfetched(2)], Expect::Inconclusive),
        ("a named identity has not signed",
            &named_b, vec![good(1, A)],
            Expect::Denied("requirements_unmet", "CN=scanner\" has not signed it")),
        ("the named identity signed",
            &named_b, vec![good(1, A), good(2, B)], Expect::Allowed(vec![A, B], ALLOW)),
        ("every named identity signed",
            &named_ab, vec![good(1, B), bad(2), good(3, A)], Expect::Allowed(vec![B, A], ALLOW)),
        ("TTL capped by the certificate's notAfter",
            "", vec![bounded(1, A, at(600), None, None)],
            Expect::Allowed(vec![A], Duration::from_secs(600))),
        ("TTL capped by the signature's expiry",
            "", vec![bounded(1, A, at(7200), at(300), None)],
            Expect::Allowed(vec![A], Duration::from_secs(300))),
        ("TTL capped by the revocation data's nextUpdate",
            "", vec![bounded(1, A, at(7200), at(7200), at(120))],
            Expect::Allowed(vec![A], Duration::from_secs(120))),
        ("TTL capped by the earliest bound of all accepted signatures",
            min2, vec![bounded(1, A, at(900), None, None), bounded(2, B, None, None, at(450))],
            Expect::Allowed(vec![A, B], Duration::from_secs(450))),
        ("bounds later than the configured TTL leave it",
            "", vec![bounded(1, A, at(86_400), at(86_400), at(86_400))],
            Expect::Allowed(vec![A], ALLOW)),
        ("a bound already past gives a zero TTL, never a negative one",
            "", vec![bounded(1, A, at(-5), None, None)],
            Expect::Allowed(vec![A], Duration::ZERO)),
        ("cosign: a key signer, cached for the configured TTL (no time bound)",
            cosign_only, vec![cosign(1, key("release.pub"))], Expect::Allowed(vec![release], ALLOW)),
        ("cosign: none found names cosign",
            cosign_only, vec![], Expect::Denied("no_signature", "no cosign signature of this digest")),
        ("either kind: none found names both",
            either, vec![], Expect::Denied("no_signature", "no Notary Project or cosign signature")),
        ("cosign: a rejected .sig layer is named with its layer",
            cosign_only, vec![cosign_bad(1)],
            Expect::Denied("signatures_rejected", "layer 2: cosign key other.pub is not trusted")),
        ("either kind: a Notary Project signer alone is enough",
            either, vec![good(1, A)], Expect::Allowed(vec![A], ALLOW)),
        ("either kind: a cosign signer alone is enough",
            either, vec![bad(1), cosign(2, key("release.pub"))], Expect::Allowed(vec![release], ALLOW)),
        ("min_signers = 2 across kinds: one of each",
            one_of_each, vec![good(1, A), cosign(2, key("release.pub"))],
            Expect::Allowed(vec![A, release], ALLOW)),
        ("min_signers = 2 across kinds: one key twice is one signer",
            one_of_each, vec![cosign(1, key("release.pub")), cosign(2, key("release.pub"))],
            Expect::Denied("requirements_unmet", "1 distinct trusted signer(s) signed it, 2 required")),
        ("two keys are two signers",
            two_keys,
            vec![cosign(1, key("release.pub")), cosign(2, key("qa.pub"))],
            Expect::Allowed(vec![release, "cosign key qa.pub"], ALLOW)),
        ("keyless signers count by issuer and subject",
            "signature_kinds = [\"cosign\"]\nmin_signers = 2\n[scope.cosign]\ntrusted_root = \"/r/root.json\"\n[[scope.cosign.identities]]\nissuer = \"https://token.actions.githubusercontent.com\"\nsubject_regex = \"^https://github.com/acme/\"\n",
            vec![cosign(1, keyless("https://github.com/acme/a")), cosign(2, keyless("https://github.com/acme/a"))],
            Expect::Denied("requirements_unmet", "1 distinct trusted signer(s)")),
        ("accepted, but the subject is not a distinguished name: denied, saying so",
            "", vec![good(1, "no equals sign")],
            Expect::Denied("signer_not_named", "subject \"no equals sign\" is not a distinguished name")),
        ("a countable signer among them: allowed",
            "", vec![good(1, "no equals sign"), good(2, A)], Expect::Allowed(vec![A], ALLOW)),
        ("named identities are met by Notary Project signers only",
            &named_b_or_cosign, vec![cosign(1, key("release.pub"))],
            Expect::Denied("requirements_unmet", "CN=scanner\" has not signed it")),
    ];
    let repo: Repository = "r.example/app".parse().unwrap();
    for (name, toml, examined, expected) in table {
        let requirements = scope(toml);
        let requirement = requirements.for_repository(&repo);
        let ttls = Ttls {
            allow: ALLOW,
            deny: DENY,
        };
        let got = judge(&examined, requirement, ttls, now());
        assert!(
            summary(&got, &expected),
            "{name}: got {got:?}, expected {expected:?}"
        );
    }
}

/// A Notary Project signature that passed every check, but whose signing
/// certificate subject is not a distinguished name, cannot be counted by
/// the requirements: that is a denial with its own sentence, not an
/// internal error.
#[test]
fn signatures_whose_subject_is_not_a_distinguished_name_deny_saying_why() {
    let requirements = Requirements::default();
    let requirement = requirements.for_repository(&"r.example/app".parse().unwrap());
    let ttls = Ttls {
        allow: ALLOW,
        deny: DENY,
    };
    let one = judge(&[good(1, "CN")], requirement, ttls, now());
    let Judgement::Denied { reason, ttl } = one else {
        panic!("{one:?}")
    };
    assert_eq!(ttl, DENY);
    assert!(matches!(&reason, DenyReason::SignerNotNamed { found: 1, subject } if subject == "CN"));
    assert_eq!(
        reason.to_string(),
        "the signature passed, but its signing certificate subject \"CN\" is not a distinguished name, so it cannot count as a signer"
    );
    let two = judge(&[good(1, "x"), good(2, "y")], requirement, ttls, now());
    let Judgement::Denied { reason, .. } = two else {
        panic!("{two:?}")
    };
    assert_eq!(
        reason.to_string(),
        "2 signatures passed, but no signing certificate subject is a distinguished name (the first: \"x\"), so none can count as a signer"
    );
}

#[test]
fn enough_stops_at_the_first_good_signature_only_when_that_meets_the_requirements() {
    let repo: Repository = "r.example/app".parse().unwrap();
    let default = Requirements::default();
    let min2 = scope("min_signers = 2");
    for (requirements, examined, want) in [
        (&default, vec![bad(1)], false),
        (&default, vec![unfetched(1)], false),
        (&default, vec![bad(1), good(2, A)], true),
        (&min2, vec![good(1, A)], false),
        (&min2, vec![good(1, A), good(2, B)], true),
    ] {
        assert_eq!(
            enough(&examined, requirements.for_repository(&repo)),
            want,
            "{examined:?}"
        );
    }
}
