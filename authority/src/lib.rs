//! pullgate-authority: accept every `:authority` a CRI client sends on a
//! unix socket; and [`relay`], one client connection relayed to containerd
//! frame by frame, with the calls pullgate decides on held.
//!
//! HTTP/2 frames, HPACK and Huffman coding, and nothing of pullgate: the
//! `pullgate` crate wraps every accepted CRI connection in
//! [`AuthorityRewrite`] before hyper's server reads it. Non-features: it is
//! not an HTTP/2 implementation (it parses only the client's frame headers
//! and header blocks, and the server's SETTINGS) and does no I/O of its own
//! beyond the stream it wraps.
//!
//! # Why
//! On unix sockets, grpc-go clients from Kubernetes before 1.31 (the kubelet,
//! crictl ≤ 1.30) and grpc-java send the socket path as `:authority`
//! (`/run/pullgate.sock`); gRPC C-core clients (Python, C++, Ruby) send it
//! percent-encoded (`%2Frun%2Fpullgate.sock`). h2, under hyper, answers both
//! with `RST_STREAM(PROTOCOL_ERROR)` "malformed authority" (hyperium/h2#487).
//!
//! # What
//! [`AuthorityRewrite`] sits between the accepted socket and hyper's HTTP/2
//! server. Input: the client's bytes. Output: the same bytes, except that every
//! header block (HEADERS + CONTINUATION) is decoded and re-encoded, with an
//! `:authority` that h2 would refuse replaced by `localhost`. An absent
//! `:authority` stays absent (h2 accepts it), a valid one stays as it is, and
//! nothing else about a request changes. The next stage is hyper's
//! `http2::Builder::serve_connection`:
//!
//! ```text
//! let io = TokioIo::new(AuthorityRewrite::new(stream, AuthorityLimits::default()));
//! hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, svc)
//! ```
//!
//! # Design
//! - The 24-byte preface passes through (checked). Then each frame header is
//!   parsed; every frame type other than HEADERS and CONTINUATION (DATA,
//!   SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY, PRIORITY, unknown
//!   types) is forwarded byte for byte, streamed, never buffered whole.
//! - **Every** header block is re-encoded, not only those with a bad
//!   authority. The client's encoder indexes fields into its dynamic table
//!   and refers to them in later blocks; once we alter one block, the server's
//!   decoder table could no longer mirror the client's. So our decoder mirrors
//!   the client's table, and what we send the server never touches a dynamic
//!   table: each field is a literal "without indexing" (or "never indexed",
//!   kept as the client sent it, RFC 7541 §6.2.3), with static-table name
//!   references and no Huffman coding, or, when name and value are both in
//!   the static table, an indexed reference to that entry. The server's
//!   table stays empty for the whole connection, whatever the client did.
//!   This is the simplest design that is correct for every client; its cost
//!   is a few bytes more per block and one decode + encode per request
//!   (about 8k instructions for a small gRPC request, see
//!   `authority/benches/authority.rs`). Other frames cost two in-memory copies
//!   (read buffer to output, output to hyper's buffer) and no parsing of
//!   their payload.
//! - Re-encoded blocks are re-framed as HEADERS (+ CONTINUATION) within the
//!   server's applied SETTINGS_MAX_FRAME_SIZE, keeping the stream id,
//!   END_STREAM and the PRIORITY fields; padding is dropped (PADDED cleared),
//!   since it carries no meaning.
//! - The server's SETTINGS are read on the write path (bytes passed through
//!   unchanged): SETTINGS_MAX_FRAME_SIZE and SETTINGS_HEADER_TABLE_SIZE, each
//!   taking effect for our output once the client's SETTINGS ack passes by.
//!
//! # HPACK crate
//! `loona-hpack` (bearcove/loona, the maintained successor of `fluke-hpack`,
//! itself a fork of `hpack`): its decoder takes the whole block and reports
//! each field through a callback without allocating per field, bounds integer
//! decoding, and had its panics on malformed input fixed (0.4.3). `hpack`
//! 0.3 is unmaintained since 2016; h2 does not export its codec. We add a
//! small walker (`hpack::scan`) for what the crate does not expose: each
//! field's representation and the position of table size updates. The
//! walker also decodes Huffman-coded strings itself (`huffman`, a table
//! computed at compile time) and hands the crate the block with raw strings:
//! `loona-hpack` rebuilds its Huffman table (`HashMap`s) for every such
//! string and then decodes bit by bit, which was 97% of the instructions the
//! step added per request (h2 and grpc-go send `:path` Huffman-coded in
//! every request); see `authority/benches/authority.rs` for the figures.
//!
//! # Limits
//! See [`AuthorityLimits`]. Exceeding one, or any malformed framing or HPACK,
//! is a connection error: a GOAWAY with the matching code is sent to the
//! client when the server's output is at a frame boundary, and `poll_read`
//! then returns an [`std::io::ErrorKind::InvalidData`] error wrapping the
//! [`AuthorityError`], which ends hyper's connection. Nothing panics on any
//! input. Memory per connection: one 16 KiB read buffer, one header block
//! (`max_header_block`), its copy with raw strings (about 8/5 of it at
//! most) and its re-encoding (bounded by `max_header_list`), the output not
//! yet taken by hyper (the rewriter stops at 64 KiB of it, plus at most one
//! re-encoded block: HPACK lets ten input bytes stand for kilobytes of
//! fields, so input is paced by output), and the HPACK dynamic table
//! (`max_table_size`).
//!
//! # Backpressure and shutdown
//! The client is read only when everything read before has been rewritten
//! and handed to hyper, so hyper's reading pace is the client's. Writes go
//! straight to the socket (vectored when it supports it) and are only
//! observed; flush and shutdown pass through, after a pending GOAWAY.
//!
//! # Cancel safety
//! All state lives in the struct between polls; dropping a pending read or
//! write loses nothing that was not already reported as transferred.
//!
//! # Tests
//! `tests.rs` (frames and HPACK, limits, property tests over random and
//! mutated streams), `tests/e2e.rs` (a hyper 1 HTTP/2 server with and
//! without the step, a raw client sending each authority form; and,
//! ignored unless Python grpcio is installed, a real C-core client), and the
//! libFuzzer target `authority_frames` in `proxy/fuzz` (`cargo +nightly fuzz
//! run authority_frames`), which drives `fuzz_bridge` (compiled only with
//! `--cfg fuzzing`).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// Only for the fuzz target in `proxy/fuzz` (`cargo fuzz` sets `--cfg fuzzing`).
mod frame;
#[cfg(any(test, fuzzing))]
pub mod fuzz_bridge;
mod hpack;
mod huffman;
pub mod relay;
mod rewriter;

