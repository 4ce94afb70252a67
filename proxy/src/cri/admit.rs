//! Admitting an image containerd already holds, for a pod: the question the
//! runtime doors (`CreateContainer`, `RunPodSandbox`) ask the gate.
//!
//! Input: the image as the CRI request names it (an image id or a
//! reference) and the request's [`Origin`] (door and pod). Output: admitted,
//! or a [`Refusal`] that `status` turns into the answer.
//!
//! What containerd holds is looked up through [`ImageRecords`]: the image,
//! and each of its names pinned at the digest that name's record really
//! targets. The gate is asked about each record, as a pull of
//! `repository@digest` for the pod (so the pod's namespace chooses the
//! requirements scope, and the verdict key is that scope's): an allow verdict
//! in the cache (or restored from the persisted verdicts) answers at once;
//! otherwise the digest is verified now, through the same single flight as
//! pulls. The first record allowed admits the image; an image none of whose
//! records is allowed is refused with the first record's denial. An image
//! containerd does not hold, or holds under no name pullgate can verify, is
//! refused (fail closed): there is nothing to decide on.
//!
//! Limits: the records of one image are at most
//! [`MAX_NAMES_CHECKED`](super::image_records::MAX_NAMES_CHECKED); every
//! lookup and verification runs under the request's deadline.

use std::sync::Arc;
use std::time::Duration;

use super::passthrough::CallBody;
use bytes::Bytes;
use http::{Request, Response};
use pullgate_policy::ImageRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::checkpoint::Checkpoints;
use super::grpc::{frame, grpc_timeout, read_message};
use super::image_records::{Held, ImageRecords, PresentImage};
use super::passthrough::{handed_back, send_on, ProxyBody, Upstream};
use super::pull_through::PullThrough;
use super::refusal::Refusal;
use super::status;
use crate::deadline::Deadline;
use crate::gate::{Decision, Gate, Origin, Pod, PullRequest};
use crate::registry::Credentials;

/// Largest runtime request read whole (`CreateContainer`, `RunPodSandbox`):
/// gRPC's default receive limit. A container's environment and mounts
/// make these larger than a `PullImage`, so `[server] max_request_bytes`
/// applies only when it is larger.
pub(crate) const MAX_RUNTIME_REQUEST_BYTES: usize = 4 << 20;

/// Runtime requests read at once: what a local client can make pullgate
/// buffer is at most this many times [`MAX_RUNTIME_REQUEST_BYTES`].
pub(crate) const RUNTIME_READS: usize = 16;

/// Asks the gate about images containerd holds, and forwards the runtime
/// requests it admits.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    pub(crate) gate: Arc<Gate>,
    pub(crate) records: ImageRecords,
    pub(crate) upstream: Upstream,
    /// `[server] decision_budget`.
    pub(crate) budget: Duration,
    /// The larger of [`MAX_RUNTIME_REQUEST_BYTES`] and `[server] max_request_bytes`.
    pub(crate) max_request_bytes: usize,
    /// [`RUNTIME_READS`] permits.
    pub(crate) reads: Arc<Semaphore>,
    /// Brings in an image a door needs and containerd lacks.
    pub(crate) pulls: PullThrough,
    /// Finds the base image a checkpoint image restores onto.
    pub(crate) checkpoints: Checkpoints,
}

/// A runtime request read whole: its headers, its one message and its deadline.
pub(crate) struct ReadRequest {
    pub(crate) parts: http::request::Parts,
    pub(crate) message: Bytes,
    pub(crate) deadline: Deadline,
    /// Held until the request is forwarded or refused.
    _read: OwnedSemaphorePermit,
}

impl Admission {
    /// Whether `image` (an id or a reference) may be used for `origin`'s
    /// pod; admitted, what containerd holds under it.
    ///
    /// # Errors
    /// [`Refusal`] saying why not.
    ///
    /// # Cancel safety
    /// Cancel safe: a verification started goes on for other callers.
    pub(crate) async fn admit(
        &self,
        image: &str,
        origin: &Origin,
        deadline: Deadline,
    ) -> Result<Arc<PresentImage>, Refusal> {
        let held = self
            .records
            .held(image, deadline)
            .await
            .map_err(|error| Refusal::Lookup {
                image: shown(image),
                error,
            })?;
        let present = match held {
            Held::Present(p) => p,
            Held::Absent => {
                return Err(Refusal::NotHeld {
                    image: shown(image),
                })
            }
        };
        let mut first: Option<Refusal> = None;
        for pinned in &present.records {
            let Ok(as_pull) = pinned.to_string().parse::<ImageRef>() else {
                continue;
            };
            let request = PullRequest {
                image: as_pull.clone(),
                credentials: Credentials::NotGiven,
                deadline,
                origin: origin.clone(),
            };
            match self.gate.decide(request).await {
                Ok(Decision::Allow(_)) => return Ok(Arc::clone(&present)),
                Ok(Decision::Deny(denial)) => {
                    first.get_or_insert(Refusal::Denied(denial));
                }
                Err(error) => {
                    first.get_or_insert(Refusal::Undecided {
                        image: as_pull,
                        error,
                    });
                }
            }
        }
        Err(first.unwrap_or_else(|| Refusal::Unnamed {
            image: shown(image),
            id: present.id.clone(),
        }))
    }
}

impl Admission {
    /// Reads one runtime request to `rpc`, under the shorter of its
    /// `grpc-timeout` and the decision budget.
    ///
    /// # Errors
    /// The answer to send instead: the request cannot be read, or the
    /// deadline passed first.
    pub(crate) async fn read(
        &self,
        req: Request<CallBody>,
        rpc: &str,
    ) -> Result<ReadRequest, Response<ProxyBody>> {
        let (parts, body) = req.into_parts();
        let deadline = Deadline::after(self.budget)
            .at_most(grpc_timeout(&parts.headers).unwrap_or(self.budget));
        let permit = match deadline.run(Arc::clone(&self.reads).acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => return Err(status::response(status::deadline_before_read(rpc))),
        };
        match deadline
            .run(read_message(body, self.max_request_bytes))
            .await
        {
            Ok(Ok(message)) => Ok(ReadRequest {
                parts,
                message,
                deadline,
                _read: permit,
            }),
            Ok(Err(e)) => Err(status::response(status::bad_request(rpc, &e))),
            Err(_) => Err(status::response(status::deadline_before_read(rpc))),
        }
    }

    /// Sends an admitted request to containerd as it came (the same message
    /// bytes); containerd's answer streams back untouched.
    pub(crate) async fn forward(&self, read: ReadRequest) -> Response<ProxyBody> {
        let ReadRequest {
            mut parts, message, ..
        } = read;
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let body = frame(&message);
        match send_on(&self.upstream, parts, body.clone()).await {
            Ok(Some(resp)) => resp,
            Ok(None) => handed_back(body, None),
            Err(e) => status::response(status::upstream(&e)),
        }
    }
}

/// The pod a `PodSandboxConfig` names (`None` without metadata or namespace);
/// every door that reads a pod reads it here.
pub(crate) fn pod_of(config: Option<pullgate_proto::runtime::v1::PodSandboxConfig>) -> Option<Pod> {
    config
        .and_then(|c| c.metadata)
        .and_then(|m| Pod::new(&m.namespace, &m.name))
}

/// An image as a client named it, cut for messages.
fn shown(image: &str) -> String {
    image.chars().take(256).collect()
}
