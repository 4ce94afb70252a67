//! The verdict cache seen from outside: one verification for a rollout.

use pullgate_tests::cri;
use pullgate_tests::pullgate::metrics_text;
use pullgate_tests::testbed::OciTestbed;

/// A DaemonSet rolling out on one node: 100 pulls of one new image at once
/// must cause exactly one signature discovery at the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs containerd"]
async fn hundred_concurrent_pulls_of_a_new_image_cause_one_referrers_request() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_signed("app/rollout", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    bed.registry.reset_counts();

    let image = bed.image_ref("app/rollout", "v1");
    let mut pulls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let ch = ch.clone();
        let image = image.clone();
        pulls.spawn(async move { cri::pull(&ch, &image).await });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(r) = pulls.join_next().await {
        let id = r
            .unwrap()
            .unwrap_or_else(|s| panic!("pull failed: {s:?}\n{}", pullgate.log_tail()));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 1, "every pull got the same image: {ids:?}");
    let counts = bed.registry.counts();
    assert_eq!(
        counts.referrers,
        1,
        "one verification for 100 pulls: {counts:?}\n{}",
        pullgate.log_tail()
    );
}

/// Stops pullgate with SIGTERM (a graceful shutdown saves the verdicts) and waits for it.
async fn terminate(pullgate: &mut pullgate_tests::pullgate::Pullgate) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pullgate.pid().to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    for _ in 0..100 {
        if !pullgate.is_running() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("pullgate did not stop:\n{}", pullgate.log_tail())
}

/// A restarted pullgate trusts the verdicts it persisted — unless the file was altered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn persisted_verdicts_survive_a_restart_and_a_tampered_file_is_ignored() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_signed("app/persisted", "v1").await.unwrap();
    let state = bed.dir().join("state");
    let mut config = bed.pullgate_config();
    config.extra = format!("[cache]\nstate_dir = {:?}\n", state.display().to_string());
    let image = bed.image_ref("app/persisted", "v1");

    let mut first = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(first.socket()).await.unwrap();
    cri::pull(&ch, &image)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", first.log_tail()));
    drop(ch);
    terminate(&mut first).await.unwrap();
    drop(first);
    assert!(state.join("verdicts.json").exists());

    bed.registry.reset_counts();
    let mut second = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(second.socket()).await.unwrap();
    cri::pull(&ch, &image)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", second.log_tail()));
    assert_eq!(
        bed.registry.counts().referrers,
        0,
        "restored verdict not used\n{}",
        second.log_tail()
    );
    drop(ch);
    terminate(&mut second).await.unwrap();
    drop(second);

    // Flip one character of the body: the MAC no longer verifies.
    let path = state.join("verdicts.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"until_unix_ms\":", "\"until_unix_ms\":9", 1);
    assert_ne!(text, tampered);
    std::fs::write(&path, tampered).unwrap();
    bed.registry.reset_counts();
    let third = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(third.socket()).await.unwrap();
    cri::pull(&ch, &image).await.unwrap();
    assert_eq!(bed.registry.counts().referrers, 1, "{}", third.log_tail());
    let log = std::fs::read_to_string(third.log_path()).unwrap();
    assert!(log.contains("persisted verdicts ignored"), "{log}");
}

