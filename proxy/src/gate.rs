//! The pipeline of one pull: scope → resolve → cache → discover → verify → decide.
//!
//! Input: a `PullRequest` (normalised image, credentials, deadline).
//! Output: a `Decision` — `Allow` carrying the digest to pin, or a
//! `Denial` whose text names image, digest and reason — or a `GateError`
//! when the decision could not be made (registry unreachable, deadline
//! passed), which the caller turns into a fail-closed refusal.
//!
//! Only this module reads the clock; verifiers and the policy get `now`.
//! Verification of one digest runs once for all concurrent pulls (see
//! `cache`), on the blocking pool, bounded by a semaphore.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pullgate_policy::config::{Config, Limits};
use pullgate_policy::{
    evaluate_signature, Check, Digest, DistinguishedName, ImageRef, Level, PinnedRef, Repository,
    SignatureVerdict, Statement, StoreType, TrustPolicyDocument, Validation,
};
use tokio::sync::Semaphore;

use crate::cache::{Expiring, Lookup, VerdictCache, WaitError};
use crate::deadline::{Deadline, DeadlineExceeded};
use crate::registry::{self, Credentials, Descriptor, RegistryClient};
use crate::verify::notary;
use crate::verify::trust_store::TrustStore;

/// Increments whenever the trust policy or trust store changes; part of every cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyGeneration(pub u64);

/// One pull to decide.
#[derive(Debug)]
pub(crate) struct PullRequest {
    pub(crate) image: ImageRef,
    pub(crate) credentials: Credentials,
    pub(crate) deadline: Deadline,
}

/// The gate's answer.
#[derive(Debug)]
pub(crate) enum Decision {
    Allow(Allow),
    Deny(Denial),
}

/// Proof that the gate allowed a pull; only this module constructs it.
#[derive(Debug, Clone)]
pub(crate) struct Allow {
    pin: Option<PinnedRef>,
    tagged: Option<String>,
}

impl Allow {
    /// What containerd must pull: `name@digest`, or `None` to forward unchanged (level `skip`).
    pub(crate) fn pinned(&self) -> Option<&PinnedRef> {
        self.pin.as_ref()
    }

    /// `name:tag` to point at the pinned digest after the pull, when the request had a tag.
    pub(crate) fn tagged_name(&self) -> Option<String> {
        self.tagged.clone()
    }
}

/// A refusal, written for `kubectl describe pod`.
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    pub(crate) image: ImageRef,
    pub(crate) digest: Option<Digest>,
    pub(crate) statement: Option<String>,
    pub(crate) reason: DenyReason,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "image {}", self.image)?;
        if let Some(d) = &self.digest {
            write!(f, " ({d})")?;
        }
        match &self.statement {
            Some(s) => write!(f, " denied by policy \"{s}\": {}", self.reason),
            None => write!(f, " denied: {}", self.reason),
        }
    }
}

/// Why an image was denied.
#[derive(Debug, Clone)]
pub(crate) enum DenyReason {
    /// No trust policy statement's registry scope covers the repository.
    NoApplicableStatement { repository: Repository },
    /// The registry lists no Notary Project signature for the digest.
    NoSignature,
    /// Signatures were found, none passed.
    SignaturesRejected {
        found: usize,
        first: Arc<SignatureFailure>,
    },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoApplicableStatement { repository } => write!(
                f,
                "no trust policy statement has a registry scope that covers {repository}"
            ),
            Self::NoSignature => f.write_str(
                "no Notary Project signature of this digest was found in the registry; sign it with notation and push the signature",
            ),
            Self::SignaturesRejected { found: 1, first } => write!(f, "{first}"),
            Self::SignaturesRejected { found, first } => {
                write!(f, "none of the {found} signatures passed; the first: {first}")
            }
        }
    }
}

/// Why one signature did not count.
#[derive(Debug)]
pub(crate) struct SignatureFailure {
    pub(crate) signature: Digest,
    pub(crate) reason: FailureReason,
}

impl fmt::Display for SignatureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signature {}: {}", short(&self.signature), self.reason)
    }
}

/// The failed step of one signature.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FailureReason {
    /// A verification enforced by the level failed.
    #[error("{validation} check failed: {error}")]
    Check {
        validation: Validation,
        error: String,
    },
    /// The signing certificate's subject is not a trusted identity of the statement.
    #[error("signing certificate subject \"{subject}\" is not a trusted identity of the trust policy statement")]
    UntrustedIdentity { subject: String },
    /// The signature covers another artifact.
    #[error("it signs {signed}, not this image")]
    TargetMismatch { signed: Digest },
    /// The signature manifest's `subject` is another artifact.
    #[error("its manifest's subject is {subject}, not this image")]
    SubjectMismatch { subject: String },
    /// The signature manifest carries no envelope of a known media type.
    #[error("no signature envelope of a supported media type (found {found:?})")]
    UnsupportedEnvelope { found: Vec<String> },
    /// Fetching the signature failed.
    #[error("cannot fetch it: {0}")]
    Fetch(registry::Error),
}

