//! Readings of the measured pullgate process from `/proc/<pid>/status`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

/// A `status` field in KiB (`VmRSS`, `VmHWM`, …) of `pid`; `None` if the
/// process is gone or the field is missing.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    pullgate_tests::pullgate::status_kib(pid, field).ok()
}

/// Resident memory now, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// Resident memory now, split: (`RssAnon`, `RssFile`) in KiB. The file
/// part is mostly the binary's own pages, shared with the page cache, and
/// varies with how much of it fault-around maps.
pub(crate) fn rss_split_kib(pid: u32) -> Option<(u64, u64)> {
    Some((status_kib(pid, "RssAnon")?, status_kib(pid, "RssFile")?))
}

/// Peak resident memory since the process started (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Reads `VmRSS` every `every` until [`RssSampler::stop`], keeping the largest.
#[derive(Debug)]
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(rss_kib(pid).unwrap_or(0));
                tokio::time::sleep(every).await;
            }
            max.max(rss_kib(pid).unwrap_or(0))
        });
        Self { stop, task }
    }

    /// Stops sampling; the largest `VmRSS` seen, in KiB.
    pub(crate) async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}