pub use huffman::HuffmanError;

use rewriter::Rewriter;

/// What an unacceptable `:authority` becomes.
const LOCALHOST: &[u8] = b"localhost";

/// Bytes read from the client per read call.
const READ_CHUNK: usize = 16 * 1024;

/// Limits of the rewrite step. Frame size is not here: it is the server's
/// own SETTINGS_MAX_FRAME_SIZE, read from its SETTINGS frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityLimits {
    /// Largest header block buffered: HEADERS plus CONTINUATION payloads.
    /// Default 64 KiB. A frame that would cross it is refused before any of
    /// its payload is buffered (`ENHANCE_YOUR_CALM`).
    pub max_header_block: usize,
    /// Largest decoded header list (names + values + 32 octets per field, as
    /// RFC 9113 §6.5.2 counts it). Default 64 KiB. hyper's own, smaller,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB) is still enforced by h2 per
    /// stream; this one bounds our memory (`ENHANCE_YOUR_CALM`).
    pub max_header_list: usize,
    /// Largest HPACK dynamic table the client may select, even if the server
    /// advertised more. Default 64 KiB; the server's default is 4096
    /// (`COMPRESSION_ERROR` above the smaller of the two).
    pub max_table_size: usize,
}

impl Default for AuthorityLimits {
    fn default() -> Self {
        Self {
            max_header_block: 64 * 1024,
            max_header_list: 64 * 1024,
            max_table_size: 64 * 1024,
        }
    }
}

