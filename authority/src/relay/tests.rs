//! The relay between a hyper HTTP/2 client and a hyper HTTP/2 server, both
//! with the smallest windows HTTP/2 allows by default, on unix socket pairs.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

use super::{relay, Answer, Call, Disposition, Doorman, Field, RelayError, RelayLimits, Reply};
use crate::AuthorityLimits;

const BIG_REPLY: usize = 300 * 1024;

#[derive(Debug, Default)]
struct Counts {
    open: AtomicUsize,
    dropped: AtomicUsize,
}

#[derive(Debug, Default)]
struct TestDoorman {
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct Open(Arc<Counts>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

struct CountDrop(Arc<Counts>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn path(fields: &[Field]) -> String {
    String::from_utf8_lossy(super::field(fields, b":path").unwrap_or_default()).into_owned()
}

impl Doorman for TestDoorman {
    type Guard = Open;

    fn classify(&self, fields: &[Field]) -> Disposition {
        let p = path(fields);
        if p.starts_with("/hold/") {
            let max_body = if p.ends_with("-big") {
                1 << 20
            } else {
                64 * 1024
            };
            Disposition::Hold { max_body }
        } else {
            Disposition::Relay
        }
    }

    fn enter(&self) -> Open {
        self.counts.open.fetch_add(1, Ordering::SeqCst);
        Open(Arc::clone(&self.counts))
    }

    fn answer(&self, call: Call) -> Pin<Box<dyn Future<Output = Answer> + Send + 'static>> {
        let counts = Arc::clone(&self.counts);
        Box::pin(async move {
            let p = path(&call.fields);
            match p.as_str() {
                "/hold/forward" | "/hold/forward-big" => {
                    let mut body = call.body.to_vec();
                    body.extend_from_slice(b"+forwarded");
                    Answer::Forward {
                        body: Bytes::from(body),
                        keep: None,
                    }
                }
                "/hold/reply" | "/hold/slow" | "/hold/big-reply" => {
                    if p == "/hold/slow" {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let body = if p == "/hold/big-reply" {
                        Bytes::from(vec![b'r'; BIG_REPLY])
                    } else {
                        Bytes::from(format!("replied to {} bytes", call.body.len()))
                    };
                    Answer::Reply(Reply {
                        head: vec![(b":status".to_vec(), b"200".to_vec())],
                        body,
                        trailers: vec![(b"x-relay".to_vec(), b"done".to_vec())],
                    })
                }
                _ => {
                    let _dropped = CountDrop(counts);
                    std::future::pending::<()>().await;
                    Answer::Forward {
                        body: Bytes::new(),
                        keep: None,
                    }
                }
            }
        })
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/sleep" || path == "/stall" {
        // `/stall` never reads its body: the client's window stays spent.
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = format!("{path}|").into_bytes();
    out.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(out))))
}

struct Bed {
    server: tokio::task::JoinHandle<()>,
    send: SendRequest<Full<Bytes>>,
    counts: Arc<Counts>,
    relay: tokio::task::JoinHandle<Result<(), RelayError>>,
    drain: Option<tokio::sync::oneshot::Sender<()>>,
}

fn limits() -> RelayLimits {
    RelayLimits {
        authority: AuthorityLimits::default(),
        max_streams: 100,
        max_held_body: 1 << 20,
        keepalive: None,
    }
}

async fn bed(limits: RelayLimits) -> Bed {
    let (client_side, relay_client) = UnixStream::pair().unwrap();
    let (relay_server, server_side) = UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .serve_connection(TokioIo::new(server_side), hyper::service::service_fn(echo))
            .await;
    });
    let doorman = Arc::new(TestDoorman::default());
    let counts = Arc::clone(&doorman.counts);
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay(
        relay_client,
        relay_server,
        doorman,
        limits,
        async move {
            let _ = drain_rx.await;
        },
    ));
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .handshake(TokioIo::new(client_side))
        .await
        .unwrap();
    tokio::spawn(conn);
    Bed {
        server,
        send,
        counts,
        relay,
        drain: Some(drain_tx),
    }
}

