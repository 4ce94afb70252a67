//! A deliberately tiny HTTP/2 client that sends one unary gRPC call with an
//! arbitrary `:authority`, to imitate clients hyper and tonic cannot:
//! gRPC C-core (Python, C++) sends a percent-encoded socket path
//! (`%2Frun%2Fcontainerd%2Fcontainerd.sock`) and kubelet/crictl before 1.31
//! send the raw path (`/run/containerd/containerd.sock`). `http::Uri` rejects
//! both as authorities, so tonic cannot send them.
//!
//! It writes frames by hand (RFC 9113) with HPACK literals that are never
//! indexed or Huffman-coded (RFC 7541 §6.2.2), so the server's dynamic table
//! is never touched. It does not decode the response headers (that would need
//! a full HPACK decoder); it reports what a compatibility test needs: the
//! response message bytes, whether the stream ended, and any `RST_STREAM` or
//! `GOAWAY` error code.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const STREAM: u32 = 1;
/// Largest frame payload accepted from the server (the HTTP/2 default).
const MAX_FRAME: usize = 16_384;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 error code `PROTOCOL_ERROR`.
pub const PROTOCOL_ERROR: u32 = 0x1;

/// What came back for the one stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawOutcome {
    /// `HEADERS` frames received on the stream (response headers, trailers).
    pub header_frames: usize,
    /// `DATA` frames received on the stream (empty ones included).
    pub data_frames: usize,
    /// The gRPC message payloads (5-byte gRPC prefix removed), concatenated.
    pub message: Vec<u8>,
    /// The stream ended normally (`END_STREAM`).
    pub ended: bool,
    /// Error code of a `RST_STREAM` on the stream.
    pub rst_stream: Option<u32>,
    /// Error code of a `GOAWAY`.
    pub goaway: Option<u32>,
}

impl RawOutcome {
    /// The server answered the call (a message and a normal end, no reset).
    pub fn answered(&self) -> bool {
        self.ended && self.rst_stream.is_none() && !self.message.is_empty()
    }

