//! End to end: a hyper 1 HTTP/2 server (as pullgate runs it) behind the
//! step, driven by a hand-written HTTP/2 client that can send what h2's own
//! client cannot: a socket path as `:authority`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::super::{AuthorityLimits, AuthorityRewrite};
use super::{
    frame, request, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, SETTINGS,
};

/// What the client saw for one stream.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Response status and body (the echoed `authority|path`).
    Answered(Vec<u8>, Vec<u8>),
    /// RST_STREAM with this error code.
    Reset(u32),
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let authority = req.uri().authority().map_or("", |a| a.as_str());
    let body = format!("{authority}|{}", req.uri().path());
    Ok(Response::new(Full::new(Bytes::from(body))))
}

fn serve<IO>(io: IO) -> tokio::task::JoinHandle<()>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, hyper::service::service_fn(echo))
            .await;
    })
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await.ok()?;
    let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}

/// Sends one GET per authority (streams 1, 3, 5, ...) on one connection,
/// HPACK-encoded by an indexing encoder, and collects each stream's outcome.
async fn raw_client<IO>(mut io: IO, authorities: &[Option<&[u8]>]) -> Vec<Outcome>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = super::PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let mut encoder = loona_hpack::Encoder::new();
    for (i, authority) in authorities.iter().enumerate() {
        let mut fields = request(*authority, &[(b"user-agent", b"raw-test/1")]);
        fields[0].1 = b"GET".to_vec();
        let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
        let stream = 2 * i as u32 + 1;
        // Split each block once, to cross CONTINUATION as well.
        let (a, b) = block.split_at(block.len() / 2);
        out.extend(frame(HEADERS, END_STREAM, stream, a));
        out.extend(frame(CONTINUATION, END_HEADERS, stream, b));
    }
    io.write_all(&out).await.unwrap();

    let mut decoder = loona_hpack::Decoder::new();
    let mut status: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut bodies: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut done: BTreeMap<u32, Outcome> = BTreeMap::new();
    while done.len() < authorities.len() {
        let Some((ty, flags, stream, payload)) = read_frame(&mut io).await else {
            break;
        };
        match ty {
            SETTINGS if flags & 0x1 == 0 => {
                io.write_all(&frame(SETTINGS, 0x1, 0, &[])).await.unwrap()
            }
            HEADERS => {
                assert_ne!(flags & END_HEADERS, 0, "small responses fit in one frame");
                for (n, v) in decoder.decode(&payload).unwrap() {
                    if n == b":status" {
                        status.insert(stream, v);
                    }
                }
            }
            DATA => bodies.entry(stream).or_default().extend(&payload),
            RST_STREAM => {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                done.insert(stream, Outcome::Reset(code));
            }
            _ => {}
        }
        if (ty == DATA || ty == HEADERS) && flags & END_STREAM != 0 {
            let answered = Outcome::Answered(
                status.get(&stream).cloned().unwrap_or_default(),
                bodies.get(&stream).cloned().unwrap_or_default(),
            );
            done.insert(stream, answered);
        }
    }
    done.into_values().collect()
}

const FORMS: [Option<&[u8]>; 5] = [
    Some(b"/run/x.sock"),
    Some(b"%2Frun%2Fx.sock"),
    Some(b"localhost"),
    None,
    Some(b"/run/x.sock"),
];

#[tokio::test]
async fn hyper_server_answers_every_authority_form_through_the_step() {
    let (client, server) = tokio::net::UnixStream::pair().unwrap();
    let task = serve(TokioIo::new(AuthorityRewrite::new(
        server,
        AuthorityLimits::default(),
    )));
    let outcomes = tokio::time::timeout(Duration::from_secs(10), raw_client(client, &FORMS))
        .await
        .unwrap();
    let path = "/runtime.v1.ImageService/PullImage";
    let ok = |authority: &str| {
        Outcome::Answered(b"200".to_vec(), format!("{authority}|{path}").into_bytes())
    };
    assert_eq!(
        outcomes,
        vec![
            ok("localhost"),
            ok("localhost"),
            ok("localhost"),
            ok(""),
            ok("localhost")
        ]
    );
    task.abort();
}

