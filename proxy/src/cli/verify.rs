//! `pullgate verify IMAGE`: the gate's whole decision for one image.
//!
//! `verify` runs the gate's whole decision for one image without the cache
//! and without pulling, examining every signature. Exit status (made from
//! the gate's typed outcome, `Outcome::exit_status`): 0 when the pull would
//! go ahead (including `audit`/`warn` scopes, break-glass and
//! fail-open, each printed as such), 1 when denied, 2 when no decision could
//! be made.

use std::fmt::Write as _;
use std::time::Duration;

use pullgate_policy::ImageRef;

use crate::audit::{DecisionRecord, Verdict};
use crate::gate::Gate;

/// How `verify` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Lines for a person.
    Text,
    /// The audit record as one JSON document.
    Json,
}

/// `pullgate verify`: decides `image` as a pull would be decided, without
/// the cache and examining every signature, and returns what to print (the
/// audit record as `output` says) and the exit status, made from the typed
/// outcome (`0` the pull would go ahead, `1` denied, `2` undecided).
pub async fn verify(
    gate: &Gate,
    image: &ImageRef,
    budget: Duration,
    output: Output,
) -> (String, u8) {
    let (outcome, record) = gate.inspect(image, budget).await;
    (render(&record, output), outcome.exit_status())
}

/// Renders a decision for `pullgate verify`.
pub fn render(record: &DecisionRecord, output: Output) -> String {
    if output == Output::Json {
        return serde_json::to_string_pretty(record).unwrap_or_default();
    }
    let mut out = String::new();
    let _ = writeln!(out, "image:     {}", record.image);
    if let Some(d) = &record.digest {
        let _ = writeln!(out, "digest:    {d}");
    }
    if let Some(s) = &record.statement {
        let _ = writeln!(out, "statement: {s}");
    }
    if let Some(r) = &record.requirement {
        let _ = writeln!(out, "scope:     {r}");
    }
    let _ = writeln!(out, "signatures: {}", record.signatures.len());
    for s in &record.signatures {
        let signer = s.signer.as_deref().unwrap_or("unknown signer");
        let mut what = String::new();
        if let Some(kind) = &s.kind {
            let _ = write!(what, "{kind} ");
        }
        what.push_str(&s.digest);
        if let Some(layer) = s.layer {
            let _ = write!(what, " layer {layer}");
        }
        match &s.reason {
            None => {
                let _ = writeln!(out, "  PASS {what} signed by {signer}");
            }
            Some(why) => {
                let _ = writeln!(out, "  FAIL {what} ({signer}): {why}");
            }
        }
    }
    let verdict = match record.verdict {
        Verdict::Allow => "allowed",
        Verdict::Deny => "denied",
        Verdict::AuditAllow => "allowed (audit mode: would be denied)",
        Verdict::WarnAllow => "allowed (warn mode: would be denied)",
        Verdict::FailOpen => "allowed WITHOUT verification (registry error, scope fails open)",
        Verdict::Error => "no decision (fails closed)",
        Verdict::BreakGlass => "allowed (break-glass digest)",
        Verdict::Skip => "allowed (verification level skip)",
        Verdict::Standing => "allowed on a standing allow (verdict expired, registry unreachable)",
    };
    let _ = writeln!(out, "verdict:   {verdict}");
    if let Some(r) = &record.reason {
        let _ = writeln!(out, "reason:    {r}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_is_rendered_in_words() {
        let record = |verdict| DecisionRecord {
            ts_unix_ms: 0,
            image: "r.example/app:v1".into(),
            digest: None,
            statement: None,
            requirement: None,
            verdict,
            reason: None,
            signatures: Vec::new(),
            signers: Vec::new(),
            cached: false,
            duration_ms: 0.0,
            door: "cli".into(),
            namespace: None,
            pod: None,
        };
        for (v, words) in [
            (Verdict::Allow, "verdict:   allowed\n"),
            (Verdict::AuditAllow, "audit mode"),
            (Verdict::WarnAllow, "warn mode"),
            (Verdict::BreakGlass, "break-glass"),
            (Verdict::FailOpen, "WITHOUT verification"),
            (Verdict::Skip, "level skip"),
            (Verdict::Deny, "verdict:   denied"),
            (Verdict::Error, "no decision (fails closed)"),
        ] {
            assert!(render(&record(v), Output::Text).contains(words), "{v:?}");
        }
    }
}
