//! Criterion benchmark of the `:authority` rewrite step
//! (`pullgate-authority`) on the hot path: what it adds to one unary
//! gRPC call on a persistent connection.
//!
//! - `authority/with_step`: a hyper 1 HTTP/2 server behind the step, as
//!   `cri::serve` runs it (`AuthorityRewrite::new` with the default limits).
//! - `authority/without_step`: the same server reading the socket directly.
//!
//! Each side of a `tokio::net::UnixStream::pair()` is served by hyper's own
//! HTTP/2 (client: `hyper::client::conn::http2`, server:
//! `hyper::server::conn::http2`, default settings on both). One connection
//! per variant is opened and warmed before measuring; the measured unit is
//! one request, sent only after the previous response (body and trailers) has
//! been read in full: `POST http://localhost/runtime.v1.ImageService/ImageStatus`
//! with `content-type: application/grpc`, `te: trailers` and a 39-byte body
//! (one length-prefixed message), answered with `200`, `content-type:
//! application/grpc`, a 26-byte body and the trailers `grpc-status: 0`.
//! The authority is `localhost`, so the step re-encodes each header block
//! but replaces nothing: this is the cost every well-behaved client pays.
//!
//! Client and server run on one current-thread tokio runtime, so the figures
//! are the CPU cost of a request through both HTTP/2 stacks and the kernel's
//! socket, without cross-thread wake-ups blurring the difference (pullgate
//! runs a multi-thread runtime, where a request also pays those wake-ups).
//!
//! Run with `cargo bench -p pullgate-authority --bench authority` (the
//! figures below were recorded when it was `-p pullgate-bench`); record medians
//! with the machine, the commit and the command (bench/ measures, never
//! asserts).
//!
//! ## Instruction counts
//!
//! Wall-clock medians on a shared machine move with its load; instruction
//! counts do not. With `PULLGATE_AUTHORITY_CALLS=<n>` and
//! `PULLGATE_AUTHORITY_VARIANT=with_step` (or `without_step`) the binary
//! skips criterion and makes `n` calls on one warmed connection of that
//! variant, the same calls as measured above. Under callgrind, the
//! difference between two counts divided by the difference in calls is the
//! instructions per request (user space only: the kernel's socket work is
//! not counted), setup cancelled out:
//!
//! ```text
//! cargo bench -p pullgate-authority --bench authority --no-run   # prints the binary
//! PULLGATE_AUTHORITY_CALLS=1200 PULLGATE_AUTHORITY_VARIANT=with_step \
//!     valgrind --tool=callgrind target/release/deps/authority-<hash> --bench
//! # and the same with 200 calls, and both for without_step:
//! # (Ir(1200) - Ir(200)) / 1000 per variant; the step's cost is the difference.
//! # Ir: the largest "Collected" line (criterion also forks a gnuplot probe).
//! ```
//!
//! ## Recorded
//!
//! ### Before: `loona-hpack` decoding Huffman strings (to c82c343)
//!
//! Base commit a5f7972 (this bench on top of it), `cargo bench -p
//! pullgate-bench --bench authority` (5 s measurement, 3 s warm-up, 100
//! samples), on the shared development machine (2 vCPU AMD EPYC, other
//! sessions compiling throughout). Criterion medians (from
//! `target/criterion/authority/*/new/estimates.json`), per request; load
//! average (1 min) from `uptime` at the start of each run. The two variants
//! run one after the other, ~10 s apart, so a change in load between them
//! moves the ratio too.
//!
//! | run (UTC) | load avg | with_step | without_step | ratio | difference |
//! |---|---|---|---|---|---|
//! | 07:39 | 4.3 | 66.4 µs | 23.7 µs | 2.80 | +42.7 µs |
//! | 07:39 | 3.7 | 63.3 µs | 31.5 µs | 2.01 | +31.9 µs |
//! | 07:40 | 3.7 | 93.3 µs | 33.0 µs | 2.82 | +60.3 µs |
//!
//! Earlier runs of the same bench with a response message one byte shorter
//! (load 5.6 to 7.7): with_step 93.7-111.6 µs, without_step 31.7-37.2 µs,
//! ratios 2.71-3.30 (five runs); one run at load 1.6 printed criterion's
//! slope estimates 62.7 µs and 24.2 µs (ratio 2.59, +38.4 µs).
//!
//! So the step makes a small unary call on a warm connection 2-3 times
//! slower: about +40 µs per request at the lowest loads seen (the first
//! 07:39 run, 66.4 µs against 23.7 µs; the load-1.6 run), +60-75 µs under
//! heavy load.
//!
//! `perf record --call-graph dwarf` of `with_step` (3 s, loaded machine):
//! `Rewriter::feed` is ~60% of all samples, and ~51% is
//! `loona_hpack::huffman::HuffmanDecoder::new` (nested `HashMap`s with
//! SipHash, built from the code table), which `loona_hpack`'s
//! `decode_string` does afresh for every Huffman-coded string. h2's encoder
//! never indexes `:path` (`Header::skip_value_index`), so every request
//! carries at least one such string. The re-encoding is under 1%. A decoder
//! that builds its Huffman table once would remove most of the step's cost.
//!
//! ### After: Huffman table built at compile time, static indexed fields
//!
//! the step (then `cri/authority`) decodes Huffman strings itself with a transition table
//! computed at compile time (`huffman.rs`) and sends fields that are whole in
//! the static table as indexed references. Same machine and command; the
//! binaries of c82c343 (before) and of this change (after), built with this
//! bench (whose measured loop is unchanged), run alternately, ~20 s per
//! run. Criterion medians per request; load average (1 min) at the start of
//! each run (other sessions compiling).
//!
//! | run (UTC) | binary | load avg | with_step | without_step | difference |
//! |---|---|---|---|---|---|
//! | 16:44 | before | 7.8 | 102.0 µs | 23.0 µs | +79.0 µs |
//! | 16:45 | after | 7.0 | 35.8 µs | 34.8 µs | +1.0 µs |
//! | 16:45 | before | 7.1 | 99.8 µs | 29.3 µs | +70.5 µs |
//! | 16:45 | after | 6.9 | 34.3 µs | 22.3 µs | +12.0 µs |
//! | 16:46 | before | 6.4 | 73.9 µs | 43.2 µs | +30.7 µs |
//! | 16:46 | after | 6.4 | 35.8 µs | 31.8 µs | +4.0 µs |
//! | 16:46 | before | 6.3 | 94.6 µs | 31.0 µs | +63.6 µs |
//! | 16:47 | after | 6.2 | 35.5 µs | 34.5 µs | +1.0 µs |
//! | 16:57 | before | 4.4 | 71.1 µs | 24.8 µs | +46.3 µs |
//! | 16:57 | after | 4.3 | 24.0 µs | 26.4 µs | -2.4 µs |
//! | 16:57 | before | 4.2 | 63.6 µs | 22.3 µs | +41.3 µs |
//! | 16:58 | after | 3.9 | 23.3 µs | 22.8 µs | +0.5 µs |
//! | 16:58 | before | 3.6 | 65.0 µs | 22.3 µs | +42.7 µs |
//! | 16:58 | after | 3.1 | 24.0 µs | 24.8 µs | -0.8 µs |
//! | 16:59 | before | 2.9 | 64.6 µs | 24.1 µs | +40.5 µs |
//! | 16:59 | after | 3.2 | 37.0 µs | 32.6 µs | +4.4 µs |
//!
//! The without_step median alone moves by several µs from run to run (22.3
//! to 43.2 µs here), more than the step now costs: at load 3-4 the step
//! adds -2.4 to +4.4 µs (median of the four differences -0.2 µs; with_step
//! 23.3-24.0 µs in three of them) where it added +40.5 to +46.3 µs; at load
//! 6-8, +1.0 to +12.0 µs (median +2.5 µs) where it added +31 to +79 µs.
//!
//! Instruction counts (callgrind, fixed-count mode above, user space only,
//! Ir per request = (Ir(1200 calls) - Ir(200 calls)) / 1000; run to run the
//! figures move by a few hundred):
//!
//! | code | with_step | without_step | the step |
//! |---|---|---|---|
//! | c82c343 (before) | 570,266 | 99,016 | +471,250 |
//! | Huffman table at compile time | 108,105 | 99,011 | +9,094 |
//! | and static indexed fields | 107,222 / 106,819 | 99,379 / 99,443 | +7,843 / +7,376 |
//!
//! Before, 458k of the step's 471k instructions per request were in
//! `loona_hpack`'s `HuffmanDecoder::new` and `::decode`. After, what is left
//! (about 7.5k) is spread out: `Rewriter::feed` about 5.9k (Huffman decoding
//! of `:path` 1.2k, `loona-hpack`'s table work 0.8k, re-encoding 1.6k, the
//! authority check 0.4k, the walk and framing the rest), the copies in
//! `AuthorityRewrite::poll_read` about 1.1k, and h2 on the server side about
//! 0.9k more for decoding literals where the client had sent indexed fields.
//! `strace -f -c` of 1000 calls per variant: 8.0 system calls per request
//! with or without the step (no extra read, write or wake-up).

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pullgate_authority::{AuthorityLimits, AuthorityRewrite};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

