//! The pipeline of one pull: scope → resolve → cache → discover → verify → decide.
//!
//! Input: a `PullRequest` (normalised image, credentials, deadline).
//! Output: one typed `Outcome` with the `Facts` learnt on the way. The
//! CRI door gets it as a `Decision` — `Allow` carrying the digest to pin,
//! or a `Denial` whose text names image, digest and reason — or a
//! `GateError` when the decision could not be made (registry unreachable,
//! deadline passed), which it turns into a fail-closed refusal; the image
//! verifier (`Gate::decide_outcome`) and `pullgate verify`
//! (`Gate::inspect`) get the outcome itself. A scope whose requirements
//! say `fail_open` turns a registry error into an unpinned allow here, so a
//! door only ever sees errors that fail closed.
//!
//! What decides: the Notary trust policy judges each Notary Project
//! signature, a requirements scope's `[scope.cosign]` each cosign signature
//! (`.sig` layers and Sigstore bundles); the requirements
//! (`pullgate_policy::requirements`) say which kinds count, judge the set of
//! accepted signers across kinds (how many, which named identities), and say
//! what a denial does (`enforce`, `audit`, `warn`) and what a registry outage
//! does. Where the scope lists `[[scope.attestations]]`, an allow by the
//! signatures stands only if each predicate type has a statement of this
//! digest, signed by a signer of the scope, whose conditions all hold. A
//! scope that lists cosign needs no trust policy statement. A digest
//! on the break-glass list is allowed before any of that, with a warning.
//!
//! Deciding returns one typed `Outcome`; the answer of each door (CRI,
//! image verifier, `pullgate verify`), the log line, the count in
//! [`Metrics`] and, when configured, the audit log's JSON line are each made
//! from it in one place (`outcome`, and the door's own answer type).
//!
//! Only this module reads the clock; verifiers and the policy get `now`.
//! Verification of one `VerdictKey` (trust policy statement, requirements
//! scope, repository, digest, policy generation) runs once for all
//! concurrent pulls (see `cache`). Two semaphores bound it across pulls: at
//! most `[registry] max_concurrent_discoveries` verifications talk to
//! registries at once (from the referrers walk to the last signature; a
//! verification waits for its turn under its deadline), and at most
//! `[server] max_concurrent_verifications` signature checks run on the
//! blocking pool. An allow verdict is cached until the earliest of the
//! configured TTL, the signing certificate's `notAfter`, the signature's
//! signed expiry and, when the level enforces revocation, the `nextUpdate`
//! of the OCSP responses and CRLs the revocation check read. A cosign
//! signature adds no bound: it is judged at its proven signing time, and
//! the keys and trusted root it relied on are part of the policy's
//! fingerprint, so a change of them is a new generation.
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
//!
//! # Stages
//! Each in its own file; a stage calls only the next.
//! - this module: the [`Gate`] facade (`decide`, `inspect`, `reload`,
//!   `may_show`, persisted verdicts);
//! - `engine`: what the gate and every verification share (registry client,
//!   metrics, limits, semaphores, TTLs, budget, revocation and AWS Signer
//!   clients), and one verification's job;
//! - `pull`: deciding one pull (scope, resolve, break-glass, cache, the
//!   scope's mode and fail mode);
//! - `verify_digest`: the signatures of one digest — discover, fan out
//!   (concurrently, until the requirements are met), order, judge;
//! - `discover`: where the signatures of a digest are (referrers, cosign's
//!   `.sig` tag) and what each referrer is;
//! - `notary` and `cosign`: checking one signature of each kind, in the same
//!   shape (fetch → verify → revocation / log checks → judge), each with its
//!   pure half in `judge` (run the verifier, judge its report);
//! - `attestation`: a scope's required attestations of a digest its
//!   signatures allowed — find (bundle referrers, cosign's `.att` tag,
//!   in-toto artifacts signed with notation), verify, evaluate the CEL
//!   conditions (pure half in `judge`);
//! - `verdict`: the rules that turn the signatures' results into a verdict
//!   and its TTL (pure, with table tests);
//! - `outcome`: the one typed outcome of a pull, and the answer, audit
//!   record, metrics labels and log line made from it;
//! - `decision`: what the gate answers (decision, denial, errors, verdicts);
//! - `policy_state`: the trust files in force, their fingerprint and reload,
//!   and the one choice of requirements scope and statement for a
//!   repository (`plan_for`), as ids only that policy gives;
//! - `refresh`: verifying an allow verdict in use again before it expires;
//! - `key`: what a verdict is found by.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pullgate_policy::config::{Config, TrustConfig};
use pullgate_policy::{Digest, ImageRef, Mode, PinnedRef, Repository};

