//! `signature_repository` end to end: an image whose cosign signatures
//! (a `.sig` tag, a bundle through the referrers API) live only in another
//! repository is allowed by a scope naming that repository, denied by one
//! that looks next to the image, and a signature there for another digest
//! does not help.

use std::path::Path;
use std::time::Duration;

use pullgate_testkit::cosign::{
    key_signed_bundle, sign_statement, CosignKey, TestLog, SIGN_PREDICATE,
};
use pullgate_tests::cosign::{attach_bundle, push_sig_manifest, BundleListing};
use pullgate_tests::cri;
use pullgate_tests::pullgate::Pullgate;
use pullgate_tests::testbed::{BedRegistry, OciTestbed, Testbed};

use super::cosign::{denied, in_containerd};

/// Writes the requirements and returns their path: two cosign scopes
/// with `key`, "elsewhere" over `host/app/*` (`.sig` signatures, checked
/// against the key alone) and "bundled" over `host/bundled/*` (bundles,
/// with `log`'s trusted root), both with `signature_repository` when given.
fn write_requirements<R: BedRegistry>(
    bed: &Testbed<R>,
    key: &CosignKey,
    log: &TestLog,
    signature_repository: Option<&str>,
) -> anyhow::Result<std::path::PathBuf> {
    let quote = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let key_path = bed.dir().join("release.pub");
    key.write_public_key(&key_path)?;
    let root = bed.dir().join("trusted_root.json");
    log.write_trusted_root(&root)?;
    let sigs = signature_repository
        .map(|r| format!("signature_repository = \"{}\"\n", bed.scope(r)))
        .unwrap_or_default();
    let text = format!(
        "[[scope]]\nname = \"elsewhere\"\nregistry_scopes = [\"{}\"]\nsignature_kinds = [\"cosign\"]\n{sigs}\
         [scope.cosign]\nkeys = [{key}]\n\
         [[scope]]\nname = \"bundled\"\nregistry_scopes = [\"{}\"]\nsignature_kinds = [\"cosign\"]\n{sigs}\
         [scope.cosign]\nkeys = [{key}]\ntrusted_root = {}\n",
        bed.scope("app/*"),
        bed.scope("bundled/*"),
        quote(&root),
        key = quote(&key_path),
    );
    let path = bed.dir().join("requirements.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn signatures_kept_in_another_repository_are_found_only_when_the_scope_names_it() {
    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let requirements = write_requirements(&bed, &key, &log, Some("sigs/b")).unwrap();

    // Image A: its `.sig` signature pushed to sigs/b only.
    let a = bed.push_unsigned("app/a", "v1").await.unwrap();
    let layer = key.sign_image(&format!("{host}/app/a"), &a.digest);
    push_sig_manifest(&host, "sigs/b", &a.digest, &[layer])
        .await
        .unwrap();
    // Image D: a bundle attached to it through the referrers API of sigs/b.
    let d = bed.push_unsigned("bundled/d", "v1").await.unwrap();
    let bundle = key_signed_bundle(
        &key,
        &log,
        &sign_statement(&format!("{host}/bundled/d"), &d.digest, SIGN_PREDICATE),
    )
    .unwrap();
    attach_bundle(&host, "sigs/b", &d, &bundle, BundleListing::Api)
        .await
        .unwrap();
    // Image C: at its `.sig` tag in sigs/b, a good signature of A's digest.
    let c = bed.push_unsigned("app/c", "v1").await.unwrap();
    let layer = key.sign_image(&format!("{host}/app/c"), &a.digest);
    push_sig_manifest(&host, "sigs/b", &c.digest, &[layer])
        .await
        .unwrap();
    // Image E: signed, but its `.sig` sits next to it, not in sigs/b.
    let e = bed.push_unsigned("app/e", "v1").await.unwrap();
    let layer = key.sign_image(&format!("{host}/app/e"), &e.digest);
    push_sig_manifest(&host, "app/e", &e.digest, &[layer])
        .await
        .unwrap();

    let mut config = bed.pullgate_config();
    config.extra = String::new();
    let toml = config.to_toml().replacen(
        "[trust]\n",
        &format!(
            "[trust]\nrequirements = {}\n",
            toml::Value::String(requirements.display().to_string())
        ),
        1,
    );
    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    for (repo, image) in [("app/a", &a), ("bundled/d", &d)] {
        cri::pull(&ch, &bed.image_ref(repo, "v1"))
            .await
            .unwrap_or_else(|s| panic!("{repo}: {s:?}\n{}", pullgate.log_tail()));
        assert!(in_containerd(&bed, &image.pinned_ref(&host, repo))
            .await
            .unwrap());
    }
    let tag_ref = bed.image_ref("app/c", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &c.digest, "elsewhere");
    assert!(
        reason.contains(&format!(
            "the signature is for {}, not for the image digest {}",
            a.digest, c.digest
        )),
        "{reason}"
    );
    assert!(!in_containerd(&bed, &c.pinned_ref(&host, "app/c"))
        .await
        .unwrap());
    // A signature beside the image is not looked at, and the denial says where pullgate looked.
    let tag_ref = bed.image_ref("app/e", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &e.digest, "elsewhere");
    assert!(
        reason.contains("no cosign signature of this digest was found")
            && reason.ends_with(&format!(
                "(looked up in {}, the scope's signature_repository)",
                bed.scope("sigs/b")
            )),
        "{reason}"
    );

    // The same scope looking next to the image (the file rewritten, the
    // watcher reloads): A's cached allow does not serve it, and A is denied.
    write_requirements(&bed, &key, &log, None).unwrap();
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
    for (repo, image, scope) in [("app/a", &a, "elsewhere"), ("bundled/d", &d, "bundled")] {
        let tag_ref = bed.image_ref(repo, "v1");
        let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
        let reason = denied(&status, &tag_ref, &image.digest, scope);
        assert!(
            reason.contains("no cosign signature of this digest was found"),
            "{repo}: {reason}"
        );
    }
}
