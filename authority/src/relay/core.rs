//! The relay as a state machine without I/O: bytes from each side in,
//! bytes for each side out, held calls out, answers in.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::{Answer, Call, Disposition, Field, Reply};
use crate::frame::{self, Frame, FrameBuf, TooLarge};
use crate::rewriter::Rewriter;
use crate::{hpack, AuthorityError, AuthorityLimits};

/// Output not yet written to a side above which the other side is not read.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// Payload of the relay's own keepalive PING to the client.
pub(crate) const KEEPALIVE: [u8; 8] = *b"pullgate";

/// Streams closed by the client whose server frames may still arrive.
const RECENTLY_CLOSED: usize = 256;

/// Bytes the relay may have sent on its own account to a side and not yet
/// kept out of that side's credits: the most by which the other side can
/// overrate the window, and so the most of its DATA that can wait.
const MAX_DEBT: u64 = 256 * 1024;

/// Frames waiting behind a DATA frame, in bytes, above which the side that
/// sent them broke flow control (a peer that keeps to it stays within
/// [`MAX_DEBT`], one frame, and the heads of new calls).
const MAX_WAITING: usize = MAX_DEBT as usize + 2 * (1 << 20);

/// gRPC `UNAVAILABLE`, and why, for calls the server's connection took down with it.
const UNAVAILABLE: u32 = 14;
const SERVER_GONE: &str = "containerd closed its connection";

/// Largest header block the server may send (HEADERS + CONTINUATION).
const MAX_SERVER_BLOCK: usize = 1 << 20;

/// Why the relay ends a connection: the GOAWAY code and a reason for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (HTTP/2 error {code:#x})")]
pub(crate) struct ConnError {
    pub(crate) code: u32,
    pub(crate) reason: String,
}

impl ConnError {
    fn protocol(reason: impl Into<String>) -> Self {
        Self {
            code: frame::PROTOCOL_ERROR,
            reason: reason.into(),
        }
    }
}

impl From<AuthorityError> for ConnError {
    fn from(e: AuthorityError) -> Self {
        Self {
            code: e.h2_error_code(),
            reason: e.to_string(),
        }
    }
}

impl From<TooLarge> for ConnError {
    fn from(e: TooLarge) -> Self {
        Self {
            code: frame::FRAME_SIZE_ERROR,
            reason: format!("frame of {} bytes over {}", e.len, e.max),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Frames relayed; `u` is the stream's id on the server connection.
    Relayed { u: u32 },
    /// Held until answered: the request's fields, re-encoded block and body.
    Held {
        fields: Vec<Field>,
        block: Bytes,
        body: BytesMut,
        /// Body bytes past which the call is handed out as it is.
        max_body: usize,
        /// Handed out (complete, or over `max_body`).
        ended: bool,
    },
    /// Answered [`Answer::Forward`]: the body is being sent to the server.
    Forwarding { u: u32, body: Bytes, window: i64 },
    /// Answered [`Answer::Reply`]: the reply is being sent to the client.
    Replying {
        body: Bytes,
        trailers: Option<Vec<u8>>,
    },
}

#[derive(Debug)]
struct Stream<G> {
    state: State,
    /// The client's window for what is sent to it on this stream, when the
    /// relay sends it (held and replying streams).
    window: i64,
    client_done: bool,
    server_done: bool,
    /// The server's response head went to the client.
    response_started: bool,
    /// What the doorman gave to hold until a forwarded call ends.
    _keep: Option<super::Keep>,
    _guard: G,
}

/// A header block being collected from one side.
#[derive(Debug)]
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    /// Client side: the block's content. Server side: the frames, rewritten.
    bytes: Vec<u8>,
}

/// See the module docs of [`super`].
#[derive(Debug)]
pub(crate) struct Core<G> {
    max_streams: u32,
    max_held_body: usize,
    rewriter: Rewriter,
    /// Rewritten client bytes not yet cut into frames.
    /// Client bytes read, not yet fed to the rewriter.
    client_in: BytesMut,
    /// Bytes of the connection preface still to pass to the server.
    preface_left: usize,
    from_client: FrameBuf,
    from_server: FrameBuf,
    pub(crate) to_client: Vec<u8>,
    pub(crate) to_server: Vec<u8>,
    streams: HashMap<u32, Stream<G>>,
    /// Server stream id → client stream id, for open and recently closed streams.
    by_server: HashMap<u32, u32>,
    closed: VecDeque<u32>,
    last_client: u32,
    next_server: u32,
    /// What the relay may still send on each connection.
    to_client_window: SendWindow,
    to_server_window: SendWindow,
    client_initial: i64,
    server_initial: i64,
    client_block: Option<OpenBlock>,
    server_block: Option<OpenBlock>,
    /// From a DATA frame that waits for the receiver's connection window
    /// on: the frames of that side on streams (stream 0's go at once).
    waiting_client: Waiting,
    waiting_server: Waiting,
    server_settings_seen: bool,
    pub(crate) ready: Vec<(u32, Call)>,
    pub(crate) cancelled: Vec<u32>,
    forwarding: VecDeque<u32>,
    replying: VecDeque<u32>,
    draining: bool,
    /// The server sent GOAWAY: no new stream goes to it.
    server_refuses: bool,
    /// The server's connection is closed.
    server_gone: bool,
    pub(crate) ping_answered: bool,
}

impl<G> Core<G> {
    pub(crate) fn new(authority: AuthorityLimits, max_streams: u32, max_held_body: usize) -> Self {
        let mut rewriter = Rewriter::new(authority);
        rewriter.keep_fields();
        Self {
            max_streams,
            max_held_body,
            rewriter,
            // The rewriter checks the client's frame sizes against the
            // server's SETTINGS; its output is cut within the largest legal.
            client_in: BytesMut::new(),
            preface_left: crate::rewriter::PREFACE.len(),
            from_client: FrameBuf::new(frame::MAX_MAX_FRAME_SIZE),
            from_server: FrameBuf::new(frame::SAFE_FRAME),
            to_client: Vec::new(),
            to_server: Vec::new(),
            streams: HashMap::new(),
            by_server: HashMap::new(),
            closed: VecDeque::new(),
            last_client: 0,
            next_server: 1,
            to_client_window: SendWindow::default(),
            to_server_window: SendWindow::default(),
            client_initial: frame::DEFAULT_WINDOW,
            server_initial: frame::DEFAULT_WINDOW,
            client_block: None,
            server_block: None,
            waiting_client: Waiting::default(),
            waiting_server: Waiting::default(),
            server_settings_seen: false,
            ready: Vec::new(),
            cancelled: Vec::new(),
            forwarding: VecDeque::new(),
            replying: VecDeque::new(),
            draining: false,
            server_refuses: false,
            server_gone: false,
            ping_answered: true,
        }
    }

