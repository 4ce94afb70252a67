//! Child processes owned by a test: spawned with their output in a log file,
//! waited on until they answer, killed and reaped on drop.
//!
//! A failure to start reports the tail of the process's log in the error, so
//! a failing test shows why containerd or the registry did not come up.

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How many log lines an error carries.
const LOG_TAIL_LINES: usize = 40;

/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(25);

/// A running child process. Drop kills it (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` with stdin closed and stdout and stderr appended to
    /// `log` (created if missing; a restarted process appends to its log).
    ///
    /// # Errors
    /// The log file cannot be opened or the program cannot be started.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log file {}", log.display()))?;
        let err = out.try_clone().context("duplicating log file handle")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Where the process's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }

    /// Calls `probe` until it returns `true`, the process exits, or `timeout`
    /// passes; the last two are errors that carry the log's tail.
    ///
    /// # Errors
    /// The process exited, or it did not become ready in time.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("polling child")? {
                bail!(
                    "{} exited before it was ready ({status}); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            if probe().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} not ready after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Kills the process (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        // Already exited: kill fails harmlessly; wait reaps either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of the file at `path` (or why it could not be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = String::new();
            for line in &all[start..] {
                let _ = writeln!(out, "    {line}");
            }
            out
        }
        Err(e) => format!("    (cannot read {}: {e})", path.display()),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// # Errors
/// No port could be bound.
pub async fn free_port() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
