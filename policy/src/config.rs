//! pullgate's own configuration, read from TOML.
//!
//! Every key has a default, so an empty file (or none) gives a working proxy
//! in front of containerd's default socket. Unknown keys are refused so a
//! typo cannot silently turn a setting off.
//!
//! Every key, its default and what it does: [`example`] (printed by
//! `pullgate config example`), a table kept next to these structs and
//! checked against them by its tests.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::ImageRef;

mod example;

pub use example::example;

/// Error from reading the TOML configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("invalid pullgate configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// A `[registry] plain_http` entry that can never apply.
    #[error("invalid pullgate configuration: [registry] plain_http entry {entry:?} {problem}")]
    PlainHttp {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A bound on concurrent work set to 0: nothing would ever run.
    #[error("invalid pullgate configuration: {key} must be at least 1")]
    Zero {
        /// The key, as `[section] key`.
        key: &'static str,
    },
    /// `[trust] source` is not an `oci://` reference.
    #[error("invalid pullgate configuration: [trust] source {source_value:?} {problem}")]
    Source {
        /// The value, as written (truncated).
        source_value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A key another key requires is unset.
    #[error("invalid pullgate configuration: {key} is required when {because}")]
    Required {
        /// The key, as `[section] key`.
        key: &'static str,
        /// The setting that requires it.
        because: &'static str,
    },
    /// A value outside the range its key allows.
    #[error("invalid pullgate configuration: {key} must be {range}")]
    Range {
        /// The key, as `[section] key`.
        key: &'static str,
        /// The range allowed, in words.
        range: &'static str,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The CRI socket pullgate serves and the containerd socket it forwards to.
    pub server: ServerConfig,
    /// Where the Notary trust policy and trust store live.
    pub trust: TrustConfig,
    /// How registries are reached.
    pub registry: RegistryConfig,
    /// Verdict cache.
    pub cache: CacheConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Audit log.
    pub audit: AuditConfig,
    /// Certificate revocation checking (OCSP, then CRL).
    pub revocation: RevocationConfig,
    /// AWS Signer revocation checking (the Signer `GetRevocationStatus` API).
    pub aws_signer: AwsSignerConfig,
    /// pullgate as containerd's image verifier, and the local socket `serve` answers it on.
    pub image_verifier: ImageVerifierConfig,
    /// Content fetched into containerd's content store while a cold pull is verified.
    pub prefetch: PrefetchConfig,
}

/// `[prefetch]`: while a cold pull's signatures are discovered and
/// verified, the blobs containerd would pull (the node platform's manifest,
/// config and layers) are written into containerd's content store under a
/// lease, which a denial deletes; no image record is made before the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrefetchConfig {
    /// Whether cold pulls prefetch at all.
    pub enabled: bool,
    /// Most bytes one pull fetches ahead; a blob that would pass it is left to containerd.
    pub max_bytes_per_pull: u64,
    /// Most bytes all pulls hold fetched ahead at once (until their leases end).
    pub max_bytes_total: u64,
    /// Expiry of a prefetch lease (containerd's `gc.expire`), a backstop if pullgate dies holding it.
    pub lease_expiry_secs: u64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_bytes_per_pull: 1 << 30,
            max_bytes_total: 4 << 30,
            lease_expiry_secs: 600,
        }
    }
}

/// `[image_verifier]`: pullgate run by containerd 2.x's
/// `io.containerd.image-verifier.v1.bindir` plugin, and the root-only
/// socket on which `pullgate serve` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageVerifierConfig {
    /// The local verifier socket. `None` (the default): `verifier.sock` in
    /// the directory of `[server] socket`; an empty path: `serve` does not
    /// serve one and the verifier always decides in its own process.
    pub socket: Option<PathBuf>,
    /// The verifier's whole budget, from start to its answer, in
    /// milliseconds (default 8000). containerd kills a verifier that runs
    /// past `per_verifier_timeout` (10 s in its docs) and fails the pull
    /// without a reason, so this stays below it.
    pub budget_ms: u64,
    /// Verifier connections `pullgate serve` serves at once (default 16);
    /// further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl ImageVerifierConfig {
    /// Where the verifier socket is, given `[server]`; `None` when it is turned off.
    pub fn socket_path(&self, server: &ServerConfig) -> Option<PathBuf> {
        match &self.socket {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some(server.socket.parent().map_or_else(
                || PathBuf::from("verifier.sock"),
                |d| d.join("verifier.sock"),
            )),
        }
    }

    /// [`Self::budget_ms`] as a duration.
    pub fn budget(&self) -> Duration {
        Duration::from_millis(self.budget_ms)
    }
}

