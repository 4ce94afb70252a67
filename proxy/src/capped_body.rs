//! The one capped reader every HTTP response body pullgate reads goes
//! through: registry manifests, blobs, tokens and referrers, and revocation
//! data (OCSP responses, CRLs).
//!
//! Input: a response body, its declared `Content-Length` and a cap. Output:
//! the bytes, or `TooLarge { limit }` raised *before* more than `limit` bytes
//! are buffered: a declared length over the cap is refused without reading,
//! and a body without one is counted frame by frame. Timeouts are the
//! caller's: [`read_capped`] runs inside the request's deadline.

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body_util::BodyExt as _;
use hyper::body::Body;

/// Most bytes reserved up front from a declared `Content-Length`: a lying
/// length must not make us allocate the whole cap before data arrives.
const MAX_PREALLOCATION: usize = 1 << 20;

/// Why a capped read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body is longer than `limit`.
    TooLarge { limit: u64 },
    /// The connection failed mid-body.
    Body(hyper::Error),
}

/// `Content-Length`, when present and a number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads `body` into memory, never holding more than `limit` bytes.
///
/// # Errors
/// [`ReadError::TooLarge`] when `declared` or the bytes received exceed
/// `limit`; [`ReadError::Body`] when the connection fails.
///
/// # Cancel safety
/// Not cancel safe: dropping it loses what was read (the caller gives up on
/// the whole response then).
pub(crate) async fn read_capped<B>(
    mut body: B,
    declared: Option<u64>,
    limit: u64,
) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    if declared.is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge { limit });
    }
    let reserve = declared
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(MAX_PREALLOCATION);
    let mut buf = BytesMut::with_capacity(reserve);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        if let Ok(data) = frame.into_data() {
            let total = (buf.len() as u64).saturating_add(data.len() as u64);
            if total > limit {
                return Err(ReadError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn refuses_declared_length_over_cap_without_reading() {
        let body = Full::new(Bytes::from_static(b"0123456789")).map_err(|never| match never {});
        let err = read_capped(body, Some(11), 10).await;
        assert!(matches!(err, Err(ReadError::TooLarge { limit: 10 })));
    }

    #[tokio::test]
    async fn counts_frames_when_no_length_is_declared() {
        let frames: Vec<Result<Frame<Bytes>, hyper::Error>> = (0..5)
            .map(|_| Ok(Frame::data(Bytes::from_static(b"abc"))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(frames));
        assert!(matches!(
            read_capped(body, None, 14).await,
            Err(ReadError::TooLarge { limit: 14 })
        ));
        let frames: Vec<Result<Frame<Bytes>, hyper::Error>> = (0..5)
            .map(|_| Ok(Frame::data(Bytes::from_static(b"abc"))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(frames));
        assert_eq!(read_capped(body, None, 15).await.unwrap().len(), 15);
    }
}
