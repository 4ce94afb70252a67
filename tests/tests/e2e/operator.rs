//! The operator's controls end to end: requirements (several signers, fail
//! open or closed), the audit log, metrics, the health check, and the
//! one-shot CLI (`policy check`, `verify`).

use std::path::Path;

use pullgate_testkit::TestPki;
use pullgate_tests::cri;
use pullgate_tests::oci_registry::RequestKind;
use pullgate_tests::pullgate::{audit_records, binary_path, metrics_text, Pullgate};
use pullgate_tests::raw_h2;
use pullgate_tests::testbed::OciTestbed;
use tonic::Code;

/// The testbed's config with `[trust] requirements = <file>` holding `requirements`, plus `extra` tables.
fn config_toml(bed: &OciTestbed, requirements: &str, extra: &str) -> anyhow::Result<String> {
    let path = bed.dir().join("requirements.toml");
    std::fs::write(&path, requirements)?;
    let mut c = bed.pullgate_config();
    c.extra = extra.to_owned();
    let quoted = toml::Value::String(path.display().to_string()).to_string();
    let toml = c.to_toml();
    Ok(toml.replacen(
        "[trust]\n",
        &format!("[trust]\nrequirements = {quoted}\n"),
        1,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_two_identity_requirement_denies_an_image_signed_by_one() {
    let bed = OciTestbed::start().await.unwrap();
    let scanner = TestPki::new("scanner").unwrap();
    bed.trust_root(&scanner, "scanner-root").unwrap();
    bed.write_trust_policy(&["*"], &[&bed.pki, &scanner])
        .unwrap();
    let requirements = format!(
        "[[scope]]\nname = \"approvals\"\nregistry_scopes = [\"*\"]\nidentities = [{:?}, {:?}]\n",
        bed.pki.trusted_identity(),
        scanner.trusted_identity()
    );
    let audit = bed.dir().join("audit.log");
    let extra = format!("[audit]\npath = {:?}\n", audit.display().to_string());
    let pullgate = Pullgate::start(
        &config_toml(&bed, &requirements, &extra).unwrap(),
        bed.dir(),
    )
    .await
    .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let once = bed.push_signed("app/one-signer", "v1").await.unwrap();
    let image = bed.image_ref("app/one-signer", "v1");
    let status = cri::pull(&ch, &image).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    assert!(msg.contains(&once.digest), "{msg}");
    assert!(
        msg.contains("requirements of scope \"approvals\" not met") && msg.contains("CN=scanner"),
        "{msg}"
    );

    let both = bed.push_signed("app/two-signers", "v1").await.unwrap();
    bed.sign("app/two-signers", &both, &scanner).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/two-signers", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));

    let lines = audit_records(&audit, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["verdict"], "deny");
    assert_eq!(lines[0]["requirement"], "approvals");
    assert_eq!(lines[1]["verdict"], "allow");
    let signers: Vec<&str> = lines[1]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["passed"] == true)
        .map(|s| s["signer"].as_str().unwrap())
        .collect();
    assert_eq!(signers.len(), 2, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn fail_open_allows_and_audits_when_the_registry_fails_and_fail_closed_denies() {
    let bed = OciTestbed::start().await.unwrap();
    let requirements = format!(
        "[[scope]]\nname = \"lenient\"\nregistry_scopes = [\"{}/app/lenient\"]\non_registry_error = \"fail_open\"\n",
        bed.host()
    );
    let audit = bed.dir().join("audit.log");
    let extra = format!("[audit]\npath = {:?}\n", audit.display().to_string());
    let pullgate = Pullgate::start(
        &config_toml(&bed, &requirements, &extra).unwrap(),
        bed.dir(),
    )
    .await
    .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let lenient = bed.push_unsigned("app/lenient", "v1").await.unwrap();
    bed.push_unsigned("app/strict", "v1").await.unwrap();
    // Signature discovery fails (the registry answers 503 on referrers); manifests and blobs work.
    bed.registry.fail_next(RequestKind::Referrers, 1000, 503);

    cri::pull(&ch, &bed.image_ref("app/lenient", "v1"))
        .await
        .unwrap_or_else(|s| panic!("fail_open did not allow: {s:?}\n{}", pullgate.log_tail()));
    let status = cri::pull(&ch, &bed.image_ref("app/strict", "v1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("failing closed"), "{status:?}");

    let lines = audit_records(&audit, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["verdict"], "fail_open");
    assert_eq!(lines[0]["digest"], lenient.digest.as_str());
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("503"),
        "{lines:?}"
    );
    assert_eq!(lines[1]["verdict"], "error");
    assert!(!std::fs::read_to_string(&audit)
        .unwrap()
        .contains("password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn health_check_is_serving_and_metrics_count_decisions() {
    let bed = OciTestbed::start().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let pullgate = Pullgate::start(&config_toml(&bed, "", &extra).unwrap(), bed.dir())
        .await
        .unwrap();

    let health = raw_h2::unary(
        pullgate.socket(),
        b"localhost",
        "/grpc.health.v1.Health/Check",
        &[],
    )
    .await
    .unwrap();
    assert!(health.answered(), "{health:?}");
    assert_eq!(health.message, [0x08, 0x01], "SERVING");

    let ch = cri::connect(pullgate.socket()).await.unwrap();
    bed.push_signed("app/metered", "v1").await.unwrap();
    let image = bed.image_ref("app/metered", "v1");
    cri::pull(&ch, &image).await.unwrap();
    cri::pull(&ch, &image).await.unwrap();

    let body = metrics_text(port).await.unwrap();
    for needle in [
        "pullgate_decisions_total{door=\"pull\",verdict=\"allow\",reason=\"verified\"} 2",
        "pullgate_cache_lookups_total{result=\"hit\"} 1",
        "pullgate_cache_lookups_total{result=\"miss\"} 1",
        "pullgate_verifications_total{outcome=\"allowed\"} 1",
        "pullgate_phase_duration_seconds_count{phase=\"discover\"} 1",
        "pullgate_phase_duration_seconds_count{phase=\"forward\"} 2",
        "pullgate_policy_generation 1",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn verify_cli_prints_every_signature_and_exits_by_verdict() {
    let bed = OciTestbed::start().await.unwrap();
    let stranger = TestPki::new("stranger").unwrap();
    let signed = bed.push_signed("app/cli", "good").await.unwrap();
    // A second, untrusted signature on the same image: listed, and failed.
    bed.sign("app/cli", &signed, &stranger).await.unwrap();
    bed.push_unsigned("app/cli", "bad").await.unwrap();
    let config = bed.dir().join("verify.toml");
    std::fs::write(&config, config_toml(&bed, "", "").unwrap()).unwrap();

    let run = |image: String, json: bool| {
        let mut cmd = std::process::Command::new(binary_path());
        cmd.arg("verify").arg(image).arg("--config").arg(&config);
        if json {
            cmd.args(["--output", "json"]);
        }
        cmd.output().unwrap()
    };
    let good = run(bed.image_ref("app/cli", "good"), true);
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let record: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(record["verdict"], "allow");
    assert_eq!(record["digest"], signed.digest.as_str());
    let sigs = record["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2, "{record}");
    assert_eq!(sigs.iter().filter(|s| s["passed"] == true).count(), 1);

    let bad = run(bed.image_ref("app/cli", "bad"), false);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("verdict:   denied"), "{text}");

    let unreachable = run("127.0.0.1:1/app/gone:v1".to_owned(), false);
    assert_eq!(unreachable.status.code(), Some(2), "{unreachable:?}");

    let check = |file: &Path| {
        std::process::Command::new(binary_path())
            .args(["policy", "check"])
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = check(&bed.trust_policy_path());
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(text.contains("verification level: strict"), "{text}");
    assert!(text.contains("authenticity         enforce"), "{text}");
    let broken = bed.dir().join("broken.toml");
    std::fs::write(
        &broken,
        "[[scope]]\nname = \"x\"\nregistry_scopes = [\"*\"]\nmin_signers = 0\n",
    )
    .unwrap();
    let refused = check(&broken);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("requirements scope \"x\""),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn audit_mode_and_break_glass_allow_unsigned_images_and_say_so() {
    let bed = OciTestbed::start().await.unwrap();
    let audited = bed.push_unsigned("app/audited", "v1").await.unwrap();
    let glass = bed.push_unsigned("app/glass", "v1").await.unwrap();
    bed.push_unsigned("app/enforced", "v1").await.unwrap();
    let requirements = format!(
        "[[scope]]\nname = \"dry-run\"\nregistry_scopes = [\"{}/app/audited\"]\nmode = \"audit\"\n\n\
         [[break_glass]]\ndigest = {:?}\nreason = \"INC-42 hotfix\"\n",
        bed.host(),
        glass.digest
    );
    let audit = bed.dir().join("audit.log");
    let extra = format!("[audit]\npath = {:?}\n", audit.display().to_string());
    let pullgate = Pullgate::start(
        &config_toml(&bed, &requirements, &extra).unwrap(),
        bed.dir(),
    )
    .await
    .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    cri::pull(&ch, &bed.image_ref("app/audited", "v1"))
        .await
        .unwrap_or_else(|s| panic!("audit mode refused: {s:?}\n{}", pullgate.log_tail()));
    cri::pull(&ch, &bed.image_ref("app/glass", "v1"))
        .await
        .unwrap_or_else(|s| panic!("break-glass refused: {s:?}\n{}", pullgate.log_tail()));
    let status = cri::pull(&ch, &bed.image_ref("app/enforced", "v1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let lines = audit_records(&audit, 3).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["verdict"], "audit_allow");
    assert_eq!(lines[0]["digest"], audited.digest.as_str());
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no Notary Project signature"),
        "{lines:?}"
    );
    assert_eq!(lines[1]["verdict"], "break_glass");
    assert_eq!(lines[1]["reason"], "INC-42 hotfix");
    assert_eq!(lines[2]["verdict"], "deny");
    let log = std::fs::read_to_string(pullgate.log_path()).unwrap();
    assert!(log.contains("break-glass digest configured"), "{log}");
    assert!(
        log.contains("break-glass digest: allowed without verification"),
        "{log}"
    );
}

/// Issue 23, item 8: a `[[break_glass]]` digest was allowed in every
/// repository; with `registry_scopes` it is allowed only in the
/// repositories named, and the same digest elsewhere is verified (denied,
/// unsigned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn break_glass_registry_scopes_keep_the_digest_to_its_repository() {
    let bed = OciTestbed::start().await.unwrap();
    let image = pullgate_tests::image::build_random_image().unwrap();
    let glass = pullgate_tests::image::push_image(&bed.host(), "app/incident", "v1", &image)
        .await
        .unwrap();
    let elsewhere = pullgate_tests::image::push_image(&bed.host(), "app/other", "v1", &image)
        .await
        .unwrap();
    assert_eq!(glass.digest, elsewhere.digest);
    let requirements = format!(
        "[[break_glass]]\ndigest = {:?}\nreason = \"INC-7 hotfix\"\nregistry_scopes = [\"{}/app/incident\"]\n",
        glass.digest,
        bed.host()
    );
    let pullgate = Pullgate::start(&config_toml(&bed, &requirements, "").unwrap(), bed.dir())
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/incident", "v1"))
        .await
        .unwrap_or_else(|s| panic!("break-glass refused: {s:?}\n{}", pullgate.log_tail()));
    let status = cri::pull(&ch, &bed.image_ref("app/other", "v1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

/// Issue 23, items 1 and 7: `pullgate policy check` warns when the `*`
/// requirements scope is weaker than a specific one, and on a keyless
/// `subject_regex` that is not anchored.
#[test]
#[ignore = "needs the pullgate binary"]
fn policy_check_warns_about_a_weaker_global_scope_and_unanchored_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors/cosign/trusted_root_pgi.json");
    let file = dir.path().join("requirements.toml");
    std::fs::write(
        &file,
        format!(
            "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"127.0.0.1:05000/prod/app\"]\nmin_signers = 2\n\n\
             [[scope]]\nname = \"rest\"\nregistry_scopes = [\"*\"]\nmode = \"warn\"\n\n\
             [[scope]]\nname = \"keyless\"\nregistry_scopes = [\"registry.example/app\"]\nsignature_kinds = [\"cosign\"]\n\
             [scope.cosign]\ntrusted_root = {:?}\n\
             [[scope.cosign.identities]]\nissuer = \"https://token.actions.githubusercontent.com\"\nsubject_regex = \"github\\\\.com/acme/app/\"\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(binary_path())
        .args(["policy", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("registry scopes: localhost:5000/prod/app"),
        "{text}"
    );
    assert!(
        text.contains("WARNING: the global scope \"*\" (scope \"rest\") is weaker than scope \"prod\" (min_signers 1, not 2, mode warn, not enforce)"),
        "{text}"
    );
    assert!(
        text.contains("WARNING: scope \"keyless\": keyless subject_regex \"github\\\\.com/acme/app/\" (issuer \"https://token.actions.githubusercontent.com\") is not anchored"),
        "{text}"
    );
}

/// Under `permissive`, an expired signature is allowed, and the logged (not
/// enforced) failure is recorded in the audit log and counted in metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn logged_validations_reach_the_audit_log_and_metrics() {
    use pullgate_testkit::notation::trust_policy_json;
    use pullgate_testkit::JwsOptions;
    use pullgate_tests::signer::{attach_signature, ReferrersMode};
    let bed = OciTestbed::start().await.unwrap();
    let mut doc = trust_policy_json(&["*"], "e2e", &[&bed.pki.trusted_identity()]);
    doc["trustPolicies"][0]["signatureVerification"]["level"] = "permissive".into();
    std::fs::write(bed.trust_policy_path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let audit = bed.dir().join("audit.log");
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[audit]\npath = {:?}\n",
        audit.display().to_string()
    );
    let pullgate = Pullgate::start(&config_toml(&bed, "", &extra).unwrap(), bed.dir())
        .await
        .unwrap();

    let image = bed.push_unsigned("app/expired", "v1").await.unwrap();
    let options = JwsOptions {
        expiry: Some("2020-01-01T00:00:00Z".to_owned()),
        ..JwsOptions::default()
    };
    let envelope = bed.pki.sign_jws_with(&image.descriptor(), &options);
    attach_signature(
        &bed.host(),
        "app/expired",
        &image,
        &envelope,
        ReferrersMode::Api,
    )
    .await
    .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/expired", "v1"))
        .await
        .unwrap_or_else(|s| panic!("permissive did not allow: {s:?}\n{}", pullgate.log_tail()));

    let lines = audit_records(&audit, 1).await;
    let logged = &lines[0]["signatures"][0]["logged_failures"];
    assert!(
        logged.as_array().is_some_and(|a| a
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.starts_with("expiry:")))),
        "{lines:?}"
    );
    let body = metrics_text(port).await.unwrap();
    let needle = "pullgate_logged_validation_failures_total{validation=\"expiry\"} 1";
    assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
}
