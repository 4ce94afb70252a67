//! Launcher for the built `pullgate` binary: `pullgate serve --config <file>`.
//!
//! The binary is `$PULLGATE_BIN`, else `<target dir>/debug/pullgate`, where
//! the target dir is `$CARGO_TARGET_DIR` (at run time, then at build time),
//! else the workspace's `target/`. The tests never link the proxy crate: they
//! drive the binary, as the kubelet would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::child::ChildProcess;

/// How long pullgate may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the `pullgate` binary is expected.
pub fn binary_path() -> PathBuf {
    if let Ok(bin) = std::env::var("PULLGATE_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .ok()
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(str::to_owned))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug").join("pullgate")
}

/// The parts of a pullgate config that tests set; [`PullgateConfig::to_toml`]
/// writes the TOML `pullgate serve --config` reads.
#[derive(Debug, Clone)]
pub struct PullgateConfig {
    /// `server.socket`: where pullgate listens.
    pub socket: PathBuf,
    /// `server.upstream`: containerd's socket.
    pub upstream: PathBuf,
    /// `trust.policy`: notation `trustpolicy.json`.
    pub policy: PathBuf,
    /// `trust.store`: dir holding `x509/{ca,signingAuthority,tsa}/<name>/`.
    pub store: PathBuf,
    /// `registry.plain_http`: registries spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// `registry.hosts_dir`: containerd's registry `config_path`, if any.
    pub hosts_dir: Option<PathBuf>,
    /// `registry.auth_file`: a Docker `config.json` / `auth.json`, if any.
    pub auth_file: Option<PathBuf>,
    /// `server.frame_relay`; [`PullgateConfig::in_dir`] sets it as pullgate's
    /// default does (on), off when `PULLGATE_E2E_FRAME_RELAY=0` (the whole
    /// suite then runs call by call).
    pub frame_relay: bool,
    /// Extra TOML appended verbatim; must open its own tables
    /// (e.g. `"[cache]\nallow_ttl_secs = 1\n"`).
    pub extra: String,
    /// Environment variables set for the process (e.g. `AWS_*` for the AWS
    /// Signer revocation client); the rest is inherited.
    pub env: Vec<(String, String)>,
}

