//! What the node holds, read from containerd's CRI: every image in its CRI
//! namespace with its records, every container with its pod, and the
//! sandbox image. `pullgate preflight`, `pullgate doctor` and the daemon's
//! `pullgate_images_without_verdict` gauge ask the gate about these.
//!
//! Input: a channel to containerd's socket (`[server] upstream`, never
//! pullgate's own), the images namespace and a deadline. Output: plain
//! structs; no prost type leaves this module. An image's records come from
//! `ImageRecords::records_of` (each name pinned at the digest its image
//! record really targets), so every caller judges the same records the
//! runtime doors judge.
//!
//! Limits: each list is read whole, up to `MAX_LIST_BYTES`; at most
//! `max_images` images have their records looked up per call; every call
//! runs under the caller's deadline.

use std::collections::HashMap;
use std::path::Path;

use pullgate_policy::PinnedRef;
use pullgate_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use super::image_records::ImageRecords;
use super::run_pod_sandbox::{sandbox_image_of, MAX_STATUS_BYTES};
use crate::deadline::Deadline;

/// Largest `ListImages`, `ListContainers` or `ListPodSandbox` answer read.
pub(crate) const MAX_LIST_BYTES: usize = 64 << 20;

/// The kubelet's container label naming the pod's namespace.
const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The kubelet's container label naming the pod.
const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";

/// Why containerd could not say what it holds.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// containerd's socket cannot be used.
    #[error("containerd client: {0}")]
    Client(String),
    /// A CRI call failed.
    #[error("containerd's {call} failed: {}", .status.message())]
    Call {
        /// The RPC.
        call: &'static str,
        /// containerd's answer.
        status: tonic::Status,
    },
    /// The deadline passed.
    #[error("the deadline passed while asking containerd about {0}")]
    Deadline(&'static str),
}

/// An image containerd holds in its CRI namespace.
#[derive(Debug, Clone)]
pub(crate) struct NodeImage {
    /// containerd's image id (the config digest).
    pub(crate) id: String,
    /// Its names as the CRI lists them (tags, then digest references).
    pub(crate) names: Vec<String>,
    /// Each usable name's repository pinned at its record's real target.
    pub(crate) records: Vec<PinnedRef>,
}

/// The pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PodName {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// A container containerd knows of.
#[derive(Debug, Clone)]
pub(crate) struct NodeContainer {
    /// The image it was created from, as containerd reports it (`image_ref`:
    /// the image id for containerd).
    pub(crate) image_ref: String,
    /// Whether it is running now.
    pub(crate) running: bool,
    /// Its pod, from the kubelet's labels or its sandbox's metadata.
    pub(crate) pod: Option<PodName>,
}

/// CRI clients on containerd's socket.
#[derive(Debug, Clone)]
pub(crate) struct Inventory {
    images: cri::image_service_client::ImageServiceClient<Channel>,
    runtime: cri::runtime_service_client::RuntimeServiceClient<Channel>,
    records: ImageRecords,
}