/// The same client straight to hyper: the path forms are refused. This is
/// the bug the step exists for, and it proves the test above can fail.
#[tokio::test]
async fn without_the_step_hyper_refuses_path_authorities() {
    let (client, server) = tokio::net::UnixStream::pair().unwrap();
    let task = serve(TokioIo::new(server));
    let outcomes = tokio::time::timeout(Duration::from_secs(10), raw_client(client, &FORMS))
        .await
        .unwrap();
    let path = "/runtime.v1.ImageService/PullImage";
    let protocol_error = Outcome::Reset(0x1);
    assert_eq!(
        outcomes,
        vec![
            protocol_error.clone(),
            protocol_error.clone(),
            Outcome::Answered(b"200".to_vec(), format!("localhost|{path}").into_bytes()),
            Outcome::Answered(b"200".to_vec(), format!("|{path}").into_bytes()),
            protocol_error,
        ]
    );
    task.abort();
}

/// A gRPC handler that answers every call with a trailers-only
/// `UNIMPLEMENTED` whose message is the `authority|path` it saw: a real
/// gRPC client then reports what reached the service.
async fn grpc_echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let authority = req.uri().authority().map_or("", |a| a.as_str());
    let message = format!("{authority}|{}", req.uri().path());
    let response = Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "12")
        .header("grpc-message", message)
        .body(Full::new(Bytes::new()))
        .unwrap();
    Ok(response)
}

const GRPCIO_CLIENT: &str = r#"
import sys, grpc
sock = sys.argv[1]
for authority in sys.argv[2:]:
    options = [] if authority == "default" else [("grpc.default_authority", authority)]
    with grpc.insecure_channel("unix:" + sock, options=options) as channel:
        call = channel.unary_unary("/runtime.v1.ImageService/ImageFsInfo")
        try:
            call(b"", timeout=5)
            print(authority, "OK", "-")
        except grpc.RpcError as e:
            print(authority, e.code().name, e.details())
"#;

/// Runs the Python grpcio (C-core) client against a hyper server on a unix
/// socket, with or without the step; returns one `authority code details`
/// line per call: default authority (percent-encoded path), the socket
/// path, `localhost`.
async fn grpcio_calls(with_step: bool) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("pullgate.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            let svc = hyper::service::service_fn(grpc_echo);
            if with_step {
                let io = TokioIo::new(AuthorityRewrite::new(stream, AuthorityLimits::default()));
                connections.spawn(async move { builder.serve_connection(io, svc).await });
            } else {
                connections.spawn(async move {
                    builder.serve_connection(TokioIo::new(stream), svc).await
                });
            }
        }
    });
    let sock = sock.to_str().unwrap().to_owned();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .args(["-c", GRPCIO_CLIENT, &sock, "default", &sock, "localhost"])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    server.abort();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (sock, lines)
}

#[tokio::test]
#[ignore = "needs python3 with grpcio (pip install grpcio)"]
async fn grpcio_c_core_client_through_the_step() {
    let (sock, lines) = grpcio_calls(true).await;
    let reached = "UNIMPLEMENTED localhost|/runtime.v1.ImageService/ImageFsInfo";
    assert_eq!(
        lines,
        vec![
            format!("default {reached}"),
            format!("{sock} {reached}"),
            format!("localhost {reached}"),
        ]
    );
}

#[tokio::test]
#[ignore = "needs python3 with grpcio (pip install grpcio)"]
async fn grpcio_c_core_client_without_the_step_is_refused() {
    let (sock, lines) = grpcio_calls(false).await;
    assert_eq!(lines.len(), 3);
    // grpcio 1.85 reports: INTERNAL "Stream removed (RST_STREAM (Received
    // RST_STREAM with error code 1))", i.e. h2's PROTOCOL_ERROR.
    assert!(lines[0].starts_with("default INTERNAL"), "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("{sock} INTERNAL")),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with("UNIMPLEMENTED localhost|/runtime.v1.ImageService/ImageFsInfo"));
}
