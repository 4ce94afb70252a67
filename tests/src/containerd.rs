//! containerd 1.6 with its own root, state and sockets under a temp dir.
//!
//! Config: `version = 2`, CRI plugin on with the `native` snapshotter (no
//! mounts needed), the CRI streaming server on an ephemeral port (so several
//! instances can run at once), CNI directories inside the temp dir (it logs a
//! CNI error at start: there is no network config, and pulls do not need
//! one), and `registry.config_path` pointing at a `certs.d`-style dir with
//! one `<host:port>/hosts.toml` per plain-HTTP test registry. Snapshotters
//! and tracing plugins that are never used here are disabled.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::child::ChildProcess;
use crate::cri;

/// Where the Debian package installs the binary.
const DEFAULT_BIN: &str = "/usr/bin/containerd";

/// How long containerd may take to answer CRI `Version`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Plugins never used by the tests; disabling them trims start-up and log noise.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// A running containerd; drop kills and reaps it and removes its temp dir.
#[derive(Debug)]
pub struct Containerd {
    // Field order matters: the process dies before its directory is removed.
    process: ChildProcess,
    socket: PathBuf,
    hosts_dir: PathBuf,
    config: PathBuf,
    /// Starts so far (for the log file of the next one).
    starts: u32,
    dir: tempfile::TempDir,
}

/// Static credentials containerd uses for one registry host.
#[derive(Clone)]
pub struct RegistryLogin {
    /// `host:port`.
    pub host: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("host", &self.host)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// `hosts.toml` for a plain-HTTP registry at `host` (`host:port`).
pub fn hosts_toml(host: &str) -> String {
    format!(
        "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

impl Containerd {
    /// Starts containerd able to pull from each of `registries` (`host:port`,
    /// plain HTTP) and waits until its CRI `Version` answers.
    ///
    /// The binary is `$CONTAINERD_BIN`, else `/usr/bin/containerd`. Must run
    /// as root.
    ///
    /// # Errors
    /// The binary is missing, or containerd does not answer in time (the
    /// error carries its log's tail).
    pub async fn start<S: AsRef<str>>(registries: &[S]) -> Result<Self> {
        Self::start_with_logins(registries, &[]).await
    }

    /// [`Containerd::start`], with static credentials per registry host
    /// (the CRI plugin's `registry.configs."<host>".auth`, which containerd
    /// 1.6 uses, with `config_path` set, for pulls that carry no
    /// `AuthConfig`): what a node logged in to a private registry has.
    ///
    /// # Errors
    /// As [`Containerd::start`].
    pub async fn start_with_logins<S: AsRef<str>>(
        registries: &[S],
        logins: &[RegistryLogin],
    ) -> Result<Self> {
        Self::start_with(registries, logins, None).await
    }

    /// [`Containerd::start_with_logins`], with the CRI plugin's
    /// `sandbox_image` set to `sandbox_image` when given (else containerd's
    /// default, `registry.k8s.io/pause:…`, which the tests cannot reach).
    ///
    /// # Errors
    /// As [`Containerd::start`].
    pub async fn start_with<S: AsRef<str>>(
        registries: &[S],
        logins: &[RegistryLogin],
        sandbox_image: Option<&str>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pullgate-ctrd-")
            .tempdir()
            .context("creating containerd temp dir")?;
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let hosts_dir = d.join("certs.d");
        for sub in ["root", "state", "opt", "cni/conf", "cni/bin", "certs.d"] {
            tokio::fs::create_dir_all(d.join(sub)).await?;
        }
        for host in registries {
            write_hosts(&hosts_dir, host.as_ref()).await?;
        }
        let disabled = DISABLED_PLUGINS
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{hosts}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            socket = socket.display(),
            opt = d.join("opt").display(),
            cni_bin = d.join("cni/bin").display(),
            cni_conf = d.join("cni/conf").display(),
            hosts = hosts_dir.display(),
        );
        let mut config = config;
        if let Some(image) = sandbox_image {
            config = config.replace(
                "  enable_selinux = false\n",
                &format!(
                    "  enable_selinux = false\n  sandbox_image = {}\n",
                    toml_string(image)
                ),
            );
        }
        for login in logins {
            config.push_str(&format!(
                "\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.{}.auth]\n  username = {}\n  password = {}\n",
                toml_string(&login.host),
                toml_string(&login.username),
                toml_string(&login.password),
            ));
        }
        let config_path = d.join("config.toml");
        tokio::fs::write(&config_path, config).await?;
        let process = spawn(&config_path, &socket, &d.join("containerd.log")).await?;
        Ok(Self {
            process,
            socket,
            hosts_dir,
            config: config_path,
            starts: 1,
            dir,
        })
    }

    /// Kills containerd (SIGKILL), as a crash would, and reaps it. Its
    /// root, state and config stay for [`Containerd::restart`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts containerd again with the same config, root and state (so the
    /// images it held are there), logging to `containerd-<n>.log`, and waits
    /// until its CRI `Version` answers. Kills the running one first, if any.
    ///
    /// # Errors
    /// containerd does not answer in time.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.starts += 1;
        let log = self.dir().join(format!("containerd-{}.log", self.starts));
        self.process = spawn(&self.config, &self.socket, &log).await?;
        Ok(())
    }

    /// containerd's gRPC socket (CRI and native API).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The registry `config_path` (what pullgate's `registry.hosts_dir` may name).
    pub fn hosts_dir(&self) -> &Path {
        &self.hosts_dir
    }

    /// The temp dir holding config, root, state and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Lets containerd pull from `host` (`host:port`, plain HTTP) too.
    /// containerd reads `hosts.toml` on each pull, so no restart is needed.
    ///
    /// # Errors
    /// The file cannot be written.
    pub async fn add_registry(&self, host: &str) -> Result<()> {
        write_hosts(&self.hosts_dir, host).await
    }
}

/// Starts containerd with `config` and waits until CRI `Version` answers on `socket`.
async fn spawn(config: &Path, socket: &Path, log: &Path) -> Result<ChildProcess> {
    let bin = std::env::var("CONTAINERD_BIN").unwrap_or_else(|_| DEFAULT_BIN.to_owned());
    let mut process = ChildProcess::spawn(
        "containerd",
        Command::new(&bin).arg("--config").arg(config),
        log,
    )?;
    let probe_socket = socket.to_owned();
    process
        .wait_ready(START_TIMEOUT, || {
            let socket = probe_socket.clone();
            async move {
                match cri::connect(&socket).await {
                    Ok(ch) => cri::version(&ch).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await?;
    Ok(process)
}

async fn write_hosts(hosts_dir: &Path, host: &str) -> Result<()> {
    let dir = hosts_dir.join(host);
    tokio::fs::create_dir_all(&dir).await?;
    tokio::fs::write(dir.join("hosts.toml"), hosts_toml(host))
        .await
        .with_context(|| format!("writing hosts.toml for {host}"))
}
