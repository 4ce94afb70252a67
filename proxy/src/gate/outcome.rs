//! The one typed outcome of deciding a pull, and everything made from it.
//!
//! Input: the [`Outcome`] deciding returned, with the [`Facts`] learnt on
//! the way (statement, requirements scope, digest, signatures examined).
//! Output, each built by exactly one function with an exhaustive `match`:
//! the answer to the CRI client ([`Outcome::into_decision`], which
//! `cri::status` words), the audit record's verdict ([`Outcome::verdict`])
//! and the record itself ([`Facts::record`]), the metrics labels
//! ([`Outcome::metric_labels`]), the log line ([`Outcome::log`]) and
//! `pullgate verify`'s exit status ([`Outcome::exit_status`]). The image
//! verifier's answer (`image_verifier::Judgement::of`) is made from the
//! outcome and its facts too. The sentences a person reads have one
//! `Display` each: the denial ([`Denial`]), a decision that could not be
//! made (`Undecided`), the error behind it ([`GateError`]).
//!
//! [`Facts`] is the one place per-request context lives (image, scope,
//! statement, digest, signatures, cache hit): whatever a door adds to a
//! request is recorded there.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pullgate_policy::{Digest, ImageRef};

use super::decision::{Allow, Decision, Denial, GateError, SignatureRecord, Signers};
use super::origin::Origin;
use crate::audit::{self, DecisionRecord};

/// What became of one pull.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The signatures meet the policy: pulled pinned to the digest.
    Verified {
        allow: Allow,
        /// The accepted signers' subjects.
        signers: Signers,
    },
    /// The trust policy statement's level is `skip`: forwarded unverified.
    Skipped { allow: Allow },
    /// The digest is on the break-glass list: allowed unverified.
    BreakGlass {
        allow: Allow,
        /// The operator's reason, from the requirements file.
        reason: String,
    },
    /// Would have been denied; allowed because the scope's mode is `audit`.
    AuditAllowed { allow: Allow, denial: Denial },
    /// Would have been denied; allowed because the scope's mode is `warn`.
    WarnAllowed { allow: Allow, denial: Denial },
    /// The registry could not be reached and the scope fails open: allowed unverified.
    FailOpen { allow: Allow, error: GateError },
    /// A runtime door (`CreateContainer`, `RunPodSandbox`): the verdict
    /// expired and the registry could not be reached to renew it, but an
    /// allow of the same key (statement, scope, repository, digest, policy
    /// generation) stands: the container may (re)start (see `standing`).
    Standing {
        allow: Allow,
        /// The signers of the allow that stands.
        signers: Signers,
        error: GateError,
    },
    /// The policy says no.
    Denied(Denial),
    /// No decision could be made; the pull fails closed.
    Error(GateError),
}

impl Outcome {
    /// The answer to the client: an allow to forward, a denial, or an error that fails closed.
    pub(crate) fn into_decision(self) -> Result<Decision, GateError> {
        match self {
            Self::Verified { allow, .. }
            | Self::Skipped { allow }
            | Self::BreakGlass { allow, .. }
            | Self::AuditAllowed { allow, .. }
            | Self::WarnAllowed { allow, .. }
            | Self::FailOpen { allow, .. }
            | Self::Standing { allow, .. } => Ok(Decision::Allow(allow)),
            Self::Denied(denial) => Ok(Decision::Deny(denial)),
            Self::Error(e) => Err(e),
        }
    }

    /// The verdict of the audit record (and of `pullgate verify`).
    pub(crate) fn verdict(&self) -> audit::Verdict {
        match self {
            Self::Verified { .. } => audit::Verdict::Allow,
            Self::Skipped { .. } => audit::Verdict::Skip,
            Self::BreakGlass { .. } => audit::Verdict::BreakGlass,
            Self::AuditAllowed { .. } => audit::Verdict::AuditAllow,
            Self::WarnAllowed { .. } => audit::Verdict::WarnAllow,
            Self::FailOpen { .. } => audit::Verdict::FailOpen,
            Self::Standing { .. } => audit::Verdict::Standing,
            Self::Denied(_) => audit::Verdict::Deny,
            Self::Error(_) => audit::Verdict::Error,
        }
    }