impl Default for ImageVerifierConfig {
    fn default() -> Self {
        Self {
            socket: None,
            budget_ms: 8_000,
            max_connections: 16,
        }
    }
}

/// `[aws_signer]`: how AWS Signer signatures are checked for revocation.
///
/// Every endpoint may be `http://` for tests and private endpoints; the
/// real ones are `https://`. Credentials come from the standard AWS chain
/// (environment, web identity token file, EC2 instance metadata), never
/// from this file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSignerConfig {
    /// The region whose Signer endpoint is asked (and the SigV4 signing region).
    pub region: Option<String>,
    /// The Signer API endpoint URL (`scheme://host[:port]`).
    pub endpoint: Option<String>,
    /// The STS endpoint URL used for `AssumeRoleWithWebIdentity`.
    pub sts_endpoint: Option<String>,
    /// The EC2 instance metadata service endpoint URL.
    pub imds_endpoint: Option<String>,
    /// Timeout of each HTTP request, in milliseconds.
    pub timeout_ms: u64,
    /// Largest response body read, in bytes.
    pub max_response_bytes: u64,
    /// How long a revocation answer is reused, in seconds.
    pub cache_ttl_secs: u64,
    /// Most revocation answers held at once.
    pub cache_entries: u64,
}

impl Default for AwsSignerConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            sts_endpoint: None,
            imds_endpoint: None,
            timeout_ms: 3_000,
            max_response_bytes: 64 * 1024,
            cache_ttl_secs: 300,
            cache_entries: 10_000,
        }
    }
}

impl Config {
    /// Parses a TOML document.
    ///
    /// # Errors
    /// When the document is not TOML, has an unknown key, or a value of the wrong type.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.registry.validate()?;
        if config.server.max_concurrent_verifications == 0 {
            return Err(ConfigError::Zero {
                key: "[server] max_concurrent_verifications",
            });
        }
        if config.server.max_connections_per_uid == 0 {
            return Err(ConfigError::Zero {
                key: "[server] max_connections_per_uid",
            });
        }
        if config.server.first_request_timeout_ms == 0 {
            return Err(ConfigError::Zero {
                key: "[server] first_request_timeout_ms",
            });
        }
        config.validate_source()?;
        for (key, secs) in [
            ("[cache] allow_ttl_secs", config.cache.allow_ttl_secs),
            ("[cache] deny_ttl_secs", config.cache.deny_ttl_secs),
        ] {
            if secs > MAX_TTL_SECS {
                return Err(ConfigError::Range {
                    key,
                    range: "at most 31536000 (one year)",
                });
            }
        }
        if config.cache.refresh_ahead_percent > MAX_REFRESH_AHEAD_PERCENT {
            return Err(ConfigError::Range {
                key: "[cache] refresh_ahead_percent",
                range: "from 0 (off) to 90",
            });
        }
        Ok(config)
    }
}

