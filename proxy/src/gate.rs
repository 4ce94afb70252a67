//! The pipeline of one pull: scope → resolve → cache → discover → verify → decide.
//!
//! Input: a `PullRequest` (normalised image, credentials, deadline).
//! Output: a `Decision` — `Allow` carrying the digest to pin, or a
//! `Denial` whose text names image, digest and reason — or a `GateError`
//! when the decision could not be made (registry unreachable, deadline
//! passed), which the caller turns into a fail-closed refusal. A scope whose
//! requirements say `fail_open` turns a registry error into an unpinned
//! allow here, so the caller only ever sees errors that fail closed.
//!
//! What decides: the Notary trust policy judges each signature; the
//! requirements (`pullgate_policy::requirements`) judge the set of accepted
//! signers (how many, which named identities), and say what a denial does
//! (`enforce`, `audit`, `warn`) and what a registry outage does. A digest on
//! the break-glass list is allowed before any of that, with a warning.
//!
//! Every decision is counted in [`Metrics`] and, when configured, written
//! to the audit log as one JSON line.
//!
//! Only this module reads the clock; verifiers and the policy get `now`.
//! Verification of one `VerdictKey` (trust policy statement, requirements
//! scope, digest, policy generation) runs once for all concurrent pulls (see
//! `cache`). Two semaphores bound it across pulls: at most `[registry]
//! max_concurrent_discoveries` verifications talk to registries at once
//! (from the referrers walk to the last signature; a verification waits for
//! its turn under its deadline), and at most `[server]
//! max_concurrent_verifications` signature checks run on the blocking pool. An allow verdict
//! is cached until the earliest of the configured TTL, the signing
//! certificate's `notAfter`, the signature's signed expiry and, when the
//! level enforces revocation, the `nextUpdate` of the OCSP responses and
//! CRLs the revocation check read.
//!
//! `fail_open` turns only an outage into an allow: the registry could not be
//! reached, answered 5xx, or a request timed out. Any answer the registry
//! gave (404, 401, 403, content over its cap or not matching its digest) is
//! a fact about the image: a tag that does not resolve fails closed, a
//! listed signature that cannot be fetched is that signature's failure. A
//! 429 (rate limited) is neither: the decision stays open and fails closed,
//! uncached.
//!
//! Policy reloads ([`Gate::reload`]) swap in a new `PolicyState` with the
//! next [`PolicyGeneration`]; the generation is part of every cache key, so
//! no verdict made under the old policy is served after the swap. A named
//! trust store that is empty or missing does not stop a load or a reload:
//! it is logged, and a statement left without trust anchors denies every
//! image in its scopes (so emptying a store distrusts its CA at once).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pullgate_policy::config::{Config, Limits, TrustConfig};
use pullgate_policy::requirements::{Requirements, Unmet};
use pullgate_policy::{
    evaluate_signature, Check, Digest, DistinguishedName, Enforcement, FailMode, ImageRef, Level,
    Mode, PinnedRef, Repository, SignatureVerdict, Statement, StoreType, TrustPolicyDocument,
    TrustStoreRef, Validation,
};
use tokio::sync::Semaphore;

use crate::audit::{self, AuditLog, DecisionRecord, SignatureEntry};
use crate::cache::{Expiring, Lookup, VerdictCache, WaitError};
use crate::deadline::{Deadline, DeadlineExceeded};
use crate::metrics::{Metrics, Phase};
use crate::registry::{self, Credentials, Descriptor, RegistryClient};
use crate::revocation::RevocationCache;
use crate::verify::notary;
use crate::verify::revocation::RevocationData;
use crate::verify::trust_store::TrustStore;

mod key;

