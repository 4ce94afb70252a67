//! `CreateContainer`: nothing runs without a verdict.
//!
//! Input: the kubelet's `CreateContainerRequest` (one gRPC message). The
//! images it would run — `config.image` (the image id the kubelet sends, or
//! a reference) and each image volume (`config.mounts[].image`, KEP-4639) —
//! must each be admitted for the pod ([`Admission::admit`]): an allow
//! verdict for the pod's requirements scope and the digest containerd's
//! record of the image targets, from the cache, the persisted verdicts, or a
//! verification made now. The pod's namespace comes from
//! `sandbox_config.metadata`. When the container's image is a checkpoint
//! image (see `checkpoint`), the base image it restores onto is admitted the
//! same way, or pulled through the gate when containerd lacks it, before
//! containerd restores anything. Admitted: the original message bytes go to
//! containerd and its answer comes back untouched. Refused:
//! `PermissionDenied` (or `Unavailable` when no decision could be made),
//! and containerd sees nothing; the kubelet shows it as
//! `CreateContainerError`.
//!
//! Limits: the request is read up to
//! [`MAX_RUNTIME_REQUEST_BYTES`](super::admit::MAX_RUNTIME_REQUEST_BYTES)
//! (or `[server] max_request_bytes` when larger); at most
//! [`MAX_IMAGE_VOLUMES`] image volumes; the deadline is the shorter of
//! `grpc-timeout` and the decision budget.

use super::passthrough::CallBody;
use http::{Request, Response};
use prost::Message;
use pullgate_proto::runtime::v1 as cri;

use super::admit::{pod_of, Admission};
use super::checkpoint::Restore;
use super::grpc::RequestError;
use super::image_records::PresentImage;
use super::passthrough::ProxyBody;
use super::refusal::Refusal;
use super::status::{self, Made};
use crate::deadline::Deadline;
use crate::gate::{Door, Origin, Pod};

/// gRPC path of `CreateContainer`.
pub(crate) const CREATE_CONTAINER_PATH: &str = "/runtime.v1.RuntimeService/CreateContainer";

/// The RPC name used in messages.
pub(crate) const CREATE_CONTAINER: &str = "CreateContainer";

/// Most image volumes one container may mount; a request with more is refused.
pub(crate) const MAX_IMAGE_VOLUMES: usize = 32;

/// What pullgate reads from a `CreateContainerRequest`.
#[derive(Debug)]
pub(crate) struct DecodedCreate {
    /// The container's image, then its image volumes.
    pub(crate) images: Vec<String>,
    pub(crate) pod: Option<Pod>,
}

/// Decodes the message bytes of a `CreateContainerRequest`.
///
/// # Errors
/// [`RequestError`]: not a `CreateContainerRequest`, no image, too many image volumes.
pub(crate) fn decode(message: &[u8]) -> Result<DecodedCreate, RequestError> {
    let req = cri::CreateContainerRequest::decode(message)?;
    let config = req.config.ok_or(RequestError::NoImage)?;
    let image = config
        .image
        .map(|s| s.image)
        .filter(|s| !s.is_empty())
        .ok_or(RequestError::NoImage)?;
    let volumes: Vec<String> = config
        .mounts
        .into_iter()
        .filter_map(|m| m.image)
        .map(|s| s.image)
        .filter(|s| !s.is_empty())
        .collect();
    if volumes.len() > MAX_IMAGE_VOLUMES {
        return Err(RequestError::TooManyImages {
            found: volumes.len(),
            limit: MAX_IMAGE_VOLUMES,
        });
    }
    let mut images = Vec::with_capacity(1 + volumes.len());
    images.push(image);
    for v in volumes {
        if !images.contains(&v) {
            images.push(v);
        }
    }
    let pod = pod_of(req.sandbox_config);
    Ok(DecodedCreate { images, pod })
}

/// Handles one `CreateContainer` call.
pub(crate) async fn serve(admission: &Admission, req: Request<CallBody>) -> Response<ProxyBody> {
    let read = match admission.read(req, CREATE_CONTAINER).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let decoded = match decode(&read.message) {
        Ok(d) => d,
        Err(e) => return status::response(status::bad_request(CREATE_CONTAINER, &e)),
    };
    let origin = Origin {
        door: Door::Create,
        pod: decoded.pod,
    };
    for (i, image) in decoded.images.iter().enumerate() {
        let present = match admission.admit(image, &origin, read.deadline).await {
            Ok(p) => p,
            Err(refusal) => return status::response(status::refused(Made::Container, &refusal)),
        };
        // The container's own image may be a checkpoint to restore; a volume is not.
        if i == 0 {
            if let Err(answer) = admit_restore(admission, &present, &origin, read.deadline).await {
                return answer;
            }
        }
    }
    admission.forward(read).await
}

/// When `present` is a checkpoint image, admits the base image each of its
/// checkpoint manifests restores onto, as the container's own image is
/// admitted; containerd lacking it, pulls it through the gate first, so
/// containerd pulls nothing itself.
async fn admit_restore(
    admission: &Admission,
    present: &PresentImage,
    origin: &Origin,
    deadline: Deadline,
) -> Result<(), Response<ProxyBody>> {
    let restores = admission
        .checkpoints
        .restores(present, deadline)
        .await
        .map_err(|unread| status::response(status::checkpoint_unread(&unread)))?;
    for Restore { checkpoint, base } in restores {
        let name = base.image.to_string();
        let admitted = match admission.admit(&name, origin, deadline).await {
            Err(Refusal::NotHeld { .. }) => {
                admission
                    .pulls
                    .pull(
                        &admission.gate,
                        base.image.clone(),
                        origin.clone(),
                        deadline,
                    )
                    .await
            }
            other => other.map(drop),
        };
        if let Err(refusal) = admitted {
            return Err(status::response(status::restore_refused(
                &checkpoint,
                &name,
                &refusal,
            )));
        }
        tracing::info!(checkpoint = %checkpoint, base = %name, "checkpoint restore: base image admitted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(image: &str, volumes: &[&str], namespace: &str) -> Vec<u8> {
        cri::CreateContainerRequest {
            pod_sandbox_id: "sb".into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                mounts: volumes
                    .iter()
                    .map(|v| cri::Mount {
                        container_path: "/v".into(),
                        image: Some(cri::ImageSpec {
                            image: (*v).into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .chain(std::iter::once(cri::Mount {
                        container_path: "/host".into(),
                        host_path: "/tmp".into(),
                        ..Default::default()
                    }))
                    .collect(),
            }),
            sandbox_config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u".into(),
                    namespace: namespace.into(),
                    attempt: 0,
                }),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn decode_reads_the_image_its_volumes_and_the_pod() {
        let d = decode(&request("sha256:aa", &["reg/vol:1", "sha256:aa"], "team-a")).unwrap();
        assert_eq!(d.images, ["sha256:aa", "reg/vol:1"]);
        assert_eq!(d.pod, Pod::new("team-a", "web"));
        let d = decode(&request("sha256:aa", &[], "")).unwrap();
        assert_eq!(d.pod, None);
    }

    #[test]
    fn decode_refuses_a_request_without_image_or_with_too_many_volumes() {
        assert!(matches!(
            decode(&request("", &[], "ns")),
            Err(RequestError::NoImage)
        ));
        assert!(matches!(decode(&[]), Err(RequestError::NoImage)));
        let many: Vec<String> = (0..=MAX_IMAGE_VOLUMES)
            .map(|i| format!("r/v:{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            decode(&request("sha256:aa", &many, "ns")),
            Err(RequestError::TooManyImages { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = decode(&b);
        }
    }
}
