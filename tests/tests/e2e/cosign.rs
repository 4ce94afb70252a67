//! cosign signatures end to end through containerd: key-signed `.sig`
//! images and Sigstore bundles attached as referrers, under requirements
//! scopes that list cosign (alone, or next to notation), and the ways an
//! attacker would try to get an unsigned image past them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pullgate_testkit::cosign::{
    key_signed_bundle, sign_statement, CosignKey, SigLayer, TestLog, SIGN_PREDICATE,
};
use pullgate_tests::cosign::{
    attach_bundle, attach_cosign_signature, push_sig_manifest, BundleListing,
};
use pullgate_tests::cri;
use pullgate_tests::image::PushedImage;
use pullgate_tests::pullgate::{audit_records, binary_path, metrics_text, Pullgate};
use pullgate_tests::testbed::{BedRegistry, DockerTestbed, OciTestbed, Testbed};
use tonic::Code;

/// Writes the requirements file, the key and (when `log` is given) the
/// trusted root into the testbed's dir and returns pullgate's config.
/// `scopes` are `(name, repo, kinds, min_signers)`; each gets a
/// `[scope.cosign]` with `key` (file `release.pub`) and the log's root.
pub(super) fn config<R: BedRegistry>(
    bed: &Testbed<R>,
    key: &CosignKey,
    log: Option<&TestLog>,
    scopes: &[(&str, &str, &str, usize)],
    extra: &str,
) -> anyhow::Result<String> {
    let key_path = bed.dir().join("release.pub");
    key.write_public_key(&key_path)?;
    let root = match log {
        Some(log) => {
            let p = bed.dir().join("trusted_root.json");
            log.write_trusted_root(&p)?;
            Some(p)
        }
        None => None,
    };
    let quote = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let mut req = String::new();
    for (name, repo, kinds, min) in scopes {
        req.push_str(&format!(
            "[[scope]]\nname = \"{name}\"\nregistry_scopes = [\"{}\"]\nsignature_kinds = {kinds}\nmin_signers = {min}\n\
             [scope.cosign]\nkeys = [{}]\n",
            bed.scope(repo),
            quote(&key_path)
        ));
        if let Some(root) = &root {
            req.push_str(&format!("trusted_root = {}\n", quote(root)));
        }
    }
    let req_path: PathBuf = bed.dir().join("requirements.toml");
    std::fs::write(&req_path, req)?;
    let mut c = bed.pullgate_config();
    c.extra = extra.to_owned();
    Ok(c.to_toml().replacen(
        "[trust]\n",
        &format!("[trust]\nrequirements = {}\n", quote(&req_path)),
        1,
    ))
}

/// The name of the testbed's trust policy statement.
pub(super) const STATEMENT: &str = "pullgate-test";

/// Asserts `status` is pullgate's denial of `image` (`<digest>`) by
/// `policy`, and returns the reason.
pub(super) fn denied(status: &tonic::Status, image: &str, digest: &str, policy: &str) -> String {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    let head = format!("image {image} ({digest}) denied by policy \"{policy}\": ");
    assert!(msg.starts_with(&head), "{msg}");
    msg[head.len()..].to_owned()
}

