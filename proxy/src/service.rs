//! `pullgate serve`: everything that runs beside the CRI socket, wired together.
//!
//! Input: the loaded [`Config`] and [`Gate`]. Output: the CRI socket served
//! until SIGTERM/SIGINT, plus, as configured, the `/metrics` endpoint, the
//! audit log writer, the policy reload watcher, the `[trust] source` poll, persisted verdicts
//! (restored before serving, saved periodically and at shutdown), the
//! `pullgate_images_without_verdict` gauge (with `/metrics`: every
//! `IMAGES_GAUGE_INTERVAL`, at most `IMAGES_PER_PASS` images looked up
//! per pass, cache only) and the
//! image verifier socket (`[image_verifier] socket`, beside the CRI socket
//! by default), answered by the same gate. systemd readiness (`READY=1`)
//! is sent once the CRI socket is bound.
//!
//! systemd notification is written by hand (one datagram to
//! `$NOTIFY_SOCKET`, path or abstract name) rather than with the
//! `sd-notify` crate: it is a dozen lines, and doing it here keeps the
//! one-shot, non-blocking send inside the code that knows when the socket is
//! bound.

use std::sync::Arc;
use std::time::Duration;

use pullgate_policy::config::Config;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::gate::Gate;

/// How often the images containerd holds are counted for `pullgate_images_without_verdict`.
pub(crate) const IMAGES_GAUGE_INTERVAL: Duration = Duration::from_secs(60);

/// Most images whose records are looked up in one pass; a longer list is
/// covered over several passes (each starts where the last stopped).
pub(crate) const IMAGES_PER_PASS: usize = 256;