impl Config {
    /// A `[trust] source` needs its bootstrap trust and a state directory
    /// for the last good bundle.
    fn validate_source(&self) -> Result<(), ConfigError> {
        if self.trust.source_reference()?.is_none() {
            return Ok(());
        }
        let because = "[trust] source is set";
        if !(MIN_SOURCE_POLL_SECONDS..=MAX_SOURCE_POLL_SECONDS)
            .contains(&self.trust.source_poll_seconds)
        {
            return Err(ConfigError::Range {
                key: "[trust] source_poll_seconds",
                range: "from 1 to 86400",
            });
        }
        let v = &self.trust.source_verification;
        if v.policy.is_none() {
            return Err(ConfigError::Required {
                key: "[trust.source_verification] policy",
                because,
            });
        }
        if v.store.is_none() {
            return Err(ConfigError::Required {
                key: "[trust.source_verification] store",
                because,
            });
        }
        if self.cache.state_dir.is_none() {
            return Err(ConfigError::Required {
                key: "[cache] state_dir",
                because,
            });
        }
        Ok(())
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Unix socket pullgate listens on.
    pub socket: PathBuf,
    /// Mode of that socket.
    pub socket_mode: u32,
    /// containerd's socket (CRI and native API).
    pub upstream: PathBuf,
    /// containerd namespace the CRI plugin uses for images.
    pub containerd_namespace: String,
    /// Longest time a `PullImage` may spend in verification, in milliseconds;
    /// a shorter `grpc-timeout` from the client wins.
    pub decision_budget_ms: u64,
    /// Whether `ImageStatus` reports an image without an allow verdict as
    /// absent, so the kubelet pulls (and pullgate verifies) it.
    pub enforce_image_status: bool,
    /// Signature verifications (CPU-bound, on the blocking pool) running at
    /// once, across all pulls (default 4; at least 1). More wait for a turn
    /// under their verification's deadline. Each holds one signature
    /// envelope (at most `[registry.limits] signature_blob_bytes`).
    pub max_concurrent_verifications: usize,
    /// Largest `PullImage` or `ImageStatus` request message pullgate reads,
    /// in bytes, gRPC framing included (default 64 KiB). The kubelet's are a
    /// few hundred bytes to a few KiB (image name, annotations, registry
    /// credentials); a larger one is answered `ResourceExhausted` as soon as
    /// the cap is passed, without reading the rest.
    pub max_request_bytes: usize,
    /// CRI connections served at once (default 64). The kubelet keeps one or
    /// two; each crictl call opens one. Further connections wait, unaccepted,
    /// in the socket's listen backlog until one closes.
    pub max_connections: usize,
    /// Concurrent calls (HTTP/2 streams) on one CRI connection (default
    /// 100, advertised as `SETTINGS_MAX_CONCURRENT_STREAMS`; gRPC clients
    /// queue calls beyond it). With the two caps above, what pullgate buffers
    /// for requests is at most `max_connections` × (1 MiB of HTTP/2 receive
    /// window + `max_streams_per_connection` × `max_request_bytes`).
    pub max_streams_per_connection: u32,
    /// CRI connections one local user (the peer's uid, `SO_PEERCRED`) may
    /// hold at once (default 16, a quarter of `max_connections`; at least
    /// 1). A connection over it is closed as soon as it is accepted, so one
    /// process cannot take every slot. Root (uid 0, the kubelet's) is not
    /// limited by it, only by `max_connections`.
    pub max_connections_per_uid: usize,
    /// A connection must send the HTTP/2 preface and its first call within
    /// this many milliseconds of being accepted, or it is closed (default
    /// 10000; at least 1).
    pub first_request_timeout_ms: u64,
    /// A connection with no call in flight for this many milliseconds is
    /// closed with GOAWAY (default 300000; gRPC clients reconnect on their
    /// next call); 0 = never.
    pub idle_timeout_ms: u64,
    /// HTTP/2 PING sent this often on every CRI connection (default 30000);
    /// 0 = off.
    pub keepalive_interval_ms: u64,
    /// A PING unanswered for this many milliseconds closes the connection
    /// (default 10000).
    pub keepalive_timeout_ms: u64,
    /// The sandbox (pause) image containerd starts pods from, which
    /// `RunPodSandbox` must find allowed (or pulls through the gate) first;
    /// `None` (the default): read from containerd's CRI configuration.
    pub sandbox_image: Option<String>,
    /// Bytes of a checkpoint image's layers read to find the base image its
    /// `config.dump` names (default 1 GiB; compressed and uncompressed
    /// each). Every layer is read to its end; a checkpoint larger is
    /// refused at `CreateContainer`.
    pub checkpoint_read_bytes: u64,
    /// Relay each CRI connection to a connection of its own to containerd
    /// frame by frame, holding only the calls pullgate decides on (default
    /// true). Calls that need no decision then cost about what a byte copy
    /// does. `false`: every call is served through an HTTP/2 server and client.
    pub frame_relay: bool,
}

impl ServerConfig {
    /// [`Self::decision_budget_ms`] as a duration.
    pub fn decision_budget(&self) -> Duration {
        Duration::from_millis(self.decision_budget_ms)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/pullgate/pullgate.sock"),
            socket_mode: 0o660,
            upstream: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_namespace: "k8s.io".to_owned(),
            decision_budget_ms: 60_000,
            enforce_image_status: false,
            max_concurrent_verifications: 4,
            max_request_bytes: 64 << 10,
            max_connections: 64,
            max_streams_per_connection: 100,
            max_connections_per_uid: 16,
            first_request_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            sandbox_image: None,
            checkpoint_read_bytes: 1 << 30,
            frame_relay: true,
        }
    }
}

