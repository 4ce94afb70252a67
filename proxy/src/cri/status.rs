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

use super::checkpoint::Unreadable;
use super::grpc::RequestError;
use super::passthrough::{ProxyBody, UpstreamError};
use super::refusal::{PullError, Refusal, SandboxError};
use crate::gate::{Denial, GateError, Halted, Undecided};

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
        halted: Halted::Pull,
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
    let (code, why) = cause(refusal);
    Status::new(code, format!("{} not created: {why}", made.noun()))
}

/// A checkpoint restore refused: the base image `base` that checkpoint
/// image `checkpoint` restores onto may not run.
pub(crate) fn restore_refused(checkpoint: &str, base: &str, refusal: &Refusal) -> Status {
    let (code, why) = cause(refusal);
    Status::new(
        code,
        format!("container not created: checkpoint image {checkpoint} restores onto base image {base}, and {why}"),
    )
}

/// An image pullgate could not classify, or a checkpoint whose base image
/// it could not find: the container is not created.
pub(crate) fn checkpoint_unread(unread: &Unreadable) -> Status {
    let Unreadable {
        image,
        checkpoint,
        error,
    } = unread;
    let msg = if *checkpoint {
        format!("container not created: checkpoint image {image} not restored, as pullgate cannot tell which base image it restores onto: {error}")
    } else {
        format!("container not created: pullgate cannot tell whether image {image} is a checkpoint to restore: {error}; failing closed")
    };
    Status::new(error.code(), msg)
}

/// The code and the clause after `<what> not created: ` for `refusal`.
fn cause(refusal: &Refusal) -> (Code, String) {
    match refusal {
        Refusal::Denied(denial) => (Code::PermissionDenied, denial.to_string()),
        Refusal::Undecided { image, error } => {
            let code = if error.is_deadline() {
                Code::DeadlineExceeded
            } else {
                Code::Unavailable
            };
            let sentence = Undecided {
                halted: Halted::Run,
                image,
                digest: None,
                why: error,
            };
            (code, sentence.to_string())
        }
        Refusal::NotHeld { image } => (
            Code::PermissionDenied,
            format!("containerd holds no image {image}; pullgate runs only images it can verify: pull the image through pullgate"),
        ),
        Refusal::Unnamed { image, id } => (
            Code::PermissionDenied,
            format!("image {image} ({id}) has no name in containerd that pullgate can verify (signatures are found by repository); pull it by name through pullgate"),
        ),
        Refusal::Lookup { image, error } => (
            Code::Unavailable,
            format!("cannot ask containerd about image {image} ({error}); failing closed"),
        ),
        Refusal::NotPulled { image, error } => (
            match error {
                PullError::Deadline => Code::DeadlineExceeded,
                PullError::Upstream(_) => Code::Unavailable,
            },
            format!("containerd could not pull the verified image {image} ({error}); failing closed"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecided_runtime_door_says_what_stopped_in_the_one_sentence() {
        let image: ImageRef =
            "r.example/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .parse()
                .unwrap();
        for (made, lead) in [
            (Made::Container, "container not created: "),
            (Made::Sandbox, "pod sandbox not created: "),
        ] {
            let status = refused(
                made,
                &Refusal::Undecided {
                    image: image.clone(),
                    error: GateError::Deadline,
                },
            );
            assert_eq!(status.code(), Code::DeadlineExceeded);
            let msg = status.message();
            assert!(
                msg.starts_with(&format!(
                    "{lead}image {image} not run: signature verification could not complete ("
                )),
                "{msg}"
            );
            assert!(msg.ends_with("; failing closed"), "{msg}");
        }
        let pulled = inconclusive(&image, &GateError::Deadline);
        assert!(
            pulled
                .message()
                .starts_with(&format!("image {image} not pulled: ")),
            "{}",
            pulled.message()
        );
    }
}
