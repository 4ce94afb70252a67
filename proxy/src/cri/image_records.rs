//! What containerd holds under an image name or id: the image, and each of
//! its names pinned at the digest that name's image record really targets.
//!
//! Input: an image as a CRI client names it (an image id `sha256:<config
//! digest>`, as the kubelet sends in `CreateContainer`, or a reference).
//! Output: [`Held::Absent`], or [`Held::Present`] with the image id and its
//! records, each a `repository@digest` the gate can decide on. A name only
//! spells a digest (anyone with containerd's socket can create
//! `x@<an allowed digest>` pointing at any image), so every name is looked up
//! in containerd's images API for its record's real target; a name that
//! does not parse, has no record or fails its lookup is left out, so it
//! cannot make an image admissible.
//!
//! containerd answers `ImageStatus` (and so resolves the image it will use)
//! the same way for an id, a name or a digest reference, so the image
//! checked here is the image `CreateContainer` uses.
//!
//! Cache: lookups by image id are kept [`RECORDS_TTL`] (at most
//! [`MAX_CACHED_IDS`] ids, `quick_cache`). An image id is the digest of the image's config,
//! which names every layer by its content digest (`rootfs.diff_ids`), so a
//! stale entry can only keep admitting the same content under a record that
//! was since removed or moved, never other content; a lookup by name is
//! never cached (a tag can be moved to another image at any time).
//!
//! Limits: at most [`MAX_NAMES_CHECKED`] names of one image are looked up,
//! every call under the caller's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pullgate_policy::{Digest, ImageRef, PinnedRef};
use pullgate_proto::containerd::services::images::v1 as images;
use pullgate_proto::runtime::v1 as cri;
use quick_cache::sync::Cache;
use tonic::transport::Channel;

use crate::deadline::Deadline;

/// Most names of one image looked up in containerd's images API; an image
/// whose allowed name comes later is treated as not allowed, never the
/// other way round.
pub(crate) const MAX_NAMES_CHECKED: usize = 16;

/// How long the records of an image id are reused.
pub(crate) const RECORDS_TTL: Duration = Duration::from_secs(5);

/// Most image ids whose records are kept.
pub(crate) const MAX_CACHED_IDS: usize = 4096;

/// What containerd holds under a name or id.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    /// containerd has no such image.
    Absent,
    /// The image, with its records.
    Present(Arc<PresentImage>),
}

/// An image containerd holds.
#[derive(Debug)]
pub(crate) struct PresentImage {
    /// containerd's image id (the config digest).
    pub(crate) id: String,
    /// Each usable name's repository pinned at its record's real target.
    pub(crate) records: Vec<PinnedRef>,
    /// The target of the record named by the id itself (containerd's CRI
    /// keeps one), which containerd may read instead of a named one; read
    /// by [`ImageRecords::held`] only.
    pub(crate) id_target: Option<Digest>,
}

/// Why an image record's target could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// containerd's images API answered an error (`NotFound` included).
    #[error("images API: {0}")]
    Lookup(tonic::Status),
    /// The record has no target descriptor.
    #[error("the record has no target")]
    NoTarget,
    /// The target's digest does not parse.
    #[error("the record's target digest: {0}")]
    Digest(pullgate_policy::reference::ReferenceError),
}

/// Why containerd could not say what it holds.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// containerd's CRI `ImageStatus` failed.
    #[error("containerd's ImageStatus failed: {}", .0.message())]
    Status(tonic::Status),
    /// The deadline passed.
    #[error("the deadline passed while asking containerd about the image")]
    Deadline,
}

/// Image id → (when looked up, what containerd held).
type ById = Cache<String, (Instant, Arc<PresentImage>)>;

/// Looks images and their records up in containerd.
#[derive(Debug, Clone)]
pub(crate) struct ImageRecords {
    images: images::images_client::ImagesClient<Channel>,
    cri: cri::image_service_client::ImageServiceClient<Channel>,
    namespace: String,
    by_id: Arc<ById>,
}

