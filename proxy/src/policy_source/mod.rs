//! `[trust] source`: one trust policy for a fleet, published as a signed
//! OCI artifact and followed by every node.
//!
//! Input: the configured `oci://REGISTRY/REPO:TAG`, the local bootstrap
//! trust (`[trust.source_verification]`), the running `Gate`. Output:
//! new policy generations swapped into the gate (`Gate::apply_source`),
//! the last good bundle on disk (`policy_bundle::store`), one log line and one count
//! (`pullgate_policy_source_checks_total{result}`) per check.
//!
//! One check (`PolicySource::check`): `HEAD` the tag; the same digest as
//! the bundle in force is nothing to do (a conditional request in effect:
//! nothing but the `HEAD` is sent). A new digest is verified first — its
//! signatures judged by a gate built from the bootstrap trust alone, as an
//! image pinned to that digest would be, where only a verified allow
//! counts (no `skip`, `audit`, `warn` or `fail_open`) — then fetched by
//! digest (`fetch`, layout checked by `policy_bundle::layout`), written to the store,
//! loaded as the next policy generation, and only then recorded as the last
//! good bundle. A bundle that is unsigned, wrongly signed, not a bundle or
//! not a valid policy is refused: the running policy keeps serving, and
//! the refusal is logged and counted at each poll while the tag names it.
//! A refused signature is checked again at each poll (a signature may be
//! pushed after its bundle); a refused bundle is not fetched again (its
//! digest fixes its content). A registry that cannot be reached is counted
//! and retried at the next poll.
//!
//! The bootstrap trust is read from the local configuration only, once, at
//! startup: nothing in a bundle can change what verifies bundles.
//!
//! Not here: the poll loop and its jitter (`poll`); publishing a bundle
//! from a directory (`publish`, `pullgate policy push`).

pub(crate) mod fetch;
pub mod poll;
pub mod publish;

use std::sync::Arc;
use std::time::Duration;

use pullgate_policy::config::{Config, TrustConfig};
use pullgate_policy::{Digest, ImageRef};

use crate::deadline::Deadline;
use crate::gate::{Gate, LoadError, Unverified};
use crate::policy_bundle::store::Store;
use crate::registry::RegistryClient;
use fetch::FetchError;

/// The whole budget of one check (every request also has its own timeout).
pub(crate) const CHECK_BUDGET: Duration = Duration::from_secs(60);

/// Why the policy source cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The bootstrap trust (`[trust.source_verification]`) does not load.
    #[error("[trust.source_verification]: {0}")]
    Bootstrap(#[source] LoadError),
    /// The registry client could not be built.
    #[error("registry client: {0}")]
    Registry(String),
    /// `[trust] source` or `[cache] state_dir` is unusable.
    #[error("{0}")]
    Config(String),
}

/// What one check did, for the log line and the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The tag points at the bundle in force.
    Unchanged,
    /// A new bundle is in force.
    Applied,
    /// The bundle's signatures do not meet the bootstrap trust.
    RefusedSignature,
    /// The bundle is not a bundle, or not a valid policy, or cannot be stored.
    RefusedBundle,
    /// The registry could not be asked; retried at the next poll.
    Unreachable,
}

impl Checked {
    /// The `result` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Applied => "applied",
            Self::RefusedSignature => "refused_signature",
            Self::RefusedBundle => "refused_bundle",
            Self::Unreachable => "unreachable",
        }
    }
}

/// The followed source and what was last seen of it.
pub struct PolicySource {
    /// `[trust] source`, as configured (what the store records).
    source: String,
    image: ImageRef,
    registry: RegistryClient,
    /// Judges bundles: built from `[trust.source_verification]` only.
    bootstrap: Gate,
    store: Store,
    gate: Arc<Gate>,
    /// The bundle in force.
    applied: Option<Digest>,
    /// The last bundle refused, and why (a refused bundle is not fetched again).
    refused: Option<(Digest, Checked)>,
}

impl std::fmt::Debug for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySource")
            .field("source", &self.source)
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

/// `config` with `[trust]` replaced by `[trust.source_verification]`: what
/// the bootstrap gate is built from.
fn bootstrap_config(config: &Config) -> Config {
    let v = &config.trust.source_verification;
    let mut c = config.clone();
    c.trust = TrustConfig {
        policy: v.policy.clone().unwrap_or_default(),
        store: v.store.clone().unwrap_or_default(),
        requirements: v.requirements.clone(),
        reload_interval_ms: 0,
        ..TrustConfig::default()
    };
    c.cache.state_dir = None;
    c
}

impl PolicySource {
    /// The source `config` names, following into `gate`; `None` without
    /// `[trust] source`. Reads the bootstrap trust files.
    ///
    /// Blocking: call on the blocking pool.
    ///
    /// # Errors
    /// `SourceError`.
    pub fn new(config: &Config, gate: Arc<Gate>) -> Result<Option<Self>, SourceError> {
        let image = match config.trust.source_reference() {
            Ok(None) => return Ok(None),
            Ok(Some(i)) => i,
            Err(e) => return Err(SourceError::Config(e.to_string())),
        };
        let source = config.trust.source.clone().unwrap_or_default();
        let Some(state_dir) = &config.cache.state_dir else {
            return Err(SourceError::Config(
                "[trust] source needs [cache] state_dir".to_owned(),
            ));
        };
        let bootstrap = Gate::load(&bootstrap_config(config)).map_err(SourceError::Bootstrap)?;
        let registry = RegistryClient::new(&config.registry)
            .map_err(|e| SourceError::Registry(e.to_string()))?;
        let store = Store::new(state_dir);
        let applied = gate.started_from().cloned();
        Ok(Some(Self {
            source,
            image,
            registry,
            bootstrap,
            store,
            gate,
            applied,
            refused: None,
        }))
    }

