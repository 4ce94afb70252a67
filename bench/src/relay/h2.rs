//! A bare HTTP/2 hop: what any gRPC proxy that decodes frames must do.
//!
//! `pullgate-bench h2-relay --listen A --upstream B` serves HTTP/2 on unix
//! socket `A` and sends every request to `B` over one shared HTTP/2
//! connection, bodies streamed as they come, no message decoded: what any
//! gRPC proxy on the node must do, built the way pullgate's passthrough is
//! (hyper server and client, a multi-thread tokio runtime, its own
//! process). The bench pulls through it (`hop-present-digest`) so that
//! `hop-present-digest − direct-present-digest` is what decoding and
//! re-encoding HTTP/2 on two connections costs; the floor under any proxy
//! is the byte relay (`relay/bytes.rs`), which decodes nothing.
//! Written here because it measures, it does not serve: no limits, no
//! shutdown beyond the process being killed.

use std::convert::Infallible;
use std::path::Path;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{UnixListener, UnixStream};

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves `listen` until killed, relaying to `upstream`.
///
/// # Errors
/// The socket cannot be bound or containerd's cannot be reached.
pub(crate) fn serve(listen: &Path, upstream: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        let stream = UnixStream::connect(upstream)
            .await
            .with_context(|| format!("connecting to {}", upstream.display()))?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Body>(TokioIo::new(stream))
            .await
            .context("HTTP/2 handshake with the upstream")?;
        tokio::spawn(connection);
        let _ = std::fs::remove_file(listen);
        let listener =
            UnixListener::bind(listen).with_context(|| format!("binding {}", listen.display()))?;
        loop {
            let (stream, _) = listener.accept().await?;
            let sender = sender.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sender = sender.clone();
                    async move { Ok::<_, Infallible>(relay(sender, req).await) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// One request, relayed; a failed exchange is answered `502`.
async fn relay(mut sender: SendRequest<Body>, req: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority("localhost")
        .path_and_query(path)
        .build()
    else {
        return bad_gateway();
    };
    parts.uri = uri;
    match sender
        .send_request(Request::from_parts(parts, body.boxed()))
        .await
    {
        Ok(resp) => resp.map(BodyExt::boxed),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}
