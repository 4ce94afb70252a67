//! Image references and digests, parsed once at the boundary.
//!
//! Grammar from distribution/reference (the one containerd and the kubelet
//! use): `[domain/]path[:tag][@digest]`, where the first component is a
//! domain if it contains `.` or `:` or is `localhost`; otherwise the domain
//! is `docker.io` and a single-component path gets `library/` in front.
//!
//! # Canonical form
//!
//! One registry has many spellings, and trust policy scopes are matched as
//! exact strings, so every reference (and every scope, which parses through
//! [`Repository`]) is brought to one spelling when it is parsed:
//!
//! - the domain is lower-cased (DNS names are case-insensitive, RFC 4343);
//! - Docker Hub's aliases `index.docker.io` (which distribution/reference
//!   also rewrites) and `registry-1.docker.io` (its API host, which
//!   containerd substitutes for `docker.io`) become `docker.io`, and a
//!   single-component Docker Hub path gets `library/`;
//! - the port `:443` is dropped: it is the HTTPS default, so `host:443` and
//!   `host` are one server — unless `host` alone would no longer read as a
//!   domain (no `.`, not `localhost`): `registry:443/app` stays so, because
//!   `registry/app` is Docker Hub's `docker.io/registry/app`, and the
//!   canonical name is what containerd is asked to pull. `:80` is kept: it is the default only of plain
//!   HTTP, which pullgate speaks only to hosts listed in `[registry]
//!   plain_http` under the exact `host:port` written there, so `host:80` and
//!   `host` are two different servers (plain HTTP on 80, HTTPS on 443).
//!   Because `:443` is dropped here, a `plain_http` entry with port 443 is
//!   refused at load ([`crate::config::RegistryConfig::validate`]): it could
//!   never match.
//!
//! - the port is written as its number: leading zeros are dropped
//!   (`127.0.0.1:05000` is `127.0.0.1:5000`, the server containerd dials
//!   for either spelling), and port 0 or one above 65535 is refused
//!   ([`ReferenceError::InvalidPort`]);
//! - an IPv6 literal is written in its RFC 5952 form (`[0:0::1]` is `[::1]`).
//!
//! # Loopback aliases
//!
//! `localhost`, `127.0.0.1` and `[::1]` (and `[::ffff:127.0.0.1]`) on one
//! port are one registry on this node. A reference keeps the spelling it was
//! given (that is the name containerd is asked to pull, and looks up in its
//! `certs.d`), but registry scopes are matched in
//! [`Repository::scope_form`], where every loopback alias is written
//! `localhost` (as notation's own examples write it): a statement for `127.0.0.1:5000/prod/app` also judges
//! `localhost:5000/prod/app`. Other aliases (DNS names, `/etc/hosts`
//! entries, other addresses of the node) cannot be folded here; `policy
//! check` warns when the `*` scope is weaker than a specific one, because
//! such an alias falls to `*`.
//!
//! A first component that is not lower-case and holds no `.` or `:` is not
//! taken for a domain (distribution/reference would); it then fails as a
//! path component, so such a reference is refused rather than guessed at.
//! Path components stay case-sensitive (the grammar allows only lower case).
//! Pullgate forwards the canonical name to containerd, so the registry that
//! was asked and the one containerd pulls from are the same string.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// Errors from parsing a reference or a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("empty image reference")]
    Empty,
    /// The reference is longer than 255 characters in its name part.
    #[error("image name longer than 255 characters")]
    NameTooLong,
    /// A path component or the domain is not allowed by the grammar.
    #[error("invalid image name component {0:?}")]
    InvalidName(String),
    /// The tag is not allowed by the grammar.
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    /// The digest is malformed or uses an unsupported algorithm.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    /// The registry port is 0 or above 65535.
    #[error("invalid registry port {0:?}: a port is 1 to 65535")]
    InvalidPort(String),
}

/// Content digest, `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    hex: String,
}