/// A connection error found on the client's byte stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    #[error("client connection preface is not HTTP/2")]
    BadPreface,
    #[error("frame of {len} bytes exceeds SETTINGS_MAX_FRAME_SIZE {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("header block exceeds {max} bytes")]
    HeaderBlockTooLarge { max: usize },
    #[error("decoded header list exceeds {max} bytes")]
    HeaderListTooLarge { max: usize },
    #[error(
        "frame type {frame_type:#x} while the header block of stream {stream} awaits CONTINUATION"
    )]
    ExpectedContinuation { stream: u32, frame_type: u8 },
    #[error("CONTINUATION on stream {stream} without an open header block")]
    UnexpectedContinuation { stream: u32 },
    #[error("HEADERS frame on stream {stream} too short for its padding or priority")]
    BadPadding { stream: u32 },
    #[error("malformed HPACK representation")]
    HpackMalformed,
    #[error("HPACK decoding failed")]
    Hpack(#[source] loona_hpack::decoder::DecoderError),
    #[error("invalid Huffman-coded string")]
    Huffman(#[source] HuffmanError),
    #[error("dynamic table size update to {requested} above {max}")]
    TableSizeTooLarge { requested: usize, max: usize },
    #[error("dynamic table size update after a header field")]
    TableSizeUpdateNotAtStart,
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl AuthorityError {
    /// The HTTP/2 error code sent in our GOAWAY (RFC 9113 §7).
    pub(crate) fn h2_error_code(&self) -> u32 {
        const PROTOCOL_ERROR: u32 = 0x1;
        const INTERNAL_ERROR: u32 = 0x2;
        const FRAME_SIZE_ERROR: u32 = 0x6;
        const COMPRESSION_ERROR: u32 = 0x9;
        const ENHANCE_YOUR_CALM: u32 = 0xb;
        match self {
            Self::BadPreface
            | Self::ExpectedContinuation { .. }
            | Self::UnexpectedContinuation { .. }
            | Self::BadPadding { .. } => PROTOCOL_ERROR,
            Self::FrameTooLarge { .. } => FRAME_SIZE_ERROR,
            Self::HeaderBlockTooLarge { .. } | Self::HeaderListTooLarge { .. } => ENHANCE_YOUR_CALM,
            Self::HpackMalformed
            | Self::Hpack(_)
            | Self::Huffman(_)
            | Self::TableSizeTooLarge { .. }
            | Self::TableSizeUpdateNotAtStart => COMPRESSION_ERROR,
            Self::Internal(_) => INTERNAL_ERROR,
        }
    }
}

/// The client connection seen through the rewrite: read it as the server
/// would read the client, write to it as to the client. See the module docs.
#[derive(Debug)]
pub struct AuthorityRewrite<IO> {
    io: IO,
    rewriter: Rewriter,
    /// Bytes read from the client; `read_buf[read_pos..read_len]` is not yet
    /// fed to the rewriter.
    read_buf: Box<[u8]>,
    read_pos: usize,
    read_len: usize,
    /// Rewritten bytes not yet handed to the reader, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
    failed: Option<AuthorityError>,
    /// GOAWAY bytes still to write to the client, from `goaway_pos` on.
    goaway: Vec<u8>,
    goaway_pos: usize,
}

impl<IO> AuthorityRewrite<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps the accepted client connection `io`.
    pub fn new(io: IO, limits: AuthorityLimits) -> Self {
        Self {
            io,
            rewriter: Rewriter::new(limits),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            read_pos: 0,
            read_len: 0,
            out: Vec::new(),
            out_pos: 0,
            eof: false,
            failed: None,
            goaway: Vec::new(),
            goaway_pos: 0,
        }
    }

    fn fail(&mut self, error: AuthorityError) {
        tracing::debug!(%error, "closing client connection: authority rewrite failed");
        if self.rewriter.server_at_frame_boundary() {
            self.goaway = self.rewriter.goaway(&error);
            self.goaway_pos = 0;
        }
        self.failed = Some(error);
    }

    /// Writes any pending GOAWAY. Write errors end the attempt quietly: the
    /// connection is being closed anyway, and the read side reports why.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.goaway_pos < self.goaway.len() {
            let pending = self.goaway.get(self.goaway_pos..).unwrap_or_default();
            match ready!(Pin::new(&mut self.io).poll_write(cx, pending)) {
                Ok(n) if n > 0 => self.goaway_pos += n,
                _ => break,
            }
        }
        if !self.goaway.is_empty() {
            self.goaway.clear();
            self.goaway_pos = 0;
            // Best effort: push the GOAWAY out before hyper drops the socket.
            let _ = ready!(Pin::new(&mut self.io).poll_flush(cx));
        }
        Poll::Ready(())
    }
}

impl<IO> AsyncRead for AuthorityRewrite<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.out_pos < this.out.len() {
                let pending = this.out.get(this.out_pos..).unwrap_or_default();
                let n = pending.len().min(buf.remaining());
                buf.put_slice(pending.get(..n).unwrap_or_default());
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = &this.failed {
                let error = error.clone();
                ready!(this.poll_goaway(cx));
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
            if this.read_pos < this.read_len {
                let input = this
                    .read_buf
                    .get(this.read_pos..this.read_len)
                    .unwrap_or_default();
                match this.rewriter.feed(input, &mut this.out) {
                    Ok(consumed) => this.read_pos += consumed,
                    Err(error) => this.fail(error),
                }
                continue;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Only read from the client once everything read so far has been
            // rewritten and taken: hyper's reading pace is the backpressure.
            let mut read = ReadBuf::new(&mut this.read_buf);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            this.read_pos = 0;
            this.read_len = read.filled().len();
            if this.read_len == 0 {
                // A frame cut short by EOF is the server's to report.
                this.eof = true;
            }
        }
    }
}

impl<IO> AsyncWrite for AuthorityRewrite<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_goaway(cx));
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.rewriter
            .observe_server(buf.get(..n).unwrap_or_default());
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_goaway(cx));
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            this.rewriter
                .observe_server(b.get(..take).unwrap_or_default());
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_goaway(cx));
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_goaway(cx));
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
