//! Revocation data for the verifier: OCSP responses and CRLs, fetched over
//! HTTP and held in memory until their `nextUpdate`.
//!
//! Input: the [`RevocationRequest`]s that `verify::revocation::needed`
//! computes for a chain that passed Authenticity (never for an untrusted
//! one: its URLs are the signer's to choose), the authentic signing time,
//! `now`, and the request's [`Deadline`]. Output: the data fetched into the
//! cache ([`RevocationCache::prefetch`], after
//! [`RevocationCache::needs_fetch`]), which the gate then has the verifier's
//! report recheck against, or [`Error::Deadline`];
//! [`RevocationCache::check`] does both in one call (for the tests). The cache
//! implements [`RevocationData`], so the pure check
//! (`verify::revocation::check_requests`, on the blocking pool) reads it
//! without any I/O; [`RevocationCache::needs_fetch`] is false on the hot
//! path, where no request is made.
//!
//! How a certificate is served ([Certificate Revocation Evaluation]):
//! 1. a fresh OCSP response (or a fresh CRL of one of its distribution
//!    points, or a fresh pre-loaded CRL of its issuer) is held: no request;
//! 2. otherwise each OCSP responder URL in turn (GET when the encoded request
//!    is short, POST otherwise; RFC 6960 Appendix A.1), until one answers with
//!    a response that verifies and says good or revoked;
//! 3. otherwise each CRL distribution point in turn, until one serves a CRL
//!    that verifies.
//!
//! Only responses that verified against the certificate's issuer at `now`
//! are kept; each is kept until its `nextUpdate` (a CRL without one is
//! fetched again next time). Why a URL failed is kept too, so a denial can
//! say it.
//!
//! Limits and timeouts ([`RevocationConfig`], `[revocation]` in the config):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `mode` | `"online"` | `"offline"`: never fetch; use only the CRLs of `crl_dir` (air-gapped nodes) |
//! | `crl_dir` | none | directory of pre-loaded CRL files (DER or PEM `X509 CRL`), read at startup; required offline |
//! | `ocsp_timeout_ms` | 2000 | per OCSP responder URL (the spec's default threshold) |
//! | `crl_timeout_ms` | 5000 | per CRL URL (the spec's default threshold) |
//! | `max_ocsp_bytes` | 20480 | OCSP response body cap (notation-core-go's) |
//! | `max_crl_bytes` | 33554432 | CRL body and CRL file cap, 32 MiB (notation-core-go's) |
//!
//! Every request also runs under the pull's [`Deadline`]; only plain `http`
//! URLs are fetched (the spec: "support only HTTP CRL URLs"), following at
//! most [`MAX_REDIRECTS`] redirects, at most [`MAX_CONCURRENT_FETCHES`]
//! certificates fetched at once across all pulls. Memory: at most [`MAX_OCSP_ENTRIES`]
//! OCSP responses and [`MAX_CRL_CACHE_BYTES`] of CRLs (by DER size).
//!
//! AWS Signer signatures are not checked through OCSP or CRL but through the
//! Signer API: [`aws_signer`].
//!
//! [Certificate Revocation Evaluation]: https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#certificate-revocation-evaluation

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::deadline::Deadline;
use crate::verify::revocation::{
    self as check, CertKey, Crl, FetchFailure, OcspResponse, RevocationData, RevocationError,
    RevocationFailure, RevocationRequest, RevocationStatus,
};
use crate::verify::x509::Certificate;

pub(crate) mod aws_signer;
mod fetch;

#[cfg(test)]
mod tests;

/// Most OCSP responses held at once.
pub(crate) const MAX_OCSP_ENTRIES: usize = 10_000;
/// Most CRL bytes (DER) held at once from the network.
pub(crate) const MAX_CRL_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// How many fetched CRLs the CRL cache's table is sized for (it grows past it).
const CRL_ENTRIES_ESTIMATE: usize = 64;
/// Most remembered fetch failures.
const MAX_FAILURE_ENTRIES: usize = 10_000;
/// Most redirects followed for one URL.
pub(crate) const MAX_REDIRECTS: usize = 3;
/// Most revocation requests in flight at once, across all pulls.
pub(crate) const MAX_CONCURRENT_FETCHES: usize = 16;

pub(crate) use pullgate_policy::config::{RevocationConfig, RevocationMode as Mode};