/// Digest algorithms pullgate accepts (OCI image-spec descriptor.md registered algorithms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self {
            algorithm: DigestAlgorithm::Sha256,
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Whether `bytes` hash to this digest (with this digest's algorithm).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let got = match self.algorithm {
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(bytes)),
            DigestAlgorithm::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        got == self.hex
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The referrers tag-schema tag for this digest: `<alg>-<hex>` (OCI distribution-spec, "Referrers Tag Schema").
    pub fn referrers_tag(&self) -> String {
        format!("{}-{}", self.algorithm.name(), self.hex)
    }

    /// cosign's signature tag for this digest: `<alg>-<hex>.sig`.
    pub fn cosign_signature_tag(&self) -> String {
        format!("{}-{}.sig", self.algorithm.name(), self.hex)
    }

    /// cosign v2's attestation tag for this digest: `<alg>-<hex>.att`.
    pub fn cosign_attestation_tag(&self) -> String {
        format!("{}-{}.att", self.algorithm.name(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ReferenceError::InvalidDigest(truncate(s));
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let algorithm = match alg {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            _ => return Err(bad()),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// A repository: registry domain plus path, e.g. `docker.io/library/nginx`.
///
/// This is the string Notary trust policies call a registry scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    domain: String,
    path: String,
}

impl Repository {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Path inside the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Repository {
    /// This repository as registry scopes are matched: loopback aliases
    /// written `localhost` (module docs, "Loopback aliases").
    pub fn scope_form(&self) -> Repository {
        Repository {
            domain: scope_host(&self.domain),
            path: self.path.clone(),
        }
    }

    /// Whether this repository falls under the registry scope `scope`
    /// (itself in [`Repository::scope_form`]).
    pub fn is_in_scope(&self, scope: &Repository) -> bool {
        self.path == scope.path && scope_host(&self.domain) == scope.domain
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)
    }
}

impl FromStr for Repository {
    type Err = ReferenceError;

    /// Parses a fully qualified repository (`host/path`), as trust policies write scopes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let r: ImageRef = s.parse()?;
        // A scope names its registry: `nginx` or `library/nginx` (implicitly
        // Docker Hub) is refused, `docker.io/nginx` is accepted as
        // `docker.io/library/nginx`.
        if r.tag_given || r.digest.is_some() || !r.domain_given {
            return Err(ReferenceError::InvalidName(truncate(s)));
        }
        Ok(r.repository)
    }
}

/// A normalised image reference, e.g. `docker.io/library/nginx:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    repository: Repository,
    tag: Option<String>,
    digest: Option<Digest>,
    tag_given: bool,
    domain_given: bool,
}

const DEFAULT_DOMAIN: &str = "docker.io";
/// Other names of Docker Hub, rewritten to [`DEFAULT_DOMAIN`].
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];
/// The HTTPS default port, dropped from domains.
const HTTPS_DEFAULT_PORT: u16 = 443;
const DEFAULT_TAG: &str = "latest";
/// How every loopback alias is written in [`Repository::scope_form`].
const LOOPBACK_SCOPE_HOST: &str = "localhost";
/// The canonical spellings of the loopback interface folded for scope matching.
const LOOPBACK_ALIASES: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"];
const MAX_NAME_LEN: usize = 255;

impl ImageRef {
    /// The repository (`docker.io/library/nginx`).
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The tag, if the reference has one; `latest` is filled in when neither tag nor digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest the reference carries, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// This image pinned to `digest`: `repository@digest`.
    pub fn pinned(&self, digest: Digest) -> PinnedRef {
        PinnedRef {
            repository: self.repository.clone(),
            digest,
        }
    }

    /// Whether the reference was written in full: its registry named, and
    /// a tag or digest given (nothing filled in by normalisation).
    pub fn is_fully_qualified(&self) -> bool {
        self.domain_given && (self.tag_given || self.digest.is_some())
    }

    /// `repository:tag` when the reference has a tag.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.repository))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((name, d)) => (name, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong);
        }
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::InvalidTag(truncate(t)));
            }
        }
        let (domain, path, domain_given) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first.eq_ignore_ascii_case("localhost") =>
            {
                (first, rest.to_owned(), true)
            }
            _ => (DEFAULT_DOMAIN, name.to_owned(), false),
        };
        if !valid_domain(domain) {
            return Err(ReferenceError::InvalidName(truncate(domain)));
        }
        let domain = canonical_domain(domain)?;
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for component in path.split('/') {
            if !valid_path_component(component) {
                return Err(ReferenceError::InvalidName(truncate(component)));
            }
        }
        let tag_given = tag.is_some();
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            repository: Repository { domain, path },
            tag,
            digest,
            tag_given,
            domain_given,
        })
    }
}

