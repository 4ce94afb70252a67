//! The sans-I/O core of the rewrite: bytes from the client in, bytes for the
//! server out; bytes from the server observed for their SETTINGS.

use std::collections::VecDeque;

use super::frame;
use super::hpack::{self, Scan};
use super::{AuthorityError, AuthorityLimits};

/// A decoded header block: each field's name and value, in order.
pub(crate) type DecodedFields = Vec<(Vec<u8>, Vec<u8>)>;

/// The client connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// [`Rewriter::feed`] stops taking input once its output reaches this size.
pub(crate) const OUT_HIGH_WATER: usize = 64 * 1024;

/// Initial values of the settings we track (RFC 9113 §6.5.2).
const DEFAULT_HEADER_TABLE_SIZE: usize = 4096;
const DEFAULT_MAX_FRAME_SIZE: usize = 16_384;

/// Server SETTINGS sent but not yet acknowledged by the client; bounded, the
/// oldest entries are merged when a server sends SETTINGS faster than acks.
const MAX_PENDING_SETTINGS: usize = 8;

/// The values of one server SETTINGS frame that concern us.
#[derive(Debug, Clone, Copy, Default)]
struct SettingsUpdate {
    header_table_size: Option<usize>,
    max_frame_size: Option<usize>,
}

impl SettingsUpdate {
    fn merge(&mut self, later: SettingsUpdate) {
        self.header_table_size = later.header_table_size.or(self.header_table_size);
        self.max_frame_size = later.max_frame_size.or(self.max_frame_size);
    }
}

/// The server's settings as far as the client stream is concerned.
///
/// > Upon receiving a SETTINGS frame with the ACK flag set, the sender of the
/// > altered settings can rely on the values from the oldest unacknowledged
/// > SETTINGS frame having been applied.
/// > ([RFC 9113 §6.5.3](https://www.rfc-editor.org/rfc/rfc9113#section-6.5.3))
///
/// So a server setting is `applied` (h2 enforces it) once the client's ack
/// has passed through us; until then it is `pending` and the client may
/// already use it. We accept input up to the larger of the two and emit
/// output within the applied one.
#[derive(Debug)]
struct ServerSettings {
    applied_header_table_size: usize,
    applied_max_frame_size: usize,
    pending: VecDeque<SettingsUpdate>,
}

impl ServerSettings {
    fn new() -> Self {
        Self {
            applied_header_table_size: DEFAULT_HEADER_TABLE_SIZE,
            applied_max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            pending: VecDeque::new(),
        }
    }

    fn push(&mut self, update: SettingsUpdate) {
        if self.pending.len() >= MAX_PENDING_SETTINGS {
            // Keep the queue bounded: fold the newest update into the last
            // one; the values only become usable later, never earlier.
            if let Some(last) = self.pending.back_mut() {
                last.merge(update);
                return;
            }
        }
        self.pending.push_back(update);
    }

    fn client_acked(&mut self) {
        if let Some(update) = self.pending.pop_front() {
            if let Some(size) = update.header_table_size {
                self.applied_header_table_size = size;
            }
            if let Some(size) = update.max_frame_size {
                self.applied_max_frame_size = size;
            }
        }
    }

    /// Largest frame payload the client may send now.
    fn accepted_frame_size(&self) -> usize {
        self.pending
            .iter()
            .filter_map(|u| u.max_frame_size)
            .fold(self.applied_max_frame_size, usize::max)
    }

    /// Largest dynamic table the client's encoder may use now.
    fn accepted_table_size(&self) -> usize {
        self.pending
            .iter()
            .filter_map(|u| u.header_table_size)
            .fold(self.applied_header_table_size, usize::max)
    }
}

/// Incremental parser of the server → client byte stream: it only looks for
/// SETTINGS frames, and knows whether the stream is at a frame boundary.
#[derive(Debug)]
struct ServerScanner {
    head: [u8; frame::HEAD_LEN],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: usize,
    /// Set while inside a SETTINGS (non-ack) payload.
    settings: Option<SettingsUpdate>,
    entry: [u8; 6],
    entry_len: usize,
}

impl ServerScanner {
    fn new() -> Self {
        Self {
            head: [0; frame::HEAD_LEN],
            head_len: 0,
            remaining: 0,
            settings: None,
            entry: [0; 6],
            entry_len: 0,
        }
    }

