//! HTTP/2 frames (RFC 9113 §4, §6): the types, flags and settings the
//! rewriter and the relay read, the frames they write, and whole frames cut
//! from a byte stream for the relay.

use bytes::{Buf, Bytes, BytesMut};

pub(crate) const HEAD_LEN: usize = 9;

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;

pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY_FLAG: u8 = 0x20;

pub(crate) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(crate) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(crate) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

pub(crate) const NO_ERROR: u32 = 0x0;
pub(crate) const PROTOCOL_ERROR: u32 = 0x1;
pub(crate) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(crate) const STREAM_CLOSED: u32 = 0x5;
pub(crate) const FRAME_SIZE_ERROR: u32 = 0x6;
pub(crate) const REFUSED_STREAM: u32 = 0x7;
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Every endpoint accepts frames of this size (SETTINGS_MAX_FRAME_SIZE's
/// floor); the relay cuts what it writes itself to it.
pub(crate) const SAFE_FRAME: usize = 16_384;

/// Largest legal SETTINGS_MAX_FRAME_SIZE (2^24 - 1).
pub(crate) const MAX_MAX_FRAME_SIZE: usize = (1 << 24) - 1;

/// Initial flow-control window of a connection and, by default, of a stream.
pub(crate) const DEFAULT_WINDOW: i64 = 65_535;

/// Largest flow-control window (2^31 - 1).
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;

/// One whole frame.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) ty: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
    pub(crate) payload: Bytes,
}

impl Frame {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Appends the frame, with `stream` in place of its own.
    pub(crate) fn write_as(&self, stream: u32, out: &mut Vec<u8>) {
        head(out, self.payload.len(), self.ty, self.flags, stream);
        out.extend_from_slice(&self.payload);
    }

    /// The 31-bit value at the start of the payload (WINDOW_UPDATE's
    /// increment, GOAWAY's last stream id), if there are four bytes.
    pub(crate) fn u31(&self) -> Option<u32> {
        let b = self.payload.get(..4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
    }

    /// The payload of a DATA or HEADERS frame without its padding (and,
    /// for HEADERS, its priority fields); `None` if the padding is longer
    /// than the frame.
    pub(crate) fn content(&self) -> Option<Bytes> {
        let mut start = 0;
        let mut pad = 0;
        if self.has(PADDED) {
            pad = usize::from(*self.payload.first()?);
            start = 1;
        }
        if self.ty == HEADERS && self.has(PRIORITY_FLAG) {
            start += 5;
        }
        let end = self.payload.len().checked_sub(pad)?;
        (end >= start).then(|| self.payload.slice(start..end))
    }
}

/// Cuts whole frames from a byte stream, holding at most one frame.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    buf: BytesMut,
    max_payload: usize,
}

/// A frame whose length is over what this side may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge {
    pub(crate) len: usize,
    pub(crate) max: usize,
}

impl FrameBuf {
    pub(crate) fn new(max_payload: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_payload,
        }
    }

    pub(crate) fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max;
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held, not yet a whole frame.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, if one is buffered.
    pub(crate) fn next(&mut self) -> Result<Option<Frame>, TooLarge> {
        let Some(h) = self.buf.get(..HEAD_LEN) else {
            return Ok(None);
        };
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        if len > self.max_payload {
            return Err(TooLarge {
                len,
                max: self.max_payload,
            });
        }
        if self.buf.len() < HEAD_LEN + len {
            self.buf.reserve(HEAD_LEN + len - self.buf.len());
            return Ok(None);
        }
        let (ty, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.buf.advance(HEAD_LEN);
        let payload = self.buf.split_to(len).freeze();
        Ok(Some(Frame {
            ty,
            flags,
            stream,
            payload,
        }))
    }
}

pub(crate) fn head(out: &mut Vec<u8>, len: usize, ty: u8, flags: u8, stream: u32) {
    // Callers never pass len at or above 2^24.
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

pub(crate) fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub(crate) fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_be_bytes());
}

