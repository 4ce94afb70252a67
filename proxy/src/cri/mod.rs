//! The CRI socket: pullgate's face to the kubelet.
//!
//! Input: HTTP/2 gRPC connections on a unix socket. `surface` decides what
//! is served: `PullImage` goes to `pull_image` (the gate decides first);
//! `ImageStatus` to `image_status` when `[server] enforce_image_status` is on (an image
//! without an allow verdict is reported absent); `grpc.health.v1.Health/Check`
//! is answered by `health`; the whole v1 RuntimeService and the v1
//! ImageService calls that only read or remove go through `passthrough` as
//! opaque frames to containerd; everything else (v1alpha2, containerd's own
//! services, unknown methods) is `Unimplemented`.
//!
//! Limits: at most `[server] max_connections` connections are served at
//! once (the rest wait in the listen backlog), at most
//! `max_connections_per_uid` of them from one local user other than root
//! (the peer's uid, `SO_PEERCRED`; a connection over that share is closed
//! when accepted), each with at most `max_streams_per_connection`
//! concurrent calls; a failed `accept` backs off (see `crate::listener`).
//! A connection that has not sent the HTTP/2 preface and a first call
//! within `first_request_timeout_ms` is closed; one with no call in flight
//! for `idle_timeout_ms` is sent GOAWAY; HTTP/2 PINGs every
//! `keepalive_interval_ms` close one whose peer stopped answering. So idle
//! or stalled connections cannot hold the slots the kubelet needs.
//! `PullImage` and `ImageStatus` requests are read up to `max_request_bytes`.
//!
//! Every connection passes through `pullgate_authority` first, so clients that send
//! the socket path as `:authority` (kubelet and crictl before 1.31, gRPC
//! C-core) are served like those that send `localhost`.
//!
//! The socket is created with the configured mode (default 0660; bound
//! under a temporary name and renamed into place, so it is never visible
//! with another mode); a stale socket left by a previous run is removed, a
//! live one is an error.

pub(crate) mod admit;
mod buffered;
pub(crate) mod checkpoint;
pub(crate) mod config_dump;
pub(crate) mod create_container;
pub(crate) mod grpc;
pub(crate) mod health;
pub(crate) mod image_records;
pub(crate) mod image_status;
pub mod inventory;
pub(crate) mod passthrough;
pub(crate) mod pull_image;
pub(crate) mod pull_through;
pub(crate) mod refusal;
mod relayed;
pub(crate) mod run_pod_sandbox;
pub(crate) mod status;
pub(crate) mod surface;
pub(crate) mod tag;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use passthrough::CallBody;
use pullgate_authority::{AuthorityLimits, AuthorityRewrite};
use pullgate_policy::config::Config;
use pullgate_proto::runtime::v1 as cri_api;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::gate::Gate;
use crate::listener::{
    accept_loop, until_quiet, Acceptor, CallDeadlines, CallGuard, Calls, ConnectionSlot, PeerShare,
    PeerShares, Quiet, LOG_INTERVAL,
};
use admit::{Admission, MAX_RUNTIME_REQUEST_BYTES, RUNTIME_READS};
use checkpoint::Checkpoints;
use image_records::ImageRecords;
use image_status::ImageStatusService;
use passthrough::{ProxyBody, Upstream};
use pull_image::PullService;
use pull_through::PullThrough;
use run_pod_sandbox::SandboxImage;
use surface::{Refusals, Route};
use tag::TagWriter;

/// Why the CRI socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another process answers on the socket path.
    #[error("{} is in use by a running process; stop it or choose another socket", .0.display())]
    SocketInUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{} exists and is not a socket; refusing to remove it", .0.display())]
    NotASocket(PathBuf),
    /// Binding, chmod or accept failed.
    #[error("socket {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The containerd client could not be built.
    #[error("containerd client: {0}")]
    Containerd(String),
}