const URI: &str = "http://localhost/runtime.v1.ImageService/ImageStatus";

/// A gRPC message: the 5-byte prefix (uncompressed, big-endian length) and
/// `payload`.
fn grpc_message(payload: &[u8]) -> Bytes {
    let mut m = Vec::with_capacity(5 + payload.len());
    m.push(0);
    m.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    m.extend_from_slice(payload);
    Bytes::from(m)
}

/// A small `ImageStatusRequest`-like message (an image reference).
fn request_message() -> Bytes {
    grpc_message(b"\n\x20\n\x1edocker.io/library/busybox:1.36")
}

/// A small response message.
fn response_message() -> Bytes {
    grpc_message(b"\n\x13\n\x11sha256:0123abcdef")
}

/// A unary gRPC response body: one DATA frame, then the trailers.
#[derive(Debug)]
struct UnaryBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for UnaryBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// The service: reads the whole request, answers `grpc-status: 0`.
async fn unary(req: Request<Incoming>) -> Result<Response<UnaryBody>, hyper::Error> {
    let _request = req.into_body().collect().await?;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(UnaryBody {
        data: Some(response_message()),
        trailers: Some(trailers),
    });
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

fn serve<IO>(io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        // The connection ends when the benchmark drops the client.
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(io), hyper::service::service_fn(unary))
            .await;
    });
}

