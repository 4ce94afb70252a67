//! Discovering and verifying the signatures of one digest: the work the
//! verdict cache runs once for all concurrent pulls of one [`VerdictKey`].
//!
//! Input: a [`VerifyJob`] (policy in force, statement, repository, digest,
//! credentials). Output: a [`Verdict`] with how long it may be cached, or a
//! [`GateError`] when the registry could not answer. Discovery and every
//! fetch run under the configured decision budget; verifications run on the
//! blocking pool, at most [`VERIFY_CONCURRENCY`](super::VERIFY_CONCURRENCY)
//! at once.
//!
//! [`VerdictKey`]: super::VerdictKey

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pullgate_policy::config::Limits;
use pullgate_policy::{Digest, DistinguishedName, Enforcement, Repository, Validation};
use tokio::sync::Semaphore;

use super::decision::{
    DenyReason, FailureReason, GateError, SignatureFailure, SignatureRecord, Verdict,
};
use super::policy_state::{statement_named, without_anchors, PolicyState};
use super::signature::{decide_signature, earliest, run_verifier, Accepted};
use crate::cache::Expiring;
use crate::deadline::Deadline;
use crate::metrics::{Metrics, Phase};
use crate::registry::{Credentials, Descriptor, RegistryClient};
use crate::revocation::aws_signer::AwsSignerRevocation;
use crate::revocation::RevocationCache;
use crate::verify::notary;

/// Everything one verification task needs, owned.
#[derive(Clone)]
pub(super) struct VerifyJob {
    pub(super) registry: RegistryClient,
    pub(super) policy: Arc<PolicyState>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) statement: String,
    pub(super) repository: Repository,
    pub(super) digest: Digest,
    pub(super) credentials: Credentials,
    pub(super) limits: Limits,
    pub(super) permits: Arc<Semaphore>,
    pub(super) allow_ttl: Duration,
    pub(super) deny_ttl: Duration,
    pub(super) budget: Duration,
    /// Examine every signature even when one is enough (`pullgate verify`).
    pub(super) exhaustive: bool,
    pub(super) revocation: RevocationCache,
    pub(super) aws_signer: AwsSignerRevocation,
}

impl VerifyJob {
    /// Discovers and verifies the signatures of one digest. Runs in the cache's task.
    pub(super) async fn run(self) -> Result<Expiring<Arc<Verdict>>, GateError> {
        let result = self.run_inner().await;
        self.metrics.verification(match &result {
            Ok(Expiring {
                value: Verdict::Allowed { .. },
                ..
            }) => "allowed",
            Ok(_) => "denied",
            Err(_) => "error",
        });
        result.map(|e| Expiring {
            value: Arc::new(e.value),
            ttl: e.ttl,
        })
    }

