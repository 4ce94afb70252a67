//! Opaque gRPC passthrough to containerd.
//!
//! Input: any HTTP/2 request pullgate does not inspect. Output: containerd's
//! response, frames untouched. The request and response bodies stream
//! through as they are — never decoded, never re-encoded — so RPCs and
//! fields newer than pullgate's proto pass intact.
//!
//! One HTTP/2 client connection to containerd's socket is shared by every
//! request and re-established when it closes.

use pullgate_authority::relay::Keep;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Error type of bodies pullgate sends.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every request and response pullgate sends.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// Body of a request a door reads: hyper's, or a held request's from the frame relay.
pub(crate) type CallBody = ProxyBody;

/// hyper's request body as a door reads it.
pub(crate) fn call_body(body: Incoming) -> CallBody {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}

/// A whole body (a held call's) as a door reads it.
pub(crate) fn whole_body(bytes: Bytes) -> CallBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| -> BoxError { match never {} })
        .boxed()
}

/// Boxes any body into a [`ProxyBody`].
pub(crate) fn boxed<B>(body: B) -> ProxyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// containerd could not be reached or the connection failed mid-request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// Connecting to the socket failed.
    #[error("cannot connect to containerd at {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP/2 handshake or the request failed.
    #[error("containerd at {} failed the request: {source}", path.display())]
    Http {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: hyper::Error,
    },
    /// The request could not be rebuilt for the upstream (bad path).
    #[error("request path cannot be forwarded: {0}")]
    Uri(#[from] http::Error),
}

struct Connection {
    sender: SendRequest<ProxyBody>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The shared HTTP/2 connection to containerd's socket.
#[derive(Clone)]
pub(crate) struct Upstream {
    socket: Arc<PathBuf>,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An upstream on `socket`; connects on first use.
    pub(crate) fn new(socket: &Path) -> Self {
        Self {
            socket: Arc::new(socket.to_owned()),
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// The socket path.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    async fn sender(&self) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.sender.is_closed() {
                return Ok(c.sender.clone());
            }
        }
        let path = self.socket.as_ref().clone();
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|source| UpstreamError::Connect {
                path: path.clone(),
                source,
            })?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(8 << 20)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Http {
                path: path.clone(),
                source,
            })?;
        let driver = tokio::spawn(
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "containerd connection closed");
                }
            }
            .instrument(tracing::debug_span!("upstream_connection", socket = %path.display())),
        );
        *guard = Some(Connection {
            sender: sender.clone(),
            driver,
        });
        Ok(sender)
    }

    /// Sends `req` to containerd as it is, with only the URI made absolute.
    ///
    /// # Errors
    /// [`UpstreamError`] when containerd cannot be reached or the exchange fails.
    pub(crate) async fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = Uri::builder()
            .scheme("http")
            .authority("localhost")
            .path_and_query(path)
            .build()?;
        let mut sender = self.sender().await?;
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(|source| UpstreamError::Http {
                path: self.socket.as_ref().clone(),
                source,
            })
    }
}

/// Marks a call that came over the frame relay (`[server] frame_relay`):
/// a door that forwards it as it is hands the body back to the relay,
/// which sends it on the client's own containerd connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverRelay;

/// A door's answer to a call [`OverRelay`]: send the call on with this
/// body, holding the second (if any) until containerd's answer ends.
#[derive(Debug, Clone)]
pub(crate) struct ForwardOnRelay(pub(crate) Bytes, pub(crate) Option<Keep>);

/// Sends a door's request (`parts`, with `body`) to containerd, or, for a
/// call [`OverRelay`], hands it back to the relay: `Ok(None)`.
///
/// # Errors
/// [`UpstreamError`] when containerd cannot be reached.
pub(crate) async fn send_on(
    upstream: &Upstream,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<Option<Response<ProxyBody>>, UpstreamError> {
    if parts.extensions.get::<OverRelay>().is_some() {
        return Ok(None);
    }
    let req = Request::from_parts(parts, whole_body(body));
    Ok(Some(upstream.send(req).await?.map(boxed)))
}

/// The answer that hands `body` back to the relay (see [`send_on`]), and
/// `keep` to hold until containerd answered it.
pub(crate) fn handed_back(body: Bytes, keep: Option<Keep>) -> Response<ProxyBody> {
    let mut resp = Response::new(whole_body(Bytes::new()));
    resp.extensions_mut().insert(ForwardOnRelay(body, keep));
    resp
}

/// Forwards a request pullgate does not inspect.
///
/// # Errors
/// [`UpstreamError`] when containerd cannot be reached.
pub(crate) async fn forward(
    upstream: &Upstream,
    req: Request<CallBody>,
) -> Result<Response<ProxyBody>, UpstreamError> {
    let resp = upstream.send(req).await?;
    Ok(resp.map(boxed))
}
