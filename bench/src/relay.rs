//! A bare HTTP/2 hop: the floor under pullgate's hot path.
//!
//! `pullgate-bench relay --listen A --upstream B` serves HTTP/2 on unix
//! socket `A` and sends every request to `B` over one shared HTTP/2
//! connection, bodies streamed as they come, nothing decoded: what any
//! gRPC proxy on the node must do, built the way pullgate's passthrough is
//! (hyper server and client, a multi-thread tokio runtime, its own
//! process). The bench pulls through it (`hop-present-digest`) so that
//! `hot-digest-present − hop-present-digest` is pullgate's own share of a
//! hot pull, and `hop-present-digest − direct-present-digest` the hop's.
//! Written here because it measures, it does not serve: no limits, no
//! shutdown beyond the process being killed.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

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

/// The relay as a child process of the bench; killed when dropped.
#[derive(Debug)]
pub(crate) struct BareHop {
    child: Child,
    socket: PathBuf,
}

impl BareHop {
    /// Starts `<this binary> relay` on `socket` in front of `upstream` and
    /// waits until it accepts connections.
    ///
    /// # Errors
    /// The process does not start, or does not listen within 10 s.
    pub(crate) async fn start(socket: &Path, upstream: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let child = Command::new(exe)
            .arg("relay")
            .arg("--listen")
            .arg(socket)
            .arg("--upstream")
            .arg(upstream)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the relay")?;
        let started = Instant::now();
        while UnixStream::connect(socket).await.is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the relay did not listen on {} within 10 s",
                socket.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child,
            socket: socket.to_owned(),
        })
    }

    /// The socket it serves.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
