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

use super::admit::Refusal;
use super::grpc::RequestError;
use super::passthrough::{ProxyBody, UpstreamError};
use super::run_pod_sandbox::SandboxError;
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

/// What a runtime door would have made: `container`, `pod sandbox`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Made {
    Container,
    Sandbox,
}

impl Made {
    fn noun(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Sandbox => "pod sandbox",
        }
    }
}

/// A runtime door refused the image it would run.
pub(crate) fn refused(made: Made, refusal: &Refusal) -> Status {
    let what = made.noun();
    match refusal {
        Refusal::Denied(denial) => Status::new(
            Code::PermissionDenied,
            format!("{what} not created: {denial}"),
        ),
        Refusal::Undecided { image, error } => {
            let code = if error.is_deadline() {
                Code::DeadlineExceeded
            } else {
                Code::Unavailable
            };
            Status::new(
                code,
                format!("{what} not created: image {image} could not be verified ({error}); failing closed"),
            )
        }
        Refusal::NotHeld { image } => Status::new(
            Code::PermissionDenied,
            format!("{what} not created: containerd holds no image {image}; pullgate runs only images it can verify: pull the image through pullgate"),
        ),
        Refusal::Unnamed { image, id } => Status::new(
            Code::PermissionDenied,
            format!("{what} not created: image {image} ({id}) has no name in containerd that pullgate can verify (signatures are found by repository); pull it by name through pullgate"),
        ),
        Refusal::Lookup { image, error } => Status::new(
            Code::Unavailable,
            format!("{what} not created: cannot ask containerd about image {image} ({error}); failing closed"),
        ),
    }
}

/// The sandbox image could not be found or brought in; the sandbox is not created.
pub(crate) fn sandbox_unknown(err: &SandboxError) -> Status {
    Status::new(
        Code::Unavailable,
        format!("pod sandbox not created: {err}; failing closed"),
    )
}