pub(crate) use key::VerdictKey;

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
    /// What containerd must pull: `name@digest`, or `None` to forward unchanged
    /// (level `skip`, or a registry outage under `fail_open`).
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
    /// None among the first `pages` pages of referrers, and the registry
    /// links to more than `[registry.limits] max_referrers_pages` allows.
    NoSignatureInPages { pages: usize },
    /// Signatures were found, none passed.
    SignaturesRejected {
        found: usize,
        first: Arc<SignatureFailure>,
    },
    /// Some signatures passed, but not the signers the requirements ask for.
    RequirementsUnmet { requirement: String, unmet: Unmet },
    /// Every trust store the statement verifies signatures with is empty or missing.
    NoTrustAnchors { stores: Vec<EmptyStore> },
}

/// A named trust store without certificates, as a statement names it.
#[derive(Debug, Clone)]
pub(crate) struct EmptyStore {
    /// `type:name`, as in the trust policy.
    pub(crate) store: TrustStoreRef,
    /// Whether the store's directory is missing (rather than empty).
    pub(crate) missing: bool,
}

impl fmt::Display for EmptyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing {
            write!(f, "trust store {} does not exist", self.store)
        } else {
            write!(f, "trust store {} is empty", self.store)
        }
    }
}

impl DenyReason {
    /// A short label for metrics.
    fn label(&self) -> &'static str {
        match self {
            Self::NoApplicableStatement { .. } => "no_statement",
            Self::NoSignature => "no_signature",
            Self::NoSignatureInPages { .. } => "no_signature_in_pages",
            Self::SignaturesRejected { .. } => "signatures_rejected",
            Self::RequirementsUnmet { .. } => "requirements_unmet",
            Self::NoTrustAnchors { .. } => "no_trust_anchors",
        }
    }
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
            Self::NoSignatureInPages { pages } => write!(
                f,
                "no Notary Project signature of this digest among the first {pages} pages of referrers the registry listed; it lists more than [registry.limits] max_referrers_pages lets pullgate read"
            ),
            Self::SignaturesRejected { found: 1, first } => write!(f, "{first}"),
            Self::SignaturesRejected { found, first } => {
                write!(f, "none of the {found} signatures passed; the first: {first}")
            }
            Self::RequirementsUnmet { requirement, unmet } => {
                write!(f, "requirements of scope \"{requirement}\" not met: {unmet}")
            }
            Self::NoTrustAnchors { stores } => {
                f.write_str("no signature can be trusted: ")?;
                for (i, s) in stores.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s}")?;
                }
                Ok(())
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
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum GateError {
    /// The registry could not answer.
    #[error("{0}")]
    Registry(#[from] registry::Error),
    /// The request's deadline passed while it waited for the (shared)
    /// discovery and verification of the image's signatures.
    #[error("the pull's deadline passed while its signatures were being discovered and verified")]
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

    /// A short label for metrics.
    fn kind(&self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Registry(e) if e.is_timeout() => "timeout",
            Self::Registry(e) if e.is_unreachable() => "unreachable",
            Self::Registry(e) if e.is_server_error() => "server_error",
            Self::Registry(e) if e.is_rate_limited() => "rate_limited",
            Self::Registry(e) if e.is_unauthorized() => "unauthorized",
            Self::Registry(e) if e.is_not_found() => "not_found",
            Self::Registry(_) => "other",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<DeadlineExceeded> for GateError {
    fn from(_: DeadlineExceeded) -> Self {
        Self::Deadline
    }
}

/// Why the gate could not be built at startup, or a reload was refused.
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
    /// The requirements file is invalid.
    #[error("requirements {path}: {source}")]
    Requirements {
        /// The file.
        path: String,
        /// Why.
        source: pullgate_policy::requirements::Error,
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
    /// The revocation configuration is unusable (offline without a CRL directory, a bad CRL file).
    #[error("revocation: {0}")]
    Revocation(String),
}

/// What became of one signature, kept with the verdict for the audit log and `pullgate verify`.
#[derive(Debug, Clone)]
pub(crate) struct SignatureRecord {
    pub(crate) digest: Digest,
    pub(crate) signer: Option<String>,
    /// `None` if it passed.
    pub(crate) failure: Option<String>,
    /// Failures the level logged rather than enforced, as `validation: why`.
    pub(crate) logged: Vec<String>,
}

impl SignatureRecord {
    fn entry(&self) -> SignatureEntry {
        SignatureEntry {
            digest: self.digest.to_string(),
            signer: self.signer.clone(),
            passed: self.failure.is_none(),
            reason: self.failure.clone(),
            logged_failures: self.logged.clone(),
        }
    }
}

/// A verdict on one digest under one policy generation.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    Allowed {
        signers: Vec<String>,
        signatures: Arc<[SignatureRecord]>,
        /// When the cache entry expires (for persisting it).
        until: SystemTime,
    },
    Denied {
        reason: DenyReason,
        signatures: Arc<[SignatureRecord]>,
    },
}

impl Verdict {
    fn signatures(&self) -> &[SignatureRecord] {
        match self {
            Self::Allowed { signatures, .. } | Self::Denied { signatures, .. } => signatures,
        }
    }
}

/// An allow verdict as persisted across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PersistedVerdict {
    /// The trust policy statement it was made under (see [`VerdictKey`]).
    pub(crate) statement: String,
    /// The requirements scope it was made under; `None` for the built-in default.
    pub(crate) requirement: Option<String>,
    pub(crate) digest: Digest,
    pub(crate) signers: Vec<String>,
    pub(crate) until: SystemTime,
}

