//! `[trust] source`: three pullgate instances follow one signed policy
//! bundle in a registry, switch together to a newly pushed signed version,
//! all refuse an unsigned (then wrongly signed) one while keeping the old, and one restarted
//! with the registry down enforces the last good bundle from disk.
//!
//! The bundle is pushed as `oras push --artifact-type
//! application/vnd.pullgate.policy.bundle.v1` would push it (one layer per
//! file, named by `org.opencontainers.image.title`) and signed as notation
//! signs an image (a Notary JWS referring to the bundle's manifest).

use std::path::{Path, PathBuf};
use std::time::Duration;

use pullgate_testkit::notation::trust_policy_json;
use pullgate_testkit::TestPki;
use pullgate_tests::cri;
use pullgate_tests::distribution::Registry;
use pullgate_tests::image::{Descriptor, PushedImage, OCI_EMPTY, OCI_MANIFEST};
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::testbed::{OciTestbed, STORE};
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

const ARTIFACT_TYPE: &str = "application/vnd.pullgate.policy.bundle.v1";
const BUNDLE_REPO: &str = "policy/fleet";
const BUNDLE_TAG: &str = "prod";
/// How long an instance may take to follow the source (polls every second).
const FOLLOW_WAIT: Duration = Duration::from_secs(60);

/// Pushes a bundle trusting `identities` under trust store `ca:e2e` holding
/// `roots`, as `BUNDLE_REPO:BUNDLE_TAG`.
async fn push_bundle(
    host: &str,
    identities: &[&TestPki],
    roots: &[&TestPki],
) -> anyhow::Result<PushedImage> {
    let ids: Vec<String> = identities.iter().map(|p| p.trusted_identity()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let policy = serde_json::to_vec_pretty(&trust_policy_json(&["*"], STORE, &ids))?;
    let mut files: Vec<(String, Vec<u8>)> = vec![("trustpolicy.json".to_owned(), policy)];
    for (i, root) in roots.iter().enumerate() {
        files.push((
            format!("truststore/x509/ca/{STORE}/root-{i}.crt"),
            root.root_pem().as_bytes().to_vec(),
        ));
    }
    let registry = Registry::new(host);
    let config = b"{}".to_vec();
    registry.push_blob(BUNDLE_REPO, &config).await?;
    let mut layers = Vec::new();
    for (path, bytes) in &files {
        registry.push_blob(BUNDLE_REPO, bytes).await?;
        let mut layer = Descriptor::of("application/vnd.oci.image.layer.v1.tar", bytes).to_json();
        layer["annotations"] = json!({ "org.opencontainers.image.title": path });
        layers.push(layer);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": Descriptor::of(OCI_EMPTY, &config).to_json(),
        "layers": layers,
    }))?;
    let digest = registry
        .put_manifest(BUNDLE_REPO, BUNDLE_TAG, OCI_MANIFEST, &manifest)
        .await?
        .digest;
    Ok(PushedImage {
        digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
    })
}

/// Writes a bundle directory trusting `identities`, with `roots` in
/// `ca:e2e`, and pushes it with `pullgate policy push DIR oci://…` (the
/// command operators use); returns what was pushed.
async fn push_bundle_with_cli(
    dir: &Path,
    host: &str,
    identities: &[&TestPki],
    roots: &[&TestPki],
) -> anyhow::Result<PushedImage> {
    let digest = cli_push(dir, host, identities, roots, None)?;
    let fetched = Registry::new(host)
        .get_manifest(BUNDLE_REPO, BUNDLE_TAG)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the pushed tag is missing"))?;
    anyhow::ensure!(
        pullgate_tests::signer::digest_of(&fetched.body) == digest,
        "the tag does not name the digest printed"
    );
    Ok(PushedImage {
        digest,
        size: fetched.body.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest: fetched.body.to_vec(),
    })
}

