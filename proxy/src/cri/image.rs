//! `PullImage` interception.
//!
//! Input: the kubelet's `PullImage` request (one gRPC message). The gate
//! decides; on allow the original request bytes go to containerd with one
//! override appended, `image { image: "name@sha256:…" }`, so containerd pulls
//! exactly the verified digest and every field pullgate does not know
//! travels intact (protobuf merges an embedded message field by field and
//! keeps the last scalar, so only the image name changes). After containerd
//! answers OK, the tag the kubelet asked for is pointed at that digest
//! through containerd's native images API, so `ImageStatus(name:tag)` finds
//! it. On deny the client gets `PermissionDenied` and containerd sees nothing.
//!
//! `ImageStatus` (only with `[server] enforce_image_status`): the request
//! goes to containerd untouched; when containerd reports the image, its
//! `repo_digests` are checked against the gate's allow verdicts, and an image
//! without one is answered as absent (an empty `ImageStatusResponse`), so the
//! kubelet calls `PullImage` and pullgate verifies it. This covers images
//! pulled around the proxy or before it was installed. Otherwise
//! containerd's response bytes are returned untouched.
//!
//! Limits: the request message is capped at [`MAX_REQUEST_BYTES`]; the
//! deadline is the shorter of `grpc-timeout` and the configured budget.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use prost::Message;
use pullgate_policy::ImageRef;
use pullgate_proto::containerd::services::images::v1 as images;
use pullgate_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use super::passthrough::{boxed, ProxyBody, Upstream};
use super::status;
use crate::deadline::Deadline;
use crate::gate::{Allow, Decision, Gate, PullRequest};
use crate::registry::{Credentials, CriAuth};

/// Largest `PullImage` request pullgate reads (the kubelet's are a few KiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 4 << 20;

/// gRPC path of `PullImage`.
pub(crate) const PULL_IMAGE_PATH: &str = "/runtime.v1.ImageService/PullImage";

/// gRPC path of `ImageStatus`.
pub(crate) const IMAGE_STATUS_PATH: &str = "/runtime.v1.ImageService/ImageStatus";

/// Largest unary response pullgate buffers from containerd (`PullImage`,
/// and `ImageStatus` with its verbose info when enforcing).
const MAX_UNARY_RESPONSE_BYTES: usize = 16 << 20;

