//! The one capped reader every registry response body goes through, and blob
//! fetches.
//!
//! Input: a response body, its declared `Content-Length` and a cap. Output:
//! the bytes, or `TooLarge { limit }` raised *before* more than `limit` bytes
//! are buffered: a declared length over the cap is refused without reading,
//! and a body without one is counted frame by frame. Timeouts are the
//! caller's: [`read_capped`] runs inside the request's deadline.

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method};
use http_body_util::BodyExt as _;
use hyper::body::Body;
use pullgate_policy::{Digest, Repository};

use super::auth::Credentials;
use super::client::{Capability, RegistryClient, Request};
use super::error::{Error, Kind, Op};
use super::manifest::Descriptor;
use crate::deadline::Deadline;

/// Most bytes reserved up front from a declared `Content-Length`: a lying
/// length must not make us allocate the whole cap before data arrives.
const MAX_PREALLOCATION: usize = 1 << 20;

/// Why a capped read failed.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The body is longer than `limit`.
    TooLarge { limit: u64 },
    /// The connection failed mid-body.
    Body(hyper::Error),
}

impl ReadError {
    pub(super) fn into_kind(self) -> Kind {
        match self {
            Self::TooLarge { limit } => Kind::TooLarge { limit },
            Self::Body(e) => Kind::Body(e),
        }
    }
}

/// `Content-Length`, when present and a number.
pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
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
pub(super) async fn read_capped<B>(
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

/// Checks that `bytes` are exactly what `expected` names.
pub(super) fn verify_digest(expected: &Digest, bytes: &[u8]) -> Result<(), Kind> {
    if expected.matches(bytes) {
        Ok(())
    } else {
        Err(Kind::DigestMismatch {
            expected: expected.clone(),
            got: Digest::sha256_of(bytes),
        })
    }
}

impl RegistryClient {
    /// Fetches the blob `desc` names, capped at `cap` and at `desc.size`, and
    /// checks its digest.
    ///
    /// # Errors
    /// `TooLarge` when `desc.size > cap` (no request is made) or the registry
    /// sends more than `desc.size`; `DigestMismatch` when the bytes are
    /// shorter than `desc.size` or hash to another digest; plus every
    /// transport, status and deadline error of a request.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is kept between calls except cached tokens.
    pub(crate) async fn fetch_blob(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        cap: u64,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Bytes, Error> {
        let op = Op::FetchingBlob(desc.digest.clone());
        if desc.size > cap {
            return Err(self.error(Kind::TooLarge { limit: cap }, repo, op));
        }
        let req = Request {
            method: Method::GET,
            path: format!("blobs/{}", desc.digest),
            accept: None,
            limit: desc.size,
            capability: Capability::Pull,
        };
        let fetched = self.fetch(repo, req, creds, deadline, op.clone()).await?;
        let got = fetched.body.len() as u64;
        if got != desc.size {
            return Err(self.error(
                Kind::SizeMismatch {
                    expected: desc.size,
                    got,
                },
                repo,
                op,
            ));
        }
        verify_digest(&desc.digest, &fetched.body).map_err(|k| self.error(k, repo, op))?;
        Ok(fetched.body)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

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
