//! Policy reload: on SIGHUP and when the trust files change.
//!
//! Input: the running [`Gate`], a poll interval, the root cancellation
//! token. Output: calls to [`Gate::reload`], which re-reads the trust policy,
//! the requirements file and the trust store, and swaps in a new policy with
//! the next generation when their content changed. An invalid new policy is
//! refused and logged; the old one stays in force. containerd's `hosts.toml`
//! files (`[registry] hosts_dir`) are re-read at the same moments
//! (`Gate::reload_hosts`): containerd reads them at each
//! pull, so a mirror added while pullgate runs is asked by both.
//!
//! Change detection is a content hash of those files (not mtimes: a file
//! rewritten within the mtime granularity, or a trust store directory whose
//! mtime does not change when a certificate inside it is replaced, would be
//! missed). The files are small (a policy and a few certificates), so
//! hashing them every couple of seconds costs microseconds; the work runs
//! on the blocking pool. With an interval of 0 only SIGHUP reloads.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::gate::Gate;

/// Why reloads are driven: for the log line.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Signal,
    Poll,
}

/// Watches for SIGHUP and (every `interval`, unless zero) for changed files until `shutdown`.
///
/// # Cancel safety
/// Cancel safe: a reload in flight on the blocking pool completes or not; the policy swap is atomic.
pub async fn watch(gate: Arc<Gate>, interval: Duration, shutdown: CancellationToken) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload only on file change");
            None
        }
    };
    let mut tick = (!interval.is_zero()).then(|| {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let trigger = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => Trigger::Signal,
            _ = async { match tick.as_mut() { Some(t) => t.tick().await, None => std::future::pending().await } } => Trigger::Poll,
        };
        reload_once(&gate, trigger).await;
    }
}

async fn reload_once(gate: &Arc<Gate>, trigger: Trigger) {
    let g = Arc::clone(gate);
    let reloaded = tokio::task::spawn_blocking(move || {
        let hosts = g.reload_hosts();
        (g.reload(), hosts)
    })
    .await;
    let reloaded = match reloaded {
        Ok((policy, hosts)) => {
            match hosts {
                Ok(true) => tracing::info!(?trigger, "registry hosts.toml files reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, ?trigger,
                    "registry hosts.toml refused; the previous endpoints stay in force"),
            }
            Ok(policy)
        }
        Err(e) => Err(e),
    };
    match reloaded {
        Ok(Ok(Some(generation))) => {
            tracing::info!(generation = generation.0, ?trigger, "policy reloaded");
        }
        Ok(Ok(None)) => {
            if matches!(trigger, Trigger::Signal) {
                tracing::info!("SIGHUP: trust files unchanged, policy kept");
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, ?trigger,
                "new policy refused; the previous policy stays in force");
        }
        Err(e) => tracing::error!(error = %e, "policy reload task failed"),
    }
}