/// Whether containerd (asked directly) holds `image`.
pub(super) async fn in_containerd<R: BedRegistry>(
    bed: &Testbed<R>,
    image: &str,
) -> anyhow::Result<bool> {
    let direct = cri::connect(bed.containerd.socket()).await?;
    Ok(cri::image_status(&direct, image).await?.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_key_signed_sig_image_is_allowed_audited_and_reported() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let audit = bed.dir().join("audit.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = config(
        &bed,
        &key,
        None,
        &[("release", "app/release", "[\"cosign\"]", 1)],
        &format!(
            "[audit]\npath = {:?}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            audit.display().to_string()
        ),
    )
    .unwrap();
    let image = bed.push_unsigned("app/release", "v1").await.unwrap();
    attach_cosign_signature(&host, "app/release", &image, &key)
        .await
        .unwrap();
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let tag_ref = bed.image_ref("app/release", "v1");
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &image.pinned_ref(&host, "app/release"))
        .await
        .unwrap());

    let lines = audit_records(&audit, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["verdict"], "allow", "{lines:?}");
    assert_eq!(lines[0]["requirement"], "release", "{lines:?}");
    let sig = &lines[0]["signatures"][0];
    assert_eq!(sig["passed"], true, "{lines:?}");
    assert_eq!(sig["kind"], "cosign", "{lines:?}");
    assert_eq!(sig["signer"], "cosign key release.pub", "{lines:?}");

    // The one-shot CLI, as JSON.
    let cfg = bed.dir().join("verify.toml");
    std::fs::write(&cfg, &toml).unwrap();
    let out = std::process::Command::new(binary_path())
        .args(["verify", &tag_ref, "--output", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["verdict"], "allow", "{record}");
    assert_eq!(record["digest"], image.digest.as_str(), "{record}");
    assert_eq!(record["signatures"][0]["kind"], "cosign", "{record}");

    // Metrics count the signature by kind.
    let metrics = metrics_text(port).await.unwrap();
    assert!(
        metrics.contains("pullgate_signatures_total{kind=\"cosign\",result=\"accepted\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn bad_cosign_signatures_and_notary_only_images_are_denied_in_a_cosign_scope() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let stranger = CosignKey::generate().unwrap();
    let repos = [
        "app/wrong-key",
        "app/tampered",
        "app/other-digest",
        "app/copied",
        "app/other-repo",
        "app/unsigned",
        "app/notary",
        "app/huge",
    ];
    let scopes: Vec<(&str, &str, &str, usize)> = repos
        .iter()
        .map(|r| ("release", *r, "[\"cosign\"]", 1))
        .collect();
    // One scope per repository, each named after it.
    let names: Vec<String> = repos.iter().map(|r| r.replace('/', "-")).collect();
    let scopes: Vec<(&str, &str, &str, usize)> = scopes
        .iter()
        .zip(&names)
        .map(|((_, r, k, m), n)| (n.as_str(), *r, *k, *m))
        .collect();
    let toml = config(&bed, &key, None, &scopes, "").unwrap();
    let push = |repo: &'static str| {
        let bed = &bed;
        async move { bed.push_unsigned(repo, "v1").await.unwrap() }
    };

    // Signed by a key the scope does not trust.
    let wrong_key = push("app/wrong-key").await;
    attach_cosign_signature(&host, "app/wrong-key", &wrong_key, &stranger)
        .await
        .unwrap();
    // The trusted key's signature, one byte of it changed.
    let tampered = push("app/tampered").await;
    let mut layer = key.sign_image(&format!("{host}/app/tampered"), &tampered.digest);
    let mut der = base64_decode(&layer.signature).unwrap();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    layer.signature = base64_encode(&der);
    push_sig_manifest(&host, "app/tampered", &tampered.digest, &[layer])
        .await
        .unwrap();
    // A valid signature whose payload names another digest, at this image's tag.
    let other_digest = push("app/other-digest").await;
    let elsewhere = bed.push_unsigned("app/elsewhere", "v1").await.unwrap();
    let layer = key.sign_image(&format!("{host}/app/other-digest"), &elsewhere.digest);
    push_sig_manifest(&host, "app/other-digest", &other_digest.digest, &[layer])
        .await
        .unwrap();
    // The whole .sig manifest of a signed image A copied to image B's tag.
    let copied = push("app/copied").await;
    let a = bed.push_unsigned("app/copied", "a").await.unwrap();
    let sig_a = attach_cosign_signature(&host, "app/copied", &a, &key)
        .await
        .unwrap();
    let registry = pullgate_tests::distribution::Registry::new(&host);
    registry
        .put_manifest(
            "app/copied",
            &pullgate_testkit::cosign::signature_tag(&copied.digest),
            &sig_a.media_type,
            &sig_a.manifest,
        )
        .await
        .unwrap();
    // Signed by the trusted key, for another repository.
    let other_repo = push("app/other-repo").await;
    let layer = key.sign_image(&format!("{host}/app/elsewhere"), &other_repo.digest);
    push_sig_manifest(&host, "app/other-repo", &other_repo.digest, &[layer])
        .await
        .unwrap();
    let unsigned = push("app/unsigned").await;
    // A Notary Project signature by the trust policy's signer only.
    let notary = bed.push_signed("app/notary", "v1").await.unwrap();
    // 2000 layers by an untrusted key, then a good one past the cap.
    let huge = push("app/huge").await;
    let bad = stranger.sign_image(&format!("{host}/app/huge"), &huge.digest);
    let mut layers: Vec<SigLayer> = vec![bad; 2000];
    layers.push(key.sign_image(&format!("{host}/app/huge"), &huge.digest));
    push_sig_manifest(&host, "app/huge", &huge.digest, &layers)
        .await
        .unwrap();

    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let cases: [(&str, &PushedImage, &[&str]); 8] = [
        (
            "app/wrong-key",
            &wrong_key,
            &["not made by any of the 1 configured cosign key(s)"],
        ),
        (
            "app/tampered",
            &tampered,
            &["not made by any of the 1 configured cosign key(s)"],
        ),
        (
            "app/other-digest",
            &other_digest,
            &[&format!(
                "the signature is for {}, not for the image digest {}",
                elsewhere.digest, other_digest.digest
            )],
        ),
        (
            "app/copied",
            &copied,
            &[&format!(
                "the signature is for {}, not for the image digest {}",
                a.digest, copied.digest
            )],
        ),
        (
            "app/other-repo",
            &other_repo,
            &[&format!(
                "names repository {host}/app/elsewhere, not {host}/app/other-repo"
            )],
        ),
        (
            "app/unsigned",
            &unsigned,
            &["no cosign signature of this digest was found"],
        ),
        (
            "app/notary",
            &notary,
            &["no cosign signature of this digest was found"],
        ),
        (
            "app/huge",
            &huge,
            &["not made by any of the 1 configured cosign key(s)"],
        ),
    ];
    for (repo, image, needles) in cases {
        let tag_ref = bed.image_ref(repo, "v1");
        let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
        let reason = denied(&status, &tag_ref, &image.digest, &repo.replace('/', "-"));
        for n in needles {
            assert!(reason.contains(n), "{repo}: {n:?} not in {reason:?}");
        }
        assert!(
            reason.contains("cosign") || repo == "app/notary",
            "{reason}"
        );
        assert!(!in_containerd(&bed, &tag_ref).await.unwrap(), "{repo}");
        assert!(
            !in_containerd(&bed, &image.pinned_ref(&host, repo))
                .await
                .unwrap(),
            "{repo}"
        );
    }
    assert!(pullgate_alive(pullgate));
}

fn pullgate_alive(mut p: Pullgate) -> bool {
    p.is_running()
}

fn base64_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A v0.3 bundle signed with `key` for `host/repo` at `digest`.
fn bundle_for(key: &CosignKey, log: &TestLog, name: &str, digest: &str) -> anyhow::Result<Vec<u8>> {
    key_signed_bundle(key, log, &sign_statement(name, digest, SIGN_PREDICATE))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_bundle_attached_through_referrers_is_allowed_and_one_for_another_digest_is_not() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let toml = config(
        &bed,
        &key,
        Some(&log),
        &[
            ("bundled", "app/bundled", "[\"cosign\"]", 1),
            ("misbundled", "app/misbundled", "[\"cosign\"]", 1),
            ("foreign-log", "app/foreign-log", "[\"cosign\"]", 1),
        ],
        "",
    )
    .unwrap();
    let good = bed.push_unsigned("app/bundled", "v1").await.unwrap();
    let bundle = bundle_for(&key, &log, &format!("{host}/app/bundled"), &good.digest).unwrap();
    attach_bundle(&host, "app/bundled", &good, &bundle, BundleListing::Api)
        .await
        .unwrap();
    // A valid bundle for image A, attached to image B.
    let victim = bed.push_unsigned("app/misbundled", "v1").await.unwrap();
    let a = bed.push_unsigned("app/misbundled", "a").await.unwrap();
    let bundle_a = bundle_for(&key, &log, &format!("{host}/app/misbundled"), &a.digest).unwrap();
    attach_bundle(
        &host,
        "app/misbundled",
        &victim,
        &bundle_a,
        BundleListing::Api,
    )
    .await
    .unwrap();
    // A bundle by the trusted key, logged in a log the trusted root does not name.
    let foreign = bed.push_unsigned("app/foreign-log", "v1").await.unwrap();
    let other_log = TestLog::generate().unwrap();
    let bundle = bundle_for(
        &key,
        &other_log,
        &format!("{host}/app/foreign-log"),
        &foreign.digest,
    )
    .unwrap();
    attach_bundle(
        &host,
        "app/foreign-log",
        &foreign,
        &bundle,
        BundleListing::Api,
    )
    .await
    .unwrap();

    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/bundled", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &good.pinned_ref(&host, "app/bundled"))
        .await
        .unwrap());

    let tag_ref = bed.image_ref("app/misbundled", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &victim.digest, "misbundled");
    // sigstore-verify compares the statement's subjects with the digest
    // before pullgate's own payload check does; either names the mismatch.
    assert!(
        reason.contains("cosign payload check failed")
            && reason.contains("does not match any subject"),
        "{reason}"
    );
    assert!(
        !in_containerd(&bed, &victim.pinned_ref(&host, "app/misbundled"))
            .await
            .unwrap()
    );

    let tag_ref = bed.image_ref("app/foreign-log", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &foreign.digest, "foreign-log");
    assert!(reason.contains("cosign"), "{reason}");
    assert!(
        !in_containerd(&bed, &foreign.pinned_ref(&host, "app/foreign-log"))
            .await
            .unwrap()
    );
}

