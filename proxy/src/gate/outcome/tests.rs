use std::io::Write;
use std::sync::Mutex;

use super::*;
use crate::gate::decision::{DenyReason, Kinds};
use crate::gate::origin::Door;

fn image() -> ImageRef {
    "r.example/app:v1".parse().unwrap()
}

fn digest() -> Digest {
    format!("sha256:{}", "d".repeat(64)).parse().unwrap()
}

fn allow() -> Allow {
    Allow::pinned_to(&image(), digest())
}

fn denial() -> Denial {
    Denial {
        image: image(),
        digest: Some(digest()),
        statement: Some("prod".into()),
        reason: DenyReason::NoSignature {
            kinds: Kinds {
                notation: true,
                cosign: false,
            },
        },
        signatures_in: None,
    }
}

/// The mapping does not look into the error: any one will do.
fn outage() -> GateError {
    GateError::Internal("a registry outage stands here")
}

/// One outcome and what each mapping must make of it: audit verdict,
/// metric labels, whether the pull goes ahead, what the reason starts with.
type Row = (
    Outcome,
    audit::Verdict,
    (&'static str, &'static str),
    bool,
    Option<&'static str>,
);

/// One of each kind.
fn every_outcome() -> Vec<Row> {
    vec![
        (
            Outcome::Verified {
                allow: allow(),
                signers: vec!["CN=a".into()].into(),
            },
            audit::Verdict::Allow,
            ("allow", "verified"),
            true,
            None,
        ),
        (
            Outcome::Skipped { allow: allow() },
            audit::Verdict::Skip,
            ("skip", "skip"),
            true,
            None,
        ),
        (
            Outcome::BreakGlass {
                allow: allow(),
                reason: "INC-1".into(),
            },
            audit::Verdict::BreakGlass,
            ("break_glass", "break_glass"),
            true,
            Some("INC-1"),
        ),
        (
            Outcome::AuditAllowed {
                allow: allow(),
                denial: denial(),
            },
            audit::Verdict::AuditAllow,
            ("audit", "no_signature"),
            true,
            Some("image r.example/app:v1 (sha256:"),
        ),
        (
            Outcome::WarnAllowed {
                allow: allow(),
                denial: denial(),
            },
            audit::Verdict::WarnAllow,
            ("warn", "no_signature"),
            true,
            Some("image r.example/app:v1 (sha256:"),
        ),
        (
            Outcome::FailOpen {
                allow: allow(),
                error: outage(),
            },
            audit::Verdict::FailOpen,
            ("fail_open", "internal"),
            true,
            Some(""),
        ),
        (
            Outcome::Standing {
                allow: allow(),
                signers: vec!["CN=a".into()].into(),
                error: outage(),
            },
            audit::Verdict::Standing,
            ("standing", "internal"),
            true,
            Some("the verdict expired and could not be renewed"),
        ),
        (
            Outcome::Denied(denial()),
            audit::Verdict::Deny,
            ("deny", "no_signature"),
            false,
            Some("image r.example/app:v1 (sha256:"),
        ),
        (
            Outcome::Error(GateError::Deadline),
            audit::Verdict::Error,
            ("error", "deadline"),
            false,
            Some("deadline exceeded"),
        ),
    ]
}

#[test]
fn the_answer_allows_exactly_the_allowed_kinds() {
    for (outcome, verdict, ..) in every_outcome() {
        let allowed = match outcome.into_decision() {
            Ok(Decision::Allow(_)) => true,
            Ok(Decision::Deny(_)) | Err(_) => false,
        };
        let expected = !matches!(verdict, audit::Verdict::Deny | audit::Verdict::Error);
        assert_eq!(allowed, expected, "{verdict:?}");
    }
}

#[test]
fn the_audit_verdict_follows_the_outcome() {
    for (outcome, verdict, _, allowed, _) in every_outcome() {
        assert_eq!(outcome.verdict(), verdict);
        assert_eq!(
            matches!(outcome.into_decision(), Ok(Decision::Allow(_))),
            allowed,
            "{verdict:?}"
        );
    }
}

/// `pullgate verify` exits 0 exactly when the pull would go ahead, 1 when
/// denied and 2 when no decision could be made.
#[test]
fn the_exit_status_follows_the_outcome() {
    for (outcome, verdict, _, allowed, _) in every_outcome() {
        let expected = match (allowed, &outcome) {
            (true, _) => 0,
            (false, Outcome::Error(_)) => 2,
            (false, _) => 1,
        };
        assert_eq!(outcome.exit_status(), expected, "{verdict:?}");
    }
}

#[test]
fn the_metric_labels_follow_the_outcome() {
    for (outcome, verdict, labels, ..) in every_outcome() {
        assert_eq!(outcome.metric_labels(), labels, "{verdict:?}");
    }
}

#[test]
fn the_audit_record_carries_verdict_reason_and_facts() {
    for (outcome, verdict, _, _, reason) in every_outcome() {
        let mut facts = Facts::new(&image(), "default", Origin::door(Door::Pull));
        facts.statement = Some("prod".into());
        facts.digest = Some(digest());
        let record = facts.record(&outcome);
        assert_eq!(record.verdict, verdict);
        assert_eq!(record.image, "r.example/app:v1");
        assert_eq!(record.statement.as_deref(), Some("prod"));
        assert_eq!(record.requirement.as_deref(), Some("default"));
        assert_eq!(record.digest, Some(digest().to_string()));
        match (reason, &record.reason) {
            (None, None) => {}
            (Some(start), Some(got)) => assert!(got.starts_with(start), "{verdict:?}: {got}"),
            (want, got) => panic!("{verdict:?}: reason {got:?}, expected {want:?}"),
        }
    }
}

/// A `MakeWriter` that keeps what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn every_outcome_logs_one_line_at_its_level() {
    for (outcome, verdict, ..) in every_outcome() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let mut facts = Facts::new(&image(), "default", Origin::door(Door::Pull));
        facts.digest = Some(digest());
        tracing::subscriber::with_default(subscriber, || outcome.log(&facts));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{verdict:?}: {text}");
        let level = match verdict {
            audit::Verdict::Allow | audit::Verdict::Skip | audit::Verdict::AuditAllow => "INFO",
            audit::Verdict::Deny
            | audit::Verdict::Error
            | audit::Verdict::WarnAllow
            | audit::Verdict::FailOpen
            | audit::Verdict::Standing
            | audit::Verdict::BreakGlass => "WARN",
        };
        assert!(text.trim_start().starts_with(level), "{verdict:?}: {text}");
    }
}

#[test]
fn a_denial_for_want_of_a_signature_names_the_signature_repository_it_looked_in() {
    let mut d = denial();
    assert!(!d.to_string().contains("looked up in"), "{d}");
    d.signatures_in = Some("r.example/sigs".parse().unwrap());
    assert!(
        d.to_string()
            .ends_with("(looked up in r.example/sigs, the scope's signature_repository)"),
        "{d}"
    );
    // Another reason: the signatures were found, so where is not the news.
    d.reason = DenyReason::NoApplicableStatement {
        repository: image().repository().clone(),
    };
    assert!(!d.to_string().contains("looked up in"), "{d}");
}
