//! containerd: its socket, and what its configuration lets past the image verifier.
//!
//! - The socket (`[server] upstream`) must be a socket owned by root, not
//!   writable by others, nor by a group other than root (containerd makes it
//!   root:root 0660): whoever can write it pulls and runs without pullgate.
//! - containerd 2.x calls its image verifiers (the
//!   `io.containerd.image-verifier.v1.bindir` plugin) only for pulls through
//!   its transfer service. The CRI plugin pulls locally instead, calling no
//!   verifier, with `use_local_image_pull = true`, and containerd 2.1 turns
//!   that on by itself when the CRI image config holds a setting the transfer
//!   service does not support (`disable_snapshot_annotations = false`,
//!   `discard_unpacked_layers`, registry `mirrors`/`configs`/`auths`,
//!   `max_concurrent_downloads` other than 3, `image_pull_with_sync_fs`).
//!   Those are reported when the verifier plugin is configured.
//! - containerd runs every executable in the plugin's `bin_dir` and allows
//!   the pull when there is none: a `bin_dir` without pullgate fails open.
//!   The plugin can also be listed in `disabled_plugins`.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use super::Check;

/// containerd's image verifier plugin.
pub(crate) const BINDIR_PLUGIN: &str = "io.containerd.image-verifier.v1.bindir";
/// Largest containerd configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Most `bin_dir` entries looked at.
const MAX_BINDIR_ENTRIES: usize = 1024;

/// Judges containerd's socket: root-owned, not group/other writable. Blocking.
pub(crate) fn socket_check(path: &Path) -> Check {
    const NAME: &str = "containerd.socket";
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot stat containerd's socket {}: {e}", path.display()),
                "start containerd, or set [server] upstream to its socket",
            )
        }
    };
    if !meta.file_type().is_socket() {
        return Check::fail(
            NAME,
            format!("{} is not a socket", path.display()),
            "set [server] upstream to containerd's socket",
        );
    }
    let mode = meta.mode() & 0o7777;
    // containerd makes it root:root 0660; a group other than root that can
    // write it is as open as others writing it.
    if meta.uid() != 0 || mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != 0) {
        return Check::fail(
            NAME,
            format!(
                "{} is owned by {}:{} with mode {mode:04o}: whoever can write it pulls and runs images without pullgate",
                path.display(),
                meta.uid(),
                meta.gid()
            ),
            "keep containerd's socket root-owned and not group/other writable ([grpc] uid/gid in containerd's config; do not add users to its group)",
        );
    }
    Check::ok(
        NAME,
        format!(
            "{} owned by root:{}, mode {mode:04o}",
            path.display(),
            meta.gid()
        ),
    )
}

/// What containerd's configuration says about the image verifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    /// The verifier plugin's `bin_dir`, when the plugin is configured.
    pub(crate) bin_dir: Option<PathBuf>,
    /// The verifier plugin is in `disabled_plugins`.
    pub(crate) verifier_disabled: bool,
    /// Settings that make the CRI plugin pull locally, past the verifier (dotted key paths).
    pub(crate) local_pull: Vec<String>,
}

/// Reads containerd's configuration. Pure.
///
/// # Errors
/// When the text is not TOML.
pub(crate) fn inspect(text: &str) -> Result<Findings, toml::de::Error> {
    let doc: toml::Table = toml::from_str(text)?;
    let mut findings = Findings::default();
    if let Some(toml::Value::Array(disabled)) = doc.get("disabled_plugins") {
        findings.verifier_disabled = disabled.iter().any(|v| v.as_str() == Some(BINDIR_PLUGIN));
    }
    let Some(toml::Value::Table(plugins)) = doc.get("plugins") else {
        return Ok(findings);
    };
    if let Some(toml::Value::Table(bindir)) = plugins.get(BINDIR_PLUGIN) {
        findings.bin_dir = Some(
            bindir
                .get("bin_dir")
                .and_then(toml::Value::as_str)
                .map_or_else(
                    || PathBuf::from("/opt/containerd/image-verifier/bin"),
                    PathBuf::from,
                ),
        );
    }
    for (name, value) in plugins {
        if name.contains("cri") {
            if let toml::Value::Table(t) = value {
                local_pull_settings(&format!("plugins.{name:?}"), t, &mut findings.local_pull);
            }
        }
    }
    Ok(findings)
}