/// Why revocation data could not be prepared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("revocation mode \"offline\" needs crl_dir: the directory of pre-loaded CRLs")]
    OfflineWithoutCrlDir,
    #[error("cannot read the CRL directory {}: {source}", .path.display())]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read CRL file {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CRL file {} is over the {limit}-byte limit (max_crl_bytes)", .path.display())]
    FileTooLarge { path: PathBuf, limit: u64 },
    #[error("CRL file {} is unusable: {reason}", .path.display())]
    BadCrlFile {
        path: PathBuf,
        reason: RevocationError,
    },
    #[error("deadline exceeded while fetching revocation data")]
    Deadline,
    // reason: only `RevocationCache::check` builds it, and only the tests call that.
    #[cfg_attr(not(test), allow(dead_code))]
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// Whether the request's deadline passed.
    // reason: only the tests classify errors of `RevocationCache::check`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn is_deadline(&self) -> bool {
        matches!(self, Self::Deadline)
    }
}

/// A response kept until `next_update`.
#[derive(Debug, Clone)]
struct Held<T> {
    value: Arc<T>,
    next_update: Option<SystemTime>,
}

impl<T> Held<T> {
    fn fresh_at(&self, now: SystemTime) -> bool {
        self.next_update.is_some_and(|next| now <= next)
    }
}

/// Weighs a fetched CRL by its DER size (at least 1: a weightless entry is never evicted).
#[derive(Debug, Clone, Copy)]
struct CrlBytes;

impl<V> quick_cache::Weighter<String, (u32, V)> for CrlBytes {
    fn weight(&self, _url: &String, (size, _): &(u32, V)) -> u64 {
        u64::from(*size).max(1)
    }
}

/// The fetched CRLs, at most [`MAX_CRL_CACHE_BYTES`] of them by DER size, in
/// one shard: `quick_cache` splits the weight among its shards, and a CRL
/// larger than its shard's share would not be kept at all.
fn crl_cache<V: Clone>() -> quick_cache::sync::Cache<String, (u32, V), CrlBytes> {
    let options = quick_cache::OptionsBuilder::new()
        .shards(1)
        .estimated_items_capacity(CRL_ENTRIES_ESTIMATE)
        .weight_capacity(MAX_CRL_CACHE_BYTES)
        .build();
    match options {
        Ok(options) => quick_cache::sync::Cache::with_options(
            options,
            CrlBytes,
            Default::default(),
            Default::default(),
        ),
        // Unreachable: both required options are set above.
        Err(_) => quick_cache::sync::Cache::with_weighter(
            CRL_ENTRIES_ESTIMATE,
            MAX_CRL_CACHE_BYTES,
            CrlBytes,
        ),
    }
}

/// OCSP responses and CRLs in memory; cheap to clone (shared).
#[derive(Debug, Clone)]
pub(crate) struct RevocationCache {
    inner: Arc<Inner>,
}

struct Inner {
    mode: Mode,
    client: fetch::HttpClient,
    ocsp_timeout: Duration,
    crl_timeout: Duration,
    max_ocsp_bytes: u64,
    max_crl_bytes: u64,
    crl_dir: Option<PathBuf>,
    ocsp: quick_cache::sync::Cache<CertKey, Held<OcspResponse>>,
    crl: quick_cache::sync::Cache<String, (u32, Held<Crl>), CrlBytes>,
    failures: quick_cache::sync::Cache<String, FetchFailure>,
    /// Pre-loaded CRLs by the DER of their issuer's name.
    preloaded: RwLock<HashMap<Vec<u8>, Vec<Arc<Crl>>>>,
    /// One fetch at a time per certificate: concurrent pulls of images
    /// signed by one key wait for the first fetch instead of repeating it.
    inflight: Mutex<HashMap<CertKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds requests in flight ([`MAX_CONCURRENT_FETCHES`]).
    fetches: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationCache")
            .field("mode", &self.mode)
            .field("ocsp_entries", &self.ocsp.len())
            .field("crl_entries", &self.crl.len())
            .finish_non_exhaustive()
    }
}

