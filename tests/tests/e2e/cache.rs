//! The verdict cache seen from outside: one verification for a rollout.

use pullgate_tests::cri;
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