/// A unary response from containerd, read whole so its `grpc-status` can be
/// inspected before it is passed on.
struct Buffered {
    parts: http::response::Parts,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Buffered {
    /// Sends `req` to containerd and reads the response, capped at [`MAX_UNARY_RESPONSE_BYTES`].
    async fn exchange(
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
    fn is_ok(&self) -> bool {
        grpc_ok(&self.parts.headers, self.trailers.as_ref())
    }

    /// The response to pass on: containerd's headers and trailers around `data`.
    fn into_response(mut self) -> Response<ProxyBody> {
        self.parts.headers.remove(http::header::CONTENT_LENGTH);
        let frames = [Ok::<_, std::convert::Infallible>(Frame::data(self.data))]
            .into_iter()
            .chain(self.trailers.map(|t| Ok(Frame::trailers(t))));
        Response::from_parts(
            self.parts,
            boxed(StreamBody::new(futures_util::stream::iter(frames))),
        )
    }
}

/// Why a request could not be read as a `PullImage` call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// The body could not be read or exceeded [`MAX_REQUEST_BYTES`].
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The gRPC framing is wrong (not exactly one length-prefixed message).
    #[error("malformed gRPC framing")]
    Framing,
    /// The message is compressed; pullgate reads only uncompressed requests.
    #[error("compressed PullImage requests are not supported")]
    Compressed,
    /// The message is not a `PullImageRequest`.
    #[error("cannot decode PullImageRequest: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The request names no image.
    #[error("PullImageRequest names no image")]
    NoImage,
    /// The image reference does not parse.
    #[error("invalid image reference {image:?}: {source}")]
    Reference {
        /// As sent.
        image: String,
        /// Why.
        source: pullgate_policy::reference::ReferenceError,
    },
}

/// What the CRI service needs to run `PullImage`.
#[derive(Debug, Clone)]
pub(crate) struct PullService {
    pub(crate) gate: std::sync::Arc<Gate>,
    pub(crate) upstream: Upstream,
    pub(crate) images: images::images_client::ImagesClient<Channel>,
    pub(crate) namespace: String,
    pub(crate) budget: Duration,
    pub(crate) enforce_image_status: bool,
}

impl PullService {
    /// Handles one `ImageStatus` call under enforcement.
    pub(crate) async fn image_status(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        let request = match Limited::new(body, MAX_REQUEST_BYTES + 5).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return status::response(tonic::Status::invalid_argument(format!(
                    "pullgate cannot read ImageStatus: {e}"
                )))
            }
        };
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let req = Request::from_parts(parts, boxed(Full::new(request)));
        let mut resp = match Buffered::exchange(&self.upstream, req).await {
            Ok(r) => r,
            Err(refusal) => return refusal,
        };
        if resp.is_ok() && self.must_hide(&resp.data) {
            // An empty ImageStatusResponse: the image is absent.
            resp.data = frame(&[]);
        }
        resp.into_response()
    }

    /// Whether containerd's framed `ImageStatusResponse` names an image without an allow verdict.
    fn must_hide(&self, framed: &Bytes) -> bool {
        let Ok(message) = unframe(framed.clone()) else {
            return false;
        };
        let Ok(resp) = cri::ImageStatusResponse::decode(message) else {
            return false;
        };
        let Some(image) = resp.image else {
            return false;
        };
        let pinned: Vec<_> = image
            .repo_digests
            .iter()
            .filter_map(|r| r.parse::<ImageRef>().ok())
            .filter_map(|r| r.digest().cloned().map(|d| r.pinned(d)))
            .collect();
        let show = self.gate.may_show(&pinned);
        if !show {
            tracing::info!(image = image.id, repo_digests = ?image.repo_digests,
                "ImageStatus: image has no allow verdict; reported absent so the kubelet pulls it through pullgate");
        }
        !show
    }

    /// Handles one `PullImage` call end to end.
    pub(crate) async fn pull(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let deadline = Deadline::after(self.budget)
            .at_most(grpc_timeout(&parts.headers).unwrap_or(self.budget));
        let message = match deadline.run(read_message(body)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return status::response(status::bad_request(&e)),
            Err(_) => return status::response(status::deadline_before_decision()),
        };
        let decoded = match decode(&message) {
            Ok(d) => d,
            Err(e) => return status::response(status::bad_request(&e)),
        };
        let request = PullRequest {
            image: decoded.image.clone(),
            credentials: decoded.credentials,
            deadline,
        };
        let allow = match self.gate.decide(request).await {
            Ok(Decision::Allow(allow)) => allow,
            Ok(Decision::Deny(denial)) => return status::response(status::denied(&denial)),
            Err(e) => return status::response(status::inconclusive(&decoded.image, &e)),
        };
        self.forward(parts, message, allow).await
    }

    /// Sends the (pinned) request to containerd, then tags on success.
    async fn forward(
        &self,
        mut parts: http::request::Parts,
        message: Bytes,
        allow: Allow,
    ) -> Response<ProxyBody> {
        let body = match allow.pinned() {
            Some(pinned) => frame(&pinned_request(&message, &pinned.to_string())),
            None => frame(&message),
        };
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let req = Request::from_parts(parts, boxed(Full::new(body)));
        let started = std::time::Instant::now();
        // Buffered to learn its grpc-status before tagging.
        let resp = match Buffered::exchange(&self.upstream, req).await {
            Ok(r) => r,
            Err(refusal) => return refusal,
        };
        self.gate
            .metrics()
            .phase(crate::metrics::Phase::forward, started.elapsed());
        if resp.is_ok() {
            if let (Some(pinned), Some(tagged)) = (allow.pinned(), allow.tagged_name()) {
                if let Err(e) = self.tag(&pinned.to_string(), &tagged).await {
                    tracing::warn!(image = %tagged, pinned = %pinned, error = %e,
                        "pulled by digest but could not create the tag; ImageStatus by tag will miss it");
                }
            }
        }
        resp.into_response()
    }

    /// Points `tagged` (`name:tag`) at the image record containerd made for `pinned` (`name@digest`).
    async fn tag(&self, pinned: &str, tagged: &str) -> Result<(), tonic::Status> {
        let mut client = self.images.clone();
        let got = client
            .get(self.namespaced(images::GetImageRequest {
                name: pinned.to_owned(),
            }))
            .await?
            .into_inner();
        let Some(record) = got.image else {
            return Err(tonic::Status::not_found("pinned image record missing"));
        };
        let image = images::Image {
            name: tagged.to_owned(),
            labels: record.labels,
            target: record.target,
            created_at: None,
            updated_at: None,
        };
        match client
            .create(self.namespaced(images::CreateImageRequest {
                image: Some(image.clone()),
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => client
                .update(self.namespaced(images::UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                }))
                .await
                .map(|_| ()),
            Err(s) => Err(s),
        }
    }

    fn namespaced<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        req
    }
}

/// What pullgate reads from a `PullImageRequest`.
#[derive(Debug)]
pub(crate) struct DecodedPull {
    pub(crate) image: ImageRef,
    pub(crate) credentials: Credentials,
}