impl ImageRecords {
    /// Lookups over `channel` (containerd's socket), for records in `namespace`.
    pub(crate) fn new(channel: Channel, namespace: String) -> Self {
        Self {
            images: images::images_client::ImagesClient::new(channel.clone()),
            cri: cri::image_service_client::ImageServiceClient::new(channel),
            namespace,
            by_id: Arc::new(Cache::new(MAX_CACHED_IDS)),
        }
    }

    /// What containerd holds under `image` (an id or a reference).
    ///
    /// # Errors
    /// [`LookupError`] when containerd does not answer within `deadline`.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is written but the cache.
    pub(crate) async fn held(&self, image: &str, deadline: Deadline) -> Result<Held, LookupError> {
        let is_id = is_image_id(image);
        if is_id {
            if let Some(found) = self.cached(image) {
                return Ok(Held::Present(found));
            }
        }
        let mut cri = self.cri.clone();
        let status = deadline
            .run(cri.image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            }))
            .await
            .map_err(|_| LookupError::Deadline)?
            .map_err(LookupError::Status)?
            .into_inner();
        let Some(found) = status.image else {
            return Ok(Held::Absent);
        };
        let mut present = self.records_of(&found, deadline).await;
        present.id_target = match deadline.run(self.record_target(&present.id)).await {
            Ok(Ok(target)) => Some(target),
            Ok(Err(_)) | Err(_) => None,
        };
        let present = Arc::new(present);
        if is_id && present.id == image {
            self.remember(image, Arc::clone(&present));
        }
        Ok(Held::Present(present))
    }

    /// The records of an image containerd's `ImageStatus` reported.
    pub(crate) async fn records_of(&self, image: &cri::Image, deadline: Deadline) -> PresentImage {
        let mut names: Vec<&String> = image.repo_tags.iter().chain(&image.repo_digests).collect();
        names.dedup();
        let mut records = Vec::new();
        for name in names.into_iter().take(MAX_NAMES_CHECKED) {
            let Ok(parsed) = name.parse::<ImageRef>() else {
                continue;
            };
            match deadline.run(self.record_target(name)).await {
                Ok(Ok(target)) => records.push(parsed.pinned(target)),
                Ok(Err(e)) => {
                    tracing::debug!(name, error = %e, "no usable image record for this name")
                }
                Err(_) => {
                    tracing::debug!(name, "deadline passed looking up image records");
                    break;
                }
            }
        }
        PresentImage {
            id: image.id.clone(),
            records,
            id_target: None,
        }
    }

    /// The digest containerd's image record `name` targets.
    async fn record_target(&self, name: &str) -> Result<Digest, RecordError> {
        let mut req = tonic::Request::new(images::GetImageRequest {
            name: name.to_owned(),
        });
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        let got = self
            .images
            .clone()
            .get(req)
            .await
            .map_err(RecordError::Lookup)?
            .into_inner();
        let target = got
            .image
            .and_then(|i| i.target)
            .ok_or(RecordError::NoTarget)?;
        target.digest.parse::<Digest>().map_err(RecordError::Digest)
    }

    fn cached(&self, id: &str) -> Option<Arc<PresentImage>> {
        self.by_id
            .get(id)
            .filter(|(at, _)| at.elapsed() < RECORDS_TTL)
            .map(|(_, p)| p)
    }

    fn remember(&self, id: &str, present: Arc<PresentImage>) {
        self.by_id.insert(id.to_owned(), (Instant::now(), present));
    }
}

/// Whether `image` is an image id as containerd reports it (`sha256:<64 hex>`).
fn is_image_id(image: &str) -> bool {
    image.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_sha256_ids_are_ids() {
        assert!(is_image_id(&format!("sha256:{}", "a1".repeat(32))));
        assert!(!is_image_id(&format!("sha256:{}", "A1".repeat(32))));
        assert!(!is_image_id(&format!("sha256:{}", "a".repeat(63))));
        assert!(!is_image_id("docker.io/library/nginx:latest"));
        assert!(!is_image_id(&format!(
            "docker.io/library/nginx@sha256:{}",
            "a".repeat(64)
        )));
    }
}
