//! Allows that outlive their verdict, so a registry outage does not stop a
//! container that was allowed from restarting.
//!
//! The rule (the runtime doors only, `CreateContainer` and `RunPodSandbox`):
//! when the verdict for a key has expired and verifying again cannot reach
//! the registry (an outage: unreachable, 5xx, a request timed out), the
//! image is admitted, with a warning, if an allow was made for the **same
//! key** — the same trust policy statement, requirements scope, repository,
//! digest and policy generation — since pullgate started or restored from
//! the persisted verdicts. Everything that should stop it still does: a new
//! policy is a new generation (another key, so no standing allow); a
//! verification that completes and denies (a revoked certificate, a
//! signature gone) is a denial, not an outage, and removes the standing
//! allow; an answer the registry gave (404, 401) is never an outage. A pull
//! (`PullImage`) never uses it: what is not on the node is fetched only
//! after a fresh verdict (or the scope's `fail_open`).
//!
//! Limits: at most `max_entries` keys (the verdict cache's size), evicted
//! like the verdict cache (S3-FIFO); emptied when the policy changes.

use std::hash::Hash;

use quick_cache::sync::Cache;

/// The last allow of each key, kept past its verdict's TTL.
#[derive(Debug)]
pub(crate) struct StandingAllows<K, V> {
    allows: Cache<K, V>,
}

impl<K, V> StandingAllows<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    /// Room for `max_entries` keys (at least one).
    pub(crate) fn new(max_entries: u64) -> Self {
        let n = usize::try_from(max_entries.max(1)).unwrap_or(usize::MAX);
        Self {
            allows: Cache::new(n),
        }
    }

    /// Records an allow for `key` (its accepted signers).
    pub(crate) fn allowed(&self, key: K, signers: V) {
        self.allows.insert(key, signers);
    }

    /// Forgets `key`: a verification under it completed and denied.
    pub(crate) fn denied(&self, key: &K) {
        self.allows.remove(key);
    }

    /// The signers of the last allow for `key`, if one stands.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.allows.get(key)
    }

    /// Every standing allow (for the persisted verdicts).
    pub(crate) fn entries(&self) -> Vec<(K, V)> {
        self.allows.iter().collect()
    }

    /// Forgets every allow (a new policy generation).
    pub(crate) fn clear(&self) {
        self.allows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allow_stands_until_a_denial_or_a_new_policy() {
        let standing: StandingAllows<(u64, &str), &str> = StandingAllows::new(8);
        assert_eq!(standing.get(&(1, "a")), None);
        standing.allowed((1, "a"), "ci");
        standing.allowed((1, "b"), "ci");
        assert_eq!(standing.get(&(1, "a")), Some("ci"));
        // Another generation is another key.
        assert_eq!(standing.get(&(2, "a")), None);
        standing.denied(&(1, "a"));
        assert_eq!(standing.get(&(1, "a")), None);
        assert_eq!(standing.get(&(1, "b")), Some("ci"));
        standing.clear();
        assert_eq!(standing.get(&(1, "b")), None);
    }

    #[test]
    fn it_is_bounded() {
        let standing: StandingAllows<u64, u64> = StandingAllows::new(100);
        for i in 0..10_000 {
            standing.allowed(i, i);
        }
        let kept = (0..10_000).filter(|i| standing.get(i).is_some()).count();
        assert!(kept <= 200, "{kept}");
    }
}
