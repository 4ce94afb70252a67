//! The fault matrix: every registry fault the in-process registry can inject
//! (and containerd killed mid-pull), each pulled through the real `pullgate`
//! binary in front of a real containerd, under a `fail_closed` scope and a
//! `fail_open` scope. For each cell it records and checks the typed outcome
//! (the gRPC code), the message, the time it took (only that the answer came
//! before the pull's deadline plus slack — never a performance bound) and,
//! through containerd's own socket, whether the image is in containerd's
//! image store.
//!
//! Expected outcomes follow the rules: `fail_open` applies to an outage only
//! (unreachable, a dropped connection, 5xx, a request timeout); an answer the
//! registry gave about the content (404, 401, 403, over a cap, not matching
//! its digest, malformed, a redirect loop) is a denial of that signature, or
//! a fail-closed error when it is about the image or its referrers list,
//! never an allow; the pull's own deadline passing fails closed; a 429 is the
//! registry asking to be left alone, neither an outage nor an answer about
//! the content, so it fails closed without a cached denial. `fail_open`
//! never forwards a pull unpinned: an outage before the tag resolved fails
//! closed under it too.
//!
//! Run with `--nocapture` to see the table (the README's reliability section
//! copies it).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use pullgate_proto::runtime::v1::image_service_client::ImageServiceClient;
use pullgate_proto::runtime::v1::{ImageSpec, PullImageRequest};
use pullgate_tests::child::free_port;
use pullgate_tests::cri;
use pullgate_tests::image::{push_random_image, PushedImage};
use pullgate_tests::oci_registry::{
    referrers_page, sha256_digest, AuthMode, Fault, FaultTarget, GarbageListener, OciRegistry,
    RequestKind, OCI_MANIFEST,
};
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::signer::PushedSignature;
use pullgate_tests::testbed::OciTestbed;
use serde_json::{json, Value};
use tonic::Code;

/// The deadline every pull of the matrix carries (`grpc-timeout`).
const DEADLINE: Duration = Duration::from_secs(6);
/// How much later than the deadline an answer may come (process scheduling
/// on a loaded machine); a pull still unanswered then is a hang.
const SLACK: Duration = Duration::from_secs(4);
/// The Notary Project signature artifact type.
const NOTARY: &str = "application/vnd.cncf.notary.signature";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Closed,
    Open,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Self::Closed => "fail_closed",
            Self::Open => "fail_open",
        }
    }
}

/// One registry fault of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    ConnectionRefused,
    ResetMidBody,
    TlsHandshake,
    SlowHeaders,
    SlowBody,
    Status500,
    Status503RetryAfter,
    Status429,
    AuthLoop,
    RedirectLoop,
    TruncatedManifest,
    LongContentLength,
    DigestMismatch,
    Referrers10kSameType,
    Referrers10kOtherType,
    HugeManifest,
    InvalidJson,
    WrongIndexMediaType,
    WrongManifestMediaType,
    EndlessPages,
}

const CASES: [Case; 20] = [
    Case::ConnectionRefused,
    Case::ResetMidBody,
    Case::TlsHandshake,
    Case::SlowHeaders,
    Case::SlowBody,
    Case::Status500,
    Case::Status503RetryAfter,
    Case::Status429,
    Case::AuthLoop,
    Case::RedirectLoop,
    Case::TruncatedManifest,
    Case::LongContentLength,
    Case::DigestMismatch,
    Case::Referrers10kSameType,
    Case::Referrers10kOtherType,
    Case::HugeManifest,
    Case::InvalidJson,
    Case::WrongIndexMediaType,
    Case::WrongManifestMediaType,
    Case::EndlessPages,
];

