//! Deciding one pull: scope (requirements scope, and the trust policy
//! statement it needs, if any) → resolve → break-glass → cache (single
//! flight over a [`VerifyJob`]) → the scope's mode and fail mode. The
//! scope and statement are chosen once, by `PolicyState::plan_for`; the
//! job carries their ids.
//!
//! A hit on an allow verdict near its end starts a refresh (`refresh`).
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
use pullgate_policy::{Digest, FailMode, ImageRef, Mode, Repository};

use super::decision::{Allow, Denial, DenyReason, GateError, PullRequest, Signatures, Verdict};
use super::engine::VerifyJob;
use super::origin::Door;
use super::outcome::{Facts, Outcome};
use super::policy_state::{Plan, PolicyState, Route};
use super::verify_digest;
use super::Gate;
use super::VerdictKey;
use crate::cache::{Lookup, WaitError};
use crate::deadline::Deadline;
use crate::metrics::Phase;
use crate::registry::Credentials;

/// Called on a pull whose verdict must be computed, once its digest is
/// known: (repository, digest, the pull's credentials, now).
pub(crate) type OnCold<'a> =
    &'a (dyn Fn(&Repository, &Digest, &Credentials, std::time::SystemTime) + Sync);

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
    pub(super) async fn decide_inner(
        &self,
        req: PullRequest,
        flow: Flow,
        on_cold: Option<OnCold<'_>>,
    ) -> (Outcome, Facts) {
        let policy = self.policy();
        let plan = policy.plan_for(req.image.repository(), req.origin.namespace());
        let mut facts = Facts::new(
            &req.image,
            policy.scope(plan.scope).name(),
            req.origin.clone(),
        );
        let outcome = self
            .decide_under(&policy, plan, req, flow, on_cold, &mut facts)
            .await;
        (outcome, facts)
    }

    async fn decide_under(
        &self,
        policy: &Arc<PolicyState>,
        plan: Plan,
        req: PullRequest,
        flow: Flow,
        on_cold: Option<OnCold<'_>>,
        facts: &mut Facts,
    ) -> Outcome {
        let requirement = policy.scope(plan.scope);
        let repository = req.image.repository().clone();
        let statement = match plan.route {
            Route::NoStatement => {
                let denial = Denial {
                    image: req.image,
                    digest: None,
                    statement: None,
                    reason: DenyReason::NoApplicableStatement { repository },
                    signatures_in: None,
                };
                return apply_mode(requirement, denial, None);
            }
            Route::Skip(statement) => {
                facts.statement = Some(policy.statement(statement).name().to_owned());
                return Outcome::Skipped {
                    allow: Allow::unpinned(&req.image),
                };
            }
            Route::Verify { statement } => statement,
        };
        let statement_name = statement.map(|s| policy.statement(s).name());
        facts.statement = statement_name.map(str::to_owned);
        // The policy a denial names: the statement, or the requirements
        // scope that decides without one.
        let policy_name = statement_name.unwrap_or_else(|| requirement.name());
        let engine = &self.engine;
        let t = Instant::now();
        let resolved = engine
            .registry
            .resolve(&req.image, &req.credentials, req.deadline)
            .await;
        engine.metrics.phase(Phase::resolve, t.elapsed());
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
            engine: Arc::clone(engine),
            policy: Arc::clone(policy),
            statement,
            scope: plan.scope,
            repository,
            digest: digest.clone(),
            credentials: req.credentials,
            exhaustive: flow == Flow::Inspect,
        };
        let key = (flow == Flow::Pull)
            .then(|| policy.key(statement, plan.scope, &job.repository, &digest));
        let computed = match (flow, key.clone()) {
            (Flow::Pull, Some(key)) => match self.cache.get_fresh(&key) {
                Some((verdict, fresh)) => {
                    if matches!(verdict, Verdict::Allowed { .. }) && self.refresh.due(&key, fresh) {
                        self.refresh_ahead(key, job);
                    }
                    Ok((verdict, Lookup::Hit))
                }
                None => {
                    if let Some(on_cold) = on_cold {
                        // Only the gate reads the clock.
                        #[allow(clippy::disallowed_methods)]
                        let now = std::time::SystemTime::now();
                        on_cold(&job.repository, &digest, &job.credentials, now);
                    }
                    self.compute(key, job, req.deadline).await
                }
            },
            (Flow::Inspect, _) | (Flow::Pull, None) => {
                match req.deadline.run(verify_digest::run(job)).await {
                    Ok(r) => r.map(|c| (c.value, Lookup::Miss(c.detail))),
                    Err(_) => Err(GateError::Deadline),
                }
            }
        };
        let (verdict, lookup) = match computed {
            Ok(v) => v,
            Err(e) => {
                if let Some(standing) =
                    self.standing_allow(&req.image, req.origin.door, key.as_ref(), &digest, &e)
                {
                    return standing;
                }
                return self.on_error(requirement.on_registry_error(), &req.image, Some(digest), e);
            }
        };
        if let (Some(key), Lookup::Miss(_)) = (&key, &lookup) {
            match (&verdict, verdict.until()) {
                (Verdict::Allowed { signers, .. }, Some(until)) => self
                    .standing
                    .allowed(key.clone(), (Arc::clone(signers), until)),
                (Verdict::Allowed { .. }, None) => {}
                (Verdict::Denied { .. }, _) => self.standing.denied(key),
            }
        }
        let cached = match lookup {
            Lookup::Hit => true,
            Lookup::Miss(signatures) => {
                facts.signatures = signatures;
                false
            }
        };
        if flow == Flow::Pull {
            engine.metrics.cache_lookup(cached);
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
                    signatures_in: requirement.signature_repository().cloned(),
                };
                apply_mode(requirement, denial, Some(digest))
            }
        }
    }

    /// The verdict of `key`, computed by `job` once for all concurrent
    /// callers (or found cached, if another flight just put it there).
    async fn compute(
        &self,
        key: VerdictKey,
        job: VerifyJob,
        deadline: Deadline,
    ) -> Result<(Verdict, Lookup<Signatures>), GateError> {
        let lists = Arc::clone(&self.signer_lists);
        self.cache
            .get_or_compute(key, deadline, move || async move {
                let mut computed = verify_digest::run(job).await?;
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

    /// A runtime door's image whose verdict could not be renewed because
    /// the registry is out of service, admitted on the standing allow of
    /// the same key (see `standing`); `None` for every other case.
    fn standing_allow(
        &self,
        image: &ImageRef,
        door: Door,
        key: Option<&VerdictKey>,
        digest: &Digest,
        err: &GateError,
    ) -> Option<Outcome> {
        let runtime = matches!(door, Door::Create | Door::Sandbox);
        let outage = matches!(err, GateError::Registry(e) if e.is_outage());
        if !runtime || !outage {
            return None;
        }
        let (signers, _) = self.standing.get(key?)?;
        self.engine.metrics.registry_error(err.kind());
        Some(Outcome::Standing {
            allow: Allow::pinned_to(image, digest.clone()),
            signers,
            error: err.clone(),
        })
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
            self.engine.metrics.registry_error(err.kind());
        }
        // Fail-open applies to the registry being unreachable, answering
        // 5xx or timing out, never to an answer it gave (a tag that does not
        // resolve, credentials refused), the client's own deadline or a bug;
        // and only once the digest is known, so the pull is pinned to it.
        // A tag that could not be resolved fails closed even under fail_open:
        // containerd would resolve it again by its own means (a `_default`
        // mirror in certs.d pullgate never asked), and pull whatever it finds.
        let outage = matches!(&err, GateError::Registry(e) if e.is_outage());
        match digest {
            Some(digest) if fail == FailMode::Open && outage => Outcome::FailOpen {
                allow: Allow::pinned_to(image, digest),
                error: err,
            },
            _ => Outcome::Error(err),
        }
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
