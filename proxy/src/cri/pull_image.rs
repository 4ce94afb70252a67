//! `PullImage` interception.
//!
//! Input: the kubelet's `PullImage` request (one gRPC message). The gate
//! decides; on allow the original request bytes go to containerd with one
//! override appended, `image { image: "name@sha256:…" }`, so containerd pulls
//! exactly the verified digest and every field pullgate does not know
//! travels intact (protobuf merges an embedded message field by field and
//! keeps the last scalar, so only the image name changes). An allow without
//! a digest (level `skip`, `fail_open` before the tag resolved) gets the
//! same override with the canonical reference (`localhost:5000/app:v1` for
//! `LOCALHOST:5000/app:v1`), so containerd's `hosts.toml` lookup sees the
//! host whose scope the gate matched, not the client's spelling of it.
//! After containerd answers OK, the tag the kubelet asked for is pointed at
//! that digest through containerd's native images API, and the answer goes
//! back once containerd's CRI image service reports the tag (see
//! [`super::tag`]), so the kubelet's next `ImageStatus(name:tag)` finds it;
//! a tag record that already holds the pinned record's target and labels
//! is read, not written again (a hot pull by tag costs two concurrent
//! `Get`s, no write transaction). Over the frame relay those two `Get`s
//! come first, and when the tag already points there the pinned pull is
//! handed back to the relay like one by digest. On deny the client gets
//! `PermissionDenied` and containerd sees nothing.
//!
//! With `[prefetch] enabled`, a pull whose verdict must be computed starts
//! a prefetch once its digest is resolved (see [`crate::prefetch`]): the
//! content goes into containerd's content store under a lease while the
//! signatures are verified. Allowed, no further blob starts, the forward
//! waits for the blobs being written, and the lease is deleted once containerd answered; denied or
//! undecided, the lease is deleted (content collected) before the answer.
//!
//! containerd's answers pass through as it sent them: a trailers-only error
//! stays trailers-only, with its `grpc-status` and `grpc-message` unchanged.
//!
//! Limits: the request message is capped at `[server] max_request_bytes`
//! (`ResourceExhausted` past it, read no further); a buffered response at
//! [`MAX_UNARY_RESPONSE_BYTES`](super::buffered::MAX_UNARY_RESPONSE_BYTES).
//! The deadline is the shorter of `grpc-timeout` and the configured budget;
//! pointing the tag has [`super::tag::TAG_BUDGET`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use super::passthrough::CallBody;
use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::Full;
use prost::Message;
use pullgate_authority::relay::Keep;
use pullgate_policy::{Digest, ImageRef, Repository};
use pullgate_proto::runtime::v1 as cri;

use super::admit::pod_of;
use super::buffered::Buffered;
use super::grpc::{frame, grpc_timeout, read_message, unframe, RequestError};
use super::passthrough::{boxed, handed_back, send_on, OverRelay, ProxyBody, Upstream};
use super::status;
use super::tag::TagWriter;
use crate::deadline::Deadline;
use crate::gate::{Allow, Decision, Door, Gate, Origin, Pod, PullRequest};
use crate::prefetch::Prefetcher;
use crate::registry::{Credentials, CriAuth};

/// gRPC path of `PullImage`.
pub(crate) const PULL_IMAGE_PATH: &str = "/runtime.v1.ImageService/PullImage";

/// The RPC name used in messages.
pub(crate) const PULL_IMAGE: &str = "PullImage";

/// What the CRI service needs to run `PullImage`.
#[derive(Debug, Clone)]
pub(crate) struct PullService {
    pub(crate) gate: Arc<Gate>,
    pub(crate) upstream: Upstream,
    /// Points the kubelet's tag at the pulled digest.
    pub(crate) tags: TagWriter,
    pub(crate) budget: Duration,
    /// `[server] max_request_bytes`.
    pub(crate) max_request_bytes: usize,
    /// Fetches a cold pull's content ahead of its verdict (`[prefetch] enabled`).
    pub(crate) prefetch: Option<Arc<Prefetcher>>,
}