/// How long one pass may take.
const IMAGES_PASS_BUDGET: Duration = Duration::from_secs(30);

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The CRI socket failed.
    #[error(transparent)]
    Serve(#[from] crate::cri::ServeError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// `[trust] source` cannot be followed.
    #[error("policy source: {0}")]
    PolicySource(#[from] crate::policy_source::SourceError),
}

/// Serves until SIGTERM or SIGINT.
///
/// # Errors
/// [`RunError`] when a listener cannot be bound or the audit log opened.
pub async fn run(config: Config, gate: Arc<Gate>) -> Result<(), RunError> {
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    if let Some(dir) = config.cache.state_dir.clone() {
        let g = Arc::clone(&gate);
        let store = tokio::task::spawn_blocking(move || {
            let store = crate::persist::Store::open(&dir)?;
            crate::persist::restore(&store, &g);
            Ok::<_, crate::persist::Error>(store)
        })
        .await;
        match store {
            Ok(Ok(store)) => {
                tasks.spawn(
                    persist_verdicts(Arc::new(store), Arc::clone(&gate), shutdown.child_token())
                        .instrument(tracing::info_span!("persist")),
                );
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "verdicts will not be persisted"),
            Err(e) => tracing::warn!(error = %e, "verdicts will not be persisted"),
        }
    }
    let audit_writer = match &config.audit.path {
        Some(p) if !p.as_os_str().is_empty() => Some(gate.open_audit_log(p).await?),
        _ => None,
    };
    if let Some(listener) = crate::metrics::bind(&config.metrics.listen).await? {
        tracing::info!(listen = config.metrics.listen, "serving /metrics");
        tasks.spawn(
            crate::metrics::serve(
                listener,
                gate.metrics(),
                config.metrics.clone(),
                shutdown.child_token(),
            )
            .instrument(tracing::info_span!("metrics")),
        );
        tasks.spawn(
            images_without_verdict(
                Arc::clone(&gate),
                config.server.upstream.clone(),
                config.server.containerd_namespace.clone(),
                shutdown.child_token(),
            )
            .instrument(tracing::info_span!("images_without_verdict")),
        );
    }
    if config.trust.source.is_some() {
        let (c, g) = (config.clone(), Arc::clone(&gate));
        let source =
            tokio::task::spawn_blocking(move || crate::policy_source::PolicySource::new(&c, g))
                .await
                .map_err(|e| {
                    RunError::PolicySource(crate::policy_source::SourceError::Config(e.to_string()))
                })??;
        if let Some(source) = source {
            tasks.spawn(
                crate::policy_source::poll::run(
                    source,
                    config.trust.source_poll(),
                    shutdown.child_token(),
                )
                .instrument(tracing::info_span!("policy_source")),
            );
        }
    }
    tasks.spawn(
        crate::reload::watch(
            Arc::clone(&gate),
            Duration::from_millis(config.trust.reload_interval_ms),
            shutdown.child_token(),
        )
        .instrument(tracing::info_span!("reload")),
    );
    // Bound before the CRI socket: once `serve` is ready, verifiers find it.
    if let Some(path) = config.image_verifier.socket_path(&config.server) {
        match crate::image_verifier::server::bind(&path).await {
            Ok(listener) => {
                let (g, verifier, token) = (
                    Arc::clone(&gate),
                    config.image_verifier.clone(),
                    shutdown.child_token(),
                );
                tasks.spawn(
                    async move {
                        crate::image_verifier::server::serve(listener, &path, &verifier, g, token)
                            .await;
                    }
                    .instrument(tracing::info_span!("image_verifier")),
                );
            }
            // The CRI socket goes on; the verifier then decides in its own process.
            Err(e) => tracing::error!(error = %e, "the image verifier socket is not served"),
        }
    }
    let signals = shutdown.clone();
    tasks.spawn(
        async move {
            // Also ends when serving stopped on its own (an error), so the drain below finishes.
            tokio::select! {
                () = crate::shutdown_signal() => {
                    tracing::info!("shutting down");
                    signals.cancel();
                }
                () = signals.cancelled() => {}
            }
        }
        .instrument(tracing::info_span!("signals")),
    );
    let result = crate::cri::serve(&config, gate, shutdown.clone(), || {
        sd_notify("READY=1\nSTATUS=serving CRI");
    })
    .await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    drop(audit_writer);
    result.map_err(Into::into)
}

/// Saves allow verdicts every [`crate::persist::SAVE_INTERVAL`] when new ones were made, and at shutdown.
async fn persist_verdicts(
    store: Arc<crate::persist::Store>,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
) {
    let mut saved = gate.new_allows();
    let mut tick = tokio::time::interval(crate::persist::SAVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let now = gate.new_allows();
        if now != saved || last {
            saved = now;
            let (s, g) = (Arc::clone(&store), Arc::clone(&gate));
            if let Err(e) = tokio::task::spawn_blocking(move || crate::persist::save(&s, &g)).await
            {
                tracing::warn!(error = %e, "persisting verdicts failed");
            }
        }
        if last {
            return;
        }
    }
}

/// Keeps `pullgate_images_without_verdict` current until `shutdown`: every
/// [`IMAGES_GAUGE_INTERVAL`] lists containerd's images, looks up the records
/// of at most [`IMAGES_PER_PASS`] of them (the next ones each pass) and asks
/// the gate's cache-only check (`Gate::may_show`, no network) about each;
/// the gauge counts the images of the current list last found without an
/// allow verdict (an image not yet looked at is not counted).
///
/// # Cancel safety
/// Returns at `shutdown`; a pass in progress is dropped.
async fn images_without_verdict(
    gate: Arc<Gate>,
    upstream: std::path::PathBuf,
    namespace: String,
    shutdown: CancellationToken,
) {
    let inventory = match crate::cri::inventory::Inventory::new(&upstream, &namespace) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "images without a verdict are not counted");
            return;
        }
    };
    let metrics = gate.metrics();
    let mut without = std::collections::HashMap::<String, bool>::new();
    let mut next = 0usize;
    let mut tick = tokio::time::interval(IMAGES_GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let deadline = crate::deadline::Deadline::after(IMAGES_PASS_BUDGET);
        let pass = tokio::select! {
            () = shutdown.cancelled() => return,
            pass = inventory.images_window(next, IMAGES_PER_PASS, deadline) => pass,
        };
        let (ids, window) = match pass {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "cannot count images without a verdict");
                continue;
            }
        };
        for image in &window {
            without.insert(image.id.clone(), !gate.may_show(&image.records));
        }
        let listed: std::collections::HashSet<&String> = ids.iter().collect();
        without.retain(|id, _| listed.contains(id));
        next = next.wrapping_add(window.len());
        metrics.set_images_without_verdict(without.values().filter(|w| **w).count());
    }
}

/// Sends `state` to systemd when started with `Type=notify` (`$NOTIFY_SOCKET` set).
///
/// One datagram on a unix socket systemd is reading: it does not block in practice.
pub(crate) fn sd_notify(state: &str) {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => SocketAddr::from_pathname(std::path::Path::new(&path)),
    };
    let sent = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    match sent {
        Ok(_) => tracing::debug!(state, "notified systemd"),
        Err(e) => tracing::warn!(error = %e, "cannot notify systemd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // The only test in this binary that touches NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        sd_notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