use crate::audit::{self, AuditLog, DecisionRecord};
use crate::cache::VerdictCache;
use crate::deadline::Deadline;
use crate::metrics::Metrics;
use crate::registry::Credentials;

mod attestation;
mod cosign;
mod decision;
mod discover;
mod engine;
mod key;
mod notary;
mod origin;
mod outcome;
mod policy_state;
mod pull;
mod refresh;
mod standing;
mod verdict;
mod verify_digest;

pub(crate) use decision::{Allow, Decision, Denial, GateError, Halted, PullRequest, Undecided};
#[cfg(test)]
pub(crate) use decision::{DenyReason, SignatureRecord};
pub(crate) use key::VerdictKey;
pub(crate) use origin::{Door, Origin, Pod};
pub(crate) use outcome::{Facts, Outcome};
pub(crate) use policy_state::trust_policy_file;
pub use policy_state::{LoadError, PolicyGeneration};

use crate::policy_bundle::store::StartupTrust;
use decision::{Signatures, SignerLists, Signers, Verdict};
use engine::Engine;
use policy_state::{fingerprint, load_policy, log_dangerous, PolicyState, Route};
use pull::Flow;
pub(crate) use pull::OnCold;
use refresh::RefreshAhead;
use standing::StandingAllows;

/// Why [`Gate::verified_signers`] gave no signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unverified {
    /// Checked, and not verified: why.
    Refused(String),
    /// Could not be checked (registry unreachable, deadline): why.
    Undecided(String),
}

/// An allow verdict as persisted across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PersistedVerdict {
    /// The trust policy statement it was made under (see [`VerdictKey`]);
    /// `None` for a scope decided without one (cosign).
    pub(crate) statement: Option<String>,
    /// The requirements scope it was made under; `None` for the built-in default.
    pub(crate) requirement: Option<String>,
    /// The repository whose signatures were verified.
    pub(crate) repository: Repository,
    /// The scope's `signature_repository` the signatures were found in
    /// (`None`: next to the image); restored only under a scope naming the same.
    pub(crate) signature_repository: Option<Repository>,
    pub(crate) digest: Digest,
    pub(crate) signers: Vec<String>,
    pub(crate) until: SystemTime,
}

type Key = VerdictKey;