/// The trust policy, requirements and trust store in force, with their generation.
#[derive(Debug)]
pub(crate) struct PolicyState {
    pub(crate) generation: PolicyGeneration,
    pub(crate) document: TrustPolicyDocument,
    pub(crate) requirements: Requirements,
    pub(crate) store: TrustStore,
    /// SHA-256 over the content of every file the state was loaded from
    /// (trust policy, requirements, trust store, `crl_dir`).
    pub(crate) fingerprint: [u8; 32],
}

impl PolicyState {
    /// The key of a verdict on `digest` in `repository` under this policy;
    /// `None` when no statement covers the repository.
    fn key(&self, repository: &Repository, digest: Digest) -> Option<VerdictKey> {
        let statement = self.document.statement_for(repository)?;
        VerdictKey::new(
            &self.document,
            &self.requirements,
            statement,
            self.requirements.for_repository(repository),
            digest,
            self.generation,
        )
    }
}

type Key = VerdictKey;

/// Everything one verification task needs, owned.
#[derive(Clone)]
struct VerifyJob {
    registry: RegistryClient,
    policy: Arc<PolicyState>,
    metrics: Arc<Metrics>,
    statement: String,
    repository: Repository,
    digest: Digest,
    credentials: Credentials,
    limits: Limits,
    permits: Arc<Semaphore>,
    /// Turns to discover and fetch signatures (`max_concurrent_discoveries`).
    discoveries: Arc<Semaphore>,
    allow_ttl: Duration,
    deny_ttl: Duration,
    budget: Duration,
    /// Examine every signature even when one is enough (`pullgate verify`).
    exhaustive: bool,
    revocation: RevocationCache,
}

/// The decision pipeline.
pub struct Gate {
    policy: std::sync::RwLock<Arc<PolicyState>>,
    trust: TrustConfig,
    /// `[revocation] crl_dir`: its content is part of the policy's fingerprint.
    crl_dir: Option<PathBuf>,
    registry: RegistryClient,
    /// Values behind an `Arc`: a hit clones a pointer, not the signer list.
    cache: VerdictCache<Key, Arc<Verdict>, GateError>,
    metrics: Arc<Metrics>,
    audit: std::sync::OnceLock<AuditLog>,
    limits: Limits,
    /// Signature checks on the blocking pool (`max_concurrent_verifications`).
    permits: Arc<Semaphore>,
    /// Verifications talking to registries (`max_concurrent_discoveries`).
    discoveries: Arc<Semaphore>,
    allow_ttl: Duration,
    deny_ttl: Duration,
    budget: Duration,
    /// Allow verdicts computed so far (not cache hits): tells `persist` when to save.
    new_allows: std::sync::atomic::AtomicU64,
    revocation: RevocationCache,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// How the gate is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// A `PullImage`: cached, single flight, stops at the first good signature when that is enough.
    Pull,
    /// `pullgate verify`: no cache, every signature examined.
    Inspect,
}