    fn at_frame_boundary(&self) -> bool {
        self.head_len == 0 && self.remaining == 0
    }

    fn observe(&mut self, mut bytes: &[u8], settings: &mut ServerSettings) {
        while !bytes.is_empty() {
            if self.remaining == 0 {
                let take = (frame::HEAD_LEN - self.head_len).min(bytes.len());
                let (now, rest) = bytes.split_at(take);
                self.head[self.head_len..self.head_len + take].copy_from_slice(now);
                self.head_len += take;
                bytes = rest;
                if self.head_len < frame::HEAD_LEN {
                    return;
                }
                self.head_len = 0;
                let head = FrameHead::parse(&self.head);
                self.remaining = head.len;
                self.entry_len = 0;
                self.settings = (head.ty == frame::SETTINGS && head.flags & frame::ACK == 0)
                    .then(SettingsUpdate::default);
                if self.remaining == 0 {
                    self.end_frame(settings);
                }
                continue;
            }
            let take = self.remaining.min(bytes.len());
            let (now, rest) = bytes.split_at(take);
            bytes = rest;
            self.remaining -= take;
            if let Some(update) = &mut self.settings {
                for &b in now {
                    self.entry[self.entry_len] = b;
                    self.entry_len += 1;
                    if self.entry_len == self.entry.len() {
                        self.entry_len = 0;
                        let id = u16::from_be_bytes([self.entry[0], self.entry[1]]);
                        let value = u32::from_be_bytes([
                            self.entry[2],
                            self.entry[3],
                            self.entry[4],
                            self.entry[5],
                        ]);
                        let value = usize::try_from(value).unwrap_or(usize::MAX);
                        match id {
                            frame::SETTINGS_HEADER_TABLE_SIZE => {
                                update.header_table_size = Some(value)
                            }
                            frame::SETTINGS_MAX_FRAME_SIZE
                                if (DEFAULT_MAX_FRAME_SIZE..=frame::MAX_MAX_FRAME_SIZE)
                                    .contains(&value) =>
                            {
                                update.max_frame_size = Some(value);
                            }
                            _ => {}
                        }
                    }
                }
            }
            if self.remaining == 0 {
                self.end_frame(settings);
            }
        }
    }

