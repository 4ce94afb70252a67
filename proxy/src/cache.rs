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
//! A computation returns the value to cache and a *detail* (for the gate:
//! the per-signature records) that the callers of that flight receive and
//! the cache never keeps: a hit answers with the value alone.
//!
//! Public so that `bench/` can measure the hit path (`get_or_compute` on
//! a present key) and memory per entry; the proxy itself uses it only
//! through the gate.
//!
//! Limits: at most `max_entries` values (`quick_cache`, S3-FIFO eviction);
//! each lives for the TTL its computation returned, to the millisecond. An
//! entry past its TTL is never returned; it is removed when next looked up,
//! or evicted like any other when the cache is full, so memory stays bounded
//! by `max_entries` either way. An optional listener hears of every entry
//! that leaves (for metrics).
//!
//! Why `quick_cache`, and not `moka`, which this cache used before: moka's
//! own bookkeeping per entry (access and timer-wheel deque nodes, entry
//! info, frequency sketch) measured 361 bytes of RSS per entry with a `u64`
//! key and per-entry expiry, 100k entries, over the whole budget of a cached
//! verdict (≤ 400 bytes with its key); `quick_cache` measured ~100 bytes per
//! entry with a 56-byte key and 16-byte value. Expiry is a field of the
//! entry, checked on lookup. `quick_cache` is the proxy's one cache crate
//! (issue 26): the standing allows, OCSP responses, CRLs, fetch failures,
//! containerd's image records by id, checkpoint manifests and
//! AWS Signer answers use it too, each expiry carried in its value.
//!
//! Measured through the proxy (`pullgate-bench --skip pulls,herd,verify`,
//! release build, 100k cached denials, RSS; 2 shared vCPUs, load ~9): 205
//! bytes per verdict with `quick_cache` 0.7 (40244 KiB at 100k, 15536 KiB
//! idle), against 231 with 0.6 (`bench/README.md`); the budget is 400.
//! In process (`gate::tests::cache_hit_figures`, release, 100k allows): 191
//! bytes per entry, against 247 with 0.6. After each entry gained its
//! lifetime (refresh ahead) and each key its signature repository: 229
//! bytes per verdict through the proxy (42868 KiB at 100k; quiet machine).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, UnitWeighter};
use tokio::sync::watch;
use tracing::Instrument;

use crate::deadline::{Deadline, DeadlineExceeded};

/// A computed value, how long it may be reused, and what else computing it
/// learnt (handed to the callers of that flight, never cached).
#[derive(Debug, Clone)]
pub struct Computed<V, D> {
    /// The value to cache.
    pub value: V,
    /// How long it may be reused.
    pub ttl: Duration,
    /// What only the callers of this computation receive.
    pub detail: D,
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

type Shared<V, D, E> = Option<Result<(V, D), Arc<E>>>;
type Slot<V, D, E> = watch::Receiver<Shared<V, D, E>>;

/// One cached value and when it stops being served.
#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    /// Milliseconds after the cache's `base` at which the entry expires.
    expires_ms: u64,
    /// The TTL it was inserted with, in milliseconds.
    lifetime_ms: u64,
}

/// How much of a cached value's life is left, when it was looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Time until it expires.
    pub remaining: Duration,
    /// The TTL it was inserted with.
    pub lifetime: Duration,
}

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Its TTL passed (noticed on lookup).
    Expired,
    /// The cache was full.
    Size,
    /// Replaced by [`VerdictCache::insert`].
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

/// Tells the listener of entries the cache evicts when full.
#[derive(Clone)]
struct Evictions(Option<Arc<EvictionListener>>);

impl Evictions {
    fn tell(&self, cause: Eviction) {
        if let Some(listener) = &self.0 {
            listener(cause);
        }
    }
}

impl<K, V> Lifecycle<K, V> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut Self::RequestState, _key: K, _val: V) {
        self.tell(Eviction::Size);
    }
}

type Entries<K, V> = Cache<K, Entry<V>, UnitWeighter, RandomState, Evictions>;

struct Inner<K, V, D, E> {
    entries: Entries<K, V>,
    evictions: Evictions,
    /// The origin of `Entry::expires_ms`.
    base: Instant,
    inflight: Mutex<HashMap<K, Slot<V, D, E>>>,
}

impl<K: Hash + Eq + Clone, V: Clone, D, E> Inner<K, V, D, E> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn insert(&self, key: K, value: V, ttl: Duration) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let entry = Entry {
            value,
            expires_ms: self.now_ms().saturating_add(ttl_ms),
            lifetime_ms: ttl_ms,
        };
        self.entries.insert(key, entry);
    }
}

/// Bounded verdict cache with per-entry TTL and single flight.
pub struct VerdictCache<K, V, D, E> {
    inner: Arc<Inner<K, V, D, E>>,
}

impl<K, V, D, E> Clone for VerdictCache<K, V, D, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, D, E> std::fmt::Debug for VerdictCache<K, V, D, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("entries", &self.inner.entries.len())
            .finish_non_exhaustive()
    }
}

