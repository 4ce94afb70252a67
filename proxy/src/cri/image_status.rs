//! `ImageStatus` under `[server] enforce_image_status` (without it the call
//! is passed through like the other image reads).
//!
//! Input: the kubelet's `ImageStatus` request, which goes to containerd
//! untouched; when containerd reports the image, each of
//! its names (`repo_tags`, `repo_digests`) is looked up in containerd's
//! images API (namespace `[server] containerd_namespace`) for the digest
//! its record really targets, and the gate is asked about those
//! (repository, target digest) pairs. A name only spells a digest: anyone
//! with containerd's socket can create `x@<an allowed digest>` pointing at
//! any image, so the spelled digest is never trusted. An image without an
//! allow verdict, or an answer pullgate cannot decode, is answered as absent
//! (an empty `ImageStatusResponse`), so the kubelet calls `PullImage` and
//! pullgate verifies it. This covers images pulled around the proxy or before
//! it was installed. Otherwise containerd's response bytes are returned
//! untouched.
//!
//! Limits: the request message is capped at `[server] max_request_bytes`; a
//! buffered response at
//! [`MAX_UNARY_RESPONSE_BYTES`](super::buffered::MAX_UNARY_RESPONSE_BYTES); at
//! most [`MAX_NAMES_CHECKED`](super::image_records::MAX_NAMES_CHECKED) names of
//! one image are looked up. The deadline is the shorter of `grpc-timeout`
//! and the configured budget.

use std::sync::Arc;
use std::time::Duration;

use super::passthrough::CallBody;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use prost::Message;
use pullgate_proto::runtime::v1 as cri;

use super::buffered::Buffered;
use super::grpc::{frame, grpc_timeout, read_body, unframe, RequestError};
use super::image_records::ImageRecords;
use super::passthrough::{boxed, ProxyBody, Upstream};
use super::status;
use crate::deadline::Deadline;
use crate::gate::Gate;

/// gRPC path of `ImageStatus`.
pub(crate) const IMAGE_STATUS_PATH: &str = "/runtime.v1.ImageService/ImageStatus";

/// The RPC name used in messages.
pub(crate) const IMAGE_STATUS: &str = "ImageStatus";

/// What the CRI service needs to check `ImageStatus` answers.
#[derive(Debug, Clone)]
pub(crate) struct ImageStatusService {
    pub(crate) gate: Arc<Gate>,
    pub(crate) upstream: Upstream,
    /// containerd's images and their records.
    pub(crate) records: ImageRecords,
    pub(crate) budget: Duration,
    /// `[server] max_request_bytes`.
    pub(crate) max_request_bytes: usize,
}

/// What containerd's `ImageStatus` answer says about the image.
enum Reported {
    /// No image: containerd's answer is passed on as it is.
    Absent,
    /// An image: shown only if the gate allows one of its names.
    Present(cri::Image),
    /// The answer cannot be read: the image is hidden (fail closed).
    Undecodable(RequestError),
}

impl Reported {
    fn of(framed: &Bytes) -> Self {
        let decoded = unframe(framed.clone())
            .and_then(|m| cri::ImageStatusResponse::decode(m).map_err(RequestError::from));
        match decoded {
            Ok(resp) => resp.image.map_or(Self::Absent, Self::Present),
            Err(e) => Self::Undecodable(e),
        }
    }
}

impl ImageStatusService {
    /// Handles one `ImageStatus` call under enforcement.
    pub(crate) async fn serve(&self, req: Request<CallBody>) -> Response<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        let deadline = Deadline::after(self.budget)
            .at_most(grpc_timeout(&parts.headers).unwrap_or(self.budget));
        let request = match deadline.run(read_body(body, self.max_request_bytes)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return status::response(status::bad_request(IMAGE_STATUS, &e)),
            Err(_) => return status::response(status::deadline_before_read(IMAGE_STATUS)),
        };
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let req = Request::from_parts(parts, boxed(Full::new(request)));
        let mut resp = match Buffered::exchange(&self.upstream, req).await {
            Ok(r) => r,
            Err(refusal) => return refusal,
        };
        if resp.is_ok() && self.must_hide(&resp.data, deadline).await {
            // An empty ImageStatusResponse: the image is absent.
            resp.data = frame(&[]);
        }
        resp.into_response()
    }

    /// Whether containerd's framed `ImageStatusResponse` must be answered as
    /// absent: it names an image none of whose records the gate allows, or
    /// it cannot be decoded.
    async fn must_hide(&self, framed: &Bytes, deadline: Deadline) -> bool {
        let image = match Reported::of(framed) {
            Reported::Absent => return false,
            Reported::Present(image) => image,
            Reported::Undecodable(e) => {
                tracing::warn!(error = %e,
                    "ImageStatus: containerd's answer cannot be decoded; reported absent (fail closed)");
                return true;
            }
        };
        let records = self.records.records_of(&image, deadline).await.records;
        // The gate sees each name's repository with the digest its record
        // really targets, never the digest a name spells.
        let show = self.gate.may_show(&records);
        if !show {
            tracing::info!(image = image.id, repo_tags = ?image.repo_tags, repo_digests = ?image.repo_digests,
                records = ?records.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "ImageStatus: image has no allow verdict; reported absent so the kubelet pulls it through pullgate");
        }
        !show
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_status_answer_that_does_not_decode_is_not_absent() {
        assert!(matches!(Reported::of(&frame(&[])), Reported::Absent));
        let present = cri::ImageStatusResponse {
            image: Some(cri::Image {
                id: "sha256:x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            Reported::of(&frame(&present.encode_to_vec())),
            Reported::Present(_)
        ));
        for bad in [
            Bytes::new(),
            Bytes::from_static(b"\0\0\0\0\x02\xff\xff"),
            Bytes::from_static(b"\x01\0\0\0\0"),
            Bytes::from_static(b"\0\0\0\0\x09short"),
        ] {
            assert!(
                matches!(Reported::of(&bad), Reported::Undecodable(_)),
                "{bad:?}"
            );
        }
    }
}