    fn end_frame(&mut self, settings: &mut ServerSettings) {
        if let Some(update) = self.settings.take() {
            settings.push(update);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    len: usize,
    ty: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(b: &[u8; frame::HEAD_LEN]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            ty: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// Where the client byte stream is.
#[derive(Debug, Clone, Copy)]
enum ReadState {
    /// Inside the 24-byte connection preface, `n` bytes matched.
    Preface(usize),
    /// Between frames: collecting the 9-byte frame header.
    Head,
    /// Forwarding `n` more payload bytes unchanged.
    Passthrough(usize),
    /// Collecting `n` more bytes of a HEADERS or CONTINUATION payload.
    Collect { head: FrameHead, remaining: usize },
}

/// A header block whose HEADERS frame arrived but whose END_HEADERS did not.
#[derive(Debug, Clone, Copy)]
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
}

/// The rewrite as a state machine over byte slices; [`super::AuthorityRewrite`]
/// drives it from `poll_read`/`poll_write`, the fuzz target drives it directly.
#[derive(Debug)]
pub(crate) struct Rewriter {
    limits: AuthorityLimits,
    state: ReadState,
    head: [u8; frame::HEAD_LEN],
    head_len: usize,
    /// HEADERS payload, then the header block fragment plus CONTINUATIONs.
    block: Vec<u8>,
    open: Option<OpenBlock>,
    decoder: DebugDecoder,
    scan: Scan,
    encoded: Vec<u8>,
    settings: ServerSettings,
    server: ServerScanner,
    last_stream: u32,
    /// The decoded fields of each block emitted, in order, when kept for
    /// the relay ([`Rewriter::keep_fields`]).
    kept: Option<VecDeque<DecodedFields>>,
}

/// `loona_hpack::Decoder` does not implement `Debug`.
struct DebugDecoder(loona_hpack::Decoder<'static>);

impl std::fmt::Debug for DebugDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Rewriter {
    pub(crate) fn new(limits: AuthorityLimits) -> Self {
        Self {
            limits,
            state: ReadState::Preface(0),
            head: [0; frame::HEAD_LEN],
            head_len: 0,
            block: Vec::new(),
            open: None,
            decoder: DebugDecoder(loona_hpack::Decoder::new()),
            scan: Scan::default(),
            encoded: Vec::new(),
            settings: ServerSettings::new(),
            server: ServerScanner::new(),
            last_stream: 0,
            kept: None,
        }
    }

    /// Keeps the decoded fields of every block from now on, for
    /// [`Rewriter::take_fields`].
    pub(crate) fn keep_fields(&mut self) {
        self.kept = Some(VecDeque::new());
    }

    /// The fields of the oldest block emitted and not yet taken.
    pub(crate) fn take_fields(&mut self) -> Option<DecodedFields> {
        self.kept.as_mut()?.pop_front()
    }

    /// Bytes of header block currently buffered.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.block.len()
    }

    /// Observes bytes the server wrote to the client (already written, and
    /// passed on unchanged by the caller).
    pub(crate) fn observe_server(&mut self, bytes: &[u8]) {
        self.server.observe(bytes, &mut self.settings);
    }

    /// Whether a frame of our own could be written to the client now without
    /// cutting into one of the server's frames.
    pub(crate) fn server_at_frame_boundary(&self) -> bool {
        self.server.at_frame_boundary()
    }

    /// A GOAWAY frame for `error`, to send to the client.
    pub(crate) fn goaway(&self, error: &AuthorityError) -> Vec<u8> {
        let mut out = Vec::with_capacity(frame::HEAD_LEN + 8);
        frame::goaway(&mut out, self.last_stream, error.h2_error_code());
        out
    }

    /// Consumes a prefix of `input` (bytes from the client), appending what
    /// the server should read to `out`, and returns its length. It stops
    /// early once `out` holds [`OUT_HIGH_WATER`] bytes: HPACK lets a few
    /// input bytes stand for kilobytes of fields, so the caller must drain
    /// `out` and feed the rest later. Buffers at most one frame header and
    /// one header block (bounded by the limits) between calls.
    ///
    /// Each call appends at most `OUT_HIGH_WATER` + `input.len()` + one
    /// re-encoded header block (at most `max_header_list` plus framing).
    ///
    /// # Errors
    /// A connection error: the caller must stop feeding and close.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, AuthorityError> {
        let total = input.len();
        let mut input = input;
        while !input.is_empty() && out.len() < OUT_HIGH_WATER {
            match self.state {
                ReadState::Preface(matched) => {
                    let take = (PREFACE.len() - matched).min(input.len());
                    let (now, rest) = input.split_at(take);
                    if PREFACE.get(matched..matched + take) != Some(now) {
                        return Err(AuthorityError::BadPreface);
                    }
                    out.extend_from_slice(now);
                    input = rest;
                    self.state = if matched + take == PREFACE.len() {
                        ReadState::Head
                    } else {
                        ReadState::Preface(matched + take)
                    };
                }
                ReadState::Head => {
                    let take = (frame::HEAD_LEN - self.head_len).min(input.len());
                    let (now, rest) = input.split_at(take);
                    self.head[self.head_len..self.head_len + take].copy_from_slice(now);
                    self.head_len += take;
                    input = rest;
                    if self.head_len == frame::HEAD_LEN {
                        self.head_len = 0;
                        self.start_frame(out)?;
                    }
                }
                ReadState::Passthrough(remaining) => {
                    let take = remaining.min(input.len());
                    let (now, rest) = input.split_at(take);
                    out.extend_from_slice(now);
                    input = rest;
                    self.state = if take == remaining {
                        ReadState::Head
                    } else {
                        ReadState::Passthrough(remaining - take)
                    };
                }
                ReadState::Collect { head, remaining } => {
                    let take = remaining.min(input.len());
                    let (now, rest) = input.split_at(take);
                    self.block.extend_from_slice(now);
                    input = rest;
                    if take == remaining {
                        self.state = ReadState::Head;
                        self.end_collect(head, out)?;
                    } else {
                        self.state = ReadState::Collect {
                            head,
                            remaining: remaining - take,
                        };
                    }
                }
            }
        }
        Ok(total - input.len())
    }

    fn start_frame(&mut self, out: &mut Vec<u8>) -> Result<(), AuthorityError> {
        let head = FrameHead::parse(&self.head);
        let max = self.settings.accepted_frame_size();
        // > An endpoint MUST send an error code of FRAME_SIZE_ERROR if a frame
        // > exceeds the size defined in frame::SETTINGS_MAX_FRAME_SIZE
        // > ([RFC 9113 §4.2](https://www.rfc-editor.org/rfc/rfc9113#section-4.2))
        if head.len > max {
            return Err(AuthorityError::FrameTooLarge { len: head.len, max });
        }
        // > A receiver MUST treat the receipt of any other type of frame or a
        // > frame on a different stream as a connection error of type
        // > PROTOCOL_ERROR.
        // > ([RFC 9113 §6.10](https://www.rfc-editor.org/rfc/rfc9113#section-6.10))
        if let Some(open) = self.open {
            if head.ty != frame::CONTINUATION || head.stream != open.stream {
                return Err(AuthorityError::ExpectedContinuation {
                    stream: open.stream,
                    frame_type: head.ty,
                });
            }
        }
        match head.ty {
            frame::HEADERS | frame::CONTINUATION => {
                if head.ty == frame::HEADERS {
                    self.block.clear();
                } else if self.open.is_none() {
                    return Err(AuthorityError::UnexpectedContinuation {
                        stream: head.stream,
                    });
                }
                let max = self.limits.max_header_block;
                // Refuse before buffering: memory stays within the limit
                // whatever the frame headers claim (CONTINUATION floods).
                if self.block.len().saturating_add(head.len) > max {
                    return Err(AuthorityError::HeaderBlockTooLarge { max });
                }
                self.block.reserve(head.len);
                self.state = ReadState::Collect {
                    head,
                    remaining: head.len,
                };
                if head.len == 0 {
                    self.state = ReadState::Head;
                    self.end_collect(head, out)?;
                }
            }
            _ => {
                if head.ty == frame::SETTINGS && head.flags & frame::ACK != 0 {
                    self.settings.client_acked();
                }
                out.extend_from_slice(&self.head);
                if head.len > 0 {
                    self.state = ReadState::Passthrough(head.len);
                }
            }
        }
        Ok(())
    }

    /// A HEADERS or CONTINUATION payload is complete in `self.block`.
    fn end_collect(&mut self, head: FrameHead, out: &mut Vec<u8>) -> Result<(), AuthorityError> {
        if head.ty == frame::HEADERS {
            let bad_padding = AuthorityError::BadPadding {
                stream: head.stream,
            };
            let mut start = 0;
            let mut pad = 0;
            if head.flags & frame::PADDED != 0 {
                pad = usize::from(*self.block.first().ok_or(bad_padding.clone())?);
                start = 1;
            }
            let mut priority = None;
            if head.flags & frame::PRIORITY_FLAG != 0 {
                let bytes = self
                    .block
                    .get(start..start + 5)
                    .ok_or(bad_padding.clone())?;
                let mut p = [0; 5];
                p.copy_from_slice(bytes);
                priority = Some(p);
                start += 5;
            }
            // > Padding that exceeds the size remaining for the header block
            // > fragment MUST be treated as a PROTOCOL_ERROR.
            // > ([RFC 9113 §6.2](https://www.rfc-editor.org/rfc/rfc9113#section-6.2))
            let end = self
                .block
                .len()
                .checked_sub(pad)
                .filter(|&end| end >= start)
                .ok_or(bad_padding)?;
            self.block.truncate(end);
            self.block.drain(..start);
            self.open = Some(OpenBlock {
                stream: head.stream,
                end_stream: head.flags & frame::END_STREAM != 0,
                priority,
            });
        }
        if head.flags & frame::END_HEADERS != 0 {
            if let Some(open) = self.open.take() {
                self.finish_block(open, out)?;
            }
        }
        Ok(())
    }

    /// Decodes the complete block, rewrites `:authority`, and emits the
    /// re-encoded block as HEADERS (+ CONTINUATION) frames.
    fn finish_block(&mut self, open: OpenBlock, out: &mut Vec<u8>) -> Result<(), AuthorityError> {
        let max_table = self
            .settings
            .accepted_table_size()
            .min(self.limits.max_table_size);
        hpack::scan(&self.block, max_table, &mut self.scan)?;
        for &size in &self.scan.size_updates {
            // scan checked size <= max_table; no max_allowed_table_size is
            // set on the decoder, so this cannot hit its assertion.
            self.decoder.0.set_max_table_size(size);
        }
        let fields = &self.scan.plain;

        let max_list = self.limits.max_header_list;
        let never_indexed = &self.scan.never_indexed;
        let encoded = &mut self.encoded;
        encoded.clear();
        let mut kept = self.kept.as_ref().map(|_| Vec::new());
        let mut index = 0;
        let mut list_size: usize = 0;
        let mut over = false;
        self.decoder
            .0
            .decode_with_cb(fields, |name, value| {
                // > The size of a field list is the sum of the uncompressed
                // > size of each field line plus an overhead of 32 octets.
                // > ([RFC 9113 §6.5.2](https://www.rfc-editor.org/rfc/rfc9113#section-6.5.2))
                list_size = list_size
                    .saturating_add(name.len())
                    .saturating_add(value.len())
                    .saturating_add(32);
                over |= list_size > max_list;
                if over {
                    // Keep decoding (the dynamic table must stay in step
                    // until we error out), but stop producing output.
                    return;
                }
                let never = never_indexed.get(index).copied().unwrap_or(false);
                index += 1;
                let value: &[u8] = if &*name == b":authority" && needs_rewrite(&value) {
                    super::LOCALHOST
                } else {
                    &value
                };
                hpack::encode_field(encoded, &name, value, never);
                if let Some(kept) = kept.as_mut() {
                    kept.push((name.to_vec(), value.to_vec()));
                }
            })
            .map_err(AuthorityError::Hpack)?;
        if over {
            return Err(AuthorityError::HeaderListTooLarge { max: max_list });
        }
        if index != never_indexed.len() {
            return Err(AuthorityError::Internal(
                "hpack field count differs between scan and decode",
            ));
        }
        self.last_stream = self.last_stream.max(open.stream);
        if let (Some(queue), Some(fields)) = (self.kept.as_mut(), kept) {
            queue.push_back(fields);
        }
        emit_block(
            out,
            &open,
            &self.encoded,
            self.settings.applied_max_frame_size,
        );
        Ok(())
    }
}

/// Whether an `:authority` value is one h2 would refuse and we answer as
/// `localhost`: a socket path (`/run/x.sock`, as grpc-go before Kubernetes
/// 1.31 and grpc-java send), a percent-encoded path (`%2Frun%2Fx.sock`, as
/// gRPC C-core sends), or anything else that is not a valid authority (the
/// check h2 itself makes, with the same parser). A valid authority, such as
/// `localhost`, stays as it is.
pub(crate) fn needs_rewrite(value: &[u8]) -> bool {
    value.starts_with(b"/")
        || value
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"%2f"))
        || http::uri::Authority::try_from(value).is_err()
}

