//! The daemon's side of the local service: `pullgate serve` answers the verifier.
//!
//! Input: gRPC `pullgate.verifier.v1.ImageVerifier/Verify` calls on a unix
//! socket. Output: the gate's decision on the call, through
//! [`super::decide`] (so the verdict cache, single flight, revocation cache
//! and audit log of the CRI proxy serve these calls too), as a
//! `VerifyResponse`. A call that breaks the contract is answered with a
//! denial, not a gRPC error: it is an answer.
//!
//! Access: the socket is created with mode 0600 (bound under a temporary
//! name and renamed into place, as the CRI socket is), and every accepted
//! connection's peer is checked with `SO_PEERCRED`: only root and
//! pullgate's own user are served; anyone else is disconnected before a
//! byte is read.
//!
//! Limits: at most `[image_verifier] max_connections` connections at once
//! (further ones wait in the listen backlog), [`MAX_STREAMS`] calls on each,
//! a request of at most [`MAX_REQUEST_BYTES`], a connection idle for
//! [`IDLE_TIMEOUT`] is closed. Each call's deadline is the shorter of its
//! `grpc-timeout` and `[image_verifier] budget_ms`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pb::image_verifier_server::{ImageVerifier, ImageVerifierServer};
use pullgate_policy::config::ImageVerifierConfig;
use pullgate_proto::pullgate::verifier::v1 as pb;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::Instrument;

use super::contract::{self, MAX_STDIN_BYTES};
use super::{trusted_uid, Judgement};
use crate::cri::ServeError;
use crate::deadline::Deadline;
use crate::gate::Gate;
use crate::listener::{accept_loop, until_idle, Acceptor, ConnectionSlot, Watched};

/// Mode of the verifier socket: root (pullgate's user) only.
pub(crate) const SOCKET_MODE: u32 = 0o600;

/// Largest request message: the stdin cap plus room for the name and digest.
pub(crate) const MAX_REQUEST_BYTES: usize = MAX_STDIN_BYTES + (4 << 10);

/// Concurrent calls on one connection (a verifier makes one).
pub(crate) const MAX_STREAMS: u32 = 4;

/// A connection on which nothing moved for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The `grpc-timeout` of a call, carried from the HTTP request to the handler.
#[derive(Debug, Clone, Copy)]
struct CallTimeout(Duration);

/// Answers `Verify` through the gate.
#[derive(Debug)]
struct Handler {
    gate: Arc<Gate>,
    budget: Duration,
}

#[tonic::async_trait]
impl ImageVerifier for Handler {
    async fn verify(
        &self,
        request: tonic::Request<pb::VerifyRequest>,
    ) -> Result<tonic::Response<pb::VerifyResponse>, tonic::Status> {
        let budget = request
            .extensions()
            .get::<CallTimeout>()
            .map_or(self.budget, |t| t.0.min(self.budget));
        let deadline = Deadline::after(budget);
        let req = request.into_inner();
        let judgement = if req.stdin.len() > MAX_STDIN_BYTES {
            Judgement::refused(
                &req.name,
                &req.digest,
                &contract::ContractError::StdinTooLarge,
            )
        } else {
            match contract::check(&req.name, &req.digest, &req.stdin_media_type, &req.stdin) {
                Ok(checked) => super::decide(&self.gate, checked, deadline).await,
                Err(e) => Judgement::refused(&req.name, &req.digest, &e),
            }
        };
        Ok(tonic::Response::new(judgement.to_response()))
    }
}

/// Binds the verifier socket at `path` with [`SOCKET_MODE`] (a stale socket is replaced, a live one refused).
///
/// # Errors
/// [`ServeError`] when the socket cannot be bound.
pub(crate) async fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    crate::cri::bind(path, SOCKET_MODE).await
}

/// Serves `listener` (bound at `path` by [`bind`]) until `shutdown` is
/// cancelled, then drains connections and removes the socket.
pub(crate) async fn serve(
    listener: UnixListener,
    path: &Path,
    config: &ImageVerifierConfig,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
) {
    let service = ImageVerifierServer::new(Handler {
        gate,
        budget: config.budget(),
    })
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    tracing::info!(socket = %path.display(), budget_ms = config.budget_ms,
        max_connections = config.max_connections, "serving the image verifier");
    let acceptor = Acceptor::new("image_verifier", config.max_connections);
    let accept = || async { listener.accept().await.map(|(s, _)| s) };
    accept_loop(acceptor, &shutdown, accept, |stream, slot| {
        match stream.peer_cred() {
            Ok(cred) if trusted_uid(cred.uid()) => {}
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), pid = ?cred.pid(),
                    "image verifier socket: refused a connection from a user that is neither root nor pullgate's");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "image verifier socket: cannot read a peer's credentials; refused");
                return None;
            }
        }
        Some(
            serve_connection(stream, slot, service.clone(), shutdown.child_token())
                .instrument(tracing::debug_span!("image_verifier_connection")),
        )
    })
    .await;
    let _ = std::fs::remove_file(path);
}

async fn serve_connection(
    stream: UnixStream,
    slot: ConnectionSlot,
    service: ImageVerifierServer<Handler>,
    shutdown: CancellationToken,
) {
    let _slot = slot;
    let (stream, activity) = Watched::new(stream);
    let hyper_service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Some(t) = crate::cri::grpc::grpc_timeout(req.headers()) {
            req.extensions_mut().insert(CallTimeout(t));
        }
        let service = service.clone();
        async move { Ok::<_, Infallible>(service.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(MAX_STREAMS)
        .serve_connection(TokioIo::new(stream), hyper_service);
    tokio::pin!(conn);
    tokio::select! {
        res = until_idle(conn.as_mut(), &activity, IDLE_TIMEOUT) => {
            if let Some(Err(e)) = res {
                tracing::debug!(error = %e, "image verifier connection ended");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