/// `[trust]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// notation's `trustpolicy.json`.
    pub policy: PathBuf,
    /// Directory holding `x509/<type>/<name>/` trust stores, laid out as notation's.
    pub store: PathBuf,
    /// pullgate's requirements file ([`crate::requirements`]); `None` = built-in defaults.
    pub requirements: Option<PathBuf>,
    /// How often the trust files are checked for changes, in milliseconds; 0 = only on SIGHUP.
    pub reload_interval_ms: u64,
    /// `oci://REGISTRY/REPO:TAG`: a signed policy bundle that replaces
    /// `policy`, `store` and `requirements` (see [`Self::source_reference`]).
    pub source: Option<String>,
    /// How often the source's tag is checked, in seconds (jittered), from
    /// [`MIN_SOURCE_POLL_SECONDS`] to [`MAX_SOURCE_POLL_SECONDS`].
    pub source_poll_seconds: u64,
    /// The local trust that judges the source's bundles (never taken from a bundle).
    pub source_verification: SourceVerification,
}

/// `[trust.source_verification]`: a trust policy, trust store and optional
/// requirements file, local to the node, that a policy bundle's signature
/// must satisfy (as an image's would, with no skip, audit or fail-open).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceVerification {
    /// notation's trust policy whose statement covers the source's repository.
    pub policy: Option<PathBuf>,
    /// Its trust store directory (`x509/<type>/<name>/`).
    pub store: Option<PathBuf>,
    /// A requirements file (e.g. a cosign key for the source); `None` = one notation signer.
    pub requirements: Option<PathBuf>,
}

/// The image reference an `oci://REGISTRY/REPO:TAG` (or `@DIGEST`) names.
///
/// # Errors
/// [`ConfigError::Source`] when `source` is not `oci://` and a reference
/// naming its registry and a tag or digest.
pub fn parse_source(source: &str) -> Result<ImageRef, ConfigError> {
    let bad = |problem: &'static str| ConfigError::Source {
        source_value: source.chars().take(200).collect(),
        problem,
    };
    let rest = source
        .strip_prefix(SOURCE_SCHEME)
        .ok_or_else(|| bad("does not start with oci://"))?;
    let image: ImageRef = rest.parse().map_err(|_| bad("is not an image reference"))?;
    if !image.is_fully_qualified() {
        return Err(bad("must name its registry and a tag or digest"));
    }
    Ok(image)
}

/// Shortest `[trust] source_poll_seconds`.
pub const MIN_SOURCE_POLL_SECONDS: u64 = 1;
/// Longest `[trust] source_poll_seconds` (a day).
pub const MAX_SOURCE_POLL_SECONDS: u64 = 86_400;

/// The scheme of `[trust] source`.
pub const SOURCE_SCHEME: &str = "oci://";

impl TrustConfig {
    /// The image reference `[trust] source` names, without its `oci://`
    /// scheme; `None` when unset. The reference must name its registry and
    /// a tag or digest.
    ///
    /// # Errors
    /// [`ConfigError::Source`] when the value is not such a reference.
    pub fn source_reference(&self) -> Result<Option<ImageRef>, ConfigError> {
        self.source.as_deref().map(parse_source).transpose()
    }

    /// [`Self::source_poll_seconds`] as a duration.
    pub fn source_poll(&self) -> Duration {
        Duration::from_secs(self.source_poll_seconds)
    }
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            policy: PathBuf::from("/etc/pullgate/trustpolicy.json"),
            store: PathBuf::from("/etc/pullgate/truststore"),
            requirements: None,
            reload_interval_ms: 2000,
            source: None,
            source_poll_seconds: 300,
            source_verification: SourceVerification::default(),
        }
    }
}

