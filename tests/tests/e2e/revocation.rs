//! Revocation checking through the real binary: a signing leaf that names a
//! CRL distribution point, the CRL served over loopback HTTP (or pre-loaded
//! from `crl_dir` offline), and what containerd holds after each pull.

use std::path::Path;

use pullgate_testkit::TestPki;
use pullgate_tests::cri;
use pullgate_tests::crl_server::{closed_url, CrlServer};
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::testbed::{DockerTestbed, SIGNER_CN, STORE};
use serde_json::json;
use tonic::Code;

/// Path the CRL is served at.
const CRL_PATH: &str = "/e2e-root.crl";

/// A testbed whose signer's leaf names `crl_url` as its CRL distribution
/// point (same subject as the usual testbed signer, so the trust policy
/// written by [`DockerTestbed::start`] trusts it), its root in the trust store.
async fn bed_with_crl_url(crl_url: &str) -> anyhow::Result<DockerTestbed> {
    let mut bed = DockerTestbed::start().await?;
    bed.pki = TestPki::with_crl_url(SIGNER_CN, crl_url)?;
    bed.pki
        .write_trust_store(&bed.dir().join("truststore"), STORE)?;
    Ok(bed)
}

/// Writes the trust policy: one statement over `*` at `level` (`strict`,
/// `permissive`, ...), trusting the testbed's signer.
fn write_policy(bed: &DockerTestbed, level: &str) -> anyhow::Result<()> {
    let doc = json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "pullgate-test",
            "registryScopes": ["*"],
            "signatureVerification": { "level": level },
            "trustStores": [format!("ca:{STORE}")],
            "trustedIdentities": [bed.pki.trusted_identity()],
        }]
    });
    std::fs::write(bed.trust_policy_path(), serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}

/// Starts pullgate with the testbed's config plus `extra` TOML, its socket,
/// config and log in `<bed dir>/<name>/` (so several may run one after another).
async fn start_pullgate(bed: &DockerTestbed, name: &str, extra: &str) -> anyhow::Result<Pullgate> {
    let dir = bed.dir().join(name);
    std::fs::create_dir_all(&dir)?;
    let mut config = bed.pullgate_config();
    config.socket = dir.join("pullgate.sock");
    config.extra = extra.to_owned();
    Pullgate::start_with(&config, &dir).await
}

/// `[revocation]` offline, pre-loading the CRLs of `crl_dir`.
fn offline(crl_dir: &Path) -> String {
    let dir = toml::Value::String(crl_dir.display().to_string());
    format!("[revocation]\nmode = \"offline\"\ncrl_dir = {dir}\n")
}

/// Writes `crl` as `<bed dir>/<name>/root.crl`; returns the directory.
fn crl_dir(bed: &DockerTestbed, name: &str, crl: &[u8]) -> anyhow::Result<std::path::PathBuf> {
    let dir = bed.dir().join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("root.crl"), crl)?;
    Ok(dir)
}

/// Asserts `status` is a denial mentioning `needle`; returns its message.
fn assert_denied(status: &tonic::Status, digest: &str, needle: &str, log: &str) -> String {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}\n{log}");
    let msg = status.message().to_owned();
    assert!(msg.contains("denied by policy"), "{msg}");
    assert!(
        msg.contains(digest),
        "message does not name the digest: {msg}"
    );
    assert!(msg.contains(needle), "{msg}\n{log}");
    msg
}

