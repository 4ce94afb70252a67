//! Pointing the kubelet's tag at the digest containerd pulled.
//!
//! Input: the pinned reference containerd just pulled (`name@digest`), the
//! tag the kubelet asked for (`name:tag`) and the image id containerd's
//! `PullImage` answered. Output: a [`Tagging`] once containerd's images API
//! holds `name:tag` at the pinned record's target and labels, and
//! containerd's CRI image service reports `name:tag` as that image.
//!
//! The second half matters because containerd's CRI plugin answers
//! `ImageStatus` from an image store of its own, which it updates from the
//! images service's `/images/create` and `/images/update` events on one
//! event-monitor goroutine (containerd 1.6: `pkg/cri/server/events.go`,
//! `handleEvent` → `UpdateImage`). A record written through the images API
//! is therefore reported a moment later, not at once: behind a backlog of
//! image events (a node pulling many images, a tool retagging), hundreds of
//! milliseconds later. Without the wait, a kubelet asking `ImageStatus` by
//! tag right after the pull misses the image and pulls again.
//!
//! A record that already holds the pinned record's target and labels is
//! read, not written, and not waited for (a hot pull by tag costs two
//! concurrent `Get`s): whoever wrote it saw it through.
//!
//! Limits: everything here runs within [`TAG_BUDGET`]; past it the pull's
//! answer goes back anyway (containerd did pull the verified digest) and
//! the caller logs why the tag may not resolve yet.

use std::time::Duration;

use pullgate_policy::{Digest, PinnedRef};
use pullgate_proto::containerd::services::images::v1 as images;
use pullgate_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use crate::deadline::Deadline;

/// Longest time pointing a tag may take: reading both records, writing the
/// tag, and waiting for containerd's CRI image service to report it.
pub(crate) const TAG_BUDGET: Duration = Duration::from_secs(3);

/// First pause between two `ImageStatus` checks while waiting; each pause
/// doubles, up to [`MAX_POLL_PAUSE`].
const FIRST_POLL_PAUSE: Duration = Duration::from_millis(1);

/// Longest pause between two `ImageStatus` checks.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(50);

/// What pointing a tag at the pulled digest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tagging {
    /// The tag record already held the pinned record's target and labels: nothing written.
    Unchanged,
    /// The tag record was created, and containerd's CRI image service reports it.
    Created,
    /// The tag record pointed elsewhere (or had other labels) and was
    /// updated, and containerd's CRI image service reports it.
    Moved,
}

/// Why a tag could not be pointed at the pulled digest (or not seen there).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TagError {
    /// containerd's images API answered an error.
    #[error("images API: {0}")]
    Images(tonic::Status),
    /// The pinned record is missing.
    #[error("the pinned image record is missing")]
    NoPinnedRecord,
    /// The pinned record targets another digest than the one verified.
    #[error("the pinned image record targets {found}, not the verified digest")]
    PinnedElsewhere {
        /// The record's target digest, as containerd holds it.
        found: String,
    },
    /// The record was written, but containerd's CRI image service did not
    /// report it at the pulled image within [`TAG_BUDGET`].
    #[error(
        "the tag record was written ({written:?}) but containerd's CRI image service did not \
         report it within {budget:?}: its image events are behind, or [server] \
         containerd_namespace is not the CRI plugin's namespace"
    )]
    NotReported {
        /// What was written.
        written: Tagging,
        /// [`TAG_BUDGET`].
        budget: Duration,
    },
    /// [`TAG_BUDGET`] passed before the record was read or written.
    #[error("containerd's images API did not answer within {0:?}")]
    Deadline(Duration),
}

/// Whether the record `current` holds `record`'s target and labels.
fn holds(current: &images::Image, record: &images::Image) -> bool {
    current.target.is_some() && current.target == record.target && current.labels == record.labels
}

/// Writes tag records through containerd's images API and waits until its
/// CRI image service reports them.
#[derive(Debug, Clone)]
pub(crate) struct TagWriter {
    images: images::images_client::ImagesClient<Channel>,
    cri_images: cri::image_service_client::ImageServiceClient<Channel>,
    namespace: String,
}

impl TagWriter {
    /// A writer over `channel` (containerd's socket), for image records in `namespace`.
    pub(crate) fn new(channel: Channel, namespace: String) -> Self {
        Self {
            images: images::images_client::ImagesClient::new(channel.clone()),
            cri_images: cri::image_service_client::ImageServiceClient::new(channel),
            namespace,
        }
    }

