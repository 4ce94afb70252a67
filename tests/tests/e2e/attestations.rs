//! Required attestations end to end through containerd (issue 25, item 1):
//! a scope whose `[[scope.attestations]]` asks for an SLSA provenance v1
//! built from `github.com/acme/app`, over images signed with a cosign key
//! (Sigstore bundles), their provenance minted, signed with the same key
//! and attached as referrers as `cosign attest --new-bundle-format` does;
//! and, under a key-only scope, cosign v2's `.sig` and `.att` tags; and
//! provenance pushed as an in-toto artifact and signed with notation.

use pullgate_testkit::cosign::{
    key_signed_bundle, sign_statement, slsa_provenance_statement, CosignKey, TestLog,
    SIGN_PREDICATE, SLSA_PROVENANCE_V1,
};
use pullgate_tests::cosign::{
    attach_attestation, attach_bundle, attach_cosign_signature, push_att_manifest, BundleListing,
};
use pullgate_tests::cri;
use pullgate_tests::image::PushedImage;
use pullgate_tests::intoto::attach_intoto_artifact;
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::testbed::OciTestbed;

use super::cosign::{config, denied, in_containerd};

const REPO: &str = "app/built";
const CONDITION: &str = r#"predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app""#;

/// Pushes an image tagged `tag`, signs it (a bundle), and, when
/// `built_from` is given, attaches its provenance naming that repository.
async fn image(
    bed: &OciTestbed,
    key: &CosignKey,
    log: &TestLog,
    tag: &str,
    built_from: Option<&str>,
) -> anyhow::Result<PushedImage> {
    let host = bed.host();
    let name = format!("{host}/{REPO}");
    let image = bed.push_unsigned(REPO, tag).await?;
    let signature = key_signed_bundle(
        key,
        log,
        &sign_statement(&name, &image.digest, SIGN_PREDICATE),
    )?;
    attach_bundle(&host, REPO, &image, &signature, BundleListing::Api).await?;
    if let Some(repository) = built_from {
        let provenance = slsa_provenance_statement(&name, &image.digest, repository);
        let bundle = key_signed_bundle(key, log, &provenance)?;
        attach_attestation(&host, REPO, &image, &bundle, SLSA_PROVENANCE_V1).await?;
    }
    Ok(image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn provenance_from_the_right_repository_is_required() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let toml = config(
        &bed,
        &key,
        Some(&log),
        &[("built", REPO, "[\"cosign\"]", 1)],
        "",
    )
    .unwrap();
    // The scope written last is `built`: its attestations table follows it.
    let requirements = bed.dir().join("requirements.toml");
    let mut text = std::fs::read_to_string(&requirements).unwrap();
    text.push_str(&format!(
        "[[scope.attestations]]\npredicate_type = \"{SLSA_PROVENANCE_V1}\"\nconditions = ['{CONDITION}']\n"
    ));
    std::fs::write(&requirements, text).unwrap();

    let good = image(
        &bed,
        &key,
        &log,
        "good",
        Some("https://github.com/acme/app"),
    )
    .await
    .unwrap();
    let evil = image(
        &bed,
        &key,
        &log,
        "evil",
        Some("https://github.com/evil/app"),
    )
    .await
    .unwrap();
    let bare = image(&bed, &key, &log, "bare", None).await.unwrap();

    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // Signed, and built from acme/app: allowed, pinned.
    cri::pull(&ch, &bed.image_ref(REPO, "good"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &good.pinned_ref(&host, REPO))
        .await
        .unwrap());

    // Signed by the same key, but its provenance names another repository:
    // denied, naming the attestation and the condition.
    let tag_ref = bed.image_ref(REPO, "evil");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &evil.digest, "built");
    assert!(
        reason.starts_with(&format!("the attestation {SLSA_PROVENANCE_V1} (sha256:")),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!(
            "fails condition '{CONDITION}' (it evaluated to false)"
        )),
        "{reason}"
    );
    assert!(!in_containerd(&bed, &evil.pinned_ref(&host, REPO))
        .await
        .unwrap());

    // Signed, no provenance: denied, naming the missing predicate type.
    let tag_ref = bed.image_ref(REPO, "bare");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &bare.digest, "built");
    assert!(
        reason.starts_with(&format!(
            "no signed attestation {SLSA_PROVENANCE_V1} of this digest"
        )),
        "{reason}"
    );
    assert!(!in_containerd(&bed, &bare.pinned_ref(&host, REPO))
        .await
        .unwrap());
}

