//! The bench's world: the end-to-end tests' [`OciTestbed`] (the in-process
//! OCI 1.1 registry with request counts and added latency, a real
//! containerd 1.6 pulling from it, a test PKI whose root is in a trust
//! store, a strict trust policy over every repository), and what only the
//! bench adds: a signer outside the trust store and a revoked one, the
//! cosign scopes, the built `pullgate` binary started with `[metrics]`, and
//! pushes of many images at once. The repositories of the
//! cosign modes ([`COSIGN_KEY_REPO`], [`COSIGN_BUNDLE_REPO`]) are under
//! cosign-only requirements scopes: a cosign key, and for bundles a test
//! transparency log in a `trusted_root.json` (`pullgate_tests::cosign`).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use pullgate_testkit::cosign::{
    key_signed_bundle, sign_statement, CosignKey, TestLog, SIGN_PREDICATE,
};
use pullgate_testkit::TestPki;
use pullgate_tests::child::free_port;
use pullgate_tests::cosign::{attach_bundle, attach_cosign_signature, BundleListing};
use pullgate_tests::cri;
use pullgate_tests::image::{
    build_layered_image, push_layered_image, push_random_image, PushedImage,
};
use pullgate_tests::oci_registry::Counts;
use pullgate_tests::pullgate::{Pullgate, PullgateConfig};
use pullgate_tests::signer::attach_signatures_by;
use pullgate_tests::testbed::{OciTestbed, SIGNER_CN};
use serde::Serialize;
use tonic::transport::Channel;

use crate::metrics;

/// CRL distribution point of the revoked signer's leaf. Never fetched:
/// revocation runs offline on the CRL of [`Bed::crl_dir`].
const REVOKED_CRL_URL: &str = "http://127.0.0.1:9/pullgate-bench-revoked.crl";

/// Verdicts the proxy may hold: above the 100k the RSS figure needs plus
/// everything else the run caches, so no eviction skews it.
pub(crate) const CACHE_ENTRIES: u64 = 200_000;

/// Repository of the key-signed `.sig` cosign images (scope: the key only).
pub(crate) const COSIGN_KEY_REPO: &str = "bench/cold-cosign-key";
/// Repository of the bundle-signed cosign images (scope: the key and the
/// test log's trusted root).
pub(crate) const COSIGN_BUNDLE_REPO: &str = "bench/cold-cosign-bundle";

/// Image pushes in flight while preparing.
const PUSH_CONCURRENCY: usize = 8;

/// The testbed, and the signers and files only the bench uses.
#[derive(Debug)]
pub(crate) struct Bed {
    /// Registry, containerd, the trusted signer ([`SIGNER_CN`]) and its
    /// trust store and policy.
    pub(crate) testbed: OciTestbed,
    /// CRI straight to containerd.
    pub(crate) ctrd: Channel,
    /// A signer outside the trust store.
    untrusted: TestPki,
    /// A signer the trust store and policy trust (its leaf has the trusted
    /// signer's subject, under another root), whose leaf the CRL in
    /// [`Bed::crl_dir`] revokes (only with [`Bed::start_with_revoked`]).
    revoked: Option<TestPki>,
    cosign_key: CosignKey,
    cosign_log: TestLog,
    /// Whether pullgate is given the requirements file of the cosign scopes.
    cosign_scopes: bool,
}

/// How an image is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signing {
    /// `sigs` Notary Project JWS signatures through the referrers API.
    Notary,
    /// One cosign key signature at the `sha256-<hex>.sig` tag.
    CosignKey,
    /// One Sigstore v0.3 bundle (key-signed, logged) through the referrers API.
    CosignBundle,
    /// One Notary signature by the revoked signer ([`Bed::start_with_revoked`]).
    Revoked,
}

/// One image to push.
#[derive(Debug, Clone)]
pub(crate) struct ImageSpec {
    pub(crate) repo: String,
    pub(crate) tag: String,
    /// Notary signatures; the last one pushed is by the trusted signer, the
    /// others by a signer outside the trust store.
    pub(crate) sigs: u32,
    pub(crate) signing: Signing,
    /// Sizes of the layers' random files (a realistic image, see
    /// [`LARGE_LAYERS`]); empty: the tiny one-layer image.
    pub(crate) layers: Vec<usize>,
}

/// The layers of the large image of `cold-large` and `direct-fresh-large`:
/// 100 MiB of random bytes (they do not compress) in four layers.
pub(crate) const LARGE_LAYERS: &[usize] = &[40 << 20, 30 << 20, 20 << 20, 10 << 20];

/// A pushed image and its references.
#[derive(Debug, Clone)]
pub(crate) struct Pushed {
    pub(crate) by_tag: String,
    pub(crate) by_digest: String,
}