    /// The answer was gRPC's Trailers-Only form: one `HEADERS` frame that
    /// ended the stream, no `DATA`.
    pub fn trailers_only(&self) -> bool {
        self.ended && self.header_frames == 1 && self.data_frames == 0 && self.rst_stream.is_none()
    }
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first` holds the
/// bits above the prefix.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// "Literal Header Field Never Indexed — New Name" (RFC 7541 §6.2.3), no Huffman.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x10);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends one unary gRPC call `path` (e.g. `/runtime.v1.RuntimeService/Version`)
/// carrying the encoded protobuf `message`, with `:authority` set to the
/// bytes given, over the unix socket `socket`.
///
/// # Errors
/// The socket cannot be reached, the server sends a malformed frame, or the
/// call takes longer than 10 s.
pub async fn unary(
    socket: &Path,
    authority: &[u8],
    path: &str,
    message: &[u8],
) -> Result<RawOutcome> {
    tokio::time::timeout(CALL_TIMEOUT, unary_inner(socket, authority, path, message))
        .await
        .context("raw HTTP/2 call timed out")?
}

/// As [`unary`], with exactly the request header `fields` given, in order
/// (two `:path`s, say).
///
/// # Errors
/// As [`unary`].
pub async fn unary_with_fields(
    socket: &Path,
    fields: &[(&[u8], &[u8])],
    message: &[u8],
) -> Result<RawOutcome> {
    tokio::time::timeout(CALL_TIMEOUT, send_fields(socket, fields, message))
        .await
        .context("raw HTTP/2 call timed out")?
}

async fn unary_inner(
    socket: &Path,
    authority: &[u8],
    path: &str,
    message: &[u8],
) -> Result<RawOutcome> {
    let fields: [(&[u8], &[u8]); 6] = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.as_bytes()),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ];
    send_fields(socket, &fields, message).await
}

async fn send_fields(
    socket: &Path,
    fields: &[(&[u8], &[u8])],
    message: &[u8],
) -> Result<RawOutcome> {
    let mut conn = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;

    let mut block = Vec::new();
    for (name, value) in fields {
        hpack_literal(&mut block, name, value);
    }
    let mut body = Vec::with_capacity(5 + message.len());
    body.push(0);
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);

    let mut out = PREFACE.to_vec();
    out.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    out.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, STREAM, &block));
    out.extend(frame(FRAME_DATA, FLAG_END_STREAM, STREAM, &body));
    conn.write_all(&out).await?;

    let mut outcome = RawOutcome::default();
    let mut data = Vec::new();
    loop {
        let mut head = [0u8; 9];
        match conn.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        if len > MAX_FRAME {
            bail!("server sent a {len}-byte frame");
        }
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).await?;
        match kind {
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                conn.write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
                    .await?;
            }
            FRAME_PING if flags & FLAG_ACK == 0 => {
                conn.write_all(&frame(FRAME_PING, FLAG_ACK, 0, &payload))
                    .await?;
            }
            FRAME_GOAWAY => {
                if payload.len() >= 8 {
                    outcome.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
                break;
            }
            FRAME_RST_STREAM if stream == STREAM => {
                if payload.len() >= 4 {
                    outcome.rst_stream = Some(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                }
                break;
            }
            FRAME_HEADERS if stream == STREAM => {
                outcome.header_frames += 1;
                if flags & FLAG_END_STREAM != 0 {
                    outcome.ended = true;
                    break;
                }
            }
            FRAME_DATA if stream == STREAM => {
                outcome.data_frames += 1;
                data.extend_from_slice(&payload);
                if flags & FLAG_END_STREAM != 0 {
                    outcome.ended = true;
                    break;
                }
            }
            _ => {}
        }
    }
    // De-frame gRPC messages: 1 byte compressed flag, 4 bytes length, message.
    let mut rest = data.as_slice();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let end = (5 + len).min(rest.len());
        outcome.message.extend_from_slice(&rest[5..end]);
        rest = &rest[end..];
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_follow_rfc7541_c1() {
        // RFC 7541 C.1.1: 10 with a 5-bit prefix is 0x0a.
        let mut v = Vec::new();
        hpack_int(&mut v, 0, 5, 10);
        assert_eq!(v, [0x0a]);
        // C.1.2: 1337 with a 5-bit prefix is 1f 9a 0a.
        let mut v = Vec::new();
        hpack_int(&mut v, 0, 5, 1337);
        assert_eq!(v, [0x1f, 0x9a, 0x0a]);
    }

    /// A plain hyper HTTP/2 server answering every request with one gRPC
    /// message `b"ok"`; returns its socket.
    async fn hyper_server(dir: &Path) -> std::path::PathBuf {
        use bytes::Bytes;
        use http_body_util::Full;
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let socket = dir.join("h2.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = service_fn(|_req| async {
                        let body = Bytes::from_static(b"\0\0\0\0\x02ok");
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        socket
    }

    /// The DESIGN fact this client exists for: h2 (under hyper) refuses a
    /// percent-encoded or path `:authority` with RST_STREAM(PROTOCOL_ERROR),
    /// and answers `localhost`.
    #[tokio::test]
    async fn plain_hyper_refuses_the_authorities_older_clients_send() {
        let dir = tempfile::tempdir().unwrap();
        let socket = hyper_server(dir.path()).await;
        let ok = unary(&socket, b"localhost", "/x.Y/Z", b"").await.unwrap();
        assert!(ok.answered(), "{ok:?}");
        assert_eq!(ok.message, b"ok");
        for authority in [
            &b"%2Frun%2Fcontainerd%2Fcontainerd.sock"[..],
            b"/run/containerd/containerd.sock",
        ] {
            let refused = unary(&socket, authority, "/x.Y/Z", b"").await.unwrap();
            assert_eq!(refused.rst_stream, Some(PROTOCOL_ERROR), "{refused:?}");
        }
    }

    #[test]
    fn literal_never_indexed_has_the_0x10_prefix() {
        let mut v = Vec::new();
        hpack_literal(&mut v, b"te", b"trailers");
        assert_eq!(v, b"\x10\x02te\x08trailers");
    }
}
