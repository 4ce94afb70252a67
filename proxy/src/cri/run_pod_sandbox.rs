//! `RunPodSandbox`: the sandbox (pause) image runs only with a verdict.
//!
//! Input: the kubelet's `RunPodSandboxRequest`. containerd starts every pod
//! from its configured sandbox image, pulling it itself when it lacks it —
//! around any `PullImage` the gate sees. So before forwarding, pullgate finds
//! that image (`[server] sandbox_image` when set, else the `sandboxImage` of
//! containerd's CRI configuration, read from its verbose `Status` on every
//! call: containerd reads it once at start, and the call is local and cheap)
//! and:
//! - when containerd holds it, admits it for the pod like a container's
//!   image ([`Admission::admit`]);
//! - when it does not, pulls it through the gate first
//!   ([`PullThrough`](super::pull_through::PullThrough): a `PullImage` of
//!   the digest the gate verified, its tag pointed at it), so containerd
//!   finds it and pulls nothing itself.
//!
//! Refused: `PermissionDenied` naming the sandbox image (`Unavailable` when no
//! decision could be made), and containerd sees nothing. Admitted: the
//! original request bytes go to containerd; its answer comes back untouched.
//!
//! Limits: as `CreateContainer` (request size, deadline); containerd's
//! `Status` answer is read up to [`MAX_STATUS_BYTES`].

use super::passthrough::CallBody;
use http::{Request, Response};
use prost::Message;
use pullgate_policy::ImageRef;
use pullgate_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use super::admit::{pod_of, Admission};
use super::grpc::RequestError;
use super::passthrough::ProxyBody;
use super::refusal::{Refusal, SandboxError};
use super::status::{self, Made};
use crate::deadline::Deadline;
use crate::gate::{Door, Origin, Pod};

/// gRPC path of `RunPodSandbox`.
pub(crate) const RUN_POD_SANDBOX_PATH: &str = "/runtime.v1.RuntimeService/RunPodSandbox";

/// The RPC name used in messages.
pub(crate) const RUN_POD_SANDBOX: &str = "RunPodSandbox";

/// Largest `Status` answer read from containerd (its verbose info holds the whole CRI configuration).
pub(crate) const MAX_STATUS_BYTES: usize = 4 << 20;

/// Finds the sandbox image.
#[derive(Debug, Clone)]
pub(crate) struct SandboxImage {
    /// `[server] sandbox_image`, when set.
    pub(crate) configured: Option<String>,
    pub(crate) runtime: cri::runtime_service_client::RuntimeServiceClient<Channel>,
}

impl SandboxImage {
    /// The sandbox image containerd will run.
    ///
    /// # Errors
    /// [`SandboxError`] when containerd cannot say, or says nothing usable.
    pub(crate) async fn name(&self, deadline: Deadline) -> Result<ImageRef, SandboxError> {
        let name = match &self.configured {
            Some(name) => name.clone(),
            None => {
                let mut runtime = self.runtime.clone();
                let info = deadline
                    .run(runtime.status(cri::StatusRequest { verbose: true }))
                    .await
                    .map_err(|_| SandboxError::Deadline)?
                    .map_err(SandboxError::Status)?
                    .into_inner()
                    .info;
                info.get("config")
                    .and_then(|c| sandbox_image_of(c))
                    .ok_or(SandboxError::NotConfigured)?
            }
        };
        name.parse::<ImageRef>()
            .map_err(|source| SandboxError::Reference {
                image: name.chars().take(256).collect(),
                source,
            })
    }
}

/// The sandbox image named in containerd's CRI configuration (the JSON of
/// its verbose `Status` info `config`): `sandboxImage` (containerd 1.x),
/// else `pinnedImages.sandbox` (containerd 2.x).
pub(crate) fn sandbox_image_of(config_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(config_json).ok()?;
    let found = v
        .get("sandboxImage")
        .or_else(|| v.get("pinnedImages").and_then(|p| p.get("sandbox")))
        .and_then(serde_json::Value::as_str)?;
    (!found.is_empty()).then(|| found.to_owned())
}

/// Decodes the pod of a `RunPodSandboxRequest`.
///
/// # Errors
/// [`RequestError::Decode`]: not a `RunPodSandboxRequest`.
pub(crate) fn decode(message: &[u8]) -> Result<Option<Pod>, RequestError> {
    let req = cri::RunPodSandboxRequest::decode(message)?;
    Ok(pod_of(req.config))
}

/// Handles one `RunPodSandbox` call.
pub(crate) async fn serve(
    admission: &Admission,
    sandbox: &SandboxImage,
    req: Request<CallBody>,
) -> Response<ProxyBody> {
    let read = match admission.read(req, RUN_POD_SANDBOX).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let pod = match decode(&read.message) {
        Ok(p) => p,
        Err(e) => return status::response(status::bad_request(RUN_POD_SANDBOX, &e)),
    };
    let origin = Origin {
        door: Door::Sandbox,
        pod,
    };
    let image = match sandbox.name(read.deadline).await {
        Ok(i) => i,
        Err(e) => return status::response(status::sandbox_unknown(&e)),
    };
    let name = image.to_string();
    let admitted = match admission.admit(&name, &origin, read.deadline).await {
        Err(Refusal::NotHeld { .. }) => {
            admission
                .pulls
                .pull(&admission.gate, image, origin, read.deadline)
                .await
        }
        other => other.map(drop),
    };
    match admitted {
        Ok(()) => admission.forward(read).await,
        Err(refusal) => status::response(status::refused(Made::Sandbox, &refusal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_image_is_read_from_either_containerd_generation() {
        assert_eq!(
            sandbox_image_of(r#"{"sandboxImage":"registry.k8s.io/pause:3.6","other":1}"#),
            Some("registry.k8s.io/pause:3.6".to_owned())
        );
        assert_eq!(
            sandbox_image_of(r#"{"pinnedImages":{"sandbox":"registry.k8s.io/pause:3.10"}}"#),
            Some("registry.k8s.io/pause:3.10".to_owned())
        );
        assert_eq!(sandbox_image_of(r#"{"sandboxImage":""}"#), None);
        assert_eq!(sandbox_image_of("not json"), None);
        assert_eq!(sandbox_image_of(r#"{"sandboxImage":7}"#), None);
    }

    #[test]
    fn decode_reads_the_pod() {
        let msg = cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u".into(),
                    namespace: "team-a".into(),
                    attempt: 1,
                }),
            }),
            runtime_handler: String::new(),
        }
        .encode_to_vec();
        assert_eq!(decode(&msg).unwrap(), Pod::new("team-a", "web"));
        assert_eq!(decode(&[]).unwrap(), None);
        assert!(decode(&[0xff, 0xff]).is_err());
    }
}
