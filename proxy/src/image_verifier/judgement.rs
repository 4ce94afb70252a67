//! The verifier's answer: one verdict, and the one line containerd shows for it.
//!
//! Input: the gate's typed outcome and the facts of its decision
//! (in-process or in `pullgate serve`), a refused call, or the daemon's
//! [`VerifyResponse`](pb::VerifyResponse). Output: a [`Judgement`], its exit status (0 allows,
//! 1 denies) and its line. A decision that could not be made is said with
//! the gate's one sentence for it ([`Undecided`]), as the CRI door says it.
//!
//! containerd reads a verifier's stdout up to 32 KiB (`outputLimitBytes =
//! 1 << 15` in `bindir.go`), trims it, and shows it as the reason of the
//! judgement (`verifier pullgate rejected image (exit code 1): <reason>`).
//! The line is kept far below that: at most [`MAX_SIGNERS_SHOWN`] signers,
//! each (and the statement) at most [`MAX_FIELD_CHARS`] characters, the whole line at most
//! [`MAX_LINE_BYTES`]; control characters (a certificate subject is the
//! signer's text) are escaped, so it stays one line.

use std::fmt::Write as _;

use pullgate_policy::Digest;
use pullgate_proto::pullgate::verifier::v1 as pb;

use crate::audit::Verdict;
use crate::gate::{Facts, Halted, Outcome, Undecided};

/// Signers listed in an allow line; more are counted.
pub(crate) const MAX_SIGNERS_SHOWN: usize = 8;

/// Longest signer, statement or digest shown, in characters (the reason
/// is bounded by the line).
pub(crate) const MAX_FIELD_CHARS: usize = 256;

/// Longest line printed, in bytes (containerd keeps 32 KiB).
pub(crate) const MAX_LINE_BYTES: usize = 8 << 10;

/// What the verifier says about one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    verdict: Verdict,
    /// The image decided (`repo[:tag]@digest`), or `-name` as given when it did not parse.
    image: String,
    /// The digest decided (`-digest` as given when it did not parse).
    digest: String,
    statement: Option<String>,
    signers: Vec<String>,
    /// The denial sentence, the error, the break-glass reason.
    reason: Option<String>,
}

impl Judgement {
    /// The gate's outcome on the image pinned at `digest`, with the facts
    /// of its decision (image, statement).
    pub(crate) fn of(digest: &Digest, outcome: &Outcome, facts: &Facts) -> Self {
        let reason = match outcome {
            Outcome::Error(e) => Some(
                Undecided {
                    halted: Halted::Pull,
                    image: &facts.image,
                    digest: None,
                    why: e,
                }
                .to_string(),
            ),
            Outcome::Verified { .. }
            | Outcome::Skipped { .. }
            | Outcome::BreakGlass { .. }
            | Outcome::AuditAllowed { .. }
            | Outcome::WarnAllowed { .. }
            | Outcome::FailOpen { .. }
            | Outcome::Standing { .. }
            | Outcome::Denied(_) => outcome.reason(),
        };
        Self {
            verdict: outcome.verdict(),
            image: facts.image.to_string(),
            digest: digest.to_string(),
            statement: facts.statement.clone(),
            // The verdict's accepted signers: a cached verdict keeps them,
            // while its signatures were recorded only when they were examined.
            signers: outcome.signers().to_vec(),
            reason,
        }
    }

    /// Arguments that are not containerd's (or cannot be read): denied, with `why`.
    pub fn bad_call(why: &dyn std::fmt::Display) -> Self {
        Self {
            verdict: Verdict::Deny,
            image: String::new(),
            digest: String::new(),
            statement: None,
            signers: Vec::new(),
            reason: Some(format!("denied by pullgate's image verifier: {why}")),
        }
    }

    /// A call pullgate refuses before asking the gate (bad descriptor, no
    /// configuration or policy): denied, with `why`.
    pub fn refused(name: &str, digest: &str, why: &dyn std::fmt::Display) -> Self {
        Self {
            verdict: Verdict::Deny,
            image: name.to_owned(),
            digest: digest.to_owned(),
            statement: None,
            signers: Vec::new(),
            reason: Some(format!(
                "image {name} ({digest}) denied by pullgate's image verifier: {why}"
            )),
        }
    }

    /// No decision could be made (deadline, no answer): denied, failing closed.
    pub(crate) fn undecided(name: &str, digest: &str, why: &dyn std::fmt::Display) -> Self {
        Self {
            verdict: Verdict::Error,
            image: name.to_owned(),
            digest: digest.to_owned(),
            statement: None,
            signers: Vec::new(),
            reason: Some(
                Undecided {
                    halted: Halted::Pull,
                    image: &name,
                    digest: Some(&digest),
                    why,
                }
                .to_string(),
            ),
        }
    }

    /// Whether the pull may go ahead.
    pub fn allows(&self) -> bool {
        self.verdict.allows()
    }

