//! The frame relay: one client HTTP/2 connection relayed to one server
//! connection frame by frame, with the calls a [`Doorman`] holds answered
//! in between.
//!
//! # Why
//! A proxy that terminates HTTP/2 on both sides (hyper server, hyper
//! client) decodes and re-encodes every call twice and hands it across four
//! tasks; on a hot CRI call that is most of what pullgate adds over a bare
//! byte copy (`bench/results/floor/callgrind.md`). Here a call that needs
//! no decision costs its frames' headers and one HPACK re-encoding, in one
//! task, between the same reads and writes a byte relay makes.
//!
//! # What
//! [`relay`] reads the client's bytes through the [`AuthorityRewrite`]
//! step's rewriter, so every request header block reaches the server
//! re-encoded without the dynamic table: blocks can then be held, dropped
//! or reordered without the server's HPACK decoder losing step. For each
//! new stream the doorman [`Doorman::classify`]s the decoded fields:
//! - [`Disposition::Relay`]: its frames go to the server as they come;
//! - [`Disposition::Hold`]: its request is collected (at most its
//!   `max_body`), handed to [`Doorman::answer`], and then either
//!   [`Answer::Forward`]ed to the server (the same fields, the body the
//!   doorman gives) or [`Answer::Reply`]ed here.
//!
//! The server's frames go to the client as they are (its header blocks
//! unchanged, so the client's HPACK decoder follows the server's encoder);
//! what the relay writes itself never touches a dynamic table.
//!
//! # Design
//! - Stream ids: the server sees its own sequence, given when a stream is
//!   first sent to it (a held stream goes later than streams opened after
//!   it); frames are mapped both ways.
//! - Flow control: the relay keeps both connection windows as the receivers
//!   see them, and never sends more than they allow: a DATA frame that does
//!   not fit waits, and its side is not read meanwhile. Bytes the relay
//!   consumes (held bodies) are credited back to their sender at once;
//!   bytes it sends on its own account (forwarded bodies, replies) are
//!   kept out of the credits passed on later, so each side's view of the
//!   other's window stays within the truth. Stream windows of relayed
//!   streams pass through; those of held and replied streams are the
//!   relay's.
//! - SETTINGS pass through, the server's SETTINGS_MAX_CONCURRENT_STREAMS
//!   capped at `max_streams`, which the relay also enforces
//!   (`REFUSED_STREAM`).
//! - PING is hop by hop: the relay answers each side's PINGs itself and
//!   passes none on (its own keepalive PINGs go to the client only). A
//!   client's PINGs are about its connection to the relay; passed on, the
//!   BDP PINGs grpc-go sends after DATA the relay wrote itself reach a
//!   server that wrote nothing since, which grpc-go's server counts as
//!   abuse (GOAWAY `too_many_pings`).
//! - GOAWAY from the server: its streams beyond the last it took are
//!   refused to the client (`REFUSED_STREAM`, safe to retry), no new stream
//!   is taken, the connection ends when the others finish.
//!
//! # Limits
//! Per connection: streams (`max_streams`), one held body each (its
//! `max_body`, at most `max_held_body`, plus one frame), output to each
//! side (64 KiB, then the other side is not read), frames waiting on a
//! flow-control window (2.25 MiB, past it `FLOW_CONTROL_ERROR`), one
//! header block per side (the
//! client's within [`AuthorityLimits`], the server's within 1 MiB), and
//! the ids of the last 256 streams the client closed. Any malformed
//! framing ends the connection with GOAWAY. Nothing panics on any input.
//!
//! [`AuthorityRewrite`]: crate::AuthorityRewrite

mod core;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use self::core::{ConnError, Core};
use crate::AuthorityLimits;

/// A decoded header field: name and value.
pub type Field = (Vec<u8>, Vec<u8>);

/// A held request, complete.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its header fields, pseudo-headers first, as the client sent them
    /// (`:authority` as the rewrite left it).
    pub fields: Vec<Field>,
    /// Its body (for gRPC: the length-prefixed messages).
    pub body: Bytes,
}