impl Case {
    /// (fault, where it is injected) for the table.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Self::ConnectionRefused => ("connection refused", "registry host"),
            Self::ResetMidBody => ("connection reset mid-body (RST)", "signature envelope GET"),
            Self::TlsHandshake => ("TLS handshake failure", "registry host (https)"),
            Self::SlowHeaders => ("slow headers past the deadline", "referrers GET"),
            Self::SlowBody => ("slow body (1 byte/s)", "signature manifest GET"),
            Self::Status500 => ("500", "referrers GET"),
            Self::Status503RetryAfter => ("503 + Retry-After: 120", "tag HEAD"),
            Self::Status429 => ("429", "signature envelope GET"),
            Self::AuthLoop => ("401 loop (no token accepted)", "every request"),
            Self::RedirectLoop => ("redirect loop (307 to itself)", "signature envelope GET"),
            Self::TruncatedManifest => ("truncated manifest", "signature manifest GET"),
            Self::LongContentLength => (
                "Content-Length longer than the body",
                "signature manifest GET",
            ),
            Self::DigestMismatch => ("digest mismatch", "signature manifest GET"),
            Self::Referrers10kSameType => (
                "referrers index of 10,000 signatures (real one last)",
                "referrers GET",
            ),
            Self::Referrers10kOtherType => (
                "referrers index of 10,000 other artifacts, unfiltered",
                "referrers GET",
            ),
            Self::HugeManifest => ("64 MiB manifest (chunked)", "signature manifest GET"),
            Self::InvalidJson => ("invalid JSON", "referrers GET"),
            Self::WrongIndexMediaType => ("wrong media type (not an index)", "referrers GET"),
            Self::WrongManifestMediaType => (
                "wrong media type (unknown manifest type)",
                "signature manifest GET",
            ),
            Self::EndlessPages => ("referrers pages without end, 1 MiB each", "referrers GET"),
        }
    }

    /// What the rules say this fault must end in under `scope`.
    fn expect(self, scope: Scope) -> Expect {
        use Expect::*;
        let open = scope == Scope::Open;
        match self {
            // An outage before the tag resolved fails closed under fail_open
            // too: nothing is forwarded unpinned (issue 23).
            Self::ConnectionRefused => Unavailable(&["unreachable", "connection refused"]),
            Self::TlsHandshake => Unavailable(&["unreachable"]),
            Self::Status503RetryAfter => Unavailable(&["answered 503 Service Unavailable"]),
            // An outage after the tag resolved: fail_open allows, pinned.
            Self::ResetMidBody | Self::LongContentLength | Self::Status500 if open => {
                FailOpenPinned
            }
            Self::ResetMidBody => Unavailable(&["dropped the connection", "connection reset"]),
            Self::LongContentLength => {
                Unavailable(&["dropped the connection", "unexpected end of file"])
            }
            Self::Status500 => Unavailable(&["answered 500 Internal Server Error"]),
            // The pull's own deadline: never an outage.
            Self::SlowHeaders | Self::SlowBody => Deadline,
            // Neither an outage nor an answer about the content.
            Self::Status429 => Unavailable(&["answered 429 Too Many Requests"]),
            Self::AuthLoop => Unavailable(&["refused the credentials (401 Unauthorized)"]),
            // Answers about the referrers list: fail closed, never open.
            Self::InvalidJson => Unavailable(&["malformed", "referrers response"]),
            Self::WrongIndexMediaType => Unavailable(&["unsupported manifest"]),
            // Answers about one listed signature: that signature's failure.
            Self::RedirectLoop => Denied(&["cannot fetch it", "307 Temporary Redirect"]),
            Self::TruncatedManifest | Self::DigestMismatch => {
                Denied(&["does not match its digest"])
            }
            Self::HugeManifest => Denied(&["more than the 262144-byte limit"]),
            Self::WrongManifestMediaType => Denied(&["unsupported manifest"]),
            // Candidates are ordered by promise before the cap: the real
            // signature names a trusted certificate, the junk does not.
            Self::Referrers10kSameType | Self::Referrers10kOtherType => Allowed,
            Self::EndlessPages => Denied(&["among the first 16 pages of referrers"]),
        }
    }
}

/// An expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Verified and pulled, pinned.
    Allowed,
    /// `PermissionDenied` naming these reasons; nothing pulled.
    Denied(&'static [&'static str]),
    /// `Unavailable` (fail closed) naming these reasons; nothing pulled.
    Unavailable(&'static [&'static str]),
    /// `DeadlineExceeded`; nothing pulled.
    Deadline,
    /// Allowed unverified by `fail_open`, pinned to the resolved digest.
    FailOpenPinned,
    /// Allowed, but containerd is not there to pull: `Unavailable` naming it.
    ContainerdGone,
}

