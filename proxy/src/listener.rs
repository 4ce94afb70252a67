//! Accepting connections under a cap, backing off when `accept` fails; the
//! one accept loop every listener runs ([`accept_loop`]).
//!
//! Input: a listener (the CRI unix socket, the metrics TCP port). Output:
//! one accepted connection at a time, each with a [`ConnectionSlot`] that
//! the connection task holds until it ends.
//!
//! Limits: at most `max_connections` slots are out at once; while all are
//! taken nothing is accepted, so further clients wait in the kernel's listen
//! backlog and hold no file descriptor of pullgate's. A failed `accept`
//! (EMFILE when descriptors run out, ENOBUFS, …) waits before the next try,
//! [`FIRST_RETRY`] doubling up to [`MAX_RETRY`], and is logged at most once
//! per [`LOG_INTERVAL`] with the number of failures in between: a loop that
//! retried at once would spin a core and write millions of log lines while
//! the error lasts.
//!
//! [`PeerShares`] bounds what one local user holds: a unix listener's
//! accept loop takes a share for the peer's uid (`SO_PEERCRED`) and closes
//! the connection when that uid already holds its share, so one process
//! cannot take every slot; root is not limited. [`Calls`] counts a
//! connection's calls in flight, for a first-request deadline and an idle
//! timeout that does not cut a long call.
//!
//! [`Watched`] wraps a connection's I/O to record when a byte last moved,
//! and [`until_idle`] ends a connection on which nothing moved for a while
//! (hyper's own header-read timeout starts only at a request's first byte,
//! so a connection that never sends one would otherwise be kept forever).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Wait after the first failed `accept`.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(10);

/// Longest wait between two failed `accept`s.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(1);

/// At most one warn line per listener per this interval while `accept` fails.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Held by a connection task while it runs; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
}

/// What a failed `accept` asks of the loop: how long to wait, and whether to log it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Wait this long before the next `accept`.
    pub(crate) after: Duration,
    /// `Some(n)`: log now; `n` failures since the last line went unlogged.
    pub(crate) log: Option<u64>,
}

/// Backoff and log rate limit for one listener's `accept` errors.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    delay: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self {
            delay: FIRST_RETRY,
            last_log: None,
            unlogged: 0,
        }
    }
}

impl AcceptErrors {
    /// Records a failed `accept` at `now`.
    pub(crate) fn failed(&mut self, now: Instant) -> Retry {
        let after = self.delay;
        self.delay = (self.delay * 2).min(MAX_RETRY);
        let due = self
            .last_log
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_INTERVAL);
        let log = if due {
            self.last_log = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            None
        };
        Retry { after, log }
    }

    /// Records a successful `accept`: the next failure waits [`FIRST_RETRY`]
    /// again (the log rate limit stays, so an error that comes and goes is
    /// still logged once per interval).
    pub(crate) fn succeeded(&mut self) {
        self.delay = FIRST_RETRY;
    }
}

/// Accepts connections for one listener, at most `max_connections` at a time.
#[derive(Debug)]
pub(crate) struct Acceptor {
    slots: Arc<Semaphore>,
    errors: AcceptErrors,
    /// No `accept` before this (the backoff survives a cancelled [`Self::next`]).
    retry_at: Option<Instant>,
    listener: &'static str,
}