/// Collects, under a CRI plugin's table, the settings that make it pull locally.
fn local_pull_settings(at: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = format!("{at}.{key}");
        let hit = match (key.as_str(), value) {
            ("use_local_image_pull", toml::Value::Boolean(true))
            | ("disable_snapshot_annotations", toml::Value::Boolean(false))
            | ("discard_unpacked_layers", toml::Value::Boolean(true))
            | ("image_pull_with_sync_fs", toml::Value::Boolean(true)) => true,
            ("max_concurrent_downloads", toml::Value::Integer(n)) => *n != 3,
            ("mirrors" | "configs" | "auths", toml::Value::Table(t)) => !t.is_empty(),
            _ => false,
        };
        if hit {
            out.push(format!("{path} = {value}"));
        } else if let toml::Value::Table(t) = value {
            local_pull_settings(&path, t, out);
        }
    }
}

/// Whether `bin_dir` holds pullgate: an entry named `pullgate`, or a
/// symlink to a file named so. Blocking.
fn bin_dir_holds_pullgate(bin_dir: &Path) -> Result<bool, std::io::Error> {
    Ok(std::fs::read_dir(bin_dir)?
        .take(MAX_BINDIR_ENTRIES)
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name() == "pullgate"
                || e.path()
                    .canonicalize()
                    .is_ok_and(|p| p.file_name().is_some_and(|n| n == "pullgate"))
        }))
}

/// The checks of containerd: its socket, and its configuration at `config`
/// (absent is fine). Blocking.
pub(crate) fn checks(socket: &Path, config: &Path) -> Vec<Check> {
    const NAME: &str = "containerd.image_verifier";
    let mut checks = vec![socket_check(socket)];
    let text = match std::fs::metadata(config) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            checks.push(Check::ok(
                NAME,
                format!("no {}: containerd's defaults, no image verifier configured; the CRI proxy is the gate", config.display()),
            ));
            return checks;
        }
        Ok(m) if m.len() > MAX_CONFIG_BYTES => Err(format!("larger than {MAX_CONFIG_BYTES} bytes")),
        _ => std::fs::read_to_string(config).map_err(|e| e.to_string()),
    };
    let findings = match text.map(|t| inspect(&t).map_err(|e| e.to_string())) {
        Ok(Ok(f)) => f,
        Ok(Err(why)) | Err(why) => {
            checks.push(Check::warn(
                NAME,
                format!("cannot read {}: {why}", config.display()),
                "pass containerd's configuration file with --containerd-config",
            ));
            return checks;
        }
    };
    checks.extend(judge(&findings, bin_dir_holds_pullgate));
    checks
}

