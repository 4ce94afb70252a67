//! Prometheus metrics and the `/metrics` endpoint.
//!
//! Input: events from the gate (decisions, verifications, cache lookups and
//! evictions, phase latencies, registry errors) and from `cri` (forward
//! and tag latency). Output: the Prometheus text exposition format on
//! `GET /metrics` at `[metrics] listen` (off when empty). Nothing else is
//! served on that address.
//!
//! Why `prometheus-client`: it is the Prometheus project's own Rust client,
//! has typed label sets (no stringly label vectors that can be mis-ordered),
//! no global registry, and no HTTP server of its own, so the endpoint is ten
//! lines of the hyper we already link.
//!
//! Metrics (all prefixed `pullgate_`):
//! - `decisions_total{door, verdict, reason}`: every decision, by the door
//!   it came through (`pull`, `create`, `sandbox`, `verifier`, `cli`).
//! - `verifications_total{outcome}`: signature verifications actually run (cache misses).
//! - `signatures_total{kind, result}`: signatures examined by those
//!   verifications, by kind (`notation`, `cosign`, `unidentified`) and
//!   result (`accepted`, `rejected`, `inconclusive`).
//! - `cache_lookups_total{result="hit"|"miss"}`, `cache_evictions_total{cause}`.
//! - `verdict_refreshes_total{result="allowed"|"denied"|"error"}`: allow
//!   verdicts in use verified again before they expired (see `gate::refresh`).
//! - `prefetches_total{outcome}`: cold pulls' prefetches, by how they ended
//!   (`allowed`: kept for the forwarded pull; `discarded`: denied or
//!   undecided, lease deleted), and `prefetched_bytes_total`: blob bytes
//!   written into containerd's content store ahead of a verdict (see `prefetch`).
//! - `phase_duration_seconds{phase}`: resolve, discover, fetch, verify,
//!   forward (containerd's pull, until it answered; over the frame relay a
//!   pull handed back is timed until the relay saw the answer end),
//!   tag (pointing the kubelet's tag at the pulled digest, pulls by tag only).
//! - `registry_errors_total{kind}`: timeout, unreachable, unauthorized, not_found, other.
//! - `policy_generation`, `policy_reloads_total{result}`.
//! - `policy_source_checks_total{result}`: polls of `[trust] source`:
//!   `unchanged`, `applied`, `refused_signature`, `refused_bundle`,
//!   `unreachable`.
//! - `cri_connections_total{served}`: CRI connections accepted, by how they
//!   were served: `frame_relay`, or `calls` (`[server] frame_relay` off, or
//!   containerd unreachable when the connection came).
//! - `images_without_verdict`: images in containerd's CRI namespace that no
//!   allow verdict in the cache admits (nor need one), refreshed by `serve`
//!   on a bounded interval; -1 until the first pass.
//!
//! Limits: label values are small closed sets (no image names, which would
//! make cardinality unbounded). The endpoint serves at most
//! `[metrics] max_connections` connections at once (the rest wait in the
//! listen backlog, holding no descriptor of ours), gives a request
//! `header_read_timeout_ms` to arrive once it started, and closes a
//! connection on which nothing moved for `idle_timeout_ms` — so a flood of
//! idle connections cannot take the file descriptors the CRI socket needs.
//! A failed `accept` backs off (see `crate::listener`).

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use pullgate_policy::config::MetricsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A stage of the pull path whose latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are written as Prometheus expects them
pub(crate) enum Phase {
    resolve,
    discover,
    fetch,
    verify,
    forward,
    tag,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    door: &'static str,
    verdict: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ValidationLabels {
    validation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServedLabels {
    served: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SignatureLabels {
    kind: &'static str,
    result: &'static str,
}

/// Every metric pullgate keeps, registered in one registry.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    verifications: Family<OutcomeLabels, Counter>,
    cache_lookups: Family<ResultLabels, Counter>,
    cache_evictions: Family<CauseLabels, Counter>,
    verdict_refreshes: Family<ResultLabels, Counter>,
    phases: Family<PhaseLabels, Histogram>,
    registry_errors: Family<KindLabels, Counter>,
    generation: Gauge<i64, AtomicI64>,
    reloads: Family<ResultLabels, Counter>,
    source_checks: Family<ResultLabels, Counter>,
    logged_validations: Family<ValidationLabels, Counter>,
    signatures: Family<SignatureLabels, Counter>,
    images_without_verdict: Gauge<i64, AtomicI64>,
    prefetches: Family<OutcomeLabels, Counter>,
    prefetched_bytes: Counter,
    cri_connections: Family<ServedLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pullgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "PullImage decisions by verdict and reason",
            decisions.clone(),
        );
        let verifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "verifications",
            "Signature verifications run (cache misses), by outcome",
            verifications.clone(),
        );
        let cache_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Verdict cache lookups by result",
            cache_lookups.clone(),
        );
        let cache_evictions = Family::<CauseLabels, Counter>::default();
        registry.register(
            "cache_evictions",
            "Verdicts removed from the cache, by cause",
            cache_evictions.clone(),
        );
        let verdict_refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "verdict_refreshes",
            "Allow verdicts in use verified again before they expired, by result",
            verdict_refreshes.clone(),
        );
        // 100 µs .. ~26 s.
        let phases = Family::<PhaseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        });
        registry.register(
            "phase_duration_seconds",
            "Latency of each stage of the pull path",
            phases.clone(),
        );
        let registry_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "registry_errors",
            "Decisions that hit a registry error, by kind",
            registry_errors.clone(),
        );
        let generation = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "policy_generation",
            "Generation of the trust policy in force",
            generation.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reload attempts by result",
            reloads.clone(),
        );
        let source_checks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_source_checks",
            "Checks of the policy source ([trust] source) by result",
            source_checks.clone(),
        );
        let logged_validations = Family::<ValidationLabels, Counter>::default();
        registry.register(
            "logged_validation_failures",
            "Verification failures the level logged instead of enforcing (permissive, audit), by validation",
            logged_validations.clone(),
        );
        let signatures = Family::<SignatureLabels, Counter>::default();
        registry.register(
            "signatures",
            "Signatures examined by verifications, by kind and result",
            signatures.clone(),
        );
        let images_without_verdict = Gauge::<i64, AtomicI64>::default();
        images_without_verdict.set(-1);
        registry.register(
            "images_without_verdict",
            "Images in containerd's CRI namespace without an allow verdict under the policy in force (cache only; -1 until counted)",
            images_without_verdict.clone(),
        );
        let prefetches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "prefetches",
            "Cold pulls' prefetches into containerd's content store, by how they ended",
            prefetches.clone(),
        );
        let prefetched_bytes = Counter::default();
        registry.register(
            "prefetched_bytes",
            "Blob bytes written into containerd's content store ahead of a verdict",
            prefetched_bytes.clone(),
        );
        let cri_connections = Family::<ServedLabels, Counter>::default();
        registry.register(
            "cri_connections",
            "CRI connections accepted, by how they were served: frame_relay, or calls (call by call: [server] frame_relay off, or containerd unreachable at accept)",
            cri_connections.clone(),
        );
        Self {
            registry,
            decisions,
            verifications,
            cache_lookups,
            cache_evictions,
            verdict_refreshes,
            phases,
            registry_errors,
            generation,
            reloads,
            source_checks,
            logged_validations,
            signatures,
            images_without_verdict,
            prefetches,
            prefetched_bytes,
            cri_connections,
        }
    }

    /// One CRI connection accepted, `served` as `frame_relay` or `calls`.
    pub(crate) fn cri_connection(&self, served: &'static str) {
        self.cri_connections
            .get_or_create(&ServedLabels { served })
            .inc();
    }

    /// One prefetch ended: `allowed` or `discarded`.
    pub(crate) fn prefetch(&self, outcome: &'static str) {
        self.prefetches
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// `bytes` of one blob committed into containerd's content store by a prefetch.
    pub(crate) fn prefetched(&self, bytes: u64) {
        self.prefetched_bytes.inc_by(bytes);
    }

    pub(crate) fn set_images_without_verdict(&self, count: usize) {
        self.images_without_verdict
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn decision(&self, door: &'static str, verdict: &'static str, reason: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                door,
                verdict,
                reason,
            })
            .inc();
    }

    pub(crate) fn verification(&self, outcome: &'static str) {
        self.verifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One signature examined: `kind` and `result` are small closed sets.
    pub(crate) fn signature(&self, kind: &'static str, result: &'static str) {
        self.signatures
            .get_or_create(&SignatureLabels { kind, result })
            .inc();
    }

    pub(crate) fn logged_validation(&self, validation: &'static str) {
        self.logged_validations
            .get_or_create(&ValidationLabels { validation })
            .inc();
    }

    pub(crate) fn cache_lookup(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One refresh of an allow verdict ended: `allowed`, `denied` or `error`.
    pub(crate) fn verdict_refresh(&self, result: &'static str) {
        self.verdict_refreshes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub(crate) fn cache_eviction(&self, cause: &'static str) {
        self.cache_evictions
            .get_or_create(&CauseLabels { cause })
            .inc();
    }

    pub(crate) fn phase(&self, phase: Phase, took: Duration) {
        self.phases
            .get_or_create(&PhaseLabels { phase })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn registry_error(&self, kind: &'static str) {
        self.registry_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub(crate) fn set_generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    pub(crate) fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    pub(crate) fn source_check(&self, result: &'static str) {
        self.source_checks
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `[metrics] listen` is not `host:port`.
    #[error("[metrics] listen = {0:?} is not an address (host:port)")]
    Address(String),
    /// Binding failed.
    #[error("cannot bind the metrics endpoint {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds the `/metrics` endpoint; `None` when `listen` is empty.
///
/// # Errors
/// [`MetricsError`] for a bad address or a failed bind.
pub async fn bind(listen: &str) -> Result<Option<TcpListener>, MetricsError> {
    if listen.trim().is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| MetricsError::Address(listen.to_owned()))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics endpoint listens on a non-loopback address");
    }
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `GET /metrics` on `listener` until `shutdown`, within the
/// connection bounds of `config`.
///
/// # Cancel safety
/// Stops accepting when `shutdown` is cancelled; open connections are told
/// to stop by the same token and waited for.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    config: MetricsConfig,
    shutdown: CancellationToken,
) {
    let acceptor = crate::listener::Acceptor::new("metrics", config.max_connections);
    let (header_timeout, idle) = (config.header_read_timeout(), config.idle_timeout());
    let accept = || async { listener.accept().await.map(|(s, _)| s) };
    crate::listener::accept_loop(acceptor, &shutdown, accept, |stream, slot| {
        let metrics = Arc::clone(&metrics);
        let token = shutdown.child_token();
        Some(
            async move {
                let _slot = slot;
                let (io, activity) = crate::listener::Watched::new(stream);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let metrics = Arc::clone(&metrics);
                    async move { Ok::<_, std::convert::Infallible>(answer(&req, &metrics)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(io), service);
                tokio::select! {
                    ended = crate::listener::until_idle(conn, &activity, idle) => {
                        if ended.is_none() {
                            tracing::debug!("idle metrics connection closed");
                        }
                    }
                    () = token.cancelled() => {}
                }
            }
            .instrument(tracing::debug_span!("metrics_connection")),
        )
    })
    .await;
}

fn answer(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics is served here\n".to_owned(),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}