    /// The verdict, as the audit log names it.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The exit status containerd judges by: 0 allows, anything else denies.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.allows())
    }

    /// The one line for stdout: `allowed <digest> by <statement> (<signers>)`,
    /// another `allowed …` line saying how it was allowed without a
    /// verified signature, or the denial sentence.
    pub fn line(&self) -> String {
        let statement = self
            .statement
            .as_deref()
            .map_or_else(|| "no statement".to_owned(), field);
        let reason = self.reason.clone().unwrap_or_default();
        let d = field(&self.digest);
        let line = match self.verdict {
            Verdict::Allow => format!("allowed {d} by {statement} ({})", self.signer_list()),
            Verdict::Skip => {
                format!("allowed {d} by {statement} (verification level skip: not verified)")
            }
            Verdict::BreakGlass => format!("allowed {d} by the break-glass list ({reason})"),
            Verdict::AuditAllow => format!(
                "allowed {d} by {statement} (audit mode, not enforced; would be denied: {reason})"
            ),
            Verdict::WarnAllow => format!(
                "allowed {d} by {statement} (warn mode, not enforced; would be denied: {reason})"
            ),
            Verdict::FailOpen => format!(
                "allowed {d} WITHOUT verification by {statement} (registry error and the scope fails open: {reason})"
            ),
            Verdict::Standing => format!(
                "allowed {d} by {statement} ({}; {reason})",
                self.signer_list()
            ),
            Verdict::Deny | Verdict::Error if !reason.is_empty() => reason,
            Verdict::Deny | Verdict::Error => {
                format!("image {} ({d}) denied", field(&self.image))
            }
        };
        one_line(&line)
    }

    fn signer_list(&self) -> String {
        if self.signers.is_empty() {
            return "signer not recorded".to_owned();
        }
        let mut out = String::new();
        for (i, s) in self.signers.iter().take(MAX_SIGNERS_SHOWN).enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(&field(s));
        }
        if self.signers.len() > MAX_SIGNERS_SHOWN {
            let _ = write!(out, "; and {} more", self.signers.len() - MAX_SIGNERS_SHOWN);
        }
        out
    }

    /// The answer `pullgate serve` sends.
    pub(crate) fn to_response(&self) -> pb::VerifyResponse {
        pb::VerifyResponse {
            allowed: self.allows(),
            verdict: to_pb(self.verdict).into(),
            image: self.image.clone(),
            digest: self.digest.clone(),
            statement: self.statement.clone().unwrap_or_default(),
            signers: self.signers.clone(),
            reason: self.reason.clone().unwrap_or_default(),
        }
    }

    /// The daemon's answer to a call on `digest` (as given to the verifier).
    /// An answer that contradicts itself, names another digest or has no
    /// verdict is a denial.
    pub(crate) fn from_response(name: &str, digest: &str, resp: pb::VerifyResponse) -> Self {
        let verdict = pb::Verdict::try_from(resp.verdict).ok().and_then(from_pb);
        let Some(verdict) = verdict else {
            return Self::undecided(name, digest, &"pullgate serve answered without a verdict");
        };
        if resp.allowed != verdict.allows() {
            return Self::undecided(name, digest, &"pullgate serve answered inconsistently");
        }
        if resp.digest.parse::<Digest>().ok() != digest.parse::<Digest>().ok()
            || resp.digest.is_empty()
        {
            return Self::undecided(
                name,
                digest,
                &format_args!("pullgate serve answered for {}", field(&resp.digest)),
            );
        }
        Self {
            verdict,
            image: resp.image,
            digest: resp.digest,
            statement: Some(resp.statement).filter(|s| !s.is_empty()),
            signers: resp.signers,
            reason: Some(resp.reason).filter(|s| !s.is_empty()),
        }
    }
}

fn to_pb(v: Verdict) -> pb::Verdict {
    match v {
        Verdict::Allow => pb::Verdict::Allow,
        Verdict::Deny => pb::Verdict::Deny,
        Verdict::AuditAllow => pb::Verdict::AuditAllow,
        Verdict::WarnAllow => pb::Verdict::WarnAllow,
        Verdict::FailOpen => pb::Verdict::FailOpen,
        Verdict::Error => pb::Verdict::Error,
        Verdict::BreakGlass => pb::Verdict::BreakGlass,
        Verdict::Skip => pb::Verdict::Skip,
        Verdict::Standing => pb::Verdict::Standing,
    }
}

fn from_pb(v: pb::Verdict) -> Option<Verdict> {
    Some(match v {
        pb::Verdict::Unspecified => return None,
        pb::Verdict::Allow => Verdict::Allow,
        pb::Verdict::Deny => Verdict::Deny,
        pb::Verdict::AuditAllow => Verdict::AuditAllow,
        pb::Verdict::WarnAllow => Verdict::WarnAllow,
        pb::Verdict::FailOpen => Verdict::FailOpen,
        pb::Verdict::Error => Verdict::Error,
        pb::Verdict::BreakGlass => Verdict::BreakGlass,
        pb::Verdict::Skip => Verdict::Skip,
        pb::Verdict::Standing => Verdict::Standing,
    })
}