impl Expect {
    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allow (verified)",
            Self::Denied(_) => "deny",
            Self::Unavailable(_) => "Unavailable (fail closed)",
            Self::Deadline => "DeadlineExceeded (fail closed)",
            Self::FailOpenPinned => "allow (fail_open, pinned)",
            Self::ContainerdGone => "Unavailable (containerd gone)",
        }
    }
}

/// What one cell saw.
#[derive(Debug)]
struct Seen {
    fault: &'static str,
    at: &'static str,
    scope: &'static str,
    expected: Expect,
    code: Code,
    message: String,
    took: Duration,
    /// What the table says about containerd's image store.
    store: &'static str,
    problems: Vec<String>,
}

/// The world of the matrix: the testbed (registry, containerd, PKI), two
/// pullgates in front of its containerd, and the odd hosts.
struct Matrix {
    testbed: OciTestbed,
    closed: Pullgate,
    open: Pullgate,
    /// A second in-process registry whose every request gets a 401 challenge.
    auth_loop: OciRegistry,
    /// `127.0.0.1:<port>` with nothing listening.
    dead: String,
    garbage: GarbageListener,
    seen: Vec<Seen>,
}

async fn start_pullgate(testbed: &OciTestbed, scope: Scope, extra_plain: &str) -> Result<Pullgate> {
    let dir = testbed.dir().join(scope.name());
    std::fs::create_dir_all(&dir)?;
    let mut config = testbed.pullgate_config();
    config.socket = dir.join("pullgate.sock");
    config.plain_http.push(extra_plain.to_owned());
    // The pull's deadline is the decision budget: the client sends a longer
    // `grpc-timeout`, so the answer that comes back is pullgate's, not the
    // client's own timer.
    let mut toml = config.to_toml().replacen(
        "[server]\n",
        &format!("[server]\ndecision_budget_ms = {}\n", DEADLINE.as_millis()),
        1,
    );
    if scope == Scope::Open {
        let path = dir.join("requirements.toml");
        std::fs::write(
            &path,
            "[[scope]]\nname = \"lenient\"\nregistry_scopes = [\"*\"]\non_registry_error = \"fail_open\"\n",
        )?;
        let quoted = toml::Value::String(path.display().to_string()).to_string();
        toml = toml.replacen(
            "[trust]\n",
            &format!("[trust]\nrequirements = {quoted}\n"),
            1,
        );
    }
    Pullgate::start(&toml, &dir).await
}

impl Matrix {
    async fn start() -> Result<Self> {
        let testbed = OciTestbed::start().await?;
        let auth_loop = OciRegistry::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
        let closed = start_pullgate(&testbed, Scope::Closed, &auth_loop.host()).await?;
        let open = start_pullgate(&testbed, Scope::Open, &auth_loop.host()).await?;
        Ok(Self {
            dead: format!("127.0.0.1:{}", free_port().await?),
            garbage: GarbageListener::start().await,
            testbed,
            closed,
            open,
            auth_loop,
            seen: Vec::new(),
        })
    }

    fn pullgate(&self, scope: Scope) -> &Pullgate {
        match scope {
            Scope::Closed => &self.closed,
            Scope::Open => &self.open,
        }
    }

    fn registry(&self) -> &OciRegistry {
        &self.testbed.registry
    }

    /// A new signed image in `repo`, its signature and its reference by tag.
    async fn signed(&self, repo: &str) -> Result<(PushedImage, PushedSignature, String)> {
        let image = self.testbed.push_unsigned(repo, "v1").await?;
        let signature = self.testbed.sign(repo, &image, &self.testbed.pki).await?;
        Ok((image, signature, self.testbed.image_ref(repo, "v1")))
    }

