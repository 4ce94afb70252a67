//! Discovering and verifying the signatures of one digest: the work the
//! verdict cache runs once for all concurrent pulls of one [`VerdictKey`].
//!
//! Input: a [`VerifyJob`] (policy in force, statement, repository, digest,
//! credentials). Output: a [`Verdict`] with how long it may be cached, or a
//! [`GateError`] when the registry could not answer. Discovery and every
//! fetch run under the configured decision budget, holding one of `[registry]
//! max_concurrent_discoveries` turns (waited for under that budget);
//! verifications run on the blocking pool, at most `[server]
//! max_concurrent_verifications` at once.
//!
//! [`VerdictKey`]: super::VerdictKey

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pullgate_policy::config::Limits;
use pullgate_policy::{Digest, Enforcement, Repository, Validation};
use tokio::sync::Semaphore;

use super::decision::{
    DenyReason, FailureReason, GateError, SignatureProblem, SignatureRecord, Verdict,
};
use super::policy_state::{statement_named, without_anchors, PolicyState};
use super::signature::{decide_signature, run_verifier, Accepted};
use super::verdict::{self, Examined, Judgement, SignatureResult, Ttls};
use crate::cache::Expiring;
use crate::deadline::Deadline;
use crate::metrics::{Metrics, Phase};
use crate::registry::{self, Credentials, Descriptor, RegistryClient};
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
    /// Signature checks on the blocking pool (`max_concurrent_verifications`).
    pub(super) permits: Arc<Semaphore>,
    /// Turns to discover and fetch signatures (`max_concurrent_discoveries`).
    pub(super) discoveries: Arc<Semaphore>,
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
        let ttls = Ttls {
            allow: self.allow_ttl,
            deny: self.deny_ttl,
        };
        if let Some(stores) = statement_named(&self.policy, &self.statement)
            .and_then(|s| without_anchors(&self.policy.store, s))
        {
            return Ok(Expiring {
                value: Verdict::Denied {
                    reason: DenyReason::NoTrustAnchors { stores },
                    signatures: Arc::from(Vec::new()),
                },
                ttl: ttls.deny,
            });
        }
        let deadline = Deadline::after(self.budget);
        // One turn for the whole network part (referrers walk, signature
        // fetches, revocation data): what a registry makes pullgate hold is
        // bounded by the number of turns. Waiting counts against this
        // verification's deadline; each pull waits at most until its own.
        let _turn = match deadline.run(self.discoveries.acquire()).await {
            Ok(Ok(turn)) => turn,
            Ok(Err(_)) => return Err(GateError::Internal("discovery semaphore closed")),
            Err(_) => return Err(GateError::Deadline),
        };
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
        if let (true, Some(pages)) = (found.is_empty(), found.cut_at_pages) {
            return Ok(Expiring {
                value: Verdict::Denied {
                    reason: DenyReason::NoSignatureInPages { pages },
                    signatures: Arc::from(Vec::new()),
                },
                ttl: ttls.deny,
            });
        }
        let requirement = self.policy.requirements.for_repository(&self.repository);
        let exhaustive = self.exhaustive || requirement.needs_every_signature();
        let mut examined = Vec::new();
        for desc in found.iter().take(self.limits.max_signatures) {
            let result = self.check_signature(desc, deadline).await;
            match &result {
                SignatureResult::Accepted(ok) => {
                    for (v, _) in &ok.logged {
                        self.metrics.logged_validation(v.as_str());
                    }
                }
                SignatureResult::Rejected(reason) => {
                    tracing::info!(digest = %self.digest, signature = %desc.digest, "{reason}");
                }
                SignatureResult::Inconclusive(error) => {
                    tracing::info!(digest = %self.digest, signature = %desc.digest,
                        "signature could not be examined: {error}");
                }
            }
            examined.push(Examined {
                signature: desc.digest.clone(),
                result,
            });
            if !exhaustive && verdict::enough(&examined, requirement) {
                break;
            }
        }
        // Only the gate reads the clock.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let judgement = verdict::judge(&examined, requirement, ttls, now);
        let signatures: Arc<[SignatureRecord]> = examined.iter().map(record).collect();
        match judgement {
            Judgement::Allowed { signers, ttl } => Ok(Expiring {
                ttl,
                value: Verdict::Allowed {
                    signers,
                    signatures,
                    until: now + ttl,
                },
            }),
            Judgement::Denied { reason, ttl } => Ok(Expiring {
                ttl,
                value: Verdict::Denied { reason, signatures },
            }),
            Judgement::Inconclusive(e) => Err(e),
        }
    }

    /// Fetches and verifies one signature.
    async fn check_signature(&self, desc: &Descriptor, deadline: Deadline) -> SignatureResult {
        match self.examine(desc, deadline).await {
            Ok(accepted) => SignatureResult::Accepted(accepted),
            Err(ended) => ended,
        }
    }

    /// [`VerifyJob::check_signature`], ending early (`Err`) with the
    /// signature's rejection or with why it could not be examined.
    async fn examine(
        &self,
        desc: &Descriptor,
        deadline: Deadline,
    ) -> Result<Accepted, SignatureResult> {
        let reject = SignatureResult::Rejected;
        let internal = |what| SignatureResult::Inconclusive(GateError::Internal(what));
        let t = Instant::now();
        let manifest = self
            .registry
            .fetch_manifest(&self.repository, &desc.digest, &self.credentials, deadline)
            .await
            .map_err(fetch_failed)?;
        match &manifest.subject {
            Some(s) if s.digest == self.digest => {}
            other => {
                return Err(reject(FailureReason::SubjectMismatch {
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
            return Err(reject(FailureReason::UnsupportedEnvelope {
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
            .map_err(fetch_failed)?;
        self.metrics.phase(Phase::fetch, t.elapsed());
        let media_type = envelope_desc.media_type.clone();
        let policy = Arc::clone(&self.policy);
        let statement_name = self.statement.clone();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| internal("verifier pool closed"))?;
        // Only the gate reads the clock; the verifier gets `now`.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let t = Instant::now();
        let vanished = || internal("trust policy statement vanished from its policy");
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
        .map_err(|_| internal("verifier task failed"))?
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
            .map_err(|_| internal("revocation recheck task failed"))?;
        }
        // An AWS Signer signature with a trusted chain: ask Signer (cached),
        // unless the policy skips revocation.
        if let Some(query) = &report.aws_signer {
            if statement.enforcement(Validation::Revocation) != Enforcement::Skip {
                let result = self.aws_signer.status(query, now, deadline).await;
                report.set_aws_signer_revocation(result);
            }
        }
        // An allow that relied on revocation data lives no longer than that
        // data: past its `nextUpdate` the certificate may have been revoked.
        let revocation_until = (statement.enforcement(Validation::Revocation)
            == Enforcement::Enforce)
            .then(|| {
                self.revocation
                    .valid_until(&report.revocation_requests, now)
            })
            .flatten();
        let mut accepted = decide_signature(statement, report, &self.digest).map_err(reject)?;
        accepted.revocation_until = revocation_until;
        Ok(accepted)
    }
}

/// A signature the registry listed but did not deliver. What the registry
/// answered (404, 401, 403, over the cap, wrong digest, malformed) is this
/// signature's failure; only a registry that could not answer (an outage),
/// one that asked to be left alone (429) or a deadline that passed leaves it
/// unexamined, and the decision open (and only the outage may fail open).
fn fetch_failed(e: registry::Error) -> SignatureResult {
    if e.is_outage() || e.is_deadline_exceeded() || e.is_rate_limited() {
        SignatureResult::Inconclusive(GateError::Registry(e))
    } else {
        SignatureResult::Rejected(FailureReason::Fetch(e))
    }
}

/// The audit log's record of one examined signature.
fn record(examined: &Examined) -> SignatureRecord {
    let (signer, failure, logged) = match &examined.result {
        SignatureResult::Accepted(a) => (Some(a.subject.clone()), None, a.logged.clone()),
        SignatureResult::Rejected(reason) => (
            match reason {
                FailureReason::UntrustedIdentity { subject } => Some(subject.clone()),
                _ => None,
            },
            Some(SignatureProblem::Rejected(reason.clone())),
            Vec::new(),
        ),
        SignatureResult::Inconclusive(error) => (
            None,
            Some(SignatureProblem::Inconclusive(error.clone())),
            Vec::new(),
        ),
    };
    SignatureRecord {
        digest: examined.signature.clone(),
        signer,
        failure,
        logged,
    }
}