impl RevocationCache {
    /// Builds the cache and reads `crl_dir` (blocking file reads: call at
    /// startup or on the blocking pool).
    ///
    /// # Errors
    /// Offline mode without `crl_dir`; a CRL directory or file that cannot
    /// be read, is over `max_crl_bytes`, or is not a CRL.
    pub(crate) fn new(cfg: &RevocationConfig) -> Result<Self, Error> {
        if cfg.mode == Mode::Offline && cfg.crl_dir.is_none() {
            return Err(Error::OfflineWithoutCrlDir);
        }
        let cache = Self {
            inner: Arc::new(Inner {
                mode: cfg.mode,
                client: fetch::client(),
                ocsp_timeout: Duration::from_millis(cfg.ocsp_timeout_ms),
                crl_timeout: Duration::from_millis(cfg.crl_timeout_ms),
                max_ocsp_bytes: cfg.max_ocsp_bytes,
                max_crl_bytes: cfg.max_crl_bytes,
                crl_dir: cfg.crl_dir.clone(),
                ocsp: quick_cache::sync::Cache::new(MAX_OCSP_ENTRIES),
                crl: crl_cache(),
                failures: quick_cache::sync::Cache::new(MAX_FAILURE_ENTRIES),
                preloaded: RwLock::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                fetches: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
            }),
        };
        cache.reload_crl_dir()?;
        Ok(cache)
    }