    /// Whether bytes from the client may be read now.
    pub(crate) fn wants_client(&self) -> bool {
        self.waiting_client.bytes < MAX_WAITING
            && self.client_in.is_empty()
            && self.to_server.len() < HIGH_WATER
            && self.to_client.len() < HIGH_WATER
    }

    /// Whether bytes from the server may be read now.
    pub(crate) fn wants_server(&self) -> bool {
        !self.server_gone
            && self.waiting_server.bytes < MAX_WAITING
            && self.to_client.len() < HIGH_WATER
            // The relay's PING answers; forwarded bodies are within the server's window.
            && self.to_server.len() < MAX_WAITING
    }

    /// Whether the server's connection is closed.
    pub(crate) fn server_is_gone(&self) -> bool {
        self.server_gone
    }

    /// Whether nothing is left to do but close: draining and no stream open.
    pub(crate) fn finished(&self) -> bool {
        (self.draining || self.server_gone) && self.streams.is_empty()
    }

    /// Notes that `to_client[from..from + n]` was written to the client
    /// (the rewriter follows the server's SETTINGS in it).
    pub(crate) fn written_to_client(&mut self, from: usize, n: usize) {
        if let Some(bytes) = self.to_client.get(from..from.saturating_add(n)) {
            self.rewriter.observe_server(bytes);
        }
    }

    /// Sends GOAWAY: no new stream is taken; open ones finish.
    pub(crate) fn drain(&mut self) {
        if !self.draining {
            self.draining = true;
            frame::goaway(&mut self.to_client, self.last_client, frame::NO_ERROR);
        }
    }

    /// The connection error `e` for the client, before closing.
    pub(crate) fn fail(&mut self, e: &ConnError) {
        frame::goaway(&mut self.to_client, self.last_client, e.code);
    }

    pub(crate) fn ping(&mut self) {
        self.ping_answered = false;
        frame::ping(&mut self.to_client, false, &KEEPALIVE);
    }

    /// Bytes read from the client.
    pub(crate) fn client_bytes(
        &mut self,
        input: &[u8],
        classify: &dyn Fn(&[Field]) -> Disposition,
        enter: &dyn Fn() -> G,
    ) -> Result<(), ConnError> {
        self.client_in.extend_from_slice(input);
        self.client_frames(classify, enter)
    }

    /// Handles client frames until input runs out or a DATA frame waits
    /// for the server's window. The rewriter is fed a little at a time, so
    /// what HPACK expands stays within one feed while frames wait.
    fn client_frames(
        &mut self,
        classify: &dyn Fn(&[Field]) -> Disposition,
        enter: &dyn Fn() -> G,
    ) -> Result<(), ConnError> {
        let mut rewritten = Vec::new();
        while self.waiting_client.bytes < MAX_WAITING {
            if let Some(f) = self.from_client.next()? {
                self.client_frame(f, classify, enter)?;
                continue;
            }
            if self.client_in.is_empty() {
                break;
            }
            let n = self.rewriter.feed(&self.client_in, &mut rewritten)?;
            let _ = self.client_in.split_to(n.min(self.client_in.len()));
            // The rewriter checked the preface; it is not a frame.
            let preface = self.preface_left.min(rewritten.len());
            self.to_server
                .extend_from_slice(rewritten.get(..preface).unwrap_or_default());
            self.preface_left -= preface;
            self.from_client
                .extend(rewritten.get(preface..).unwrap_or_default());
            rewritten.clear();
        }
        Ok(())
    }