impl Acceptor {
    /// `listener` names it in log lines (`"cri"`, `"metrics"`); a cap of 0 is taken as 1.
    pub(crate) fn new(listener: &'static str, max_connections: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            errors: AcceptErrors::default(),
            retry_at: None,
            listener,
        }
    }

    /// Waits for a free slot, then for a connection; a failed `accept` is
    /// retried after the backoff.
    ///
    /// # Cancel safety
    /// Cancel safe when `accept`'s future is (tokio's listeners' are): a
    /// connection is returned or stays in the backlog, the slot is released
    /// on drop, and a backoff in progress is kept for the next call.
    pub(crate) async fn next<S, F, Fut>(&mut self, mut accept: F) -> (S, ConnectionSlot)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::io::Result<S>>,
    {
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            // The semaphore is never closed, so acquiring only waits.
            let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match accept().await {
                Ok(stream) => {
                    self.errors.succeeded();
                    return (stream, ConnectionSlot { _permit: permit });
                }
                Err(e) => {
                    drop(permit);
                    let now = Instant::now();
                    let retry = self.errors.failed(now);
                    self.retry_at = Some(now + retry.after);
                    if let Some(unlogged) = retry.log {
                        tracing::warn!(listener = self.listener, error = %e, unlogged_failures = unlogged,
                            retry_in_ms = retry.after.as_millis() as u64,
                            "accept failed; backing off (logged at most once per 10 s)");
                    }
                }
            }
        }
    }
}

/// The accept loop every listener runs (CRI, image verifier, metrics):
/// accepts under `acceptor`'s cap until `shutdown` is cancelled, hands each
/// connection and its slot to `handle`, which returns the connection's task
/// (spawned, and kept in a `JoinSet` so its panic is seen) or `None` to close
/// it; then waits for every connection task to end.
///
/// # Cancel safety
/// Returns only after `shutdown` and the end of every connection task; a
/// task is told to stop by the tokens `handle` gave it.
pub(crate) async fn accept_loop<S, A, Fut, H, T>(
    mut acceptor: Acceptor,
    shutdown: &CancellationToken,
    mut accept: A,
    mut handle: H,
) where
    A: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<S>>,
    H: FnMut(S, ConnectionSlot) -> Option<T>,
    T: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let (stream, slot) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = acceptor.next(&mut accept) => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        if let Some(task) = handle(stream, slot) {
            connections.spawn(task);
        }
    }
    while connections.join_next().await.is_some() {}
}

/// How many connections each local uid holds, capped per uid.
#[derive(Debug, Clone)]
pub(crate) struct PeerShares {
    per_uid: usize,
    held: Arc<Mutex<HashMap<u32, usize>>>,
}

/// One connection's part of its uid's share; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct PeerShare {
    uid: u32,
    held: Arc<Mutex<HashMap<u32, usize>>>,
}

/// The uid not held to a share: root, as the kubelet runs.
const UNLIMITED_UID: u32 = 0;