/// Decodes the message bytes of a `PullImageRequest`.
pub(crate) fn decode(message: &[u8]) -> Result<DecodedPull, RequestError> {
    let req = cri::PullImageRequest::decode(message)?;
    let raw = req
        .image
        .map(|s| s.image)
        .filter(|s| !s.is_empty())
        .ok_or(RequestError::NoImage)?;
    let image = raw
        .parse::<ImageRef>()
        .map_err(|source| RequestError::Reference {
            image: raw.chars().take(256).collect(),
            source,
        })?;
    let credentials = match req.auth {
        Some(a) => Credentials::from_cri(
            CriAuth {
                username: &a.username,
                password: &a.password,
                auth: &a.auth,
                server_address: &a.server_address,
                identity_token: &a.identity_token,
                registry_token: &a.registry_token,
            },
            image.repository(),
        ),
        None => Credentials::NotGiven,
    };
    Ok(DecodedPull { image, credentials })
}

/// The original message with `image { image: pinned }` appended: only the image name changes.
pub(crate) fn pinned_request(original: &[u8], pinned: &str) -> Bytes {
    let overlay = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: pinned.to_owned(),
            ..Default::default()
        }),
        auth: None,
    };
    let mut out = BytesMut::with_capacity(original.len() + overlay.encoded_len());
    out.put_slice(original);
    // Encoding into a BytesMut that grows cannot fail.
    overlay.encode_raw(&mut out);
    out.freeze()
}

/// One uncompressed gRPC length-prefixed message.
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 5);
    out.put_u8(0);
    // MAX_REQUEST_BYTES keeps this within u32.
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

/// Reads exactly one uncompressed gRPC message from a request body.
async fn read_message(body: Incoming) -> Result<Bytes, RequestError> {
    let bytes = Limited::new(body, MAX_REQUEST_BYTES + 5)
        .collect()
        .await
        .map_err(|e| RequestError::Body(e.to_string()))?
        .to_bytes();
    unframe(bytes)
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
fn grpc_ok(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> bool {
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

    /// A PullImageRequest as a newer kubelet might send it: a field pullgate's proto lacks.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FuturePullImageRequest {
        #[prost(message, optional, tag = "1")]
        image: Option<FutureImageSpec>,
        #[prost(message, optional, tag = "2")]
        auth: Option<cri::AuthConfig>,
        #[prost(bytes = "vec", tag = "3")]
        sandbox_config: Vec<u8>,
        #[prost(string, tag = "99")]
        future_field: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct FutureImageSpec {
        #[prost(string, tag = "1")]
        image: String,
        #[prost(map = "string, string", tag = "2")]
        annotations: std::collections::HashMap<String, String>,
        #[prost(string, tag = "18")]
        user_specified_image: String,
        #[prost(string, tag = "42")]
        future_spec_field: String,
    }

    #[test]
    fn forwarded_bytes_keep_unknown_fields_and_change_only_the_image() {
        let original = FuturePullImageRequest {
            image: Some(FutureImageSpec {
                image: "127.0.0.1:5000/app:v1".into(),
                annotations: [("k".to_owned(), "v".to_owned())].into(),
                user_specified_image: "app:v1".into(),
                future_spec_field: "keep me".into(),
            }),
            auth: Some(cri::AuthConfig {
                username: "u".into(),
                ..Default::default()
            }),
            sandbox_config: vec![0x0a, 0x03, b'p', b'o', b'd'],
            future_field: "from the future".into(),
        };
        let bytes = original.encode_to_vec();
        let pinned = format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64));
        let forwarded = pinned_request(&bytes, &pinned);

        assert!(
            forwarded.starts_with(&bytes),
            "original bytes are kept verbatim"
        );
        let seen_by_containerd = FuturePullImageRequest::decode(forwarded).unwrap();
        let mut expected = original;
        expected.image.as_mut().unwrap().image = pinned.clone();
        assert_eq!(seen_by_containerd, expected);
        // And pullgate's own proto sees the pinned name.
        let ours = cri::PullImageRequest::decode(pinned_request(&bytes, &pinned)).unwrap();
        assert_eq!(ours.image.unwrap().image, pinned);
    }

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
    fn decode_reads_image_and_credentials() {
        let msg = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "nginx".into(),
                ..Default::default()
            }),
            auth: None,
        }
        .encode_to_vec();
        let d = decode(&msg).unwrap();
        assert_eq!(d.image.to_string(), "docker.io/library/nginx:latest");
        assert!(matches!(decode(&[]), Err(RequestError::NoImage)));
        assert!(matches!(
            decode(&[0xff, 0xff]),
            Err(RequestError::Decode(_))
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

        #[test]
        fn request_parsing_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = unframe(Bytes::from(b.clone()));
            let _ = decode(&b);
        }
    }
}