/// Writes `block` as one HEADERS frame and as many CONTINUATION frames as
/// `max_frame` requires. Padding is dropped (it carries no meaning); the
/// priority fields are kept in the HEADERS frame.
fn emit_block(out: &mut Vec<u8>, open: &OpenBlock, block: &[u8], max_frame: usize) {
    let prio_len = if open.priority.is_some() { 5 } else { 0 };
    let first_len = block.len().min(max_frame - prio_len);
    let (first, mut rest) = block.split_at(first_len);
    let mut flags = 0;
    if open.end_stream {
        flags |= frame::END_STREAM;
    }
    if open.priority.is_some() {
        flags |= frame::PRIORITY_FLAG;
    }
    if rest.is_empty() {
        flags |= frame::END_HEADERS;
    }
    out.reserve(block.len() + frame::HEAD_LEN * (2 + block.len() / max_frame) + prio_len);
    frame::head(
        out,
        prio_len + first.len(),
        frame::HEADERS,
        flags,
        open.stream,
    );
    if let Some(p) = open.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, later) = rest.split_at(rest.len().min(max_frame));
        let flags = if later.is_empty() {
            frame::END_HEADERS
        } else {
            0
        };
        frame::head(out, chunk.len(), frame::CONTINUATION, flags, open.stream);
        out.extend_from_slice(chunk);
        rest = later;
    }
}