impl PeerShares {
    /// At most `per_uid` connections per uid (0 is taken as 1); root is not limited.
    pub(crate) fn new(per_uid: usize) -> Self {
        Self {
            per_uid: per_uid.max(1),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A share for a connection from `uid`; `None` when `uid` holds its whole share.
    pub(crate) fn take(&self, uid: u32) -> Option<PeerShare> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = held.entry(uid).or_insert(0);
        if uid != UNLIMITED_UID && *n >= self.per_uid {
            return None;
        }
        *n += 1;
        Some(PeerShare {
            uid,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

/// A connection's calls: whether one came, how many are in flight, and
/// when the last one started or ended.
#[derive(Debug)]
pub(crate) struct Calls {
    base: Instant,
    any: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds after `base`.
    last: AtomicU64,
}

/// Held while a call is in flight (its response body included).
#[derive(Debug)]
pub(crate) struct CallGuard {
    calls: Arc<Calls>,
}

impl Calls {
    /// No call yet; the clock starts now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            any: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// Records a call's start; the call ends when the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> CallGuard {
        self.any.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        CallGuard {
            calls: Arc::clone(self),
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.calls.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.calls.touch();
    }
}

/// Deadlines on a connection's calls: the first must come within
/// `first_request`; with `idle`, a connection with none in flight for that
/// long is ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallDeadlines {
    /// From accept to the first call.
    pub(crate) first_request: Duration,
    /// With nothing in flight; `None` = never.
    pub(crate) idle: Option<Duration>,
}

/// Why [`until_quiet`] gave up on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// No call arrived within the first-request deadline.
    NoFirstRequest,
    /// No call was in flight for the idle timeout.
    Idle,
}

/// Waits until `calls` breaks one of `deadlines`.
///
/// # Cancel safety
/// Cancel safe: it only reads `calls` and sleeps.
pub(crate) async fn until_quiet(calls: &Calls, deadlines: CallDeadlines) -> Quiet {
    let first_due = calls.base + deadlines.first_request;
    tokio::time::sleep_until(first_due).await;
    if !calls.any.load(Ordering::Relaxed) {
        return Quiet::NoFirstRequest;
    }
    let Some(idle) = deadlines.idle else {
        return std::future::pending().await;
    };
    loop {
        if calls.in_flight.load(Ordering::Relaxed) > 0 {
            // A long call (a pull, an event stream): look again after `idle`.
            tokio::time::sleep(idle).await;
            continue;
        }
        let due = calls.base + Duration::from_millis(calls.last.load(Ordering::Relaxed)) + idle;
        if Instant::now() >= due {
            return Quiet::Idle;
        }
        tokio::time::sleep_until(due).await;
    }
}

/// When a byte last moved on a [`Watched`] connection.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    base: Instant,
    /// Milliseconds after `base`.
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// An I/O object that records in its [`Activity`] every read or write that moved bytes.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T> Watched<T> {
    /// Wraps `inner`; the activity starts now.
    pub(crate) fn new(inner: T) -> (Self, Activity) {
        let activity = Activity::new();
        (
            Self {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs `conn` until it finishes (`Some`) or no byte moved on its
/// connection for `idle` (`None`; `conn` is dropped, closing the connection).
///
/// # Cancel safety
/// Dropping it drops `conn`.
pub(crate) async fn until_idle<F: Future>(
    conn: F,
    activity: &Activity,
    idle: Duration,
) -> Option<F::Output> {
    tokio::pin!(conn);
    loop {
        let due = activity.last() + idle;
        tokio::select! {
            out = conn.as_mut() => return Some(out),
            () = tokio::time::sleep_until(due) => {
                if Instant::now() >= activity.last() + idle {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_log_once_per_interval() {
        let mut e = AcceptErrors::default();
        let t0 = Instant::now();
        let first = e.failed(t0);
        assert_eq!(first.after, FIRST_RETRY);
        assert_eq!(first.log, Some(0));
        let mut waits = Vec::new();
        let mut logs = 0;
        let mut now = t0;
        // 9 s of failures: waits double to the cap, nothing more is logged.
        while now.duration_since(t0) < Duration::from_secs(9) {
            let r = e.failed(now);
            waits.push(r.after);
            logs += usize::from(r.log.is_some());
            now += r.after;
        }
        assert_eq!(logs, 0);
        assert_eq!(waits[0], FIRST_RETRY * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        let unlogged = waits.len() as u64;
        // Past the interval: one line, counting what went unlogged.
        let r = e.failed(t0 + LOG_INTERVAL);
        assert_eq!(r.log, Some(unlogged));
        // A success resets the wait, not the log rate limit.
        e.succeeded();
        let r = e.failed(t0 + LOG_INTERVAL + Duration::from_secs(1));
        assert_eq!(r.after, FIRST_RETRY);
        assert_eq!(r.log, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_is_retried_with_pauses_not_spun() {
        let mut acceptor = Acceptor::new("test", 1);
        let mut calls = 0u32;
        let started = Instant::now();
        let (value, _slot) = acceptor
            .next(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 6 {
                        Err(std::io::Error::from_raw_os_error(24)) // EMFILE
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(value, 6);
        // 10 + 20 + 40 + 80 + 160 ms of backoff under the paused clock.
        assert_eq!(started.elapsed(), Duration::from_millis(310));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_does_not_skip_the_backoff() {
        let mut acceptor = Acceptor::new("test", 1);
        let failing = || async { Err::<(), _>(std::io::Error::from_raw_os_error(24)) };
        // Fail a few times (10 + 20 + 40 ms), then cancel in the middle of the 80 ms wait.
        let cut = tokio::time::timeout(Duration::from_millis(100), acceptor.next(failing)).await;
        assert!(cut.is_err());
        let resumed = Instant::now();
        let (v, _slot) = acceptor.next(|| async { Ok(7) }).await;
        assert_eq!(v, 7);
        assert_eq!(resumed.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_accepted_while_every_slot_is_taken() {
        let mut acceptor = Acceptor::new("test", 1);
        let (_, slot) = acceptor.next(|| async { Ok(1) }).await;
        let blocked =
            tokio::time::timeout(Duration::from_secs(60), acceptor.next(|| async { Ok(2) })).await;
        assert!(
            blocked.is_err(),
            "a second connection was accepted over the cap"
        );
        drop(slot);
        let (v, _slot) = acceptor.next(|| async { Ok(3) }).await;
        assert_eq!(v, 3);
    }

    /// Issue 23, item 3: one local user could take every CRI slot.
    #[test]
    fn a_uid_holds_at_most_its_share_and_root_is_not_limited() {
        let shares = PeerShares::new(2);
        let a = shares.take(1000).unwrap();
        let _b = shares.take(1000).unwrap();
        assert!(
            shares.take(1000).is_none(),
            "a third connection of uid 1000"
        );
        let _other = shares.take(1001).unwrap();
        let roots: Vec<PeerShare> = (0..10).map(|_| shares.take(0).unwrap()).collect();
        assert_eq!(roots.len(), 10);
        drop(a);
        assert!(shares.take(1000).is_some(), "a freed share is given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_call_is_ended_at_the_first_request_deadline() {
        let deadlines = CallDeadlines {
            first_request: Duration::from_secs(10),
            idle: Some(Duration::from_secs(300)),
        };
        let calls = Calls::new();
        let started = Instant::now();
        assert_eq!(until_quiet(&calls, deadlines).await, Quiet::NoFirstRequest);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_call_and_a_long_call_is_not_cut() {
        let deadlines = CallDeadlines {
            first_request: Duration::from_secs(10),
            idle: Some(Duration::from_secs(60)),
        };
        let calls = Calls::new();
        let started = Instant::now();
        // A call at 1 s that lasts 500 s (a pull of a big image).
        let long = {
            let calls = Arc::clone(&calls);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let guard = calls.enter();
                tokio::time::sleep(Duration::from_secs(500)).await;
                drop(guard);
            })
        };
        assert_eq!(until_quiet(&calls, deadlines).await, Quiet::Idle);
        long.await.unwrap();
        let ended = started.elapsed();
        assert!(ended >= Duration::from_secs(561), "{ended:?}");
        // Checked again within one more idle period after the call ended.
        assert!(ended <= Duration::from_secs(621), "{ended:?}");
        // Without an idle timeout, a connection that called stays.
        let calls = Calls::new();
        drop(calls.enter());
        let forever = tokio::time::timeout(
            Duration::from_secs(3600),
            until_quiet(
                &calls,
                CallDeadlines {
                    idle: None,
                    ..deadlines
                },
            ),
        )
        .await;
        assert!(forever.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_ends_and_a_busy_one_does_not() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let idle = Duration::from_secs(30);

        // Nothing ever arrives: ended after `idle`.
        let (ours, _theirs) = tokio::io::duplex(64);
        let (mut watched, activity) = Watched::new(ours);
        let started = Instant::now();
        let out = until_idle(
            async move {
                let mut b = [0u8; 1];
                watched.read(&mut b).await
            },
            &activity,
            idle,
        )
        .await;
        assert!(out.is_none());
        assert_eq!(started.elapsed(), idle);

        // A byte every 20 s keeps it open; it ends when the reader finishes.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (mut watched, activity) = Watched::new(ours);
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                theirs.write_all(b"x").await.unwrap();
            }
        });
        let out = until_idle(
            async move {
                let mut b = [0u8; 4];
                watched.read_exact(&mut b).await.map(|_| b)
            },
            &activity,
            idle,
        )
        .await;
        assert_eq!(out.unwrap().unwrap(), *b"xxxx");
        writer.await.unwrap();
    }
}
