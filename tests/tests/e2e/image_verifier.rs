//! pullgate as containerd 2.x's image verifier, called exactly as containerd's
//! `bindir` plugin calls it (see `pullgate_tests::bindir`: containerd 2.x is
//! not installable here, so that caller stands in for it): signed allowed,
//! unsigned denied with the reason, the `-name` of a signed image with the
//! `-digest` of an unsigned one denied, an index verified by its own digest,
//! a slow registry, standalone and with `pullgate serve` answering on its
//! verifier socket; and with containerd, one verification for a verifier
//! call and a CRI pull of one digest.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use pullgate_testkit::notation::trust_policy_json;
use pullgate_testkit::TestPki;
use pullgate_tests::bindir::{Bindir, Judgement};
use pullgate_tests::cri;
use pullgate_tests::image::{push_random_image, push_random_index, PushedImage};
use pullgate_tests::oci_registry::OciRegistry;
use pullgate_tests::pullgate::{binary_path, Pullgate, PullgateConfig};
use pullgate_tests::signer::{attach_signature, ReferrersMode};
use pullgate_tests::testbed::{OciTestbed, SIGNER_CN, STORE};

/// The statement name `signer::trust_policy_json` writes.
const STATEMENT: &str = "pullgate-test";

/// An in-process OCI registry, a PKI trusted by a strict policy, and a
/// `bin_dir` holding `pullgate` installed as the README says (a symlink).
struct Bed {
    registry: OciRegistry,
    pki: TestPki,
    dir: tempfile::TempDir,
}