impl Inventory {
    /// Clients on containerd's socket `upstream`, records in `namespace`.
    ///
    /// # Errors
    /// [`InventoryError::Client`] when no channel can be made.
    pub(crate) fn new(upstream: &Path, namespace: &str) -> Result<Self, InventoryError> {
        let channel = super::containerd_channel(upstream)
            .map_err(|e| InventoryError::Client(e.to_string()))?;
        Ok(Self {
            images: cri::image_service_client::ImageServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_LIST_BYTES),
            runtime: cri::runtime_service_client::RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_LIST_BYTES.max(MAX_STATUS_BYTES)),
            records: ImageRecords::new(channel, namespace.to_owned()),
        })
    }

    /// Every image in containerd's CRI namespace (at most `max_images`,
    /// in containerd's order), with its records.
    ///
    /// # Errors
    /// [`InventoryError`] when `ListImages` fails or the deadline passes.
    pub(crate) async fn images(
        &self,
        max_images: usize,
        deadline: Deadline,
    ) -> Result<Vec<NodeImage>, InventoryError> {
        let listed = self.list(deadline).await?;
        self.with_records(listed.iter().take(max_images), deadline)
            .await
    }

    /// The ids of every image in containerd's CRI namespace, and the
    /// images from the `skip`th (wrapping round) to at most `max_images`
    /// of them, with their records: a bounded pass over a long list.
    ///
    /// # Errors
    /// [`InventoryError`] when `ListImages` fails or the deadline passes.
    pub(crate) async fn images_window(
        &self,
        skip: usize,
        max_images: usize,
        deadline: Deadline,
    ) -> Result<(Vec<String>, Vec<NodeImage>), InventoryError> {
        let listed = self.list(deadline).await?;
        let ids = listed.iter().map(|i| i.id.clone()).collect();
        let start = skip.checked_rem(listed.len()).unwrap_or(0);
        let window = listed
            .iter()
            .cycle()
            .skip(start)
            .take(max_images.min(listed.len()));
        Ok((ids, self.with_records(window, deadline).await?))
    }

    /// containerd's `ListImages`.
    async fn list(&self, deadline: Deadline) -> Result<Vec<cri::Image>, InventoryError> {
        Ok(deadline
            .run(
                self.images
                    .clone()
                    .list_images(cri::ListImagesRequest { filter: None }),
            )
            .await
            .map_err(|_| InventoryError::Deadline("its images"))?
            .map_err(|status| InventoryError::Call {
                call: "ListImages",
                status,
            })?
            .into_inner()
            .images)
    }

    /// `images` with their records.
    async fn with_records(
        &self,
        images: impl Iterator<Item = &cri::Image>,
        deadline: Deadline,
    ) -> Result<Vec<NodeImage>, InventoryError> {
        let mut out = Vec::new();
        for image in images {
            if deadline.is_past() {
                return Err(InventoryError::Deadline("image records"));
            }
            let present = self.records.records_of(image, deadline).await;
            out.push(NodeImage {
                id: image.id.clone(),
                names: image
                    .repo_tags
                    .iter()
                    .chain(&image.repo_digests)
                    .cloned()
                    .collect(),
                records: present.records,
            });
        }
        Ok(out)
    }

    /// Every container containerd knows of, with its pod.
    ///
    /// # Errors
    /// [`InventoryError`] when `ListContainers` fails or the deadline passes.
    pub(crate) async fn containers(
        &self,
        deadline: Deadline,
    ) -> Result<Vec<NodeContainer>, InventoryError> {
        let listed = deadline
            .run(
                self.runtime
                    .clone()
                    .list_containers(cri::ListContainersRequest {}),
            )
            .await
            .map_err(|_| InventoryError::Deadline("its containers"))?
            .map_err(|status| InventoryError::Call {
                call: "ListContainers",
                status,
            })?
            .into_inner()
            .containers;
        // The sandboxes are listed only when a container lacks the kubelet's labels.
        let mut sandboxes: Option<HashMap<String, PodName>> = None;
        let mut out = Vec::with_capacity(listed.len());
        for c in listed {
            let mut pod = pod_of_labels(&c.labels);
            if pod.is_none() && !c.pod_sandbox_id.is_empty() {
                if sandboxes.is_none() {
                    sandboxes = Some(self.sandboxes(deadline).await?);
                }
                pod = sandboxes
                    .as_ref()
                    .and_then(|s| s.get(&c.pod_sandbox_id).cloned());
            }
            let image_ref = if c.image_ref.is_empty() {
                c.image.map(|i| i.image).unwrap_or_default()
            } else {
                c.image_ref
            };
            out.push(NodeContainer {
                image_ref,
                running: c.state == cri::ContainerState::ContainerRunning as i32,
                pod,
            });
        }
        Ok(out)
    }

    /// Sandbox id → its pod, from `ListPodSandbox`.
    async fn sandboxes(
        &self,
        deadline: Deadline,
    ) -> Result<HashMap<String, PodName>, InventoryError> {
        let items = deadline
            .run(
                self.runtime
                    .clone()
                    .list_pod_sandbox(cri::ListPodSandboxRequest {}),
            )
            .await
            .map_err(|_| InventoryError::Deadline("its pod sandboxes"))?
            .map_err(|status| InventoryError::Call {
                call: "ListPodSandbox",
                status,
            })?
            .into_inner()
            .items;
        Ok(items
            .into_iter()
            .filter_map(|s| {
                let m = s.metadata?;
                if m.namespace.is_empty() {
                    return None;
                }
                let pod = PodName {
                    namespace: m.namespace,
                    name: m.name,
                };
                Some((s.id, pod))
            })
            .collect())
    }

    /// The sandbox image containerd runs every pod from: `configured`
    /// (`[server] sandbox_image`) when set, else the one containerd's CRI
    /// configuration names (its verbose `Status`); `None` when it names none.
    ///
    /// # Errors
    /// [`InventoryError`] when `Status` fails or the deadline passes.
    pub(crate) async fn sandbox_image(
        &self,
        configured: Option<&str>,
        deadline: Deadline,
    ) -> Result<Option<String>, InventoryError> {
        if let Some(name) = configured {
            return Ok(Some(name.to_owned()));
        }
        let info = deadline
            .run(
                self.runtime
                    .clone()
                    .status(cri::StatusRequest { verbose: true }),
            )
            .await
            .map_err(|_| InventoryError::Deadline("its status"))?
            .map_err(|status| InventoryError::Call {
                call: "Status",
                status,
            })?
            .into_inner()
            .info;
        Ok(info.get("config").and_then(|c| sandbox_image_of(c)))
    }
}

/// The pod named by the kubelet's container labels, when both are there.
fn pod_of_labels(labels: &HashMap<String, String>) -> Option<PodName> {
    let namespace = labels.get(POD_NAMESPACE_LABEL).filter(|n| !n.is_empty())?;
    Some(PodName {
        namespace: namespace.clone(),
        name: labels.get(POD_NAME_LABEL).cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_needs_the_namespace_label() {
        let mut labels = HashMap::new();
        assert_eq!(pod_of_labels(&labels), None);
        labels.insert(POD_NAME_LABEL.to_owned(), "web-1".to_owned());
        assert_eq!(pod_of_labels(&labels), None);
        labels.insert(POD_NAMESPACE_LABEL.to_owned(), "team-a".to_owned());
        assert_eq!(
            pod_of_labels(&labels),
            Some(PodName {
                namespace: "team-a".into(),
                name: "web-1".into()
            })
        );
    }
}