    /// Injects `case` for a pull under `scope`; returns the reference to
    /// pull and, when the tag exists, the image's pinned reference.
    async fn arrange(&self, case: Case, scope: Scope) -> Result<(String, Option<String>)> {
        let repo = format!("matrix/{case:?}-{}", scope.name()).to_lowercase();
        let host = self.testbed.host();
        let reg = self.registry();
        let pinned = |image: &PushedImage| Some(image.pinned_ref(&host, &repo));
        Ok(match case {
            Case::ConnectionRefused => (format!("{}/{repo}:v1", self.dead), None),
            Case::TlsHandshake => (format!("{}/{repo}:v1", self.garbage.host()), None),
            Case::AuthLoop => {
                let image = push_random_image(&self.auth_loop.host(), &repo, "v1").await?;
                self.auth_loop.set_auth(AuthMode::EndlessChallenge);
                (
                    format!("{}/{repo}:v1", self.auth_loop.host()),
                    Some(image.pinned_ref(&self.auth_loop.host(), &repo)),
                )
            }
            Case::Status503RetryAfter => {
                let (image, _, tag) = self.signed(&repo).await?;
                reg.set_fault(
                    FaultTarget::Kind(RequestKind::ResolveHead),
                    Fault::Status {
                        status: 503,
                        headers: vec![("retry-after", "120".to_owned())],
                    },
                );
                (tag, pinned(&image))
            }
            Case::Status500 | Case::SlowHeaders | Case::InvalidJson | Case::WrongIndexMediaType => {
                let (image, _, tag) = self.signed(&repo).await?;
                let fault = match case {
                    Case::Status500 => Fault::Status {
                        status: 500,
                        headers: Vec::new(),
                    },
                    Case::SlowHeaders => Fault::DelayHeaders(Duration::from_secs(60)),
                    Case::InvalidJson => Fault::Body {
                        bytes: Bytes::from_static(b"{\"manifests\": [{\"mediaType\""),
                        content_type: None,
                    },
                    _ => Fault::Body {
                        bytes: Bytes::from(
                            json!({"schemaVersion": 2,
                                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                "manifests": []})
                            .to_string(),
                        ),
                        content_type: Some(
                            "application/vnd.docker.distribution.manifest.v2+json".to_owned(),
                        ),
                    },
                };
                reg.set_fault(FaultTarget::Kind(RequestKind::Referrers), fault);
                (tag, pinned(&image))
            }
            Case::ResetMidBody | Case::Status429 | Case::RedirectLoop => {
                let (image, signature, tag) = self.signed(&repo).await?;
                let fault = match case {
                    Case::ResetMidBody => Fault::ResetMidBody { after: 100 },
                    Case::Status429 => Fault::Status {
                        status: 429,
                        headers: vec![("retry-after", "30".to_owned())],
                    },
                    _ => Fault::RedirectLoop,
                };
                reg.set_fault(FaultTarget::Digest(signature.envelope.digest), fault);
                (tag, pinned(&image))
            }
            Case::SlowBody
            | Case::TruncatedManifest
            | Case::LongContentLength
            | Case::DigestMismatch => {
                let (image, signature, tag) = self.signed(&repo).await?;
                let fault = match case {
                    Case::SlowBody => Fault::SlowBody {
                        interval: Duration::from_secs(1),
                    },
                    Case::TruncatedManifest => Fault::Truncate,
                    Case::LongContentLength => Fault::LongContentLength { extra: 1000 },
                    _ => {
                        // Another valid manifest: the same one, re-indented.
                        let v: Value = serde_json::from_slice(&signature.manifest_bytes)?;
                        Fault::Body {
                            bytes: Bytes::from(serde_json::to_vec_pretty(&v)?),
                            content_type: None,
                        }
                    }
                };
                reg.set_fault(FaultTarget::Digest(signature.manifest.digest), fault);
                (tag, pinned(&image))
            }
            Case::EndlessPages => {
                let (image, _, tag) = self.signed(&repo).await?;
                reg.set_fault(
                    FaultTarget::Kind(RequestKind::Referrers),
                    Fault::EndlessPages {
                        page: referrers_page(1 << 20, "application/spdx+json"),
                    },
                );
                (tag, pinned(&image))
            }
            Case::HugeManifest => {
                let (image, signature, tag) = self.signed(&repo).await?;
                reg.serve_oversized(&signature.manifest.digest, 64 << 20, false);
                (tag, pinned(&image))
            }
            Case::Referrers10kSameType | Case::Referrers10kOtherType => {
                let image = self.testbed.push_unsigned(&repo, "v1").await?;
                let artifact_type = if case == Case::Referrers10kSameType {
                    NOTARY
                } else {
                    // Listed unfiltered, so pullgate filters 10,001 entries itself.
                    reg.set_referrers_filter(false);
                    "application/spdx+json"
                };
                reg.add_synthetic_referrers(&repo, &image.digest, 10_000, artifact_type);
                self.testbed.sign(&repo, &image, &self.testbed.pki).await?;
                (self.testbed.image_ref(&repo, "v1"), pinned(&image))
            }
            Case::WrongManifestMediaType => {
                let image = self.testbed.push_unsigned(&repo, "v1").await?;
                // A signature whose manifest declares a type no client reads.
                let envelope = self.testbed.pki.sign_jws(&image.descriptor());
                let envelope_digest = reg.put_blob(&repo, envelope.clone());
                let config_digest = reg.put_blob(&repo, Bytes::from_static(b"{}"));
                let weird = "application/vnd.example.unknown.v1+json";
                let manifest = json!({
                    "schemaVersion": 2,
                    "mediaType": weird,
                    "artifactType": NOTARY,
                    "config": {"mediaType": NOTARY, "digest": config_digest, "size": 2},
                    "layers": [{"mediaType": "application/jose+json",
                        "digest": envelope_digest, "size": envelope.len()}],
                    "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest,
                        "size": image.size},
                })
                .to_string();
                let digest = sha256_digest(manifest.as_bytes());
                reg.put_manifest(&repo, &digest, weird, manifest);
                (self.testbed.image_ref(&repo, "v1"), pinned(&image))
            }
        })
    }

    fn clear(&self) {
        let reg = self.registry();
        reg.clear_faults();
        reg.set_referrers_filter(true);
        self.auth_loop.set_auth(AuthMode::Open);
    }

    /// Whether containerd's image store holds `tag` or `pinned`, asked
    /// through containerd's own socket.
    async fn in_containerd(&self, tag: &str, pinned: Option<&str>) -> Result<bool> {
        let direct = cri::connect(self.testbed.containerd.socket()).await?;
        for name in std::iter::once(tag).chain(pinned) {
            if cri::image_status(&direct, name).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn run(&mut self, case: Case, scope: Scope) -> Result<()> {
        let (fault, at) = case.describe();
        let expected = case.expect(scope);
        let (image, pinned) = self.arrange(case, scope).await?;
        let started = Instant::now();
        let answer = pull(self.pullgate(scope).socket(), &image, DEADLINE).await;
        let took = started.elapsed();
        self.clear();
        let mut problems = Vec::new();
        let (code, message) = match answer {
            Ok(Ok(_)) => (Code::Ok, String::new()),
            Ok(Err(status)) => (status.code(), status.message().to_owned()),
            Err(e) => {
                problems.push(format!("no answer: {e:#}"));
                (Code::Unknown, String::new())
            }
        };
        let pulled = self.in_containerd(&image, pinned.as_deref()).await?;
        check(expected, code, &message, pulled, &mut problems);
        if took > DEADLINE + SLACK {
            problems.push(format!("answered after {took:?}, past the deadline"));
        }
        let store = match (pulled, expected) {
            (false, _) => "no",
            (true, Expect::FailOpenPinned) => "yes, unverified (fail_open)",
            (true, Expect::Allowed) => "yes, verified",
            (true, _) => "YES",
        };
        self.seen.push(Seen {
            fault,
            at,
            scope: scope.name(),
            expected,
            code,
            message,
            took,
            store,
            problems,
        });
        Ok(())
    }

    /// containerd killed while it pulls an allowed image, then restarted.
    async fn containerd_killed_mid_pull(&mut self) -> Result<()> {
        let repo = "matrix/containerd-killed";
        let (image, _, tag) = self.signed(repo).await?;
        let layer = layer_digest(&image)?;
        // containerd's fetch of the layer hangs, so the pull is in containerd.
        self.registry().set_fault(
            FaultTarget::Digest(layer.clone()),
            Fault::DelayHeaders(Duration::from_secs(60)),
        );
        let socket = self.closed.socket().to_owned();
        let started = Instant::now();
        let pulling = tokio::spawn({
            let tag = tag.clone();
            async move { pull(&socket, &tag, DEADLINE).await }
        });
        let asked = wait_for(|| {
            self.registry()
                .seen()
                .iter()
                .any(|s| s.kind == RequestKind::BlobGet && s.path.ends_with(&layer))
        })
        .await;
        let never_asked = (!asked).then(|| {
            let paths: Vec<String> = self
                .registry()
                .seen()
                .iter()
                .rev()
                .take(12)
                .map(|s| format!("{:?} {}", s.kind, s.path))
                .collect();
            format!(
                "containerd never asked for the layer; last requests (newest first): {paths:?}; containerd log:\n{}",
                self.testbed.containerd.log_tail()
            )
        });
        self.testbed.containerd.kill();
        let answer = pulling.await.context("pull task")?;
        let took = started.elapsed();
        self.clear();
        self.testbed.containerd.restart().await?;
        let (code, message) = match answer {
            Ok(Ok(_)) => (Code::Ok, String::new()),
            Ok(Err(s)) => (s.code(), s.message().to_owned()),
            Err(e) => (Code::Unknown, format!("no answer: {e:#}")),
        };
        let pinned = image.pinned_ref(&self.testbed.host(), repo);
        let mut problems = Vec::new();
        if let Some(why) = never_asked {
            problems.push(why);
        }
        if code != Code::Unavailable || !message.contains("containerd") {
            problems.push(format!(
                "expected Unavailable from the broken containerd connection, got {code:?}"
            ));
        }
        if self.in_containerd(&tag, Some(&pinned)).await? {
            problems.push("a half-pulled image is in containerd".to_owned());
        }
        // After the restart, the same pull goes through pullgate again.
        let again = pull(self.closed.socket(), &tag, DEADLINE).await;
        if !matches!(again, Ok(Ok(_))) {
            problems.push(format!("pull after containerd's restart: {again:?}"));
        }
        let pulled = self.in_containerd(&pinned, None).await?;
        if !pulled {
            problems.push("the verified image is not in containerd after the restart".to_owned());
        }
        self.seen.push(Seen {
            fault: "containerd killed mid-pull, then restarted",
            at: "containerd (layer fetch in flight)",
            scope: "fail_closed",
            expected: Expect::ContainerdGone,
            code,
            message,
            took,
            store: if pulled {
                "no; after the restart, yes, verified"
            } else {
                "no"
            },
            problems,
        });
        Ok(())
    }

    /// containerd down when pulls arrive: an allowed image fails with
    /// containerd's absence, an unsigned one is still denied.
    async fn containerd_stopped(&mut self) -> Result<()> {
        let (signed, _, signed_tag) = self.signed("matrix/containerd-stopped").await?;
        let unsigned = self
            .testbed
            .push_unsigned("matrix/containerd-stopped-unsigned", "v1")
            .await?;
        let unsigned_tag = self
            .testbed
            .image_ref("matrix/containerd-stopped-unsigned", "v1");
        self.testbed.containerd.kill();
        let started = Instant::now();
        let allowed = pull(self.closed.socket(), &signed_tag, DEADLINE).await;
        let took = started.elapsed();
        let denied = pull(self.closed.socket(), &unsigned_tag, DEADLINE).await;
        self.testbed.containerd.restart().await?;
        let mut problems = Vec::new();
        let (code, message) = match allowed {
            Ok(Ok(_)) => (Code::Ok, String::new()),
            Ok(Err(s)) => (s.code(), s.message().to_owned()),
            Err(e) => (Code::Unknown, format!("no answer: {e:#}")),
        };
        if code != Code::Unavailable || !message.contains("containerd") {
            problems.push(format!(
                "expected Unavailable naming containerd, got {code:?}"
            ));
        }
        match denied {
            Ok(Err(s)) if s.code() == Code::PermissionDenied => {}
            other => problems.push(format!("the unsigned image was not denied: {other:?}")),
        }
        let pinned = signed.pinned_ref(&self.testbed.host(), "matrix/containerd-stopped");
        let unsigned_pinned =
            unsigned.pinned_ref(&self.testbed.host(), "matrix/containerd-stopped-unsigned");
        let pulled = self.in_containerd(&signed_tag, Some(&pinned)).await?
            || self
                .in_containerd(&unsigned_tag, Some(&unsigned_pinned))
                .await?;
        if pulled {
            problems.push("an image is in containerd".to_owned());
        }
        self.seen.push(Seen {
            fault: "containerd stopped (signed image; unsigned still denied)",
            at: "containerd socket",
            scope: "fail_closed",
            expected: Expect::ContainerdGone,
            code,
            message,
            took,
            store: if pulled { "YES" } else { "no" },
            problems,
        });
        Ok(())
    }

    /// `message` with this run's hosts, images and digests replaced by
    /// placeholders, so the table reads the same on every run.
    fn normalise(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for (host, name) in [
            (self.testbed.host(), "<registry>"),
            (self.auth_loop.host(), "<registry>"),
            (self.dead.clone(), "<registry>"),
            (self.garbage.host(), "<registry>"),
        ] {
            out = out.replace(&host, name);
        }
        if let Some(socket) = self.testbed.containerd.socket().to_str() {
            out = out.replace(socket, "<containerd.sock>");
        }
        // `<registry>/matrix/<repo>:v1` → `<image>`; `sha256:<hex>` → `sha256:…`.
        let mut words: Vec<String> = Vec::new();
        for word in out.split(' ') {
            let trimmed = word.trim_matches(|c| c == '"' || c == '(' || c == ')' || c == ':');
            let replaced = if trimmed.starts_with("<registry>/matrix/") {
                word.replace(trimmed, "<image>")
            } else {
                word.to_owned()
            };
            words.push(replaced);
        }
        out = words.join(" ");
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find("sha256:") {
            result.push_str(&rest[..i + 7]);
            let after = &rest[i + 7..];
            let hex = after
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(after.len());
            result.push('…');
            rest = after[hex..].trim_start_matches('…');
        }
        result.push_str(rest);
        result
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| fault | injected at | scope | expected | got | time | in containerd | message |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for s in &self.seen {
            let full = self.normalise(&s.message);
            let mut message: String = full.chars().take(220).collect();
            if full.chars().count() > 220 {
                message.push('…');
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:?}{} | {:.1} s | {} | {} |",
                s.fault,
                s.at,
                s.scope,
                s.expected.label(),
                s.code,
                if s.problems.is_empty() { "" } else { " ✗" },
                s.took.as_secs_f64(),
                s.store,
                message.replace('|', "\\|"),
            );
        }
        out
    }
}

