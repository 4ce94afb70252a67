//! The one place where decisions and errors become a gRPC status.
//!
//! Denied → `PermissionDenied`; inconclusive with fail-closed → `Unavailable`;
//! deadline passed → `DeadlineExceeded`; a request pullgate cannot read →
//! `InvalidArgument` (too large: `ResourceExhausted`); a method the socket
//! does not serve → `Unimplemented`. Messages are written for someone reading
//! `kubectl describe pod`: lowercase, one sentence, no trailing period.

use http::Response;
use pullgate_policy::ImageRef;
use tonic::{Code, Status};

use super::grpc::RequestError;
use super::passthrough::{ProxyBody, UpstreamError};
use crate::gate::{Denial, GateError, Undecided};

/// A trailers-only gRPC response carrying `status`.
pub(crate) fn response(status: Status) -> Response<ProxyBody> {
    status.into_http()
}

/// The policy said no.
pub(crate) fn denied(denial: &Denial) -> Status {
    Status::new(Code::PermissionDenied, denial.to_string())
}

/// The decision could not be made; pullgate fails closed.
pub(crate) fn inconclusive(image: &ImageRef, err: &GateError) -> Status {
    let code = if err.is_deadline() {
        Code::DeadlineExceeded
    } else {
        Code::Unavailable
    };
    let sentence = Undecided {
        image,
        digest: None,
        why: err,
    };
    Status::new(code, sentence.to_string())
}

/// The request to `rpc` (`PullImage`, `ImageStatus`) is unusable.
pub(crate) fn bad_request(rpc: &str, err: &RequestError) -> Status {
    let code = match err {
        RequestError::Compressed => Code::Unimplemented,
        // As gRPC servers answer a message over their receive limit.
        RequestError::TooLarge { .. } => Code::ResourceExhausted,
        _ => Code::InvalidArgument,
    };
    Status::new(code, format!("pullgate cannot read {rpc}: {err}"))
}

/// The deadline passed before the request to `rpc` was even read.
pub(crate) fn deadline_before_read(rpc: &str) -> Status {
    Status::new(
        Code::DeadlineExceeded,
        format!("deadline exceeded before pullgate could read the {rpc} request"),
    )
}

/// The CRI socket does not serve `method` (see `surface`).
pub(crate) fn unserved(method: &str) -> Status {
    Status::new(
        Code::Unimplemented,
        format!("pullgate does not serve {method} on the CRI socket: only runtime.v1 RuntimeService, the runtime.v1 ImageService and gRPC health are served"),
    )
}

/// containerd could not be reached.
pub(crate) fn upstream(err: &UpstreamError) -> Status {
    Status::new(Code::Unavailable, err.to_string())
}

/// containerd's response broke off.
pub(crate) fn upstream_body(err: &(dyn std::error::Error + Send + Sync)) -> Status {
    Status::new(
        Code::Unavailable,
        format!("containerd's response broke off: {err}"),
    )
}
