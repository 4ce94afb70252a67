//! The verifier's side of the local service: ask `pullgate serve`.
//!
//! Input: the verifier socket's path, containerd's call, the stdin bytes,
//! the deadline. Output: the daemon's [`Judgement`], or why there was none.
//!
//! The line between the two errors decides whether the verifier may decide
//! in its own process: [`AskError::NoDaemon`] (no socket, connection
//! refused, a socket served by a process that is neither root nor this
//! process's user) means nobody answered, so deciding here is the same
//! decision; [`AskError::NoAnswer`] (the daemon was reached, then the call
//! failed or ran out of time) is final, because a daemon that was asked may
//! have decided, and a denial must never be retried until something says
//! yes. The server's uid is checked with `SO_PEERCRED` before anything is
//! sent: an answer from a socket someone else planted is never read.
//!
//! Limits: the whole exchange runs under the deadline (also sent as
//! `grpc-timeout`); the answer is read up to [`MAX_RESPONSE_BYTES`].

use std::path::Path;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use pb::image_verifier_client::ImageVerifierClient;
use pullgate_proto::pullgate::verifier::v1 as pb;
use tokio::net::UnixStream;

use super::{trusted_uid, Invocation, Judgement};
use crate::deadline::Deadline;

/// Largest answer read from the daemon.
pub(crate) const MAX_RESPONSE_BYTES: usize = 256 << 10;

/// Why the daemon's judgement is not there.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    /// Nobody to ask: decide in this process.
    #[error("{0}")]
    NoDaemon(NoDaemon),
    /// The daemon was reached but did not answer: deny.
    #[error("{0}")]
    NoAnswer(NoAnswer),
}

/// Why the daemon that was reached gave no judgement.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoAnswer {
    /// The HTTP/2 connection could not be set up.
    #[error("HTTP/2 handshake failed: {0}")]
    Handshake(tonic::transport::Error),
    /// The call failed.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// The deadline passed before the answer.
    #[error("no answer before the deadline")]
    Deadline,
}

/// Why there is no daemon to ask.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoDaemon {
    /// Connecting failed (no socket, connection refused, not a socket).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The socket's server is neither root nor this process's user.
    #[error("the socket is served by uid {uid}, which is neither root nor this process's user; not trusted")]
    Untrusted {
        /// The server's uid.
        uid: u32,
    },
    /// Its credentials cannot be read.
    #[error("cannot read the server's credentials: {0}")]
    Credentials(std::io::Error),
    /// The deadline passed while connecting.
    #[error("the deadline passed while connecting")]
    Deadline,
}

/// Asks the daemon on `socket` to decide `call`.
///
/// # Errors
/// [`AskError`]: whether deciding in this process is allowed.
///
/// # Cancel safety
/// Cancel safe (the connection is dropped).
pub(crate) async fn ask(
    socket: &Path,
    call: &Invocation,
    stdin: &[u8],
    deadline: Deadline,
) -> Result<Judgement, AskError> {
    let stream = match deadline.run(UnixStream::connect(socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(AskError::NoDaemon(NoDaemon::Connect(e))),
        Err(_) => return Err(AskError::NoDaemon(NoDaemon::Deadline)),
    };
    let uid = stream
        .peer_cred()
        .map_err(|e| AskError::NoDaemon(NoDaemon::Credentials(e)))?
        .uid();
    if !trusted_uid(uid) {
        return Err(AskError::NoDaemon(NoDaemon::Untrusted { uid }));
    }
    let remaining = deadline.remaining();
    let exchange = async {
        // The connection is made already: the connector hands it over once.
        let slot = Arc::new(Mutex::new(Some(stream)));
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let taken = slot.lock().ok().and_then(|mut s| s.take());
                async move {
                    taken.map(TokioIo::new).ok_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::NotConnected, "connection closed")
                    })
                }
            }))
            .await
            .map_err(|e| AskError::NoAnswer(NoAnswer::Handshake(e)))?;
        let mut client =
            ImageVerifierClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
        let mut req = tonic::Request::new(pb::VerifyRequest {
            name: call.name.clone(),
            digest: call.digest.clone(),
            stdin_media_type: call.stdin_media_type.clone(),
            stdin: stdin.to_vec(),
        });
        req.set_timeout(remaining);
        client
            .verify(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| AskError::NoAnswer(NoAnswer::Status(s)))
    };
    let resp = deadline
        .run(exchange)
        .await
        .map_err(|_| AskError::NoAnswer(NoAnswer::Deadline))??;
    Ok(Judgement::from_response(&call.name, &call.digest, resp))
}