impl PullService {
    /// Handles one `PullImage` call end to end.
    pub(crate) async fn pull(&self, req: Request<CallBody>) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let deadline = Deadline::after(self.budget)
            .at_most(grpc_timeout(&parts.headers).unwrap_or(self.budget));
        let message = match deadline
            .run(read_message(body, self.max_request_bytes))
            .await
        {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return status::response(status::bad_request(PULL_IMAGE, &e)),
            Err(_) => return status::response(status::deadline_before_read(PULL_IMAGE)),
        };
        let decoded = match decode(&message) {
            Ok(d) => d,
            Err(e) => return status::response(status::bad_request(PULL_IMAGE, &e)),
        };
        let request = PullRequest {
            image: decoded.image.clone(),
            credentials: decoded.credentials,
            deadline,
            origin: Origin {
                door: Door::Pull,
                pod: decoded.pod,
            },
        };
        let Some(prefetcher) = &self.prefetch else {
            let allow = match self.gate.decide(request).await {
                Ok(Decision::Allow(allow)) => allow,
                Ok(Decision::Deny(denial)) => return status::response(status::denied(&denial)),
                Err(e) => return status::response(status::inconclusive(&decoded.image, &e)),
            };
            return self.forward(parts, message, allow).await;
        };
        let started = OnceLock::new();
        let on_cold = |repository: &Repository,
                       digest: &Digest,
                       credentials: &Credentials,
                       now: SystemTime| {
            let _ = started.set(prefetcher.start(repository, digest, credentials, now));
        };
        let decided = self.gate.decide_with(request, &on_cold).await;
        let prefetch = started.into_inner();
        let allow = match decided {
            Ok(Decision::Allow(allow)) => allow,
            Ok(Decision::Deny(denial)) => {
                if let Some(p) = prefetch {
                    p.discard().await;
                }
                return status::response(status::denied(&denial));
            }
            Err(e) => {
                if let Some(p) = prefetch {
                    p.discard().await;
                }
                return status::response(status::inconclusive(&decoded.image, &e));
            }
        };
        let Some(mut prefetch) = prefetch else {
            return self.forward(parts, message, allow).await;
        };
        // containerd finds what was written and fetches only the rest.
        prefetch.settle(deadline).await;
        let resp = self.forward(parts, message, allow).await;
        prefetch.release().await;
        resp
    }

    /// Sends the (pinned) request to containerd, then tags on success. Only
    /// an answer that may need a tag written is buffered (to read its
    /// `grpc-status` first); any other streams through.
    async fn forward(
        &self,
        mut parts: http::request::Parts,
        message: Bytes,
        allow: Allow,
    ) -> Response<ProxyBody> {
        // Pinned or not, containerd gets the name the gate decided on.
        let body = frame(&with_image(&message, &allow.image_to_pull()));
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let started = std::time::Instant::now();
        let (Some(pinned), Some(tagged)) = (allow.pinned(), allow.tagged_name()) else {
            // Nothing to tag: containerd's answer streams back as it comes
            // (over the frame relay, on the client's own connection).
            let resp = match send_on(&self.upstream, parts, body.clone()).await {
                Ok(Some(resp)) => resp,
                Ok(None) => return handed_back(body, Some(self.forward_timer(started))),
                Err(e) => return status::response(status::upstream(&e)),
            };
            self.gate
                .metrics()
                .phase(crate::metrics::Phase::forward, started.elapsed());
            return resp;
        };
        // Over the frame relay, a tag that already points at the verified
        // record needs nothing after the pull: containerd's answer can go
        // straight back on the client's own connection.
        if parts.extensions.get::<OverRelay>().is_some()
            && self.tags.already_points(pinned, &tagged).await
        {
            let timer = self.forward_timer(std::time::Instant::now());
            return handed_back(body, Some(timer));
        }
        let req = Request::from_parts(parts, boxed(Full::new(body)));
        // Buffered to learn its grpc-status before tagging.
        let resp = match Buffered::exchange(&self.upstream, req).await {
            Ok(r) => r,
            Err(refusal) => return refusal,
        };
        self.gate
            .metrics()
            .phase(crate::metrics::Phase::forward, started.elapsed());
        if resp.is_ok() {
            let started = std::time::Instant::now();
            let image_id = pulled_image_id(&resp.data);
            match self.tags.point(pinned, &tagged, image_id.as_deref()).await {
                Ok(tagging) => {
                    tracing::debug!(image = %tagged, pinned = %pinned, ?tagging, "tag record")
                }
                Err(e) => {
                    tracing::warn!(image = %tagged, pinned = %pinned, error = %e,
                    "pulled by digest, but ImageStatus by tag may miss the image (the kubelet would pull it again)")
                }
            }
            self.gate
                .metrics()
                .phase(crate::metrics::Phase::tag, started.elapsed());
        }
        resp.into_response()
    }
}

