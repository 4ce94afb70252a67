//! The distribution's `docker-registry` 2.8 on a free loopback port.
//!
//! It stores manifests with `subject` and `artifactType` but has no referrers
//! API (`GET /v2/<name>/referrers/<digest>` is 404), so signatures pushed here
//! are found through the referrers tag schema.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::child::{free_port, ChildProcess};
use crate::distribution::Registry;

/// Where the Debian package installs the binary.
const DEFAULT_BIN: &str = "/usr/bin/docker-registry";

/// How long the registry may take to answer `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `docker-registry`; drop stops it and removes its storage.
#[derive(Debug)]
pub struct DockerRegistry {
    // Field order matters: the process dies before its directory is removed.
    process: ChildProcess,
    host: String,
    dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts a registry on `127.0.0.1:<free port>` with filesystem storage in
    /// a temp dir and deletes enabled, and waits until `GET /v2/` answers 200.
    ///
    /// The binary is `$DOCKER_REGISTRY_BIN`, else `/usr/bin/docker-registry`.
    ///
    /// # Errors
    /// The binary is missing, or the registry does not answer in time (the
    /// error carries its log's tail).
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pullgate-registry-")
            .tempdir()
            .context("creating registry temp dir")?;
        let port = free_port().await?;
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        tokio::fs::create_dir_all(&storage).await?;
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            storage = storage.display(),
        );
        let config_path = dir.path().join("config.yml");
        tokio::fs::write(&config_path, config).await?;

        let bin = std::env::var("DOCKER_REGISTRY_BIN").unwrap_or_else(|_| DEFAULT_BIN.to_owned());
        let mut process = ChildProcess::spawn(
            "docker-registry",
            Command::new(&bin).arg("serve").arg(&config_path),
            &dir.path().join("registry.log"),
        )?;
        let client = Registry::new(&host);
        process
            .wait_ready(START_TIMEOUT, || async { client.ping().await.is_ok() })
            .await?;
        Ok(Self { process, host, dir })
    }

    /// `127.0.0.1:<port>`, the registry host for image references.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// The temp dir holding its config, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log (access log included).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