/// The decision could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GateError {
    /// The registry could not answer.
    #[error("{0}")]
    Registry(#[from] registry::Error),
    /// The request's deadline passed.
    #[error("deadline exceeded")]
    Deadline,
    /// The verification task ended without a result.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl GateError {
    /// Whether the request's deadline passed.
    pub(crate) fn is_deadline(&self) -> bool {
        match self {
            Self::Deadline => true,
            Self::Registry(e) => e.is_timeout(),
            Self::Internal(_) => false,
        }
    }
}

impl From<DeadlineExceeded> for GateError {
    fn from(_: DeadlineExceeded) -> Self {
        Self::Deadline
    }
}

/// Why the gate could not be built at startup.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The trust policy is invalid.
    #[error("trust policy {path}: {source}")]
    Policy {
        /// The file.
        path: String,
        /// Why.
        source: pullgate_policy::trust_policy::Error,
    },
    /// The trust store could not be loaded.
    #[error("trust store {path}: {source}")]
    TrustStore {
        /// The directory.
        path: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry client could not be built.
    #[error("registry client: {0}")]
    Registry(String),
}

/// A verdict on one digest under one policy generation.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    Allowed { signature: Digest, signer: String },
    Denied(DenyReason),
}

/// The trust policy and trust store in force, with their generation.
#[derive(Debug)]
pub(crate) struct PolicyState {
    pub(crate) generation: PolicyGeneration,
    pub(crate) document: TrustPolicyDocument,
    pub(crate) store: TrustStore,
}

type Key = (Digest, PolicyGeneration);

/// Everything one verification task needs, owned.
#[derive(Clone)]
struct VerifyJob {
    registry: RegistryClient,
    policy: Arc<PolicyState>,
    statement: String,
    repository: Repository,
    digest: Digest,
    credentials: Credentials,
    limits: Limits,
    permits: Arc<Semaphore>,
    allow_ttl: Duration,
    deny_ttl: Duration,
    budget: Duration,
}

/// The decision pipeline.
pub struct Gate {
    policy: std::sync::RwLock<Arc<PolicyState>>,
    registry: RegistryClient,
    cache: VerdictCache<Key, Verdict, GateError>,
    limits: Limits,
    permits: Arc<Semaphore>,
    allow_ttl: Duration,
    deny_ttl: Duration,
    budget: Duration,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Verifications running at once on the blocking pool.
const VERIFY_CONCURRENCY: usize = 4;

impl Gate {
    /// Reads the trust policy and trust store named in `config` and builds the pipeline.
    ///
    /// Blocking: call at startup, before serving.
    ///
    /// # Errors
    /// [`LoadError`] naming the file or entry at fault.
    pub fn load(config: &Config) -> Result<Self, LoadError> {
        let policy = load_policy(
            &config.trust.policy,
            &config.trust.store,
            PolicyGeneration(1),
        )?;
        let registry = RegistryClient::new(&config.registry)
            .map_err(|e| LoadError::Registry(e.to_string()))?;
        Ok(Self {
            policy: std::sync::RwLock::new(Arc::new(policy)),
            registry,
            cache: VerdictCache::new(config.cache.max_entries),
            limits: config.registry.limits,
            permits: Arc::new(Semaphore::new(VERIFY_CONCURRENCY)),
            allow_ttl: Duration::from_secs(config.cache.allow_ttl_secs),
            deny_ttl: Duration::from_secs(config.cache.deny_ttl_secs),
            budget: config.server.decision_budget(),
        })
    }

