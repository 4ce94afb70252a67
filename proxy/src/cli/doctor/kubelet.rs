//! Is the kubelet wired to pullgate?
//!
//! The kubelet takes its CRI endpoints from its command line
//! (`--image-service-endpoint`, `--container-runtime-endpoint`), else from
//! its configuration file (`imageServiceEndpoint`, `containerRuntimeEndpoint`;
//! the file is the one `--config` names); flags win over the file. The
//! image service defaults to the runtime endpoint, and that to containerd's
//! socket. The running kubelet is found by its `argv[0]` (`kubelet`, any
//! directory) under `/proc/<pid>/cmdline`.
//!
//! The kubelet file is YAML, but both keys are top-level scalars: this module
//! reads only `key: value` lines that start in column 0 (comments, quotes and
//! `---` handled), which is all it needs; anything nested is ignored. A
//! document that writes these keys in flow style (`{imageServiceEndpoint: …}`)
//! is not understood and reads as "not set".

use std::path::{Path, PathBuf};

use super::Check;

/// The kubelet configuration file's key for the image service.
pub(crate) const IMAGE_KEY: &str = "imageServiceEndpoint";
/// The kubelet configuration file's key for the runtime service.
pub(crate) const RUNTIME_KEY: &str = "containerRuntimeEndpoint";
const IMAGE_FLAG: &str = "--image-service-endpoint";
const RUNTIME_FLAG: &str = "--container-runtime-endpoint";
const CONFIG_FLAG: &str = "--config";
/// The kubelet's runtime endpoint when neither its flags nor its file set one.
const DEFAULT_RUNTIME: &str = "unix:///run/containerd/containerd.sock";
/// Largest `cmdline` or kubelet configuration file read.
const MAX_READ_BYTES: u64 = 1 << 20;
/// Most `/proc` entries looked at.
const MAX_PROC_ENTRIES: usize = 1 << 20;

const TRAP: &str = "flags on the kubelet's command line win over its configuration file. On a \
    kubeadm node the kubelet's flags come from /var/lib/kubelet/kubeadm-flags.env and \
    /etc/default/kubelet, read with EnvironmentFile=, and a variable from an EnvironmentFile= \
    overrides one set with Environment= in a drop-in: a drop-in setting \
    Environment=\"KUBELET_EXTRA_ARGS=--image-service-endpoint=…\" is silently ignored when \
    /etc/default/kubelet defines KUBELET_EXTRA_ARGS, and nodes that are not kubeadm-style never \
    read that variable. Set the endpoints in the kubelet configuration file instead and remove \
    the flags";

/// The endpoint flags and `--config` of one kubelet command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    /// `--image-service-endpoint`.
    pub(crate) image: Option<String>,
    /// `--container-runtime-endpoint`.
    pub(crate) runtime: Option<String>,
    /// `--config`.
    pub(crate) config: Option<PathBuf>,
}

/// The flags of a NUL-separated command line, or `None` when `argv[0]` is
/// not `kubelet` (in any directory).
pub(crate) fn parse_cmdline(cmdline: &[u8]) -> Option<Flags> {
    let mut args = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let argv0 = args.next()?;
    if Path::new(&argv0).file_name()? != "kubelet" {
        return None;
    }
    let args: Vec<String> = args.collect();
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg, None),
        };
        // kubelet flags are accepted with one dash or two (pflag).
        if !name.starts_with('-') {
            i += 1;
            continue;
        }
        let name = format!("--{}", name.trim_start_matches('-'));
        let takes = [IMAGE_FLAG, RUNTIME_FLAG, CONFIG_FLAG].contains(&name.as_str());
        if takes {
            let value = match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    args.get(i).cloned()
                }
            };
            match name.as_str() {
                IMAGE_FLAG => flags.image = value,
                RUNTIME_FLAG => flags.runtime = value,
                _ => flags.config = value.map(PathBuf::from),
            }
        }
        i += 1;
    }
    Some(flags)
}

/// The kubelet processes under `proc_root`, by pid, with their flags.
/// Blocking (reads `/proc`).
pub(crate) fn find_kubelets(proc_root: &Path) -> Vec<(u32, Flags)> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, Flags)> = entries
        .take(MAX_PROC_ENTRIES)
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = read_capped(&e.path().join("cmdline"))?;
            Some((pid, parse_cmdline(&cmdline)?))
        })
        .collect();
    found.sort_by_key(|(pid, _)| *pid);
    found
}

