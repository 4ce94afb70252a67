//! Prefetch: a cold pull's content brought into containerd's content store
//! while its signatures are discovered and verified, so the pull costs
//! about the longer of the two, not their sum.
//!
//! Input: the repository, the resolved digest and the pull's credentials,
//! once the gate knows the verdict must be computed (`Gate::decide_with`).
//! The same [`RegistryClient`] and credentials as discovery fetch the
//! root manifest or index, the node platform's manifest, then its config
//! and layers (see `platform`): what a direct pull of that digest fetches,
//! less any blob containerd already has (content `Info`). Each blob is
//! streamed from the registry into containerd's content `Write` under one
//! lease per pull, named `containerd-lease`, and committed with its
//! expected digest and size (containerd checks both). Nothing else is
//! written: no image record, no snapshot, so nothing is runnable before the
//! verdict.
//!
//! Output, by verdict: allowed, [`Prefetch::settle`] lets no further blob
//! start, finishes the blobs being written that are nearly whole and hands
//! the others to containerd (`content_writer::HAND_OVER_ABOVE`): their
//! write ends without a commit, leaving the bytes written in the ingest,
//! and containerd's own fetch resumes at that offset with a range request
//! and rehashes the whole blob at its commit. So the forwarded pinned pull
//! finds the early blobs present, skips them and fetches, and unpacks, the
//! rest as a direct pull would, and no byte is fetched twice. Then
//! [`Prefetch::release`] deletes the lease once it answered (the image
//! record then holds the content). Denied or undecided,
//! [`Prefetch::discard`] stops every write and deletes the lease with
//! `sync`, so containerd collects what it held before the denial is
//! answered. A lease carries `containerd.io/gc.expire`
//! (`[prefetch] lease_expiry_secs`) in case pullgate dies holding it.
//!
//! Limits: `[prefetch] max_bytes_per_pull` and `max_bytes_total` (see
//! `budget`; a blob is reserved whole before it is fetched, and one that
//! does not fit is left to containerd); manifests are capped at
//! `[registry.limits] manifest_bytes`, blobs at their descriptor's size;
//! [`CONCURRENT_BLOBS`] blobs of one pull and [`CONCURRENT_BLOBS_TOTAL`]
//! of all pulls at once; every request under the
//! registry client's request timeout and the decision budget. Any failure
//! ends the prefetch quietly: containerd then fetches what is missing.

mod budget;
mod content_writer;
mod lease;
mod platform;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use pullgate_policy::config::PrefetchConfig;
use pullgate_policy::{Digest, Repository};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::deadline::Deadline;
use crate::metrics::Metrics;
use crate::registry::{Credentials, Descriptor, RegistryClient};
use budget::{PullBudget, TotalBudget};
use content_writer::{ContentStore, OpenError, WriteError};
use lease::Leases;
use platform::{read_root, Blob, Root};

/// Blobs of one pull fetched at once, in manifest order: at an allow at
/// most this many are being written, and containerd fetches the rest while
/// it unpacks those (a focused bench, 100 MiB in four layers at 20 ms: one
/// at a time +132 ms over a direct pull, two +214 ms, three +276 ms; see
/// `bench/results/prefetch/`).
pub(crate) const CONCURRENT_BLOBS: usize = 1;
/// Blobs of all pulls fetched at once: well under the registry client's
/// requests per host (32), so prefetches never hold the permits discovery needs.
pub(crate) const CONCURRENT_BLOBS_TOTAL: usize = 8;
/// Chunks of one blob queued between the registry and containerd.
const QUEUED_CHUNKS: usize = 16;

/// Starts prefetches; one per `serve`, shared by pulls.
#[derive(Debug)]
pub(crate) struct Prefetcher {
    registry: RegistryClient,
    leases: Leases,
    content: ContentStore,
    total: Arc<TotalBudget>,
    per_pull: u64,
    lease_expiry: Duration,
    /// How long one prefetch may run.
    budget: Duration,
    metrics: Arc<Metrics>,
    arch: &'static str,
    next: AtomicU64,
    /// [`CONCURRENT_BLOBS_TOTAL`] permits.
    streams: tokio::sync::Semaphore,
}

/// One pull's prefetch, under way or done.
#[derive(Debug)]
pub(crate) struct Prefetch {
    prefetcher: Arc<Prefetcher>,
    lease: String,
    cancel: CancellationToken,
    /// Cancelled at an allow: no blob starts after it.
    stop_new: CancellationToken,
    task: Option<JoinHandle<PullBudget>>,
    /// What the pull holds of the total once the task ended.
    held: Option<PullBudget>,
}