/// `[registry]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Registry hosts (`host:port`) reached over plain HTTP. Everything else uses HTTPS.
    pub plain_http: Vec<String>,
    /// containerd's registry `config_path`: `<dir>/<host>/hosts.toml` mirrors
    /// and TLS settings, looked up as containerd does (`<host>_<port>_`,
    /// `<host:port>`, `_default`) and re-read on reload.
    pub hosts_dir: Option<PathBuf>,
    /// Timeout of one registry request, in milliseconds (the pull's deadline still applies).
    pub request_timeout_ms: u64,
    /// Size caps on what is read from a registry.
    pub limits: Limits,
    /// A Docker `config.json` / containers `auth.json` holding registry
    /// credentials (`auths`, `credHelpers`, `credsStore`), used for pulls
    /// that came without a CRI `AuthConfig` and by `pullgate verify`;
    /// `None` = anonymous unless the kubelet sends credentials.
    pub auth_file: Option<PathBuf>,
    /// Images whose signatures are being discovered and fetched at once
    /// (the referrers walk, the signature manifests and envelopes, and
    /// their verification), across all pulls and all registries (default
    /// 4; at least 1). Concurrent pulls of one image share one discovery;
    /// cache hits need none. More wait for a turn, and the wait counts
    /// against the decision budget, so a pull still ends at its deadline.
    ///
    /// This bounds what registries can make pullgate hold at once: a
    /// discovery holds one referrers page (`referrers_index_bytes`) or one
    /// manifest (`manifest_bytes`) at a time, then up to 32 signatures
    /// being fetched (`signature_manifest_bytes` + `signature_blob_bytes`
    /// each, 40 MiB at the defaults); measured against a
    /// registry sending endless 4 MiB referrers pages each costs about
    /// 16 MiB of resident memory (allocator slack included): 16 such pulls
    /// at once peaked at 305 MiB unbounded and 80 MiB with 4 turns
    /// (`pullgate-bench hostile`, `bench/results/hostile/`). It is
    /// global, not per registry host: a hostile registry can use many host
    /// names. The cost: while every turn waits on slow registries (each
    /// request at most `request_timeout_ms`, the decision budget in all),
    /// cold pulls of other images wait too, and fail closed at their
    /// deadline; raise it on nodes that pull many new images at once.
    pub max_concurrent_discoveries: usize,
}

impl RegistryConfig {
    /// [`Self::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks what the types cannot: every `plain_http` entry is a
    /// `host[:port]` that a canonical reference can name. References drop
    /// `:443` ([`crate::reference`], "Canonical form"), so an entry on port
    /// 443 could never match and would leave that registry on HTTPS without
    /// saying so; it is refused instead.
    ///
    /// # Errors
    /// [`ConfigError::PlainHttp`] naming the entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_discoveries == 0 {
            return Err(ConfigError::Zero {
                key: "[registry] max_concurrent_discoveries",
            });
        }
        for entry in &self.plain_http {
            let bad = |problem| {
                Err(ConfigError::PlainHttp {
                    entry: entry.clone(),
                    problem,
                })
            };
            let Some(canonical) = crate::reference::canonical_host(entry) else {
                return bad("is not a host[:port] with a port of 1 to 65535");
            };
            // Canonical hosts drop `:443` (`:0443` too) only where the host
            // reads as a domain without it, so test the number.
            let port = entry
                .rsplit_once(':')
                .map(|(_, p)| p.trim_start_matches('0'));
            if !entry.ends_with(']') && port == Some("443") {
                return bad("names port 443, the HTTPS port: plain HTTP there is refused");
            }
            let host_of = |h: &str| h.split(':').next().unwrap_or_default().to_ascii_lowercase();
            if host_of(&canonical) == "docker.io" && host_of(entry) != "docker.io" {
                return bad("is a Docker Hub alias: Docker Hub is only reached over HTTPS");
            }
        }
        Ok(())
    }

    /// The `plain_http` entries in canonical spelling (lower case, the port
    /// as its number), as reference domains are written; a loopback entry
    /// brings every loopback alias on its port
    /// ([`crate::reference::host_aliases`]), so `localhost:5000/app` is
    /// reached as `127.0.0.1:5000` is.
    pub fn plain_http_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for alias in self
            .plain_http
            .iter()
            .filter_map(|h| crate::reference::canonical_host(h))
            .flat_map(|h| crate::reference::host_aliases(&h))
        {
            if !hosts.contains(&alias) {
                hosts.push(alias);
            }
        }
        hosts
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            plain_http: Vec::new(),
            hosts_dir: None,
            request_timeout_ms: 10_000,
            limits: Limits::default(),
            auth_file: None,
            max_concurrent_discoveries: 4,
        }
    }
}