/// Serves the CRI socket until `shutdown` is cancelled, then drains connections.
///
/// `on_ready` runs once, when the socket is bound and accepting.
///
/// # Errors
/// [`ServeError`] when the socket cannot be bound.
pub async fn serve(
    config: &Config,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(),
) -> Result<(), ServeError> {
    let listener = bind(&config.server.socket, config.server.socket_mode).await?;
    let upstream = Upstream::new(&config.server.upstream);
    let channel = containerd_channel(&config.server.upstream)?;
    let namespace = config.server.containerd_namespace.clone();
    let records = ImageRecords::new(channel.clone(), namespace.clone());
    let tags = TagWriter::new(channel.clone(), namespace.clone());
    let admission = Admission {
        gate: Arc::clone(&gate),
        records: records.clone(),
        upstream: upstream.clone(),
        budget: config.server.decision_budget(),
        max_request_bytes: config
            .server
            .max_request_bytes
            .max(MAX_RUNTIME_REQUEST_BYTES),
        reads: Arc::new(tokio::sync::Semaphore::new(RUNTIME_READS)),
        pulls: PullThrough {
            images: cri_api::image_service_client::ImageServiceClient::new(channel.clone()),
            tags: tags.clone(),
        },
        checkpoints: Checkpoints::new(
            channel.clone(),
            namespace,
            config.server.checkpoint_read_bytes,
        ),
    };
    let sandbox = SandboxImage {
        configured: config.server.sandbox_image.clone(),
        runtime: cri_api::runtime_service_client::RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(run_pod_sandbox::MAX_STATUS_BYTES),
    };
    let image_status = config
        .server
        .enforce_image_status
        .then(|| ImageStatusService {
            gate: Arc::clone(&gate),
            upstream: upstream.clone(),
            records,
            budget: config.server.decision_budget(),
            max_request_bytes: config.server.max_request_bytes,
        });
    let prefetch = crate::prefetch::Prefetcher::new(
        &config.prefetch,
        gate.registry().clone(),
        &channel,
        &config.server.containerd_namespace,
        gate.metrics(),
        config.server.decision_budget(),
    );
    let pull = PullService {
        prefetch,
        gate,
        upstream: upstream.clone(),
        tags,
        budget: config.server.decision_budget(),
        max_request_bytes: config.server.max_request_bytes,
    };
    let shared = Arc::new(Shared {
        pull,
        image_status,
        admission,
        sandbox,
        upstream: upstream.clone(),
        refusals: Refusals::default(),
    });
    let limits = ConnectionLimits::from_config(&config.server);
    tracing::info!(socket = %config.server.socket.display(), upstream = %upstream.socket().display(),
        enforce_image_status = config.server.enforce_image_status,
        frame_relay = config.server.frame_relay,
        max_connections = config.server.max_connections,
        max_connections_per_uid = config.server.max_connections_per_uid,
        max_streams_per_connection = limits.max_streams,
        first_request_timeout_ms = config.server.first_request_timeout_ms,
        idle_timeout_ms = config.server.idle_timeout_ms,
        keepalive_interval_ms = config.server.keepalive_interval_ms,
        max_request_bytes = config.server.max_request_bytes, "serving CRI");
    on_ready();
    let acceptor = Acceptor::new("cri", config.server.max_connections);
    let shares = PeerShares::new(config.server.max_connections_per_uid);
    let mut over_share = OverShareLog::default();
    let accept = || async { listener.accept().await.map(|(s, _)| s) };
    accept_loop(acceptor, &shutdown, accept, |stream, slot| {
        // Dropping the stream and the slot closes the connection and frees the slot.
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                tracing::warn!(error = %e, "CRI connection without peer credentials closed");
                return None;
            }
        };
        let Some(share) = shares.take(uid) else {
            over_share.refused(uid, config.server.max_connections_per_uid);
            return None;
        };
        let token = shutdown.child_token();
        Some(
            serve_connection(stream, slot, share, Arc::clone(&shared), limits, token)
                .instrument(tracing::debug_span!("cri_connection", uid)),
        )
    })
    .await;
    let _ = std::fs::remove_file(&config.server.socket);
    Ok(())
}

/// What every connection's requests are served with.
#[derive(Debug)]
struct Shared {
    pull: PullService,
    /// `Some` under `[server] enforce_image_status`.
    image_status: Option<ImageStatusService>,
    /// The runtime doors' admission of images.
    admission: Admission,
    sandbox: SandboxImage,
    upstream: Upstream,
    refusals: Refusals,
}

/// How long a connection closed for being quiet may take to see its GOAWAY.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Per-connection limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    /// `[server] frame_relay`: relay frames, hold only what needs a decision.
    frame_relay: bool,
    /// Largest request body a held call may have (the largest any door reads, and a margin).
    max_held_body: usize,
    max_streams: u32,
    deadlines: CallDeadlines,
    keepalive: Option<(Duration, Duration)>,
}

impl ConnectionLimits {
    fn from_config(server: &pullgate_policy::config::ServerConfig) -> Self {
        let ms = Duration::from_millis;
        Self {
            frame_relay: server.frame_relay,
            max_held_body: server
                .max_request_bytes
                .max(MAX_RUNTIME_REQUEST_BYTES)
                .saturating_add(1024),
            max_streams: server.max_streams_per_connection.max(1),
            deadlines: CallDeadlines {
                first_request: ms(server.first_request_timeout_ms.max(1)),
                idle: (server.idle_timeout_ms > 0).then(|| ms(server.idle_timeout_ms)),
            },
            keepalive: (server.keepalive_interval_ms > 0).then(|| {
                (
                    ms(server.keepalive_interval_ms),
                    ms(server.keepalive_timeout_ms.max(1)),
                )
            }),
        }
    }
}

