//! Verdict cache with single flight.
//!
//! Input: a key (the gate's `VerdictKey`: trust policy statement,
//! requirements scope, repository, manifest digest, policy generation) and a way to
//! compute the verdict. Output: the verdict, from memory when present.
//! Concurrent misses for one key share one computation, which runs in a task owned by the
//! cache, not in the first caller's future: a caller that gives up cancels
//! only its own wait. A computation that fails is not cached, and a leader
//! that fails or panics does not poison later callers: the next miss starts
//! afresh. Nor does it poison its followers: a caller that joined a flight
//! that failed tries once more with its own computation (the failure may
//! have been the leader's own: its credentials, its deadline). Followers that
//! retry together share that second flight too, so a registry outage costs
//! two flights, not one per caller.
//!
//! Public so that `bench/` can measure the hit path (`get_or_compute` on
//! a present key) and memory per entry; the proxy itself uses it only
//! through the gate.
//!
//! Limits: at most `max_entries` verdicts (moka, TinyLFU eviction); each entry
//! lives for the TTL the computation returned with it. An optional listener
//! hears of every eviction (for metrics).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use crate::deadline::{Deadline, DeadlineExceeded};

/// A computed value and how long it may be reused.
#[derive(Debug, Clone)]
pub struct Expiring<V> {
    /// The value.
    pub value: V,
    /// How long it may be reused.
    pub ttl: Duration,
}

/// Why a waiter got no value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError<E> {
    /// The computation failed.
    #[error(transparent)]
    Failed(Arc<E>),
    /// The computation's task ended without a result (it panicked or was aborted).
    #[error("verification task ended without a result")]
    LeaderGone,
    /// This caller's deadline passed first; the computation goes on.
    #[error(transparent)]
    Deadline(#[from] DeadlineExceeded),
}

type Slot<V, E> = watch::Receiver<Option<Result<V, Arc<E>>>>;

struct Inner<K, V, E> {
    entries: moka::sync::Cache<K, Expiring<V>>,
    inflight: Mutex<HashMap<K, Slot<V, E>>>,
}

/// Bounded verdict cache with per-entry TTL and single flight.
pub struct VerdictCache<K, V, E> {
    inner: Arc<Inner<K, V, E>>,
}

impl<K, V, E> Clone for VerdictCache<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, E> std::fmt::Debug for VerdictCache<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("entries", &self.inner.entries.entry_count())
            .finish_non_exhaustive()
    }
}

struct PerEntryTtl;

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Its TTL passed.
    Expired,
    /// The cache was full.
    Size,
    /// Removed or replaced explicitly.
    Explicit,
}

impl Eviction {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Size => "size",
            Self::Explicit => "explicit",
        }
    }
}

/// Called once per entry that leaves the cache.
pub type EvictionListener = Box<dyn Fn(Eviction) + Send + Sync + 'static>;

impl<K, V> moka::Expiry<K, Expiring<V>> for PerEntryTtl {
    fn expire_after_create(&self, _: &K, value: &Expiring<V>, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Removes the in-flight slot when the computing task ends, however it ends.
struct InflightGuard<K: Hash + Eq, V, E> {
    inner: Arc<Inner<K, V, E>>,
    key: Option<K>,
}

impl<K: Hash + Eq, V, E> Drop for InflightGuard<K, V, E> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            if let Ok(mut map) = self.inner.inflight.lock() {
                map.remove(&key);
            }
        }
    }
}

/// Whether a lookup was answered from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Answered from memory.
    Hit,
    /// Computed (or joined a computation).
    Miss,
}