/// Status, body and trailers of one POST.
async fn post(
    send: &mut SendRequest<Full<Bytes>>,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>, Option<String>), hyper::Error> {
    send.ready().await?;
    let req = Request::post(format!("http://localhost{path}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let collected = resp.into_body().collect().await?;
    let trailer = collected
        .trailers()
        .and_then(|t| t.get("x-relay"))
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((status, collected.to_bytes().to_vec(), trailer))
}

#[tokio::test]
async fn relayed_and_held_calls_share_one_connection_each_answered_in_full() {
    let bed = bed(limits()).await;
    let mut calls = Vec::new();
    for i in 0..70usize {
        let mut send = bed.send.clone();
        calls.push(tokio::spawn(async move {
            let (path, body) = match i % 7 {
                6 => ("/hold/forward-big", vec![b'F'; 300 * 1024]),
                0 => ("/echo", vec![b'e'; 10]),
                1 => ("/echo", vec![b'E'; 256 * 1024]),
                2 => ("/hold/forward", vec![b'f'; 5]),
                3 => ("/hold/reply", vec![b'q'; 7]),
                4 => ("/hold/big-reply", Vec::new()),
                _ => ("/hold/slow", Vec::new()),
            };
            let got = post(&mut send, path, body.clone()).await.unwrap();
            (i, path, body, got)
        }));
    }
    for call in calls {
        let (i, path, body, (status, got, trailer)) = call.await.unwrap();
        assert_eq!(status, 200, "call {i} {path}");
        match path {
            "/echo" => {
                let mut want = b"/echo|".to_vec();
                want.extend_from_slice(&body);
                assert_eq!(got, want, "call {i}");
            }
            "/hold/forward" => assert_eq!(got, b"/hold/forward|fffff+forwarded"),
            "/hold/forward-big" => {
                // Sent on past the server's 64 KiB windows as it credits them.
                let mut want = b"/hold/forward-big|".to_vec();
                want.extend_from_slice(&body);
                want.extend_from_slice(b"+forwarded");
                assert_eq!(got, want, "call {i}");
            }
            "/hold/reply" => {
                assert_eq!(got, b"replied to 7 bytes");
                assert_eq!(trailer.as_deref(), Some("done"));
            }
            "/hold/big-reply" => {
                assert_eq!(got.len(), BIG_REPLY);
                assert_eq!(trailer.as_deref(), Some("done"));
            }
            _ => assert_eq!(got, b"replied to 0 bytes"),
        }
    }
    // Every stream's guard is released once it is done.
    for _ in 0..100 {
        if bed.counts.open.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bed.counts.open.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_held_call_the_client_gives_up_on_is_dropped_and_its_stream_released() {
    let bed = bed(limits()).await;
    let mut send = bed.send.clone();
    let waiting = tokio::spawn(async move { post(&mut send, "/hold/never", b"x".to_vec()).await });
    for _ in 0..100 {
        if bed.counts.open.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bed.counts.open.load(Ordering::SeqCst), 1);
    waiting.abort();
    for _ in 0..100 {
        if bed.counts.dropped.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bed.counts.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(bed.counts.open.load(Ordering::SeqCst), 0);
    // The connection still serves.
    let mut send = bed.send.clone();
    let (status, body, _) = post(&mut send, "/echo", b"after".to_vec()).await.unwrap();
    assert_eq!((status, body), (200, b"/echo|after".to_vec()));
}

#[tokio::test]
async fn a_held_body_over_its_size_is_handed_out_as_far_as_it_came_and_the_rest_not_read() {
    let mut l = limits();
    l.max_held_body = 1024;
    let bed = bed(l).await;
    let mut send = bed.send.clone();
    let (status, body, _) = post(&mut send, "/hold/reply", vec![0u8; 1 << 20])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let read: usize = String::from_utf8(body)
        .unwrap()
        .trim_start_matches("replied to ")
        .trim_end_matches(" bytes")
        .parse()
        .unwrap();
    // Past the size by at most one frame of the client's.
    assert!(read > 1024 && read <= 1024 + 16 * 1024, "{read}");
    let (status, body, _) = post(&mut send, "/echo", b"still".to_vec()).await.unwrap();
    assert_eq!((status, body), (200, b"/echo|still".to_vec()));
}

#[tokio::test]
async fn a_drain_lets_open_calls_finish_then_ends_the_connection() {
    let mut bed = bed(limits()).await;
    let mut send = bed.send.clone();
    let slow = tokio::spawn(async move { post(&mut send, "/hold/slow", Vec::new()).await });
    for _ in 0..100 {
        if bed.counts.open.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = bed.drain.take().unwrap().send(());
    let (status, body, _) = slow.await.unwrap().unwrap();
    assert_eq!((status, body), (200, b"replied to 0 bytes".to_vec()));
    let ended = tokio::time::timeout(Duration::from_secs(5), bed.relay).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    let mut send = bed.send.clone();
    assert!(post(&mut send, "/echo", Vec::new()).await.is_err());
}

#[tokio::test]
async fn when_the_server_closes_relayed_calls_are_unavailable_and_held_ones_still_answered() {
    let bed = bed(limits()).await;
    let mut send = bed.send.clone();
    let relayed = tokio::spawn(async move {
        send.ready().await.unwrap();
        let req = Request::post("http://localhost/sleep")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req).await
    });
    let mut send = bed.send.clone();
    let held = tokio::spawn(async move { post(&mut send, "/hold/slow", Vec::new()).await });
    for _ in 0..100 {
        if bed.counts.open.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bed.server.abort();
    let resp = relayed.await.unwrap().unwrap();
    assert_eq!(resp.headers().get("grpc-status").unwrap(), "14");
    let (status, body, _) = held.await.unwrap().unwrap();
    assert_eq!((status, body), (200, b"replied to 0 bytes".to_vec()));
    let ended = tokio::time::timeout(Duration::from_secs(5), bed.relay).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
}

#[tokio::test]
async fn a_client_that_sends_past_the_windows_is_cut_off_with_flow_control_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::frame;

    let (client, relay_client) = UnixStream::pair().unwrap();
    let (relay_server, server_side) = UnixStream::pair().unwrap();
    tokio::spawn(async move {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .serve_connection(TokioIo::new(server_side), hyper::service::service_fn(echo))
            .await;
    });
    let relay = tokio::spawn(relay(
        relay_client,
        relay_server,
        Arc::new(TestDoorman::default()),
        limits(),
        std::future::pending::<()>(),
    ));
    let mut out = crate::rewriter::PREFACE.to_vec();
    frame::head(&mut out, 0, frame::SETTINGS, 0, 0);
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/stall"),
        (":authority", "localhost"),
    ] {
        crate::hpack::encode_field(&mut block, n.as_bytes(), v.as_bytes(), false);
    }
    frame::header_block(&mut out, 1, &block, false);
    // 3 MiB on one stream, ignoring the 64 KiB windows.
    let chunk = vec![0u8; frame::SAFE_FRAME];
    for _ in 0..192 {
        frame::head(&mut out, chunk.len(), frame::DATA, 0, 1);
        out.extend_from_slice(&chunk);
    }
    let (mut read, mut write) = client.into_split();
    tokio::spawn(async move {
        let _ = write.write_all(&out).await;
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut got)).await;
    let mut frames = frame::FrameBuf::new(1 << 24);
    frames.extend(&got);
    let mut goaway = None;
    while let Ok(Some(f)) = frames.next() {
        if f.ty == frame::GOAWAY {
            goaway = f
                .payload
                .get(4..8)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), relay).await;
    assert_eq!(
        goaway,
        Some(frame::FLOW_CONTROL_ERROR),
        "{ended:?} {} bytes",
        got.len()
    );
    assert!(
        matches!(ended, Ok(Ok(Err(RelayError::Protocol(_))))),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_and_one_that_answers_is_kept() {
    use tokio::io::AsyncWriteExt;

    let mut l = limits();
    l.keepalive = Some((Duration::from_millis(50), Duration::from_millis(100)));
    // hyper's client answers PINGs: still served after many intervals.
    let bed = bed(l).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut send = bed.send.clone();
    let (status, body, _) = post(&mut send, "/echo", b"alive".to_vec()).await.unwrap();
    assert_eq!((status, body), (200, b"/echo|alive".to_vec()));
    assert!(!bed.relay.is_finished());

    // A client that sends its preface and then reads nothing.
    let (mut client, relay_client) = UnixStream::pair().unwrap();
    let (relay_server, _server_side) = UnixStream::pair().unwrap();
    let relay = tokio::spawn(relay(
        relay_client,
        relay_server,
        Arc::new(TestDoorman::default()),
        l,
        std::future::pending::<()>(),
    ));
    let mut out = crate::rewriter::PREFACE.to_vec();
    crate::frame::head(&mut out, 0, crate::frame::SETTINGS, 0, 0);
    client.write_all(&out).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), relay).await;
    assert!(
        matches!(ended, Ok(Ok(Err(RelayError::KeepaliveTimeout)))),
        "{ended:?}"
    );
}

/// Reads `side` until a frame `until` accepts arrives; every frame read, that one last.
async fn frames_until(
    side: &mut UnixStream,
    skip_preface: bool,
    until: impl Fn(&crate::frame::Frame) -> bool,
) -> Vec<crate::frame::Frame> {
    use tokio::io::AsyncReadExt;
    let mut frames = crate::frame::FrameBuf::new(1 << 20);
    let mut preface = if skip_preface { 24 } else { 0 };
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), side.read(&mut buf))
            .await
            .expect("the frame awaited never came")
            .unwrap();
        assert!(n > 0, "closed before the frame awaited; read {seen:?}");
        let skipped = preface.min(n);
        preface -= skipped;
        frames.extend(&buf[skipped..n]);
        while let Some(f) = frames.next().unwrap() {
            let done = until(&f);
            seen.push(f);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn pings_are_answered_by_the_relay_on_each_side_and_never_passed_on() {
    use tokio::io::AsyncWriteExt;

    use crate::frame::{self, Frame};

    let (mut client, relay_client) = UnixStream::pair().unwrap();
    let (relay_server, mut server) = UnixStream::pair().unwrap();
    let _relay = tokio::spawn(relay(
        relay_client,
        relay_server,
        Arc::new(TestDoorman::default()),
        limits(),
        std::future::pending::<()>(),
    ));
    let is_ping = |f: &Frame, ack: bool, opaque: &[u8]| {
        f.ty == frame::PING && f.has(frame::ACK) == ack && f.payload[..] == *opaque
    };

    // The client: preface, a PING, then a relayed call.
    let mut out = crate::rewriter::PREFACE.to_vec();
    frame::head(&mut out, 0, frame::SETTINGS, 0, 0);
    frame::ping(&mut out, false, b"client-1");
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/echo"),
        (":authority", "localhost"),
    ] {
        crate::hpack::encode_field(&mut block, n.as_bytes(), v.as_bytes(), false);
    }
    frame::header_block(&mut out, 1, &block, true);
    client.write_all(&out).await.unwrap();

    // The server gets the call and no PING; the client its PING's answer.
    let at_server = frames_until(&mut server, true, |f| f.ty == frame::HEADERS).await;
    assert!(
        !at_server.iter().any(|f| f.ty == frame::PING),
        "{at_server:?}"
    );
    let at_client = frames_until(&mut client, false, |f| is_ping(f, true, b"client-1")).await;
    assert!(!at_client.iter().any(|f| is_ping(f, false, b"client-1")));

    // The server: its SETTINGS, a PING, then the call's answer.
    let mut out = Vec::new();
    frame::head(&mut out, 0, frame::SETTINGS, 0, 0);
    frame::ping(&mut out, false, b"server-1");
    let mut block = Vec::new();
    crate::hpack::encode_field(&mut block, b":status", b"200", false);
    let stream = at_server.last().map_or(1, |f| f.stream);
    frame::header_block(&mut out, stream, &block, true);
    server.write_all(&out).await.unwrap();

    // The client gets the answer and no PING; the server its PING's answer.
    let at_client = frames_until(&mut client, false, |f| f.ty == frame::HEADERS).await;
    assert!(
        !at_client.iter().any(|f| f.ty == frame::PING),
        "{at_client:?}"
    );
    let at_server = frames_until(&mut server, false, |f| is_ping(f, true, b"server-1")).await;
    assert!(!at_server.iter().any(|f| is_ping(f, false, b"server-1")));
}

mod any_input {
    //! The relay's core on generated frame streams: never a panic, output bounded
    //! (the `relay_frames` fuzz target runs the same driver on any bytes).

    use proptest::prelude::*;

    use crate::frame;
    use crate::relay::exercise;

    fn frame_of(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::head(&mut out, payload.len(), ty, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    /// A request head: static-table fields only, a held or a relayed path.
    fn request(stream: u32, held: bool, end_stream: bool) -> Vec<u8> {
        let mut block = Vec::new();
        let path: &[u8] = if held { b"/hold/x" } else { b"/relay" };
        for (n, v) in [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", b"localhost"),
        ] {
            crate::hpack::encode_field(&mut block, n, v, false);
        }
        let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
        frame_of(frame::HEADERS, flags, stream, &block)
    }

    /// One frame of a side's stream: mostly well formed, some of any shape.
    fn any_frame(client: bool) -> impl Strategy<Value = Vec<u8>> {
        let stream = 0u32..12;
        prop_oneof![
            (stream.clone(), any::<bool>(), any::<bool>()).prop_map(move |(s, held, end)| {
                if client {
                    request(s | 1, held, end)
                } else {
                    frame_of(
                        frame::HEADERS,
                        frame::END_HEADERS | if end { frame::END_STREAM } else { 0 },
                        s | 1,
                        &[0x88],
                    )
                }
            }),
            (
                stream.clone(),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(s, end, p)| frame_of(
                    frame::DATA,
                    if end { frame::END_STREAM } else { 0 },
                    s,
                    &p
                )),
            (stream.clone(), 0u32..(1 << 20)).prop_map(|(s, inc)| frame_of(
                frame::WINDOW_UPDATE,
                0,
                s,
                &inc.to_be_bytes()
            )),
            (any::<bool>(), any::<[u8; 8]>()).prop_map(|(ack, p)| frame_of(
                frame::PING,
                if ack { frame::ACK } else { 0 },
                0,
                &p
            )),
            (stream.clone(), any::<u32>()).prop_map(|(s, code)| frame_of(
                frame::RST_STREAM,
                0,
                s,
                &code.to_be_bytes()
            )),
            (any::<u16>(), any::<u32>()).prop_map(|(id, v)| {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&v.to_be_bytes());
                frame_of(frame::SETTINGS, 0, 0, &p)
            }),
            (
                0u8..12,
                any::<u8>(),
                stream,
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(ty, flags, s, p)| frame_of(ty, flags, s, &p)),
        ]
    }

    fn side(client: bool) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any_frame(client), 0..40).prop_map(move |frames| {
            let mut out = if client {
                crate::rewriter::PREFACE.to_vec()
            } else {
                Vec::new()
            };
            out.extend(frame_of(frame::SETTINGS, 0, 0, &[]));
            out.extend(frames.concat());
            out
        })
    }

    #[test]
    fn the_fuzz_seeds_run() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proxy/fuzz/seeds/relay_frames"
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            crate::fuzz_bridge::relay_frames(&std::fs::read(entry.unwrap().path()).unwrap());
            seen += 1;
        }
        assert!(seen > 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn generated_streams_never_panic(
            client in side(true),
            server in side(false),
            chunk in 1usize..600,
            closes in any::<bool>(),
        ) {
            exercise(&client, &server, chunk, closes);
        }

        #[test]
        fn any_bytes_never_panic(
            client in proptest::collection::vec(any::<u8>(), 0..2048),
            server in proptest::collection::vec(any::<u8>(), 0..512),
            chunk in 1usize..300,
        ) {
            let mut input = crate::rewriter::PREFACE.to_vec();
            input.extend(&client);
            exercise(&input, &server, chunk, false);
            exercise(&client, &server, chunk, true);
        }
    }
}
