//! gRPC over HTTP/2 framing for the few calls pullgate reads itself
//! (`PullImage`, `ImageStatus`, `Health/Check`): one length-prefixed
//! message in and out, the request deadline from `grpc-timeout`, and the
//! `grpc-status` of an answer. Everything else on the socket passes through
//! as opaque frames (`passthrough`) and is never parsed here.
//!
//! Input: request bodies (read up to a cap) and headers. Output: the
//! message bytes, or a [`RequestError`]. Hand-written: tonic's codec sits
//! behind its `Router`, which the CRI socket does not use (it routes on the
//! path in a plain hyper server), and the format is five bytes of header.
//! Protocol: <https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md>

use std::time::Duration;

use super::passthrough::CallBody;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;

/// Why a unary request pullgate reads (`PullImage`, `ImageStatus`,
/// `Health/Check`) is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The request is larger than `[server] max_request_bytes`.
    #[error("the request is over {limit} bytes ([server] max_request_bytes)")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The gRPC framing is wrong (not exactly one length-prefixed message).
    #[error("malformed gRPC framing")]
    Framing,
    /// The message is compressed; pullgate reads only uncompressed requests.
    #[error("compressed requests are not supported")]
    Compressed,
    /// The message is not the request message of the RPC.
    #[error("cannot decode the request message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The request names no image.
    #[error("the request names no image")]
    NoImage,
    /// The request names more images than pullgate checks for one call.
    #[error("the request names {found} image volumes; at most {limit} are accepted")]
    TooManyImages {
        /// How many it names.
        found: usize,
        /// The cap.
        limit: usize,
    },
    /// The image reference does not parse.
    #[error("invalid image reference {image:?}: {source}")]
    Reference {
        /// As sent.
        image: String,
        /// Why.
        source: pullgate_policy::reference::ReferenceError,
    },
}

/// One uncompressed gRPC length-prefixed message.
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 5);
    out.put_u8(0);
    // The request cap (a usize from config) and the response cap keep this
    // within u32 in practice; a longer message is never built.
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

/// Reads a request body, at most `limit` bytes; stops reading as soon as
/// the limit is passed.
pub(crate) async fn read_body(mut body: CallBody, limit: usize) -> Result<Bytes, RequestError> {
    // By hand rather than with `Limited`: its bound on the body's boxed
    // error trips the compiler's `Send` check of the connection future.
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RequestError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(RequestError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Reads exactly one uncompressed gRPC message of at most `limit` bytes (framing included).
pub(crate) async fn read_message(body: CallBody, limit: usize) -> Result<Bytes, RequestError> {
    unframe(read_body(body, limit).await?)
}

/// Splits one gRPC length-prefixed message; anything else is an error.
pub(crate) fn unframe(bytes: Bytes) -> Result<Bytes, RequestError> {
    let header = bytes.get(..5).ok_or(RequestError::Framing)?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    match header[0] {
        0 => {}
        1 => return Err(RequestError::Compressed),
        _ => return Err(RequestError::Framing),
    }
    if bytes.len() != 5 + len {
        return Err(RequestError::Framing);
    }
    Ok(bytes.slice(5..))
}

/// Whether the response's `grpc-status` (trailers, or headers for trailers-only) is OK.
pub(crate) fn status_is_ok(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> bool {
    let status = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"));
    status.map(HeaderValue::as_bytes) == Some(b"0")
}

/// Parses `grpc-timeout` (gRPC over HTTP/2: `TimeoutValue TimeoutUnit`, at most 8 digits, unit one of H M S m u n).
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 || !v.is_char_boundary(v.len() - 1) {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unframe_accepts_exactly_one_uncompressed_message() {
        assert_eq!(unframe(frame(b"abc")).unwrap(), Bytes::from_static(b"abc"));
        assert!(matches!(
            unframe(Bytes::from_static(b"\0\0\0")),
            Err(RequestError::Framing)
        ));
        let mut two = BytesMut::from(&frame(b"a")[..]);
        two.put_slice(&frame(b"b"));
        assert!(matches!(unframe(two.freeze()), Err(RequestError::Framing)));
        let mut compressed = BytesMut::from(&frame(b"a")[..]);
        compressed[0] = 1;
        assert!(matches!(
            unframe(compressed.freeze()),
            Err(RequestError::Compressed)
        ));
    }

    #[test]
    fn grpc_timeout_units() {
        let mut h = HeaderMap::new();
        for (v, want) in [
            ("5S", Some(Duration::from_secs(5))),
            ("100m", Some(Duration::from_millis(100))),
            ("2M", Some(Duration::from_secs(120))),
            ("1H", Some(Duration::from_secs(3600))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("123456789S", None),
            ("S", None),
            ("-1S", None),
            ("5x", None),
        ] {
            h.insert("grpc-timeout", HeaderValue::from_static(v));
            assert_eq!(grpc_timeout(&h), want, "{v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn grpc_timeout_never_panics(s in "[ -~]{0,12}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&s) {
                h.insert("grpc-timeout", v);
                let _ = grpc_timeout(&h);
            }
        }

    }
}