impl<K, V, E> VerdictCache<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// An empty cache holding at most `max_entries` values.
    pub fn new(max_entries: u64) -> Self {
        Self::with_eviction_listener(max_entries, None)
    }

    /// [`Self::new`], calling `listener` for every entry that leaves the cache.
    pub fn with_eviction_listener(max_entries: u64, listener: Option<EvictionListener>) -> Self {
        let mut builder = moka::sync::Cache::builder()
            .max_capacity(max_entries)
            .expire_after(PerEntryTtl);
        if let Some(listener) = listener {
            builder = builder.eviction_listener(move |_key, _value, cause| {
                use moka::notification::RemovalCause;
                listener(match cause {
                    RemovalCause::Expired => Eviction::Expired,
                    RemovalCause::Size => Eviction::Size,
                    RemovalCause::Explicit | RemovalCause::Replaced => Eviction::Explicit,
                });
            });
        }
        let entries = builder.build();
        Self {
            inner: Arc::new(Inner {
                entries,
                inflight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cached value for `key`, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.entries.get(key).map(|e| e.value)
    }

    /// Number of cached values (approximate: moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.inner.entries.run_pending_tasks();
        self.inner.entries.entry_count()
    }

    /// Every cached key and value (a snapshot; for persisting verdicts).
    pub fn entries(&self) -> Vec<(K, V)> {
        self.inner
            .entries
            .iter()
            .map(|(k, e)| (K::clone(&k), e.value))
            .collect()
    }

    /// Inserts a value computed elsewhere (restored verdicts, measurements).
    pub fn insert(&self, key: K, value: Expiring<V>) {
        self.inner.entries.insert(key, value);
    }

    /// The value for `key`: cached, or computed once by `compute` for all concurrent callers.
    ///
    /// `compute` runs in its own task; `Ok(Some(_))` results are cached for
    /// their TTL, `Ok(None)` means "answer, but do not cache".
    ///
    /// # Errors
    /// [`WaitError`] when the computation fails or vanishes, or `deadline` passes first.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops only this caller's wait.
    pub async fn get_or_compute<F, Fut>(
        &self,
        key: K,
        deadline: Deadline,
        compute: F,
    ) -> Result<(V, Lookup), WaitError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<V>, E>> + Send + 'static,
    {
        if let Some(v) = self.get(&key) {
            return Ok((v, Lookup::Hit));
        }
        let mut compute = Some(compute);
        let first = Self::wait(self.subscribe_or_start(key.clone(), &mut compute), deadline).await;
        let value = match first {
            // A follower whose leader failed tries once with its own computation.
            Err(WaitError::Failed(_) | WaitError::LeaderGone) if compute.is_some() => {
                tracing::debug!(key = ?key, "shared verification failed; this waiter retries once");
                if let Some(v) = self.get(&key) {
                    return Ok((v, Lookup::Hit));
                }
                Self::wait(self.subscribe_or_start(key, &mut compute), deadline).await?
            }
            other => other?,
        };
        Ok((value, Lookup::Miss))
    }

    /// Waits for the flight behind `rx` to report.
    async fn wait(mut rx: Slot<V, E>, deadline: Deadline) -> Result<V, WaitError<E>> {
        deadline
            .run(async {
                loop {
                    if let Some(r) = rx.borrow_and_update().clone() {
                        return r.map_err(WaitError::Failed);
                    }
                    if rx.changed().await.is_err() {
                        // Sender gone: a value may have been sent just before it was dropped.
                        return rx
                            .borrow()
                            .clone()
                            .ok_or(WaitError::LeaderGone)?
                            .map_err(WaitError::Failed);
                    }
                }
            })
            .await?
    }

    /// Joins the flight for `key`, or starts one with `compute` (taking it).
    fn subscribe_or_start<F, Fut>(&self, key: K, compute: &mut Option<F>) -> Slot<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<V>, E>> + Send + 'static,
    {
        let mut map = match self.inner.inflight.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(rx) = map.get(&key) {
            return rx.clone();
        }
        let Some(compute) = compute.take() else {
            // Unreachable by construction (only a caller holding `compute` starts a
            // flight); answer "leader gone" rather than panic.
            let (_, rx) = watch::channel(None);
            return rx;
        };
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx.clone());
        drop(map);
        let fut = compute();
        let guard = InflightGuard {
            inner: Arc::clone(&self.inner),
            key: Some(key.clone()),
        };
        let span = tracing::info_span!("verification", key = ?key);
        // The JoinHandle is not awaited: the task reports through `tx`, and
        // its guard clears the in-flight slot if it panics.
        let _task = tokio::spawn(
            async move {
                let guard = guard;
                let result = fut.await;
                let shared = match result {
                    Ok(e) => {
                        guard.inner.entries.insert(key, e.clone());
                        Ok(e.value)
                    }
                    Err(e) => Err(Arc::new(e)),
                };
                drop(guard);
                let _ = tx.send(Some(shared));
            }
            .instrument(span),
        );
        rx
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn deadline() -> Deadline {
        Deadline::after(Duration::from_secs(30))
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_computation() {
        let cache: VerdictCache<u32, &'static str, String> = VerdictCache::new(100);
        let runs = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = watch::channel(false);
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let runs = Arc::clone(&runs);
            let mut release = release_rx.clone();
            waiters.spawn(async move {
                cache
                    .get_or_compute(7, deadline(), move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = release.wait_for(|r| *r).await;
                        Ok(Expiring {
                            value: "allow",
                            ttl: Duration::from_secs(60),
                        })
                    })
                    .await
            });
        }
        tokio::task::yield_now().await;
        release_tx.send(true).unwrap();
        while let Some(r) = waiters.join_next().await {
            assert_eq!(r.unwrap().unwrap().0, "allow");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let (_, lookup) = cache
            .get_or_compute(7, deadline(), || async { Err("must not run".to_owned()) })
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Hit);
    }

    #[tokio::test]
    async fn failure_is_shared_but_not_cached() {
        let cache: VerdictCache<u32, u8, String> = VerdictCache::new(10);
        let err = cache
            .get_or_compute(1, deadline(), || async { Err("registry down".to_owned()) })
            .await
            .unwrap_err();
        assert!(matches!(err, WaitError::Failed(e) if *e == "registry down"));
        let (v, lookup) = cache
            .get_or_compute(1, deadline(), || async {
                Ok(Expiring {
                    value: 3,
                    ttl: Duration::from_secs(5),
                })
            })
            .await
            .unwrap();
        assert_eq!((v, lookup), (3, Lookup::Miss));
    }

    #[tokio::test]
    async fn followers_of_a_failed_leader_retry_once_together() {
        let cache: VerdictCache<u32, u8, String> = VerdictCache::new(10);
        let runs = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = watch::channel(false);
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let runs = Arc::clone(&runs);
            let mut release = release_rx.clone();
            waiters.spawn(async move {
                cache
                    .get_or_compute(1, deadline(), move || async move {
                        // The first flight fails (say, the leader's credentials); the second works.
                        let n = runs.fetch_add(1, Ordering::SeqCst);
                        let _ = release.wait_for(|r| *r).await;
                        if n == 0 {
                            Err("leader's own failure".to_owned())
                        } else {
                            Ok(Expiring {
                                value: 5,
                                ttl: Duration::from_secs(60),
                            })
                        }
                    })
                    .await
            });
        }
        tokio::task::yield_now().await;
        release_tx.send(true).unwrap();
        let mut ok = 0;
        while let Some(r) = waiters.join_next().await {
            if let Ok((v, _)) = r.unwrap() {
                assert_eq!(v, 5);
                ok += 1;
            }
        }
        // Only the leader sees its own failure; the followers share one retry.
        assert_eq!(ok, 19);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn evictions_are_reported() {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let cache: VerdictCache<u32, u8, String> = VerdictCache::with_eviction_listener(
            2,
            Some(Box::new(move |cause| {
                assert_eq!(cause, Eviction::Size);
                counter.fetch_add(1, Ordering::SeqCst);
            })),
        );
        for k in 0..10 {
            cache.insert(
                k,
                Expiring {
                    value: 1,
                    ttl: Duration::from_secs(600),
                },
            );
        }
        assert!(cache.entry_count() <= 2);
        assert_eq!(seen.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn panicking_leader_does_not_poison() {
        let cache: VerdictCache<u32, u8, String> = VerdictCache::new(10);
        let err = cache
            .get_or_compute(1, deadline(), || async { panic!("verifier bug") })
            .await
            .unwrap_err();
        assert!(matches!(err, WaitError::LeaderGone));
        let (v, _) = cache
            .get_or_compute(1, deadline(), || async {
                Ok(Expiring {
                    value: 9,
                    ttl: Duration::from_secs(5),
                })
            })
            .await
            .unwrap();
        assert_eq!(v, 9);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_cancel_the_computation() {
        let cache: VerdictCache<u32, u8, String> = VerdictCache::new(10);
        let (release_tx, release_rx) = watch::channel(false);
        let mut release = release_rx.clone();
        let short = Deadline::after(Duration::from_millis(1));
        let err = cache
            .get_or_compute(1, short, move || async move {
                let _ = release.wait_for(|r| *r).await;
                Ok(Expiring {
                    value: 4,
                    ttl: Duration::from_secs(5),
                })
            })
            .await
            .unwrap_err();
        assert!(matches!(err, WaitError::Deadline(_)));
        release_tx.send(true).unwrap();
        let (v, _) = cache
            .get_or_compute(1, deadline(), || async {
                Err("must join the running one".to_owned())
            })
            .await
            .unwrap();
        assert_eq!(v, 4);
    }

    #[tokio::test]
    async fn entries_expire_after_their_own_ttl() {
        let cache: VerdictCache<u32, u8, String> = VerdictCache::new(10);
        cache
            .get_or_compute(1, deadline(), || async {
                Ok(Expiring {
                    value: 1,
                    ttl: Duration::from_millis(1),
                })
            })
            .await
            .unwrap();
        cache
            .get_or_compute(2, deadline(), || async {
                Ok(Expiring {
                    value: 2,
                    ttl: Duration::from_secs(600),
                })
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&2), Some(2));
    }
}
