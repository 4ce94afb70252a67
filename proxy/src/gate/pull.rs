//! Deciding one pull: scope (requirements scope, and the trust policy
//! statement it needs, if any) → resolve → break-glass → cache (single
//! flight over a [`VerifyJob`]) → the scope's mode and fail mode.
//!
//! Input: a [`PullRequest`]. Output: the [`Outcome`] of the decision and the
//! [`Facts`] learnt on the way; [`Gate::decide`] and [`Gate::inspect`] make
//! the answer, the audit record, the metrics and the log line from them.
//! Every network await runs under the request's deadline (resolve, waiting
//! for the shared verification); the verification itself runs under the
//! configured decision budget in the cache's task.

use std::sync::Arc;
use std::time::Instant;

use pullgate_policy::requirements::ScopeRequirement;
use pullgate_policy::{Digest, FailMode, ImageRef, Mode};

use super::decision::{Allow, Denial, DenyReason, GateError, PullRequest, Verdict};
use super::key::VerdictKey;
use super::outcome::{Facts, Outcome};
use super::policy_state::{Plan, PolicyState};
use super::verify_digest::VerifyJob;
use super::Gate;
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

impl Gate {
    /// Decides `req` under the policy in force.
    pub(super) async fn decide_inner(&self, req: PullRequest, flow: Flow) -> (Outcome, Facts) {
        let policy = self.policy();
        let requirement = policy.requirements.for_repository(req.image.repository());
        let mut facts = Facts::new(&req.image, requirement.name());
        let outcome = self
            .decide_under(&policy, requirement, req, flow, &mut facts)
            .await;
        (outcome, facts)
    }

    async fn decide_under(
        &self,
        policy: &Arc<PolicyState>,
        requirement: &ScopeRequirement,
        req: PullRequest,
        flow: Flow,
        facts: &mut Facts,
    ) -> Outcome {
        let repository = req.image.repository().clone();
        let statement = match policy.plan(&repository, requirement) {
            Plan::NoStatement => {
                let denial = Denial {
                    image: req.image,
                    digest: None,
                    statement: None,
                    reason: DenyReason::NoApplicableStatement { repository },
                };
                return apply_mode(requirement, denial, None);
            }
            Plan::Skip(statement) => {
                facts.statement = Some(statement.name().to_owned());
                return Outcome::Skipped {
                    allow: Allow::unpinned(&req.image),
                };
            }
            Plan::Verify { statement } => statement,
        };
        facts.statement = statement.map(|s| s.name().to_owned());
        // The policy a denial names: the statement, or the requirements
        // scope that decides without one.
        let policy_name = statement.map_or_else(|| requirement.name(), |s| s.name());
        let t = Instant::now();
        let resolved = self
            .registry
            .resolve(&req.image, &req.credentials, req.deadline)
            .await;
        self.metrics.phase(Phase::resolve, t.elapsed());
        let digest = match resolved {
            Ok(r) => r.digest,
            Err(e) => {
                return self.on_error(requirement.on_registry_error(), &req.image, None, e.into())
            }
        };
        facts.digest = Some(digest.clone());
        if let Some(glass) = policy.requirements.break_glass(&repository, &digest) {
            return Outcome::BreakGlass {
                allow: Allow::pinned_to(&req.image, digest),
                reason: glass.reason.clone(),
            };
        }
        let job = VerifyJob {
            registry: self.registry.clone(),
            policy: Arc::clone(policy),
            metrics: Arc::clone(&self.metrics),
            statement: statement.map(|s| s.name().to_owned()),
            repository,
            digest: digest.clone(),
            credentials: req.credentials,
            limits: self.limits,
            permits: Arc::clone(&self.permits),
            discoveries: Arc::clone(&self.discoveries),
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
                    &job.repository,
                    &digest,
                    policy.generation,
                ) else {
                    return self.on_error(
                        requirement.on_registry_error(),
                        &req.image,
                        Some(digest),
                        GateError::Internal("statement not of the policy in force"),
                    );
                };
                let lists = Arc::clone(&self.signer_lists);
                self.cache
                    .get_or_compute(key, req.deadline, move || async move {
                        let mut computed = job.run().await?;
                        computed.value = lists.shared(computed.value);
                        Ok(computed)
                    })
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
                Ok(r) => r.map(|c| (c.value, Lookup::Miss(c.detail))),
                Err(_) => Err(GateError::Deadline),
            },
        };
        let (verdict, lookup) = match computed {
            Ok(v) => v,
            Err(e) => {
                return self.on_error(requirement.on_registry_error(), &req.image, Some(digest), e)
            }
        };
        let cached = match lookup {
            Lookup::Hit => true,
            Lookup::Miss(signatures) => {
                facts.signatures = signatures;
                false
            }
        };
        if flow == Flow::Pull {
            self.metrics.cache_lookup(cached);
        }
        facts.cached = cached;
        match verdict {
            Verdict::Allowed { signers, .. } => {
                if !cached {
                    self.new_allows
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Outcome::Verified {
                    allow: Allow::pinned_to(&req.image, digest),
                    signers,
                }
            }
            Verdict::Denied { reason, .. } => {
                let denial = Denial {
                    image: req.image,
                    digest: Some(digest.clone()),
                    statement: Some(policy_name.to_owned()),
                    reason: DenyReason::clone(&reason),
                };
                apply_mode(requirement, denial, Some(digest))
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
    ) -> Outcome {
        if matches!(err, GateError::Registry(_)) {
            self.metrics.registry_error(err.kind());
        }
        // Fail-open applies to the registry being unreachable, answering
        // 5xx or timing out, never to an answer it gave (a tag that does not
        // resolve, credentials refused), the client's own deadline or a bug.
        let outage = matches!(&err, GateError::Registry(e) if e.is_outage());
        if fail == FailMode::Open && outage {
            return Outcome::FailOpen {
                allow: Allow::pinned_if_resolved(image, digest),
                error: err,
            };
        }
        Outcome::Error(err)
    }
}

/// A denial under the scope's mode: refused (`enforce`) or allowed and recorded.
fn apply_mode(requirement: &ScopeRequirement, denial: Denial, digest: Option<Digest>) -> Outcome {
    let allow = || Allow::pinned_if_resolved(&denial.image, digest.clone());
    match requirement.mode() {
        Mode::Enforce => Outcome::Denied(denial),
        Mode::Audit => Outcome::AuditAllowed {
            allow: allow(),
            denial,
        },
        Mode::Warn => Outcome::WarnAllowed {
            allow: allow(),
            denial,
        },
    }
}
