//! A unary response from containerd read whole, so pullgate can read its
//! `grpc-status` (and its message) before passing it on: `PullImage` when a
//! tag is to be written, `ImageStatus` when enforcing.
//!
//! Limits: at most [`MAX_UNARY_RESPONSE_BYTES`]; past it the caller gets
//! the refusal to send instead.

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, Limited, StreamBody};
use hyper::body::Frame;

use super::grpc::status_is_ok;
use super::passthrough::{boxed, ProxyBody, Upstream};
use super::status;

/// Largest unary response pullgate buffers from containerd (`PullImage`,
/// and `ImageStatus` with its verbose info when enforcing).
pub(crate) const MAX_UNARY_RESPONSE_BYTES: usize = 16 << 20;

/// A unary response from containerd, read whole so its `grpc-status` can be
/// inspected before it is passed on.
pub(super) struct Buffered {
    pub(super) parts: http::response::Parts,
    pub(super) data: Bytes,
    pub(super) trailers: Option<HeaderMap>,
}

impl Buffered {
    /// Sends `req` to containerd and reads the response, capped at [`MAX_UNARY_RESPONSE_BYTES`].
    pub(super) async fn exchange(
        upstream: &Upstream,
        req: Request<ProxyBody>,
    ) -> Result<Self, Response<ProxyBody>> {
        let resp = upstream
            .send(req)
            .await
            .map_err(|e| status::response(status::upstream(&e)))?;
        let (parts, body) = resp.into_parts();
        let collected = Limited::new(body, MAX_UNARY_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| status::response(status::upstream_body(e.as_ref())))?;
        Ok(Self {
            parts,
            trailers: collected.trailers().cloned(),
            data: collected.to_bytes(),
        })
    }

    /// Whether `grpc-status` (trailers, or headers for trailers-only) is OK.
    pub(super) fn is_ok(&self) -> bool {
        status_is_ok(&self.parts.headers, self.trailers.as_ref())
    }

    /// The response to pass on: containerd's headers and trailers around `data`.
    pub(super) fn into_response(mut self) -> Response<ProxyBody> {
        self.parts.headers.remove(http::header::CONTENT_LENGTH);
        // gRPC over HTTP/2: "Response → (Response-Headers *Length-Prefixed-Message
        // Trailers) / Trailers-Only … Trailers-Only is permitted for calls that
        // produce an immediate error." An answer that came as HEADERS with
        // END_STREAM goes back as one: a DATA frame after it would turn the
        // status in the headers into a stream without trailers, which gRPC
        // clients report as their own error instead of containerd's.
        // https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md#responses
        if self.data.is_empty() && self.trailers.is_none() {
            return Response::from_parts(self.parts, boxed(Empty::<Bytes>::new()));
        }
        let data = (!self.data.is_empty()).then(|| Frame::data(self.data));
        let frames = data
            .into_iter()
            .chain(self.trailers.map(Frame::trailers))
            .map(Ok::<_, std::convert::Infallible>);
        Response::from_parts(
            self.parts,
            boxed(StreamBody::new(futures_util::stream::iter(frames))),
        )
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn buffered(
        headers: &[(&'static str, &'static str)],
        data: &'static [u8],
        trailers: Option<&[(&'static str, &'static str)]>,
    ) -> Buffered {
        let mut b = Response::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        Buffered {
            parts,
            data: Bytes::from_static(data),
            trailers: trailers.map(|t| {
                t.iter()
                    .map(|(k, v)| {
                        (
                            http::HeaderName::from_static(k),
                            HeaderValue::from_static(v),
                        )
                    })
                    .collect()
            }),
        }
    }

    #[tokio::test]
    async fn a_trailers_only_answer_stays_trailers_only() {
        use hyper::body::Body as _;
        let error = buffered(
            &[
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
                ("grpc-message", "not%20found"),
            ],
            b"",
            None,
        );
        assert!(!error.is_ok());
        let resp = error.into_response();
        assert_eq!(resp.headers()["grpc-status"], "5");
        assert_eq!(resp.headers()["grpc-message"], "not%20found");
        // Nothing follows the headers: hyper sends them with END_STREAM.
        assert!(resp.body().is_end_stream());
        let collected = resp.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert!(collected.to_bytes().is_empty());

        let ok = buffered(
            &[("content-type", "application/grpc")],
            b"\0\0\0\0\x01x",
            Some(&[("grpc-status", "0")]),
        );
        assert!(ok.is_ok());
        let collected = ok.into_response().into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"\0\0\0\0\x01x"));
    }
}