impl Bed {
    async fn start() -> Result<Self> {
        let registry = OciRegistry::start().await;
        let pki = TestPki::new(SIGNER_CN)?;
        let dir = tempfile::Builder::new()
            .prefix("pullgate-verifier-")
            .tempdir()?;
        pki.write_trust_store(&dir.path().join("truststore"), STORE)?;
        let bed = Self { registry, pki, dir };
        bed.write_policy(&["*"])?;
        let bin = bed.bin_dir();
        std::fs::create_dir(&bin)?;
        std::os::unix::fs::symlink(binary_path(), bin.join("pullgate"))?;
        Ok(bed)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn host(&self) -> String {
        self.registry.host()
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir().join("image-verifier-bin")
    }

    fn write_policy(&self, scopes: &[&str]) -> Result<()> {
        let identity = self.pki.trusted_identity();
        let doc = trust_policy_json(scopes, STORE, &[&identity]);
        std::fs::write(
            self.dir().join("trustpolicy.json"),
            serde_json::to_vec_pretty(&doc)?,
        )?;
        Ok(())
    }

    /// The config `pullgate serve` and the verifier share (`<dir>/pullgate.toml`,
    /// the file `Pullgate::start` writes too); the verifier socket is the
    /// default, `<dir>/verifier.sock`, beside `<dir>/pullgate.sock`.
    fn config(&self, extra: &str) -> PullgateConfig {
        let mut c = PullgateConfig::in_dir(self.dir(), &self.dir().join("no-containerd.sock"));
        c.plain_http = vec![self.host()];
        c.extra = extra.to_owned();
        c
    }

    fn write_config(&self, config: &PullgateConfig) -> Result<()> {
        std::fs::write(self.dir().join("pullgate.toml"), config.to_toml())?;
        Ok(())
    }

    /// containerd's bindir plugin over [`Bed::bin_dir`], its environment
    /// holding only `PATH` and `PULLGATE_CONFIG` (containerd passes no credentials).
    fn bindir(&self) -> Bindir {
        Bindir::new(
            &self.bin_dir(),
            vec![
                ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
                (
                    "PULLGATE_CONFIG".into(),
                    self.dir().join("pullgate.toml").display().to_string(),
                ),
            ],
        )
    }

    async fn push_unsigned(&self, repo: &str, tag: &str) -> Result<PushedImage> {
        push_random_image(&self.host(), repo, tag).await
    }

    async fn sign(&self, repo: &str, image: &PushedImage) -> Result<()> {
        let envelope = self.pki.sign_jws(&image.descriptor());
        attach_signature(&self.host(), repo, image, &envelope, ReferrersMode::Api).await?;
        Ok(())
    }

    async fn push_signed(&self, repo: &str, tag: &str) -> Result<PushedImage> {
        let image = self.push_unsigned(repo, tag).await?;
        self.sign(repo, &image).await?;
        Ok(image)
    }

    fn name(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }
}

/// The descriptor containerd's resolver returns for `image` (what it writes to stdin).
fn desc(image: &PushedImage) -> serde_json::Value {
    serde_json::json!({
        "mediaType": image.media_type,
        "digest": image.digest,
        "size": image.size,
    })
}

fn assert_allowed(j: &Judgement, digest: &str) {
    assert!(j.ok, "{}", j.reason);
    let want = format!("pullgate => allowed {digest} by {STATEMENT} (CN={SIGNER_CN}");
    assert!(j.reason.starts_with(&want), "{}\nwanted: {want}", j.reason);
}

fn assert_no_signature(j: &Judgement, name: &str, digest: &str) {
    assert!(!j.ok, "{}", j.reason);
    let want = format!(
        "verifier pullgate rejected image (exit code 1): image {name}@{digest} ({digest}) denied by policy \"{STATEMENT}\": no Notary Project signature of this digest was found in the registry"
    );
    assert!(j.reason.starts_with(&want), "{}\nwanted: {want}", j.reason);
}

/// The cases every mode must decide alike: signed, unsigned, a signed
/// image's name with an unsigned image's digest, a multi-arch index signed
/// (by the index digest) and one whose only signature is on the platform
/// image, and a descriptor that contradicts `-digest`.
async fn the_contract_cases(bed: &Bed, log: &dyn Fn() -> String) -> Result<()> {
    let bindir = bed.bindir();
    let signed = bed.push_signed("app/signed", "v1").await?;
    let unsigned = bed.push_unsigned("app/unsigned", "v1").await?;
    let (signed_name, unsigned_name) =
        (bed.name("app/signed", "v1"), bed.name("app/unsigned", "v1"));

    let j = bindir.verify_image(&signed_name, &desc(&signed)).await?;
    assert_allowed(&j, &signed.digest);

    let j = bindir
        .verify_image(&unsigned_name, &desc(&unsigned))
        .await?;
    assert_no_signature(&j, &unsigned_name, &unsigned.digest);

    // A signed image's name, an unsigned image's digest: the digest decides.
    let swapped = bed.push_unsigned("app/signed", "other").await?;
    let j = bindir.verify_image(&signed_name, &desc(&swapped)).await?;
    assert_no_signature(&j, &signed_name, &swapped.digest);

    // Multi-arch: the index's own digest is verified, as the CRI proxy
    // verifies the index a tag resolves to. A signature on the platform
    // image alone does not sign the index.
    let index = push_random_index(&bed.host(), "app/multi", "v1").await?;
    bed.sign("app/multi", &index.child).await?;
    let multi = bed.name("app/multi", "v1");
    let j = bindir.verify_image(&multi, &desc(&index.index)).await?;
    assert_no_signature(&j, &multi, &index.index.digest);
    let signed_index = push_random_index(&bed.host(), "app/multi", "v2").await?;
    bed.sign("app/multi", &signed_index.index).await?;
    let j = bindir
        .verify_image(&bed.name("app/multi", "v2"), &desc(&signed_index.index))
        .await?;
    assert_allowed(&j, &signed_index.index.digest);

    // The descriptor on stdin names another digest than -digest. (The
    // control: the same shim with an agreeing descriptor is allowed.)
    let j = verify_with_digest(&bindir, &signed_name, &signed.digest, &desc(&signed)).await?;
    assert_allowed(&j, &signed.digest);
    let mut lying = desc(&signed);
    lying["digest"] = serde_json::Value::String(unsigned.digest.clone());
    let j = verify_with_digest(&bindir, &signed_name, &signed.digest, &lying).await?;
    assert!(!j.ok, "{}\n{}", j.reason, log());
    assert!(
        j.reason.contains(&format!(
            "denied by pullgate's image verifier: the descriptor on stdin names {}, not -digest {}",
            unsigned.digest, signed.digest
        )),
        "{}",
        j.reason
    );
    Ok(())
}

/// One verifier call with `-digest` given apart from the descriptor (for a
/// descriptor that contradicts it; containerd always passes its digest).
async fn verify_with_digest(
    bindir: &Bindir,
    name: &str,
    digest: &str,
    desc: &serde_json::Value,
) -> Result<Judgement> {
    // The bindir runner takes -digest from the descriptor: run a shim that
    // passes pullgate containerd's arguments with the digest replaced.
    let dir = tempfile::tempdir()?;
    let shim = dir.path().join("pullgate");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec {} -name \"$2\" -digest {digest} -stdin-media-type \"$6\"\n",
            binary_path().display()
        ),
    )?;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755))?;
    let mut b = bindir.clone();
    b.bin_dir = dir.path().to_owned();
    // A process another test thread forks while the shim's write fd is open
    // holds a copy of it until that process execs: exec'ing the shim then
    // fails with ETXTBSY. An artifact of writing it in this process (a
    // verifier containerd runs is installed beforehand): try again.
    let mut tries = 0;
    loop {
        match b.verify_image(name, desc).await {
            Err(e) if tries < 5 && text_file_busy(&e) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            judged => return judged,
        }
    }
}