    /// Points `tagged` (`name:tag`) at the image record containerd made for
    /// `pinned` (`name@digest`), then waits until containerd's CRI
    /// `ImageStatus(tagged)` reports `image_id` (the id its `PullImage`
    /// answered; `None` when that answer could not be read, and then any
    /// image under the tag will do).
    ///
    /// When the `tagged` record already holds the pinned record's target
    /// and labels, it is left alone: an `Update` would write the same record
    /// again (a write transaction in containerd's metadata store, and a new
    /// `updated_at`), which is most of what a hot pull by tag cost. The two
    /// records are read concurrently.
    ///
    /// The pinned record must target the verified digest: a name only
    /// spells a digest, and a record `name@<verified>` made through
    /// containerd's socket could target anything, so its target is checked
    /// before the tag is pointed at it.
    ///
    /// # Errors
    /// [`TagError`]: the images API failed, the pinned record is missing or
    /// targets another digest, or [`TAG_BUDGET`] passed.
    pub(crate) async fn point(
        &self,
        pinned: &PinnedRef,
        tagged: &str,
        image_id: Option<&str>,
    ) -> Result<Tagging, TagError> {
        let deadline = Deadline::after(TAG_BUDGET);
        let written = deadline
            .run(self.write(pinned, tagged))
            .await
            .map_err(|_| TagError::Deadline(TAG_BUDGET))??;
        if written == Tagging::Unchanged {
            return Ok(written);
        }
        match deadline.run(self.reported(tagged, image_id)).await {
            Ok(()) => Ok(written),
            Err(_) => Err(TagError::NotReported {
                written,
                budget: TAG_BUDGET,
            }),
        }
    }

    /// Whether the `tagged` record already holds the target and labels of
    /// the record containerd keeps for `pinned`, and that one targets the
    /// verified digest: pulling `pinned` again would leave nothing to point.
    /// Read within [`TAG_BUDGET`]; a failed read is `false`.
    pub(crate) async fn already_points(&self, pinned: &PinnedRef, tagged: &str) -> bool {
        let read = Deadline::after(TAG_BUDGET)
            .run(self.records(pinned, tagged))
            .await;
        matches!(read, Ok(Ok((record, Some(current)))) if holds(&current, &record))
    }

    /// The record of `pinned` (checked to target the verified digest) and
    /// the `tagged` record if there is one, read concurrently.
    async fn records(
        &self,
        pinned: &PinnedRef,
        tagged: &str,
    ) -> Result<(images::Image, Option<images::Image>), TagError> {
        let mut pinned_client = self.images.clone();
        let mut tagged_client = self.images.clone();
        let (source, existing) = tokio::join!(
            pinned_client.get(self.namespaced(images::GetImageRequest {
                name: pinned.to_string(),
            })),
            tagged_client.get(self.namespaced(images::GetImageRequest {
                name: tagged.to_owned(),
            })),
        );
        let record = source
            .map_err(TagError::Images)?
            .into_inner()
            .image
            .ok_or(TagError::NoPinnedRecord)?;
        let target = record.target.as_ref().map(|t| t.digest.as_str());
        if target.and_then(|d| d.parse::<Digest>().ok()).as_ref() != Some(pinned.digest()) {
            return Err(TagError::PinnedElsewhere {
                found: target.unwrap_or("nothing").chars().take(80).collect(),
            });
        }
        let existing = match existing {
            Ok(got) => got.into_inner().image,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(TagError::Images(s)),
        };
        Ok((record, existing))
    }

    /// Creates or moves the `tagged` record to the pinned record's target
    /// and labels, or leaves it when it already holds them.
    async fn write(&self, pinned: &PinnedRef, tagged: &str) -> Result<Tagging, TagError> {
        let (record, existing) = self.records(pinned, tagged).await?;
        if existing
            .as_ref()
            .is_some_and(|current| holds(current, &record))
        {
            return Ok(Tagging::Unchanged);
        }
        let image = images::Image {
            name: tagged.to_owned(),
            labels: record.labels,
            target: record.target,
            created_at: None,
            updated_at: None,
        };
        let mut client = self.images.clone();
        if existing.is_none() {
            match client
                .create(self.namespaced(images::CreateImageRequest {
                    image: Some(image.clone()),
                }))
                .await
            {
                Ok(_) => return Ok(Tagging::Created),
                // Created by someone else since it was read: point it at the digest.
                Err(s) if s.code() == tonic::Code::AlreadyExists => {}
                Err(s) => return Err(TagError::Images(s)),
            }
        }
        client
            .update(self.namespaced(images::UpdateImageRequest {
                image: Some(image),
                update_mask: None,
            }))
            .await
            .map(|_| Tagging::Moved)
            .map_err(TagError::Images)
    }

    /// Returns once containerd's CRI `ImageStatus(tagged)` reports the
    /// image `image_id` (any image when `None`). A failed check counts as
    /// not reported yet; the caller's deadline ends the wait.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    async fn reported(&self, tagged: &str, image_id: Option<&str>) {
        let mut pause = FIRST_POLL_PAUSE;
        loop {
            let answer = self
                .cri_images
                .clone()
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: tagged.to_owned(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await;
            if let Ok(resp) = answer {
                if let Some(image) = resp.into_inner().image {
                    if image_id.is_none_or(|id| id == image.id) {
                        return;
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL_PAUSE);
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