    fn policy(&self) -> Arc<PolicyState> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Decides one pull.
    ///
    /// # Errors
    /// [`GateError`] when the decision could not be made; the caller fails closed.
    ///
    /// # Cancel safety
    /// Cancel safe: the shared verification goes on for other callers.
    pub(crate) async fn decide(&self, req: PullRequest) -> Result<Decision, GateError> {
        let policy = self.policy();
        let repository = req.image.repository().clone();
        let Some(statement) = policy.document.statement_for(&repository) else {
            return Ok(Decision::Deny(Denial {
                image: req.image,
                digest: None,
                statement: None,
                reason: DenyReason::NoApplicableStatement { repository },
            }));
        };
        if statement.level() == Level::Skip {
            tracing::info!(image = %req.image, statement = statement.name(),
                "verification level skip: forwarding unchanged");
            return Ok(Decision::Allow(Allow {
                pin: None,
                tagged: None,
            }));
        }
        let resolved = self
            .registry
            .resolve(&req.image, &req.credentials, req.deadline)
            .await?;
        let digest = resolved.digest;
        let job = VerifyJob {
            registry: self.registry.clone(),
            policy: Arc::clone(&policy),
            statement: statement.name().to_owned(),
            repository,
            digest: digest.clone(),
            credentials: req.credentials,
            limits: self.limits,
            permits: Arc::clone(&self.permits),
            allow_ttl: self.allow_ttl,
            deny_ttl: self.deny_ttl,
            budget: self.budget,
        };
        let key = (digest.clone(), policy.generation);
        let (verdict, lookup) = self
            .cache
            .get_or_compute(key, req.deadline, move || job.run())
            .await
            .map_err(|e| match e {
                WaitError::Failed(e) => clone_gate_error(&e),
                WaitError::LeaderGone => {
                    GateError::Internal("verification task ended without a result")
                }
                WaitError::Deadline(_) => GateError::Deadline,
            })?;
        let statement = statement.name().to_owned();
        Ok(match verdict {
            Verdict::Allowed { signature, signer } => {
                tracing::info!(image = %req.image, %digest, %signature, signer, statement,
                    cached = lookup == Lookup::Hit, "allowed");
                Decision::Allow(Allow {
                    // `name:tag@digest` asks for the digest; containerd records no tag for it either.
                    tagged: req
                        .image
                        .digest()
                        .is_none()
                        .then(|| req.image.tagged_name())
                        .flatten(),
                    pin: Some(req.image.pinned(digest)),
                })
            }
            Verdict::Denied(reason) => {
                let denial = Denial {
                    image: req.image,
                    digest: Some(digest),
                    statement: Some(statement),
                    reason,
                };
                tracing::warn!(cached = lookup == Lookup::Hit, "{denial}");
                Decision::Deny(denial)
            }
        })
    }
}

/// Shared errors arrive behind an `Arc`; rebuild an owned one for this caller.
fn clone_gate_error(e: &GateError) -> GateError {
    match e {
        GateError::Registry(r) => GateError::Registry(r.clone()),
        GateError::Deadline => GateError::Deadline,
        GateError::Internal(s) => GateError::Internal(s),
    }
}

impl VerifyJob {
    /// Discovers and verifies the signatures of one digest. Runs in the cache's task.
    async fn run(self) -> Result<Expiring<Verdict>, GateError> {
        let deadline = Deadline::after(self.budget);
        let found = self
            .registry
            .referrers(
                &self.repository,
                &self.digest,
                notary::ARTIFACT_TYPE,
                &self.credentials,
                deadline,
            )
            .await?;
        if found.is_empty() {
            return Ok(self.denied(DenyReason::NoSignature));
        }
        let mut first_failure = None;
        let mut transient = None;
        for desc in found.iter().take(self.limits.max_signatures) {
            match self.check_signature(desc, deadline).await {
                Ok(signer) => {
                    return Ok(Expiring {
                        value: Verdict::Allowed {
                            signature: desc.digest.clone(),
                            signer,
                        },
                        ttl: self.allow_ttl,
                    })
                }
                Err(failure) => {
                    if let FailureReason::Fetch(e) = &failure.reason {
                        transient.get_or_insert_with(|| e.clone());
                    }
                    tracing::info!(digest = %self.digest, "{failure}");
                    first_failure.get_or_insert(failure);
                }
            }
        }
        // A signature we could not fetch might have been the good one: inconclusive, not denied.
        if let Some(e) = transient {
            return Err(GateError::Registry(e));
        }
        match first_failure {
            Some(first) => Ok(self.denied(DenyReason::SignaturesRejected {
                found: found.len().min(self.limits.max_signatures),
                first: Arc::new(first),
            })),
            None => Err(GateError::Internal("no signature examined")),
        }
    }

    fn denied(&self, reason: DenyReason) -> Expiring<Verdict> {
        Expiring {
            value: Verdict::Denied(reason),
            ttl: self.deny_ttl,
        }
    }

