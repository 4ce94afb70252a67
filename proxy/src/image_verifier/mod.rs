//! pullgate as containerd 2.x's image verifier, and the local service that
//! lets a running `pullgate serve` answer it.
//!
//! containerd 2.x runs every executable in the `bin_dir` of its
//! `io.containerd.image-verifier.v1.bindir` plugin for every pull made
//! through its transfer service (`ctr image pull`; the CRI plugin's pulls
//! from containerd 2.1), after resolving the reference and before fetching
//! anything. `pullgate` installed there (`ln -s /usr/bin/pullgate
//! /opt/containerd/image-verifier/bin/pullgate`) and run with containerd's
//! arguments instead of a subcommand is that verifier.
//!
//! # The contract (containerd `docs/image-verification.md`, `pkg/imageverifier/bindir/bindir.go`)
//!
//! > - `-name`: The given reference to the image that may be pulled.
//! > - `-digest`: The resolved digest of the image that may be pulled.
//! > - `-stdin-media-type`: The media type of the JSON data passed to stdin.
//! >
//! > Currently, the payload has a media type of
//! > `application/vnd.oci.descriptor.v1+json` and represents the OCI Content
//! > Descriptor of the image that may be pulled.
//! >
//! > Print to standard output a reason for the image pull judgement.
//! >
//! > Return an exit code of 0 to allow the image to be pulled and any other
//! > exit code to block the image from being pulled.
//! >
//! > If any verifiers exceeds the `per_verifier_timeout` or fails to exec,
//! > the verification fails with an error and a `nil` judgement is returned.
//!
//! and from `bindir.go`: the process gets containerd's environment (no
//! credentials), runs in its own process group, which is killed
//! (`SIGKILL` to `-pid`) when `per_verifier_timeout` passes; stdout is read
//! up to 32 KiB (`outputLimitBytes = 1 << 15`) and trimmed; stderr is logged
//! at debug level, also up to 32 KiB.
//!
//! # What pullgate does with it
//!
//! Input: an [`Invocation`] (the arguments), stdin, the configuration
//! (`$PULLGATE_CONFIG`, else `/etc/pullgate/pullgate.toml`, as every command
//! resolves it: [`crate::config_file`]). Output: one
//! [`Judgement`], printed by `main` as one line, with exit status 0
//! (allowed) or 1 (denied, or no decision).
//!
//! 1. `contract` checks the call: `-name` parses, `-digest` is a digest
//!    `-name` does not contradict, the stdin descriptor (read up to 64 KiB)
//!    names `-digest` as an image manifest or index. Any disagreement denies.
//! 2. The image decided is `-name`'s repository at `-digest`: exactly the
//!    digest containerd will fetch, never a tag resolved again. For a
//!    multi-arch image that is the index, whose signatures are verified, as
//!    the CRI proxy verifies the index a `name:tag` resolves to.
//! 3. When `pullgate serve` answers on the verifier socket (`[image_verifier]
//!    socket`, default `verifier.sock` beside the CRI socket), `client` asks
//!    it, so one verdict cache, single flight, revocation cache and audit log
//!    serve the CRI proxy and the verifier. Only when there is no daemon to
//!    ask (no socket, connection refused, or a socket served by a process
//!    that is neither root nor pullgate's own user) does the verifier decide
//!    in its own process; once the daemon has been reached, its answer (or
//!    its failure to answer) is final: a denial is never retried in-process.
//! 4. Everything runs under one budget, `[image_verifier] budget_ms`
//!    (default 8 s), counted from the start of the process, so the answer
//!    comes before containerd's `per_verifier_timeout` (10 s by default)
//!    kills the verifier and fails the pull without a reason.
//!
//! `server` is the daemon's side: a root-only unix socket (mode 0600, peers
//! checked with `SO_PEERCRED`), at most `[image_verifier] max_connections`
//! connections, requests capped at `server::MAX_REQUEST_BYTES` (68 KiB), answered
//! through the same gate as `PullImage`.

pub(crate) mod client;
pub mod contract;
mod judgement;
pub(crate) mod server;

use std::time::{Duration, Instant};

use pullgate_policy::config::Config;
use tokio::io::AsyncRead;

pub use contract::Invocation;
pub use judgement::Judgement;

use crate::deadline::Deadline;
use crate::gate::{Door, Gate, Origin, PullRequest};
use crate::registry::Credentials;
use client::AskError;
use contract::Checked;

/// Most bytes the verifier writes to stderr (containerd logs up to 32 KiB of it).
pub const MAX_STDERR_BYTES: usize = 16 << 10;