/// Opens one HTTP/2 connection over a unix socket pair, with or without the
/// step in front of the server.
async fn connect(with_step: bool) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let (client, server) = UnixStream::pair().context("socket pair")?;
    if with_step {
        serve(AuthorityRewrite::new(server, AuthorityLimits::default()));
    } else {
        serve(server);
    }
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
            .await
            .context("HTTP/2 handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One unary call; returns the response message length and `grpc-status`.
async fn call(sender: &mut SendRequest<Full<Bytes>>) -> anyhow::Result<(usize, HeaderValue)> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(URI)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Full::new(request_message()))
        .context("request")?;
    sender.ready().await.context("connection not ready")?;
    let response = sender.send_request(req).await.context("send")?;
    anyhow::ensure!(
        response.status() == http::StatusCode::OK,
        "status {}",
        response.status()
    );
    let body = response
        .into_body()
        .collect()
        .await
        .context("response body")?;
    let status = body
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .cloned()
        .context("no grpc-status trailer")?;
    Ok((body.to_bytes().len(), status))
}

/// A connection that has answered a few calls correctly.
fn warmed(rt: &Runtime, with_step: bool) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    rt.block_on(async {
        let mut sender = connect(with_step).await?;
        for _ in 0..100 {
            let (len, status) = call(&mut sender).await?;
            anyhow::ensure!(
                len == response_message().len() && status == "0",
                "unexpected response: {len} bytes, grpc-status {status:?}"
            );
        }
        Ok(sender)
    })
}

/// `PULLGATE_AUTHORITY_CALLS=<n>` with `PULLGATE_AUTHORITY_VARIANT=with_step`
/// or `without_step`: the fixed-count mode for instruction counting (see the
/// module docs), `None` when unset.
fn fixed_count() -> Option<(u64, bool)> {
    let calls = std::env::var("PULLGATE_AUTHORITY_CALLS")
        .ok()?
        .parse()
        .ok()?;
    let with_step = match std::env::var("PULLGATE_AUTHORITY_VARIANT").ok()?.as_str() {
        "with_step" => true,
        "without_step" => false,
        other => {
            panic!("PULLGATE_AUTHORITY_VARIANT: {other:?} is neither with_step nor without_step")
        }
    };
    Some((calls, with_step))
}

fn benches(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };

    if let Some((calls, with_step)) = fixed_count() {
        // One warmed connection of the chosen variant, `calls` more calls on
        // it, no criterion measurement.
        let result = warmed(&rt, with_step).and_then(|mut sender| {
            rt.block_on(async {
                for _ in 0..calls {
                    black_box(call(&mut sender).await?);
                }
                Ok(())
            })
        });
        if let Err(e) = result {
            panic!("fixed-count run: {e:#}");
        }
        return;
    }

    let mut g = c.benchmark_group("authority");
    g.measurement_time(Duration::from_secs(5));
    for (name, with_step) in [("with_step", true), ("without_step", false)] {
        let mut sender = match warmed(&rt, with_step) {
            Ok(s) => s,
            Err(e) => panic!("benchmark connection ({name}): {e:#}"),
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        match call(&mut sender).await {
                            Ok(r) => {
                                black_box(r);
                            }
                            Err(e) => panic!("request failed: {e:#}"),
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(authority_benches, benches);
criterion_main!(authority_benches);