/// The decision pipeline.
pub struct Gate {
    policy: std::sync::RwLock<Arc<PolicyState>>,
    /// The trust files the policy in force was loaded from (what a reload
    /// re-reads); `None` under the deny-all policy of a `[trust] source`
    /// with no good bundle yet (nothing to re-read: only the source replaces it).
    trust: std::sync::RwLock<Option<TrustConfig>>,
    /// `[revocation] crl_dir`: its content is part of the policy's fingerprint.
    crl_dir: Option<PathBuf>,
    /// Clients, bounds and settings, shared with every verification.
    engine: Arc<Engine>,
    /// Lean verdicts (a hit clones a pointer); a computation's signature
    /// records go to its callers only.
    cache: VerdictCache<Key, Verdict, Signatures, GateError>,
    /// Signer lists shared by the cached allow verdicts.
    signer_lists: Arc<SignerLists>,
    audit: std::sync::OnceLock<AuditLog>,
    /// Allow verdicts computed so far, refreshes included (not cache
    /// hits): tells `persist` when to save.
    new_allows: Arc<std::sync::atomic::AtomicU64>,
    /// The last allow of each key of the policy in force, kept past its
    /// TTL: what the runtime doors admit through a registry outage
    /// (`standing`), with the time the verdict ran until.
    standing: Arc<StandingAllows<Key, (Signers, SystemTime)>>,
    /// When allow verdicts in use are verified again, and how many at once.
    refresh: RefreshAhead,
    /// The digest of the policy source's last good bundle the gate started
    /// from; `None` without a source, or when none loaded.
    started_from: Option<Digest>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
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
        let first = PolicyGeneration(1);
        let mut started_from = None;
        let (trust, policy) = match crate::policy_bundle::store::startup_trust(config) {
            StartupTrust::Local => (
                Some(config.trust.clone()),
                load_policy(&config.trust, crl_dir.as_deref(), first)?,
            ),
            StartupTrust::LastGood(stored) => {
                match load_policy(&stored.trust, crl_dir.as_deref(), first) {
                    Ok(p) => {
                        started_from = Some(stored.digest);
                        (Some(stored.trust), p)
                    }
                    Err(e) => {
                        tracing::error!(error = %e,
                            "the last good policy bundle does not load: denying every pull until the policy source gives a good one");
                        (None, PolicyState::deny_all(first)?)
                    }
                }
            }
            StartupTrust::NoneYet => (None, PolicyState::deny_all(first)?),
        };
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::new(config, Arc::clone(&metrics))?;
        metrics.set_generation(1);
        let evictions = Arc::clone(&metrics);
        log_dangerous(&policy);
        Ok(Self {
            policy: std::sync::RwLock::new(Arc::new(policy)),
            trust: std::sync::RwLock::new(trust),
            crl_dir,
            engine: Arc::new(engine),
            cache: VerdictCache::with_eviction_listener(
                config.cache.max_entries,
                Some(Box::new(move |cause| {
                    evictions.cache_eviction(cause.as_str())
                })),
            ),
            signer_lists: Arc::new(SignerLists::default()),
            audit: std::sync::OnceLock::new(),
            new_allows: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            standing: Arc::new(StandingAllows::new(config.cache.max_entries)),
            refresh: RefreshAhead::new(config.cache.refresh_ahead_percent),
            started_from,
        })
    }

    /// How many allow verdicts have been computed (cache misses) since start.
    pub(crate) fn new_allows(&self) -> u64 {
        self.new_allows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The metrics this gate records into.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.engine.metrics)
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
        // The policy first, then its files: a source's swap sets both
        // under the policy's write lock (see `apply_source`).
        let current = self.policy();
        let Some(trust) = self.trust() else {
            return Ok(None);
        };
        let fingerprint = fingerprint(&trust, self.crl_dir.as_deref())?;
        if fingerprint == current.fingerprint {
            return Ok(None);
        }
        let next = PolicyGeneration(current.generation.0 + 1);
        let loaded = load_policy(&trust, self.crl_dir.as_deref(), next).and_then(|state| {
            self.engine
                .revocation
                .reload_crl_dir()
                .map_err(|e| LoadError::Revocation(e.to_string()))?;
            Ok(state)
        });
        let state = match loaded {
            Ok(s) => s,
            Err(e) => {
                self.engine.metrics.reload("invalid");
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
        // No allow of the old policy stands under the new one.
        self.standing.clear();
        self.engine.metrics.set_generation(next.0);
        self.engine.metrics.reload("applied");
        Ok(Some(next))
    }

    /// The digest of the policy source's bundle the gate started from
    /// (read and checked once, at [`Gate::load`]); `None` without one.
    pub(crate) fn started_from(&self) -> Option<&Digest> {
        self.started_from.as_ref()
    }

    /// The trust files in force; `None` under a source's deny-all policy.
    fn trust(&self) -> Option<TrustConfig> {
        match self.trust.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the trust files `trust` names (a verified policy bundle laid
    /// out on disk) and swaps them in as the next generation, whatever the
    /// fingerprint: later reloads re-read these files. No verdict of the
    /// old policy is served after it.
    ///
    /// Blocking (reads files): call on the blocking pool.
    ///
    /// # Errors
    /// [`LoadError`] when the files are invalid; the old policy stays in force.
    pub(crate) fn apply_source(&self, trust: TrustConfig) -> Result<PolicyGeneration, LoadError> {
        let current = self.policy();
        let next = PolicyGeneration(current.generation.0 + 1);
        let state = match load_policy(&trust, self.crl_dir.as_deref(), next) {
            Ok(s) => s,
            Err(e) => {
                self.engine.metrics.reload("invalid");
                return Err(e);
            }
        };
        log_dangerous(&state);
        let mut guard = match self.policy.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A reload between our read and this lock only moved the generation on.
        let next = PolicyGeneration(next.0.max(guard.generation.0 + 1));
        let mut state = state;
        state.generation = next;
        match self.trust.write() {
            Ok(mut t) => *t = Some(trust),
            Err(poisoned) => *poisoned.into_inner() = Some(trust),
        }
        *guard = Arc::new(state);
        drop(guard);
        self.standing.clear();
        self.engine.metrics.set_generation(next.0);
        self.engine.metrics.reload("applied");
        Ok(next)
    }

    /// Whether the artifact `pinned` is verified under this gate's policy
    /// (the bootstrap trust of a policy source): its accepted signers, or
    /// why not. Only a verified allow counts: level `skip`, break-glass,
    /// `audit`, `warn`, fail-open and standing allows are refusals.
    pub(crate) async fn verified_signers(
        &self,
        pinned: &ImageRef,
        budget: Duration,
    ) -> Result<Vec<String>, Unverified> {
        let (outcome, _) = self.inspect(pinned, budget).await;
        match outcome {
            Outcome::Verified { signers, .. } if !signers.is_empty() => Ok(signers.to_vec()),
            Outcome::Error(e) => Err(Unverified::Undecided(e.to_string())),
            other => Err(Unverified::Refused(other.reason().unwrap_or_else(|| {
                format!("allowed unverified ({})", other.metric_labels().0)
            }))),
        }
    }

    /// The metrics this gate records into, for a caller beside it.
    pub(crate) fn metrics_ref(&self) -> &Metrics {
        &self.engine.metrics
    }

    /// Re-reads containerd's hosts directory (`[registry] hosts_dir`) the
    /// registry client follows, and swaps it in when its content changed:
    /// `Ok(true)`; `Ok(false)` when unchanged.
    ///
    /// Blocking (reads files): call on the blocking pool.
    ///
    /// # Errors
    /// The directory cannot be read or a `hosts.toml` is invalid; the
    /// previous endpoints stay in force.
    pub(crate) fn reload_hosts(&self) -> Result<bool, crate::registry::Error> {
        self.engine.registry.reload_hosts()
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
            .filter_map(|(key, v)| match &v {
                Verdict::Allowed { signers, .. } => {
                    let (statement, scope) = policy.names(&key)?;
                    Some(PersistedVerdict {
                        statement: statement.map(str::to_owned),
                        requirement: scope.map(str::to_owned),
                        repository: key.repository()?,
                        signature_repository: key.signature_repository(),
                        digest: key.digest.digest()?,
                        signers: signers.to_vec(),
                        until: v.until()?,
                    })
                }
                Verdict::Denied { .. } => None,
            })
            .collect::<Vec<_>>();
        // Allows past their TTL still stand (through a registry outage, a
        // container may restart after a reboot too); the cache's own win.
        let mut verdicts = verdicts;
        let live: std::collections::HashSet<(Repository, Digest)> = verdicts
            .iter()
            .map(|v| (v.repository.clone(), v.digest.clone()))
            .collect();
        for (key, (signers, until)) in self.standing.entries() {
            if key.generation != policy.generation {
                continue;
            }
            let (Some((statement, scope)), Some(repository), Some(digest)) =
                (policy.names(&key), key.repository(), key.digest.digest())
            else {
                continue;
            };
            if live.contains(&(repository.clone(), digest.clone())) {
                continue;
            }
            verdicts.push(PersistedVerdict {
                statement: statement.map(str::to_owned),
                requirement: scope.map(str::to_owned),
                repository,
                signature_repository: key.signature_repository(),
                digest,
                signers: signers.to_vec(),
                until,
            });
        }
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
            let Some(key) = policy.key_from_names(
                v.statement.as_deref(),
                v.requirement.as_deref(),
                &v.repository,
                v.signature_repository.as_ref(),
                &v.digest,
            ) else {
                continue;
            };
            let signers = self.signer_lists.share(v.signers.into());
            self.standing
                .allowed(key.clone(), (Arc::clone(&signers), v.until));
            // Past its time: it only stands (see `standing`).
            let Ok(ttl) = v.until.duration_since(now) else {
                continue;
            };
            let value = Verdict::allowed(signers, v.until);
            self.cache
                .insert(key, value, ttl.min(self.engine.ttls.allow));
            n += 1;
        }
        n
    }

    /// Whether an image the runtime holds may be reported present by
    /// `ImageStatus`: one of its `records` — each of its names' repository
    /// pinned at the digest that name's containerd record really targets
    /// (never a digest a name merely spells) — has an allow verdict under
    /// the policy in force for that repository, under its statement and
    /// requirements scope ([`VerdictKey`]), or needs none (level `skip`, a
    /// break-glass digest, a scope in `audit` or `warn` mode).
    pub(crate) fn may_show(&self, records: &[PinnedRef]) -> bool {
        let policy = self.policy();
        records.iter().any(|pinned| {
            let repo = pinned.repository();
            let plan = policy.plan_for(repo, None);
            if policy.scope(plan.scope).mode() != Mode::Enforce
                || policy
                    .requirements
                    .break_glass(repo, pinned.digest())
                    .is_some()
            {
                return true;
            }
            let statement = match plan.route {
                Route::Skip(_) => return true,
                Route::NoStatement => return false,
                Route::Verify { statement } => statement,
            };
            let key = policy.key(statement, plan.scope, repo, pinned.digest());
            self.cache
                .get(&key)
                .is_some_and(|v| matches!(v, Verdict::Allowed { .. }))
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
        let (outcome, facts) = self.decide_inner(req, Flow::Pull, None).await;
        self.finish(&outcome, &facts).await;
        outcome.into_decision()
    }

    /// [`Self::decide`], calling `on_cold` once the digest is resolved when
    /// the verdict must be computed (no cached verdict), with what discovery
    /// uses (the repository, the digest and the pull's credentials) and the time.
    ///
    /// # Errors
    /// As [`Self::decide`].
    ///
    /// # Cancel safety
    /// As [`Self::decide`].
    pub(crate) async fn decide_with(
        &self,
        req: PullRequest,
        on_cold: OnCold<'_>,
    ) -> Result<Decision, GateError> {
        let (outcome, facts) = self.decide_inner(req, Flow::Pull, Some(on_cold)).await;
        self.finish(&outcome, &facts).await;
        outcome.into_decision()
    }

    /// The registry client discovery uses.
    pub(crate) fn registry(&self) -> &crate::registry::RegistryClient {
        &self.engine.registry
    }

    /// [`Self::decide`], returning the typed outcome and what was learnt on
    /// the way (the image verifier makes its answer from them).
    ///
    /// # Cancel safety
    /// As [`Self::decide`].
    pub(crate) async fn decide_outcome(&self, req: PullRequest) -> (Outcome, Facts) {
        let (outcome, facts) = self.decide_inner(req, Flow::Pull, None).await;
        self.finish(&outcome, &facts).await;
        (outcome, facts)
    }

    /// Runs the whole decision for `image` without the cache and without
    /// pulling, examining every signature (`pullgate verify`). The record
    /// is audited like a pull's.
    pub(crate) async fn inspect(
        &self,
        image: &ImageRef,
        budget: Duration,
    ) -> (Outcome, DecisionRecord) {
        let req = PullRequest {
            image: image.clone(),
            credentials: Credentials::NotGiven,
            deadline: Deadline::after(budget),
            origin: Origin::door(Door::Cli),
        };
        let (outcome, facts) = self.decide_inner(req, Flow::Inspect, None).await;
        let record = self.finish_recorded(&outcome, &facts).await;
        (outcome, record)
    }

    /// Decides `image` as a question for a pod in `namespace` (which picks
    /// the requirements scope; `None`: a request naming no pod), through the
    /// cache and its single flight, without pulling (`pullgate preflight`).
    pub(crate) async fn decide_for_namespace(
        &self,
        image: &ImageRef,
        namespace: Option<&str>,
        budget: Duration,
    ) -> DecisionRecord {
        let req = PullRequest {
            image: image.clone(),
            credentials: Credentials::NotGiven,
            deadline: Deadline::after(budget),
            origin: Origin {
                door: Door::Cli,
                pod: namespace.and_then(|ns| Pod::new(ns, "")),
            },
        };
        let (outcome, facts) = self.decide_inner(req, Flow::Pull, None).await;
        self.finish_recorded(&outcome, &facts).await
    }

    /// Logs, counts and audits a decision; the audit record is made only
    /// when an audit log is open (on a hot pull, making it was 2% of
    /// pullgate's instructions).
    async fn finish(&self, outcome: &Outcome, facts: &Facts) {
        self.note(outcome, facts);
        if let Some(log) = self.audit.get() {
            log.record(facts.record(outcome)).await;
        }
    }

    /// [`Self::finish`], returning the decision's audit record.
    async fn finish_recorded(&self, outcome: &Outcome, facts: &Facts) -> DecisionRecord {
        self.note(outcome, facts);
        let record = facts.record(outcome);
        if let Some(log) = self.audit.get() {
            log.record(record.clone()).await;
        }
        record
    }

    /// Logs and counts a decision.
    fn note(&self, outcome: &Outcome, facts: &Facts) {
        outcome.log(facts);
        let (verdict, reason) = outcome.metric_labels();
        self.engine
            .metrics
            .decision(facts.origin.door.as_str(), verdict, reason);
    }
}

#[cfg(test)]
mod tests;