/// What [`Gate::decide_inner`] learnt, for metrics and the audit log.
struct Outcome {
    result: Result<Decision, GateError>,
    record: DecisionRecord,
    reason_label: &'static str,
}

impl Gate {
    /// Reads the trust policy, requirements and trust store named in `config` and builds the pipeline.
    ///
    /// Blocking: call at startup, before serving.
    ///
    /// # Errors
    /// [`LoadError`] naming the file or entry at fault.
    pub fn load(config: &Config) -> Result<Self, LoadError> {
        let crl_dir = config.revocation.crl_dir.clone();
        let policy = load_policy(&config.trust, crl_dir.as_deref(), PolicyGeneration(1))?;
        let registry = RegistryClient::new(&config.registry)
            .map_err(|e| LoadError::Registry(e.to_string()))?;
        let revocation = RevocationCache::new(&config.revocation)
            .map_err(|e| LoadError::Revocation(e.to_string()))?;
        let metrics = Arc::new(Metrics::new());
        metrics.set_generation(1);
        let evictions = Arc::clone(&metrics);
        log_dangerous(&policy);
        Ok(Self {
            policy: std::sync::RwLock::new(Arc::new(policy)),
            trust: config.trust.clone(),
            crl_dir,
            registry,
            cache: VerdictCache::with_eviction_listener(
                config.cache.max_entries,
                Some(Box::new(move |cause| {
                    evictions.cache_eviction(cause.as_str())
                })),
            ),
            metrics,
            audit: std::sync::OnceLock::new(),
            limits: config.registry.limits,
            permits: Arc::new(Semaphore::new(
                config
                    .server
                    .max_concurrent_verifications
                    .min(Semaphore::MAX_PERMITS),
            )),
            discoveries: Arc::new(Semaphore::new(
                config
                    .registry
                    .max_concurrent_discoveries
                    .min(Semaphore::MAX_PERMITS),
            )),
            allow_ttl: Duration::from_secs(config.cache.allow_ttl_secs),
            deny_ttl: Duration::from_secs(config.cache.deny_ttl_secs),
            budget: config.server.decision_budget(),
            new_allows: std::sync::atomic::AtomicU64::new(0),
            revocation,
        })
    }