/// Removes the in-flight slot when the computing task ends, however it ends.
struct InflightGuard<K: Hash + Eq, V, D, E> {
    inner: Arc<Inner<K, V, D, E>>,
    key: Option<K>,
}

impl<K: Hash + Eq, V, D, E> Drop for InflightGuard<K, V, D, E> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            if let Ok(mut map) = self.inner.inflight.lock() {
                map.remove(&key);
            }
        }
    }
}

/// Whether a lookup was answered from memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<D> {
    /// Answered from memory.
    Hit,
    /// Computed (or joined a computation): with that computation's detail.
    Miss(D),
}

impl<K, V, D, E> VerdictCache<K, V, D, E>
where
    K: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
    V: Clone + Send + Sync + 'static,
    D: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// An empty cache holding at most `max_entries` values.
    pub fn new(max_entries: u64) -> Self {
        Self::with_eviction_listener(max_entries, None)
    }

    /// [`Self::new`], calling `listener` for every entry that leaves the cache.
    pub fn with_eviction_listener(max_entries: u64, listener: Option<EvictionListener>) -> Self {
        let evictions = Evictions(listener.map(Arc::new));
        let items = usize::try_from(max_entries).unwrap_or(usize::MAX);
        let entries = Cache::with(
            items,
            max_entries,
            UnitWeighter,
            RandomState::new(),
            evictions.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                entries,
                evictions,
                base: Instant::now(),
                inflight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cached value for `key`, if any and not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_fresh(key).map(|(v, _)| v)
    }

    /// [`Self::get`], with how much of the value's life is left.
    pub fn get_fresh(&self, key: &K) -> Option<(V, Freshness)> {
        let entry = self.inner.entries.get(key)?;
        let now = self.inner.now_ms();
        if now < entry.expires_ms {
            let fresh = Freshness {
                remaining: Duration::from_millis(entry.expires_ms - now),
                lifetime: Duration::from_millis(entry.lifetime_ms),
            };
            return Some((entry.value, fresh));
        }
        if self
            .inner
            .entries
            .remove_if(key, |e| e.expires_ms <= now)
            .is_some()
        {
            self.inner.evictions.tell(Eviction::Expired);
        }
        None
    }

    /// Number of cached values, expired ones not yet removed included.
    pub fn entry_count(&self) -> u64 {
        u64::try_from(self.inner.entries.len()).unwrap_or(u64::MAX)
    }

    /// Every cached key and unexpired value (a snapshot; for persisting verdicts).
    pub fn entries(&self) -> Vec<(K, V)> {
        let now = self.inner.now_ms();
        self.inner
            .entries
            .iter()
            .filter(|(_, e)| now < e.expires_ms)
            .map(|(k, e)| (k, e.value))
            .collect()
    }

    /// Inserts a value computed elsewhere (restored verdicts, measurements), for `ttl`.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        if self.inner.entries.peek(&key).is_some() {
            self.inner.evictions.tell(Eviction::Explicit);
        }
        self.inner.insert(key, value, ttl);
    }

    /// The value for `key`: cached, or computed once by `compute` for all concurrent callers.
    ///
    /// `compute` runs in its own task; its value is cached for its TTL,
    /// its detail handed to the callers that waited for it.
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
    ) -> Result<(V, Lookup<D>), WaitError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computed<V, D>, E>> + Send + 'static,
    {
        if let Some(v) = self.get(&key) {
            return Ok((v, Lookup::Hit));
        }
        let mut compute = Some(compute);
        let first = Self::wait(self.subscribe_or_start(key.clone(), &mut compute), deadline).await;
        let (value, detail) = match first {
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
        Ok((value, Lookup::Miss(detail)))
    }

    /// Starts computing `key` again with `compute` in the background,
    /// unless a computation of it is already in flight (then `false`, and
    /// `compute` is dropped). What it computes replaces the cached value
    /// when it succeeds; a failure leaves the cached value as it was, to
    /// expire at its own time. Callers that miss meanwhile join it.
    pub fn refresh<F, Fut>(&self, key: K, compute: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computed<V, D>, E>> + Send + 'static,
    {
        let mut compute = Some(compute);
        let _rx = self.subscribe_or_start(key, &mut compute);
        compute.is_none()
    }

    /// Waits for the flight behind `rx` to report.
    async fn wait(mut rx: Slot<V, D, E>, deadline: Deadline) -> Result<(V, D), WaitError<E>> {
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
    fn subscribe_or_start<F, Fut>(&self, key: K, compute: &mut Option<F>) -> Slot<V, D, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computed<V, D>, E>> + Send + 'static,
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
                    Ok(c) => {
                        guard.inner.insert(key, c.value.clone(), c.ttl);
                        Ok((c.value, c.detail))
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
        let cache: VerdictCache<u32, &'static str, (), String> = VerdictCache::new(100);
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
                        Ok(Computed {
                            value: "allow",
                            ttl: Duration::from_secs(60),
                            detail: (),
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
        let cache: VerdictCache<u32, u8, (), String> = VerdictCache::new(10);
        let err = cache
            .get_or_compute(1, deadline(), || async { Err("registry down".to_owned()) })
            .await
            .unwrap_err();
        assert!(matches!(err, WaitError::Failed(e) if *e == "registry down"));
        let (v, lookup) = cache
            .get_or_compute(1, deadline(), || async {
                Ok(Computed {
                    value: 3,
                    ttl: Duration::from_secs(5),
                    detail: (),
                })
            })
            .await
            .unwrap();
        assert_eq!((v, lookup), (3, Lookup::Miss(())));
    }

    #[tokio::test]
    async fn followers_of_a_failed_leader_retry_once_together() {
        let cache: VerdictCache<u32, u8, (), String> = VerdictCache::new(10);
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
                            Ok(Computed {
                                value: 5,
                                ttl: Duration::from_secs(60),
                                detail: (),
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
        let cache: VerdictCache<u32, u8, (), String> = VerdictCache::with_eviction_listener(
            2,
            Some(Box::new(move |cause| {
                assert_eq!(cause, Eviction::Size);
                counter.fetch_add(1, Ordering::SeqCst);
            })),
        );
        for k in 0..10 {
            cache.insert(k, 1, Duration::from_secs(600));
        }
        assert!(cache.entry_count() <= 2);
        assert_eq!(seen.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn panicking_leader_does_not_poison() {
        let cache: VerdictCache<u32, u8, (), String> = VerdictCache::new(10);
        let err = cache
            .get_or_compute(1, deadline(), || async { panic!("verifier bug") })
            .await
            .unwrap_err();
        assert!(matches!(err, WaitError::LeaderGone));
        let (v, _) = cache
            .get_or_compute(1, deadline(), || async {
                Ok(Computed {
                    value: 9,
                    ttl: Duration::from_secs(5),
                    detail: (),
                })
            })
            .await
            .unwrap();
        assert_eq!(v, 9);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_cancel_the_computation() {
        let cache: VerdictCache<u32, u8, (), String> = VerdictCache::new(10);
        let (release_tx, release_rx) = watch::channel(false);
        let mut release = release_rx.clone();
        let short = Deadline::after(Duration::from_millis(1));
        let err = cache
            .get_or_compute(1, short, move || async move {
                let _ = release.wait_for(|r| *r).await;
                Ok(Computed {
                    value: 4,
                    ttl: Duration::from_secs(5),
                    detail: (),
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

    fn computed(value: u8, ttl_secs: u64) -> Result<Computed<u8, ()>, String> {
        Ok(Computed {
            value,
            ttl: Duration::from_secs(ttl_secs),
            detail: (),
        })
    }

    #[tokio::test]
    async fn a_refresh_replaces_the_value_when_it_succeeds_and_only_then() {
        let cache: VerdictCache<u32, u8, (), String> = VerdictCache::new(10);
        cache.insert(1, 1, Duration::from_secs(100));
        let (_, fresh) = cache.get_fresh(&1).unwrap();
        assert_eq!(fresh.lifetime, Duration::from_secs(100));
        assert!(fresh.remaining <= fresh.lifetime);
        // A failed refresh leaves the value and its expiry as they were.
        let (done_tx, mut done) = watch::channel(false);
        assert!(cache.refresh(1, move || async move {
            let _ = done_tx.send(true);
            Err("registry down".to_owned())
        }));
        let _ = done.wait_for(|d| *d).await;
        while cache.inner.inflight.lock().unwrap().contains_key(&1) {
            tokio::task::yield_now().await;
        }
        let (v, after) = cache.get_fresh(&1).unwrap();
        assert_eq!(v, 1);
        assert!(after.remaining <= fresh.remaining);
        assert_eq!(after.lifetime, Duration::from_secs(100));
        // A refresh already in flight is not started twice; a miss joins it.
        let (release_tx, release_rx) = watch::channel(false);
        let runs = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let runs = Arc::clone(&runs);
            let mut release = release_rx.clone();
            cache.refresh(1, move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = release.wait_for(|r| *r).await;
                computed(2, 600)
            });
        }
        release_tx.send(true).unwrap();
        let (v, _) = cache
            .get_or_compute(9, deadline(), || async { computed(9, 600) })
            .await
            .unwrap();
        assert_eq!(v, 9);
        while cache.inner.inflight.lock().unwrap().contains_key(&1) {
            tokio::task::yield_now().await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let (v, fresh) = cache.get_fresh(&1).unwrap();
        assert_eq!(v, 2);
        assert_eq!(fresh.lifetime, Duration::from_secs(600));
    }

    #[tokio::test]
    async fn entries_expire_after_their_own_ttl() {
        let cache: VerdictCache<u32, u8, (), String> = VerdictCache::new(10);
        cache
            .get_or_compute(1, deadline(), || async {
                Ok(Computed {
                    value: 1,
                    ttl: Duration::from_millis(1),
                    detail: (),
                })
            })
            .await
            .unwrap();
        cache
            .get_or_compute(2, deadline(), || async {
                Ok(Computed {
                    value: 2,
                    ttl: Duration::from_secs(600),
                    detail: (),
                })
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&2), Some(2));
    }
}