    async fn run_inner(&self) -> Result<Expiring<Verdict>, GateError> {
        if let Some(stores) = statement_named(&self.policy, &self.statement)
            .and_then(|s| without_anchors(&self.policy.store, s))
        {
            return Ok(self.denied(DenyReason::NoTrustAnchors { stores }, Vec::new()));
        }
        let deadline = Deadline::after(self.budget);
        let t = Instant::now();
        let found = self
            .registry
            .referrers(
                &self.repository,
                &self.digest,
                notary::ARTIFACT_TYPE,
                &self.credentials,
                deadline,
            )
            .await;
        self.metrics.phase(Phase::discover, t.elapsed());
        let found = found?;
        if found.is_empty() {
            return Ok(self.denied(DenyReason::NoSignature, Vec::new()));
        }
        let requirement = self.policy.requirements.for_repository(&self.repository);
        let exhaustive = self.exhaustive || requirement.needs_every_signature();
        let mut records = Vec::new();
        let mut accepted: Vec<(DistinguishedName, String)> = Vec::new();
        let mut valid_until: Option<SystemTime> = None;
        let mut first_failure = None;
        let mut transient = None;
        for desc in found.iter().take(self.limits.max_signatures) {
            match self.check_signature(desc, deadline).await {
                Ok(ok) => {
                    for (v, _) in &ok.logged {
                        self.metrics.logged_validation(v.as_str());
                    }
                    records.push(SignatureRecord {
                        digest: desc.digest.clone(),
                        signer: Some(ok.subject.clone()),
                        failure: None,
                        logged: ok
                            .logged
                            .iter()
                            .map(|(v, why)| format!("{v}: {why}"))
                            .collect(),
                    });
                    if let Some(t) = ok.valid_until {
                        valid_until = Some(valid_until.map_or(t, |v| v.min(t)));
                    }
                    if let Ok(dn) = ok.subject.parse::<DistinguishedName>() {
                        accepted.push((dn, ok.subject));
                    }
                    if !exhaustive && requirement.evaluate(&dns(&accepted)).is_ok() {
                        break;
                    }
                }
                Err(failure) => {
                    // What the registry answered for a signature it listed
                    // (404, 401, 403, over the cap, wrong digest, malformed)
                    // is this signature's failure; only a registry that could
                    // not answer (an outage) or a deadline that passed leaves
                    // the decision open (and only the outage may fail open).
                    if let FailureReason::Fetch(e) = &failure.reason {
                        if e.is_outage() || e.is_deadline_exceeded() {
                            transient.get_or_insert_with(|| e.clone());
                        }
                    }
                    tracing::info!(digest = %self.digest, "{failure}");
                    records.push(SignatureRecord {
                        digest: desc.digest.clone(),
                        signer: match &failure.reason {
                            FailureReason::UntrustedIdentity { subject } => Some(subject.clone()),
                            _ => None,
                        },
                        failure: Some(failure.reason.to_string()),
                        logged: Vec::new(),
                    });
                    first_failure.get_or_insert(failure);
                }
            }
        }
        let met = requirement.evaluate(&dns(&accepted));
        if met.is_ok() && !accepted.is_empty() {
            // Only the gate reads the clock.
            #[allow(clippy::disallowed_methods)]
            let now = SystemTime::now();
            let ttl = self.allow_ttl_until(valid_until, now);
            return Ok(Expiring {
                ttl,
                value: Verdict::Allowed {
                    signers: accepted.into_iter().map(|(_, s)| s).collect(),
                    signatures: records.into(),
                    until: now + ttl,
                },
            });
        }
        // A signature we could not fetch might have been the good one: inconclusive, not denied.
        if let Some(e) = transient {
            return Err(GateError::Registry(e));
        }
        if let (Err(unmet), false) = (met, accepted.is_empty()) {
            return Ok(self.denied(
                DenyReason::RequirementsUnmet {
                    requirement: requirement.name().to_owned(),
                    unmet,
                },
                records,
            ));
        }
        match first_failure {
            Some(first) => Ok(self.denied(
                DenyReason::SignaturesRejected {
                    found: found.len().min(self.limits.max_signatures),
                    first: Arc::new(first),
                },
                records,
            )),
            None => Err(GateError::Internal("no signature examined")),
        }
    }

    /// The configured allow TTL, cut short by the earliest expiry among the accepted signatures.
    fn allow_ttl_until(&self, valid_until: Option<SystemTime>, now: SystemTime) -> Duration {
        let Some(until) = valid_until else {
            return self.allow_ttl;
        };
        self.allow_ttl
            .min(until.duration_since(now).unwrap_or(Duration::ZERO))
    }

    fn denied(&self, reason: DenyReason, records: Vec<SignatureRecord>) -> Expiring<Verdict> {
        Expiring {
            value: Verdict::Denied {
                reason,
                signatures: records.into(),
            },
            ttl: self.deny_ttl,
        }
    }

