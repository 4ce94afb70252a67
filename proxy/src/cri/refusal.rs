//! Why a runtime door does not go ahead: the typed refusals the doors
//! (`admit`, `pull_through`, `run_pod_sandbox`, `checkpoint`) return and `status` turns into answers. A
//! leaf: it knows the gate's outcomes and containerd's lookups, and none
//! of the doors.

use pullgate_policy::{Digest, ImageRef};

use super::config_dump::{ConfigDumpError, LayerError};
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

/// Why the base image a checkpoint image restores onto could not be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    /// containerd's content store could not give a blob.
    #[error("containerd's content store cannot give {digest}: {}", .source.message())]
    Content {
        digest: Digest,
        source: tonic::Status,
    },
    /// The deadline passed while reading.
    #[error("the deadline passed while reading it for config.dump")]
    Deadline,
    /// The manifest is larger than pullgate reads.
    #[error("its manifest {digest} is larger than {limit} bytes")]
    ManifestTooLarge { digest: Digest, limit: usize },
    /// The manifest does not say what it holds.
    #[error("its manifest {digest} is unreadable ({why})")]
    Manifest { digest: Digest, why: &'static str },
    /// An index carries the checkpoint annotation.
    #[error("it is an index, and pullgate reads checkpoint images of one manifest only")]
    Index,
    /// No layer holds `config.dump` at its root.
    #[error("no config.dump at the root of its layers")]
    NoConfigDump,
    /// A layer could not be read.
    #[error("{0}")]
    Layer(#[from] LayerError),
    /// `config.dump` names no usable base image.
    #[error("{0}")]
    ConfigDump(#[from] ConfigDumpError),
    /// The layer reader stopped unexpectedly.
    #[error("reading its layers failed ({0})")]
    Reader(tokio::task::JoinError),
}

impl CheckpointError {
    /// `PermissionDenied` for what the checkpoint image says (or does not);
    /// `Unavailable` or `DeadlineExceeded` when pullgate could not read it.
    pub(crate) fn code(&self) -> tonic::Code {
        match self {
            Self::Content { .. } | Self::Reader(_) => tonic::Code::Unavailable,
            Self::Deadline => tonic::Code::DeadlineExceeded,
            Self::ManifestTooLarge { .. }
            | Self::Manifest { .. }
            | Self::Index
            | Self::NoConfigDump
            | Self::Layer(_)
            | Self::ConfigDump(_) => tonic::Code::PermissionDenied,
        }
    }
}