    /// Fetches and verifies one signature; `Ok` carries the signer's subject.
    async fn check_signature(
        &self,
        desc: &Descriptor,
        deadline: Deadline,
    ) -> Result<String, SignatureFailure> {
        let fail = |reason| SignatureFailure {
            signature: desc.digest.clone(),
            reason,
        };
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
        let media_type = envelope_desc.media_type.clone();
        let policy = Arc::clone(&self.policy);
        let statement_name = self.statement.clone();
        let digest = self.digest.clone();
        let _permit = self.permits.acquire().await.map_err(|_| {
            fail(FailureReason::Check {
                validation: Validation::Integrity,
                error: "verifier pool closed".to_owned(),
            })
        })?;
        // Only the gate reads the clock; the verifier gets `now`.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let outcome = tokio::task::spawn_blocking(move || {
            let Some(statement) = policy
                .document
                .statements()
                .iter()
                .find(|s| s.name() == statement_name)
            else {
                return Err(FailureReason::Check {
                    validation: Validation::Integrity,
                    error: "trust policy statement vanished".to_owned(),
                });
            };
            verify_envelope(
                &policy.store,
                statement,
                &media_type,
                &envelope,
                &digest,
                now,
            )
        })
        .await
        .map_err(|_| {
            fail(FailureReason::Check {
                validation: Validation::Integrity,
                error: "verifier task failed".to_owned(),
            })
        })?;
        outcome.map_err(fail)
    }
}

/// Runs the verifier and the policy on one envelope. Pure but CPU-bound: call on the blocking pool.
fn verify_envelope(
    store: &TrustStore,
    statement: &Statement,
    media_type: &str,
    envelope: &[u8],
    digest: &Digest,
    now: SystemTime,
) -> Result<String, FailureReason> {
    let anchors = anchors(store, statement);
    let options = notary::Options {
        verify_timestamp: statement.verify_timestamp(),
    };
    let report = notary::verify(media_type, envelope, &anchors, options, now);
    let subject = report.signer.as_ref().map(|s| s.subject.clone());
    let identity_ok = subject
        .as_deref()
        .and_then(|s| s.parse::<DistinguishedName>().ok())
        .is_some_and(|dn| statement.trusts_identity(&dn));
    let mut checks: Vec<Check> = report
        .checks
        .iter()
        .map(|c| Check {
            validation: c.validation,
            passed: c.result.is_ok(),
        })
        .collect();
    if !identity_ok {
        checks.push(Check {
            validation: Validation::Authenticity,
            passed: false,
        });
    }
    match evaluate_signature(statement, &checks) {
        SignatureVerdict::Accepted { logged_failures } => {
            for v in logged_failures {
                tracing::warn!(validation = ?v, "verification failure logged, not enforced (level {:?})", statement.level());
            }
        }
        SignatureVerdict::Rejected { by, .. } => {
            return Err(match report.check(by) {
                Some(Err(e)) => FailureReason::Check {
                    validation: by,
                    error: e.to_string(),
                },
                // The chain passed, so the identity check failed it.
                Some(Ok(())) => FailureReason::UntrustedIdentity {
                    subject: subject.unwrap_or_default(),
                },
                None => FailureReason::Check {
                    validation: by,
                    error: "the verifier did not run this check".to_owned(),
                },
            });
        }
    }
    // The Notary Project verifier checks the signed target equals the artifact being verified.
    match &report.target {
        Some(t) if &t.digest == digest => Ok(subject.unwrap_or_default()),
        Some(t) => Err(FailureReason::TargetMismatch {
            signed: t.digest.clone(),
        }),
        None => Err(FailureReason::Check {
            validation: Validation::Integrity,
            error: "the envelope names no target artifact".to_owned(),
        }),
    }
}

/// The certificates of the statement's trust stores, by store type.
fn anchors<'a>(store: &'a TrustStore, statement: &Statement) -> notary::Anchors<'a> {
    let mut out = notary::Anchors {
        ca: Vec::new(),
        signing_authority: Vec::new(),
        tsa: Vec::new(),
    };
    for r in statement.trust_stores() {
        let bucket = match r.kind {
            StoreType::Ca => &mut out.ca,
            StoreType::SigningAuthority => &mut out.signing_authority,
            StoreType::Tsa => &mut out.tsa,
        };
        bucket.extend(store.get(r.kind, &r.name).into_iter().flatten());
    }
    out
}

fn load_policy(
    policy_path: &Path,
    store_path: &Path,
    generation: PolicyGeneration,
) -> Result<PolicyState, LoadError> {
    let bytes = std::fs::read(policy_path).map_err(|source| LoadError::Read {
        path: policy_path.display().to_string(),
        source,
    })?;
    let document = TrustPolicyDocument::from_json(&bytes).map_err(|source| LoadError::Policy {
        path: policy_path.display().to_string(),
        source,
    })?;
    let store = TrustStore::load(store_path).map_err(|e| LoadError::TrustStore {
        path: store_path.display().to_string(),
        source: Box::new(e),
    })?;
    document
        .check_trust_stores(|kind, name| store.contains(kind, name))
        .map_err(|source| LoadError::Policy {
            path: policy_path.display().to_string(),
            source,
        })?;
    Ok(PolicyState {
        generation,
        document,
        store,
    })
}

/// `sha256:0123456789ab…` for messages.
fn short(d: &Digest) -> String {
    let s = d.to_string();
    match s.char_indices().nth(19) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}
