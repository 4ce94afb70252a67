//! The usual end-to-end set-up in one value: a registry, a containerd that
//! pulls from it, a test PKI whose root is in a trust store, a strict trust
//! policy, and a config for pullgate in front of that containerd.
//!
//! One type, [`Testbed`], over either registry:
//! - [`DockerTestbed`] (`Testbed<DockerRegistry>`): docker-registry 2.8,
//!   which has no referrers API; signatures are attached through the
//!   referrers tag schema;
//! - [`OciTestbed`] (`Testbed<OciRegistry>`): the in-process OCI 1.1
//!   registry, with the referrers API, request counts and fault injection;
//!   signatures are attached through the referrers API.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use pullgate_tests::{cri, testbed::{DockerTestbed, OciTestbed}};
//! let bed = DockerTestbed::start().await?;
//! let signed = bed.push_signed("app/signed", "v1").await?;
//! let pullgate = bed.start_pullgate().await?;
//! let ch = cri::connect(pullgate.socket()).await?;
//! cri::pull(&ch, &bed.image_ref("app/signed", "v1")).await?;
//! // The same, with the in-process registry (and its fault injection).
//! let oci = OciTestbed::start().await?;
//! oci.push_signed("app/signed", "v1").await?;
//! # let _ = signed; Ok(()) }
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::containerd::{Containerd, RegistryLogin};
use crate::docker_registry::DockerRegistry;
use crate::image::{push_random_image, PushedImage};
use crate::oci_registry::OciRegistry;
use crate::pullgate::{Pullgate, PullgateConfig};
use crate::signer::{attach_signature, PushedSignature, ReferrersMode};
use pullgate_testkit::notation::trust_policy_json;
use pullgate_testkit::TestPki;

/// Name of the trust store the testbed writes (`ca:e2e`).
pub const STORE: &str = "e2e";

/// Common name of the testbed's signing leaf.
pub const SIGNER_CN: &str = "pullgate-e2e";

/// A registry a [`Testbed`] can run.
pub trait BedRegistry: Sized + std::fmt::Debug {
    /// How [`Testbed::sign`] attaches signatures to this registry.
    const REFERRERS: ReferrersMode;

    /// Starts the registry.
    fn start() -> impl Future<Output = Result<Self>> + Send;

    /// `host:port`.
    fn host(&self) -> String;
}

impl BedRegistry for DockerRegistry {
    const REFERRERS: ReferrersMode = ReferrersMode::TagSchema;

    fn start() -> impl Future<Output = Result<Self>> + Send {
        DockerRegistry::start()
    }

    fn host(&self) -> String {
        DockerRegistry::host(self)
    }
}

impl BedRegistry for OciRegistry {
    const REFERRERS: ReferrersMode = ReferrersMode::Api;

    async fn start() -> Result<Self> {
        Ok(OciRegistry::start().await)
    }

    fn host(&self) -> String {
        OciRegistry::host(self)
    }
}

/// A registry, a containerd and trust material in one temp dir.
#[derive(Debug)]
pub struct Testbed<R> {
    /// The registry images are pushed to.
    pub registry: R,
    /// containerd, able to pull from [`Testbed::registry`].
    pub containerd: Containerd,
    /// The signer whose root is in trust store `ca:e2e`.
    pub pki: TestPki,
    dir: tempfile::TempDir,
}

/// A [`Testbed`] over docker-registry (referrers tag schema).
pub type DockerTestbed = Testbed<DockerRegistry>;

/// A [`Testbed`] over the in-process OCI 1.1 registry (referrers API, fault injection).
pub type OciTestbed = Testbed<OciRegistry>;

impl<R: BedRegistry> Testbed<R> {
    /// Starts registry and containerd, makes an ECDSA P-256 PKI, writes its
    /// root to `<dir>/truststore/x509/ca/e2e/root.crt` and a strict trust
    /// policy for scope `*` trusting its leaf to `<dir>/trustpolicy.json`.
    ///
    /// # Errors
    /// A process does not start, or a file cannot be written.
    pub async fn start() -> Result<Self> {
        Self::start_with_login(None).await
    }

    /// [`Testbed::start`], with containerd logged in to the registry as
    /// `(username, password)` when given (for a registry that demands it).
    ///
    /// # Errors
    /// As [`Testbed::start`].
    pub async fn start_with_login(login: Option<(&str, &str)>) -> Result<Self> {
        Self::start_inner(login, None).await
    }

    /// [`Testbed::start`], with containerd's sandbox (pause) image set to
    /// `<registry>/<sandbox>` (e.g. `pause:3.9`), to be pushed by the test.
    ///
    /// # Errors
    /// As [`Testbed::start`].
    pub async fn start_with_sandbox_image(sandbox: &str) -> Result<Self> {
        Self::start_inner(None, Some(sandbox)).await
    }

