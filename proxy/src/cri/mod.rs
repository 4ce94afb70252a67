//! The CRI socket: pullgate's face to the kubelet.
//!
//! Input: HTTP/2 gRPC connections on a unix socket. `PullImage` goes to
//! `image` (the gate decides first); `ImageStatus` too when
//! `[server] enforce_image_status` is on (an image without an allow verdict
//! is reported absent); `grpc.health.v1.Health/Check` is answered by
//! `health`; every other RPC — the whole RuntimeService and the other
//! ImageService calls — goes through `passthrough` as opaque frames to
//! containerd.
//!
//! Every connection passes through `authority` first, so clients that send
//! the socket path as `:authority` (kubelet and crictl before 1.31, gRPC
//! C-core) are served like those that send `localhost`.
//!
//! The socket is created with the configured mode (default 0660); a stale
//! socket left by a previous run is removed, a live one is an error.

pub(crate) mod authority;
pub(crate) mod health;
pub(crate) mod image;
pub(crate) mod passthrough;
pub(crate) mod status;

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
use pullgate_proto::containerd::services::images::v1::images_client::ImagesClient;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::gate::Gate;
use authority::{AuthorityLimits, AuthorityRewrite};
use image::PullService;
use passthrough::{ProxyBody, Upstream};

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
    let images = ImagesClient::new(containerd_channel(&config.server.upstream)?);
    let pull = PullService {
        gate,
        upstream: upstream.clone(),
        images,
        namespace: config.server.containerd_namespace.clone(),
        budget: config.server.decision_budget(),
        enforce_image_status: config.server.enforce_image_status,
    };
    tracing::info!(socket = %config.server.socket.display(), upstream = %upstream.socket().display(),
        enforce_image_status = config.server.enforce_image_status, "serving CRI");
    on_ready();
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let pull = pull.clone();
        let upstream = upstream.clone();
        let token = shutdown.child_token();
        connections.spawn(
            serve_connection(stream, pull, upstream, token)
                .instrument(tracing::debug_span!("cri_connection")),
        );
    }
    while connections.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&config.server.socket);
    Ok(())
}

async fn serve_connection(
    stream: UnixStream,
    pull: PullService,
    upstream: Upstream,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let pull = pull.clone();
        let upstream = upstream.clone();
        async move { Ok::<_, Infallible>(route(req, &pull, &upstream).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
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

async fn route(
    req: Request<Incoming>,
    pull: &PullService,
    upstream: &Upstream,
) -> Response<ProxyBody> {
    match req.uri().path() {
        image::PULL_IMAGE_PATH => return pull.pull(req).await,
        image::IMAGE_STATUS_PATH if pull.enforce_image_status => {
            return pull.image_status(req).await
        }
        health::CHECK_PATH | health::WATCH_PATH => return health::answer(req).await,
        _ => {}
    }
    match passthrough::forward(upstream, req).await {
        Ok(resp) => resp,
        Err(e) => status::response(status::upstream(&e)),
    }
}

/// Binds the socket: removes a stale one, refuses a live one or a non-socket, sets the mode.
async fn bind(path: &Path, mode: u32) -> Result<UnixListener, ServeError> {
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
    let listener = UnixListener::bind(path).map_err(io)?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(io)?;
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
