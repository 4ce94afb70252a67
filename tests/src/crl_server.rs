//! A tiny plain-HTTP/1.1 server on a free loopback port that serves one body
//! at one path and counts the requests for it: a CRL distribution point (or
//! any other fixed download) for revocation tests.
//!
//! Every response closes its connection; a request for any other path gets
//! `404`. The body can be swapped while the server runs
//! ([`CrlServer::set_body`]). Drop stops the server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest request head read (the server answers `431` past it).
const MAX_HEAD: usize = 16 * 1024;

/// Media type of a DER CRL (RFC 5280 §4.2.1.13 names `application/pkix-crl`).
pub const PKIX_CRL: &str = "application/pkix-crl";

#[derive(Debug)]
struct Shared {
    path: String,
    body: Mutex<Vec<u8>>,
    hits: AtomicUsize,
}

/// The running server; drop stops it.
#[derive(Debug)]
pub struct CrlServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl CrlServer {
    /// Serves `body` at `path` (e.g. `/root.crl`) on `127.0.0.1:0`.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(path: &str, body: Vec<u8>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            body: Mutex::new(body),
            hits: AtomicUsize::new(0),
        });
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    // A client that goes away mid-request is not the test's concern.
                    let _ = serve(stream, &state).await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.path)
    }

    /// How many requests for the served path arrived so far.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Replaces the body served from now on.
    pub fn set_body(&self, body: Vec<u8>) {
        match self.shared.body.lock() {
            Ok(mut b) => *b = body,
            Err(poisoned) => *poisoned.into_inner() = body,
        }
    }
}

impl Drop for CrlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `http://127.0.0.1:<port><path>` URL on which nothing listens: a port
/// bound and released at once.
///
/// # Errors
/// No port can be bound.
pub async fn closed_url(path: &str) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}{path}"))
}

/// Reads one request head and answers it.
async fn serve(mut stream: TcpStream, state: &Shared) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            )
            .await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default();
    let target = request_line.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    if path != state.path {
        return respond(&mut stream, "404 Not Found", "text/plain", b"not found\n").await;
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    let body = match state.body.lock() {
        Ok(b) => b.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let body: &[u8] = if method == "HEAD" { b"" } else { &body };
    respond(&mut stream, "200 OK", PKIX_CRL, body).await
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: &str, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_the_body_at_its_path_and_counts() {
        let server = CrlServer::start("/root.crl", b"one".to_vec())
            .await
            .unwrap();
        let url = server.url();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/root.crl")
            .to_owned();
        let resp = get(&addr, "/root.crl").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\none"), "{resp}");
        assert_eq!(server.hits(), 1);
        server.set_body(b"two".to_vec());
        assert!(get(&addr, "/root.crl").await.ends_with("two"));
        assert!(get(&addr, "/other").await.starts_with("HTTP/1.1 404"));
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test]
    async fn closed_url_refuses_connections() {
        let url = closed_url("/x.crl").await.unwrap();
        let addr = url.trim_start_matches("http://").trim_end_matches("/x.crl");
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
