//! `pullgate verify IMAGE`: the gate's whole decision for one image.
//!
//! `verify` runs the gate's whole decision for one image without the cache
//! and without pulling, examining every signature. Exit status: 0 when the
//! pull would go ahead (including `audit`/`warn` scopes, break-glass and
//! fail-open, each printed as such), 1 when denied, 2 when no decision could
//! be made.

use std::fmt::Write as _;

use crate::audit::{DecisionRecord, Verdict};

/// How `verify` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Lines for a person.
    Text,
    /// The audit record as one JSON document.
    Json,
}

/// The exit status `pullgate verify` ends with for `record`: 0 when the pull
/// would go ahead, 1 denied, 2 undecided. Every verdict is named: a new kind
/// of outcome must be given its status here, never default to "allowed".
pub fn exit_status(record: &DecisionRecord) -> u8 {
    match record.verdict {
        Verdict::Allow
        | Verdict::Skip
        | Verdict::BreakGlass
        | Verdict::AuditAllow
        | Verdict::WarnAllow
        | Verdict::FailOpen => 0,
        Verdict::Deny => 1,
        Verdict::Error => 2,
    }
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
    fn exit_status_follows_the_verdict() {
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
        };
        for (v, code) in [
            (Verdict::Allow, 0),
            (Verdict::AuditAllow, 0),
            (Verdict::WarnAllow, 0),
            (Verdict::BreakGlass, 0),
            (Verdict::FailOpen, 0),
            (Verdict::Skip, 0),
            (Verdict::Deny, 1),
            (Verdict::Error, 2),
        ] {
            assert_eq!(exit_status(&record(v)), code, "{v:?}");
        }
        assert!(render(&record(Verdict::WarnAllow), Output::Text).contains("warn mode"));
    }
}