impl Prefetcher {
    /// A prefetcher writing into containerd's `namespace` over `channel`;
    /// `None` when `[prefetch] enabled` is off.
    pub(crate) fn new(
        config: &PrefetchConfig,
        registry: RegistryClient,
        channel: &Channel,
        namespace: &str,
        metrics: Arc<Metrics>,
        budget: Duration,
    ) -> Option<Arc<Self>> {
        config.enabled.then(|| {
            Arc::new(Self {
                registry,
                leases: Leases::new(channel.clone(), namespace.to_owned()),
                content: ContentStore::new(channel.clone(), namespace.to_owned()),
                total: TotalBudget::new(config.max_bytes_total),
                per_pull: config.max_bytes_per_pull,
                lease_expiry: Duration::from_secs(config.lease_expiry_secs.max(1)),
                budget,
                metrics,
                arch: platform::node_arch(),
                next: AtomicU64::new(0),
                streams: tokio::sync::Semaphore::new(CONCURRENT_BLOBS_TOTAL),
            })
        })
    }

    /// Starts prefetching `digest` of `repository` with `credentials`; the
    /// lease expires `[prefetch] lease_expiry_secs` after `now`.
    pub(crate) fn start(
        self: &Arc<Self>,
        repository: &Repository,
        digest: &Digest,
        credentials: &Credentials,
        now: SystemTime,
    ) -> Prefetch {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let lease = format!(
            "pullgate-prefetch-{}-{}-{n}",
            std::process::id(),
            digest
                .to_string()
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect::<String>()
        );
        let cancel = CancellationToken::new();
        let stop_new = CancellationToken::new();
        let job = Job {
            stop_new: stop_new.clone(),
            prefetcher: Arc::clone(self),
            lease: lease.clone(),
            repository: repository.clone(),
            digest: digest.clone(),
            credentials: credentials.clone(),
            deadline: Deadline::after(self.budget),
            expires: now + self.lease_expiry,
        };
        let token = cancel.clone();
        let per_pull = self.per_pull;
        let total = Arc::clone(&self.total);
        let task = tokio::spawn(async move {
            let mut budget = PullBudget::new(per_pull, total);
            tokio::select! {
                () = token.cancelled() => {}
                () = job.run(&mut budget) => {}
            }
            budget
        });
        Prefetch {
            prefetcher: Arc::clone(self),
            lease,
            cancel,
            stop_new,
            task: Some(task),
            held: None,
        }
    }
}

impl Prefetch {
    /// Allowed: no further blob starts (containerd fetches the rest, while
    /// it unpacks), blobs being written are finished or handed over (see
    /// the module), and this waits until they are, at most until `deadline`
    /// (then stops them), so the forwarded pull finds no ingest ref held.
    pub(crate) async fn settle(&mut self, deadline: Deadline) {
        self.stop_new.cancel();
        let Some(mut task) = self.task.take() else {
            return;
        };
        match deadline.run(&mut task).await {
            Ok(Ok(budget)) => self.held = Some(budget),
            Ok(Err(e)) => tracing::debug!(error = %e, "prefetch task ended abnormally"),
            Err(_) => {
                self.cancel.cancel();
                if let Ok(budget) = task.await {
                    self.held = Some(budget);
                }
            }
        }
    }

    /// Allowed and forwarded: deletes the lease (the image record holds the content now).
    pub(crate) async fn release(mut self) {
        self.end(false).await;
        self.prefetcher.metrics.prefetch("allowed");
    }

    /// Denied or undecided: stops every write and deletes the lease with
    /// `sync`, so containerd has collected what it held when this returns.
    pub(crate) async fn discard(mut self) {
        self.end(true).await;
        self.prefetcher.metrics.prefetch("discarded");
    }

    async fn end(&mut self, sync: bool) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Err(e) = self.prefetcher.leases.delete(&self.lease, sync).await {
            tracing::warn!(lease = %self.lease, error = %e,
                "prefetch lease not deleted: containerd collects its content when the lease expires");
        }
        self.held = None;
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Dropped without release or discard (the call was cancelled):
        // stop writing and delete the lease in the background.
        if self.task.is_none() && self.cancel.is_cancelled() {
            return;
        }
        self.cancel.cancel();
        let leases = self.prefetcher.leases.clone();
        let lease = std::mem::take(&mut self.lease);
        let task = self.task.take();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Some(task) = task {
                    let _ = task.await;
                }
                let _ = leases.delete(&lease, true).await;
            });
        }
    }
}

