//! Where a registry host is reached: containerd's `hosts.toml`, so pullgate
//! asks the same endpoints containerd will pull from.
//!
//! Input: `RegistryConfig::{plain_http, hosts_dir}`. Output: for each
//! registry host, the ordered [`Endpoint`]s to try (mirrors first, then the
//! `server`), each with its capabilities and TLS settings.
//!
//! The directory for a host is found as containerd finds it
//! (`core/remotes/docker/config/hosts.go`, `HostDirFromRoot` and
//! `hostPaths`): the first that exists of `<host>_<port>_` (the port's `:`
//! written `_…_`), `<host:port>` (or `<host>`), then `_default`, the
//! fallback for every host. A directory without `hosts.toml` means the
//! host's default endpoint. The whole directory is read into a
//! [`HostsDir`] (blocking; at startup and on the blocking pool at each
//! reload, see `crate::reload`), and a reload whose content hash is
//! unchanged keeps the table in force.
//! Limits: a `hosts.toml` larger than [`MAX_HOSTS_FILE`] is refused, and at
//! most [`MAX_HOST_DIRS`] directories are read.
//!
//! Format (containerd `docs/hosts.md`,
//! <https://github.com/containerd/containerd/blob/release/1.6/docs/hosts.md>):
//! `server = "https://…"`, then `[host."https://mirror"]` tables with
//! `capabilities = ["pull", "resolve", "push"]`, `skip_verify`, `ca` and
//! `override_path`. Hosts are tried in the order they appear in the file.
//! Keys pullgate does not use (`header`, `client`) are ignored. A `ca` file
//! replaces the system roots for that endpoint (containerd adds it to them);
//! a private registry's CA is what that setting is used for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use http::uri::{Authority, Scheme};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::error::Error;

/// Largest `hosts.toml` read.
pub(super) const MAX_HOSTS_FILE: u64 = 64 << 10;

/// Most host directories read from `hosts_dir`.
pub(super) const MAX_HOST_DIRS: usize = 4096;

/// containerd's fallback directory for every host.
const DEFAULT_HOST_DIR: &str = "_default";

/// The directories containerd looks in for `host`, in its order.
fn host_dirs(host: &str) -> Vec<String> {
    let mut dirs = Vec::with_capacity(3);
    // hostDirectory: ":port" → "_port_" (at the last ':', as containerd).
    if let Some(i) = host.rfind(':').filter(|&i| i > 0) {
        dirs.push(format!("{}_{}_", &host[..i], &host[i + 1..]));
    }
    dirs.push(host.to_owned());
    dirs.push(DEFAULT_HOST_DIR.to_owned());
    dirs
}

/// The contents of containerd's registry `config_path`: every host
/// directory, with its `hosts.toml` when it has one (validated).
#[derive(Debug, Default)]
pub(super) struct HostsDir {
    /// Directory name → (path of its `hosts.toml`, its text), `None` without one.
    dirs: HashMap<String, Option<(PathBuf, String)>>,
    /// Every TLS setting an endpoint names.
    tls: Vec<TlsRoots>,
    /// SHA-256 over the names, the files and the CA files they name.
    fingerprint: [u8; 32],
}

