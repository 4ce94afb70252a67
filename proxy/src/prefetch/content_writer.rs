//! Writing one blob into containerd's content store under a lease, as
//! containerd's own fetch does: the writer is opened (and its ingest ref
//! locked) before any byte is fetched, the bytes go in order, and the
//! commit names the expected digest and size, which containerd checks.
//!
//! A blob containerd already has answers `AlreadyExists` at open
//! ([`OpenError::Present`]); one whose ref another writer holds (a pull of
//! the same image under way) answers `Unavailable` ([`OpenError::Busy`]).

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use pullgate_proto::containerd::services::content::v1 as content;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::lease::{LEASE_HEADER, NAMESPACE_HEADER};
use super::platform::Blob;

/// Bytes sent to containerd in one write message (its gRPC limit is 16 MiB).
const WRITE_CHUNK: usize = 1 << 20;
/// Write messages queued ahead of the gRPC stream.
const QUEUED_WRITES: usize = 2;
/// At an allow, a write with more than this still to come is handed to
/// containerd; one with less is finished (about 10 ms of a blob stream here,
/// less than the round trips containerd's resumed fetch would cost).
pub(crate) const HAND_OVER_ABOVE: u64 = 1 << 20;

/// containerd's content service in one namespace.
#[derive(Debug, Clone)]
pub(crate) struct ContentStore {
    client: content::content_client::ContentClient<Channel>,
    namespace: String,
}

/// Why a blob was not opened for writing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// containerd has the blob.
    #[error("already in the content store")]
    Present,
    /// Another writer holds the blob's ingest ref.
    #[error("being written by another pull")]
    Busy,
    /// Any other answer.
    #[error("content write: {0}")]
    Status(tonic::Status),
}

/// Why an opened write did not commit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The registry sent another number of bytes than the descriptor's size.
    #[error("fetched {got} bytes of {expected}")]
    Size { expected: u64, got: u64 },
    /// containerd refused a write or the commit (a digest mismatch among them).
    #[error("content write: {0}")]
    Status(tonic::Status),
    /// containerd ended the stream before answering the commit.
    #[error("content write ended before its commit was answered")]
    Ended,
    /// Stopped at an allow with `written` bytes in the ingest, for
    /// containerd's fetch to resume.
    #[error("handed to containerd after {written} bytes")]
    HandedOver { written: u64 },
}

/// A write session whose ingest ref is held; dropping it abandons the write.
#[derive(Debug)]
pub(crate) struct Opened {
    outbound: mpsc::Sender<content::WriteContentRequest>,
    responses: tonic::Streaming<content::WriteContentResponse>,
    blob: Blob,
}

impl ContentStore {
    pub(crate) fn new(channel: Channel, namespace: String) -> Self {
        Self {
            client: content::content_client::ContentClient::new(channel)
                .max_encoding_message_size(WRITE_CHUNK * 2),
            namespace,
        }
    }

    fn request<T>(&self, message: T, lease: Option<&str>) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert(NAMESPACE_HEADER, v);
        }
        if let Some(Ok(v)) = lease.map(str::parse) {
            req.metadata_mut().insert(LEASE_HEADER, v);
        }
        req
    }

    /// Whether containerd's content store has `blob` (content `Info`).
    ///
    /// # Errors
    /// containerd's status other than `NotFound`.
    pub(crate) async fn has(&self, blob: &Blob) -> Result<bool, tonic::Status> {
        let req = self.request(
            content::InfoRequest {
                digest: blob.digest.to_string(),
            },
            None,
        );
        match self.client.clone().info(req).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(s),
        }
    }

    /// Opens a write of `blob` under `lease`, holding its ingest ref.
    ///
    /// # Errors
    /// [`OpenError`].
    pub(crate) async fn open(&self, lease: &str, blob: &Blob) -> Result<Opened, OpenError> {
        let total = i64::try_from(blob.size).map_err(|_| {
            OpenError::Status(tonic::Status::invalid_argument("blob size out of range"))
        })?;
        let (outbound, rx) = mpsc::channel(QUEUED_WRITES);
        let stat = content::WriteContentRequest {
            action: content::WriteAction::Stat.into(),
            r#ref: blob.ref_key(),
            total,
            expected: blob.digest.to_string(),
            ..Default::default()
        };
        // The channel is new and has room: this send cannot wait.
        outbound
            .send(stat)
            .await
            .map_err(|_| OpenError::Status(tonic::Status::internal("write queue closed")))?;
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let opened = self
            .client
            .clone()
            .write(self.request(stream, Some(lease)))
            .await;
        let mut responses = match opened {
            Ok(r) => r.into_inner(),
            Err(s) => return Err(open_error(s)),
        };
        match responses.next().await {
            Some(Ok(_)) => Ok(Opened {
                outbound,
                responses,
                blob: blob.clone(),
            }),
            Some(Err(s)) => Err(open_error(s)),
            None => Err(OpenError::Status(tonic::Status::unknown(
                "content write ended before it opened",
            ))),
        }
    }
}

fn open_error(s: tonic::Status) -> OpenError {
    match s.code() {
        tonic::Code::AlreadyExists => OpenError::Present,
        tonic::Code::Unavailable => OpenError::Busy,
        _ => OpenError::Status(s),
    }
}