/// cosign v2 without the bundle format: a `.sig` signature and the
/// provenance as a DSSE envelope layer of the `sha256-<hex>.att` manifest,
/// under a key-only scope (no trusted root: the envelope's signature alone)
/// and under one with a trusted root (the layer's Rekor SET too, checked by
/// sigstore-verify; a layer without one does not count there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn provenance_in_a_cosign_v2_att_tag_is_read() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let toml = config(&bed, &key, None, &[("built", REPO, "[\"cosign\"]", 1)], "").unwrap();
    let requirements = bed.dir().join("requirements.toml");
    let mut text = std::fs::read_to_string(&requirements).unwrap();
    // A second scope, with the log's trusted root.
    let root = bed.dir().join("trusted_root.json");
    log.write_trusted_root(&root).unwrap();
    text.push_str(&format!(
        "[[scope.attestations]]\npredicate_type = \"{SLSA_PROVENANCE_V1}\"\nconditions = ['{CONDITION}']\n\
         [[scope]]\nname = \"logged\"\nregistry_scopes = [\"{}\"]\nsignature_kinds = [\"cosign\"]\n\
         [scope.cosign]\nkeys = [{:?}]\ntrusted_root = {:?}\n\
         [[scope.attestations]]\npredicate_type = \"{SLSA_PROVENANCE_V1}\"\nconditions = ['{CONDITION}']\n",
        bed.scope(LOGGED),
        bed.dir().join("release.pub").display().to_string(),
        root.display().to_string(),
    ));
    std::fs::write(&requirements, text).unwrap();
    let mut images = Vec::new();
    for (repo, tag, built_from, logged) in [
        (REPO, "good", "https://github.com/acme/app", false),
        (REPO, "evil", "https://github.com/evil/app", false),
        (LOGGED, "good", "https://github.com/acme/app", true),
        (LOGGED, "unlogged", "https://github.com/acme/app", false),
    ] {
        let name = format!("{host}/{repo}");
        let image = bed.push_unsigned(repo, tag).await.unwrap();
        // The signature: a `.sig` (key only), or a logged bundle.
        if repo == REPO {
            attach_cosign_signature(&host, repo, &image, &key)
                .await
                .unwrap();
        } else {
            let sig = key_signed_bundle(
                &key,
                &log,
                &sign_statement(&name, &image.digest, SIGN_PREDICATE),
            )
            .unwrap();
            attach_bundle(&host, repo, &image, &sig, BundleListing::Api)
                .await
                .unwrap();
        }
        let provenance = slsa_provenance_statement(&name, &image.digest, built_from);
        push_att_manifest(
            &host,
            repo,
            &image.digest,
            &key,
            logged.then_some(&log),
            &[(provenance.as_slice(), SLSA_PROVENANCE_V1)],
        )
        .await
        .unwrap();
        images.push(image);
    }
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    for (repo, image) in [(REPO, &images[0]), (LOGGED, &images[2])] {
        cri::pull(&ch, &bed.image_ref(repo, "good"))
            .await
            .unwrap_or_else(|s| panic!("{repo}: {s:?}\n{}", pullgate.log_tail()));
        assert!(in_containerd(&bed, &image.pinned_ref(&host, repo))
            .await
            .unwrap());
    }
    let tag_ref = bed.image_ref(REPO, "evil");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &images[1].digest, "built");
    assert!(
        reason.ends_with(&format!(
            "fails condition '{CONDITION}' (it evaluated to false)"
        )),
        "{reason}"
    );
    assert!(!in_containerd(&bed, &images[1].pinned_ref(&host, REPO))
        .await
        .unwrap());
    // Under a trusted root an attestation needs its log entry.
    let tag_ref = bed.image_ref(LOGGED, "unlogged");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &images[3].digest, "logged");
    assert!(
        reason.starts_with(&format!("the attestation {SLSA_PROVENANCE_V1} (sha256:"))
            && reason.contains("does not count: cosign transparency log check failed"),
        "{reason}"
    );
}

const LOGGED: &str = "app/logged";

/// Notation: a notation-only scope (the testbed's trust policy statement
/// trusts its PKI) whose images and whose in-toto provenance artifacts are
/// signed with notation; an unsigned provenance artifact does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn provenance_signed_with_notation_is_read() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let repo = "app/notarised";
    let requirements = bed.dir().join("requirements.toml");
    std::fs::write(
        &requirements,
        format!(
            "[[scope]]\nname = \"notarised\"\nregistry_scopes = [\"{}\"]\n\
             [[scope.attestations]]\npredicate_type = \"{SLSA_PROVENANCE_V1}\"\nconditions = ['{CONDITION}']\n",
            bed.scope(repo)
        ),
    )
    .unwrap();
    let toml = bed.pullgate_config().to_toml().replacen(
        "[trust]\n",
        &format!(
            "[trust]\nrequirements = {:?}\n",
            requirements.display().to_string()
        ),
        1,
    );
    let mut images = Vec::new();
    for (tag, built_from, signed) in [
        ("good", "https://github.com/acme/app", true),
        ("evil", "https://github.com/evil/app", true),
        ("unsigned", "https://github.com/acme/app", false),
    ] {
        let image = bed.push_signed(repo, tag).await.unwrap();
        let provenance =
            slsa_provenance_statement(&format!("{host}/{repo}"), &image.digest, built_from);
        let artifact = attach_intoto_artifact(&host, repo, &image, &provenance, SLSA_PROVENANCE_V1)
            .await
            .unwrap();
        if signed {
            bed.sign(repo, &artifact, &bed.pki).await.unwrap();
        }
        images.push((tag, image));
    }
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref(repo, "good"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &images[0].1.pinned_ref(&host, repo))
        .await
        .unwrap());
    let tag_ref = bed.image_ref(repo, "evil");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(
        &status,
        &tag_ref,
        &images[1].1.digest,
        super::cosign::STATEMENT,
    );
    assert!(
        reason.ends_with(&format!(
            "fails condition '{CONDITION}' (it evaluated to false)"
        )),
        "{reason}"
    );
    let tag_ref = bed.image_ref(repo, "unsigned");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(
        &status,
        &tag_ref,
        &images[2].1.digest,
        super::cosign::STATEMENT,
    );
    assert!(
        reason.contains("does not count: it has no Notary Project signature"),
        "{reason}"
    );
    assert!(!in_containerd(&bed, &images[2].1.pinned_ref(&host, repo))
        .await
        .unwrap());
}