impl HostsDir {
    /// Reads `dir` (blocking). A `dir` that does not exist is empty, as containerd takes it.
    ///
    /// # Errors
    /// A directory or `hosts.toml` that cannot be read, is too large, or does not parse.
    pub(super) fn read(dir: Option<&Path>, plain_http: &HashSet<String>) -> Result<Self, Error> {
        let mut table = Self::default();
        let mut hash = Sha256::new();
        let Some(dir) = dir else {
            table.fingerprint = hash.finalize().into();
            return Ok(table);
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), "registry hosts_dir does not exist; using default endpoints");
                table.fingerprint = hash.finalize().into();
                return Ok(table);
            }
            Err(e) => return Err(Error::config(format!("{}: {e}", dir.display()))),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::config(format!("{}: {e}", dir.display())))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if entry.path().is_dir() {
                names.push(name);
            }
            if names.len() > MAX_HOST_DIRS {
                return Err(Error::config(format!(
                    "{}: more than {MAX_HOST_DIRS} host directories",
                    dir.display()
                )));
            }
        }
        names.sort();
        // Any valid host stands in for the server default while validating.
        let probe = Endpoint::default_for("localhost", plain_http)?;
        for name in names {
            let path = dir.join(&name).join("hosts.toml");
            hash.update(name.as_bytes());
            hash.update([0]);
            let file = read_small(&path)?;
            if let Some(text) = &file {
                hash.update(text.as_bytes());
                for ep in parse_hosts_toml(text, &path, probe.clone())? {
                    if let TlsRoots::Files(cas) = &ep.tls {
                        for ca in cas {
                            // A CA that cannot be read fails when its client is built.
                            if let Ok(bytes) = std::fs::read(ca) {
                                hash.update(&bytes);
                            }
                        }
                    }
                    if ep.tls != TlsRoots::System && !table.tls.contains(&ep.tls) {
                        table.tls.push(ep.tls);
                    }
                }
            }
            hash.update([0xff]);
            table.dirs.insert(name, file.map(|t| (path, t)));
        }
        table.fingerprint = hash.finalize().into();
        Ok(table)
    }

    /// The endpoints for `host`, from the first directory containerd would use.
    ///
    /// # Errors
    /// `host` is not a `host[:port]`.
    pub(super) fn endpoints(
        &self,
        host: &str,
        plain_http: &HashSet<String>,
    ) -> Result<Vec<Endpoint>, Error> {
        let default = Endpoint::default_for(host, plain_http)?;
        let found = host_dirs(host).into_iter().find_map(|d| self.dirs.get(&d));
        match found {
            Some(Some((path, text))) => parse_hosts_toml(text, path, default),
            Some(None) | None => Ok(vec![default]),
        }
    }

    /// The TLS settings other than the system roots that endpoints name.
    pub(super) fn tls_settings(&self) -> &[TlsRoots] {
        &self.tls
    }

    /// The content hash: equal for an unchanged directory.
    pub(super) fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

/// Docker Hub's API host: `docker.io` is a name, not a server (containerd does the same).
const DOCKER_HUB_DOMAIN: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// What an endpoint may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Capability {
    /// Tag → digest.
    Resolve,
    /// Fetch by digest (manifests, blobs, referrers).
    Pull,
}

/// How the TLS certificate of an endpoint is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum TlsRoots {
    /// The system's roots.
    System,
    /// Only these CA files (PEM).
    Files(Vec<PathBuf>),
    /// No check at all: hosts.toml `skip_verify = true`. Logged at startup.
    DangerousSkipVerify,
}

/// One place to send requests for a registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) scheme: Scheme,
    pub(super) authority: Authority,
    /// Path prefix before `<name>/…`, normally `/v2`.
    pub(super) base_path: String,
    pub(super) resolve: bool,
    pub(super) pull: bool,
    pub(super) tls: TlsRoots,
}

impl Endpoint {
    pub(super) fn can(&self, capability: Capability) -> bool {
        match capability {
            Capability::Resolve => self.resolve,
            Capability::Pull => self.pull,
        }
    }

    /// `scheme://authority`.
    pub(super) fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// The default endpoint of `host` when no hosts.toml says otherwise.
    pub(super) fn default_for(host: &str, plain_http: &HashSet<String>) -> Result<Self, Error> {
        let api = if host == DOCKER_HUB_DOMAIN {
            DOCKER_HUB_API
        } else {
            host
        };
        let scheme = if plain_http.contains(host) {
            Scheme::HTTP
        } else {
            Scheme::HTTPS
        };
        let authority: Authority = api
            .parse()
            .map_err(|_| Error::config(format!("registry host {host:?} is not a host[:port]")))?;
        Ok(Self {
            scheme,
            authority,
            base_path: "/v2".to_owned(),
            resolve: true,
            pull: true,
            tls: TlsRoots::System,
        })
    }
}

