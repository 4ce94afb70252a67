//! Refresh ahead: an allow verdict in use is verified again before it
//! expires, so a pull of a busy image does not pay a cold verification
//! after its first.
//!
//! When a decision through the cache (a pull, a runtime door, the image
//! verifier) hits an allow verdict with less than its refresh point of its
//! lifetime left, the gate starts the same verification again in the
//! background, through the cache's single flight: at most one refresh of a
//! key is in flight, and a pull that misses meanwhile joins it. The refresh
//! point is between half and all of `[cache] refresh_ahead_percent` of the
//! verdict's lifetime, fixed per key by a hash with a per-process seed
//! (jitter: verdicts made together are not all refreshed together). At
//! most [`REFRESHES_AT_ONCE`] refreshes run at once; a hit that finds none
//! free starts none (a later hit will). Verdicts not hit are not refreshed:
//! they expire. Denials are not refreshed: they are short-lived anyway.
//!
//! A refresh is a full verification under the decision budget, with the
//! credentials of the decision that started it. What it finds replaces the
//! verdict: an allow for its own new lifetime, a denial (a revoked
//! certificate, a signature gone) at once. A refresh that fails (registry
//! out, deadline) changes nothing: the old allow expires at its own time,
//! never extended without a fresh verification.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::decision::Verdict;
use super::engine::VerifyJob;
use super::{verify_digest, Gate, Key};
use crate::cache::{Computed, Freshness};

/// Refreshes running at once, across all keys.
pub(super) const REFRESHES_AT_ONCE: usize = 2;

/// When to refresh, and the bound on refreshes in flight.
#[derive(Debug)]
pub(super) struct RefreshAhead {
    /// `[cache] refresh_ahead_percent`; 0 = off.
    percent: u8,
    permits: Arc<Semaphore>,
    /// Seeds each key's jitter (random per process).
    seed: std::collections::hash_map::RandomState,
}

impl RefreshAhead {
    pub(super) fn new(percent: u8) -> Self {
        Self {
            percent,
            permits: Arc::new(Semaphore::new(REFRESHES_AT_ONCE)),
            seed: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Whether a hit on `key` with `fresh` left should start a refresh.
    pub(super) fn due(&self, key: &impl Hash, fresh: Freshness) -> bool {
        self.percent > 0 && due(fresh, self.percent, self.seed.hash_one(key) % 1000)
    }

    /// One of the [`REFRESHES_AT_ONCE`] turns, if one is free.
    fn permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }
}

/// Whether `fresh` is past the refresh point: less than `percent`% of its
/// lifetime left, times `(1000 + jitter_permille) / 2000` (`jitter_permille`
/// in 0..1000: between half and all of that share).
pub(super) fn due(fresh: Freshness, percent: u8, jitter_permille: u64) -> bool {
    let lifetime = fresh.lifetime.as_millis();
    let point =
        lifetime * u128::from(percent) / 100 * u128::from(1000 + jitter_permille.min(999)) / 2000;
    fresh.remaining.as_millis() < point
}

impl Gate {
    /// Starts verifying `key` again (the verification `job` describes) in
    /// the background, unless one is in flight or no turn is free.
    pub(super) fn refresh_ahead(&self, key: Key, job: VerifyJob) {
        let Some(permit) = self.refresh.permit() else {
            return;
        };
        let lists = Arc::clone(&self.signer_lists);
        let standing = Arc::clone(&self.standing);
        let metrics = Arc::clone(&self.engine.metrics);
        let new_allows = Arc::clone(&self.new_allows);
        let for_standing = key.clone();
        let (repository, digest) = (job.repository.clone(), job.digest.clone());
        self.cache.refresh(key, move || async move {
            let _permit = permit;
            let result = verify_digest::run(job).await.map(|c| Computed {
                value: lists.shared(c.value),
                ..c
            });
            match &result {
                Ok(Computed { value, .. }) => match (value, value.until()) {
                    (Verdict::Allowed { signers, .. }, until) => {
                        if let Some(until) = until {
                            standing.allowed(for_standing, (Arc::clone(signers), until));
                        }
                        // The renewed allow is saved with its new lifetime.
                        new_allows.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        metrics.verdict_refresh("allowed");
                    }
                    (Verdict::Denied { reason }, _) => {
                        standing.denied(&for_standing);
                        metrics.verdict_refresh("denied");
                        tracing::warn!(%repository, %digest,
                            "an allow verdict verified again before it expired is now a denial: {reason}");
                    }
                },
                Err(e) => {
                    metrics.verdict_refresh("error");
                    tracing::info!(%repository, %digest,
                        "an allow verdict could not be verified again before it expired; it expires at its time: {e}");
                }
            }
            result
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fresh(remaining_s: u64, lifetime_s: u64) -> Freshness {
        Freshness {
            remaining: Duration::from_secs(remaining_s),
            lifetime: Duration::from_secs(lifetime_s),
        }
    }

    #[test]
    fn the_refresh_point_is_between_half_and_all_of_the_share() {
        // 20% of an hour: 720 s; the point is between 360 and 720 s left.
        for jitter in [0, 500, 999] {
            assert!(!due(fresh(3600, 3600), 20, jitter));
            assert!(!due(fresh(720, 3600), 20, jitter));
            assert!(due(fresh(359, 3600), 20, jitter));
            assert!(due(fresh(0, 3600), 20, jitter));
        }
        assert!(!due(fresh(500, 3600), 20, 0));
        assert!(due(fresh(500, 3600), 20, 999));
    }

    #[test]
    fn zero_percent_never_refreshes() {
        assert!(!due(fresh(0, 3600), 0, 999));
        assert!(!RefreshAhead::new(0).due(&1u32, fresh(0, 3600)));
    }

    #[test]
    fn jitter_spreads_the_points_of_keys_made_together() {
        let r = RefreshAhead::new(20);
        // 500 s left of an hour: due for keys whose point is above 500 s.
        let due_keys = (0u32..1000).filter(|k| r.due(k, fresh(500, 3600))).count();
        assert!(due_keys > 100 && due_keys < 900, "{due_keys}");
        // Always the same answer for one key.
        assert_eq!(
            r.due(&7u32, fresh(500, 3600)),
            r.due(&7u32, fresh(500, 3600))
        );
    }

    #[tokio::test]
    async fn turns_are_bounded() {
        let r = RefreshAhead::new(20);
        let held: Vec<_> = (0..REFRESHES_AT_ONCE).filter_map(|_| r.permit()).collect();
        assert_eq!(held.len(), REFRESHES_AT_ONCE);
        assert!(r.permit().is_none());
        drop(held);
        assert!(r.permit().is_some());
    }
}