    /// Fetches and verifies one signature.
    async fn check_signature(
        &self,
        desc: &Descriptor,
        deadline: Deadline,
    ) -> Result<Accepted, SignatureFailure> {
        let fail = |reason| SignatureFailure {
            signature: desc.digest.clone(),
            reason,
        };
        let t = Instant::now();
        let manifest = self
            .registry
            .fetch_manifest(&self.repository, &desc.digest, &self.credentials, deadline)
            .await
            .map_err(|e| fail(FailureReason::Fetch(e)))?;
        match &manifest.subject {
            Some(s) if s.digest == self.digest => {}
            other => {
                return Err(fail(FailureReason::SubjectMismatch {
                    subject: other
                        .as_ref()
                        .map_or_else(|| "missing".to_owned(), |s| s.digest.to_string()),
                }))
            }
        }
        let Some(envelope_desc) = manifest
            .layers
            .iter()
            .find(|l| notary::is_supported_envelope(&l.media_type))
        else {
            return Err(fail(FailureReason::UnsupportedEnvelope {
                found: manifest
                    .layers
                    .iter()
                    .map(|l| l.media_type.clone())
                    .collect(),
            }));
        };
        let envelope = self
            .registry
            .fetch_blob(
                &self.repository,
                envelope_desc,
                self.limits.signature_blob_bytes,
                &self.credentials,
                deadline,
            )
            .await
            .map_err(|e| fail(FailureReason::Fetch(e)))?;
        self.metrics.phase(Phase::fetch, t.elapsed());
        let media_type = envelope_desc.media_type.clone();
        let policy = Arc::clone(&self.policy);
        let statement_name = self.statement.clone();
        let _permit = self.permits.acquire().await.map_err(|_| {
            fail(FailureReason::Check {
                validation: Validation::Integrity,
                error: "verifier pool closed".to_owned(),
            })
        })?;
        // Only the gate reads the clock; the verifier gets `now`.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let t = Instant::now();
        let vanished = || {
            fail(FailureReason::Check {
                validation: Validation::Integrity,
                error: "trust policy statement vanished".to_owned(),
            })
        };
        let task_failed = || {
            fail(FailureReason::Check {
                validation: Validation::Integrity,
                error: "verifier task failed".to_owned(),
            })
        };
        let revocation = self.revocation.clone();
        let verifier_policy = Arc::clone(&policy);
        let mut report = tokio::task::spawn_blocking(move || {
            let statement = statement_named(&verifier_policy, &statement_name)?;
            Some(run_verifier(
                &verifier_policy.store,
                statement,
                &media_type,
                &envelope,
                &revocation,
                now,
            ))
        })
        .await
        .map_err(|_| task_failed())?
        .ok_or_else(vanished)?;
        self.metrics.phase(Phase::verify, t.elapsed());
        let statement = statement_named(&policy, &self.statement).ok_or_else(vanished)?;

        // Revocation data missing from the cache: fetch it (never for an
        // untrusted chain, never when the policy skips revocation), then check again.
        if report.revocation_needs_data()
            && statement.enforcement(Validation::Revocation) != Enforcement::Skip
            && self
                .revocation
                .needs_fetch(&report.revocation_requests, now)
        {
            match self
                .revocation
                .prefetch(&report.revocation_requests, now, deadline)
                .await
            {
                Ok(()) => {}
                Err(e) => tracing::warn!(signature = %desc.digest, error = %e,
                    "revocation data could not be fetched; the check stays failed"),
            }
            let revocation = self.revocation.clone();
            report = tokio::task::spawn_blocking(move || {
                report.recheck_revocation(&revocation, now);
                report
            })
            .await
            .map_err(|_| task_failed())?;
        }
        // An AWS Signer signature with a trusted chain: ask Signer (cached),
        // unless the policy skips revocation.
        if let Some(query) = &report.aws_signer {
            if statement.enforcement(Validation::Revocation) != Enforcement::Skip {
                let result = self.aws_signer.status(query, now, deadline).await;
                report.set_aws_signer_revocation(result);
            }
        }
        let mut accepted = decide_signature(statement, &report, &self.digest).map_err(fail)?;
        // An allow that relied on revocation data lives no longer than that
        // data: past its `nextUpdate` the certificate may have been revoked.
        if statement.enforcement(Validation::Revocation) == Enforcement::Enforce {
            let revocation_until = self
                .revocation
                .valid_until(&report.revocation_requests, now);
            accepted.valid_until = earliest(accepted.valid_until, revocation_until);
        }
        Ok(accepted)
    }
}

fn dns(accepted: &[(DistinguishedName, String)]) -> Vec<DistinguishedName> {
    accepted.iter().map(|(d, _)| d.clone()).collect()
}