/// Writes the bundle directory and runs `pullgate policy push` on it, with
/// `auth_file` as `[registry] auth_file` when given; returns the digest it printed.
fn cli_push(
    dir: &Path,
    host: &str,
    identities: &[&TestPki],
    roots: &[&TestPki],
    auth_file: Option<&Path>,
) -> anyhow::Result<String> {
    let ids: Vec<String> = identities.iter().map(|p| p.trusted_identity()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let store = dir.join(format!("truststore/x509/ca/{STORE}"));
    std::fs::create_dir_all(&store)?;
    std::fs::write(
        dir.join("trustpolicy.json"),
        serde_json::to_vec_pretty(&trust_policy_json(&["*"], STORE, &ids))?,
    )?;
    for (i, root) in roots.iter().enumerate() {
        std::fs::write(store.join(format!("root-{i}.crt")), root.root_pem())?;
    }
    let config = dir.join("push.toml");
    let mut toml = format!("[registry]\nplain_http = [{host:?}]\n");
    if let Some(a) = auth_file {
        toml.push_str(&format!("auth_file = {:?}\n", a.display().to_string()));
    }
    std::fs::write(&config, toml)?;
    let out = std::process::Command::new(pullgate_tests::pullgate::binary_path())
        .args(["policy", "push"])
        .arg(dir)
        .arg(format!("oci://{host}/{BUNDLE_REPO}:{BUNDLE_TAG}"))
        .arg("--config")
        .arg(&config)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "policy push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// `pullgate policy check CONFIG`'s output (it must succeed).
fn policy_check(config: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(pullgate_tests::pullgate::binary_path())
        .args(["policy", "check"])
        .arg(config)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One instance's directory, config and process.
struct Instance {
    dir: PathBuf,
    toml: String,
    pullgate: Pullgate,
    channel: Channel,
}

impl Instance {
    async fn start(dir: PathBuf, toml: String) -> anyhow::Result<Self> {
        let pullgate = Pullgate::start(&toml, &dir).await?;
        let channel = cri::connect(pullgate.socket()).await?;
        Ok(Self {
            dir,
            toml,
            pullgate,
            channel,
        })
    }

    async fn restart(self) -> anyhow::Result<Self> {
        let Self {
            dir,
            toml,
            pullgate,
            channel,
        } = self;
        drop(channel);
        drop(pullgate);
        Self::start(dir, toml).await
    }

    /// How many log lines hold `needle`.
    fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.pullgate.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits (bounded) until the log holds `needle` more than `before` times.
    async fn wait_for_more(&self, needle: &str, before: usize) {
        let start = tokio::time::Instant::now();
        while self.log_count(needle) <= before {
            assert!(
                start.elapsed() < FOLLOW_WAIT,
                "log never said {needle:?} again:\n{}",
                self.pullgate.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether a pull of `image` through this instance is allowed (denied:
    /// `PermissionDenied`; anything else fails the test).
    async fn allows(&self, image: &str) -> bool {
        match cri::pull(&self.channel, image).await {
            Ok(_) => true,
            Err(s) if s.code() == Code::PermissionDenied => false,
            Err(s) => panic!("{image}: {s:?}\n{}", self.pullgate.log_tail()),
        }
    }

    /// Waits (bounded) until each of `images` is allowed (`true`) or denied as given.
    async fn wait_for(&self, images: &[(&str, bool)]) {
        let start = tokio::time::Instant::now();
        loop {
            let mut all = true;
            for (image, want) in images {
                all &= self.allows(image).await == *want;
            }
            if all {
                return;
            }
            assert!(
                start.elapsed() < FOLLOW_WAIT,
                "{} never decided {images:?}:\n{}",
                self.dir.display(),
                self.pullgate.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Writes the bootstrap trust (a trust policy over the bundle's repository
/// trusting `signer`, and its trust store) under `dir`; returns the TOML
/// `[trust.source_verification]` table naming them.
fn bootstrap(dir: &Path, scope: &str, signer: &TestPki) -> anyhow::Result<String> {
    let policy = dir.join("trustpolicy.json");
    let store = dir.join("truststore");
    signer.write_trust_store(&store, "policy")?;
    let doc = trust_policy_json(&[scope], "policy", &[&signer.trusted_identity()]);
    std::fs::write(&policy, serde_json::to_vec_pretty(&doc)?)?;
    Ok(format!(
        "[trust.source_verification]\npolicy = {:?}\nstore = {:?}\n",
        policy.display().to_string(),
        store.display().to_string()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn three_instances_follow_one_signed_policy_bundle_and_refuse_an_unsigned_one() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let team_b = TestPki::new("team-b").unwrap();
    let policy_signer = TestPki::new("policy-signer").unwrap();
    let stranger = TestPki::new("stranger").unwrap();

    // `app/a` is signed by the testbed's signer, `app/b` by team B.
    bed.push_signed("app/a", "v1").await.unwrap();
    let b = bed.push_unsigned("app/b", "v1").await.unwrap();
    bed.sign("app/b", &b, &team_b).await.unwrap();
    let a = bed.image_ref("app/a", "v1");
    let b = bed.image_ref("app/b", "v1");

    // v1 trusts the testbed's signer only, signed by the policy signer.
    let v1 = push_bundle(&host, &[&bed.pki], &[&bed.pki, &team_b])
        .await
        .unwrap();
    bed.sign(BUNDLE_REPO, &v1, &policy_signer).await.unwrap();

    let boot = bed.dir().join("bootstrap");
    std::fs::create_dir_all(&boot).unwrap();
    let verification = bootstrap(&boot, &bed.scope(BUNDLE_REPO), &policy_signer).unwrap();
    let mut instances = Vec::new();
    for n in 0..3 {
        let dir = bed.dir().join(format!("node-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = bed.pullgate_config();
        config.socket = dir.join("pullgate.sock");
        config.extra = format!(
            "{verification}\n[cache]\nstate_dir = {:?}\n",
            dir.join("state").display().to_string()
        );
        let toml = config.to_toml().replacen(
            "[trust]\n",
            &format!(
                "[trust]\nsource = \"oci://{host}/{BUNDLE_REPO}:{BUNDLE_TAG}\"\nsource_poll_seconds = 1\n"
            ),
            1,
        );
        instances.push(Instance::start(dir, toml).await.unwrap());
    }
    for i in &instances {
        i.wait_for(&[(&a, true), (&b, false)]).await;
    }

    // v2 trusts team B too, pushed with `pullgate policy push`: every instance switches.
    let bundle_dir = bed.dir().join("bundle-v2");
    let v2 = push_bundle_with_cli(
        &bundle_dir,
        &host,
        &[&bed.pki, &team_b],
        &[&bed.pki, &team_b],
    )
    .await
    .unwrap();
    bed.sign(BUNDLE_REPO, &v2, &policy_signer).await.unwrap();
    for i in &instances {
        i.wait_for(&[(&a, true), (&b, true)]).await;
    }

    // `pullgate policy check` explains the bundle in force, not `[trust]`'s files.
    let check = policy_check(instances[0].pullgate.config_path()).unwrap();
    let v2_dir = format!(
        "policy-source/bundles/{}/tree",
        v2.digest.trim_start_matches("sha256:")
    );
    assert!(check.contains("follows oci://"), "{check}");
    assert!(check.contains(&v2_dir), "{check}");

    // v3 trusts only a stranger and is unsigned: refused everywhere, v2 stays.
    let refused = "policy bundle refused: its signature does not meet";
    let before: Vec<usize> = instances.iter().map(|i| i.log_count(refused)).collect();
    let v3 = push_bundle(&host, &[&stranger], &[&stranger])
        .await
        .unwrap();
    for (i, n) in instances.iter().zip(&before) {
        i.wait_for_more(refused, *n).await;
        let log = std::fs::read_to_string(i.pullgate.log_path()).unwrap();
        let line = log.lines().rfind(|l| l.contains(refused)).unwrap();
        assert!(
            line.contains(&v3.digest),
            "the refusal names the bundle: {line}"
        );
        assert!(line.contains("no Notary Project signature"), "{line}");
        assert!(
            i.allows(&a).await && i.allows(&b).await,
            "v2 stopped serving"
        );
    }

    // Signed, but by a signer the bootstrap trust does not name: refused too.
    let untrusted = "certificate chain does not contain any certificate of the trust stores";
    let before: Vec<usize> = instances.iter().map(|i| i.log_count(untrusted)).collect();
    bed.sign(BUNDLE_REPO, &v3, &stranger).await.unwrap();
    for (i, n) in instances.iter().zip(&before) {
        i.wait_for_more(untrusted, *n).await;
        assert!(
            i.allows(&a).await && i.allows(&b).await,
            "v2 stopped serving"
        );
    }

    // One instance restarts while the registry is down: v2, from disk.
    let first = instances.remove(0);
    let last_good = "enforcing the last good policy bundle from disk";
    let said = first.log_count(last_good);
    bed.registry.set_down(true);
    let first = first.restart().await.unwrap();
    first.wait_for_more(last_good, said).await;
    let log = std::fs::read_to_string(first.pullgate.log_path()).unwrap();
    let line = log.lines().rfind(|l| l.contains(last_good)).unwrap();
    assert!(line.contains(&v2.digest), "{line}");
    // The registry is back, its tag still names the unsigned v3: refused,
    // and the decisions are v2's (v1 denied app/b; v3 would deny both).
    let refusals = first.log_count(refused);
    bed.registry.set_down(false);
    first.wait_for_more(refused, refusals).await;
    assert!(first.allows(&a).await, "{}", first.pullgate.log_tail());
    assert!(first.allows(&b).await, "{}", first.pullgate.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn without_a_last_good_bundle_and_no_registry_every_pull_is_denied() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let policy_signer = TestPki::new("policy-signer").unwrap();
    bed.push_signed("app/a", "v1").await.unwrap();
    let boot = bed.dir().join("bootstrap");
    std::fs::create_dir_all(&boot).unwrap();
    let verification = bootstrap(&boot, &bed.scope(BUNDLE_REPO), &policy_signer).unwrap();
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "{verification}\n[cache]\nstate_dir = {:?}\n",
        bed.dir().join("state").display().to_string()
    );
    // No bundle was ever pushed: the tag does not resolve.
    let toml = config.to_toml().replacen(
        "[trust]\n",
        &format!("[trust]\nsource = \"oci://{host}/{BUNDLE_REPO}:{BUNDLE_TAG}\"\nsource_poll_seconds = 1\n"),
        1,
    );
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    pullgate
        .wait_for_log("no last good policy bundle on disk: denying every pull")
        .await
        .unwrap();
    pullgate
        .wait_for_log("policy source unreachable")
        .await
        .unwrap();
    let check = policy_check(pullgate.config_path()).unwrap();
    assert!(check.contains("every pull is denied"), "{check}");
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    // The image is signed by the signer the local trust policy names, which
    // does not count: only a verified bundle does.
    let status = cri::pull(&ch, &bed.image_ref("app/a", "v1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("no-policy-bundle-yet"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn policy_push_uses_the_auth_file_credentials_of_its_registry() {
    use pullgate_tests::oci_registry::{AuthMode, OciRegistry};
    let registry = OciRegistry::start().await;
    let host = registry.host();
    registry.set_auth(AuthMode::Token {
        basic: Some(("ops".to_owned(), "pw".to_owned())),
        refresh_token: None,
        expires_in: 300,
    });
    let dir = tempfile::tempdir().unwrap();
    let signer = TestPki::new("pusher").unwrap();
    // Without credentials the registry refuses, and the command says so.
    let err = cli_push(dir.path(), &host, &[&signer], &[&signer], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("policy push failed"), "{err}");
    assert_eq!(registry.tag_digest(BUNDLE_REPO, BUNDLE_TAG), None);
    // With the auth file's entry for the host, the bundle lands under its tag.
    let auth = dir.path().join("auth.json");
    std::fs::write(
        &auth,
        json!({"auths": {host.clone(): {"auth": "b3BzOnB3"}}}).to_string(),
    )
    .unwrap();
    let digest = cli_push(dir.path(), &host, &[&signer], &[&signer], Some(&auth)).unwrap();
    assert_eq!(registry.tag_digest(BUNDLE_REPO, BUNDLE_TAG), Some(digest));
}