/// Judges the findings; `holds_pullgate` looks in `bin_dir`.
pub(crate) fn judge(
    findings: &Findings,
    holds_pullgate: impl Fn(&Path) -> Result<bool, std::io::Error>,
) -> Vec<Check> {
    const NAME: &str = "containerd.image_verifier";
    let Some(bin_dir) = &findings.bin_dir else {
        return vec![Check::ok(
            NAME,
            "no image verifier plugin configured: the CRI proxy is the gate (pulls by ctr or nerdctl are not verified)",
        )];
    };
    let mut checks = Vec::new();
    if findings.verifier_disabled {
        checks.push(Check::warn(
            NAME,
            format!("{BINDIR_PLUGIN} is in disabled_plugins: containerd calls no image verifier"),
            format!("remove {BINDIR_PLUGIN} from disabled_plugins and restart containerd"),
        ));
    }
    match holds_pullgate(bin_dir) {
        Ok(true) => checks.push(Check::ok(
            NAME,
            format!("bin_dir {} holds pullgate", bin_dir.display()),
        )),
        Ok(false) => checks.push(Check::warn(
            NAME,
            format!("bin_dir {} holds no pullgate: containerd allows every pull when no verifier is there (fails open)", bin_dir.display()),
            format!("ln -s /usr/bin/pullgate {}/pullgate", bin_dir.display()),
        )),
        Err(e) => checks.push(Check::warn(
            NAME,
            format!("bin_dir {}: {e}: containerd runs no verifier (fails open)", bin_dir.display()),
            format!("mkdir -p {0} && ln -s /usr/bin/pullgate {0}/pullgate", bin_dir.display()),
        )),
    }
    if !findings.local_pull.is_empty() {
        checks.push(Check::warn(
            "containerd.local_pull",
            format!(
                "the CRI plugin pulls locally, calling no image verifier, because of: {}",
                findings.local_pull.join(", ")
            ),
            "keep the kubelet's image endpoint on pullgate's socket (the CRI proxy verifies those pulls either way); to have the verifier see CRI pulls too, drop these settings (registry mirrors go in config_path hosts.toml files) and restart containerd",
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn finds_the_verifier_and_local_pull_settings() {
        let text = r#"
version = 3
disabled_plugins = ["io.containerd.image-verifier.v1.bindir"]
[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "/opt/v"
[plugins."io.containerd.cri.v1.images"]
  use_local_image_pull = true
  max_concurrent_downloads = 3
  disable_snapshot_annotations = true
[plugins."io.containerd.cri.v1.images".registry.mirrors."docker.io"]
  endpoint = ["https://mirror.example"]
[plugins."io.containerd.grpc.v1.cri".containerd]
  discard_unpacked_layers = true
"#;
        let f = inspect(text).unwrap();
        assert_eq!(f.bin_dir.as_deref(), Some(Path::new("/opt/v")));
        assert!(f.verifier_disabled);
        assert_eq!(f.local_pull.len(), 3, "{:?}", f.local_pull);
        assert!(f
            .local_pull
            .iter()
            .any(|s| s.contains("use_local_image_pull")));
        assert!(f.local_pull.iter().any(|s| s.contains("registry.mirrors")));
        assert!(f
            .local_pull
            .iter()
            .any(|s| s.contains("discard_unpacked_layers")));
        let checks = judge(&f, |_| Ok(true));
        assert_eq!(
            checks.iter().map(|c| c.status).collect::<Vec<_>>(),
            [Status::Warn, Status::Ok, Status::Warn]
        );
        // Nothing configured: nothing to report but that.
        let f = inspect("version = 3\n").unwrap();
        assert_eq!(f, Findings::default());
        assert_eq!(judge(&f, |_| Ok(false))[0].status, Status::Ok);
        assert!(inspect("not toml [").is_err());
    }

    #[test]
    fn an_empty_bin_dir_fails_open_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = Findings {
            bin_dir: Some(dir.path().to_owned()),
            ..Findings::default()
        };
        let c = judge(&f, bin_dir_holds_pullgate);
        assert_eq!(c[0].status, Status::Warn);
        assert!(c[0].detail.contains("fails open"), "{}", c[0].detail);
        let target = dir.path().join("bin");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("pullgate"), "").unwrap();
        let verifiers = dir.path().join("verifiers");
        std::fs::create_dir(&verifiers).unwrap();
        std::os::unix::fs::symlink(target.join("pullgate"), verifiers.join("00-sign")).unwrap();
        let f = Findings {
            bin_dir: Some(verifiers),
            ..Findings::default()
        };
        assert_eq!(judge(&f, bin_dir_holds_pullgate)[0].status, Status::Ok);
    }

    #[test]
    fn a_socket_must_be_root_owned_and_not_writable_by_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        let root = rustix::process::geteuid().is_root();
        let check = socket_check(&path);
        assert_eq!(
            check.status,
            if root { Status::Ok } else { Status::Fail },
            "{check:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(socket_check(&path).status, Status::Fail);
        assert_eq!(socket_check(&dir.path().join("none")).status, Status::Fail);
        assert_eq!(socket_check(dir.path()).status, Status::Fail);
    }
}