/// What one prefetch task works on.
struct Job {
    prefetcher: Arc<Prefetcher>,
    /// Cancelled at an allow: blobs not yet started are left to containerd.
    stop_new: CancellationToken,
    lease: String,
    repository: Repository,
    digest: Digest,
    credentials: Credentials,
    deadline: Deadline,
    /// When containerd may drop the lease by itself.
    expires: SystemTime,
}

impl Job {
    async fn run(self, budget: &mut PullBudget) {
        let p = &self.prefetcher;
        if let Err(e) = p.leases.create(&self.lease, self.expires).await {
            tracing::debug!(error = %e, "prefetch: no lease, nothing fetched ahead");
            return;
        }
        let Some(root) = self.document(&self.digest, budget).await else {
            return;
        };
        let blobs = match root {
            Root::Manifest(blobs) => blobs,
            Root::Index(None) => return,
            Root::Index(Some(manifest)) => match self.document(&manifest.digest, budget).await {
                Some(Root::Manifest(blobs)) => blobs,
                _ => return,
            },
        };
        let mut planned = Vec::new();
        for blob in blobs {
            match p.content.has(&blob).await {
                Ok(false) => {}
                Ok(true) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "prefetch: content Info failed; stopping");
                    return;
                }
            }
            if budget.reserve(blob.size) {
                planned.push(blob);
            } else {
                tracing::debug!(digest = %blob.digest, size = blob.size, "prefetch: over budget, left to containerd");
            }
        }
        let unwritten: Vec<u64> = futures_util::stream::iter(planned)
            .map(|blob| self.blob(blob))
            .buffer_unordered(CONCURRENT_BLOBS)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        for size in unwritten {
            budget.unreserve(size);
        }
    }

    /// Fetches the manifest or index `digest`, writes it and reads it.
    async fn document(&self, digest: &Digest, budget: &mut PullBudget) -> Option<Root> {
        let p = &self.prefetcher;
        let fetched = p
            .registry
            .fetch_manifest_bytes(&self.repository, digest, &self.credentials, self.deadline)
            .await;
        let (bytes, given) = match fetched {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "prefetch: manifest not fetched");
                return None;
            }
        };
        let media_type = platform::media_type_of(&bytes, &given);
        let root = match read_root(&bytes, &media_type, p.arch) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "prefetch: not an image");
                return None;
            }
        };
        let blob = platform::root_blob(digest, &media_type, bytes.len() as u64);
        if !budget.reserve(blob.size) {
            return Some(root);
        }
        match p.content.open(&self.lease, &blob).await {
            Ok(opened) => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.send(bytes).await;
                drop(tx);
                // A document is whole in the queue: it is never handed over.
                match opened.write_all(rx, &CancellationToken::new()).await {
                    Ok(n) => p.metrics.prefetched(n),
                    Err(e) => {
                        budget.unreserve(blob.size);
                        tracing::debug!(error = %e, "prefetch: manifest not written");
                    }
                }
            }
            Err(e) => {
                budget.unreserve(blob.size);
                if let OpenError::Status(s) = e {
                    tracing::debug!(error = %s, "prefetch: manifest not written");
                }
            }
        }
        Some(root)
    }

    /// Streams one blob from the registry into containerd; `Some(size)`
    /// when it was not written (its reservation goes back).
    async fn blob(&self, blob: Blob) -> Option<u64> {
        let p = &self.prefetcher;
        let Ok(_stream) = p.streams.acquire().await else {
            return Some(blob.size);
        };
        if self.stop_new.is_cancelled() {
            return Some(blob.size);
        }
        let opened = match p.content.open(&self.lease, &blob).await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(digest = %blob.digest, error = %e, "prefetch: blob not written");
                return Some(blob.size);
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        let desc = Descriptor {
            media_type: blob.media_type.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
            artifact_type: None,
            annotations: std::collections::BTreeMap::new(),
        };
        let fetch = p.registry.stream_blob(
            &self.repository,
            &desc,
            &self.credentials,
            self.deadline,
            tx,
        );
        let (fetched, written) = tokio::join!(fetch, opened.write_all(rx, &self.stop_new));
        match (fetched, written) {
            (_, Err(WriteError::HandedOver { written })) => {
                p.metrics.prefetched(written);
                tracing::debug!(digest = %blob.digest, written, "prefetch: blob handed to containerd's fetch");
                Some(blob.size)
            }
            (Ok(()), Ok(n)) => {
                p.metrics.prefetched(n);
                None
            }
            (Err(e), _) => {
                tracing::debug!(digest = %blob.digest, error = %e, "prefetch: blob not fetched");
                Some(blob.size)
            }
            (Ok(()), Err(e)) => {
                tracing::debug!(digest = %blob.digest, error = %e, "prefetch: blob not written");
                Some(blob.size)
            }
        }
    }
}