    /// How many allow verdicts have been computed (cache misses) since start.
    pub(crate) fn new_allows(&self) -> u64 {
        self.new_allows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The metrics this gate records into.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Opens the audit log at `path` and records every later decision there.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub async fn open_audit_log(
        &self,
        path: &Path,
    ) -> Result<tokio::task::JoinHandle<()>, audit::AuditError> {
        let (log, task) = AuditLog::open(path).await?;
        if self.audit.set(log).is_err() {
            tracing::warn!("audit log already open; keeping the first");
        }
        Ok(task)
    }

    /// The generation in force.
    pub fn generation(&self) -> PolicyGeneration {
        self.policy().generation
    }

    fn policy(&self) -> Arc<PolicyState> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the trust files and `crl_dir`; when their content changed,
    /// swaps in the new policy with the next generation (and the CRLs of
    /// `crl_dir`). Returns the new generation, or `None` when nothing changed.
    ///
    /// Certificates removed from a named store are distrusted by the new
    /// policy even when that leaves the store empty or removes it: the load
    /// does not fail for that (a statement without trust anchors denies).
    ///
    /// Blocking (reads files): call on the blocking pool.
    ///
    /// # Errors
    /// [`LoadError`] when the new files are invalid; the old policy stays in force.
    pub fn reload(&self) -> Result<Option<PolicyGeneration>, LoadError> {
        let current = self.policy();
        let fingerprint = fingerprint(&self.trust, self.crl_dir.as_deref())?;
        if fingerprint == current.fingerprint {
            return Ok(None);
        }
        let next = PolicyGeneration(current.generation.0 + 1);
        let loaded = load_policy(&self.trust, self.crl_dir.as_deref(), next).and_then(|state| {
            self.revocation
                .reload_crl_dir()
                .map_err(|e| LoadError::Revocation(e.to_string()))?;
            Ok(state)
        });
        let state = match loaded {
            Ok(s) => s,
            Err(e) => {
                self.metrics.reload("invalid");
                return Err(e);
            }
        };
        log_dangerous(&state);
        let mut guard = match self.policy.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Another reload may have won the race; never go backwards.
        if guard.generation >= next {
            return Ok(None);
        }
        *guard = Arc::new(state);
        drop(guard);
        self.metrics.set_generation(next.0);
        self.metrics.reload("applied");
        Ok(Some(next))
    }

    /// The allow verdicts of the policy in force, with the fingerprint of
    /// the files that policy was loaded from (for `persist`).
    pub(crate) fn allow_verdicts(&self) -> ([u8; 32], Vec<PersistedVerdict>) {
        let policy = self.policy();
        let verdicts = self
            .cache
            .entries()
            .into_iter()
            .filter(|(key, _)| key.generation == policy.generation)
            .filter_map(|(key, v)| match &*v {
                Verdict::Allowed { signers, until, .. } => {
                    let (statement, requirement) =
                        key.names(&policy.document, &policy.requirements)?;
                    Some(PersistedVerdict {
                        statement: statement.to_owned(),
                        requirement: requirement.map(str::to_owned),
                        digest: key.digest,
                        signers: signers.clone(),
                        until: *until,
                    })
                }
                Verdict::Denied { .. } => None,
            })
            .collect();
        (policy.fingerprint, verdicts)
    }

    /// Puts persisted allow verdicts back into the cache, when they were
    /// made under trust files with this `fingerprint`; returns how many.
    pub(crate) fn restore(&self, fingerprint: &[u8; 32], verdicts: Vec<PersistedVerdict>) -> usize {
        let policy = self.policy();
        if &policy.fingerprint != fingerprint {
            tracing::info!("persisted verdicts were made under other trust files; ignored");
            return 0;
        }
        // Only the gate reads the clock.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let mut n = 0;
        for v in verdicts {
            let Ok(ttl) = v.until.duration_since(now) else {
                continue;
            };
            let Some(key) = VerdictKey::from_names(
                &policy.document,
                &policy.requirements,
                &v.statement,
                v.requirement.as_deref(),
                v.digest,
                policy.generation,
            ) else {
                continue;
            };
            let value = Verdict::Allowed {
                signers: v.signers,
                signatures: Arc::from(Vec::new()),
                until: v.until,
            };
            self.cache.insert(
                key,
                Expiring {
                    value: Arc::new(value),
                    ttl: ttl.min(self.allow_ttl),
                },
            );
            n += 1;
        }
        n
    }

    /// Whether an image the runtime holds may be reported present by
    /// `ImageStatus`: one of its `name@digest` references has an allow
    /// verdict under the policy in force — under the statement and
    /// requirements scope of that reference's repository ([`VerdictKey`]) —
    /// or needs none (level `skip`, a break-glass digest, a scope in `audit`
    /// or `warn` mode).
    pub(crate) fn may_show(&self, repo_digests: &[PinnedRef]) -> bool {
        let policy = self.policy();
        repo_digests.iter().any(|pinned| {
            let repo = pinned.repository();
            let requirement = policy.requirements.for_repository(repo);
            if requirement.mode() != Mode::Enforce
                || policy.requirements.break_glass(pinned.digest()).is_some()
            {
                return true;
            }
            match policy.document.statement_for(repo) {
                Some(s) if s.level() == Level::Skip => return true,
                None => return false,
                Some(_) => {}
            }
            policy
                .key(repo, pinned.digest().clone())
                .and_then(|key| self.cache.get(&key))
                .is_some_and(|v| matches!(*v, Verdict::Allowed { .. }))
        })
    }

    /// Decides one pull.
    ///
    /// # Errors
    /// [`GateError`] when the decision could not be made and the scope fails closed.
    ///
    /// # Cancel safety
    /// Cancel safe: the shared verification goes on for other callers.
    pub(crate) async fn decide(&self, req: PullRequest) -> Result<Decision, GateError> {
        let outcome = self.decide_inner(req, Flow::Pull).await;
        self.finish(&outcome).await;
        outcome.result
    }

    /// Runs the whole decision for `image` without the cache and without
    /// pulling, examining every signature (`pullgate verify`). The record
    /// is audited like a pull's.
    pub async fn inspect(&self, image: &ImageRef, budget: Duration) -> DecisionRecord {
        let req = PullRequest {
            image: image.clone(),
            credentials: Credentials::NotGiven,
            deadline: Deadline::after(budget),
        };
        let outcome = self.decide_inner(req, Flow::Inspect).await;
        self.finish(&outcome).await;
        outcome.record
    }

    async fn finish(&self, outcome: &Outcome) {
        self.metrics
            .decision(outcome.record.verdict.as_str(), outcome.reason_label);
        if let Some(log) = self.audit.get() {
            log.record(outcome.record.clone()).await;
        }
    }

    async fn decide_inner(&self, req: PullRequest, flow: Flow) -> Outcome {
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
            discoveries: Arc::clone(&self.discoveries),
            allow_ttl: self.allow_ttl,
            deny_ttl: self.deny_ttl,
            budget: self.budget,
            exhaustive: flow == Flow::Inspect,
            revocation: self.revocation.clone(),
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

/// Logs, at startup and at each reload, every setting that weakens enforcement.
fn log_dangerous(state: &PolicyState) {
    for s in state.document.statements() {
        if s.level() == Level::Skip {
            let scopes: Vec<String> = s
                .registry_scopes()
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::warn!(statement = s.name(), scopes = %scopes.join(", "),
                "trust policy statement has level skip: images in its scopes are not verified");
        }
    }
    let requirements = &state.requirements;
    for r in requirements.scopes() {
        if r.on_registry_error() == FailMode::Open {
            tracing::warn!(
                scope = r.name(),
                "requirements scope is fail_open: a registry outage lets images through unverified"
            );
        }
        if r.mode() != Mode::Enforce {
            tracing::warn!(scope = r.name(), mode = %r.mode(), "requirements scope does not enforce: denials are only recorded");
        }
    }
    for b in requirements.break_glass_entries() {
        tracing::warn!(digest = %b.digest, reason = b.reason, "break-glass digest configured: allowed without verification");
    }
}

/// Milliseconds since the Unix epoch (for audit records; only the gate reads the clock).
fn unix_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A signature that passed the trust policy.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The signing certificate's subject.
    pub(crate) subject: String,
    /// The earliest of the signing certificate's `notAfter`, the signed
    /// expiry and, when the level enforces revocation, the `nextUpdate` of
    /// the revocation data the check read.
    pub(crate) valid_until: Option<SystemTime>,
    /// Failures the verification level logs instead of enforcing (permissive, audit), with why.
    pub(crate) logged: Vec<(Validation, String)>,
}

impl VerifyJob {
    /// Discovers and verifies the signatures of one digest. Runs in the cache's task.
    async fn run(self) -> Result<Expiring<Arc<Verdict>>, GateError> {
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
        if found.is_empty() {
            let reason = match found.cut_at_pages {
                Some(pages) => DenyReason::NoSignatureInPages { pages },
                None => DenyReason::NoSignature,
            };
            return Ok(self.denied(reason, Vec::new()));
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
                    // not answer (an outage), one that asked to be left alone
                    // (429) or a deadline that passed leaves the decision open
                    // (and only the outage may fail open).
                    if let FailureReason::Fetch(e) = &failure.reason {
                        if e.is_outage() || e.is_deadline_exceeded() || e.is_rate_limited() {
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

/// The earlier of two optional instants (`None` is no bound).
fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn dns(accepted: &[(DistinguishedName, String)]) -> Vec<DistinguishedName> {
    accepted.iter().map(|(d, _)| d.clone()).collect()
}

/// The statement called `name` in `policy`.
fn statement_named<'a>(policy: &'a PolicyState, name: &str) -> Option<&'a Statement> {
    policy
        .document
        .statements()
        .iter()
        .find(|s| s.name() == name)
}

/// Runs the verifier on one envelope with the revocation data at hand. CPU-bound: call on the blocking pool.
fn run_verifier(
    store: &TrustStore,
    statement: &Statement,
    media_type: &str,
    envelope: &[u8],
    revocation: &dyn RevocationData,
    now: SystemTime,
) -> notary::Report {
    let anchors = anchors(store, statement);
    let options = notary::Options {
        verify_timestamp: statement.verify_timestamp(),
    };
    notary::verify(media_type, envelope, &anchors, options, revocation, now)
}

/// Applies the statement (levels, trusted identities) and the target check to one verifier report.
fn decide_signature(
    statement: &Statement,
    report: &notary::Report,
    digest: &Digest,
) -> Result<Accepted, FailureReason> {
    let subject = report.signer.as_ref().map(|s| s.subject.clone());
    let not_after = report.signer.as_ref().map(|s| s.not_after);
    let valid_until = earliest(not_after, report.expiry);
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
    let logged = match evaluate_signature(statement, &checks) {
        SignatureVerdict::Accepted { logged_failures } => logged_failures
            .into_iter()
            .map(|v| {
                let why = match report.check(v) {
                    Some(Err(e)) => e.to_string(),
                    _ => "the signing certificate is not a trusted identity".to_owned(),
                };
                tracing::warn!(validation = %v, level = %statement.level(), reason = %why,
                    "verification failure logged, not enforced");
                (v, why)
            })
            .collect(),
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
    };
    // The Notary Project verifier checks the signed target equals the artifact being verified.
    match &report.target {
        Some(t) if &t.digest == digest => Ok(Accepted {
            subject: subject.unwrap_or_default(),
            valid_until,
            logged,
        }),
        Some(t) => Err(FailureReason::TargetMismatch {
            signed: t.digest.clone(),
        }),
        None => Err(FailureReason::Check {
            validation: Validation::Integrity,
            error: "the envelope names no target artifact".to_owned(),
        }),
    }
}

/// The stores of `statement` that would verify a signature (types `ca` and
/// `signingAuthority`), when every one of them is empty or missing and the
/// level enforces authenticity: no signature can pass, and the denial says
/// why. `None` when one of them holds a certificate (or the level only logs
/// authenticity failures).
fn without_anchors(store: &TrustStore, statement: &Statement) -> Option<Vec<EmptyStore>> {
    if statement.enforcement(Validation::Authenticity) != Enforcement::Enforce {
        return None;
    }
    let mut empty = Vec::new();
    for r in statement.trust_stores() {
        if r.kind == StoreType::Tsa {
            continue;
        }
        match store.get(r.kind, &r.name) {
            Some(certs) if !certs.is_empty() => return None,
            found => empty.push(EmptyStore {
                store: r.clone(),
                missing: found.is_none(),
            }),
        }
    }
    (!empty.is_empty()).then_some(empty)
}

/// Logs every named store a statement uses that is empty or missing: its
/// certificates are distrusted, and a statement left without any denies.
fn log_empty_stores(state: &PolicyState) {
    for s in state.document.statements() {
        for r in s.trust_stores() {
            let found = state.store.get(r.kind, &r.name);
            if found.is_some_and(|c| !c.is_empty()) {
                continue;
            }
            let problem = if found.is_none() {
                "does not exist"
            } else {
                "is empty"
            };
            tracing::warn!(statement = s.name(), store = %r,
                "named trust store {problem}: nothing it held is trusted");
        }
        if let Some(stores) = without_anchors(&state.store, s) {
            tracing::warn!(statement = s.name(), stores = stores.len(),
                "trust policy statement has no trust anchors left: every image in its scopes is denied");
        }
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

/// Loads trust policy, requirements and trust store as one [`PolicyState`],
/// fingerprinted with the content of `crl_dir`.
fn load_policy(
    trust: &TrustConfig,
    crl_dir: Option<&Path>,
    generation: PolicyGeneration,
) -> Result<PolicyState, LoadError> {
    let fingerprint = fingerprint(trust, crl_dir)?;
    let policy_path = &trust.policy;
    let store_path = &trust.store;
    let bytes = read(policy_path)?;
    let document = TrustPolicyDocument::from_json(&bytes).map_err(|source| LoadError::Policy {
        path: policy_path.display().to_string(),
        source,
    })?;
    let requirements = match requirements_path(trust) {
        None => Requirements::default(),
        Some(path) => {
            let bytes = read(path)?;
            let text = String::from_utf8_lossy(&bytes);
            Requirements::from_toml(&text).map_err(|source| LoadError::Requirements {
                path: path.display().to_string(),
                source,
            })?
        }
    };
    let store = TrustStore::load(store_path).map_err(|e| LoadError::TrustStore {
        path: store_path.display().to_string(),
        source: Box::new(e),
    })?;
    // A named store the policy uses that is empty or missing is not an
    // error: refusing it would keep the old certificates trusted on reload
    // (an operator empties a store to distrust its CA) and leave the node
    // without pullgate at startup. It is logged, and a statement left with no
    // trust anchors denies every image in its scopes, saying why.
    let state = PolicyState {
        generation,
        document,
        requirements,
        store,
        fingerprint,
    };
    log_empty_stores(&state);
    Ok(state)
}

/// `[trust] requirements`, when set to a non-empty path.
fn requirements_path(trust: &TrustConfig) -> Option<&Path> {
    trust
        .requirements
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// SHA-256 over the content of the trust policy, the requirements file,
/// every file under the trust store and every file of `crl_dir` (each
/// sorted by path), so any change — not just an mtime — is seen, and nothing
/// else is. Persisted verdicts carry it: a verdict made before a CRL was
/// dropped into `crl_dir` is not restored after it.
///
/// Blocking. Reads every CRL file of `crl_dir` each time (the reload poll
/// calls this every `reload_interval_ms`): hashing runs at a few hundred
/// MB/s, so a directory of large CRLs costs that much CPU per poll.
///
/// # Errors
/// A file or directory cannot be read.
pub(crate) fn fingerprint(
    trust: &TrustConfig,
    crl_dir: Option<&Path>,
) -> Result<[u8; 32], LoadError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut add = |label: &[u8], path: &Path| -> Result<(), LoadError> {
        let bytes = read(path)?;
        h.update(label);
        h.update(path.as_os_str().as_encoded_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
        Ok(())
    };
    add(b"policy", &trust.policy)?;
    if let Some(p) = requirements_path(trust) {
        add(b"requirements", p)?;
    }
    let mut files = Vec::new();
    collect_files(&trust.store, &mut files, 0)?;
    files.sort();
    for f in &files {
        add(b"store", f)?;
    }
    if let Some(dir) = crl_dir {
        let mut crls = Vec::new();
        // Only the directory's own files are read as CRLs (see `revocation`).
        collect_files(dir, &mut crls, MAX_STORE_DEPTH)?;
        crls.sort();
        for f in &crls {
            add(b"crl", f)?;
        }
    }
    Ok(h.finalize().into())
}

/// Trust store directories are shallow (`x509/<type>/<name>/<file>`); deeper is refused.
const MAX_STORE_DEPTH: usize = 6;

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), LoadError> {
    let io = |source| LoadError::Read {
        path: dir.display().to_string(),
        source,
    };
    if depth > MAX_STORE_DEPTH {
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A missing store is TrustStore::load's to report.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(io)?;
        if meta.is_dir() {
            collect_files(&path, out, depth + 1)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// `sha256:0123456789ab…` for messages.
fn short(d: &Digest) -> String {
    let s = d.to_string();
    match s.char_indices().nth(19) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests;