    /// Bytes read from the server.
    pub(crate) fn server_bytes(&mut self, input: &[u8]) -> Result<(), ConnError> {
        self.from_server.extend(input);
        self.server_frames()
    }

    fn server_frames(&mut self) -> Result<(), ConnError> {
        while self.waiting_server.bytes < MAX_WAITING {
            let Some(f) = self.from_server.next()? else {
                break;
            };
            self.server_frame(f)?;
        }
        Ok(())
    }

    /// The server closed its connection: open streams cannot finish.
    /// The server's connection is closed: what was relayed to it is
    /// answered `UNAVAILABLE`; held calls go on (the doorman has its own
    /// way to the server); no new stream is taken.
    pub(crate) fn server_closed(&mut self) {
        if self.server_gone {
            return;
        }
        self.server_gone = true;
        self.to_server.clear();
        self.waiting_server = Waiting::default();
        self.server_block = None;
        let lost: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Relayed { .. } | State::Forwarding { .. }))
            .map(|(&c, _)| c)
            .collect();
        for c in lost {
            let Some(s) = self.streams.remove(&c) else {
                continue;
            };
            let status = Reply::grpc_error(UNAVAILABLE, SERVER_GONE);
            if s.response_started {
                // Trailers after the head and whole DATA frames already sent.
                let fields: Vec<Field> = status
                    .head
                    .into_iter()
                    .filter(|(n, _)| n.starts_with(b"grpc-"))
                    .collect();
                frame::header_block(&mut self.to_client, c, &encode(&fields), true);
            } else {
                frame::header_block(&mut self.to_client, c, &encode(&status.head), true);
            }
            if !s.client_done {
                frame::rst_stream(&mut self.to_client, c, frame::NO_ERROR);
            }
        }
        self.drain();
    }

    fn client_frame(
        &mut self,
        f: Frame,
        classify: &dyn Fn(&[Field]) -> Disposition,
        enter: &dyn Fn() -> G,
    ) -> Result<(), ConnError> {
        if f.stream != 0 && !self.waiting_client.frames.is_empty() {
            self.waiting_client.push(f)?;
            return Ok(());
        }
        self.client_frame_now(f, classify, enter)
    }

    /// Handles a client frame that waits for nothing.
    fn client_frame_now(
        &mut self,
        f: Frame,
        classify: &dyn Fn(&[Field]) -> Disposition,
        enter: &dyn Fn() -> G,
    ) -> Result<(), ConnError> {
        match f.ty {
            frame::HEADERS | frame::CONTINUATION => {
                if f.ty == frame::HEADERS {
                    self.client_block = Some(OpenBlock {
                        stream: f.stream,
                        end_stream: f.has(frame::END_STREAM),
                        bytes: Vec::new(),
                    });
                }
                let content = if f.ty == frame::HEADERS {
                    f.content()
                        .ok_or_else(|| ConnError::protocol("HEADERS padding"))?
                } else {
                    f.payload.clone()
                };
                let Some(open) = self.client_block.as_mut() else {
                    return Err(ConnError::protocol("CONTINUATION without HEADERS"));
                };
                open.bytes.extend_from_slice(&content);
                if f.has(frame::END_HEADERS) {
                    if let Some(open) = self.client_block.take() {
                        let fields = self.rewriter.take_fields().unwrap_or_default();
                        self.client_headers(open, fields, classify, enter)?;
                    }
                }
            }
            frame::DATA => self.client_data(f)?,
            frame::PRIORITY => {
                if let Some(u) = self.relayed(f.stream) {
                    // A dependency names a client stream id: dropped.
                    let mut p = f.payload.to_vec();
                    if let Some(dep) = p.get_mut(..4) {
                        dep.copy_from_slice(&0u32.to_be_bytes());
                    }
                    frame::head(&mut self.to_server, p.len(), frame::PRIORITY, 0, u);
                    self.to_server.extend_from_slice(&p);
                }
            }
            frame::RST_STREAM => self.client_reset(f)?,
            frame::SETTINGS => {
                if !f.has(frame::ACK) {
                    let params = frame::settings(&f.payload).ok_or(ConnError {
                        code: frame::FRAME_SIZE_ERROR,
                        reason: "SETTINGS length".into(),
                    })?;
                    for (id, value) in params {
                        if id == frame::SETTINGS_MAX_FRAME_SIZE {
                            // What the server may now send us.
                            let max = (value as usize)
                                .clamp(frame::SAFE_FRAME, frame::MAX_MAX_FRAME_SIZE);
                            self.from_server.set_max_payload(max);
                        }
                        if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                            let value = i64::from(value);
                            let delta = value - self.client_initial;
                            self.client_initial = value;
                            for s in self.streams.values_mut() {
                                s.window += delta;
                            }
                        }
                    }
                }
                f.write_as(0, &mut self.to_server);
                self.pump_replies();
            }
            frame::PUSH_PROMISE => return Err(ConnError::protocol("PUSH_PROMISE from a client")),
            // PING is hop by hop: answered here, never passed on. (A
            // client's BDP pings after DATA the relay wrote itself would
            // reach a server that wrote nothing since: grpc-go counts
            // those as strikes and closes with `too_many_pings`.)
            frame::PING => {
                let opaque = ping_payload(&f)?;
                if !f.has(frame::ACK) {
                    frame::ping(&mut self.to_client, true, &opaque);
                } else if opaque == KEEPALIVE {
                    self.ping_answered = true;
                }
            }
            frame::GOAWAY => f.write_as(0, &mut self.to_server),
            frame::WINDOW_UPDATE => self.client_window_update(&f)?,
            // Unknown types are ignored (RFC 9113 §4.1); they would name
            // client stream ids the server does not know.
            _ => {}
        }
        Ok(())
    }

    fn relayed(&self, client: u32) -> Option<u32> {
        match self.streams.get(&client)?.state {
            State::Relayed { u } | State::Forwarding { u, .. } => Some(u),
            _ => None,
        }
    }

    fn client_headers(
        &mut self,
        open: OpenBlock,
        fields: Vec<Field>,
        classify: &dyn Fn(&[Field]) -> Disposition,
        enter: &dyn Fn() -> G,
    ) -> Result<(), ConnError> {
        let id = open.stream;
        if id == 0 || id.is_multiple_of(2) {
            return Err(ConnError::protocol(format!("HEADERS on stream {id}")));
        }
        if let Some(s) = self.streams.get_mut(&id) {
            // Trailers: the request ends here.
            if !open.end_stream || s.client_done {
                return Err(ConnError::protocol("HEADERS in the middle of a request"));
            }
            s.client_done = true;
            match &mut s.state {
                State::Relayed { u } => {
                    let u = *u;
                    frame::header_block(&mut self.to_server, u, &open.bytes, true);
                    self.close_if_done(id);
                }
                State::Held { ended, .. } => {
                    *ended = true;
                    self.dispatch(id);
                }
                _ => {}
            }
            return Ok(());
        }
        if id <= self.last_client {
            frame::rst_stream(&mut self.to_client, id, frame::STREAM_CLOSED);
            return Ok(());
        }
        self.last_client = id;
        if self.draining
            || self.server_refuses
            || self.server_gone
            || self.streams.len() >= self.max_streams as usize
        {
            frame::rst_stream(&mut self.to_client, id, frame::REFUSED_STREAM);
            return Ok(());
        }
        if !well_formed_request(&fields) {
            // What is classified must be what the server routes on: a
            // request it might read otherwise (two `:path`s) goes nowhere.
            frame::rst_stream(&mut self.to_client, id, frame::PROTOCOL_ERROR);
            return Ok(());
        }
        let state = match classify(&fields) {
            Disposition::Relay => {
                let u = self.new_server_stream(id)?;
                frame::header_block(&mut self.to_server, u, &open.bytes, open.end_stream);
                State::Relayed { u }
            }
            Disposition::Hold { max_body } => State::Held {
                fields,
                block: Bytes::from(open.bytes),
                body: BytesMut::new(),
                max_body: max_body.min(self.max_held_body),
                ended: open.end_stream,
            },
        };
        let held = matches!(state, State::Held { .. });
        self.streams.insert(
            id,
            Stream {
                state,
                window: self.client_initial,
                client_done: open.end_stream,
                server_done: false,
                response_started: false,
                _keep: None,
                _guard: enter(),
            },
        );
        if held && open.end_stream {
            self.dispatch(id);
        }
        Ok(())
    }

    fn new_server_stream(&mut self, client: u32) -> Result<u32, ConnError> {
        let u = self.next_server;
        if u > 0x7fff_ffff {
            return Err(ConnError::protocol("server stream ids exhausted"));
        }
        self.next_server += 2;
        self.by_server.insert(u, client);
        Ok(u)
    }

    /// A held request is complete: hand it out.
    fn dispatch(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if let State::Held { fields, body, .. } = &mut s.state {
                let call = Call {
                    fields: fields.clone(),
                    body: std::mem::take(body).freeze(),
                };
                self.ready.push((id, call));
            }
        }
    }

    fn client_data(&mut self, f: Frame) -> Result<(), ConnError> {
        let len = f.payload.len();
        let end = f.has(frame::END_STREAM);
        let id = f.stream;
        let Some(s) = self.streams.get_mut(&id) else {
            if id == 0 || id > self.last_client {
                return Err(ConnError::protocol(format!("DATA on idle stream {id}")));
            }
            self.credit_client(0, len);
            return Ok(());
        };
        if s.client_done {
            self.credit_client(0, len);
            frame::rst_stream(&mut self.to_client, id, frame::STREAM_CLOSED);
            return Ok(());
        }
        let over = match &mut s.state {
            State::Relayed { u } => {
                let u = *u;
                if (len as i64) > self.to_server_window.open {
                    self.waiting_client.push(f)?;
                    return Ok(());
                }
                self.to_server_window.open -= len as i64;
                f.write_as(u, &mut self.to_server);
                if end {
                    s.client_done = true;
                    self.close_if_done(id);
                }
                return Ok(());
            }
            State::Held {
                body,
                ended,
                max_body,
                ..
            } => {
                if end {
                    s.client_done = true;
                }
                if *ended {
                    // Handed out over its size: the rest is not read.
                    self.credit_client(0, len);
                    return Ok(());
                }
                let content = f
                    .content()
                    .ok_or_else(|| ConnError::protocol("DATA padding"))?;
                body.extend_from_slice(&content);
                let over = body.len() > *max_body;
                if end || over {
                    *ended = true;
                }
                over
            }
            _ => {
                self.credit_client(0, len);
                return Ok(());
            }
        };
        self.credit_client(0, len);
        if !end {
            self.credit_client(id, len);
        }
        if end || over {
            // Over its size, the call goes out as far as it came: the
            // doorman answers it (its own size check refuses it).
            self.dispatch(id);
        }
        Ok(())
    }

    /// Gives the client back `len` bytes of window it spent on what the relay consumed.
    fn credit_client(&mut self, stream: u32, len: usize) {
        if let Ok(n) = u32::try_from(len) {
            if n > 0 {
                frame::window_update(&mut self.to_client, stream, n);
            }
        }
    }

    fn client_reset(&mut self, f: Frame) -> Result<(), ConnError> {
        let Some(s) = self.streams.remove(&f.stream) else {
            if f.stream == 0 || f.stream > self.last_client {
                return Err(ConnError::protocol(format!(
                    "RST_STREAM on idle stream {}",
                    f.stream
                )));
            }
            return Ok(());
        };
        match s.state {
            State::Relayed { u } | State::Forwarding { u, .. } => {
                f.write_as(u, &mut self.to_server);
                self.remember_closed(u);
            }
            State::Held { .. } => self.cancelled.push(f.stream),
            State::Replying { .. } => {}
        }
        Ok(())
    }

    fn client_window_update(&mut self, f: &Frame) -> Result<(), ConnError> {
        let inc = f.u31().ok_or(ConnError {
            code: frame::FRAME_SIZE_ERROR,
            reason: "WINDOW_UPDATE length".into(),
        })?;
        if f.stream == 0 {
            if inc == 0 {
                return Err(ConnError::protocol("WINDOW_UPDATE of 0"));
            }
            let pass = self.to_client_window.credit(inc);
            if pass > 0 {
                frame::window_update(&mut self.to_server, 0, pass);
            }
            self.resume_server()?;
            self.pump_replies();
            return Ok(());
        }
        match self.streams.get_mut(&f.stream) {
            Some(s) => match s.state {
                State::Relayed { u } | State::Forwarding { u, .. } => {
                    frame::window_update(&mut self.to_server, u, inc.max(1));
                }
                _ => {
                    s.window = (s.window + i64::from(inc)).min(frame::MAX_WINDOW);
                    self.pump_replies();
                }
            },
            None if f.stream > self.last_client => {
                return Err(ConnError::protocol("WINDOW_UPDATE on an idle stream"));
            }
            None => {}
        }
        Ok(())
    }

    fn remember_closed(&mut self, u: u32) {
        self.closed.push_back(u);
        while self.closed.len() > RECENTLY_CLOSED {
            if let Some(old) = self.closed.pop_front() {
                self.by_server.remove(&old);
            }
        }
    }

    fn close_if_done(&mut self, id: u32) {
        let done = self
            .streams
            .get(&id)
            .is_some_and(|s| s.client_done && s.server_done);
        if done {
            if let Some(s) = self.streams.remove(&id) {
                if let State::Relayed { u } | State::Forwarding { u, .. } = s.state {
                    self.remember_closed(u);
                }
            }
        }
    }

    fn server_frame(&mut self, f: Frame) -> Result<(), ConnError> {
        if f.stream != 0 && !self.waiting_server.frames.is_empty() {
            self.waiting_server.push(f)?;
            return Ok(());
        }
        self.server_frame_now(f)
    }

    /// Handles a server frame that waits for nothing.
    fn server_frame_now(&mut self, f: Frame) -> Result<(), ConnError> {
        if let Some(open) = &self.server_block {
            if f.ty != frame::CONTINUATION || f.stream != open.stream {
                return Err(ConnError::protocol("server header block interrupted"));
            }
        }
        match f.ty {
            frame::HEADERS | frame::CONTINUATION => self.server_headers(f)?,
            frame::DATA => {
                let len = f.payload.len();
                let Some(&c) = self.by_server.get(&f.stream) else {
                    self.credit_server(len);
                    return Ok(());
                };
                if !self.streams.contains_key(&c) {
                    // Reset by the client: nobody reads it.
                    self.credit_server(len);
                    return Ok(());
                }
                if (len as i64) > self.to_client_window.open {
                    self.waiting_server.push(f)?;
                    return Ok(());
                }
                self.to_client_window.open -= len as i64;
                f.write_as(c, &mut self.to_client);
                if f.has(frame::END_STREAM) {
                    self.server_ended(c);
                }
            }
            frame::RST_STREAM => {
                if let Some(&c) = self.by_server.get(&f.stream) {
                    if self.streams.remove(&c).is_some() {
                        f.write_as(c, &mut self.to_client);
                    }
                    self.remember_closed(f.stream);
                }
            }
            frame::SETTINGS => {
                if f.has(frame::ACK) {
                    f.write_as(0, &mut self.to_client);
                } else {
                    let params = frame::settings(&f.payload).ok_or(ConnError {
                        code: frame::FRAME_SIZE_ERROR,
                        reason: "server SETTINGS length".into(),
                    })?;
                    for (id, value) in params {
                        if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                            let value = i64::from(value);
                            let delta = value - self.server_initial;
                            self.server_initial = value;
                            for s in self.streams.values_mut() {
                                if let State::Forwarding { window, .. } = &mut s.state {
                                    *window += delta;
                                }
                            }
                        }
                    }
                    let first = !self.server_settings_seen;
                    self.server_settings_seen = true;
                    let payload =
                        frame::cap_concurrent_streams(&f.payload, self.max_streams, first);
                    frame::head(&mut self.to_client, payload.len(), frame::SETTINGS, 0, 0);
                    self.to_client.extend_from_slice(&payload);
                    self.pump_forwards();
                }
            }
            frame::PUSH_PROMISE => return Err(ConnError::protocol("PUSH_PROMISE from the server")),
            // Answered here, as the client's are; the relay sends the server none.
            frame::PING => {
                let opaque = ping_payload(&f)?;
                if !f.has(frame::ACK) {
                    frame::ping(&mut self.to_server, true, &opaque);
                }
            }
            frame::GOAWAY => {
                let last = f.u31().unwrap_or(0);
                let refused: Vec<u32> = self
                    .streams
                    .iter()
                    .filter_map(|(&c, s)| match s.state {
                        State::Relayed { u } | State::Forwarding { u, .. } if u > last => Some(c),
                        _ => None,
                    })
                    .collect();
                for c in refused {
                    self.streams.remove(&c);
                    frame::rst_stream(&mut self.to_client, c, frame::REFUSED_STREAM);
                }
                self.server_refuses = true;
                self.drain();
            }
            frame::WINDOW_UPDATE => {
                let inc = f.u31().ok_or(ConnError {
                    code: frame::FRAME_SIZE_ERROR,
                    reason: "server WINDOW_UPDATE length".into(),
                })?;
                if f.stream == 0 {
                    let pass = self.to_server_window.credit(inc);
                    if pass > 0 {
                        frame::window_update(&mut self.to_client, 0, pass);
                    }
                    self.pump_forwards();
                    // Client input waiting for this window is fed by the caller.
                } else if let Some(&c) = self.by_server.get(&f.stream) {
                    if let Some(s) = self.streams.get_mut(&c) {
                        match &mut s.state {
                            State::Forwarding { window, .. } => {
                                *window = (*window + i64::from(inc)).min(frame::MAX_WINDOW);
                                self.pump_forwards();
                            }
                            _ if inc > 0 => frame::window_update(&mut self.to_client, c, inc),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Client frames that waited for the server's window, as far as it goes now.
    pub(crate) fn resume_client(
        &mut self,
        classify: &dyn Fn(&[Field]) -> Disposition,
        enter: &dyn Fn() -> G,
    ) -> Result<(), ConnError> {
        while let Some(f) = self.waiting_client.pop_if(self.to_server_window.open) {
            self.client_frame_now(f, classify, enter)?;
        }
        self.client_frames(classify, enter)
    }

    /// Server frames that waited for the client's window, as far as it goes now.
    fn resume_server(&mut self) -> Result<(), ConnError> {
        while let Some(f) = self.waiting_server.pop_if(self.to_client_window.open) {
            self.server_frame_now(f)?;
        }
        self.server_frames()
    }

    fn credit_server(&mut self, len: usize) {
        if let Ok(n) = u32::try_from(len) {
            if n > 0 {
                frame::window_update(&mut self.to_server, 0, n);
            }
        }
    }

    fn server_ended(&mut self, c: u32) {
        if let Some(s) = self.streams.get_mut(&c) {
            s.server_done = true;
        }
        self.close_if_done(c);
    }

    fn server_headers(&mut self, f: Frame) -> Result<(), ConnError> {
        if f.ty == frame::HEADERS {
            // The client's HPACK decoder must see every block the server
            // encoded, in order: blocks of streams the client reset go too.
            let Some(&c) = self.by_server.get(&f.stream) else {
                return Err(ConnError::protocol(format!(
                    "server HEADERS on unknown stream {}",
                    f.stream
                )));
            };
            self.server_block = Some(OpenBlock {
                stream: f.stream,
                end_stream: f.has(frame::END_STREAM),
                bytes: Vec::new(),
            });
            let _ = c;
        }
        let Some(open) = self.server_block.as_mut() else {
            return Err(ConnError::protocol("server CONTINUATION without HEADERS"));
        };
        let c = self.by_server.get(&open.stream).copied().unwrap_or(0);
        if open.bytes.len() + f.payload.len() > MAX_SERVER_BLOCK {
            return Err(ConnError {
                code: frame::ENHANCE_YOUR_CALM,
                reason: "server header block too large".into(),
            });
        }
        f.write_as(c, &mut open.bytes);
        if f.has(frame::END_HEADERS) {
            if let Some(open) = self.server_block.take() {
                self.to_client.extend_from_slice(&open.bytes);
                if let Some(s) = self.streams.get_mut(&c) {
                    s.response_started = true;
                }
                if open.end_stream {
                    self.server_ended(c);
                }
            }
        }
        Ok(())
    }

    /// The answer to held stream `id`.
    pub(crate) fn answer(&mut self, id: u32, answer: Answer) -> Result<(), ConnError> {
        let (block, fields) = match self.streams.get(&id).map(|s| &s.state) {
            Some(State::Held {
                block,
                fields,
                ended: true,
                ..
            }) => (block.clone(), fields.clone()),
            _ => return Ok(()),
        };
        match answer {
            Answer::Forward { body, keep } => {
                if self.server_refuses || self.server_gone {
                    self.reply(id, Reply::grpc_error(UNAVAILABLE, SERVER_GONE));
                    return Ok(());
                }
                // A body of another length than the client's needs its
                // `content-length` restated (h2 servers check it).
                let stated = super::field(&fields, b"content-length");
                let block = match stated {
                    Some(v) if v != body.len().to_string().as_bytes() => {
                        let mut b = Vec::new();
                        let length = body.len().to_string();
                        for (name, value) in &fields {
                            let value = if name == b"content-length" {
                                length.as_bytes()
                            } else {
                                value
                            };
                            hpack::encode_field(&mut b, name, value, false);
                        }
                        Bytes::from(b)
                    }
                    _ => block,
                };
                let u = self.new_server_stream(id)?;
                frame::header_block(&mut self.to_server, u, &block, body.is_empty());
                let window = self.server_initial;
                if let Some(s) = self.streams.get_mut(&id) {
                    // The doorman's body is the whole request: anything more
                    // the client sends on this stream goes nowhere.
                    s.client_done = true;
                    s._keep = keep;
                    s.state = if body.is_empty() {
                        State::Relayed { u }
                    } else {
                        State::Forwarding { u, body, window }
                    };
                }
                self.forwarding.push_back(id);
                self.pump_forwards();
            }
            Answer::Reply(reply) => self.reply(id, reply),
        }
        Ok(())
    }

    /// Answers stream `id` here: its head now, its body and trailers as the client's windows allow.
    fn reply(&mut self, id: u32, reply: Reply) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let only_head = reply.body.is_empty() && reply.trailers.is_empty();
        frame::header_block(&mut self.to_client, id, &encode(&reply.head), only_head);
        if only_head {
            let unfinished = !s.client_done;
            self.streams.remove(&id);
            if unfinished {
                // The answer is complete; the rest of the request is not wanted.
                frame::rst_stream(&mut self.to_client, id, frame::NO_ERROR);
            }
            return;
        }
        s.state = State::Replying {
            body: reply.body,
            trailers: (!reply.trailers.is_empty()).then(|| encode(&reply.trailers)),
        };
        self.replying.push_back(id);
        self.pump_replies();
    }

    fn pump_replies(&mut self) {
        let mut still = VecDeque::new();
        while let Some(id) = self.replying.pop_front() {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            let State::Replying { body, trailers } = &mut s.state else {
                continue;
            };
            let end = trailers.is_none();
            let to_client = &mut self.to_client;
            self.to_client_window
                .send_own(to_client, id, body, end, &mut s.window);
            if body.is_empty() {
                if let Some(t) = trailers.take() {
                    frame::header_block(&mut self.to_client, id, &t, true);
                }
                self.streams.remove(&id);
            } else {
                still.push_back(id);
            }
        }
        self.replying = still;
    }

    fn pump_forwards(&mut self) {
        let mut still = VecDeque::new();
        while let Some(id) = self.forwarding.pop_front() {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            let State::Forwarding { u, body, window } = &mut s.state else {
                continue;
            };
            let u = *u;
            self.to_server_window
                .send_own(&mut self.to_server, u, body, true, window);
            if body.is_empty() {
                s.state = State::Relayed { u };
            } else {
                still.push_back(id);
            }
        }
        self.forwarding = still;
    }
}

impl Reply {
    /// A gRPC error as a trailers-only response.
    pub fn grpc_error(code: u32, message: &str) -> Self {
        Self {
            head: vec![
                (b":status".to_vec(), b"200".to_vec()),
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
                (b"grpc-status".to_vec(), code.to_string().into_bytes()),
                (b"grpc-message".to_vec(), percent_encode(message)),
            ],
            body: Bytes::new(),
            trailers: Vec::new(),
        }
    }
}

/// A PING's opaque data; one on a stream, or not 8 bytes, is a connection error (RFC 9113 §6.7).
fn ping_payload(f: &Frame) -> Result<[u8; 8], ConnError> {
    if f.stream != 0 {
        return Err(ConnError::protocol("PING on a stream"));
    }
    <[u8; 8]>::try_from(&f.payload[..]).map_err(|_| ConnError {
        code: frame::FRAME_SIZE_ERROR,
        reason: "PING length".into(),
    })
}

/// Whether `fields` are a well-formed request head (RFC 9113 §8.2, §8.3.1):
/// lowercase names; `:method`, `:scheme` and a non-empty `:path` once each,
/// `:authority` at most once, no other pseudo-header and none after a
/// regular field; no connection-specific field; `te` only `trailers`.
fn well_formed_request(fields: &[Field]) -> bool {
    let (mut method, mut scheme, mut path, mut authority) = (0, 0, 0, 0);
    let mut regular = false;
    for (name, value) in fields {
        if name.iter().any(u8::is_ascii_uppercase) || name.is_empty() {
            return false;
        }
        if name.first() == Some(&b':') {
            if regular {
                return false;
            }
            match name.as_slice() {
                b":method" => method += 1,
                b":scheme" => scheme += 1,
                b":path" if !value.is_empty() => path += 1,
                b":authority" => authority += 1,
                _ => return false,
            }
            continue;
        }
        regular = true;
        match name.as_slice() {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => return false,
            b"te" if value.as_slice() != b"trailers" => return false,
            _ => {}
        }
    }
    method == 1 && scheme == 1 && path == 1 && authority <= 1
}

/// A header block of `fields`, without the dynamic table.
fn encode(fields: &[Field]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        hpack::encode_field(&mut block, name, value, false);
    }
    block
}

/// gRPC's percent-encoding of `grpc-message` (printable ASCII but `%` as is).
fn percent_encode(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// What the relay may still send on one connection: the receiver's
/// connection window as the receiver sees it, and the debt (bytes the relay
/// sent on its own account, whose credit the receiver's WINDOW_UPDATEs will
/// carry and which are not passed on to the other side).
#[derive(Debug)]
struct SendWindow {
    open: i64,
    debt: u64,
}

impl Default for SendWindow {
    fn default() -> Self {
        Self {
            open: frame::DEFAULT_WINDOW,
            debt: 0,
        }
    }
}

impl SendWindow {
    /// The receiver's connection WINDOW_UPDATE of `inc`: the window grows,
    /// the debt is paid from it first; returns the rest, to pass on.
    fn credit(&mut self, inc: u32) -> u32 {
        self.open = (self.open + i64::from(inc)).min(frame::MAX_WINDOW);
        let kept = u64::from(inc).min(self.debt);
        self.debt -= kept;
        inc - kept as u32
    }

    /// Writes to `out` as much of `body` as this window, `stream_window` and
    /// [`MAX_DEBT`] allow, as DATA frames on `stream` (the last with
    /// END_STREAM when `end`), and spends it from both windows as debt.
    fn send_own(
        &mut self,
        out: &mut Vec<u8>,
        stream: u32,
        body: &mut Bytes,
        end: bool,
        stream_window: &mut i64,
    ) {
        while !body.is_empty() && *stream_window > 0 && self.open > 0 && self.debt < MAX_DEBT {
            let n = body
                .len()
                .min(frame::SAFE_FRAME)
                .min(*stream_window as usize)
                .min(self.open as usize);
            let chunk = body.split_to(n);
            let last = end && body.is_empty();
            frame::head(
                out,
                n,
                frame::DATA,
                if last { frame::END_STREAM } else { 0 },
                stream,
            );
            out.extend_from_slice(&chunk);
            *stream_window -= n as i64;
            self.open -= n as i64;
            self.debt += n as u64;
        }
    }
}

/// Frames of one side that wait behind a DATA frame the receiver's
/// connection window does not take yet.
#[derive(Debug, Default)]
struct Waiting {
    frames: VecDeque<Frame>,
    bytes: usize,
}

impl Waiting {
    /// Queues `f`; a side that keeps sending past what the windows allow
    /// (more than the relay's own sends could make it overrate them) breaks
    /// flow control.
    fn push(&mut self, f: Frame) -> Result<(), ConnError> {
        self.bytes += frame::HEAD_LEN + f.payload.len();
        self.frames.push_back(f);
        if self.bytes > MAX_WAITING {
            return Err(ConnError {
                code: frame::FLOW_CONTROL_ERROR,
                reason: format!(
                    "over {MAX_WAITING} bytes of frames waiting on a flow-control window"
                ),
            });
        }
        Ok(())
    }

    /// The first frame, unless it is DATA larger than `window`.
    fn pop_if(&mut self, window: i64) -> Option<Frame> {
        let f = self.frames.front()?;
        if f.ty == frame::DATA && f.payload.len() as i64 > window {
            return None;
        }
        let f = self.frames.pop_front()?;
        self.bytes -= frame::HEAD_LEN + f.payload.len();
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::well_formed_request;

    fn fields(list: &[(&str, &str)]) -> Vec<super::Field> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_request_head_the_server_could_read_otherwise_is_malformed() {
        let good = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        assert!(well_formed_request(&fields(&good)));
        let mut twice = good.to_vec();
        twice.insert(3, (":path", "/runtime.v1.ImageService/PullImage"));
        assert!(!well_formed_request(&fields(&twice)));
        let mut late = good.to_vec();
        late.push((":path", "/x"));
        assert!(!well_formed_request(&fields(&late)));
        let mut upper = good.to_vec();
        upper.push(("Grpc-Timeout", "1S"));
        assert!(!well_formed_request(&fields(&upper)));
        let no_path: Vec<_> = good
            .iter()
            .filter(|(n, _)| *n != ":path")
            .copied()
            .collect();
        assert!(!well_formed_request(&fields(&no_path)));
        let mut other = good.to_vec();
        other.insert(0, (":protocol", "websocket"));
        assert!(!well_formed_request(&fields(&other)));
        let mut conn = good.to_vec();
        conn.push(("connection", "close"));
        assert!(!well_formed_request(&fields(&conn)));
    }
}