    /// The exit status of `pullgate verify`: 0 when the pull would go
    /// ahead, 1 denied, 2 undecided.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            Self::Verified { .. }
            | Self::Skipped { .. }
            | Self::BreakGlass { .. }
            | Self::AuditAllowed { .. }
            | Self::WarnAllowed { .. }
            | Self::FailOpen { .. }
            | Self::Standing { .. } => 0,
            Self::Denied(_) => 1,
            Self::Error(_) => 2,
        }
    }

    /// `(verdict, reason)` of `pullgate_decisions_total`: small closed sets.
    pub(crate) fn metric_labels(&self) -> (&'static str, &'static str) {
        match self {
            Self::Verified { .. } => ("allow", "verified"),
            Self::Skipped { .. } => ("skip", "skip"),
            Self::BreakGlass { .. } => ("break_glass", "break_glass"),
            Self::AuditAllowed { denial, .. } => ("audit", denial.reason.label()),
            Self::WarnAllowed { denial, .. } => ("warn", denial.reason.label()),
            Self::FailOpen { error, .. } => ("fail_open", error.kind()),
            Self::Standing { error, .. } => ("standing", error.kind()),
            Self::Denied(denial) => ("deny", denial.reason.label()),
            Self::Error(error) => ("error", error.kind()),
        }
    }

    /// The accepted signers: those of a verified allow, none otherwise.
    pub(crate) fn signers(&self) -> &[String] {
        match self {
            Self::Verified { signers, .. } | Self::Standing { signers, .. } => signers,
            Self::Skipped { .. }
            | Self::BreakGlass { .. }
            | Self::AuditAllowed { .. }
            | Self::WarnAllowed { .. }
            | Self::FailOpen { .. }
            | Self::Denied(_)
            | Self::Error(_) => &[],
        }
    }

    /// Why, as the audit record says it: the denial text, the error, the break-glass reason.
    pub(crate) fn reason(&self) -> Option<String> {
        match self {
            Self::Verified { .. } | Self::Skipped { .. } => None,
            Self::BreakGlass { reason, .. } => Some(reason.clone()),
            Self::AuditAllowed { denial, .. }
            | Self::WarnAllowed { denial, .. }
            | Self::Denied(denial) => Some(denial.to_string()),
            Self::FailOpen { error, .. } | Self::Error(error) => Some(error.to_string()),
            Self::Standing { error, .. } => Some(format!(
                "the verdict expired and could not be renewed ({error}); an allow of the same statement, scope and policy stands"
            )),
        }
    }

    /// Logs the outcome: one line per decision, at debug for an allow
    /// served from the cache, else at info or warn.
    pub(crate) fn log(&self, facts: &Facts) {
        let image = &facts.image;
        // Formatted only if the line is written (a hot pull's is not).
        let digest = DigestOrUnresolved(facts.digest.as_ref());
        let statement = facts.statement.as_deref().unwrap_or("none");
        let requirement = facts.requirement.as_str();
        match self {
            // A hot pull writes no log line at info: the write to stderr
            // (journald) was a third of pullgate's own time on a hot pull.
            // The audit log and the decision metrics still count each one.
            Self::Verified { signers, .. } if facts.cached => tracing::debug!(%image, %digest,
                ?signers, statement, cached = true, "allowed"),
            Self::Verified { signers, .. } => tracing::info!(%image, %digest, ?signers,
                statement, cached = false, "allowed"),
            Self::Skipped { .. } => tracing::info!(%image, statement,
                "verification level skip: forwarding unverified"),
            Self::BreakGlass { reason, .. } => tracing::warn!(%image, %digest, reason,
                "break-glass digest: allowed without verification"),
            Self::AuditAllowed { denial, .. } => {
                tracing::info!(
                    requirement,
                    "audit mode, allowed; would have been: {denial}"
                );
            }
            Self::WarnAllowed { denial, .. } => {
                tracing::warn!(requirement, "warn mode, allowed; would have been: {denial}");
            }
            Self::FailOpen { error, .. } => tracing::warn!(%image, %error,
                "registry error; scope is fail_open: allowed WITHOUT verification"),
            Self::Standing { error, .. } => tracing::warn!(%image, %digest, statement,
                requirement, door = %facts.origin.door, %error,
                "verdict expired and the registry cannot be reached: allowed on the standing allow of the same statement, scope and policy"),
            Self::Denied(denial) => tracing::warn!("{denial}"),
            Self::Error(error) => tracing::warn!(%image, %digest, %error,
                "no decision could be made: failing closed"),
        }
    }
}

/// A digest for a log line, or `unresolved`; formatted when written.
struct DigestOrUnresolved<'a>(Option<&'a Digest>);

impl fmt::Display for DigestOrUnresolved<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => fmt::Display::fmt(d, f),
            None => f.write_str("unresolved"),
        }
    }
}

/// What deciding learnt on the way, for the audit record and the log line.
#[derive(Debug)]
pub(crate) struct Facts {
    /// When deciding started (milliseconds since the Unix epoch).
    ts_unix_ms: u64,
    started: Instant,
    pub(crate) image: ImageRef,
    /// The trust policy statement that applied, once found.
    pub(crate) statement: Option<String>,
    /// The requirements scope that applied.
    pub(crate) requirement: String,
    /// The manifest digest, once resolved.
    pub(crate) digest: Option<Digest>,
    /// The signatures examined for this decision (none when the verdict came from the cache).
    pub(crate) signatures: Arc<[SignatureRecord]>,
    /// Whether the verdict came from the cache.
    pub(crate) cached: bool,
    /// The door and pod the question came from.
    pub(crate) origin: Origin,
}

impl Facts {
    /// Facts about deciding `image` under the requirements scope `requirement`, starting now.
    pub(crate) fn new(image: &ImageRef, requirement: &str, origin: Origin) -> Self {
        Self {
            ts_unix_ms: unix_ms(),
            started: Instant::now(),
            image: image.clone(),
            statement: None,
            requirement: requirement.to_owned(),
            digest: None,
            signatures: Arc::from(Vec::new()),
            cached: false,
            origin,
        }
    }

    /// The audit record of `outcome`.
    pub(crate) fn record(&self, outcome: &Outcome) -> DecisionRecord {
        DecisionRecord {
            ts_unix_ms: self.ts_unix_ms,
            image: self.image.to_string(),
            digest: self.digest.as_ref().map(ToString::to_string),
            statement: self.statement.clone(),
            requirement: Some(self.requirement.clone()),
            verdict: outcome.verdict(),
            reason: outcome.reason(),
            signatures: self.signatures.iter().map(SignatureRecord::entry).collect(),
            signers: outcome.signers().to_vec(),
            cached: self.cached,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            door: self.origin.door.as_str().to_owned(),
            namespace: self.origin.pod.as_ref().map(|p| p.namespace().to_owned()),
            pod: self.origin.pod.as_ref().map(|p| p.name().to_owned()),
        }
    }
}

/// Milliseconds since the Unix epoch (for audit records; only the gate reads the clock).
fn unix_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