impl Call {
    /// The first value of field `name`.
    pub fn field(&self, name: &[u8]) -> Option<&[u8]> {
        field(&self.fields, name)
    }
}

/// The first value of field `name` in `fields`.
pub fn field<'a>(fields: &'a [Field], name: &[u8]) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// What happens to a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Its frames are relayed to the server as they come.
    Relay,
    /// Its request is held for [`Doorman::answer`]: once complete, or as
    /// soon as its body passes `max_body` bytes (then the rest is not read,
    /// and the doorman sees a body over its size).
    Hold {
        /// Body bytes the doorman reads at most.
        max_body: usize,
    },
}

/// A response the relay sends itself.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Response header fields, `:status` first.
    pub head: Vec<Field>,
    /// Body; may be empty.
    pub body: Bytes,
    /// Trailer fields; none for a headers-only (gRPC trailers-only) response.
    pub trailers: Vec<Field>,
}

/// Held with a forwarded call until the server's answer on its stream
/// ends (or the stream is reset), then dropped: e.g. a timer of the call.
pub type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// The doorman's answer to a held call.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Send the call to the server with this body, holding `keep` until it is answered.
    Forward {
        /// The request body to send.
        body: Bytes,
        /// Dropped when the call's stream ends.
        keep: Option<Keep>,
    },
    /// Answer the client here.
    Reply(Reply),
}

/// Decides which streams are held, and answers them.
pub trait Doorman: Send + Sync + 'static {
    /// Held while a stream is open (to count calls in flight).
    type Guard: Send + 'static;

    /// Relay or hold a new stream with these request fields.
    fn classify(&self, fields: &[Field]) -> Disposition;

    /// A stream opens.
    fn enter(&self) -> Self::Guard;

    /// The answer to a held call. Dropped (cancelled) if the client resets
    /// the stream or the connection ends first.
    fn answer(&self, call: Call) -> Pin<Box<dyn Future<Output = Answer> + Send + 'static>>;
}

/// Limits of one relayed connection. See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// The `:authority` rewrite's limits.
    pub authority: AuthorityLimits,
    /// Streams open at once.
    pub max_streams: u32,
    /// Largest held request body, whatever [`Disposition::Hold`] says.
    pub max_held_body: usize,
    /// PING the client this often; end the connection if it has not
    /// answered within the second duration.
    pub keepalive: Option<(Duration, Duration)>,
}

/// Why a relayed connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Reading or writing the client's socket failed (the server's closing
    /// is not an error: its calls are answered `UNAVAILABLE`).
    #[error("client: {0}")]
    Io(#[source] std::io::Error),
    /// A side broke HTTP/2 (or a limit); GOAWAY was sent to the client.
    #[error("HTTP/2: {0}")]
    Protocol(String),
    /// The client did not answer a keepalive PING in time.
    #[error("client did not answer a keepalive PING")]
    KeepaliveTimeout,
}

impl From<ConnError> for RelayError {
    fn from(e: ConnError) -> Self {
        Self::Protocol(e.to_string())
    }
}

const READ_CHUNK: usize = 16 * 1024;

