//! The CRI socket over the frame relay (`[server] frame_relay`).
//!
//! Input: an accepted CRI connection and a connection of its own to
//! containerd. Output: the first relayed to the second by
//! [`pullgate_authority::relay`]: a call `surface` forwards opaquely goes
//! through as frames; every other call (`PullImage`, `CreateContainer`,
//! `RunPodSandbox`, `ImageStatus` when enforced, health, refusals) is held
//! and answered by the same doors as on the call-by-call server
//! ([`super::route`]), whose response the relay sends back. The
//! connection's limits are the same: streams (`max_streams_per_connection`),
//! the first-request and idle deadlines, keepalive PINGs, and a drain at
//! shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use pullgate_authority::relay::{
    field, relay, Answer, Call, Disposition, Doorman, Field, RelayLimits, Reply,
};
use pullgate_authority::AuthorityLimits;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::health;
use super::passthrough::{whole_body, CallBody, ForwardOnRelay, OverRelay, ProxyBody};
use super::surface::{self, Route};
use super::{ConnectionLimits, Shared, CLOSE_GRACE};
use crate::listener::{until_quiet, CallGuard, Calls, Quiet};

/// Largest response body a door's answer may have when the relay sends it
/// (containerd's own largest message, 16 MiB, and a margin).
const MAX_REPLY_BYTES: usize = 17 << 20;

/// gRPC status codes the relay answers with itself.
const INVALID_ARGUMENT: u32 = 3;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNAVAILABLE: u32 = 14;

/// Serves one CRI connection through the relay until it ends.
pub(super) async fn serve(
    client: UnixStream,
    server: UnixStream,
    shared: Arc<Shared>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let calls = Calls::new();
    let doorman = Arc::new(CriDoorman {
        shared,
        calls: Arc::clone(&calls),
    });
    let drain = CancellationToken::new();
    let relay_limits = RelayLimits {
        authority: AuthorityLimits::default(),
        max_streams: limits.max_streams,
        max_held_body: limits.max_held_body,
        keepalive: limits.keepalive,
    };
    let relayed = relay(
        client,
        server,
        doorman,
        relay_limits,
        drain.clone().cancelled_owned(),
    );
    tokio::pin!(relayed);
    let ended = tokio::select! {
        res = relayed.as_mut() => res,
        quiet = until_quiet(&calls, limits.deadlines) => {
            match quiet {
                Quiet::NoFirstRequest => tracing::debug!("no call within first_request_timeout_ms: closing"),
                Quiet::Idle => tracing::debug!("no call in flight for idle_timeout_ms: closing"),
            }
            drain.cancel();
            tokio::time::timeout(CLOSE_GRACE, relayed).await.unwrap_or(Ok(()))
        }
        () = shutdown.cancelled() => {
            drain.cancel();
            relayed.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "relayed connection ended");
    }
}

/// Holds what a door decides on; answers it with the door's response.
struct CriDoorman {
    shared: Arc<Shared>,
    calls: Arc<Calls>,
}

impl Doorman for CriDoorman {
    type Guard = CallGuard;

    fn classify(&self, fields: &[Field]) -> Disposition {
        let path = field(fields, b":path").map(std::str::from_utf8);
        match path {
            Some(Ok(p)) if !p.contains('?') => {
                // Each door's own request cap: a body over it reaches the
                // door only that far, and the door refuses it.
                let shared = &self.shared;
                let max_body = match surface::route_path(p) {
                    Route::Forward => return Disposition::Relay,
                    Route::ImageStatus => match &shared.image_status {
                        None => return Disposition::Relay,
                        Some(door) => door.max_request_bytes,
                    },
                    Route::Pull => shared.pull.max_request_bytes,
                    Route::CreateContainer | Route::RunPodSandbox => {
                        shared.admission.max_request_bytes
                    }
                    Route::Health => health::MAX_REQUEST_BYTES,
                    Route::Refuse => 0,
                };
                Disposition::Hold { max_body }
            }
            // Malformed: the doors' router refuses it.
            _ => Disposition::Hold { max_body: 0 },
        }
    }

    fn enter(&self) -> CallGuard {
        self.calls.enter()
    }

    fn answer(&self, call: Call) -> Pin<Box<dyn Future<Output = Answer> + Send + 'static>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(
            async move {
                let mut req = match request(call) {
                    Ok(req) => req,
                    Err(e) => {
                        let message = format!("malformed request: {e}");
                        return Answer::Reply(Reply::grpc_error(INVALID_ARGUMENT, &message));
                    }
                };
                req.extensions_mut().insert(OverRelay);
                let resp = super::route(req, &shared).await;
                if let Some(ForwardOnRelay(body, keep)) = resp.extensions().get::<ForwardOnRelay>()
                {
                    return Answer::Forward {
                        body: body.clone(),
                        keep: keep.clone(),
                    };
                }
                Answer::Reply(reply(resp).await)
            }
            // The connection's span (its peer uid) follows the call into its task.
            .in_current_span(),
        )
    }
}

/// The held call as the doors take a request.
fn request(call: Call) -> Result<Request<CallBody>, http::Error> {
    let mut builder = Request::builder().version(Version::HTTP_2);
    let (mut scheme, mut authority, mut path): (&[u8], &[u8], &[u8]) =
        (b"http", b"localhost", b"/");
    for (name, value) in &call.fields {
        match name.as_slice() {
            b":method" => builder = builder.method(value.as_slice()),
            b":scheme" => scheme = value,
            b":authority" => authority = value,
            b":path" => path = value,
            // h2 refuses other pseudo-headers; so do the doors' routes, by path.
            n if n.starts_with(b":") => {}
            n => builder = builder.header(n, value.as_slice()),
        }
    }
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()?;
    builder.uri(uri).body(whole_body(call.body))
}

/// A door's response, read whole, for the relay to send.
async fn reply(resp: Response<ProxyBody>) -> Reply {
    let (parts, mut body) = resp.into_parts();
    let mut head: Vec<Field> = Vec::with_capacity(parts.headers.len() + 1);
    head.push((
        b":status".to_vec(),
        parts.status.as_str().as_bytes().to_vec(),
    ));
    for (name, value) in &parts.headers {
        head.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    let mut data = BytesMut::new();
    let mut trailers = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                let message = format!("containerd failed the call: {e}");
                return Reply::grpc_error(UNAVAILABLE, &message);
            }
        };
        match frame.into_data() {
            Ok(chunk) => {
                data.extend_from_slice(&chunk);
                if data.len() > MAX_REPLY_BYTES {
                    let message = format!("response larger than {MAX_REPLY_BYTES} bytes");
                    return Reply::grpc_error(RESOURCE_EXHAUSTED, &message);
                }
            }
            Err(frame) => {
                if let Ok(map) = frame.into_trailers() {
                    for (name, value) in &map {
                        trailers
                            .push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
                    }
                }
            }
        }
    }
    Reply {
        head,
        body: data.freeze(),
        trailers,
    }
}