/// Connections closed because their uid held its share, logged at most once per [`LOG_INTERVAL`].
#[derive(Debug, Default)]
struct OverShareLog {
    last: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl OverShareLog {
    fn refused(&mut self, uid: u32, share: usize) {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|at| now.saturating_duration_since(at) < LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        self.last = Some(now);
        tracing::warn!(uid, max_connections_per_uid = share, unlogged = std::mem::take(&mut self.unlogged),
            "CRI connection closed: this uid already holds its share of [server] max_connections (logged at most once per 10 s)");
    }
}

/// A response body that keeps its call counted as in flight until it ends.
struct Counted {
    inner: ProxyBody,
    _call: CallGuard,
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = passthrough::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn serve_connection(
    stream: UnixStream,
    slot: ConnectionSlot,
    share: PeerShare,
    shared: Arc<Shared>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let _slot = slot;
    let _share = share;
    let metrics = shared.pull.gate.metrics_ref();
    if limits.frame_relay {
        match UnixStream::connect(shared.upstream.socket()).await {
            Ok(server) => {
                metrics.cri_connection("frame_relay");
                relayed::serve(stream, server, shared, limits, shutdown).await;
                return;
            }
            // Served call by call: each is answered `Unavailable` until containerd is back.
            Err(e) => {
                tracing::debug!(error = %e, "containerd unreachable: this connection is served call by call")
            }
        }
    }
    metrics.cri_connection("calls");
    let calls = Calls::new();
    let counting = Arc::clone(&calls);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let call = counting.enter();
        // Boxed: hyper spawns one task per call holding this future, and
        // `route`'s state (every door's) is large; spawning it by value
        // copied it twice per call (the largest single cost in pullgate's
        // instructions on a hot pull).
        Box::pin(async move {
            let resp = route(req.map(passthrough::call_body), &shared).await;
            Ok::<_, Infallible>(resp.map(|inner| ProxyBody::new(Counted { inner, _call: call })))
        })
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .max_concurrent_streams(limits.max_streams)
        .timer(TokioTimer::new());
    if let Some((interval, timeout)) = limits.keepalive {
        builder
            .keep_alive_interval(Some(interval))
            .keep_alive_timeout(timeout);
    }
    let conn = builder.serve_connection(
        TokioIo::new(AuthorityRewrite::new(stream, AuthorityLimits::default())),
        service,
    );
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        quiet = until_quiet(&calls, limits.deadlines) => {
            match quiet {
                Quiet::NoFirstRequest => tracing::debug!("no call within first_request_timeout_ms: closing"),
                Quiet::Idle => tracing::debug!("no call in flight for idle_timeout_ms: closing"),
            }
            // GOAWAY where the handshake was done; a peer that does not
            // read it is dropped after CLOSE_GRACE.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn route(req: Request<CallBody>, shared: &Shared) -> Response<ProxyBody> {
    match surface::route(req.uri()) {
        Route::Pull => return shared.pull.pull(req).await,
        Route::ImageStatus => {
            if let Some(image_status) = &shared.image_status {
                return image_status.serve(req).await;
            }
        }
        Route::CreateContainer => return create_container::serve(&shared.admission, req).await,
        Route::RunPodSandbox => {
            return run_pod_sandbox::serve(&shared.admission, &shared.sandbox, req).await
        }
        Route::Health => return health::answer(req).await,
        Route::Forward => {}
        Route::Refuse => {
            let method = surface::shown(req.uri().path());
            shared.refusals.log(&method);
            return status::response(status::unserved(&method));
        }
    }
    match passthrough::forward(&shared.upstream, req).await {
        Ok(resp) => resp,
        Err(e) => status::response(status::upstream(&e)),
    }
}

/// Binds the socket: removes a stale one, refuses a live one or a non-socket, sets the mode.
/// (Also binds the image verifier socket, `image_verifier::server`.)
pub(crate) async fn bind(path: &Path, mode: u32) -> Result<UnixListener, ServeError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let io = |source| ServeError::Io {
        path: path.to_owned(),
        source,
    };
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::SocketInUse(path.to_owned()));
            }
            tracing::info!(socket = %path.display(), "removing stale socket");
            tokio::fs::remove_file(path).await.map_err(io)?;
        }
        Ok(_) => return Err(ServeError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    // Bound under a temporary name, given its mode, then renamed into
    // place: the socket never appears at `path` with the umask's mode (a
    // client connecting between bind and chmod would otherwise see it).
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = path.with_file_name(format!(".{name}.{}.binding", std::process::id()));
    match tokio::fs::remove_file(&staging).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(&staging).map_err(io)?;
    let placed = async {
        tokio::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode)).await?;
        tokio::fs::rename(&staging, path).await
    };
    if let Err(e) = placed.await {
        let _ = tokio::fs::remove_file(&staging).await;
        return Err(io(e));
    }
    Ok(listener)
}

/// A lazily connected tonic channel to containerd's socket (native API).
pub(crate) fn containerd_channel(socket: &Path) -> Result<tonic::transport::Channel, ServeError> {
    let socket = socket.to_owned();
    let endpoint = tonic::transport::Endpoint::try_from("http://localhost")
        .map_err(|e| ServeError::Containerd(e.to_string()))?;
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        })),
    )
}