/// A running pullgate and how to reach it.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) process: Pullgate,
    pub(crate) ch: Channel,
    /// `/metrics` address, when the binary accepted `[metrics]`.
    pub(crate) metrics: Option<SocketAddr>,
    /// What happened to the metrics endpoint, for the report.
    pub(crate) metrics_note: String,
}

/// What a run adds to pullgate's config (the default run adds nothing).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxySettings {
    /// The whole `[cache]` table; `None` = day-long TTLs, [`CACHE_ENTRIES`].
    pub(crate) cache: Option<String>,
    /// Lines added to `[registry]` (e.g. `max_concurrent_discoveries = 2\n`).
    pub(crate) registry: String,
    /// `[prefetch] enabled = true`: cold pulls fetch content while verifying.
    pub(crate) prefetch: bool,
    /// `[server] frame_relay = true`.
    pub(crate) frame_relay: bool,
}

/// Registry requests, by kind (the in-process registry's [`Counts`]).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Requests {
    pub(crate) total: u64,
    pub(crate) resolve_head: u64,
    pub(crate) manifest_get: u64,
    pub(crate) blob_head: u64,
    pub(crate) blob_get: u64,
    pub(crate) referrers: u64,
    pub(crate) token: u64,
    pub(crate) ping: u64,
    pub(crate) other: u64,
}

impl Requests {
    /// `after − before`.
    pub(crate) fn between(before: &Counts, after: &Counts) -> Self {
        Self {
            total: after.total().saturating_sub(before.total()),
            resolve_head: after.resolve_head.saturating_sub(before.resolve_head),
            manifest_get: after.manifest_get.saturating_sub(before.manifest_get),
            blob_head: after.blob_head.saturating_sub(before.blob_head),
            blob_get: after.blob_get.saturating_sub(before.blob_get),
            referrers: after.referrers.saturating_sub(before.referrers),
            token: after.token.saturating_sub(before.token),
            ping: after.ping.saturating_sub(before.ping),
            other: after.other.saturating_sub(before.other)
                + after.manifest_put.saturating_sub(before.manifest_put)
                + after.uploads.saturating_sub(before.uploads),
        }
    }

    pub(crate) fn add(&mut self, o: &Self) {
        self.total += o.total;
        self.resolve_head += o.resolve_head;
        self.manifest_get += o.manifest_get;
        self.blob_head += o.blob_head;
        self.blob_get += o.blob_get;
        self.referrers += o.referrers;
        self.token += o.token;
        self.ping += o.ping;
        self.other += o.other;
    }

    /// Each count divided by `n`.
    pub(crate) fn per(&self, n: usize) -> PerPull {
        let d = n.max(1) as f64;
        let f = |v: u64| v as f64 / d;
        PerPull {
            total: f(self.total),
            resolve_head: f(self.resolve_head),
            manifest_get: f(self.manifest_get),
            blob_head: f(self.blob_head),
            blob_get: f(self.blob_get),
            referrers: f(self.referrers),
            token: f(self.token),
            ping: f(self.ping),
            other: f(self.other),
        }
    }
}

/// [`Requests`] averaged over pulls.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct PerPull {
    pub(crate) total: f64,
    pub(crate) resolve_head: f64,
    pub(crate) manifest_get: f64,
    pub(crate) blob_head: f64,
    pub(crate) blob_get: f64,
    pub(crate) referrers: f64,
    pub(crate) token: f64,
    pub(crate) ping: f64,
    pub(crate) other: f64,
}

impl Bed {
    /// Starts the registry and containerd and writes the trust files; with
    /// `cosign_scopes`, pullgate also gets the requirements file of the
    /// cosign repositories.
    ///
    /// # Errors
    /// containerd does not start, or a file cannot be written.
    pub(crate) async fn start(cosign_scopes: bool) -> Result<Self> {
        Self::start_inner(cosign_scopes, false).await
    }

    /// [`Bed::start`] without the cosign scopes, plus a revoked signer: its
    /// root in the trust store next to the trusted one, its leaf (same
    /// subject as the trusted signer's) listed in a CRL written to
    /// [`Bed::crl_dir`], for `[revocation] mode = "offline"`.
    ///
    /// # Errors
    /// As [`Bed::start`].
    pub(crate) async fn start_with_revoked() -> Result<Self> {
        Self::start_inner(false, true).await
    }

