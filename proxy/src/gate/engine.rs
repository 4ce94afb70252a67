//! What verifications run on, and what one verification is asked.
//!
//! The [`Engine`] is built once from the configuration and shared (one
//! `Arc`) by the [`Gate`](super::Gate) and every [`VerifyJob`]: the registry
//! client, the metrics, the limits, the two semaphores that bound
//! verification across pulls, the verdict TTLs, the decision budget, and the
//! revocation cache and AWS Signer client. A policy reload changes none of
//! it. A [`VerifyJob`] is the engine plus what one verification is about:
//! the policy in force, the statement and scope that policy chose (as its
//! ids), the repository, the digest and the credentials.
//!
//! A job also says how a signature fetch counts ([`fetch_failed`]) and
//! fetches signature blobs under the configured cap, timed as the fetch
//! phase; the Notary Project and cosign checks (`notary`, `cosign`) both use it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pullgate_policy::config::{Config, Limits};
use pullgate_policy::{Digest, Repository};
use tokio::sync::Semaphore;

use super::decision::{FailureReason, GateError};
use super::policy_state::{LoadError, PolicyState, ScopeId, StatementId};
use super::verdict::{SignatureResult, Ttls};
use crate::deadline::Deadline;
use crate::metrics::{Metrics, Phase};
use crate::registry::{self, Credentials, Descriptor, RegistryClient};
use crate::revocation_fetch::aws_signer::{AwsSignerRevocation, Environment};
use crate::revocation_fetch::RevocationCache;

/// Signature candidates fetched at once for one verification: the default
/// `max_signatures`, so any number up to it costs one wave (each fetch also
/// waits for the registry host's own bound on requests in flight, as many).
pub(super) const SIGNATURE_FETCHES: usize = 32;

/// The clients, bounds and settings every verification shares.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) registry: RegistryClient,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    /// Signature checks on the blocking pool (`max_concurrent_verifications`).
    pub(crate) permits: Semaphore,
    /// Verifications talking to registries (`max_concurrent_discoveries`).
    pub(crate) discoveries: Semaphore,
    /// How long allow and deny verdicts may be cached.
    pub(crate) ttls: Ttls,
    /// How long one verification may take (`[server] decision_budget_ms`).
    pub(crate) budget: Duration,
    pub(crate) revocation: RevocationCache,
    pub(crate) aws_signer: AwsSignerRevocation,
}

impl Engine {
    /// Builds the engine `config` describes.
    ///
    /// # Errors
    /// [`LoadError`] when a client cannot be built.
    pub(crate) fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, LoadError> {
        let registry = RegistryClient::new(&config.registry)
            .map_err(|e| LoadError::Registry(e.to_string()))?;
        let revocation = RevocationCache::new(&config.revocation)
            .map_err(|e| LoadError::Revocation(e.to_string()))?;
        let aws_signer = AwsSignerRevocation::new(&config.aws_signer, Environment::from_process())
            .map_err(|e| LoadError::Revocation(format!("AWS Signer client: {e}")))?;
        Ok(Self {
            registry,
            metrics,
            limits: config.registry.limits,
            permits: Semaphore::new(
                config
                    .server
                    .max_concurrent_verifications
                    .min(Semaphore::MAX_PERMITS),
            ),
            discoveries: Semaphore::new(
                config
                    .registry
                    .max_concurrent_discoveries
                    .min(Semaphore::MAX_PERMITS),
            ),
            ttls: Ttls {
                allow: Duration::from_secs(config.cache.allow_ttl_secs),
                deny: Duration::from_secs(config.cache.deny_ttl_secs),
            },
            budget: config.server.decision_budget(),
            revocation,
            aws_signer,
        })
    }
}

/// One verification: the engine, and the digest to verify under the
/// statement and scope the policy in force chose. Owned: it runs in the
/// cache's task.
#[derive(Debug, Clone)]
pub(crate) struct VerifyJob {
    pub(crate) engine: Arc<Engine>,
    pub(crate) policy: Arc<PolicyState>,
    /// The trust policy statement that judges Notary Project signatures;
    /// `None` when none does (a scope listing cosign decided without one).
    pub(crate) statement: Option<StatementId>,
    /// The requirements scope that judges the set of signatures.
    pub(crate) scope: ScopeId,
    pub(crate) repository: Repository,
    pub(crate) digest: Digest,
    pub(crate) credentials: Credentials,
    /// Examine every signature even when one is enough (`pullgate verify`).
    pub(crate) exhaustive: bool,
}

impl VerifyJob {
    /// Where the signatures are looked up: the scope's
    /// `signature_repository`, else the image's repository. The subject
    /// they must name stays the image's digest.
    pub(crate) fn signatures_in(&self) -> &Repository {
        self.policy
            .scope(self.scope)
            .signature_repository()
            .unwrap_or(&self.repository)
    }

    /// The referrer manifest `digest` (a signature's or an attestation's),
    /// from [`Self::signatures_in`] with the pull's credentials.
    pub(crate) async fn referrer_manifest(
        &self,
        digest: &Digest,
        deadline: Deadline,
    ) -> Result<registry::Manifest, registry::Error> {
        self.engine
            .registry
            .fetch_signature_manifest(self.signatures_in(), digest, &self.credentials, deadline)
            .await
    }

    /// Fetches one signature blob from [`Self::signatures_in`], capped at
    /// `[registry.limits] signature_blob_bytes` and at `kind_cap`; timed as
    /// the fetch phase.
    pub(crate) async fn fetch_blob(
        &self,
        layer: &Descriptor,
        kind_cap: u64,
        deadline: Deadline,
    ) -> Result<Bytes, registry::Error> {
        let t = Instant::now();
        let cap = self.engine.limits.signature_blob_bytes.min(kind_cap);
        let bytes = self
            .engine
            .registry
            .fetch_blob(
                self.signatures_in(),
                layer,
                cap,
                &self.credentials,
                deadline,
            )
            .await?;
        self.engine.metrics.phase(Phase::fetch, t.elapsed());
        Ok(bytes)
    }
}

/// A signature the registry listed but did not deliver. What the registry
/// answered (404, 401, 403, over the cap, wrong digest, malformed) is this
/// signature's failure; only a registry that could not answer (an outage),
/// one that asked to be left alone (429) or a deadline that passed leaves it
/// unexamined, and the decision open (and only the outage may fail open).
pub(crate) fn fetch_failed(e: registry::Error) -> SignatureResult {
    if e.is_outage() || e.is_deadline_exceeded() || e.is_rate_limited() {
        SignatureResult::Inconclusive(GateError::Registry(e))
    } else {
        SignatureResult::Rejected(FailureReason::Fetch(e))
    }
}
