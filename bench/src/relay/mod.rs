//! Relays the bench pulls through, each in its own process, to split a hot
//! pull's cost into the hop's and pullgate's own.
//!
//! - [`bytes`]: a byte copy between two unix sockets, nothing decoded (the floor);
//! - [`h2`]: a hyper HTTP/2 server and client, frames decoded and re-encoded.

pub(crate) mod bytes;
pub(crate) mod h2;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// Which relay a child process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `byte-relay`: [`bytes::serve`].
    Bytes,
    /// `h2-relay`: [`h2::serve`].
    H2,
}

impl Kind {
    fn subcommand(self) -> &'static str {
        match self {
            Self::Bytes => "byte-relay",
            Self::H2 => "h2-relay",
        }
    }
}

/// A relay as a child process of the bench; killed when dropped.
#[derive(Debug)]
pub(crate) struct RelayChild {
    child: Child,
    socket: PathBuf,
}

impl RelayChild {
    /// Starts `<this binary> <kind's subcommand>` on `socket` in front of
    /// `upstream` and waits until it accepts connections.
    ///
    /// # Errors
    /// The process does not start, or does not listen within 10 s.
    pub(crate) async fn start(kind: Kind, socket: &Path, upstream: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let child = Command::new(exe)
            .arg(kind.subcommand())
            .arg("--listen")
            .arg(socket)
            .arg("--upstream")
            .arg(upstream)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {}", kind.subcommand()))?;
        let started = Instant::now();
        while UnixStream::connect(socket).await.is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the {} did not listen on {} within 10 s",
                kind.subcommand(),
                socket.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child,
            socket: socket.to_owned(),
        })
    }

    /// The socket it serves.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