/// Whether `e` was an exec refused with ETXTBSY.
fn text_file_busy(e: &anyhow::Error) -> bool {
    const ETXTBSY: i32 = 26;
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.raw_os_error() == Some(ETXTBSY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn the_contract_standalone() {
    let bed = Bed::start().await.unwrap();
    bed.write_config(&bed.config("")).unwrap();
    the_contract_cases(&bed, &String::new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn the_contract_with_pullgate_serve_answering() {
    let bed = Bed::start().await.unwrap();
    let audit = bed.dir().join("audit.log");
    let config = bed.config(&format!(
        "[audit]\npath = {:?}\n",
        audit.display().to_string()
    ));
    let pullgate = Pullgate::start_with(&config, bed.dir()).await.unwrap();
    let socket = bed.dir().join("verifier.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the verifier socket is root-only");
    the_contract_cases(&bed, &|| pullgate.log_tail())
        .await
        .unwrap();
    // The daemon decided: its audit log holds the verifier's decisions.
    let text = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(
        text.lines().count() >= 5
            && text.contains("\"verdict\":\"deny\"")
            && text.contains("\"verdict\":\"allow\""),
        "{text}\n{}",
        pullgate.log_tail()
    );
}

/// With the daemon, repeated calls share its verdict cache: one referrers
/// request; standalone, each call verifies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn calls_share_the_daemon_s_verdict_cache_and_standalone_ones_do_not() {
    let bed = Bed::start().await.unwrap();
    let config = bed.config("");
    bed.write_config(&config).unwrap();
    let image = bed.push_signed("app/cached", "v1").await.unwrap();
    let name = bed.name("app/cached", "v1");
    let bindir = bed.bindir();

    bed.registry.reset_counts();
    for _ in 0..3 {
        assert_allowed(
            &bindir.verify_image(&name, &desc(&image)).await.unwrap(),
            &image.digest,
        );
    }
    assert_eq!(
        bed.registry.counts().referrers,
        3,
        "standalone: each call verifies"
    );

    let pullgate = Pullgate::start_with(&config, bed.dir()).await.unwrap();
    bed.registry.reset_counts();
    for _ in 0..3 {
        let j = bindir.verify_image(&name, &desc(&image)).await.unwrap();
        assert_allowed(&j, &image.digest);
    }
    assert_eq!(
        bed.registry.counts().referrers,
        1,
        "one verification in the daemon for three calls\n{}",
        pullgate.log_tail()
    );
}

/// Once the daemon answered, its answer is final: a denial is not retried
/// in the verifier's own process (which, reading newer files, would allow).
/// With the daemon gone (its socket refusing), the verifier decides itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn the_daemon_s_denial_is_final_and_without_a_daemon_the_verifier_decides() {
    let bed = Bed::start().await.unwrap();
    bed.write_policy(&["r.example/elsewhere"]).unwrap();
    let config = bed.config("");
    let pullgate = Pullgate::start(
        &config
            .to_toml()
            .replacen("[trust]\n", "[trust]\nreload_interval_ms = 0\n", 1),
        bed.dir(),
    )
    .await
    .unwrap();
    let image = bed.push_signed("app/final", "v1").await.unwrap();
    let name = bed.name("app/final", "v1");
    // The files now allow it; the daemon, not reloading, still denies.
    bed.write_policy(&["*"]).unwrap();
    let j = bed
        .bindir()
        .verify_image(&name, &desc(&image))
        .await
        .unwrap();
    assert!(
        !j.ok,
        "fell back to deciding in-process after the daemon answered: {}",
        j.reason
    );
    assert!(
        j.reason
            .contains("no trust policy statement has a registry scope that covers"),
        "{}\n{}",
        j.reason,
        pullgate.log_tail()
    );
    // SIGKILL leaves the socket file behind: connecting is refused.
    drop(pullgate);
    assert!(bed.dir().join("verifier.sock").exists());
    let j = bed
        .bindir()
        .verify_image(&name, &desc(&image))
        .await
        .unwrap();
    assert_allowed(&j, &image.digest);
}

/// A verifier socket served by someone other than root (or pullgate's own
/// user) is never asked: here such a `pullgate serve` would allow anything
/// (level `skip`), and the unsigned image is still denied, by the verifier's
/// own decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn a_verifier_socket_served_by_another_user_is_not_trusted() {
    let bed = Bed::start().await.unwrap();
    let unsigned = bed.push_unsigned("app/planted", "v1").await.unwrap();
    // The impostor: `pullgate serve` as nobody, in a directory nobody owns.
    let other = tempfile::Builder::new()
        .prefix("pullgate-nobody-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(
        other.path().join("trustpolicy.json"),
        r#"{"version":"1.0","trustPolicies":[{"name":"anything","registryScopes":["*"],"signatureVerification":{"level":"skip"}}]}"#,
    )
    .unwrap();
    std::fs::create_dir_all(other.path().join("truststore/x509")).unwrap();
    let wrapper = other.path().join("as-nobody");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups {} \"$@\"\n",
            binary_path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let impostor_config = PullgateConfig::in_dir(other.path(), &other.path().join("none.sock"));
    let impostor = Pullgate::start_binary(&wrapper, &impostor_config.to_toml(), other.path())
        .await
        .unwrap();
    let socket = other.path().join("verifier.sock");
    assert!(socket.exists(), "{}", impostor.log_tail());

    let config = bed.config(&format!(
        "[image_verifier]\nsocket = {:?}\n",
        socket.display().to_string()
    ));
    bed.write_config(&config).unwrap();
    let name = bed.name("app/planted", "v1");
    let j = bed
        .bindir()
        .verify_image(&name, &desc(&unsigned))
        .await
        .unwrap();
    assert_no_signature(&j, &name, &unsigned.digest);
}

/// `pullgate serve` answers only root and its own user: with the socket's
/// mode opened up, a verifier running as nobody is disconnected before it
/// is answered, and so denies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn the_daemon_answers_only_root_and_its_own_user() {
    let bed = Bed::start().await.unwrap();
    std::fs::set_permissions(bed.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = bed.config("");
    let pullgate = Pullgate::start_with(&config, bed.dir()).await.unwrap();
    let socket = bed.dir().join("verifier.sock");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let image = bed.push_signed("app/peer", "v1").await.unwrap();
    // The verifier as nobody: a wrapper in bin_dir instead of the symlink.
    let bin = bed.bin_dir();
    std::fs::remove_file(bin.join("pullgate")).unwrap();
    std::fs::write(
        bin.join("pullgate"),
        format!(
            "#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups {} \"$@\"\n",
            binary_path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("pullgate"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = bed.name("app/peer", "v1");
    let j = bed
        .bindir()
        .verify_image(&name, &desc(&image))
        .await
        .unwrap();
    assert!(!j.ok, "{}", j.reason);
    assert!(j.reason.contains("pullgate serve:"), "{}", j.reason);
    let log = std::fs::read_to_string(pullgate.log_path()).unwrap();
    assert!(
        log.contains("refused a connection from a user that is neither root nor pullgate's")
            && log.contains("uid=65534"),
        "{log}"
    );
}

/// A registry slower than the budget: the verifier answers "denied" with
/// the reason before containerd's timeout; past containerd's timeout (a
/// budget set above it), containerd kills it and the pull fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn a_slow_registry_is_denied_within_the_budget_and_past_the_timeout_the_pull_fails() {
    let bed = Bed::start().await.unwrap();
    let image = bed.push_signed("app/slow", "v1").await.unwrap();
    let name = bed.name("app/slow", "v1");
    bed.registry.set_latency(Duration::from_secs(4));

    bed.write_config(&bed.config("[image_verifier]\nbudget_ms = 1000\n"))
        .unwrap();
    let mut bindir = bed.bindir();
    bindir.per_verifier_timeout = Duration::from_secs(3);
    let j = bindir.verify_image(&name, &desc(&image)).await.unwrap();
    assert!(!j.ok, "{}", j.reason);
    assert!(
        j.reason.contains(&format!(
            "image {name}@{} not pulled: signature verification could not complete",
            image.digest
        )) && j.reason.contains("failing closed"),
        "{}",
        j.reason
    );

    bed.write_config(&bed.config("[image_verifier]\nbudget_ms = 6000\n"))
        .unwrap();
    bindir.per_verifier_timeout = Duration::from_secs(1);
    let err = bindir.verify_image(&name, &desc(&image)).await.unwrap_err();
    assert!(format!("{err:#}").contains("signal: killed"), "{err:#}");
}

/// Arguments containerd would never send deny, with the reason on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the pullgate binary"]
async fn arguments_containerd_does_not_send_deny() {
    let bed = Bed::start().await.unwrap();
    bed.write_config(&bed.config("")).unwrap();
    let image = bed.push_signed("app/args", "v1").await.unwrap();
    let name = bed.name("app/args", "v1");
    let run = |args: Vec<String>| {
        let config = bed.dir().join("pullgate.toml");
        let desc = desc(&image).to_string();
        async move {
            let mut child = tokio::process::Command::new(binary_path())
                .args(&args)
                .env_clear()
                .env("PULLGATE_CONFIG", config)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use tokio::io::AsyncWriteExt as _;
            let mut stdin = child.stdin.take().unwrap();
            // A verifier that refuses its arguments may exit before reading
            // stdin; containerd only logs the broken pipe, and so do we.
            let _ = stdin.write_all(desc.as_bytes()).await;
            drop(stdin);
            let out = child.wait_with_output().await.unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    let media = "application/vnd.oci.descriptor.v1+json".to_owned();
    // Go's flag spellings are all containerd's call.
    let (code, out) = run(vec![
        format!("--name={name}"),
        "-digest".into(),
        image.digest.clone(),
        format!("-stdin-media-type={media}"),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    for (args, why) in [
        (
            vec![
                "-name".into(),
                name.clone(),
                "-digest".into(),
                image.digest.clone(),
            ],
            "missing -stdin-media-type",
        ),
        (
            vec![
                "-name".into(),
                name.clone(),
                "-digest".into(),
                image.digest.clone(),
                "-stdin-media-type".into(),
                "application/json".into(),
            ],
            "is not application/vnd.oci.descriptor.v1+json",
        ),
        (
            vec![
                "-name".into(),
                format!("{}/app/args@sha256:{}", bed.host(), "0".repeat(64)),
                "-digest".into(),
                image.digest.clone(),
                "-stdin-media-type".into(),
                media.clone(),
            ],
            "-name carries digest",
        ),
        (
            vec![
                "-name".into(),
                name.clone(),
                "-digest".into(),
                image.digest.clone(),
                "-stdin-media-type".into(),
                media.clone(),
                "-insecure".into(),
                "true".into(),
            ],
            "flag provided but not defined: -insecure",
        ),
    ] {
        let (code, out) = run(args.clone()).await;
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains(why) && out.contains("denied"),
            "{args:?}: {out}"
        );
    }
}

/// With containerd: a verifier call and a CRI pull of one digest (in either
/// order) cause one signature discovery at the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_verifier_call_and_a_cri_pull_of_one_digest_make_one_referrers_request() {
    let bed = OciTestbed::start().await.unwrap();
    let bin = bed.dir().join("image-verifier-bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(binary_path(), bin.join("pullgate")).unwrap();
    let pullgate = bed
        .start_pullgate_with(&bed.pullgate_config())
        .await
        .unwrap();
    let bindir = Bindir::new(
        &bin,
        vec![
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            (
                "PULLGATE_CONFIG".into(),
                pullgate.config_path().display().to_string(),
            ),
        ],
    );
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // The verifier first, then the kubelet's pull.
    let first = bed.push_signed("app/both", "v1").await.unwrap();
    bed.registry.reset_counts();
    let j = bindir
        .verify_image(&bed.image_ref("app/both", "v1"), &desc(&first))
        .await
        .unwrap();
    assert_allowed(&j, &first.digest);
    cri::pull(&ch, &bed.image_ref("app/both", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert_eq!(
        bed.registry.counts().referrers,
        1,
        "{}",
        pullgate.log_tail()
    );

    // The kubelet's pull first, then the verifier.
    let second = bed.push_signed("app/both", "v2").await.unwrap();
    bed.registry.reset_counts();
    cri::pull(&ch, &bed.image_ref("app/both", "v2"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    let j = bindir
        .verify_image(&bed.image_ref("app/both", "v2"), &desc(&second))
        .await
        .unwrap();
    assert_allowed(&j, &second.digest);
    assert_eq!(
        bed.registry.counts().referrers,
        1,
        "{}",
        pullgate.log_tail()
    );
}