/// A state directory someone else can write is refused: a key and a
/// verdict file planted there (a valid MAC under the planted key, for an
/// unsigned image) are not restored, and pulls keep working without
/// persisted verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_state_dir_others_can_write_is_refused_and_nothing_planted_is_restored() {
    use hmac::{Hmac, Mac};
    use std::os::unix::fs::PermissionsExt;

    let bed = OciTestbed::start().await.unwrap();
    let signed = bed.push_signed("app/planted", "signed").await.unwrap();
    let unsigned = bed.push_unsigned("app/planted", "unsigned").await.unwrap();

    // A genuine verdict file, to copy the format and the trust files' fingerprint from.
    let genuine = bed.dir().join("genuine-state");
    let mut config = bed.pullgate_config();
    config.extra = format!("[cache]\nstate_dir = {:?}\n", genuine.display().to_string());
    let mut first = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(first.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/planted", "signed"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", first.log_tail()));
    drop(ch);
    terminate(&mut first).await.unwrap();
    drop(first);
    let text = std::fs::read_to_string(genuine.join("verdicts.json")).unwrap();
    let body = text.lines().next().unwrap();
    assert!(body.contains(&signed.digest), "{body}");

    // The attacker's copy: the unsigned image's digest, MACed under their key,
    // in a world-writable directory.
    let planted = bed.dir().join("shared-state");
    std::fs::create_dir(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let key = [0x5a_u8; 32];
    let forged = body.replace(&signed.digest, &unsigned.digest);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(forged.as_bytes());
    let tag = hex::encode(mac.finalize().into_bytes());
    std::fs::write(planted.join("verdicts.key"), key).unwrap();
    std::fs::write(planted.join("verdicts.json"), format!("{forged}\n{tag}\n")).unwrap();

    config.extra = format!("[cache]\nstate_dir = {:?}\n", planted.display().to_string());
    let second = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(second.socket()).await.unwrap();
    let status = cri::pull(&ch, &bed.image_ref("app/planted", "unsigned"))
        .await
        .expect_err("a planted verdict allowed an unsigned image");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // Pulls keep working.
    cri::pull(&ch, &bed.image_ref("app/planted", "signed"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", second.log_tail()));
    let log = std::fs::read_to_string(second.log_path()).unwrap();
    assert!(
        log.contains("verdicts will not be persisted") && log.contains("not safe to trust"),
        "{log}"
    );
    // Nothing was written into the refused directory.
    assert_eq!(
        std::fs::read_to_string(planted.join("verdicts.json")).unwrap(),
        format!("{forged}\n{tag}\n")
    );
}

/// A pullgate whose allow verdicts live 6 s and are refreshed once less
/// than 25% to 50% of that is left, with an audit log and a metrics port.
async fn refreshing_pullgate(
    bed: &OciTestbed,
) -> anyhow::Result<(pullgate_tests::pullgate::Pullgate, std::path::PathBuf, u16)> {
    let audit = bed.dir().join("audit.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "[cache]\nallow_ttl_secs = 6\nrefresh_ahead_percent = 50\n\n[audit]\npath = {:?}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        audit.display().to_string()
    );
    Ok((bed.start_pullgate_with(&config).await?, audit, port))
}

/// Pulls `image` every 200 ms (at most 100 times) until `done` says so;
/// returns the last answer and how many pulls were made.
async fn pull_until(
    ch: &tonic::transport::Channel,
    image: &str,
    mut done: impl FnMut(&Result<String, tonic::Status>) -> bool,
) -> (Result<String, tonic::Status>, usize) {
    let mut last = cri::pull(ch, image).await;
    let mut pulls = 1;
    while !done(&last) && pulls < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        last = cri::pull(ch, image).await;
        pulls += 1;
    }
    (last, pulls)
}

/// An allow verdict in use is verified again before it expires: pulls that
/// keep hitting it cause one more verification (one more referrers
/// request) while every one of them is answered from the cache, and a pull
/// after the first verdict's expiry is still a cache hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_allow_in_use_is_refreshed_before_it_expires() {
    use pullgate_tests::pullgate::audit_records;
    let bed = OciTestbed::start().await.unwrap();
    let image = bed.push_signed("app/busy", "v1").await.unwrap();
    let (pullgate, audit, port) = refreshing_pullgate(&bed).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let pinned = image.pinned_ref(&bed.host(), "app/busy");
    bed.registry.reset_counts();
    let first = cri::pull(&ch, &pinned)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    // The first verdict was made before this point, so it expires before `old_expiry`.
    let old_expiry = tokio::time::Instant::now() + std::time::Duration::from_secs(6);
    assert_eq!(bed.registry.counts().referrers, 1);

    // Pulls keep hitting it until one of them starts the refresh.
    let (last, pulls) = pull_until(&ch, &pinned, |_| bed.registry.counts().referrers >= 2).await;
    assert_eq!(last.unwrap(), first);
    assert_eq!(
        bed.registry.counts().referrers,
        2,
        "one refresh\n{}",
        pullgate.log_tail()
    );
    let records = audit_records(&audit, pulls + 1).await;
    assert_eq!(records.len(), pulls + 1, "{records:?}");
    assert!(
        records[1..]
            .iter()
            .all(|r| r["cached"] == true && r["verdict"] == "allow"),
        "every pull after the first was a cache hit: {records:#?}"
    );

    // After the first verdict's expiry, the refreshed one answers.
    tokio::time::sleep_until(old_expiry + std::time::Duration::from_millis(300)).await;
    let n = records.len();
    assert_eq!(cri::pull(&ch, &pinned).await.unwrap(), first);
    let records = audit_records(&audit, n + 1).await;
    let after = &records[n];
    assert_eq!(
        after["cached"],
        true,
        "{records:#?}\n{}",
        pullgate.log_tail()
    );
    assert_eq!(after["verdict"], "allow", "{after:#}");
    let text = metrics_text(port).await.unwrap();
    assert!(
        text.contains("pullgate_verdict_refreshes_total{result=\"allowed\"}"),
        "{text}"
    );
}

/// A refresh that finds the signature gone replaces the allow with a
/// denial: the next pull is denied from the cache, before the allow would
/// have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_refresh_that_finds_the_signature_gone_denies_the_next_pull() {
    use pullgate_tests::oci_registry::{Fault, FaultTarget};
    use pullgate_tests::pullgate::audit_records;
    let bed = OciTestbed::start().await.unwrap();
    let image = bed.push_unsigned("app/revoked", "v1").await.unwrap();
    let signature = bed.sign("app/revoked", &image, &bed.pki).await.unwrap();
    let (pullgate, audit, port) = refreshing_pullgate(&bed).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let pinned = image.pinned_ref(&bed.host(), "app/revoked");
    cri::pull(&ch, &pinned)
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));

    // The signature's envelope is gone from the registry (404).
    bed.registry.set_fault(
        FaultTarget::Digest(signature.envelope.digest.clone()),
        Fault::Status {
            status: 404,
            headers: Vec::new(),
        },
    );
    let (last, pulls) = pull_until(&ch, &pinned, Result::is_err).await;
    let status = last.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::PermissionDenied,
        "{status:?}\n{}",
        pullgate.log_tail()
    );
    assert!(status.message().contains(&image.digest), "{status:?}");
    let records = audit_records(&audit, pulls + 1).await;
    assert_eq!(records.len(), pulls + 1, "{records:?}");
    let denied = records.last().unwrap();
    assert_eq!(denied["verdict"], "deny", "{records:#?}");
    assert_eq!(
        denied["cached"], true,
        "the denial was the refresh's, not this pull's own verification: {records:#?}"
    );
    assert!(
        records[..records.len() - 1]
            .iter()
            .all(|r| r["verdict"] == "allow"),
        "{records:#?}"
    );
    let text = metrics_text(port).await.unwrap();
    assert!(
        text.contains("pullgate_verdict_refreshes_total{result=\"denied\"} 1"),
        "{text}"
    );
}