/// An image pinned by digest: `repository@digest`, what pullgate forwards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PinnedRef {
    repository: Repository,
    digest: Digest,
}

impl PinnedRef {
    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl fmt::Display for PinnedRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

/// The one spelling of a valid domain (see the module docs): lower case,
/// the port as its number, Docker Hub aliases as `docker.io`, no `:443`
/// where the host alone still reads as a domain.
fn canonical_domain(domain: &str) -> Result<String, ReferenceError> {
    let lower = domain.to_ascii_lowercase();
    let (host, port) = split_port(&lower);
    let port = match port {
        None => None,
        Some(p) => Some(canonical_port(p).ok_or_else(|| ReferenceError::InvalidPort(truncate(p)))?),
    };
    let host = match host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<Ipv6Addr>().ok())
    {
        Some(ip) => format!("[{ip}]"),
        None => host.to_owned(),
    };
    let mut d = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    if port == Some(HTTPS_DEFAULT_PORT) {
        // Printed without its port, a dotless host would be the first path
        // component of a Docker Hub name (found by the pull_image fuzz
        // target: `qua:443/o/a` was forwarded as `qua/o/a@…`, which
        // containerd pulls from docker.io).
        if host.contains('.') || host.contains(':') || host == "localhost" {
            d = host;
        }
    }
    if DOCKER_HUB_ALIASES.contains(&d.as_str()) {
        d = DEFAULT_DOMAIN.to_owned();
    }
    Ok(d)
}

/// `host[:port]` split at the port's colon (an IPv6 literal keeps its brackets).
fn split_port(domain: &str) -> (&str, Option<&str>) {
    let host_end = if domain.starts_with('[') {
        domain.find(']').map_or(domain.len(), |i| i + 1)
    } else {
        domain.rfind(':').unwrap_or(domain.len())
    };
    let (host, rest) = domain.split_at(host_end);
    (host, rest.strip_prefix(':'))
}

/// A port's number, when it is one: decimal digits, 1 to 65535 (leading zeros allowed).
fn canonical_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = p.trim_start_matches('0');
    if digits.len() > 5 {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&n| n != 0)
}

/// The canonical spelling of a registry host (`host[:port]`), as references
/// are canonicalised (see the module docs); `None` when it is not a valid
/// `host[:port]` (a port of 0 or above 65535 included). For comparing hosts
/// named elsewhere (a CRI `AuthConfig.server_address`, a registry endpoint)
/// with a [`Repository::domain`].
pub fn canonical_host(host: &str) -> Option<String> {
    if !valid_domain(host) {
        return None;
    }
    canonical_domain(host).ok()
}

/// A canonical host as registry scopes are matched: a loopback alias
/// (`127.0.0.1`, `[::1]`, `[::ffff:127.0.0.1]`) becomes `localhost` on the
/// same port; any other host is unchanged.
pub fn scope_host(canonical: &str) -> String {
    let (host, port) = split_port(canonical);
    if !is_loopback_host(host) {
        return canonical.to_owned();
    }
    match port {
        Some(p) => format!("{LOOPBACK_SCOPE_HOST}:{p}"),
        None => LOOPBACK_SCOPE_HOST.to_owned(),
    }
}

/// Every spelling of a canonical host that names the same registry: the
/// loopback aliases on the same port for a loopback host, else the host
/// alone. For lists keyed by host (`[registry] plain_http`).
pub fn host_aliases(canonical: &str) -> Vec<String> {
    let (host, port) = split_port(canonical);
    if !is_loopback_host(host) {
        return vec![canonical.to_owned()];
    }
    LOOPBACK_ALIASES
        .iter()
        .map(|h| match port {
            Some(p) => format!("{h}:{p}"),
            None => (*h).to_owned(),
        })
        .collect()
}