/// Relays `client` to `server` until either closes, or until `drain`
/// completes and the streams then open have finished.
///
/// # Errors
/// [`RelayError`] when a socket fails, a side breaks HTTP/2 or a limit, or
/// the client stops answering keepalive PINGs.
pub async fn relay<C, S, D, F>(
    client: C,
    server: S,
    doorman: Arc<D>,
    limits: RelayLimits,
    drain: F,
) -> Result<(), RelayError>
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    S: AsyncRead + AsyncWrite + Send + 'static,
    D: Doorman,
    F: Future<Output = ()>,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let mut core: Core<D::Guard> =
        Core::new(limits.authority, limits.max_streams, limits.max_held_body);
    let (answers_tx, mut answers) = mpsc::channel::<(u32, Answer)>(limits.max_streams as usize + 1);
    let mut tasks = JoinSet::new();
    let mut pending: std::collections::HashMap<u32, AbortHandle> = std::collections::HashMap::new();
    let mut client_buf = vec![0u8; READ_CHUNK];
    let mut server_buf = vec![0u8; READ_CHUNK];
    let (mut to_client_pos, mut to_server_pos) = (0usize, 0usize);
    let mut draining = false;
    tokio::pin!(drain);
    let mut keepalive = limits.keepalive.map(|(every, _)| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut ping_sent: Option<tokio::time::Instant> = None;
    let d = Arc::clone(&doorman);
    let classify = move |fields: &[Field]| d.classify(fields);
    let d = Arc::clone(&doorman);
    let enter = move || d.enter();

    let mut failed = None;
    let result: Result<(), RelayError> = loop {
        let ready: Vec<(u32, Call)> = core.ready.drain(..).collect();
        for (id, call) in ready {
            let mut answer = doorman.answer(call);
            // A decision already made (a cached verdict) is taken now,
            // without a task.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if let Poll::Ready(a) = answer.as_mut().poll(&mut cx) {
                if let Err(e) = core.answer(id, a) {
                    failed = Some(e);
                    break;
                }
                continue;
            }
            let tx = answers_tx.clone();
            let handle = tasks.spawn(async move {
                let a = answer.await;
                let _ = tx.send((id, a)).await;
            });
            pending.insert(id, handle);
        }
        if let Some(e) = failed.take() {
            break fail(&mut core, e);
        }
        for id in core.cancelled.drain(..) {
            if let Some(h) = pending.remove(&id) {
                h.abort();
            }
        }
        while tasks.try_join_next().is_some() {}
        if core.server_is_gone() {
            core.to_server.clear();
            to_server_pos = 0;
        }
        if core.finished() && core.to_client.is_empty() && core.to_server.is_empty() {
            break Ok(());
        }
        if let (Some(at), Some((_, timeout))) = (ping_sent, limits.keepalive) {
            if core.ping_answered {
                ping_sent = None;
            } else if at.elapsed() > timeout {
                break Err(RelayError::KeepaliveTimeout);
            }
        }
        let ping_deadline = ping_sent
            .zip(limits.keepalive)
            .map(|(at, (_, timeout))| at + timeout);
        tokio::select! {
            biased;
            r = client_write.write(core.to_client.get(to_client_pos..).unwrap_or_default()),
                if to_client_pos < core.to_client.len() =>
            {
                match r {
                    Ok(0) | Err(_) => break r.map(|_| ()).map_err(RelayError::Io),
                    Ok(n) => {
                        core.written_to_client(to_client_pos, n);
                        to_client_pos += n;
                        if to_client_pos == core.to_client.len() {
                            core.to_client.clear();
                            to_client_pos = 0;
                        }
                    }
                }
            }
            r = server_write.write(core.to_server.get(to_server_pos..).unwrap_or_default()),
                if to_server_pos < core.to_server.len() =>
            {
                match r {
                    // As when it closes: held calls go on, relayed ones are answered.
                    Ok(0) | Err(_) => core.server_closed(),
                    Ok(n) => {
                        to_server_pos += n;
                        if to_server_pos == core.to_server.len() {
                            core.to_server.clear();
                            to_server_pos = 0;
                        }
                    }
                }
            }
            Some((id, answer)) = answers.recv() => {
                pending.remove(&id);
                if let Err(e) = core.answer(id, answer) {
                    break fail(&mut core, e);
                }
            }
            r = client_read.read(&mut client_buf), if core.wants_client() => {
                match r {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        let input = client_buf.get(..n).unwrap_or_default();
                        if let Err(e) = core.client_bytes(input, &classify, &enter) {
                            break fail(&mut core, e);
                        }
                    }
                    Err(source) => break Err(RelayError::Io(source)),
                }
            }
            r = server_read.read(&mut server_buf), if core.wants_server() => {
                match r {
                    Ok(0) | Err(_) => core.server_closed(),
                    Ok(n) => {
                        let input = server_buf.get(..n).unwrap_or_default();
                        let step = core
                            .server_bytes(input)
                            .and_then(|()| core.resume_client(&classify, &enter));
                        if let Err(e) = step {
                            break fail(&mut core, e);
                        }
                    }
                }
            }
            () = &mut drain, if !draining => {
                draining = true;
                core.drain();
            }
            _ = async { if let Some(k) = keepalive.as_mut() { k.tick().await; } else { std::future::pending::<()>().await; } },
                if ping_sent.is_none() =>
            {
                core.ping();
                ping_sent = Some(tokio::time::Instant::now());
            }
            () = async { if let Some(at) = ping_deadline { tokio::time::sleep_until(at).await } else { std::future::pending::<()>().await } },
                if ping_deadline.is_some() => {}
        }
    };
    // Whatever is left for the client (a GOAWAY among it) goes out if it can.
    if let Some(rest) = core.to_client.get(to_client_pos..) {
        if !rest.is_empty() {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), client_write.write_all(rest)).await;
        }
    }
    let _ = client_write.shutdown().await;
    let _ = server_write.shutdown().await;
    tasks.abort_all();
    result
}