/// `[registry.limits]`: every read from a registry is capped by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// An image or signature manifest (default 4 MiB, as containerd's manifest limit).
    pub manifest_bytes: u64,
    /// One page of a referrers index (default 4 MiB).
    pub referrers_index_bytes: u64,
    /// One signature manifest, a referrer fetched to examine it (default
    /// 256 KiB; one is about 1 KiB). Many are fetched at once, so this is
    /// far below `manifest_bytes`.
    pub signature_manifest_bytes: u64,
    /// One signature envelope blob (default 1 MiB).
    pub signature_blob_bytes: u64,
    /// A token endpoint response (default 64 KiB).
    pub token_bytes: u64,
    /// Signatures examined per image; more are ignored (default 32).
    pub max_signatures: usize,
    /// Referrers pages followed through `Link` (default 16).
    pub max_referrers_pages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            manifest_bytes: 4 << 20,
            referrers_index_bytes: 4 << 20,
            signature_manifest_bytes: 256 << 10,
            signature_blob_bytes: 1 << 20,
            token_bytes: 64 << 10,
            max_signatures: 32,
            max_referrers_pages: 16,
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long an allow verdict is reused, in seconds.
    pub allow_ttl_secs: u64,
    /// How long a denial is reused, in seconds (short, so a new signature is seen soon).
    pub deny_ttl_secs: u64,
    /// Most verdicts kept.
    pub max_entries: u64,
    /// Directory (root-only) where allow verdicts persist across restarts,
    /// HMAC-protected and tied to the trust files' content; `None` = off.
    pub state_dir: Option<PathBuf>,
    /// An allow verdict hit with less than half to all (jittered per
    /// verdict) of this percentage of its lifetime left is verified again
    /// in the background (0 = off, at most 90).
    pub refresh_ahead_percent: u8,
}

/// The longest verdict lifetime, `[cache] allow_ttl_secs` and
/// `deny_ttl_secs` (one year): the gate adds it to the current time, which
/// must stay a representable time.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

/// The largest `[cache] refresh_ahead_percent`: above it a verdict would be
/// verified again on nearly every hit.
pub const MAX_REFRESH_AHEAD_PERCENT: u8 = 90;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            allow_ttl_secs: 3600,
            deny_ttl_secs: 30,
            max_entries: 100_000,
            state_dir: None,
            refresh_ahead_percent: 20,
        }
    }
}

/// `[metrics]`.
///
/// The endpoint is reachable by anything that can open a TCP connection to
/// it; these bounds keep a flood of connections from taking the file
/// descriptors and memory the CRI socket needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` serving `GET /metrics` (Prometheus text format); empty = off.
    pub listen: String,
    /// Connections served at once (default 16; a Prometheus server keeps
    /// one). Further connections wait, unaccepted, in the listen backlog, so
    /// they hold no file descriptor of pullgate's.
    pub max_connections: usize,
    /// Time a client has to send a request's headers once it started, in
    /// milliseconds (default 5000); slower ones are disconnected.
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moved either way for this long is
    /// closed, in milliseconds (default 30000): idle keep-alive connections
    /// and connections that never send anything.
    pub idle_timeout_ms: u64,
}

impl MetricsConfig {
    /// [`Self::header_read_timeout_ms`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// [`Self::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            max_connections: 16,
            header_read_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// File one JSON line per decision is appended to; `None` = off.
    pub path: Option<PathBuf>,
}

#[cfg(test)]
mod tests {