fn read_capped(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_READ_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// The value of a top-level scalar `key` in a YAML document (see the module
/// docs for what is understood); the last one wins, as in a YAML mapping
/// with a repeated key the kubelet would refuse anyway.
pub(crate) fn top_level_scalar(yaml: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in yaml.lines() {
        if line.starts_with(|c: char| c.is_whitespace() || c == '#') {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.trim_matches(|c| c == '"' || c == '\'') != key {
            continue;
        }
        let v = v.trim();
        let v = if let Some(rest) = v.strip_prefix('"') {
            rest.split_once('"').map_or(rest, |(s, _)| s)
        } else if let Some(rest) = v.strip_prefix('\'') {
            rest.split_once('\'').map_or(rest, |(s, _)| s)
        } else {
            v.split_once(" #").map_or(v, |(s, _)| s).trim()
        };
        found = (!v.is_empty()).then(|| v.to_owned());
    }
    found
}

/// The socket path a CRI endpoint names (`unix:///path` or a bare `/path`);
/// `None` for other schemes.
pub(crate) fn endpoint_path(endpoint: &str) -> Option<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    path.starts_with('/').then(|| PathBuf::from(path))
}

fn same_socket(endpoint: &str, socket: &Path) -> bool {
    let Some(path) = endpoint_path(endpoint) else {
        return false;
    };
    path == socket
        || matches!(
            (path.canonicalize(), socket.canonicalize()),
            (Ok(a), Ok(b)) if a == b
        )
}

/// An endpoint the kubelet uses and where that came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Effective {
    endpoint: String,
    from: String,
}

/// The two endpoint keys of a kubelet configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileKeys {
    /// `imageServiceEndpoint`.
    pub(crate) image: Option<String>,
    /// `containerRuntimeEndpoint`.
    pub(crate) runtime: Option<String>,
}

/// What the kubelet was found to use: its process (if any) and its file (if read).
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// The kubelet process and its flags.
    pub(crate) process: Option<(u32, Flags)>,
    /// The kubelet configuration file and its two keys, or why it could not be read.
    pub(crate) file: Option<(PathBuf, Result<FileKeys, String>)>,
}