    /// One check of the source (see the module docs), logged and counted.
    ///
    /// # Cancel safety
    /// Cancel safe: a bundle is in force only once the gate swapped it in;
    /// one saved but not committed is replaced by the next save.
    pub async fn check(&mut self) {
        let checked = self.check_inner().await;
        self.gate.metrics_ref().source_check(checked.label());
    }

    async fn check_inner(&mut self) -> Checked {
        let deadline = Deadline::after(CHECK_BUDGET);
        let source = self.source.as_str();
        let digest = match fetch::current_digest(&self.registry, &self.image, deadline).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(source, error = %e,
                    "policy source unreachable; the policy in force keeps serving");
                return Checked::Unreachable;
            }
        };
        if self.applied.as_ref() == Some(&digest) {
            return Checked::Unchanged;
        }
        // A bundle's content cannot change under its digest: refused once,
        // refused for good. Its signatures can: one pushed after the
        // bundle (`oras push`, then `notation sign`) is seen at the next poll.
        if let Some((refused, Checked::RefusedBundle)) = &self.refused {
            if *refused == digest {
                tracing::debug!(source, %digest, "policy bundle refused before; still refused");
                return Checked::RefusedBundle;
            }
        }
        let outcome = self.try_bundle(&digest, deadline).await;
        if matches!(outcome, Checked::RefusedSignature | Checked::RefusedBundle) {
            self.refused = Some((digest, outcome));
        }
        outcome
    }

    /// Verifies, fetches, stores and applies the bundle `digest`.
    async fn try_bundle(&mut self, digest: &Digest, deadline: Deadline) -> Checked {
        let source = self.source.as_str();
        let Ok(pinned) = format!("{}@{digest}", self.image.repository()).parse::<ImageRef>() else {
            tracing::error!(source, %digest, "policy bundle refused: its pinned reference does not parse");
            return Checked::RefusedBundle;
        };
        let signers = match self
            .bootstrap
            .verified_signers(&pinned, deadline.remaining())
            .await
        {
            Ok(s) => s,
            Err(Unverified::Undecided(reason)) => {
                tracing::warn!(source, %digest, reason,
                    "policy bundle signature could not be checked; the policy in force keeps serving");
                return Checked::Unreachable;
            }
            Err(Unverified::Refused(reason)) => {
                tracing::error!(source, %digest, reason,
                    "policy bundle refused: its signature does not meet [trust.source_verification]; the policy in force keeps serving");
                return Checked::RefusedSignature;
            }
        };
        let fetched =
            match fetch::bundle(&self.registry, self.image.repository(), digest, deadline).await {
                Ok(f) => f,
                // Only content that is wrong (over its cap, not matching its
                // digest, malformed) refuses the bundle; the rest is retried.
                Err(FetchError::Registry(e))
                    if e.is_outage()
                        || e.is_timeout()
                        || e.is_rate_limited()
                        || e.is_unauthorized()
                        || e.is_not_found() =>
                {
                    tracing::warn!(source, %digest, error = %e,
                    "policy bundle could not be fetched; the policy in force keeps serving");
                    return Checked::Unreachable;
                }
                Err(e) => {
                    tracing::error!(source, %digest, error = %e,
                    "policy bundle refused: not a valid bundle; the policy in force keeps serving");
                    return Checked::RefusedBundle;
                }
            };
        let (store, gate, digest_owned, source_owned) = (
            self.store.clone(),
            Arc::clone(&self.gate),
            digest.clone(),
            self.source.clone(),
        );
        let applied = tokio::task::spawn_blocking(move || {
            let trust = store
                .save(
                    &digest_owned,
                    &fetched.manifest,
                    &fetched.layout,
                    &fetched.files,
                )
                .map_err(|e| e.to_string())?;
            let generation = gate.apply_source(trust).map_err(|e| e.to_string())?;
            if let Err(e) = store.commit(&source_owned, &digest_owned) {
                tracing::error!(error = %e,
                    "the policy bundle is in force but could not be recorded as the last good one");
            }
            Ok::<_, String>(generation)
        })
        .await;
        match applied {
            Ok(Ok(generation)) => {
                tracing::info!(source, %digest, generation = generation.0, signers = ?signers,
                    "policy bundle applied");
                self.applied = Some(digest.clone());
                Checked::Applied
            }
            Ok(Err(reason)) => {
                tracing::error!(source, %digest, reason,
                    "policy bundle refused: it does not load; the policy in force keeps serving");
                if let Some(keep) = &self.applied {
                    self.store.prune(keep);
                }
                Checked::RefusedBundle
            }
            Err(e) => {
                tracing::error!(source, %digest, error = %e, "policy bundle task failed");
                Checked::RefusedBundle
            }
        }
    }
}