/// Writes to stderr, at most a fixed number of bytes over the process's
/// life; the rest is dropped (containerd logs only the first 32 KiB).
#[derive(Debug, Clone)]
pub struct BoundedStderr {
    left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl BoundedStderr {
    /// At most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            left: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(limit)),
        }
    }
}

impl std::io::Write for BoundedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering;
        let taken = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(buf.len()))
            })
            .unwrap_or(0);
        let n = taken.min(buf.len());
        if n > 0 {
            std::io::stderr().write_all(&buf[..n])?;
        }
        // Past the limit the bytes are dropped, not an error: logging goes on.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BoundedStderr {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Whether a peer of the verifier socket with `uid` is trusted: root, or
/// the user pullgate itself runs as (checked by both ends with `SO_PEERCRED`).
pub(crate) fn trusted_uid(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Decides one call from containerd, within `[image_verifier] budget_ms`
/// counted from `started` (the process's start).
///
/// Never fails: every error is a denial with its reason.
///
/// # Cancel safety
/// Not cancel safe (it reads stdin); `main` runs it to the end.
pub async fn run<R: AsyncRead + Unpin>(
    invocation: &Invocation,
    stdin: R,
    config: &Config,
    started: Instant,
) -> Judgement {
    let budget = config.image_verifier.budget();
    let deadline = Deadline::after(budget.saturating_sub(started.elapsed()));
    let (name, digest) = (invocation.name.as_str(), invocation.digest.as_str());
    let stdin = match deadline.run(contract::read_stdin(stdin)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return Judgement::refused(name, digest, &e),
        Err(_) => return Judgement::undecided(name, digest, &within(budget)),
    };
    let checked = match contract::check(name, digest, &invocation.stdin_media_type, &stdin) {
        Ok(c) => c,
        Err(e) => return Judgement::refused(name, digest, &e),
    };
    if let Some(socket) = config.image_verifier.socket_path(&config.server) {
        match client::ask(&socket, invocation, &stdin, deadline).await {
            Ok(answer) => return answer,
            Err(AskError::NoDaemon(why)) => {
                tracing::info!(socket = %socket.display(), %why,
                    "no pullgate serve to ask; deciding in this process");
            }
            Err(AskError::NoAnswer(why)) => {
                return Judgement::undecided(name, digest, &format_args!("pullgate serve: {why}"));
            }
        }
    }
    in_process(checked, config, deadline, budget).await
}

/// "within 8000 ms ([image_verifier] budget_ms)".
fn within(budget: Duration) -> String {
    format!(
        "no answer within {} ms ([image_verifier] budget_ms)",
        budget.as_millis()
    )
}

/// Loads the gate here and decides, writing the audit log when one is configured.
async fn in_process(
    checked: Checked,
    config: &Config,
    deadline: Deadline,
    budget: Duration,
) -> Judgement {
    let name = checked.image.to_string();
    let digest = checked.digest.to_string();
    let loading = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Gate::load(&config))
    };
    let gate = match deadline.run(loading).await {
        Ok(Ok(Ok(gate))) => gate,
        Ok(Ok(Err(e))) => return Judgement::refused(&name, &digest, &e),
        Ok(Err(_)) => {
            return Judgement::undecided(&name, &digest, &"loading the trust policy failed")
        }
        Err(_) => return Judgement::undecided(&name, &digest, &within(budget)),
    };
    let audit = match &config.audit.path {
        Some(p) if !p.as_os_str().is_empty() => match gate.open_audit_log(p).await {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::warn!(error = %e, "deciding without writing the audit log");
                None
            }
        },
        _ => None,
    };
    let judgement = decide(&gate, checked, deadline).await;
    // The audit writer ends once the gate (holding its sender) is gone.
    drop(gate);
    if let Some(task) = audit {
        if deadline
            .at_most(Duration::from_secs(1))
            .run(task)
            .await
            .is_err()
        {
            tracing::warn!("the audit record may not have been written");
        }
    }
    judgement
}

/// The gate's decision on a checked call, as a pull would get it: cached,
/// single flight, audited. The registry is asked without CRI credentials
/// (containerd passes none), so `[registry] auth_file` applies.
///
/// # Cancel safety
/// As [`Gate::decide`]: cancel safe.
pub(crate) async fn decide(gate: &Gate, checked: Checked, deadline: Deadline) -> Judgement {
    let req = PullRequest {
        image: checked.image.clone(),
        credentials: Credentials::NotGiven,
        deadline,
        origin: Origin::door(Door::Verifier),
    };
    let (outcome, facts) = gate.decide_outcome(req).await;
    Judgement::of(&checked.digest, &outcome, &facts)
}
