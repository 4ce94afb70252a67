//! The CRI socket: pullgate's face to the kubelet.
//!
//! Input: HTTP/2 gRPC connections on a unix socket. `surface` decides what
//! is served: `PullImage` goes to `image` (the gate decides first);
//! `ImageStatus` too when `[server] enforce_image_status` is on (an image
//! without an allow verdict is reported absent); `grpc.health.v1.Health/Check`
//! is answered by `health`; the whole v1 RuntimeService and the v1
//! ImageService calls that only read or remove go through `passthrough` as
//! opaque frames to containerd; everything else (v1alpha2, containerd's own
//! services, unknown methods) is `Unimplemented`.
//!
//! Limits: at most `[server] max_connections` connections are served at
//! once (the rest wait in the listen backlog), each with at most
//! `max_streams_per_connection` concurrent calls; a failed `accept` backs
//! off (see `crate::listener`). `PullImage` and `ImageStatus` requests are
//! read up to `max_request_bytes`.
//!
//! Every connection passes through `authority` first, so clients that send
//! the socket path as `:authority` (kubelet and crictl before 1.31, gRPC
//! C-core) are served like those that send `localhost`.
//!
//! The socket is created with the configured mode (default 0660; bound
//! under a temporary name and renamed into place, so it is never visible
//! with another mode); a stale socket left by a previous run is removed, a
//! live one is an error.

pub(crate) mod admit;
pub(crate) mod authority;
pub(crate) mod create_container;
pub(crate) mod grpc;
pub(crate) mod health;
pub(crate) mod image;
pub(crate) mod image_records;
pub(crate) mod passthrough;
pub(crate) mod run_pod_sandbox;
pub(crate) mod status;
pub(crate) mod surface;
pub(crate) mod tag;

/// The rewrite step's entry point for `bench/`. A re-export rather than a
/// public `authority`: the step's own docs link its crate-private types.
pub use authority::measure as authority_measure;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pullgate_policy::config::Config;
use pullgate_proto::runtime::v1 as cri_api;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::gate::Gate;
use crate::listener::{Acceptor, ConnectionSlot};
use admit::{Admission, MAX_RUNTIME_REQUEST_BYTES, RUNTIME_READS};
use authority::{AuthorityLimits, AuthorityRewrite};
use image::PullService;
use image_records::ImageRecords;
use passthrough::{ProxyBody, Upstream};
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
    let tags = TagWriter::new(channel.clone(), namespace);
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
    };
    let sandbox = SandboxImage {
        configured: config.server.sandbox_image.clone(),
        runtime: cri_api::runtime_service_client::RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(run_pod_sandbox::MAX_STATUS_BYTES),
        images: cri_api::image_service_client::ImageServiceClient::new(channel),
        tags: tags.clone(),
    };
    let pull = PullService {
        gate,
        upstream: upstream.clone(),
        records,
        tags,
        budget: config.server.decision_budget(),
        enforce_image_status: config.server.enforce_image_status,
        max_request_bytes: config.server.max_request_bytes,
    };
    let shared = Arc::new(Shared {
        pull,
        admission,
        sandbox,
        upstream: upstream.clone(),
        refusals: Refusals::default(),
    });
    let max_streams = config.server.max_streams_per_connection;
    tracing::info!(socket = %config.server.socket.display(), upstream = %upstream.socket().display(),
        enforce_image_status = config.server.enforce_image_status,
        max_connections = config.server.max_connections, max_streams_per_connection = max_streams,
        max_request_bytes = config.server.max_request_bytes, "serving CRI");
    on_ready();
    let mut acceptor = Acceptor::new("cri", config.server.max_connections);
    let mut connections = JoinSet::new();
    loop {
        let (stream, slot) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = acceptor.next(|| async { listener.accept().await.map(|(s, _)| s) }) => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let token = shutdown.child_token();
        connections.spawn(
            serve_connection(stream, slot, Arc::clone(&shared), max_streams, token)
                .instrument(tracing::debug_span!("cri_connection")),
        );
    }
    while connections.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&config.server.socket);
    Ok(())
}

/// What every connection's requests are served with.
#[derive(Debug)]
struct Shared {
    pull: PullService,
    /// The runtime doors' admission of images.
    admission: Admission,
    sandbox: SandboxImage,
    upstream: Upstream,
    refusals: Refusals,
}

async fn serve_connection(
    stream: UnixStream,
    slot: ConnectionSlot,
    shared: Arc<Shared>,
    max_streams: u32,
    shutdown: CancellationToken,
) {
    let _slot = slot;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(route(req, &shared).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(max_streams.max(1))
        .serve_connection(
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
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn route(req: Request<Incoming>, shared: &Shared) -> Response<ProxyBody> {
    match surface::route(req.uri()) {
        Route::Pull => return shared.pull.pull(req).await,
        Route::ImageStatus if shared.pull.enforce_image_status => {
            return shared.pull.image_status(req).await
        }
        Route::CreateContainer => return create_container::serve(&shared.admission, req).await,
        Route::RunPodSandbox => {
            return run_pod_sandbox::serve(&shared.admission, &shared.sandbox, req).await
        }
        Route::Health => return health::answer(req).await,
        Route::ImageStatus | Route::Forward => {}
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
fn containerd_channel(socket: &Path) -> Result<tonic::transport::Channel, ServeError> {
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