#[derive(Deserialize)]
struct HostsFile {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<OneOrMany>,
    #[serde(default)]
    override_path: Option<bool>,
    #[serde(default)]
    host: BTreeMap<String, toml::Spanned<HostEntry>>,
}

#[derive(Deserialize)]
struct HostEntry {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<OneOrMany>,
    #[serde(default)]
    override_path: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn read_small(path: &Path) -> Result<Option<String>, Error> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::config(format!("{}: {e}", path.display()))),
    };
    if meta.len() > MAX_HOSTS_FILE {
        return Err(Error::config(format!(
            "{}: larger than {MAX_HOSTS_FILE} bytes",
            path.display()
        )));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| Error::config(format!("{}: {e}", path.display())))
}

pub(super) fn parse_hosts_toml(
    text: &str,
    path: &Path,
    default: Endpoint,
) -> Result<Vec<Endpoint>, Error> {
    let bad = |what: String| Error::config(format!("{}: {what}", path.display()));
    let file: HostsFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut hosts: Vec<(usize, String, HostEntry)> = file
        .host
        .into_iter()
        .map(|(url, spanned)| (spanned.span().start, url, spanned.into_inner()))
        .collect();
    // toml tables are unordered; containerd tries hosts in file order.
    hosts.sort_by_key(|(start, _, _)| *start);
    let mut out = Vec::with_capacity(hosts.len() + 1);
    for (_, url, entry) in hosts {
        let (resolve, pull) = capabilities(entry.capabilities.as_deref());
        out.push(
            endpoint_from_url(
                &url,
                entry.override_path.unwrap_or(false),
                resolve,
                pull,
                tls_roots(entry.skip_verify, entry.ca, path),
            )
            .map_err(bad)?,
        );
    }
    let server = match file.server {
        Some(url) => {
            let (resolve, pull) = capabilities(file.capabilities.as_deref());
            endpoint_from_url(
                &url,
                file.override_path.unwrap_or(false),
                resolve,
                pull,
                tls_roots(file.skip_verify, file.ca, path),
            )
            .map_err(bad)?
        }
        None => default,
    };
    out.push(server);
    Ok(out)
}

/// containerd's default when `capabilities` is absent: pull, resolve and push.
fn capabilities(caps: Option<&[String]>) -> (bool, bool) {
    match caps {
        None => (true, true),
        Some(c) => (
            c.iter().any(|x| x == "resolve"),
            c.iter().any(|x| x == "pull"),
        ),
    }
}

fn tls_roots(skip_verify: Option<bool>, ca: Option<OneOrMany>, hosts_file: &Path) -> TlsRoots {
    if skip_verify == Some(true) {
        return TlsRoots::DangerousSkipVerify;
    }
    let base = hosts_file.parent().unwrap_or(Path::new("/"));
    match ca {
        None => TlsRoots::System,
        Some(OneOrMany::One(p)) => TlsRoots::Files(vec![base.join(p)]),
        Some(OneOrMany::Many(ps)) => {
            TlsRoots::Files(ps.into_iter().map(|p| base.join(p)).collect())
        }
    }
}