    /// `[trust] source` with the keys it requires.
    fn with_source(source: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!(
            "[trust]\nsource = {source:?}\n[trust.source_verification]\npolicy = \"p\"\nstore = \"s\"\n[cache]\nstate_dir = \"d\"\n"
        ))
    }

    #[test]
    fn a_source_is_an_oci_reference_naming_registry_and_tag_or_digest() {
        let c = with_source("oci://registry.example:5000/platform/policy:prod").unwrap();
        let image = c.trust.source_reference().unwrap().unwrap();
        assert_eq!(image.repository().domain(), "registry.example:5000");
        assert_eq!(image.repository().path(), "platform/policy");
        assert_eq!(image.tag(), Some("prod"));
        let pinned = format!("oci://127.0.0.1:5000/p@sha256:{}", "a".repeat(64));
        let c = with_source(&pinned).unwrap();
        assert!(c
            .trust
            .source_reference()
            .unwrap()
            .unwrap()
            .digest()
            .is_some());
        for bad in [
            "registry.example/platform/policy:prod",
            "https://registry.example/platform/policy:prod",
            "oci://registry.example/platform/policy",
            "oci://platform/policy:prod",
            "oci://",
            "oci://registry.example/Bad Name:x",
        ] {
            assert!(
                matches!(with_source(bad), Err(ConfigError::Source { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_source_requires_its_bootstrap_trust_and_a_state_dir() {
        let missing = Config::from_toml(
            "[trust]\nsource = \"oci://r.example/p:t\"\n[cache]\nstate_dir = \"d\"\n",
        );
        assert!(matches!(
            missing,
            Err(ConfigError::Required {
                key: "[trust.source_verification] policy",
                ..
            })
        ));
        let no_state = Config::from_toml(
            "[trust]\nsource = \"oci://r.example/p:t\"\n[trust.source_verification]\npolicy = \"p\"\nstore = \"s\"\n",
        );
        assert!(matches!(
            no_state,
            Err(ConfigError::Required {
                key: "[cache] state_dir",
                ..
            })
        ));
        let fast = Config::from_toml(
            "[trust]\nsource = \"oci://r.example/p:t\"\nsource_poll_seconds = 0\n[trust.source_verification]\npolicy = \"p\"\nstore = \"s\"\n[cache]\nstate_dir = \"d\"\n",
        );
        assert!(matches!(fast, Err(ConfigError::Range { .. })));
    }
    use super::*;

    #[test]
    fn empty_document_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(
            c.server.upstream,
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(c.server.socket_mode, 0o660);
        assert_eq!(c.registry.limits, Limits::default());
        assert_eq!(c.server.max_request_bytes, 64 << 10);
        assert_eq!(c.server.max_connections, 64);
        assert_eq!(c.server.max_streams_per_connection, 100);
        assert_eq!(c.metrics.max_connections, 16);
        assert_eq!(c.metrics.header_read_timeout(), Duration::from_secs(5));
        assert_eq!(c.metrics.idle_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn reads_the_connection_bounds() {
        let c = Config::from_toml(
            "[server]\nmax_request_bytes = 1024\nmax_connections = 2\nmax_streams_per_connection = 3\n[metrics]\nlisten = \"127.0.0.1:1\"\nmax_connections = 4\nheader_read_timeout_ms = 5\nidle_timeout_ms = 6\n",
        )
        .unwrap();
        assert_eq!(c.server.max_request_bytes, 1024);
        assert_eq!(c.server.max_connections, 2);
        assert_eq!(c.server.max_streams_per_connection, 3);
        assert_eq!(c.metrics.max_connections, 4);
        assert_eq!(c.metrics.header_read_timeout_ms, 5);
        assert_eq!(c.metrics.idle_timeout_ms, 6);
    }

    #[test]
    fn the_verifier_socket_sits_beside_the_cri_socket_unless_set() {
        let c = Config::default();
        assert_eq!(
            c.image_verifier.socket_path(&c.server),
            Some(PathBuf::from("/run/pullgate/verifier.sock"))
        );
        assert_eq!(c.image_verifier.budget(), Duration::from_secs(8));
        let c = Config::from_toml("[server]\nsocket = \"/tmp/x/cri.sock\"\n").unwrap();
        assert_eq!(
            c.image_verifier.socket_path(&c.server),
            Some(PathBuf::from("/tmp/x/verifier.sock"))
        );
        let c = Config::from_toml(
            "[image_verifier]\nsocket = \"/run/v.sock\"\nbudget_ms = 5000\nmax_connections = 2\n",
        )
        .unwrap();
        assert_eq!(
            c.image_verifier.socket_path(&c.server),
            Some(PathBuf::from("/run/v.sock"))
        );
        assert_eq!(c.image_verifier.max_connections, 2);
        let c = Config::from_toml("[image_verifier]\nsocket = \"\"\n").unwrap();
        assert_eq!(c.image_verifier.socket_path(&c.server), None);
    }

    #[test]
    fn refresh_ahead_is_a_share_up_to_90_percent() {
        let c = Config::from_toml("[cache]\nrefresh_ahead_percent = 0\n").unwrap();
        assert_eq!(c.cache.refresh_ahead_percent, 0);
        let c = Config::from_toml("[cache]\nrefresh_ahead_percent = 90\n").unwrap();
        assert_eq!(c.cache.refresh_ahead_percent, 90);
        let e = Config::from_toml("[cache]\nallow_ttl_secs = 18446744073709551615\n").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Range {
                    key: "[cache] allow_ttl_secs",
                    ..
                }
            ),
            "{e}"
        );
        assert!(Config::from_toml("[cache]\ndeny_ttl_secs = 31536001\n").is_err());
        assert!(Config::from_toml("[cache]\nallow_ttl_secs = 31536000\n").is_ok());
        let e = Config::from_toml("[cache]\nrefresh_ahead_percent = 91\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("[cache] refresh_ahead_percent must be from 0"),
            "{e}"
        );
        assert!(Config::from_toml("[cache]\nrefresh_ahead_percent = 300\n").is_err());
    }

    #[test]
    fn unknown_key_is_refused() {
        assert!(Config::from_toml("[server]\nsocekt = \"/x\"\n").is_err());
    }

    #[test]
    fn plain_http_entries_are_checked() {
        for bad in [
            "registry.example:443",
            "REG.example:443",
            "not a host",
            "index.docker.io",
            "registry.example:0443",
            "127.0.0.1:0",
            "127.0.0.1:65536",
        ] {
            let text = format!("[registry]\nplain_http = [{bad:?}]\n");
            let err = Config::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        let c = Config::from_toml(
            "[registry]\nplain_http = [\"Reg.Example:080\", \"127.0.0.1:05000\", \"localhost:5000\"]\nauth_file = \"/a.json\"\n",
        )
        .unwrap();
        assert_eq!(
            c.registry.plain_http_hosts(),
            [
                "reg.example:80",
                "localhost:5000",
                "127.0.0.1:5000",
                "[::1]:5000",
                "[::ffff:127.0.0.1]:5000"
            ]
        );
        assert_eq!(c.registry.auth_file, Some(PathBuf::from("/a.json")));
    }

    #[test]
    fn reads_every_section() {
        let c = Config::from_toml(
            "[server]\nsocket = \"/tmp/p.sock\"\nsocket_mode = 0o600\n[registry]\nplain_http = [\"127.0.0.1:5000\"]\n[registry.limits]\nmax_signatures = 4\n",
        )
        .unwrap();
        assert_eq!(c.server.socket_mode, 0o600);
        assert_eq!(c.registry.plain_http, ["127.0.0.1:5000"]);
        assert_eq!(c.registry.limits.max_signatures, 4);
        assert_eq!(c.registry.limits.manifest_bytes, 4 << 20);
    }

    #[test]
    fn concurrency_bounds_default_and_refuse_zero() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.registry.max_concurrent_discoveries, 4);
        assert_eq!(c.server.max_concurrent_verifications, 4);
        let c = Config::from_toml(
            "[server]\nmax_concurrent_verifications = 2\n[registry]\nmax_concurrent_discoveries = 1\n",
        )
        .unwrap();
        assert_eq!(c.registry.max_concurrent_discoveries, 1);
        assert_eq!(c.server.max_concurrent_verifications, 2);
        for (text, key) in [
            (
                "[registry]\nmax_concurrent_discoveries = 0\n",
                "max_concurrent_discoveries",
            ),
            (
                "[server]\nmax_concurrent_verifications = 0\n",
                "max_concurrent_verifications",
            ),
        ] {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("at least 1"), "{err}");
        }
    }

    #[test]
    fn reads_aws_signer_section() {
        assert_eq!(
            Config::from_toml("").unwrap().aws_signer,
            AwsSignerConfig::default()
        );
        let c = Config::from_toml(
            "[aws_signer]\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:9\"\nimds_endpoint = \"http://127.0.0.1:8\"\ncache_ttl_secs = 5\n",
        )
        .unwrap();
        assert_eq!(c.aws_signer.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.aws_signer.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(
            c.aws_signer.imds_endpoint.as_deref(),
            Some("http://127.0.0.1:8")
        );
        assert_eq!(c.aws_signer.cache_ttl_secs, 5);
        assert_eq!(c.aws_signer.timeout_ms, 3_000);
        assert!(Config::from_toml("[aws_signer]\nendpiont = \"x\"\n").is_err());
    }
}

/// Where revocation data may come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationMode {
    /// Fetch OCSP responses and CRLs; use `crl_dir` as well when set.
    #[default]
    Online,
    /// Never touch the network: only the CRLs pre-loaded from `crl_dir` (air-gapped nodes).
    Offline,
}

/// `[revocation]`: OCSP first, then CRL, per the Notary Project trust policy spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationConfig {
    /// `online` (default) or `offline`.
    pub mode: RevocationMode,
    /// Directory of pre-loaded CRL files (DER or PEM); required when offline.
    pub crl_dir: Option<PathBuf>,
    /// Per-URL OCSP timeout in milliseconds (spec default 2000).
    pub ocsp_timeout_ms: u64,
    /// Per-URL CRL download timeout in milliseconds (spec default 5000).
    pub crl_timeout_ms: u64,
    /// Largest OCSP response read (default 20 KiB).
    pub max_ocsp_bytes: u64,
    /// Largest CRL read, from the network or `crl_dir` (default 32 MiB).
    pub max_crl_bytes: u64,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            mode: RevocationMode::Online,
            crl_dir: None,
            // "For each OCSP URL, wait for a default threshold of 2 seconds".
            ocsp_timeout_ms: 2_000,
            // "try to download the CRL for the default threshold of 5 seconds".
            crl_timeout_ms: 5_000,
            max_ocsp_bytes: 20 * 1024,
            max_crl_bytes: 32 * 1024 * 1024,
        }
    }
}
