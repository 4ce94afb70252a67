//! Why a runtime door does not go ahead: the typed refusals the doors
//! (`admit`, `pull_through`, `run_pod_sandbox`) return and `status` turns into answers. A
//! leaf: it knows the gate's outcomes and containerd's lookups, and none
//! of the doors.

use pullgate_policy::ImageRef;

use super::image_records::LookupError;
use crate::gate::{Denial, GateError};

/// Why an image containerd holds may not run.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The policy denies every record of the image (the first record's denial).
    Denied(Denial),
    /// No decision could be made for any record (registry, deadline); fails closed.
    Undecided { image: ImageRef, error: GateError },
    /// containerd does not hold the image.
    NotHeld { image: String },
    /// containerd holds the image under no name pullgate can verify.
    Unnamed { image: String, id: String },
    /// containerd could not say what it holds.
    Lookup { image: String, error: LookupError },
    /// The gate allowed the image, but containerd's pull of it failed.
    NotPulled { image: String, error: PullError },
}

/// Why containerd's pull of an allowed image failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// containerd's `PullImage` answered an error.
    #[error("{}", .0.message())]
    Upstream(tonic::Status),
    /// The deadline passed.
    #[error("the deadline passed")]
    Deadline,
}

/// Why the sandbox image could not be found or brought in.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxError {
    /// containerd's `Status` failed.
    #[error("containerd's Status failed: {}", .0.message())]
    Status(tonic::Status),
    /// containerd's configuration names no sandbox image pullgate can read.
    #[error("containerd's CRI configuration names no sandbox image pullgate can read; set [server] sandbox_image")]
    NotConfigured,
    /// The sandbox image's reference does not parse.
    #[error("sandbox image {image:?}: {source}")]
    Reference {
        image: String,
        source: pullgate_policy::reference::ReferenceError,
    },
    /// The deadline passed.
    #[error("the deadline passed while asking containerd for the sandbox image")]
    Deadline,
}