impl PullgateConfig {
    /// A config with socket `<dir>/pullgate.sock`, forwarding to `upstream`,
    /// trust policy `<dir>/trustpolicy.json` and trust store `<dir>/truststore`.
    pub fn in_dir(dir: &Path, upstream: &Path) -> Self {
        Self {
            socket: dir.join("pullgate.sock"),
            upstream: upstream.to_owned(),
            policy: dir.join("trustpolicy.json"),
            store: dir.join("truststore"),
            plain_http: Vec::new(),
            hosts_dir: None,
            auth_file: None,
            frame_relay: std::env::var_os("PULLGATE_E2E_FRAME_RELAY").is_none_or(|v| v != "0"),
            extra: String::new(),
            env: Vec::new(),
        }
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        let quote = |p: &Path| toml_string(&p.display().to_string());
        let plain = self
            .plain_http
            .iter()
            .map(|h| toml_string(h))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!(
            "[server]\nframe_relay = {}\nsocket = {}\nupstream = {}\n\n[trust]\npolicy = {}\nstore = {}\n\n[registry]\nplain_http = [{plain}]\n",
            self.frame_relay,
            quote(&self.socket),
            quote(&self.upstream),
            quote(&self.policy),
            quote(&self.store),
        );
        if let Some(h) = &self.hosts_dir {
            s.push_str(&format!("hosts_dir = {}\n", quote(h)));
        }
        if let Some(a) = &self.auth_file {
            s.push_str(&format!("auth_file = {}\n", quote(a)));
        }
        if !self.extra.is_empty() {
            s.push('\n');
            s.push_str(&self.extra);
        }
        s
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A running pullgate; drop kills and reaps it.
#[derive(Debug)]
pub struct Pullgate {
    process: ChildProcess,
    socket: PathBuf,
    config: PathBuf,
}

impl Pullgate {
    /// Writes `config_toml` to `<dir>/pullgate.toml`, starts
    /// `pullgate serve --config <that file>` with its output in
    /// `<dir>/pullgate.log`, and waits until the socket named by
    /// `server.socket` accepts connections.
    ///
    /// `RUST_LOG` defaults to `info` when unset.
    ///
    /// # Errors
    /// The config names no `server.socket`, the binary is missing, or the
    /// socket does not come up in time (the error carries the log's tail).
    pub async fn start(config_toml: &str, dir: &Path) -> Result<Self> {
        Self::start_binary(&binary_path(), config_toml, dir).await
    }

    /// [`Pullgate::start`] with an explicit binary.
    ///
    /// # Errors
    /// As [`Pullgate::start`].
    pub async fn start_binary(bin: &Path, config_toml: &str, dir: &Path) -> Result<Self> {
        Self::spawn(bin, config_toml, dir, None, &[]).await
    }

    /// [`Pullgate::start_binary`] with `env` set for the process.
    ///
    /// # Errors
    /// As [`Pullgate::start`].
    pub async fn start_binary_with_env(
        bin: &Path,
        config_toml: &str,
        dir: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        Self::spawn(bin, config_toml, dir, None, env).await
    }

    /// [`Pullgate::start`] with its open-file limit (soft and hard) set to
    /// `nofile`, through util-linux `prlimit`, which sets the limit and then
    /// executes pullgate in its own process (so [`Pullgate::pid`] is pullgate's).
    ///
    /// # Errors
    /// As [`Pullgate::start`], or `prlimit` is missing.
    pub async fn start_with_nofile(config_toml: &str, dir: &Path, nofile: u64) -> Result<Self> {
        Self::spawn(&binary_path(), config_toml, dir, Some(nofile), &[]).await
    }

    async fn spawn(
        bin: &Path,
        config_toml: &str,
        dir: &Path,
        nofile: Option<u64>,
        env: &[(String, String)],
    ) -> Result<Self> {
        let parsed: toml::Table = config_toml.parse().context("config is not TOML")?;
        let Some(socket) = parsed
            .get("server")
            .and_then(|s| s.get("socket"))
            .and_then(|s| s.as_str())
        else {
            bail!("config has no server.socket; tests must not use the default path");
        };
        let socket = PathBuf::from(socket);
        let config = dir.join("pullgate.toml");
        tokio::fs::write(&config, config_toml).await?;

        if !bin.exists() {
            bail!(
                "pullgate binary not found at {} (build it with `cargo build -p pullgate`, or set PULLGATE_BIN)",
                bin.display()
            );
        }
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve").arg("--config").arg(&config);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut process = ChildProcess::spawn("pullgate", &mut cmd, &dir.join("pullgate.log"))?;
        let probe = socket.clone();
        process
            .wait_ready(START_TIMEOUT, || {
                let socket = probe.clone();
                async move { tokio::net::UnixStream::connect(&socket).await.is_ok() }
            })
            .await?;
        Ok(Self {
            process,
            socket,
            config,
        })
    }

    /// [`Pullgate::start`] with [`PullgateConfig::to_toml`].
    ///
    /// # Errors
    /// As [`Pullgate::start`].
    pub async fn start_with(config: &PullgateConfig, dir: &Path) -> Result<Self> {
        Self::start_binary_with_env(&binary_path(), &config.to_toml(), dir, &config.env).await
    }

    /// The socket pullgate serves CRI on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The config file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The process id (to send signals, e.g. SIGHUP for a reload).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The last lines of pullgate's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Path of pullgate's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Waits until pullgate's log contains `needle` (at most 15 s).
    ///
    /// # Errors
    /// The log never said it; the error holds the log's last lines.
    pub async fn wait_for_log(&self, needle: &str) -> Result<()> {
        for _ in 0..150 {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.contains(needle) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("log never said {needle:?}:\n{}", self.log_tail())
    }

    /// Size of pullgate's log file so far, in bytes.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn log_bytes(&self) -> Result<u64> {
        Ok(std::fs::metadata(self.log_path())?.len())
    }

    /// A `kB` field of `/proc/<pid>/status`, e.g. `VmRSS` (resident now) or
    /// `VmHWM` (the peak resident size so far), in KiB.
    ///
    /// # Errors
    /// The process is gone or the field is missing.
    pub fn memory_kib(&self, field: &str) -> Result<u64> {
        status_kib(self.pid(), field)
    }
}

/// `GET /metrics` at `127.0.0.1:port`: the whole response, status line first.
///
/// # Errors
/// The endpoint cannot be reached or read, or answers other than 200.
pub async fn metrics_text(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    anyhow::ensure!(out.starts_with("HTTP/1.1 200"), "{out}");
    Ok(out)
}

/// The value of the sample `name` (with its labels, as exposed) on the
/// `/metrics` endpoint at `127.0.0.1:port`; 0 when it is not there.
///
/// # Errors
/// As [`metrics_text`].
pub async fn metric(port: u16, name: &str) -> Result<f64> {
    Ok(metrics_text(port)
        .await?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), in KiB.
///
/// # Errors
/// The process is gone or the field is missing.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The records of the audit log at `path` (`[audit] path`), once it holds
/// at least `n` or after 5 s: the writer flushes each record, but
/// asynchronously. A line that is not JSON comes back as `{"unparsable": line}`.
pub async fn audit_records(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({ "unparsable": l }))
            })
            .collect()
    };
    for _ in 0..50 {
        let lines = read();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    read()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml() {
        let mut c = PullgateConfig::in_dir(Path::new("/tmp/x \"y\""), Path::new("/run/c.sock"));
        c.plain_http = vec!["127.0.0.1:5000".to_owned()];
        c.hosts_dir = Some(PathBuf::from("/etc/containerd/certs.d"));
        c.extra = "[cache]\nallow_ttl_secs = 1\n".to_owned();
        let t: toml::Table = c.to_toml().parse().unwrap();
        assert_eq!(
            t["server"]["socket"].as_str(),
            Some("/tmp/x \"y\"/pullgate.sock")
        );
        assert_eq!(t["server"]["upstream"].as_str(), Some("/run/c.sock"));
        assert_eq!(
            t["trust"]["store"].as_str(),
            Some("/tmp/x \"y\"/truststore")
        );
        assert_eq!(
            t["registry"]["plain_http"][0].as_str(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            t["registry"]["hosts_dir"].as_str(),
            Some("/etc/containerd/certs.d")
        );
        assert_eq!(t["cache"]["allow_ttl_secs"].as_integer(), Some(1));
    }

    #[tokio::test]
    async fn early_exit_is_reported_with_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = PullgateConfig::in_dir(dir.path(), Path::new("/nonexistent.sock"));
        // `sh serve --config <file>` fails at once: sh cannot open "serve".
        let err = Pullgate::start_binary(Path::new("/bin/sh"), &config.to_toml(), dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("pullgate exited before it was ready"), "{err}");
        assert!(err.contains("serve"), "log tail missing: {err}");
    }

    #[tokio::test]
    async fn a_config_without_a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Pullgate::start_binary(Path::new("/bin/sh"), "[trust]\n", dir.path())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("server.socket"), "{err}");
    }
}