/// Sends the GOAWAY for `e` and returns it as the relay's error.
fn fail<G>(core: &mut Core<G>, e: ConnError) -> Result<(), RelayError> {
    tracing::debug!(error = %e, "ending relayed connection");
    core.fail(&e);
    Err(e.into())
}

/// Drives a relay core as [`relay`] does, without sockets: `client` and
/// `server` bytes fed `chunk` at a time by turns, every held call answered
/// at once (by turns a reply and a forward), all output taken as written;
/// then, if `server_closes`, the server's connection closed. Panics if the
/// output of one turn outgrows its bound. For the `relay_frames` fuzz
/// target and its proptest.
#[cfg(any(test, fuzzing))]
pub(crate) fn exercise(client: &[u8], server: &[u8], chunk: usize, server_closes: bool) {
    // Per turn: what waited on a window, one read's worth of each side, and replies.
    const BOUND: usize = 4 << 20;
    let limits = AuthorityLimits {
        max_header_block: 4096,
        max_header_list: 4096,
        max_table_size: 4096,
    };
    let mut core: Core<()> = Core::new(limits, 8, 4096);
    let classify = |fields: &[Field]| match field(fields, b":path") {
        Some(p) if p.starts_with(b"/hold") => Disposition::Hold { max_body: 1024 },
        _ => Disposition::Relay,
    };
    let enter = || ();
    let (mut from_client, mut from_server) =
        (client.chunks(chunk.max(1)), server.chunks(chunk.max(1)));
    let mut turn = 0u32;
    loop {
        let (c, s) = (from_client.next(), from_server.next());
        if c.is_none() && s.is_none() {
            break;
        }
        let mut step = Ok(());
        if let Some(c) = c.filter(|_| core.wants_client()) {
            step = core.client_bytes(c, &classify, &enter);
        }
        if let Some(s) = s.filter(|_| step.is_ok() && core.wants_server()) {
            step = core
                .server_bytes(s)
                .and_then(|()| core.resume_client(&classify, &enter));
        }
        for (id, call) in std::mem::take(&mut core.ready) {
            turn += 1;
            let answer = if turn.is_multiple_of(2) {
                Answer::Forward {
                    body: call.body,
                    keep: None,
                }
            } else {
                Answer::Reply(Reply::grpc_error(7, "denied"))
            };
            step = step.and_then(|()| core.answer(id, answer));
        }
        core.cancelled.clear();
        if let Err(e) = step {
            core.fail(&e);
            return;
        }
        assert!(
            core.to_client.len() <= BOUND,
            "{} bytes for the client",
            core.to_client.len()
        );
        assert!(
            core.to_server.len() <= BOUND,
            "{} bytes for the server",
            core.to_server.len()
        );
        let n = core.to_client.len();
        core.written_to_client(0, n);
        core.to_client.clear();
        core.to_server.clear();
    }
    if server_closes {
        core.server_closed();
    }
}

#[cfg(test)]
mod tests;