/// Judges the wiring: the image service must be pullgate's `socket` (fail
/// otherwise); the runtime service should be (warn otherwise). Pure.
pub(crate) fn judge(socket: &Path, observed: &Observed) -> Vec<Check> {
    let mut checks = Vec::new();
    let flags = observed.process.as_ref().map(|(_, f)| f);
    let pid = observed.process.as_ref().map(|(p, _)| *p);
    match pid {
        Some(pid) => checks.push(Check::ok("kubelet.process", format!("kubelet pid {pid}"))),
        None => checks.push(Check::warn(
            "kubelet.process",
            "no process named kubelet found: only its configuration file was checked",
            "run doctor on a node whose kubelet is running (as root, to read /proc)",
        )),
    }
    let (file_image, file_runtime, file_name) = match &observed.file {
        Some((path, Ok(keys))) => {
            checks.push(Check::ok(
                "kubelet.config_file",
                format!("read {}", path.display()),
            ));
            (
                keys.image.clone(),
                keys.runtime.clone(),
                path.display().to_string(),
            )
        }
        Some((path, Err(why))) => {
            checks.push(Check::warn(
                "kubelet.config_file",
                format!("cannot read {}: {why}", path.display()),
                "pass the kubelet's configuration file with --kubelet-config",
            ));
            (None, None, path.display().to_string())
        }
        None => (None, None, String::new()),
    };
    let from_flag = |v: &Option<String>, flag: &str| {
        v.clone().map(|endpoint| Effective {
            endpoint,
            from: format!("{flag} on kubelet pid {}", pid.unwrap_or_default()),
        })
    };
    let from_file = |v: &Option<String>, key: &str| {
        v.clone().map(|endpoint| Effective {
            endpoint,
            from: format!("{key} in {file_name}"),
        })
    };
    let runtime = from_flag(&flags.and_then(|f| f.runtime.clone()), RUNTIME_FLAG)
        .or_else(|| from_file(&file_runtime, RUNTIME_KEY))
        .unwrap_or_else(|| Effective {
            endpoint: DEFAULT_RUNTIME.to_owned(),
            from: "the kubelet's default".to_owned(),
        });
    let image = from_flag(&flags.and_then(|f| f.image.clone()), IMAGE_FLAG)
        .or_else(|| from_file(&file_image, IMAGE_KEY))
        .unwrap_or_else(|| Effective {
            endpoint: runtime.endpoint.clone(),
            from: format!("{}, as the runtime endpoint", runtime.from),
        });
    let want = format!("unix://{}", socket.display());
    let overridden = |key_value: &Option<String>, flag_value: Option<String>| matches!((key_value, flag_value), (Some(k), Some(f)) if same_socket(k, socket) && !same_socket(&f, socket));
    if same_socket(&image.endpoint, socket) {
        checks.push(Check::ok(
            "kubelet.image_service",
            format!(
                "{} (from {}) is pullgate's socket",
                image.endpoint, image.from
            ),
        ));
    } else {
        let note = if overridden(&file_image, flags.and_then(|f| f.image.clone())) {
            "; the configuration file names pullgate but the command-line flag overrides it"
        } else {
            ""
        };
        checks.push(Check::fail(
            "kubelet.image_service",
            format!(
                "the kubelet pulls through {} (from {}), not pullgate's socket {}: nothing verifies its pulls{note}",
                image.endpoint, image.from, socket.display()
            ),
            format!(
                "set `{IMAGE_KEY}: {want}` and `{RUNTIME_KEY}: {want}` in the kubelet configuration file and restart the kubelet; {TRAP}"
            ),
        ));
    }
    if same_socket(&runtime.endpoint, socket) {
        checks.push(Check::ok(
            "kubelet.runtime_service",
            format!(
                "{} (from {}) is pullgate's socket",
                runtime.endpoint, runtime.from
            ),
        ));
    } else {
        checks.push(Check::warn(
            "kubelet.runtime_service",
            format!(
                "the kubelet's runtime service is {} (from {}), not pullgate's socket: nothing gates what runs (an image already in containerd starts without a verdict)",
                runtime.endpoint, runtime.from
            ),
            format!("set `{RUNTIME_KEY}: {want}` in the kubelet configuration file, remove any {RUNTIME_FLAG} flag (flags win over the file) and restart the kubelet"),
        ));
    }
    checks
}