/// Checks one cell against what the rules expect.
fn check(expected: Expect, code: Code, message: &str, pulled: bool, problems: &mut Vec<String>) {
    let mut want = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let has_all = |parts: &[&str]| parts.iter().all(|p| message.contains(p));
    match expected {
        Expect::Allowed | Expect::FailOpenPinned => {
            want(code == Code::Ok, format!("expected an allow, got {code:?}"));
            want(pulled, "allowed but not in containerd".to_owned());
        }
        Expect::Denied(parts) => {
            want(
                code == Code::PermissionDenied,
                format!("expected PermissionDenied, got {code:?}"),
            );
            want(
                message.contains("denied by policy"),
                "not a policy denial".to_owned(),
            );
            want(has_all(parts), format!("message lacks {parts:?}"));
            want(!pulled, "denied, yet in containerd".to_owned());
        }
        Expect::Unavailable(parts) => {
            want(
                code == Code::Unavailable,
                format!("expected Unavailable, got {code:?}"),
            );
            want(
                message.contains("failing closed"),
                "not pullgate's fail-closed refusal".to_owned(),
            );
            want(has_all(parts), format!("message lacks {parts:?}"));
            want(!pulled, "refused, yet in containerd".to_owned());
        }
        Expect::Deadline => {
            want(
                code == Code::DeadlineExceeded,
                format!("expected DeadlineExceeded, got {code:?}"),
            );
            want(
                message.contains("failing closed"),
                "not pullgate's fail-closed refusal".to_owned(),
            );
            want(!pulled, "timed out, yet in containerd".to_owned());
        }
        Expect::ContainerdGone => {
            want(
                code == Code::Unavailable,
                format!("expected Unavailable, got {code:?}"),
            );
            want(
                message.contains("containerd"),
                "the message does not name containerd".to_owned(),
            );
        }
    }
}

