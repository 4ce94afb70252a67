//! The commented reference `pullgate.toml` (`pullgate config example`).
//!
//! One row per key, next to the structs the parser reads: the key, its
//! default as TOML (or an example, for a key unset by default) and one line
//! on what it does. The tests tie the table to the parser: the printed file
//! parses back into [`Config::default`], every example value parses, and the
//! keys listed here are exactly the keys the structs accept, so a key added
//! to a struct without its row fails the build's tests.

use std::fmt::Write as _;

/// A key's value in the reference file.
#[derive(Debug, Clone, Copy)]
enum Value {
    /// The default, written out (`key = value`).
    Default(&'static str),
    /// Unset by default; an example, written commented out (`# key = value`).
    Unset(&'static str),
}

/// One documented key.
#[derive(Debug, Clone, Copy)]
struct Key {
    key: &'static str,
    value: Value,
    doc: &'static str,
}

const fn set(key: &'static str, value: &'static str, doc: &'static str) -> Key {
    Key {
        key,
        value: Value::Default(value),
        doc,
    }
}

const fn unset(key: &'static str, example: &'static str, doc: &'static str) -> Key {
    Key {
        key,
        value: Value::Unset(example),
        doc,
    }
}

/// `(section, what it is for, keys)`, in the order printed.
const SECTIONS: &[(&str, &str, &[Key])] = &[
    (
        "server",
        "The CRI socket pullgate serves and the containerd socket it forwards to.",
        &[
            set("socket", r#""/run/pullgate/pullgate.sock""#, "unix socket the kubelet connects to (its imageServiceEndpoint and containerRuntimeEndpoint)"),
            set("socket_mode", "0o660", "file mode of that socket"),
            set("upstream", r#""/run/containerd/containerd.sock""#, "containerd's socket (CRI and native API); keep it root-only"),
            set("containerd_namespace", r#""k8s.io""#, "containerd namespace the CRI plugin keeps images in"),
            set("decision_budget_ms", "60000", "longest a PullImage may wait on verification; a shorter grpc-timeout wins"),
            set("enforce_image_status", "false", "report images without an allow verdict as absent from ImageStatus, so the kubelet pulls (and pullgate verifies) them"),
            set("max_concurrent_verifications", "4", "signature checks on the CPU at once, all pulls together (>= 1)"),
            set("max_request_bytes", "65536", "largest PullImage/ImageStatus request read; larger is refused ResourceExhausted"),
            set("max_connections", "64", "CRI connections served at once; more wait in the listen backlog"),
            set("max_streams_per_connection", "100", "concurrent calls on one connection (HTTP/2 MAX_CONCURRENT_STREAMS)"),
            set("max_connections_per_uid", "16", "CRI connections one peer uid (SO_PEERCRED) holds at once; root is not limited; >= 1"),
            set("first_request_timeout_ms", "10000", "the HTTP/2 preface and first call must arrive within this of connecting"),
            set("idle_timeout_ms", "300000", "a connection with no call in flight this long is closed (GOAWAY); 0 = never"),
            set("keepalive_interval_ms", "30000", "HTTP/2 PING this often while connected; 0 = off"),
            set("keepalive_timeout_ms", "10000", "a PING unanswered this long closes the connection"),
            unset("sandbox_image", r#""registry.k8s.io/pause:3.10""#, "the sandbox image RunPodSandbox checks (or pulls through the gate) first; unset = containerd's own, read from its CRI Status"),
            set("checkpoint_read_bytes", "1073741824", "bytes of a checkpoint image's layers read to find the base image its config.dump names; a larger checkpoint is refused at CreateContainer"),
            set("frame_relay", "true", "relay each CRI connection to containerd frame by frame, holding only the calls pullgate decides on (PullImage, CreateContainer, RunPodSandbox, ImageStatus when enforced); false: serve every call through an HTTP/2 server and client"),
        ],
    ),
    (
        "trust",
        "The Notary Project trust policy and trust store, and pullgate's requirements file.",
        &[
            set("policy", r#""/etc/pullgate/trustpolicy.json""#, "notation's trust policy, as is"),
            set("store", r#""/etc/pullgate/truststore""#, "directory holding x509/{ca,signingAuthority,tsa}/<name>/ certificates, as notation's"),
            unset("requirements", r#""/etc/pullgate/requirements.toml""#, "per-scope requirements (`pullgate config example --requirements`); unset = one notation signer, fail closed, enforce"),
            set("reload_interval_ms", "2000", "how often the three are checked for changes; 0 = only on SIGHUP"),
            unset("source", r#""oci://registry.example/platform/pullgate-policy:prod""#, "a signed policy bundle (trust policy, truststore/, requirements.toml) that replaces the three above; needs [trust.source_verification] and [cache] state_dir; the last good bundle is kept there"),
            set("source_poll_seconds", "300", "how often the source's tag is checked (HEAD, jittered +-20%), 1 to 86400"),
        ],
    ),
    (
        "trust.source_verification",
        "The local trust a policy bundle's signature must meet (never taken from a bundle; no skip, audit or fail_open).",
        &[
            unset("policy", r#""/etc/pullgate/source/trustpolicy.json""#, "notation trust policy whose statement covers the source's repository"),
            unset("store", r#""/etc/pullgate/source/truststore""#, "its trust store (x509/<type>/<name>/)"),
            unset("requirements", r#""/etc/pullgate/source/requirements.toml""#, "requirements for the bundle (e.g. a cosign key); unset = one notation signer"),
        ],
    ),
    (
        "registry",
        "How registries are reached for signatures.",
        &[
            set("plain_http", "[]", "registries (host:port) spoken to over plain HTTP; port 443 is refused"),
            unset("hosts_dir", r#""/etc/containerd/certs.d""#, "containerd's registry config_path: <dir>/<host>/hosts.toml mirrors and private CAs; set it when containerd uses one"),
            set("request_timeout_ms", "10000", "timeout of one registry request (the pull's deadline still applies)"),
            unset("auth_file", r#""/etc/pullgate/auth.json""#, "docker config.json / containers auth.json for pulls the kubelet sent no credentials with, and for `pullgate verify`; must be readable under the unit (not under /root: ProtectHome=yes)"),
            set("max_concurrent_discoveries", "4", "images whose signatures are discovered and fetched at once, all registries together (>= 1)"),
        ],
    ),
    (
        "registry.limits",
        "Caps on every read from a registry.",
        &[
            set("manifest_bytes", "4194304", "an image or signature manifest"),
            set("referrers_index_bytes", "4194304", "one page of a referrers index"),
            set("signature_manifest_bytes", "262144", "one signature manifest (a referrer fetched to examine it)"),
            set("signature_blob_bytes", "1048576", "one signature envelope"),
            set("token_bytes", "65536", "a token endpoint response"),
            set("max_signatures", "32", "signatures examined per image; more are ignored"),
            set("max_referrers_pages", "16", "referrers pages followed through Link"),
        ],
    ),
    (
        "cache",
        "The verdict cache, by digest.",
        &[
            set("allow_ttl_secs", "3600", "how long an allow verdict is reused (at most 31536000, one year)"),
            set("deny_ttl_secs", "30", "how long a denial is reused (short, so a new signature is seen soon; at most one year)"),
            set("max_entries", "100000", "most verdicts kept"),
            unset("state_dir", r#""/var/lib/pullgate""#, "root-only directory where allow verdicts persist across restarts (HMAC-protected); unset = off"),
            set("refresh_ahead_percent", "20", "an allow verdict in use with less than half to all of this share of its lifetime left (jittered per verdict) is verified again in the background, at most 2 at once; 0 = off, at most 90"),
        ],
    ),
    (
        "metrics",
        "The Prometheus endpoint.",
        &[
            set("listen", r#""""#, r#"host:port serving GET /metrics, e.g. "127.0.0.1:9811"; empty = off"#),
            set("max_connections", "16", "scrapes served at once; more wait in the listen backlog"),
            set("header_read_timeout_ms", "5000", "a request's headers must arrive within this, once they start"),
            set("idle_timeout_ms", "30000", "a connection with no bytes either way for this long is closed"),
        ],
    ),
    (
        "audit",
        "The audit log.",
        &[unset("path", r#""/var/log/pullgate/audit.log""#, "one JSON line per decision is appended here; unset = off")],
    ),
    (
        "revocation",
        "Certificate revocation checks (OCSP, then CRL).",
        &[
            set("mode", r#""online""#, r#"or "offline": only the CRLs in crl_dir, no network"#),
            unset("crl_dir", r#""/etc/pullgate/crl""#, "pre-loaded CRLs (DER or PEM); required when offline"),
            set("ocsp_timeout_ms", "2000", "per OCSP URL"),
            set("crl_timeout_ms", "5000", "per CRL download"),
            set("max_ocsp_bytes", "20480", "largest OCSP response read"),
            set("max_crl_bytes", "33554432", "largest CRL read, from the network or crl_dir"),
        ],
    ),
    (
        "aws_signer",
        "Revocation of AWS Signer signatures (GetRevocationStatus); credentials come from the standard AWS chain.",
        &[
            unset("region", r#""us-west-2""#, "unset: AWS_REGION, AWS_DEFAULT_REGION, else the signing profile's region"),
            unset("endpoint", r#""https://signer.us-west-2.amazonaws.com""#, "unset: AWS_ENDPOINT_URL_SIGNER, AWS_ENDPOINT_URL, else the regional one"),
            unset("sts_endpoint", r#""https://sts.us-west-2.amazonaws.com""#, "unset: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the regional STS (web identity / IRSA)"),
            unset("imds_endpoint", r#""http://169.254.169.254""#, "unset: AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254"),
            set("timeout_ms", "3000", "per HTTP request (API call, credential fetch)"),
            set("max_response_bytes", "65536", "cap on every response body read"),
            set("cache_ttl_secs", "300", "how long an answer is reused"),
            set("cache_entries", "10000", "most answers held"),
        ],
    ),
    (
        "image_verifier",
        "pullgate as containerd 2.x's image verifier (bindir plugin).",
        &[
            unset("socket", r#""/run/pullgate/verifier.sock""#, r#"root-only socket `serve` answers the verifier on; unset: verifier.sock beside [server] socket; "" = not served"#),
            set("budget_ms", "8000", "the verifier's whole budget; keep it below containerd's per_verifier_timeout (10 s)"),
            set("max_connections", "16", "verifier connections `pullgate serve` serves at once"),
        ],
    ),
    (
        "prefetch",
        "Content fetched into containerd's content store, under a lease a denial deletes, while a cold pull is verified (no image record before the verdict).",
        &[
            set("enabled", "false", "fetch the node platform's manifest, config and layers ahead while signatures are verified"),
            set("max_bytes_per_pull", "1073741824", "most bytes one pull fetches ahead; a blob that would pass it is left to containerd"),
            set("max_bytes_total", "4294967296", "most bytes all pulls hold fetched ahead at once (until their leases end)"),
            set("lease_expiry_secs", "600", "containerd gc.expire of a prefetch lease: a backstop if pullgate dies holding it"),
        ],
    ),
];

/// A complete commented `pullgate.toml`: every key, its default (keys
/// unset by default are commented out with an example) and what it does.
/// It parses into [`super::Config::default`].
pub fn example() -> String {
    let mut out = String::from(
        "# pullgate.toml: every key, with its default. A missing key takes its default;\n\
         # a commented-out key is unset by default (the value shown is an example).\n\
         # Read from --config, else $PULLGATE_CONFIG, else /etc/pullgate/pullgate.toml.\n",
    );
    for (section, about, keys) in SECTIONS {
        let _ = write!(out, "\n# {about}\n[{section}]\n");
        for k in *keys {
            let _ = writeln!(out, "# {}", k.doc);
            match k.value {
                Value::Default(v) => {
                    let _ = writeln!(out, "{} = {v}", k.key);
                }
                Value::Unset(v) => {
                    let _ = writeln!(out, "# {} = {v}", k.key);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::*;
    use super::*;
    use crate::serde_fields::field_names;

    #[test]
    fn the_example_parses_into_the_defaults() {
        let text = example();
        assert_eq!(
            Config::from_toml(&text).unwrap(),
            Config::default(),
            "{text}"
        );
    }

    /// The Debian package's `/etc/pullgate/pullgate.toml` is this file, byte for byte.
    #[test]
    fn the_packaged_config_is_the_example() {
        assert!(
            include_str!("../../../deb/pullgate.toml") == example(),
            "deb/pullgate.toml is not `pullgate config example`: \
             cargo run -p pullgate -- config example > deb/pullgate.toml"
        );
    }

    #[test]
    fn every_unset_example_sets_its_key() {
        for (section, _, keys) in SECTIONS {
            for k in *keys {
                if let Value::Unset(v) = k.value {
                    let mut text = format!("[{section}]\n{} = {v}\n", k.key);
                    if (*section, k.key) == ("trust", "source") {
                        // What a source requires (`Config::validate_source`).
                        text.push_str(
                            "[trust.source_verification]\npolicy = \"p\"\nstore = \"s\"\n\
                             [cache]\nstate_dir = \"d\"\n",
                        );
                    }
                    let c = Config::from_toml(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_ne!(c, Config::default(), "{text} changes nothing");
                }
            }
        }
    }

    /// Fails when a key is added to (or removed from) a struct without its row.
    #[test]
    fn every_key_the_parser_reads_is_documented() {
        let documented = |section: &str| -> BTreeSet<&str> {
            SECTIONS
                .iter()
                .filter(|(s, _, _)| *s == section)
                .flat_map(|(_, _, keys)| keys.iter().map(|k| k.key))
                .collect()
        };
        let sections: BTreeSet<&str> = SECTIONS
            .iter()
            .map(|(s, _, _)| *s)
            .filter(|s| !s.contains('.'))
            .collect();
        assert_eq!(
            sections,
            field_names::<Config>().into_iter().collect::<BTreeSet<_>>()
        );
        // Sub-tables are documented as sections of their own.
        let mut registry = documented("registry");
        registry.insert("limits");
        let mut trust = documented("trust");
        trust.insert("source_verification");
        let checked = [
            ("server", field_names::<ServerConfig>()),
            (
                "trust.source_verification",
                field_names::<SourceVerification>(),
            ),
            ("registry.limits", field_names::<Limits>()),
            ("cache", field_names::<CacheConfig>()),
            ("metrics", field_names::<MetricsConfig>()),
            ("audit", field_names::<AuditConfig>()),
            ("revocation", field_names::<RevocationConfig>()),
            ("aws_signer", field_names::<AwsSignerConfig>()),
            ("image_verifier", field_names::<ImageVerifierConfig>()),
            ("prefetch", field_names::<PrefetchConfig>()),
        ];
        // Every documented section is checked here (`registry` below).
        let mut names: BTreeSet<&str> = checked.iter().map(|(s, _)| *s).collect();
        names.insert("registry");
        names.insert("trust");
        assert_eq!(names, SECTIONS.iter().map(|(s, _, _)| *s).collect());
        for (section, parsed) in checked {
            assert_eq!(
                documented(section),
                parsed.into_iter().collect::<BTreeSet<_>>(),
                "[{section}]"
            );
        }
        assert_eq!(
            trust,
            field_names::<TrustConfig>()
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
        assert_eq!(
            registry,
            field_names::<RegistryConfig>()
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
    }
}