fn endpoint_from_url(
    url: &str,
    override_path: bool,
    resolve: bool,
    pull: bool,
    tls: TlsRoots,
) -> Result<Endpoint, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("bad URL {url:?}"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(format!("URL {url:?} is not http:// or https://")),
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("URL {url:?} has no host"))?;
    let path = uri.path().trim_end_matches('/');
    // containerd: "/v2" is appended to the path unless override_path is set.
    let base_path = if override_path || path.ends_with("/v2") {
        path.to_owned()
    } else {
        format!("{path}/v2")
    };
    Ok(Endpoint {
        scheme,
        authority,
        base_path,
        resolve,
        pull,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_in_file_order_then_server() {
        let text = r#"
server = "https://registry.example"

[host."https://zz-mirror.example/prefix"]
  capabilities = ["pull", "resolve"]
  skip_verify = true

[host."http://aa-mirror.example:5000"]
  capabilities = ["pull"]
  ca = "ca.pem"
"#;
        let default = Endpoint::default_for("registry.example", &HashSet::new()).unwrap();
        let eps = parse_hosts_toml(
            text,
            Path::new("/etc/hosts.d/registry.example/hosts.toml"),
            default,
        )
        .unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].authority.as_str(), "zz-mirror.example");
        assert_eq!(eps[0].base_path, "/prefix/v2");
        assert_eq!(eps[0].tls, TlsRoots::DangerousSkipVerify);
        assert_eq!(eps[1].scheme, Scheme::HTTP);
        assert!(eps[1].pull && !eps[1].resolve);
        assert_eq!(
            eps[1].tls,
            TlsRoots::Files(vec![PathBuf::from("/etc/hosts.d/registry.example/ca.pem")])
        );
        assert_eq!(eps[2].origin(), "https://registry.example");
        assert!(eps[2].resolve && eps[2].pull);
    }

    /// Issue 23, item 2: only `<dir>/<host:port>/hosts.toml` was read, once.
    #[test]
    fn directories_are_looked_up_in_containerds_order() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, mirror: Option<&str>| {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            if let Some(m) = mirror {
                std::fs::write(
                    dir.path().join(name).join("hosts.toml"),
                    format!("[host.\"http://{m}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
                )
                .unwrap();
            }
        };
        write("a.example_5000_", Some("underscored.example"));
        write("a.example:5000", Some("colon.example"));
        write("b.example:5000", Some("colon-b.example"));
        write("_default", Some("default.example"));
        write("c.example", None);
        let none = HashSet::new();
        let table = HostsDir::read(Some(dir.path()), &none).unwrap();
        let first = |host: &str| {
            let eps = table.endpoints(host, &none).unwrap();
            eps.iter().map(Endpoint::origin).collect::<Vec<_>>()
        };
        assert_eq!(
            first("a.example:5000"),
            ["http://underscored.example", "https://a.example:5000"]
        );
        assert_eq!(
            first("b.example:5000"),
            ["http://colon-b.example", "https://b.example:5000"]
        );
        // No directory of its own: `_default`, with the host itself as server.
        assert_eq!(
            first("d.example"),
            ["http://default.example", "https://d.example"]
        );
        // A directory without hosts.toml is the host's default endpoint.
        assert_eq!(first("c.example"), ["https://c.example"]);
        assert_eq!(
            host_dirs("[::1]:5000"),
            ["[::1]_5000_", "[::1]:5000", "_default"]
        );

        // A change is seen in the fingerprint; no change, none.
        let again = HostsDir::read(Some(dir.path()), &none).unwrap();
        assert_eq!(again.fingerprint(), table.fingerprint());
        write("_default", Some("other.example"));
        let changed = HostsDir::read(Some(dir.path()), &none).unwrap();
        assert_ne!(changed.fingerprint(), table.fingerprint());
        assert_eq!(
            changed.endpoints("d.example", &none).unwrap()[0].origin(),
            "http://other.example"
        );
        // No directory at all: defaults.
        let missing = HostsDir::read(Some(&dir.path().join("absent")), &none).unwrap();
        assert_eq!(
            missing.endpoints("d.example", &none).unwrap()[0].origin(),
            "https://d.example"
        );
    }

    #[test]
    fn docker_hub_and_plain_http_defaults() {
        let plain: HashSet<String> = ["127.0.0.1:5000".to_owned()].into();
        assert_eq!(
            Endpoint::default_for("docker.io", &plain).unwrap().origin(),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            Endpoint::default_for("127.0.0.1:5000", &plain)
                .unwrap()
                .origin(),
            "http://127.0.0.1:5000"
        );
        assert!(parse_hosts_toml(
            "server = \"ftp://x\"",
            Path::new("h"),
            Endpoint::default_for("x", &plain).unwrap()
        )
        .is_err());
    }
}