impl PullService {
    /// Times a pull handed back to the frame relay: the `forward` phase,
    /// recorded when the relay drops it (containerd's answer ended).
    fn forward_timer(&self, started: std::time::Instant) -> Keep {
        Arc::new(ForwardTimer {
            metrics: self.gate.metrics(),
            started,
        })
    }
}

/// Records the `forward` phase from `started` when dropped.
struct ForwardTimer {
    metrics: Arc<crate::metrics::Metrics>,
    started: std::time::Instant,
}

impl Drop for ForwardTimer {
    fn drop(&mut self) {
        self.metrics
            .phase(crate::metrics::Phase::forward, self.started.elapsed());
    }
}

/// What pullgate reads from a `PullImageRequest`.
#[derive(Debug)]
pub(crate) struct DecodedPull {
    pub(crate) image: ImageRef,
    pub(crate) credentials: Credentials,
    /// The pod the image is pulled for (`sandbox_config.metadata`), when named.
    pub(crate) pod: Option<Pod>,
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
    let pod = pod_of(req.sandbox_config);
    Ok(DecodedPull {
        image,
        credentials,
        pod,
    })
}

/// The `image_ref` of containerd's framed `PullImageResponse`, if it decodes.
fn pulled_image_id(framed: &Bytes) -> Option<String> {
    let message = unframe(framed.clone()).ok()?;
    let resp = cri::PullImageResponse::decode(message).ok()?;
    (!resp.image_ref.is_empty()).then_some(resp.image_ref)
}

/// The original message with `image { image: name }` appended: only the
/// image name changes (to `name@digest`, or to the canonical reference).
pub(crate) fn with_image(original: &[u8], name: &str) -> Bytes {
    let overlay = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: name.to_owned(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: None,
    };
    let mut out = BytesMut::with_capacity(original.len() + overlay.encoded_len());
    out.put_slice(original);
    // Encoding into a BytesMut that grows cannot fail.
    overlay.encode_raw(&mut out);
    out.freeze()
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
            sandbox_config: vec![0x0a, 0x05, 0x0a, 0x03, b'p', b'o', b'd'],
            future_field: "from the future".into(),
        };
        let bytes = original.encode_to_vec();
        let pinned = format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64));
        let forwarded = with_image(&bytes, &pinned);

        assert!(
            forwarded.starts_with(&bytes),
            "original bytes are kept verbatim"
        );
        let seen_by_containerd = FuturePullImageRequest::decode(forwarded).unwrap();
        let mut expected = original;
        expected.image.as_mut().unwrap().image = pinned.clone();
        assert_eq!(seen_by_containerd, expected);
        // And pullgate's own proto sees the pinned name.
        let ours = cri::PullImageRequest::decode(with_image(&bytes, &pinned)).unwrap();
        assert_eq!(ours.image.unwrap().image, pinned);
    }

    #[test]
    fn decode_reads_image_and_credentials() {
        let msg = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "nginx".into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
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

    proptest::proptest! {
        #[test]
        fn request_parsing_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = unframe(Bytes::from(b.clone()));
            let _ = decode(&b);
        }
    }
}