/// CRI `PullImage(image)` through `socket`, with a `grpc-timeout` of
/// `deadline + SLACK` (pullgate's decision budget is `deadline`, so the
/// answer is pullgate's, not the client's timer); gives up after that.
async fn pull(
    socket: &Path,
    image: &str,
    deadline: Duration,
) -> Result<Result<String, tonic::Status>> {
    let ch = cri::connect(socket).await?;
    let mut req = tonic::Request::new(PullImageRequest {
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: None,
    });
    let timeout = deadline + SLACK;
    req.metadata_mut()
        .insert("grpc-timeout", format!("{}m", timeout.as_millis()).parse()?);
    let mut client = ImageServiceClient::new(ch);
    let call = client.pull_image(req);
    let answer = tokio::time::timeout(timeout + Duration::from_secs(1), call)
        .await
        .context("no answer before the deadline plus slack")?;
    Ok(answer.map(|r| r.into_inner().image_ref))
}

/// The digest of the one layer of `image`.
fn layer_digest(image: &PushedImage) -> Result<String> {
    let v: Value = serde_json::from_slice(&image.manifest)?;
    v["layers"][0]["digest"]
        .as_str()
        .map(str::to_owned)
        .context("image has no layer")
}

/// Polls `done` for up to ten seconds.
async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Issue 23.4: 10,000 junk signature referrers listed before the real
/// signature do not deny the signed image (the real one names a trusted
/// certificate, so it is examined first); an image with only the junk is
/// denied, and the denial says the cap left signatures unexamined and names
/// the key to raise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn signature_flood_does_not_deny_a_signed_image() {
    let testbed = OciTestbed::start().await.unwrap();
    let pullgate = start_pullgate(&testbed, Scope::Closed, "127.0.0.2:1")
        .await
        .unwrap();
    let reg = &testbed.registry;
    let host = testbed.host();
    let direct = cri::connect(testbed.containerd.socket()).await.unwrap();

    let image = testbed.push_unsigned("flood/signed", "v1").await.unwrap();
    reg.add_synthetic_referrers("flood/signed", &image.digest, 10_000, NOTARY);
    testbed
        .sign("flood/signed", &image, &testbed.pki)
        .await
        .unwrap();
    let answer = pull(
        pullgate.socket(),
        &testbed.image_ref("flood/signed", "v1"),
        DEADLINE,
    )
    .await
    .unwrap();
    assert!(
        answer.is_ok(),
        "{answer:?}\npullgate log:\n{}",
        pullgate.log_tail()
    );
    let pinned = image.pinned_ref(&host, "flood/signed");
    assert!(cri::image_status(&direct, &pinned).await.unwrap().is_some());

    let junk_only = testbed.push_unsigned("flood/junk", "v1").await.unwrap();
    reg.add_synthetic_referrers("flood/junk", &junk_only.digest, 10_000, NOTARY);
    let denied = pull(
        pullgate.socket(),
        &testbed.image_ref("flood/junk", "v1"),
        DEADLINE,
    )
    .await
    .unwrap();
    let status = denied.expect_err("an image with only junk referrers is denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    for part in [
        "only the 32 most promising of the 10000 signatures listed were examined",
        "[registry.limits] max_signatures",
    ] {
        assert!(status.message().contains(part), "{part:?} in {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn fault_matrix() {
    let mut m = Matrix::start().await.unwrap();
    for case in CASES {
        for scope in [Scope::Closed, Scope::Open] {
            m.run(case, scope)
                .await
                .unwrap_or_else(|e| panic!("{case:?} under {scope:?}: {e:#}"));
        }
    }
    m.containerd_killed_mid_pull().await.unwrap();
    m.containerd_stopped().await.unwrap();
    let table = m.table();
    #[allow(clippy::print_stdout)] // reason: the table is this test's report (`--nocapture`)
    {
        println!("\n{table}");
    }
    let failed: Vec<String> = m
        .seen
        .iter()
        .filter(|s| !s.problems.is_empty())
        .map(|s| {
            format!(
                "{} [{}]: {}\n    message: {}",
                s.fault,
                s.scope,
                s.problems.join("; "),
                s.message
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} cells broke the rules:\n{}\n{table}\npullgate (fail_closed) log:\n{}",
        failed.len(),
        failed.join("\n"),
        m.closed.log_tail()
    );
}
