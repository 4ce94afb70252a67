//! Where a registry host is reached: containerd's `hosts.toml`, read once at
//! startup, so pullgate asks the same endpoints containerd will pull from.
//!
//! Input: `RegistryConfig::{plain_http, hosts_dir}`. Output: for each
//! registry host, the ordered [`Endpoint`]s to try (mirrors first, then the
//! `server`), each with its capabilities and TLS settings. Files are read
//! synchronously because this runs before the runtime serves requests.
//! Limits: a `hosts.toml` larger than [`MAX_HOSTS_FILE`] is refused.
//!
//! Format (containerd `docs/hosts.md`,
//! <https://github.com/containerd/containerd/blob/release/1.6/docs/hosts.md>):
//! `server = "https://…"`, then `[host."https://mirror"]` tables with
//! `capabilities = ["pull", "resolve", "push"]`, `skip_verify`, `ca` and
//! `override_path`. Hosts are tried in the order they appear in the file.
//! Keys pullgate does not use (`header`, `client`) are ignored. A `ca` file
//! replaces the system roots for that endpoint (containerd adds it to them);
//! a private registry's CA is what that setting is used for.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use http::uri::{Authority, Scheme};
use serde::Deserialize;

use super::error::Error;

/// Largest `hosts.toml` read.
pub(super) const MAX_HOSTS_FILE: u64 = 64 << 10;

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

/// Reads `<dir>/<host>/hosts.toml`, if there is one, into ordered endpoints.
///
/// # Errors
/// A file that exists but cannot be read, is too large, is not valid TOML,
/// or names a URL that is not `http(s)://host[:port][/path]`.
pub(super) fn endpoints_for(
    host: &str,
    hosts_dir: Option<&Path>,
    plain_http: &HashSet<String>,
) -> Result<Vec<Endpoint>, Error> {
    let default = Endpoint::default_for(host, plain_http)?;
    let Some(dir) = hosts_dir else {
        return Ok(vec![default]);
    };
    // containerd escapes ':' as-is in directory names (`127.0.0.1:5000`).
    let path = dir.join(host).join("hosts.toml");
    let text = match read_small(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(vec![default]),
        Err(e) => return Err(e),
    };
    parse_hosts_toml(&text, &path, default)
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
