//! Deciding one pull: scope → resolve → break-glass → cache (single flight
//! over [`VerifyJob`]) → the scope's mode and fail mode.
//!
//! Input: a [`PullRequest`]. Output: the [`Outcome`] of the decision, from
//! which [`Gate::decide`] and [`Gate::inspect`] take the answer, the audit
//! record and the metrics labels.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pullgate_policy::{Digest, FailMode, ImageRef, Level, Mode};

use super::decision::{
    Allow, Decision, Denial, DenyReason, GateError, PullRequest, SignatureRecord, Verdict,
};
use super::key::VerdictKey;
use super::verify_digest::VerifyJob;
use super::Gate;
use crate::audit::{self, DecisionRecord};
use crate::cache::{Lookup, WaitError};
use crate::metrics::Phase;

/// How the gate is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// A `PullImage`: cached, single flight, stops at the first good signature when that is enough.
    Pull,
    /// `pullgate verify`: no cache, every signature examined.
    Inspect,
}

/// What [`Gate::decide_inner`] learnt, for metrics and the audit log.
pub(super) struct Outcome {
    pub(super) result: Result<Decision, GateError>,
    pub(super) record: DecisionRecord,
    pub(super) reason_label: &'static str,
}

impl Gate {
    pub(super) async fn decide_inner(&self, req: PullRequest, flow: Flow) -> Outcome {
        let started = Instant::now();
        let policy = self.policy();
        let image = req.image.clone();
        let repository = req.image.repository().clone();
        let requirement = policy.requirements.for_repository(&repository);
        let mut record = DecisionRecord {
            ts_unix_ms: unix_ms(),
            image: image.to_string(),
            digest: None,
            statement: None,
            requirement: Some(requirement.name().to_owned()),
            verdict: audit::Verdict::Allow,
            reason: None,
            signatures: Vec::new(),
            cached: false,
            duration_ms: 0.0,
        };
        let done = |mut record: DecisionRecord,
                    result: Result<Decision, GateError>,
                    reason_label: &'static str| {
            record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            Outcome {
                result,
                record,
                reason_label,
            }
        };
        let Some(statement) = policy.document.statement_for(&repository) else {
            let denial = Denial {
                image: req.image,
                digest: None,
                statement: None,
                reason: DenyReason::NoApplicableStatement { repository },
            };
            let (r, label) = self.apply_mode(requirement, denial, None, &mut record);
            return done(record, r, label);
        };
        record.statement = Some(statement.name().to_owned());
        if statement.level() == Level::Skip {
            tracing::info!(image = %req.image, statement = statement.name(),
                "verification level skip: forwarding unchanged");
            record.verdict = audit::Verdict::Skip;
            let allow = Allow {
                pin: None,
                tagged: None,
            };
            return done(record, Ok(Decision::Allow(allow)), "skip");
        }
        let t = Instant::now();
        let resolved = self
            .registry
            .resolve(&req.image, &req.credentials, req.deadline)
            .await;
        self.metrics.phase(Phase::resolve, t.elapsed());
        let digest = match resolved {
            Ok(r) => r.digest,
            Err(e) => {
                let (r, label) = self.on_error(
                    requirement.on_registry_error(),
                    &req.image,
                    None,
                    e.into(),
                    &mut record,
                );
                return done(record, r, label);
            }
        };
        record.digest = Some(digest.to_string());
        if let Some(glass) = policy.requirements.break_glass(&digest) {
            tracing::warn!(image = %req.image, %digest, reason = glass.reason,
                "break-glass digest: allowed without verification");
            record.verdict = audit::Verdict::BreakGlass;
            record.reason = Some(glass.reason.clone());
            let allow = Allow {
                tagged: tag_to_create(&req.image),
                pin: Some(req.image.pinned(digest)),
            };
            return done(record, Ok(Decision::Allow(allow)), "break_glass");
        }
        let job = VerifyJob {
            registry: self.registry.clone(),
            policy: Arc::clone(&policy),
            metrics: Arc::clone(&self.metrics),
            statement: statement.name().to_owned(),
            repository,
            digest: digest.clone(),
            credentials: req.credentials,
            limits: self.limits,
            permits: Arc::clone(&self.permits),
            allow_ttl: self.allow_ttl,
            deny_ttl: self.deny_ttl,
            budget: self.budget,
            exhaustive: flow == Flow::Inspect,
            revocation: self.revocation.clone(),
            aws_signer: self.aws_signer.clone(),
        };
        let computed = match flow {
            Flow::Pull => {
                let Some(key) = VerdictKey::new(
                    &policy.document,
                    &policy.requirements,
                    statement,
                    requirement,
                    digest.clone(),
                    policy.generation,
                ) else {
                    let (r, label) = self.on_error(
                        requirement.on_registry_error(),
                        &req.image,
                        Some(digest),
                        GateError::Internal("statement not of the policy in force"),
                        &mut record,
                    );
                    return done(record, r, label);
                };
                self.cache
                    .get_or_compute(key, req.deadline, move || job.run())
                    .await
                    .map_err(|e| match e {
                        WaitError::Failed(e) => GateError::clone(&e),
                        WaitError::LeaderGone => {
                            GateError::Internal("verification task ended without a result")
                        }
                        WaitError::Deadline(_) => GateError::Deadline,
                    })
            }
            Flow::Inspect => match req.deadline.run(job.run()).await {
                Ok(r) => r.map(|e| (e.value, Lookup::Miss)),
                Err(_) => Err(GateError::Deadline),
            },
        };
        let (verdict, lookup) = match computed {
            Ok(v) => v,
            Err(e) => {
                let (r, label) = self.on_error(
                    requirement.on_registry_error(),
                    &req.image,
                    Some(digest),
                    e,
                    &mut record,
                );
                return done(record, r, label);
            }
        };
        let cached = lookup == Lookup::Hit;
        if flow == Flow::Pull {
            self.metrics.cache_lookup(cached);
        }
        record.cached = cached;
        record.signatures = verdict
            .signatures()
            .iter()
            .map(SignatureRecord::entry)
            .collect();
        let statement = statement.name().to_owned();
        match &*verdict {
            Verdict::Allowed { signers, .. } => {
                if !cached {
                    self.new_allows
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tracing::info!(image = %req.image, %digest, signers = ?signers, statement,
                    cached, "allowed");
                let allow = Allow {
                    tagged: tag_to_create(&req.image),
                    pin: Some(req.image.pinned(digest)),
                };
                done(record, Ok(Decision::Allow(allow)), "verified")
            }
            Verdict::Denied { reason, .. } => {
                let denial = Denial {
                    image: req.image,
                    digest: Some(digest.clone()),
                    statement: Some(statement),
                    reason: reason.clone(),
                };
                let (r, label) = self.apply_mode(requirement, denial, Some(digest), &mut record);
                done(record, r, label)
            }
        }
    }