impl Opened {
    /// Writes what `data` yields, then commits when it closed after exactly
    /// the blob's size (containerd checks the digest). Returns the bytes written.
    ///
    /// Once `hand_over` is cancelled, a write with more than
    /// [`HAND_OVER_ABOVE`] bytes still to come stops: what was received is
    /// written, the stream ends without a commit and containerd closes the
    /// writer, releasing the ingest ref with its bytes in it
    /// ([`WriteError::HandedOver`]). containerd's own fetch of the blob then
    /// resumes at that offset and rehashes the whole blob at its commit.
    ///
    /// # Errors
    /// [`WriteError`]; the ingest is left for the lease to collect.
    pub(crate) async fn write_all(
        self,
        mut data: mpsc::Receiver<Bytes>,
        hand_over: &CancellationToken,
    ) -> Result<u64, WriteError> {
        let Self {
            outbound,
            mut responses,
            blob,
        } = self;
        let expected = blob.size;
        let send = async move {
            let mut chunks = Chunks::default();
            let mut handing_over = false;
            loop {
                let next = tokio::select! {
                    biased;
                    () = hand_over.cancelled(), if !handing_over => {
                        if expected.saturating_sub(chunks.received()) <= HAND_OVER_ABOVE {
                            // Nearly there: finishing is cheaper than a resumed fetch.
                            handing_over = true;
                            continue;
                        }
                        data.close();
                        while let Some(bytes) = data.recv().await {
                            chunks.take(&bytes, expected)?;
                            chunks.send_full(&outbound).await?;
                        }
                        if let Some(msg) = chunks.flush() {
                            outbound.send(msg).await.map_err(|_| WriteError::Ended)?;
                        }
                        return Err(WriteError::HandedOver {
                            written: chunks.offset,
                        });
                    }
                    next = data.recv() => next,
                };
                let Some(bytes) = next else { break };
                chunks.take(&bytes, expected)?;
                chunks.send_full(&outbound).await?;
            }
            let got = chunks.received();
            if got != expected {
                return Err(WriteError::Size { expected, got });
            }
            let mut commit = chunks
                .flush()
                .unwrap_or_else(|| Chunks::message(got, Bytes::new()));
            commit.action = content::WriteAction::Commit.into();
            commit.total = i64::try_from(expected).unwrap_or(i64::MAX);
            commit.expected = blob.digest.to_string();
            outbound.send(commit).await.map_err(|_| WriteError::Ended)?;
            Ok(got)
        };
        let receive = async {
            while let Some(r) = responses.next().await {
                let r = r.map_err(WriteError::Status)?;
                if r.action == i32::from(content::WriteAction::Commit) {
                    return Ok(());
                }
            }
            Err(WriteError::Ended)
        };
        // A failed send drops the queue, which ends the stream; a refused
        // write ends the whole write at once.
        tokio::pin!(send, receive);
        let mut sending = true;
        loop {
            tokio::select! {
                sent = &mut send, if sending => match sent {
                    Ok(_) => sending = false,
                    Err(WriteError::HandedOver { written }) => {
                        // The queue is dropped, so the stream has ended:
                        // containerd answers what is left, closes the
                        // writer (releasing the ref) and ends its answer.
                        return match (&mut receive).await {
                            Err(WriteError::Ended) => Err(WriteError::HandedOver { written }),
                            Err(e) => Err(e),
                            Ok(()) => Err(WriteError::Ended),
                        };
                    }
                    Err(e) => return Err(e),
                },
                // containerd answered the commit: exactly `expected` bytes went in.
                received = &mut receive => return received.map(|()| expected),
            }
        }
    }
}

/// Bytes received from the registry, cut into write messages in order.
#[derive(Default)]
struct Chunks {
    /// Bytes sent to containerd.
    offset: u64,
    /// Received, not yet sent.
    pending: BytesMut,
}

impl Chunks {
    fn received(&self) -> u64 {
        self.offset + self.pending.len() as u64
    }

    /// Queues `bytes`; refuses more than the blob's size.
    fn take(&mut self, bytes: &[u8], expected: u64) -> Result<(), WriteError> {
        self.pending.extend_from_slice(bytes);
        let got = self.received();
        if got > expected {
            return Err(WriteError::Size { expected, got });
        }
        Ok(())
    }

    /// Sends a write message once [`WRITE_CHUNK`] bytes are pending.
    async fn send_full(
        &mut self,
        outbound: &mpsc::Sender<content::WriteContentRequest>,
    ) -> Result<(), WriteError> {
        if self.pending.len() >= WRITE_CHUNK {
            if let Some(msg) = self.flush() {
                outbound.send(msg).await.map_err(|_| WriteError::Ended)?;
            }
        }
        Ok(())
    }

    /// A write message of everything pending, if anything is.
    fn flush(&mut self) -> Option<content::WriteContentRequest> {
        if self.pending.is_empty() {
            return None;
        }
        let chunk = self.pending.split().freeze();
        let msg = Self::message(self.offset, chunk);
        self.offset += msg.data.len() as u64;
        Some(msg)
    }

    fn message(offset: u64, data: Bytes) -> content::WriteContentRequest {
        content::WriteContentRequest {
            action: content::WriteAction::Write.into(),
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
            data,
            ..Default::default()
        }
    }
}