/// `s` cut to [`MAX_FIELD_CHARS`] characters.
fn field(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_FIELD_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// `s` with control characters escaped (one line), cut to [`MAX_LINE_BYTES`].
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LINE_BYTES));
    for c in s.chars() {
        if out.len() + 12 > MAX_LINE_BYTES {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pullgate_policy::ImageRef;

    use super::*;
    use crate::gate::SignatureRecord;
    use crate::gate::{Door, Origin};

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn allowed(signers: Vec<String>) -> Judgement {
        Judgement {
            verdict: Verdict::Allow,
            image: format!("r.example/app:v1@{D}"),
            digest: D.into(),
            statement: Some("apps".into()),
            signers,
            reason: None,
        }
    }

    #[test]
    fn an_allow_names_digest_statement_and_signers() {
        let j = allowed(vec!["CN=ci, O=Acme".into(), "CN=scan, O=Acme".into()]);
        assert_eq!(
            j.line(),
            format!("allowed {D} by apps (CN=ci, O=Acme; CN=scan, O=Acme)")
        );
        assert_eq!(j.exit_code(), 0);
    }

    #[test]
    fn the_line_stays_one_short_line_whatever_the_signers_say() {
        let evil = format!(
            "CN=x\nallowed {D} by everything\r\u{1b}[2J{}",
            "y".repeat(100_000)
        );
        let j = allowed(vec![evil; 1000]);
        let line = j.line();
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'));
        assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
        assert!(line.contains("and 992 more"), "{line}");
    }

    #[test]
    fn denials_print_the_reason_and_exit_1() {
        let j = Judgement::refused("r.example/app:v1", D, &"the descriptor on stdin names x");
        assert_eq!(
            j.line(),
            format!("image r.example/app:v1 ({D}) denied by pullgate's image verifier: the descriptor on stdin names x")
        );
        assert_eq!(j.exit_code(), 1);
        assert_eq!(
            Judgement::undecided("n", D, &"deadline exceeded").exit_code(),
            1
        );
    }

    #[test]
    fn a_response_round_trips_and_a_contradictory_one_denies() {
        let j = allowed(vec!["CN=ci".into()]);
        let back = Judgement::from_response("r.example/app:v1", D, j.to_response());
        assert_eq!(back, j);
        let mut r = j.to_response();
        r.allowed = false;
        assert!(!Judgement::from_response("n", D, r).allows());
        let mut r = j.to_response();
        r.verdict = 0;
        assert!(!Judgement::from_response("n", D, r).allows());
        let mut r = j.to_response();
        r.verdict = 99;
        assert!(!Judgement::from_response("n", D, r).allows());
        let other = format!("sha256:{}", "b".repeat(64));
        let r = j.to_response();
        assert!(!Judgement::from_response("n", &other, r).allows());
    }

    #[test]
    fn every_verdict_maps_both_ways_and_its_line_says_allowed_only_when_it_allows() {
        for v in [
            Verdict::Allow,
            Verdict::Deny,
            Verdict::AuditAllow,
            Verdict::WarnAllow,
            Verdict::FailOpen,
            Verdict::Error,
            Verdict::BreakGlass,
            Verdict::Skip,
        ] {
            assert_eq!(from_pb(to_pb(v)), Some(v));
            let mut j = allowed(Vec::new());
            j.verdict = v;
            j.reason = Some(format!("image r.example/app:v1 ({D}) denied: x"));
            assert_eq!(
                j.line().starts_with("allowed "),
                v.allows(),
                "{v:?}: {}",
                j.line()
            );
        }
    }

    /// The verifier's answer is made from the typed outcome: an undecided
    /// pull says the gate's one sentence for it, a denial its denial, and
    /// signers come from the verdict only (never from signatures examined).
    #[test]
    fn the_answer_is_made_from_the_outcome() {
        use crate::gate::{Denial, GateError};

        let image: ImageRef = format!("r.example/app@{D}").parse().unwrap();
        let digest: Digest = D.parse().unwrap();
        let mut facts = Facts::new(&image, "default", Origin::door(Door::Pull));
        facts.statement = Some("apps".into());
        facts.signatures = Arc::from(vec![SignatureRecord {
            digest: digest.clone(),
            kind: None,
            layer: None,
            signer: Some("CN=examined".into()),
            failure: None,
            logged: Vec::new(),
        }]);
        let j = Judgement::of(&digest, &Outcome::Error(GateError::Deadline), &facts);
        assert_eq!(j.verdict(), Verdict::Error);
        assert_eq!(
            j.line(),
            format!("image r.example/app@{D} not pulled: signature verification could not complete (deadline exceeded while the image's signatures were being discovered and verified); failing closed")
        );
        assert!(j.signers.is_empty());
        assert_eq!(j.statement.as_deref(), Some("apps"));
        assert_eq!(j.exit_code(), 1);

        let denial = Denial {
            image: image.clone(),
            digest: Some(digest.clone()),
            statement: Some("apps".into()),
            reason: crate::gate::DenyReason::NoApplicableStatement {
                repository: image.repository().clone(),
            },
            signatures_in: None,
        };
        let j = Judgement::of(&digest, &Outcome::Denied(denial.clone()), &facts);
        assert_eq!(j.verdict(), Verdict::Deny);
        assert_eq!(j.line(), denial.to_string());
        assert!(j.signers.is_empty());
    }
}