    async fn start_inner(cosign_scopes: bool, with_revoked: bool) -> Result<Self> {
        let testbed = OciTestbed::start().await?;
        let ctrd = cri::connect(testbed.containerd.socket()).await?;
        let untrusted = TestPki::new("pullgate-bench-untrusted")?;
        let dir = testbed.dir();
        let revoked = if with_revoked {
            let revoked = TestPki::with_crl_url(SIGNER_CN, REVOKED_CRL_URL)?;
            testbed.trust_root(&revoked, "revoked-root")?;
            let crls = dir.join("crl");
            std::fs::create_dir_all(&crls)?;
            std::fs::write(crls.join("revoked.crl"), revoked.crl(true)?)?;
            Some(revoked)
        } else {
            None
        };
        let key = CosignKey::generate()?;
        let log = TestLog::generate()?;
        let key_path = dir.join("cosign.pub");
        key.write_public_key(&key_path)?;
        let root_path = dir.join("trusted_root.json");
        log.write_trusted_root(&root_path)?;
        let quote = |p: &Path| format!("{:?}", p.display().to_string());
        let host = testbed.host();
        let requirements = format!(
            "[[scope]]\nname = \"cosign-key\"\nregistry_scopes = [\"{host}/{COSIGN_KEY_REPO}\"]\n\
             signature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [{key}]\n\
             [[scope]]\nname = \"cosign-bundle\"\nregistry_scopes = [\"{host}/{COSIGN_BUNDLE_REPO}\"]\n\
             signature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [{key}]\ntrusted_root = {root}\n",
            key = quote(&key_path),
            root = quote(&root_path),
        );
        std::fs::write(dir.join("requirements.toml"), requirements)?;
        Ok(Self {
            testbed,
            ctrd,
            untrusted,
            revoked,
            cosign_key: key,
            cosign_log: log,
            cosign_scopes,
        })
    }

    pub(crate) fn host(&self) -> String {
        self.testbed.host()
    }

    /// The directory holding the revoked signer's CRL (listing its leaf).
    pub(crate) fn crl_dir(&self) -> std::path::PathBuf {
        self.dir().join("crl")
    }

    /// The bench's scratch directory (removed on drop).
    pub(crate) fn dir(&self) -> &Path {
        self.testbed.dir()
    }

    /// The TOML of a pullgate whose socket, config and log are in `dir`,
    /// with `extra` appended (e.g. `[cache]` and `[revocation]` tables).
    pub(crate) fn config_toml(&self, dir: &Path, extra: &str, frame_relay: bool) -> String {
        let mut cfg = self.pullgate_config(dir);
        cfg.extra = extra.to_owned();
        cfg.frame_relay = frame_relay;
        self.toml_with_requirements(&cfg)
    }

    /// A pullgate config in `<dir>/<name>/`.
    /// `[server] frame_relay` off unless a caller turns it on (the tests'
    /// `PULLGATE_E2E_FRAME_RELAY` does not reach the bench).
    fn pullgate_config(&self, dir: &Path) -> PullgateConfig {
        let mut cfg = self.testbed.pullgate_config_in(dir);
        cfg.frame_relay = false;
        cfg
    }

    /// `config`'s TOML with `[trust] requirements` naming the cosign scopes.
    fn toml_with_requirements(&self, config: &PullgateConfig) -> String {
        let path = self.dir().join("requirements.toml");
        if !self.cosign_scopes {
            return config.to_toml();
        }
        let quoted = format!("{:?}", path.display().to_string());
        config.to_toml().replacen(
            "[trust]\n",
            &format!("[trust]\nrequirements = {quoted}\n"),
            1,
        )
    }

    /// Starts `bin` as pullgate `name`, with long verdict TTLs (nothing
    /// expires during a run) and `[metrics]` on a free port. A binary that
    /// refuses the `[metrics]` key is started again without it.
    ///
    /// # Errors
    /// pullgate does not start even without `[metrics]`.
    pub(crate) async fn start_proxy(&self, bin: &Path, name: &str) -> Result<Proxy> {
        self.start_proxy_with(bin, name, &ProxySettings::default())
            .await
    }

