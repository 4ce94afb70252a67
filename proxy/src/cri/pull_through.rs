//! Bringing an image containerd lacks onto the node through the gate, for
//! a runtime door that would otherwise have containerd pull it itself (the
//! sandbox image of `RunPodSandbox`, a checkpoint's base image).
//!
//! Input: the image, the door's [`Origin`] and deadline. The gate decides
//! it as a pull for the pod; allowed, containerd's CRI `PullImage` gets the
//! digest the gate verified (`name@digest`) and the tag, when one was asked
//! for, is pointed at it. Output: pulled, or a [`Refusal`] (denied,
//! undecided, or containerd's pull failed); containerd pulls nothing the
//! gate did not allow.

use pullgate_policy::ImageRef;
use pullgate_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use super::refusal::{PullError, Refusal};
use super::tag::TagWriter;
use crate::deadline::Deadline;
use crate::gate::{Decision, Gate, Origin, PullRequest};
use crate::registry::Credentials;

/// Pulls allowed images through containerd's CRI `PullImage`, pinned.
#[derive(Debug, Clone)]
pub(crate) struct PullThrough {
    pub(crate) images: cri::image_service_client::ImageServiceClient<Channel>,
    pub(crate) tags: TagWriter,
}

impl PullThrough {
    /// Decides `image` as a pull for `origin`'s pod and, when allowed, has
    /// containerd pull the verified digest and point the tag at it.
    ///
    /// # Errors
    /// [`Refusal::Denied`], [`Refusal::Undecided`], or [`Refusal::NotPulled`]
    /// when containerd's pull of the allowed digest fails.
    pub(crate) async fn pull(
        &self,
        gate: &Gate,
        image: ImageRef,
        origin: Origin,
        deadline: Deadline,
    ) -> Result<(), Refusal> {
        let request = PullRequest {
            image: image.clone(),
            credentials: Credentials::NotGiven,
            deadline,
            origin,
        };
        let allow = match gate.decide(request).await {
            Ok(Decision::Allow(allow)) => allow,
            Ok(Decision::Deny(denial)) => return Err(Refusal::Denied(denial)),
            Err(error) => return Err(Refusal::Undecided { image, error }),
        };
        let to_pull = allow.image_to_pull();
        let not_pulled = |error| Refusal::NotPulled {
            image: to_pull.clone(),
            error,
        };
        let mut images = self.images.clone();
        let pulled = deadline
            .run(images.pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: to_pull.clone(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            }))
            .await
            .map_err(|_| not_pulled(PullError::Deadline))?
            .map_err(|s| not_pulled(PullError::Upstream(s)))?
            .into_inner();
        if let (Some(pinned), Some(tagged)) = (allow.pinned(), allow.tagged_name()) {
            let id = (!pulled.image_ref.is_empty()).then_some(pulled.image_ref.as_str());
            if let Err(e) = self.tags.point(pinned, &tagged, id).await {
                tracing::warn!(image = %tagged, pinned = %pinned, error = %e,
                    "image pulled by digest through the gate, but its tag may not resolve: containerd may pull it itself");
            }
        }
        tracing::info!(image = %to_pull, "image pulled through the gate for a runtime door");
        Ok(())
    }
}