/// Whether containerd, asked directly, holds `image`.
async fn in_containerd(bed: &DockerTestbed, image: &str) -> anyhow::Result<bool> {
    let direct = cri::connect(bed.containerd.socket()).await?;
    Ok(cri::image_status(&direct, image).await?.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn leaf_absent_from_its_crl_is_allowed_and_the_crl_is_cached() {
    let server = CrlServer::start(CRL_PATH, Vec::new()).await.unwrap();
    let bed = bed_with_crl_url(&server.url()).await.unwrap();
    server.set_body(bed.pki.crl(false).unwrap());
    bed.push_signed("app/first", "v1").await.unwrap();
    bed.push_signed("app/second", "v1").await.unwrap();
    let pullgate = start_pullgate(&bed, "online", "").await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let first = bed.image_ref("app/first", "v1");
    cri::pull(&ch, &first)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    let fetched = server.hits();
    assert_eq!(fetched, 1, "one pull, one CRL request");

    // Another image, same leaf: the CRL is held until its nextUpdate (2100).
    let second = bed.image_ref("app/second", "v1");
    cri::pull(&ch, &second)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert_eq!(server.hits(), fetched, "the cached CRL was fetched again");

    assert!(in_containerd(&bed, &second).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn leaf_listed_in_its_crl_is_denied() {
    let server = CrlServer::start(CRL_PATH, Vec::new()).await.unwrap();
    let bed = bed_with_crl_url(&server.url()).await.unwrap();
    server.set_body(bed.pki.crl(true).unwrap());
    let image = bed.push_signed("app/revoked", "v1").await.unwrap();
    let pullgate = start_pullgate(&bed, "online", "").await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let tag_ref = bed.image_ref("app/revoked", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let msg = assert_denied(&status, &image.digest, "revoked", &pullgate.log_tail());
    assert!(msg.contains(SIGNER_CN), "{msg}");
    assert!(msg.contains("according to its CRL"), "{msg}");
    assert!(server.hits() >= 1);
    assert!(!in_containerd(&bed, &tag_ref).await.unwrap());
    assert!(
        !in_containerd(&bed, &image.pinned_ref(&bed.host(), "app/revoked"))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn crl_server_down_denies_under_strict_and_allows_under_permissive() {
    let url = closed_url(CRL_PATH).await.unwrap();
    let bed = bed_with_crl_url(&url).await.unwrap();
    let image = bed.push_signed("app/unknown", "v1").await.unwrap();
    let tag_ref = bed.image_ref("app/unknown", "v1");

    // strict: revocation is enforced, and an unknown status fails it.
    let strict = start_pullgate(&bed, "strict", "").await.unwrap();
    let ch = cri::connect(strict.socket()).await.unwrap();
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let msg = assert_denied(
        &status,
        &image.digest,
        "revocation check failed",
        &strict.log_tail(),
    );
    assert!(msg.contains("cannot be determined"), "{msg}");
    assert!(!in_containerd(&bed, &tag_ref).await.unwrap());
    drop(ch);
    drop(strict);

    // permissive: revocation is only logged.
    write_policy(&bed, "permissive").unwrap();
    let permissive = start_pullgate(&bed, "permissive", "").await.unwrap();
    let ch = cri::connect(permissive.socket()).await.unwrap();
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", permissive.log_tail()));
    assert!(in_containerd(&bed, &tag_ref).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn offline_mode_uses_only_the_preloaded_crl() {
    // The distribution point serves a good CRL, which offline mode must never fetch.
    let server = CrlServer::start(CRL_PATH, Vec::new()).await.unwrap();
    let bed = bed_with_crl_url(&server.url()).await.unwrap();
    server.set_body(bed.pki.crl(false).unwrap());
    let image = bed.push_signed("app/offline", "v1").await.unwrap();
    let tag_ref = bed.image_ref("app/offline", "v1");

    let revoked_dir = crl_dir(&bed, "crl-revoked", &bed.pki.crl(true).unwrap()).unwrap();
    let pullgate = start_pullgate(&bed, "offline-revoked", &offline(&revoked_dir))
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    assert_denied(&status, &image.digest, "revoked", &pullgate.log_tail());
    assert!(!in_containerd(&bed, &tag_ref).await.unwrap());
    drop(ch);
    drop(pullgate);

    let good_dir = crl_dir(&bed, "crl-good", &bed.pki.crl(false).unwrap()).unwrap();
    let pullgate = start_pullgate(&bed, "offline-good", &offline(&good_dir))
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &tag_ref).await.unwrap());
    assert_eq!(server.hits(), 0, "offline mode fetched the CRL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_crl_dropped_into_crl_dir_ends_cached_and_persisted_allows() {
    let url = closed_url(CRL_PATH).await.unwrap();
    let bed = bed_with_crl_url(&url).await.unwrap();
    let image = bed.push_signed("app/later-revoked", "v1").await.unwrap();
    let tag_ref = bed.image_ref("app/later-revoked", "v1");
    let dir = crl_dir(&bed, "crl", &bed.pki.crl(false).unwrap()).unwrap();
    let state = bed.dir().join("state");
    let extra = format!(
        "{}\n[cache]\nstate_dir = {}\n",
        offline(&dir),
        toml::Value::String(state.display().to_string())
    );

    // Allowed under the good CRL, and persisted at shutdown.
    let first = start_pullgate(&bed, "first", &extra).await.unwrap();
    let ch = cri::connect(first.socket()).await.unwrap();
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", first.log_tail()));
    drop(ch);
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(first.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if state.join("verdicts.json").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(state.join("verdicts.json").exists(), "{}", first.log_tail());
    drop(first);

    // The operator drops a CRL listing the signer into crl_dir while pullgate
    // is down: the persisted allow was made without it and is not restored.
    std::fs::write(dir.join("root.crl"), bed.pki.crl(true).unwrap()).unwrap();
    let second = start_pullgate(&bed, "second", &extra).await.unwrap();
    let ch = cri::connect(second.socket()).await.unwrap();
    let status = cri::pull(&ch, &tag_ref)
        .await
        .expect_err("a persisted allow outlived a CRL revoking its signer");
    assert_denied(&status, &image.digest, "revoked", &second.log_tail());
    drop(ch);
    drop(second);

    // And while it runs: the good CRL back, allowed and cached; the revoking
    // one dropped in, the content poll reloads and the cached allow ends.
    std::fs::write(dir.join("root.crl"), bed.pki.crl(false).unwrap()).unwrap();
    let third = start_pullgate(&bed, "third", &offline(&dir)).await.unwrap();
    let ch = cri::connect(third.socket()).await.unwrap();
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", third.log_tail()));
    std::fs::write(dir.join("root.crl"), bed.pki.crl(true).unwrap()).unwrap();
    third.wait_for_log("policy reloaded").await.unwrap();
    let status = cri::pull(&ch, &tag_ref)
        .await
        .expect_err("a cached allow outlived a CRL revoking its signer");
    assert_denied(&status, &image.digest, "revoked", &third.log_tail());
}