pub(crate) fn goaway(out: &mut Vec<u8>, last_stream: u32, code: u32) {
    head(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
}

pub(crate) fn ping(out: &mut Vec<u8>, ack: bool, opaque: &[u8; 8]) {
    head(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.extend_from_slice(opaque);
}

/// Writes `block` as HEADERS (+ CONTINUATION) frames of at most [`SAFE_FRAME`].
pub(crate) fn header_block(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool) {
    let mut chunks = block.chunks(SAFE_FRAME);
    let first = chunks.next().unwrap_or_default();
    let single = block.len() <= SAFE_FRAME;
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if single {
        flags |= END_HEADERS;
    }
    head(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut rest = chunks.peekable();
    while let Some(chunk) = rest.next() {
        let flags = if rest.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        head(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

/// The parameters of a SETTINGS payload (six bytes each); `None` when its
/// length is not a multiple of six.
pub(crate) fn settings(payload: &[u8]) -> Option<impl Iterator<Item = (u16, u32)> + '_> {
    payload.len().is_multiple_of(6).then(|| {
        payload.chunks_exact(6).map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
    })
}

/// A SETTINGS payload with SETTINGS_MAX_CONCURRENT_STREAMS at most `cap`:
/// lowered where it is higher, added where it is absent and `add` is set.
pub(crate) fn cap_concurrent_streams(payload: &[u8], cap: u32, add: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    let mut seen = false;
    for p in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([p[0], p[1]]);
        if id == SETTINGS_MAX_CONCURRENT_STREAMS {
            seen = true;
            let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]).min(cap);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        } else {
            out.extend_from_slice(p);
        }
    }
    if !seen && add {
        out.extend_from_slice(&SETTINGS_MAX_CONCURRENT_STREAMS.to_be_bytes());
        out.extend_from_slice(&cap.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whole_from_any_split_of_the_stream() {
        let mut bytes = Vec::new();
        head(&mut bytes, 3, DATA, END_STREAM, 5);
        bytes.extend_from_slice(b"abc");
        window_update(&mut bytes, 0, 7);
        for split in 0..bytes.len() {
            let mut buf = FrameBuf::new(SAFE_FRAME);
            buf.extend(&bytes[..split]);
            let mut got = Vec::new();
            while let Some(f) = buf.next().unwrap() {
                got.push(f);
            }
            buf.extend(&bytes[split..]);
            while let Some(f) = buf.next().unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(
                (got[0].ty, got[0].stream, &got[0].payload[..]),
                (DATA, 5, &b"abc"[..])
            );
            assert_eq!(got[1].u31(), Some(7));
            assert_eq!(buf.len(), 0);
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_header() {
        let mut buf = FrameBuf::new(10);
        let mut bytes = Vec::new();
        head(&mut bytes, 11, DATA, 0, 1);
        buf.extend(&bytes);
        assert_eq!(buf.next().unwrap_err(), TooLarge { len: 11, max: 10 });
    }

    #[test]
    fn padding_longer_than_the_frame_has_no_content() {
        let f = Frame {
            ty: DATA,
            flags: PADDED,
            stream: 1,
            payload: Bytes::from_static(&[5, 1, 2]),
        };
        assert!(f.content().is_none());
        let f = Frame {
            ty: DATA,
            flags: PADDED,
            stream: 1,
            payload: Bytes::from_static(&[1, b'x', 0]),
        };
        assert_eq!(&f.content().unwrap()[..], b"x");
    }

    #[test]
    fn concurrent_streams_are_capped_or_added() {
        let mut p = Vec::new();
        p.extend_from_slice(&SETTINGS_MAX_CONCURRENT_STREAMS.to_be_bytes());
        p.extend_from_slice(&1000u32.to_be_bytes());
        let capped: Vec<_> = settings(&cap_concurrent_streams(&p, 64, true))
            .unwrap()
            .collect();
        assert_eq!(capped, vec![(SETTINGS_MAX_CONCURRENT_STREAMS, 64)]);
        let added: Vec<_> = settings(&cap_concurrent_streams(&[], 64, true))
            .unwrap()
            .collect();
        assert_eq!(added, vec![(SETTINGS_MAX_CONCURRENT_STREAMS, 64)]);
        assert!(cap_concurrent_streams(&[], 64, false).is_empty());
    }

    #[test]
    fn a_long_block_is_cut_into_continuations() {
        let block = vec![7u8; SAFE_FRAME * 2 + 1];
        let mut out = Vec::new();
        header_block(&mut out, 3, &block, true);
        let mut buf = FrameBuf::new(SAFE_FRAME);
        buf.extend(&out);
        let frames: Vec<_> = std::iter::from_fn(|| buf.next().unwrap()).collect();
        let kinds: Vec<_> = frames.iter().map(|f| (f.ty, f.flags)).collect();
        assert_eq!(
            kinds,
            vec![
                (HEADERS, END_STREAM),
                (CONTINUATION, 0),
                (CONTINUATION, END_HEADERS)
            ]
        );
    }
}