/// Finds the kubelet, reads its configuration file (the one its `--config`
/// names, else `default_file`) and judges the wiring. Blocking.
pub(crate) fn checks(socket: &Path, default_file: &Path, proc_root: &Path) -> Vec<Check> {
    let process = find_kubelets(proc_root).into_iter().next();
    let file = process
        .as_ref()
        .and_then(|(_, f)| f.config.clone())
        .unwrap_or_else(|| default_file.to_path_buf());
    let read = match std::fs::metadata(&file) {
        Ok(m) if m.len() > MAX_READ_BYTES => Err(format!("larger than {MAX_READ_BYTES} bytes")),
        _ => std::fs::read_to_string(&file)
            .map(|text| FileKeys {
                image: top_level_scalar(&text, IMAGE_KEY),
                runtime: top_level_scalar(&text, RUNTIME_KEY),
            })
            .map_err(|e| e.to_string()),
    };
    judge(
        socket,
        &Observed {
            process,
            file: Some((file, read)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn reads_top_level_scalars_only() {
        let yaml = "---\n# imageServiceEndpoint: unix:///commented\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                    nested:\n  imageServiceEndpoint: unix:///nested\n\
                    imageServiceEndpoint: \"unix:///run/pullgate/pullgate.sock\"\n\
                    containerRuntimeEndpoint: unix:///run/containerd/containerd.sock # the runtime\n";
        assert_eq!(
            top_level_scalar(yaml, IMAGE_KEY).as_deref(),
            Some("unix:///run/pullgate/pullgate.sock")
        );
        assert_eq!(
            top_level_scalar(yaml, RUNTIME_KEY).as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(top_level_scalar("kind: x\n", IMAGE_KEY), None);
        assert_eq!(
            top_level_scalar("imageServiceEndpoint: ''\n", IMAGE_KEY),
            None
        );
        assert_eq!(
            top_level_scalar("'imageServiceEndpoint': 'unix:///a'\n", IMAGE_KEY).as_deref(),
            Some("unix:///a")
        );
    }

    #[test]
    fn the_shipped_kubelet_snippet_wires_both_services() {
        let snippet = include_str!("../../../../systemd/kubelet-config.pullgate.yaml");
        let sock = Path::new("/run/pullgate/pullgate.sock");
        let c = judge(
            sock,
            &file(
                top_level_scalar(snippet, IMAGE_KEY).as_deref(),
                top_level_scalar(snippet, RUNTIME_KEY).as_deref(),
            ),
        );
        assert_eq!(status(&c, "kubelet.image_service"), Status::Ok);
        assert_eq!(status(&c, "kubelet.runtime_service"), Status::Ok);
    }

    #[test]
    fn parses_kubelet_command_lines() {
        let line = |args: &[&str]| args.join("\0").into_bytes();
        assert_eq!(parse_cmdline(&line(&["/usr/bin/sleep", "60"])), None);
        assert_eq!(parse_cmdline(b""), None);
        let flags = parse_cmdline(&line(&[
            "/usr/bin/kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--image-service-endpoint",
            "unix:///run/pullgate/pullgate.sock",
            "-container-runtime-endpoint=unix:///run/containerd/containerd.sock",
            "--v=2",
        ]))
        .unwrap();
        assert_eq!(
            flags,
            Flags {
                image: Some("unix:///run/pullgate/pullgate.sock".into()),
                runtime: Some("unix:///run/containerd/containerd.sock".into()),
                config: Some("/var/lib/kubelet/config.yaml".into()),
            }
        );
        // A flag with its value missing at the end of the line.
        assert_eq!(
            parse_cmdline(&line(&["kubelet", "--image-service-endpoint"])).unwrap(),
            Flags::default()
        );
    }

    fn file(image: Option<&str>, runtime: Option<&str>) -> Observed {
        Observed {
            process: None,
            file: Some((
                "/k.yaml".into(),
                Ok(FileKeys {
                    image: image.map(Into::into),
                    runtime: runtime.map(Into::into),
                }),
            )),
        }
    }

    fn status(checks: &[Check], name: &str) -> Status {
        checks.iter().find(|c| c.name == name).unwrap().status
    }

    #[test]
    fn judges_the_wiring_with_flags_winning_over_the_file() {
        let sock = Path::new("/run/pullgate/pullgate.sock");
        let ours = "unix:///run/pullgate/pullgate.sock";
        // Nothing set: containerd's socket for both.
        let c = judge(sock, &file(None, None));
        assert_eq!(status(&c, "kubelet.image_service"), Status::Fail);
        assert_eq!(status(&c, "kubelet.runtime_service"), Status::Warn);
        // The image endpoint only: pulls are gated, runs are not.
        let c = judge(sock, &file(Some(ours), None));
        assert_eq!(status(&c, "kubelet.image_service"), Status::Ok);
        assert_eq!(status(&c, "kubelet.runtime_service"), Status::Warn);
        // The runtime endpoint only: the image service follows it.
        let c = judge(sock, &file(None, Some("/run/pullgate/pullgate.sock")));
        assert_eq!(status(&c, "kubelet.image_service"), Status::Ok);
        assert_eq!(status(&c, "kubelet.runtime_service"), Status::Ok);
        // A flag naming containerd overrides a file naming pullgate.
        let mut o = file(Some(ours), Some(ours));
        o.process = Some((
            7,
            Flags {
                image: Some("unix:///run/containerd/containerd.sock".into()),
                ..Flags::default()
            },
        ));
        let c = judge(sock, &o);
        let image = c
            .iter()
            .find(|c| c.name == "kubelet.image_service")
            .unwrap();
        assert_eq!(image.status, Status::Fail);
        assert!(
            image.detail.contains("command-line flag overrides"),
            "{}",
            image.detail
        );
        assert!(image.fix.as_deref().unwrap().contains("EnvironmentFile="));
        assert_eq!(status(&c, "kubelet.process"), Status::Ok);
        // A flag naming pullgate wins over a file that names nothing.
        o.file = Some(("/k.yaml".into(), Err("missing".into())));
        o.process = Some((
            7,
            Flags {
                image: Some(ours.into()),
                ..Flags::default()
            },
        ));
        let c = judge(sock, &o);
        assert_eq!(status(&c, "kubelet.image_service"), Status::Ok);
        assert_eq!(status(&c, "kubelet.config_file"), Status::Warn);
    }
}