    /// Reads `crl_dir` again (an operator dropped new CRLs there); returns
    /// how many CRLs it holds. Blocking: call on the blocking pool.
    ///
    /// # Errors
    /// As [`RevocationCache::new`]; the CRLs held before stay on error.
    pub(crate) fn reload_crl_dir(&self) -> Result<usize, Error> {
        let Some(dir) = &self.inner.crl_dir else {
            return Ok(0);
        };
        let loaded = load_crl_dir(dir, self.inner.max_crl_bytes)?;
        let count = loaded.values().map(Vec::len).sum();
        match self.inner.preloaded.write() {
            Ok(mut held) => *held = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        tracing::info!(dir = %dir.display(), crls = count, "pre-loaded CRLs");
        Ok(count)
    }

    /// Fetches what `requests` need and the cache does not hold fresh at
    /// `now`. Makes no request when everything is held (the hot path), and
    /// none at all in offline mode. A URL that fails is remembered with why;
    /// it is not an error here (the check reports the status as unknown).
    ///
    /// # Errors
    /// [`Error::Deadline`] when `deadline` passes first.
    ///
    /// # Cancel safety
    /// Cancel safe: what was fetched before cancellation stays cached.
    pub(crate) async fn prefetch(
        &self,
        requests: &[RevocationRequest],
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<(), Error> {
        if self.inner.mode == Mode::Offline {
            return Ok(());
        }
        let all = futures_util::future::join_all(
            requests.iter().map(|r| self.prefetch_one(r, now, deadline)),
        );
        deadline.run(all).await.map_err(|_| Error::Deadline)?;
        if deadline.is_past() {
            return Err(Error::Deadline);
        }
        Ok(())
    }

    /// Whether [`RevocationCache::prefetch`] would make any request for
    /// `requests` at `now`: false on the hot path (everything held fresh)
    /// and always in offline mode.
    pub(crate) fn needs_fetch(&self, requests: &[RevocationRequest], now: SystemTime) -> bool {
        self.inner.mode == Mode::Online && requests.iter().any(|r| !self.satisfied(r, now))
    }

    /// Whether the cache can answer for `req` at `now` without fetching.
    fn satisfied(&self, req: &RevocationRequest, now: SystemTime) -> bool {
        if req.ocsp_urls().is_empty() && req.crl_urls().is_empty() {
            // Nothing to fetch (malformed endpoints): the check says unknown.
            return true;
        }
        if self
            .inner
            .ocsp
            .get(&req.key)
            .is_some_and(|h| h.fresh_at(now))
        {
            return true;
        }
        req.crl_urls().iter().any(|url| {
            self.inner
                .crl
                .get(url)
                .is_some_and(|(_, h)| h.fresh_at(now))
        }) || (!req.crl_urls().is_empty()
            && self
                .preloaded_for(&req.issuer)
                .iter()
                .any(|crl| crl.next_update().is_some_and(|n| now <= n)))
    }

    /// Until when the revocation data held for `requests` stays current: the
    /// earliest `nextUpdate`, after `now`, of every OCSP response and CRL the
    /// check reads for them (a fetched CRL of a distribution point, else the
    /// newest pre-loaded CRL of the issuer). A verdict that relied on the
    /// check must not outlive it. Data already past its `nextUpdate` is left
    /// out (it cannot have vouched for a certificate: an expired response
    /// fails the check), and so is data without a `nextUpdate` (nothing says
    /// when it ages; `crl_dir` is part of the policy's fingerprint, so a
    /// changed directory ends every verdict anyway). `None`: no bound.
    ///
    /// Counting every item read, not only the one that decided, can only
    /// shorten the lifetime. No I/O, no cryptography.
    pub(crate) fn valid_until(
        &self,
        requests: &[RevocationRequest],
        now: SystemTime,
    ) -> Option<SystemTime> {
        let mut until: Option<SystemTime> = None;
        let mut consider = |next: Option<SystemTime>| {
            if let Some(next) = next.filter(|&n| n > now) {
                until = Some(until.map_or(next, |u| u.min(next)));
            }
        };
        for req in requests {
            if !req.ocsp_urls().is_empty() {
                if let Some(held) = self.inner.ocsp.get(&req.key) {
                    consider(held.next_update);
                }
            }
            for url in req.crl_urls() {
                if let Some(crl) = RevocationData::crl(self, url, &req.issuer) {
                    consider(crl.next_update());
                }
            }
        }
        until
    }

    /// Checks `requests` (from `verify::revocation::needed` on a chain that
    /// passed Authenticity: never fetch for an untrusted chain), fetching
    /// first what is not held (nothing on the hot path), then running the
    /// pure check on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Deadline`] when `deadline` passes while fetching. The
    /// inner result is the revocation check's.
    ///
    /// # Cancel safety
    /// Cancel safe.
    // reason: the one-call form the tests drive; the gate calls
    // `needs_fetch` and `prefetch` and rechecks the report itself.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) async fn check(
        &self,
        requests: Vec<RevocationRequest>,
        authentic_signing_time: Option<SystemTime>,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<Result<(), RevocationFailure>, Error> {
        if self.needs_fetch(&requests, now) {
            self.prefetch(&requests, now, deadline).await?;
        }
        let cache = self.clone();
        let span = tracing::debug_span!("revocation_check");
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| check::check_requests(&requests, &cache, authentic_signing_time, now))
        })
        .await
        .map_err(|_| Error::Internal("revocation check task failed"))
    }

    async fn prefetch_one(&self, req: &RevocationRequest, now: SystemTime, deadline: Deadline) {
        if self.satisfied(req, now) {
            return;
        }
        let gate = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(inflight.entry(req.key.clone()).or_default())
        };
        let guard = gate.lock().await;
        // Whoever held the gate may have fetched it meanwhile.
        if !self.satisfied(req, now) {
            // Never closed, so acquiring fails only if it were; fetch anyway then.
            let _permit = self.inner.fetches.acquire().await.ok();
            self.fetch_one(req, now, deadline).await;
        }
        drop(guard);
        let mut inflight = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the map and this call hold it: nobody waits.
        if Arc::strong_count(&gate) == 2 {
            inflight.remove(&req.key);
        }
    }

    async fn fetch_one(&self, req: &RevocationRequest, now: SystemTime, deadline: Deadline) {
        if let Some(request) = &req.ocsp_request {
            for url in req.ocsp_urls() {
                let fetched = fetch::ocsp(
                    &self.inner.client,
                    url,
                    request,
                    self.inner.max_ocsp_bytes,
                    self.inner.ocsp_timeout,
                    deadline,
                )
                .await;
                let result = fetched.and_then(|bytes| {
                    accept_ocsp(&bytes, req, now).map_err(|e| FetchFailure::Unusable(Box::new(e)))
                });
                match result {
                    Ok(held) => {
                        self.inner.failures.remove(url);
                        self.inner.ocsp.insert(req.key.clone(), held);
                        return;
                    }
                    Err(why) => {
                        // An authentic "unknown" is the responders' answer:
                        // the next one would say the same (notation-core-go
                        // stops there too); go to the CRL.
                        let authentic_unknown = matches!(&why, FetchFailure::Unusable(e) if **e == RevocationError::CertStatusUnknown);
                        self.failed(url, why);
                        if authentic_unknown {
                            break;
                        }
                    }
                }
            }
        }
        for url in req.crl_urls() {
            let fetched = fetch::get(
                &self.inner.client,
                url,
                self.inner.max_crl_bytes,
                self.inner.crl_timeout,
                deadline,
            )
            .await;
            let result = match fetched {
                Ok(bytes) => {
                    // Parsing and verifying a large CRL is CPU work: off the runtime.
                    let req = req.clone();
                    let span = tracing::debug_span!("crl_check", url = %url);
                    tokio::task::spawn_blocking(move || {
                        span.in_scope(|| accept_crl(&bytes, &req, now))
                    })
                    .await
                    .unwrap_or(Err(RevocationError::Internal("CRL check task failed")))
                    .map_err(|e| FetchFailure::Unusable(Box::new(e)))
                }
                Err(why) => Err(why),
            };
            match result {
                Ok(held) => {
                    self.inner.failures.remove(url);
                    self.inner.crl.insert(url.clone(), held);
                    return;
                }
                Err(why) => self.failed(url, why),
            }
        }
    }

    fn failed(&self, url: &str, why: FetchFailure) {
        tracing::warn!(url, "revocation data unavailable: {why}");
        // Says nothing about the URL, only about this pull.
        if why != FetchFailure::Deadline {
            self.inner.failures.insert(url.to_owned(), why);
        }
    }

    fn preloaded_for(&self, issuer: &Certificate) -> Vec<Arc<Crl>> {
        let Some(name) = check::subject_name_der(issuer) else {
            return Vec::new();
        };
        match self.inner.preloaded.read() {
            Ok(held) => held.get(&name).cloned().unwrap_or_default(),
            Err(poisoned) => poisoned
                .into_inner()
                .get(&name)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// Keeps an OCSP response only if it verifies and says good or revoked.
fn accept_ocsp(
    bytes: &[u8],
    req: &RevocationRequest,
    now: SystemTime,
) -> Result<Held<OcspResponse>, RevocationError> {
    let resp = OcspResponse::from_der(bytes)?;
    match check::check_ocsp(&resp, &req.cert, &req.issuer, None, now)? {
        RevocationStatus::Good { .. } | RevocationStatus::Revoked { .. } => {}
        RevocationStatus::Unknown { .. } | RevocationStatus::NonRevokable => {
            return Err(RevocationError::CertStatusUnknown)
        }
    }
    let next_update = resp.next_update_for(&req.cert, &req.issuer);
    Ok(Held {
        value: Arc::new(resp),
        next_update,
    })
}

/// Keeps a CRL only if it verifies against the issuer and can decide.
fn accept_crl(
    bytes: &[u8],
    req: &RevocationRequest,
    now: SystemTime,
) -> Result<(u32, Held<Crl>), RevocationError> {
    let crl = Crl::from_der(bytes)?;
    check::check_crl(&crl, &req.cert, &req.issuer, req.crl_urls(), None, now)?;
    let size = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let next_update = crl.next_update();
    Ok((
        size,
        Held {
            value: Arc::new(crl),
            next_update,
        },
    ))
}

impl RevocationData for RevocationCache {
    fn ocsp(&self, key: &CertKey) -> Option<Arc<OcspResponse>> {
        self.inner.ocsp.get(key).map(|h| h.value)
    }

    fn crl(&self, url: &str, issuer: &Certificate) -> Option<Arc<Crl>> {
        if let Some((_, held)) = self.inner.crl.get(url) {
            return Some(held.value);
        }
        // The newest pre-loaded CRL of this issuer.
        self.preloaded_for(issuer)
            .into_iter()
            .max_by_key(|crl| crl.this_update())
    }

    fn fetch_failure(&self, url: &str) -> Option<FetchFailure> {
        match self.inner.mode {
            Mode::Offline => Some(FetchFailure::Offline),
            Mode::Online => self.inner.failures.get(url),
        }
    }
}

/// Reads every regular file of `dir` as a CRL, indexed by issuer name.
fn load_crl_dir(dir: &Path, limit: u64) -> Result<HashMap<Vec<u8>, Vec<Arc<Crl>>>, Error> {
    let read_dir = |source| Error::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let mut out: HashMap<Vec<u8>, Vec<Arc<Crl>>> = HashMap::new();
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|source| Error::ReadFile {
            path: path.clone(),
            source,
        })?;
        if meta.is_file() {
            if meta.len() > limit {
                return Err(Error::FileTooLarge { path, limit });
            }
            paths.push(path);
        }
    }
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|source| Error::ReadFile {
            path: path.clone(),
            source,
        })?;
        // The file may have grown since its metadata was read.
        if bytes.len() as u64 > limit {
            return Err(Error::FileTooLarge { path, limit });
        }
        let crl =
            Crl::from_file_bytes(&bytes).map_err(|reason| Error::BadCrlFile { path, reason })?;
        out.entry(crl.issuer_name_der().to_vec())
            .or_default()
            .push(Arc::new(crl));
    }
    Ok(out)
}