/// Whether a canonical host (no port) is this node's loopback interface.
fn is_loopback_host(host: &str) -> bool {
    LOOPBACK_ALIASES.contains(&host)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() || b == b'_' => {}
        _ => return false,
    }
    t.len() <= 128 && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]`, host made of DNS labels or an IPv4 address (IPv6 literals in brackets).
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => {
                // `.` for an embedded IPv4 address (`::ffff:127.0.0.1`).
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                    || h.parse::<Ipv6Addr>().is_err()
                {
                    return false;
                }
                // Nothing but `:port` may follow the `]` (found by the
                // pull_image fuzz target: `[5bf]bd<junk>.i/x` was read as the
                // host `[5bf]`, and its canonical name did not parse again).
                let port = match p {
                    "" => None,
                    p => match p.strip_prefix(':') {
                        Some(port) => Some(port),
                        None => return false,
                    },
                };
                ("ipv6", port)
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e";

    #[test]
    fn normalises_like_the_kubelet() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("library/nginx", "docker.io/library/nginx:latest"),
            ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
            ("localhost/foo", "localhost/foo:latest"),
            ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("foo/bar", "docker.io/foo/bar:latest"),
        ];
        for (input, want) in cases {
            let r: ImageRef = input.parse().unwrap();
            assert_eq!(r.to_string(), want, "{input}");
        }
    }

    #[test]
    fn keeps_digest_and_optional_tag() {
        let r: ImageRef = format!("127.0.0.1:5000/a@{D}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        let r: ImageRef = format!("127.0.0.1:5000/a:v1@{D}").parse().unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(
            r.pinned(r.digest().unwrap().clone()).to_string(),
            format!("127.0.0.1:5000/a@{D}")
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "UPPER/case",
            "a//b",
            "a:",
            "a@sha256:abc",
            "a@md5:00",
            ":tag",
            "-a",
            "a:-t",
            "a@",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digest_round_trip_and_tags() {
        let d: Digest = D.parse().unwrap();
        assert_eq!(d.to_string(), D);
        assert_eq!(d.referrers_tag(), format!("sha256-{}", &D[7..]));
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!(Digest::sha256_of(b"x").matches(b"x"));
        assert!(!Digest::sha256_of(b"x").matches(b"y"));
    }

    #[test]
    fn repository_parses_scopes() {
        let r: Repository = "registry.acme-rockets.io/software/net-monitor"
            .parse()
            .unwrap();
        assert_eq!(r.domain(), "registry.acme-rockets.io");
        assert!("nginx".parse::<Repository>().is_err());
        assert!("localhost:5000/a:tag".parse::<Repository>().is_err());
    }

    #[test]
    fn every_spelling_of_a_registry_is_one_repository() {
        let cases = [
            // Docker Hub: no host, its aliases, any case, the HTTPS port.
            ("nginx", "docker.io/library/nginx:latest"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            ("Docker.IO/library/nginx", "docker.io/library/nginx:latest"),
            ("DOCKER.IO/nginx:1.25", "docker.io/library/nginx:1.25"),
            (
                "docker.io:443/library/nginx",
                "docker.io/library/nginx:latest",
            ),
            (
                "index.docker.io/library/nginx",
                "docker.io/library/nginx:latest",
            ),
            (
                "Index.Docker.Io:443/nginx",
                "docker.io/library/nginx:latest",
            ),
            (
                "registry-1.docker.io/library/nginx",
                "docker.io/library/nginx:latest",
            ),
            (
                "registry-1.docker.io:443/nginx",
                "docker.io/library/nginx:latest",
            ),
            ("registry-1.docker.io/foo/bar", "docker.io/foo/bar:latest"),
            // Other registries: case and :443 only.
            ("Registry.Example/app:v1", "registry.example/app:v1"),
            ("registry.example:443/app:v1", "registry.example/app:v1"),
            (
                "REGISTRY.EXAMPLE:443/team/app",
                "registry.example/team/app:latest",
            ),
            ("LocalHost/app", "localhost/app:latest"),
            ("localhost:443/app", "localhost/app:latest"),
            // A dotless host keeps :443, else it would read as Docker Hub.
            ("Registry:443/app", "registry:443/app:latest"),
            // Kept: plain HTTP's default port and every other port.
            ("registry.example:80/app", "registry.example:80/app:latest"),
            (
                "registry.example:4430/app",
                "registry.example:4430/app:latest",
            ),
            ("127.0.0.1:5000/a", "127.0.0.1:5000/a:latest"),
            // docker.io on another port is another server, not Docker Hub.
            ("docker.io:5000/nginx", "docker.io:5000/nginx:latest"),
        ];
        for (input, want) in cases {
            let r: ImageRef = input.parse().unwrap();
            assert_eq!(r.to_string(), want, "{input}");
        }
        // As scopes: the same canonical repository.
        for scope in [
            "docker.io/library/nginx",
            "Docker.IO/library/nginx",
            "docker.io/nginx",
            "index.docker.io/library/nginx",
            "registry-1.docker.io:443/library/nginx",
        ] {
            let r: Repository = scope.parse().unwrap();
            assert_eq!(r.to_string(), "docker.io/library/nginx", "{scope}");
        }
        let r: Repository = "Registry.Example:443/app".parse().unwrap();
        assert_eq!(r.to_string(), "registry.example/app");
        // A scope must still name its registry.
        for implicit in ["nginx", "library/nginx", "foo/bar"] {
            assert!(implicit.parse::<Repository>().is_err(), "{implicit}");
        }
        assert_eq!(
            canonical_host("Index.Docker.IO:443").as_deref(),
            Some("docker.io")
        );
        assert_eq!(
            canonical_host("127.0.0.1:80").as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(canonical_host("not a host"), None);
    }

    /// The pull_image fuzz target's finding: `qua:443/o/a:v2` was
    /// canonicalised to domain `qua`, printed `qua/o/a…`, and that name is
    /// Docker Hub's `docker.io/qua/o/a`, so the pinned reference pullgate
    /// forwards named another registry than the one it verified against.
    #[test]
    fn regression_fuzz_pull_image_dotless_host_on_443() {
        let r: ImageRef = "qua:443/o/a:v2".parse().unwrap();
        assert_eq!(r.repository().domain(), "qua:443");
        let digest: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
        let pinned = r.pinned(digest.clone()).to_string();
        let again: ImageRef = pinned.parse().unwrap();
        assert_eq!(again.repository(), r.repository(), "{pinned}");
        assert_eq!(again.digest(), Some(&digest));
        assert_eq!(canonical_host("QUA:443").as_deref(), Some("qua:443"));
        assert_eq!(canonical_host("[::1]:443").as_deref(), Some("[::1]"));
    }

    /// Issue 23, item 1: `127.0.0.1:05000` and `localhost:5000` were other
    /// registries than `127.0.0.1:5000` for scope matching.
    #[test]
    fn ports_are_numbers_and_loopback_aliases_share_a_scope() {
        for (input, want) in [
            (
                "127.0.0.1:05000/prod/app:evil",
                "127.0.0.1:5000/prod/app:evil",
            ),
            ("127.0.0.1:0000005000/a", "127.0.0.1:5000/a:latest"),
            ("registry.example:0443/app", "registry.example/app:latest"),
            (
                "registry.example:00080/app",
                "registry.example:80/app:latest",
            ),
            ("[0:0::1]:5000/a", "[::1]:5000/a:latest"),
            ("[::FFFF:7f00:1]:5000/a", "[::ffff:127.0.0.1]:5000/a:latest"),
            ("localhost:65535/a", "localhost:65535/a:latest"),
        ] {
            let r: ImageRef = input.parse().unwrap();
            assert_eq!(r.to_string(), want, "{input}");
            let again: ImageRef = r.to_string().parse().unwrap();
            assert_eq!(again.to_string(), want, "{input}");
            assert_eq!(again.repository(), r.repository(), "{input}");
        }
        for bad in [
            "127.0.0.1:0/a",
            "127.0.0.1:00000/a",
            "127.0.0.1:65536/a",
            "127.0.0.1:99999999999999999999/a",
        ] {
            assert!(
                matches!(bad.parse::<ImageRef>(), Err(ReferenceError::InvalidPort(_))),
                "{bad}"
            );
            assert!(
                matches!(
                    bad.parse::<Repository>(),
                    Err(ReferenceError::InvalidPort(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(canonical_host("127.0.0.1:0"), None);
        assert_eq!(
            canonical_host("LOCALHOST:05000").as_deref(),
            Some("localhost:5000")
        );

        let scope: Repository = "127.0.0.1:5000/prod/app".parse().unwrap();
        let scope = scope.scope_form();
        for alias in [
            "127.0.0.1:5000/prod/app:evil",
            "127.0.0.1:05000/prod/app:evil",
            "localhost:5000/prod/app:evil",
            "LocalHost:005000/prod/app",
            "[::1]:5000/prod/app",
            "[0::1]:5000/prod/app",
            "[::ffff:127.0.0.1]:5000/prod/app",
        ] {
            let r: ImageRef = alias.parse().unwrap();
            assert!(r.repository().is_in_scope(&scope), "{alias}");
            assert_eq!(r.repository().scope_form(), scope, "{alias}");
        }
        for other in [
            "127.0.0.1:5001/prod/app",
            "127.0.0.2:5000/prod/app",
            "localhost/prod/app",
            "127.0.0.1:5000/prod/app2",
            "registry.example:5000/prod/app",
        ] {
            let r: ImageRef = other.parse().unwrap();
            assert!(!r.repository().is_in_scope(&scope), "{other}");
        }
        // Forwarded names keep the spelling asked for.
        let r: ImageRef = "localhost:05000/prod/app:v1".parse().unwrap();
        assert_eq!(r.repository().domain(), "localhost:5000");
        assert_eq!(
            host_aliases("localhost:5000"),
            [
                "localhost:5000",
                "127.0.0.1:5000",
                "[::1]:5000",
                "[::ffff:127.0.0.1]:5000"
            ]
        );
        assert_eq!(
            host_aliases("registry.example:5000"),
            ["registry.example:5000"]
        );
    }

    /// Regression (the pull_image fuzz target): junk after an IPv6
    /// literal's `]`, or a bracketed host that is no IPv6 address, is no
    /// host; `[::1]:5000` still is.
    #[test]
    fn only_a_port_may_follow_a_bracketed_host() {
        for bad in [
            "[5bf]bd\t\0\0cndex.ddb]73b437dcndex.dnc0er.i/c76af4",
            "[::1]x.example/app",
            "[5bf]/app",
            "[::1]5000/app",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?}");
        }
        let ok: ImageRef = "[::1]:5000/app:v1".parse().unwrap();
        let again: ImageRef = ok.to_string().parse().unwrap();
        assert_eq!(again.repository(), ok.repository());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,300}") {
            let _ = s.parse::<ImageRef>();
            let _ = s.parse::<Repository>();
            let _ = s.parse::<Digest>();
            let _ = canonical_host(&s);
        }

        /// Whatever the spelling, the parsed form is canonical: printing it
        /// and parsing again changes nothing, and its domain is lower case
        /// without `:443` or a Docker Hub alias.
        #[test]
        fn parsed_references_are_canonical(
            host in "((docker|Docker|DOCKER|index\\.docker|registry-1\\.docker|Registry\\.Example|[a-zA-Z][a-zA-Z0-9]{0,8})\\.(io|IO|com|example)|[a-zA-Z][a-zA-Z0-9]{0,8}|LocalHost|\\[(::1|0:0::1|::ffff:7f00:1)\\])(:0?443|:0*80|:0*5000|:[0-9]{1,6})?",
            path in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
            tag in "(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,10})?",
        ) {
            let input = format!("{host}/{path}{tag}");
            if let Ok(r) = input.parse::<ImageRef>() {
                let again: ImageRef = r.to_string().parse().unwrap();
                proptest::prop_assert_eq!(again.to_string(), r.to_string());
                proptest::prop_assert_eq!(again.repository(), r.repository());
                let d = r.repository().domain();
                proptest::prop_assert_eq!(d, d.to_ascii_lowercase());
                proptest::prop_assert!(
                    !d.ends_with(":443") || !d.trim_end_matches(":443").contains('.'),
                    "{}",
                    d
                );
                proptest::prop_assert!(!DOCKER_HUB_ALIASES.contains(&d), "{}", d);
                if let (_, Some(port)) = split_port(d) {
                    proptest::prop_assert!(!port.starts_with('0'), "{}", d);
                }
            }
        }
    }
}