    /// A denial under the scope's mode: refused (`enforce`) or allowed and recorded.
    fn apply_mode(
        &self,
        requirement: &pullgate_policy::ScopeRequirement,
        denial: Denial,
        digest: Option<Digest>,
        record: &mut DecisionRecord,
    ) -> (Result<Decision, GateError>, &'static str) {
        let label = denial.reason.label();
        record.reason = Some(denial.to_string());
        let allow = || Allow {
            tagged: digest.as_ref().and(tag_to_create(&denial.image)),
            pin: digest.clone().map(|d| denial.image.pinned(d)),
        };
        match requirement.mode() {
            Mode::Enforce => {
                tracing::warn!("{denial}");
                record.verdict = audit::Verdict::Deny;
                (Ok(Decision::Deny(denial)), label)
            }
            Mode::Audit => {
                tracing::info!(
                    requirement = requirement.name(),
                    "audit mode, allowed; would have been: {denial}"
                );
                record.verdict = audit::Verdict::AuditAllow;
                (Ok(Decision::Allow(allow())), label)
            }
            Mode::Warn => {
                tracing::warn!(
                    requirement = requirement.name(),
                    "warn mode, allowed; would have been: {denial}"
                );
                record.verdict = audit::Verdict::WarnAllow;
                (Ok(Decision::Allow(allow())), label)
            }
        }
    }

    /// An inconclusive decision under the scope's fail mode.
    fn on_error(
        &self,
        fail: FailMode,
        image: &ImageRef,
        digest: Option<Digest>,
        err: GateError,
        record: &mut DecisionRecord,
    ) -> (Result<Decision, GateError>, &'static str) {
        let kind = err.kind();
        if matches!(err, GateError::Registry(_)) {
            self.metrics.registry_error(kind);
        }
        record.reason = Some(err.to_string());
        // Fail-open applies to the registry being unreachable, answering
        // 5xx or timing out, never to an answer it gave (a tag that does not
        // resolve, credentials refused), the client's own deadline or a bug.
        let outage = matches!(&err, GateError::Registry(e) if e.is_outage());
        if fail == FailMode::Open && outage {
            tracing::warn!(image = %image, error = %err,
                "registry error; scope is fail_open: allowed WITHOUT verification");
            record.verdict = audit::Verdict::FailOpen;
            let allow = Allow {
                tagged: digest.as_ref().and(tag_to_create(image)),
                pin: digest.map(|d| image.pinned(d)),
            };
            return (Ok(Decision::Allow(allow)), kind);
        }
        record.verdict = audit::Verdict::Error;
        (Err(err), kind)
    }
}

/// The `name:tag` to point at the pinned digest after the pull, if any.
fn tag_to_create(image: &ImageRef) -> Option<String> {
    // `name:tag@digest` asks for the digest; containerd records no tag for it either.
    image
        .digest()
        .is_none()
        .then(|| image.tagged_name())
        .flatten()
}

/// Milliseconds since the Unix epoch (for audit records; only the gate reads the clock).
fn unix_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