/// Issue 23.6: under `signed_identity = "match_repository"` (the default) a
/// bundle counts only when its in-toto statement names the repository
/// pulled: one made for `app/debug` is refused in `app/prod`, and one naming
/// none (as cosign v3 writes it) is refused too; a scope with
/// `signed_identity = "any"` accepts the nameless one on the key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_bundle_for_another_repository_or_none_is_refused_under_match_repository() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let toml = config(
        &bed,
        &key,
        Some(&log),
        &[
            ("prod", "app/prod", "[\"cosign\"]", 1),
            ("lenient", "app/lenient", "[\"cosign\"]", 1),
        ],
        "",
    )
    .unwrap();
    // The last scope's `[scope.cosign]` table ends the file.
    let req_path = bed.dir().join("requirements.toml");
    let mut req = std::fs::read_to_string(&req_path).unwrap();
    req.push_str("signed_identity = \"any\"\n");
    std::fs::write(&req_path, req).unwrap();

    let debug_made = bed.push_unsigned("app/prod", "debug").await.unwrap();
    let bundle = bundle_for(&key, &log, &format!("{host}/app/debug"), &debug_made.digest).unwrap();
    attach_bundle(&host, "app/prod", &debug_made, &bundle, BundleListing::Api)
        .await
        .unwrap();
    let nameless = bed.push_unsigned("app/prod", "v3").await.unwrap();
    let bundle = bundle_for(&key, &log, "", &nameless.digest).unwrap();
    attach_bundle(&host, "app/prod", &nameless, &bundle, BundleListing::Api)
        .await
        .unwrap();
    let lenient = bed.push_unsigned("app/lenient", "v3").await.unwrap();
    let bundle = bundle_for(&key, &log, "", &lenient.digest).unwrap();
    attach_bundle(&host, "app/lenient", &lenient, &bundle, BundleListing::Api)
        .await
        .unwrap();

    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    for (tag, image, why) in [
        (
            "debug",
            &debug_made,
            format!("names repository {host}/app/debug"),
        ),
        ("v3", &nameless, "names no repository".to_owned()),
    ] {
        let tag_ref = bed.image_ref("app/prod", tag);
        let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
        let reason = denied(&status, &tag_ref, &image.digest, "prod");
        assert!(
            reason.contains("signed identity check failed") && reason.contains(&why),
            "{reason}"
        );
        assert!(!in_containerd(&bed, &image.pinned_ref(&host, "app/prod"))
            .await
            .unwrap());
    }
    cri::pull(&ch, &bed.image_ref("app/lenient", "v3"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(
        in_containerd(&bed, &lenient.pinned_ref(&host, "app/lenient"))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_bundle_in_a_referrers_index_without_artifact_type_is_identified_by_its_manifest() {
    // docker-registry has no referrers API: the tag schema index is read.
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let toml = config(
        &bed,
        &key,
        Some(&log),
        &[
            ("untyped", "app/untyped", "[\"cosign\"]", 1),
            ("typed", "app/typed", "[\"cosign\"]", 1),
        ],
        "",
    )
    .unwrap();
    let mut images = Vec::new();
    for (repo, listing) in [
        ("app/untyped", BundleListing::TagSchemaUntyped),
        ("app/typed", BundleListing::TagSchema),
    ] {
        let image = bed.push_unsigned(repo, "v1").await.unwrap();
        let bundle = bundle_for(&key, &log, &format!("{host}/{repo}"), &image.digest).unwrap();
        attach_bundle(&host, repo, &image, &bundle, listing)
            .await
            .unwrap();
        images.push((repo, image));
    }
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    for (repo, image) in &images {
        cri::pull(&ch, &bed.image_ref(repo, "v1"))
            .await
            .unwrap_or_else(|s| panic!("{repo}: {s:?}\n{}", pullgate.log_tail()));
        assert!(in_containerd(&bed, &image.pinned_ref(&host, repo))
            .await
            .unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn notation_or_cosign_allows_either_and_min_signers_two_needs_one_of_each() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let either = "[\"notation\", \"cosign\"]";
    let toml = config(
        &bed,
        &key,
        Some(&log),
        &[
            ("either-notary", "app/either-notary", either, 1),
            ("either-cosign", "app/either-cosign", either, 1),
            ("either-none", "app/either-none", either, 1),
            ("both", "app/both", either, 2),
            ("two-notary", "app/two-notary", either, 2),
            ("two-cosign", "app/two-cosign", either, 2),
        ],
        "",
    )
    .unwrap();
    let cosign_sign = |repo: &'static str, image: PushedImage| {
        let (bed, key, log, host) = (&bed, &key, &log, host.clone());
        async move {
            let b = bundle_for(key, log, &format!("{host}/{repo}"), &image.digest).unwrap();
            attach_bundle(&bed.host(), repo, &image, &b, BundleListing::Api)
                .await
                .unwrap();
            image
        }
    };
    let notary_only = bed.push_signed("app/either-notary", "v1").await.unwrap();
    let cosign_only = cosign_sign(
        "app/either-cosign",
        bed.push_unsigned("app/either-cosign", "v1").await.unwrap(),
    )
    .await;
    let none = bed.push_unsigned("app/either-none", "v1").await.unwrap();
    let both = cosign_sign("app/both", bed.push_signed("app/both", "v1").await.unwrap()).await;
    // Two signatures of one kind by one signer each time: one signer.
    let two_notary = bed.push_signed("app/two-notary", "v1").await.unwrap();
    bed.sign("app/two-notary", &two_notary, &bed.pki)
        .await
        .unwrap();
    let two_cosign = cosign_sign(
        "app/two-cosign",
        bed.push_unsigned("app/two-cosign", "v1").await.unwrap(),
    )
    .await;
    attach_cosign_signature(&host, "app/two-cosign", &two_cosign, &key)
        .await
        .unwrap();

    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    for (repo, image) in [
        ("app/either-notary", &notary_only),
        ("app/either-cosign", &cosign_only),
        ("app/both", &both),
    ] {
        cri::pull(&ch, &bed.image_ref(repo, "v1"))
            .await
            .unwrap_or_else(|s| panic!("{repo}: {s:?}\n{}", pullgate.log_tail()));
        assert!(in_containerd(&bed, &image.pinned_ref(&host, repo))
            .await
            .unwrap());
    }
    let tag_ref = bed.image_ref("app/either-none", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    // A scope that accepts Notary Project signatures is denied under the
    // name of the trust policy statement covering it (the testbed's).
    let reason = denied(&status, &tag_ref, &none.digest, STATEMENT);
    assert!(
        reason.contains("no Notary Project or cosign signature of this digest"),
        "{reason}"
    );
    for (repo, image, name) in [
        ("app/two-notary", &two_notary, "two-notary"),
        ("app/two-cosign", &two_cosign, "two-cosign"),
    ] {
        let tag_ref = bed.image_ref(repo, "v1");
        let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
        let reason = denied(&status, &tag_ref, &image.digest, STATEMENT);
        assert!(
            reason.contains(&format!(
                "requirements of scope \"{name}\" not met: 1 distinct trusted signer(s) signed it, 2 required"
            )),
            "{reason}"
        );
        assert!(!in_containerd(&bed, &image.pinned_ref(&host, repo))
            .await
            .unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_replaced_cosign_key_file_reloads_and_ends_the_cached_allow() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let toml = config(
        &bed,
        &key,
        None,
        &[("release", "app/rotated", "[\"cosign\"]", 1)],
        "",
    )
    .unwrap();
    let image = bed.push_unsigned("app/rotated", "v1").await.unwrap();
    attach_cosign_signature(&host, "app/rotated", &image, &key)
        .await
        .unwrap();
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/rotated", "v1");
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    // Cached now: the second pull asks the registry for no signature.
    bed.registry.reset_counts();
    cri::pull(&ch, &tag_ref).await.unwrap();
    assert_eq!(bed.registry.counts().referrers, 0);

    // The key is rotated (the file replaced); the watcher (2 s) reloads.
    let rotated = CosignKey::generate().unwrap();
    rotated
        .write_public_key(&bed.dir().join("release.pub"))
        .unwrap();
    let mut reloaded = false;
    for _ in 0..150 {
        let log = std::fs::read_to_string(pullgate.log_path()).unwrap_or_default();
        if log.contains("policy reloaded") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "{}", pullgate.log_tail());
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &image.digest, "release");
    assert!(
        reason.contains("not made by any of the 1 configured cosign key(s)"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_oversized_sig_manifest_is_an_answer_not_an_outage_even_under_fail_open() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    // fail_open, and a manifest cap far below the .sig manifest pushed.
    let toml = config(
        &bed,
        &key,
        None,
        &[(
            "lenient",
            "app/bloated",
            "[\"cosign\"]\non_registry_error = \"fail_open\"",
            1,
        )],
        "[registry.limits]\nmanifest_bytes = 65536\n",
    )
    .unwrap();
    let image = bed.push_unsigned("app/bloated", "v1").await.unwrap();
    // A good signature first, then 2000 more layers: ~700 KB of manifest.
    let good = key.sign_image(&format!("{host}/app/bloated"), &image.digest);
    let mut layers = vec![good.clone()];
    layers.extend(std::iter::repeat_n(good, 2000));
    push_sig_manifest(&host, "app/bloated", &image.digest, &layers)
        .await
        .unwrap();
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/bloated", "v1");
    let status = cri::pull(&ch, &tag_ref)
        .await
        .expect_err("an oversized .sig manifest must not let the pull through");
    // An answer over a cap is not an outage: failing closed, not open.
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let msg = status.message();
    assert!(msg.contains("failing closed"), "{msg}");
    assert!(msg.contains("65536-byte limit"), "{msg}");
    assert!(!in_containerd(&bed, &tag_ref).await.unwrap());
    assert!(
        !in_containerd(&bed, &image.pinned_ref(&host, "app/bloated"))
            .await
            .unwrap()
    );
}