    async fn start_inner(login: Option<(&str, &str)>, sandbox: Option<&str>) -> Result<Self> {
        let registry = R::start().await?;
        let logins: Vec<RegistryLogin> = login
            .map(|(username, password)| RegistryLogin {
                host: registry.host(),
                username: username.to_owned(),
                password: password.to_owned(),
            })
            .into_iter()
            .collect();
        let sandbox_image = sandbox.map(|s| format!("{}/{s}", registry.host()));
        let containerd =
            Containerd::start_with(&[registry.host()], &logins, sandbox_image.as_deref()).await?;
        let pki = TestPki::new(SIGNER_CN)?;
        let dir = tempfile::Builder::new().prefix("pullgate-e2e-").tempdir()?;
        pki.write_trust_store(&dir.path().join("truststore"), STORE)?;
        let bed = Self {
            registry,
            containerd,
            pki,
            dir,
        };
        bed.write_trust_policy(&["*"], &[&bed.pki])?;
        Ok(bed)
    }

    /// The registry's `host:port`.
    pub fn host(&self) -> String {
        self.registry.host()
    }

    /// The temp dir holding trust store, trust policy and pullgate's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/trustpolicy.json`.
    pub fn trust_policy_path(&self) -> PathBuf {
        self.dir().join("trustpolicy.json")
    }

    /// `<host>/<repo>:<tag>`.
    pub fn image_ref(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }

    /// `<host>/<repo>` (a registry scope).
    pub fn scope(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host())
    }

    /// (Re)writes the trust policy: one strict statement over `scopes`,
    /// trust store `ca:e2e`, trusting the leaves of `signers` by subject.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_trust_policy(&self, scopes: &[&str], signers: &[&TestPki]) -> Result<()> {
        let identities: Vec<String> = signers.iter().map(|p| p.trusted_identity()).collect();
        let ids: Vec<&str> = identities.iter().map(String::as_str).collect();
        let doc = trust_policy_json(scopes, STORE, &ids);
        std::fs::write(self.trust_policy_path(), serde_json::to_vec_pretty(&doc)?)?;
        Ok(())
    }

    /// Adds `pki`'s root to trust store `ca:e2e` as `<file_stem>.crt`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn trust_root(&self, pki: &TestPki, file_stem: &str) -> Result<()> {
        let dir = self.dir().join("truststore/x509/ca").join(STORE);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{file_stem}.crt")), pki.root_pem())?;
        Ok(())
    }

    /// Pushes a unique image as `repo:tag`, unsigned.
    ///
    /// # Errors
    /// The push fails.
    pub async fn push_unsigned(&self, repo: &str, tag: &str) -> Result<PushedImage> {
        push_random_image(&self.host(), repo, tag).await
    }

    /// Pushes a unique image as `repo:tag` and signs it with the testbed's PKI.
    ///
    /// # Errors
    /// The push or the signing fails.
    pub async fn push_signed(&self, repo: &str, tag: &str) -> Result<PushedImage> {
        let image = self.push_unsigned(repo, tag).await?;
        self.sign(repo, &image, &self.pki).await?;
        Ok(image)
    }

    /// Signs `image` in `repo` with `pki` (JWS; through the referrers API of
    /// the OCI registry, the referrers tag schema of docker-registry).
    ///
    /// # Errors
    /// The signing or the push fails.
    pub async fn sign(
        &self,
        repo: &str,
        image: &PushedImage,
        pki: &TestPki,
    ) -> Result<PushedSignature> {
        let envelope = pki.sign_jws(&image.descriptor());
        attach_signature(&self.host(), repo, image, &envelope, R::REFERRERS).await
    }

    /// A pullgate config for this testbed: socket `<dir>/pullgate.sock`,
    /// upstream containerd, the testbed's trust files, the registry as plain
    /// HTTP, containerd's `hosts_dir`.
    pub fn pullgate_config(&self) -> PullgateConfig {
        self.pullgate_config_in(self.dir())
    }

    /// [`Testbed::pullgate_config`] with socket, config and log in `dir`
    /// (for several pullgates on one testbed); the trust files stay the
    /// testbed's.
    pub fn pullgate_config_in(&self, dir: &Path) -> PullgateConfig {
        let mut c = PullgateConfig::in_dir(dir, self.containerd.socket());
        c.policy = self.trust_policy_path();
        c.store = self.dir().join("truststore");
        c.plain_http = vec![self.host()];
        c.hosts_dir = Some(self.containerd.hosts_dir().to_owned());
        c
    }

    /// Starts pullgate with [`Testbed::pullgate_config`].
    ///
    /// # Errors
    /// As [`Pullgate::start`].
    pub async fn start_pullgate(&self) -> Result<Pullgate> {
        self.start_pullgate_with(&self.pullgate_config()).await
    }

    /// Starts pullgate with `config`.
    ///
    /// # Errors
    /// As [`Pullgate::start`].
    pub async fn start_pullgate_with(&self, config: &PullgateConfig) -> Result<Pullgate> {
        Pullgate::start_with(config, self.dir()).await
    }
}