    /// [`Bed::start_proxy`] with `settings` in its config.
    ///
    /// # Errors
    /// pullgate does not start even without `[metrics]`.
    pub(crate) async fn start_proxy_with(
        &self,
        bin: &Path,
        name: &str,
        settings: &ProxySettings,
    ) -> Result<Proxy> {
        let cache = settings.cache.clone().unwrap_or_else(|| {
            format!(
                "[cache]\nallow_ttl_secs = 86400\ndeny_ttl_secs = 86400\nmax_entries = {CACHE_ENTRIES}\n"
            )
        });
        let port = free_port().await?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = self.dir().join(name);
        tokio::fs::create_dir_all(&dir).await?;
        let mut cfg = self.pullgate_config(&dir);
        let prefetch = if settings.prefetch {
            "[prefetch]\nenabled = true\n"
        } else {
            ""
        };
        cfg.extra = format!("{cache}\n{prefetch}[metrics]\nlisten = \"{addr}\"\n");
        cfg.frame_relay = settings.frame_relay;
        let toml = self.toml_with_requirements(&cfg).replacen(
            "[registry]\n",
            &format!("[registry]\n{}", settings.registry),
            1,
        );
        let (process, metrics, metrics_note) = match Pullgate::start_binary(bin, &toml, &dir).await
        {
            Ok(p) => match metrics::scrape_text(addr).await {
                Ok(_) => (p, Some(addr), format!("scraped http://{addr}/metrics")),
                Err(e) => (p, None, format!("n/a: [metrics] accepted but {e:#}")),
            },
            Err(e) => {
                // The config error names the key (e.g. "unknown field `metrics`").
                let text = e.to_string();
                let why = text
                    .lines()
                    .find(|l| l.contains("unknown field"))
                    .or_else(|| text.lines().find(|l| l.contains("metrics")))
                    .unwrap_or("pullgate did not start with [metrics]")
                    .trim()
                    .to_owned();
                let dir = self.dir().join(format!("{name}-nometrics"));
                tokio::fs::create_dir_all(&dir).await?;
                let mut cfg = self.pullgate_config(&dir);
                cfg.extra = format!("{cache}\n{prefetch}");
                cfg.frame_relay = settings.frame_relay;
                let toml = self.toml_with_requirements(&cfg).replacen(
                    "[registry]\n",
                    &format!("[registry]\n{}", settings.registry),
                    1,
                );
                let p = Pullgate::start_binary(bin, &toml, &dir).await?;
                (
                    p,
                    None,
                    format!("n/a: this binary has no [metrics] ({why})"),
                )
            }
        };
        let ch = cri::connect(process.socket()).await?;
        Ok(Proxy {
            process,
            ch,
            metrics,
            metrics_note,
        })
    }

    /// Pushes every image of `specs` (at most [`PUSH_CONCURRENCY`] at once), in order.
    ///
    /// # Errors
    /// A push or a signature fails.
    pub(crate) async fn push_all(&self, specs: &[ImageSpec]) -> Result<Vec<Pushed>> {
        futures_util::stream::iter(specs.iter().map(|spec| self.push_one(spec)))
            .buffered(PUSH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn push_one(&self, spec: &ImageSpec) -> Result<Pushed> {
        let host = self.host();
        let image = match spec.signing {
            Signing::Notary => push_signed(&host, &self.testbed.pki, &self.untrusted, spec).await?,
            Signing::Revoked => {
                let revoked = self
                    .revoked
                    .as_ref()
                    .context("a revoked image needs Bed::start_with_revoked")?;
                let image = push_random_image(&host, &spec.repo, &spec.tag).await?;
                attach_signatures_by(&host, &spec.repo, &image, &[revoked]).await?;
                image
            }
            Signing::CosignKey | Signing::CosignBundle => {
                push_cosign(&host, &self.cosign_key, &self.cosign_log, spec).await?
            }
        };
        Ok(Pushed {
            by_tag: format!("{host}/{}:{}", spec.repo, spec.tag),
            by_digest: image.pinned_ref(&host, &spec.repo),
        })
    }
}

/// Pushes a new image signed once with the cosign key: a `.sig` tag
/// ([`Signing::CosignKey`]) or a logged bundle referrer ([`Signing::CosignBundle`]).
async fn push_cosign(
    host: &str,
    key: &CosignKey,
    log: &TestLog,
    spec: &ImageSpec,
) -> Result<PushedImage> {
    let image = push_random_image(host, &spec.repo, &spec.tag).await?;
    if spec.signing == Signing::CosignKey {
        attach_cosign_signature(host, &spec.repo, &image, key).await?;
    } else {
        let name = format!("{host}/{}", spec.repo);
        let statement = sign_statement(&name, &image.digest, SIGN_PREDICATE);
        let bundle = key_signed_bundle(key, log, &statement)?;
        attach_bundle(host, &spec.repo, &image, &bundle, BundleListing::Api).await?;
    }
    Ok(image)
}

async fn push_signed(
    host: &str,
    pki: &TestPki,
    untrusted: &TestPki,
    spec: &ImageSpec,
) -> Result<PushedImage> {
    let image = if spec.layers.is_empty() {
        push_random_image(host, &spec.repo, &spec.tag).await?
    } else {
        let built = build_layered_image(&spec.layers)?;
        push_layered_image(host, &spec.repo, &spec.tag, &built).await?
    };
    // The trusted signature last, after `sigs − 1` untrusted ones.
    let signers: Vec<&TestPki> = (1..=spec.sigs)
        .map(|k| if k == spec.sigs { pki } else { untrusted })
        .collect();
    attach_signatures_by(host, &spec.repo, &image, &signers).await?;
    Ok(image)
}
