//! The runtime doors: `CreateContainer` and `RunPodSandbox` run only images
//! with an allow verdict for the pod's scope, whatever brought the image to
//! containerd.
//!
//! Containers do not start on these machines (runc cannot start a sandbox
//! here, and no CNI is configured), so an allowed call is shown by
//! containerd's own answer coming back intact (for `CreateContainer` in a
//! sandbox that does not exist: containerd's `NotFound`), and a refused one
//! by pullgate's denial, with containerd never asked.

use std::path::Path;

use pullgate_tests::cri;
use pullgate_tests::pullgate::{binary_path, Pullgate, PullgateConfig};
use pullgate_tests::testbed::DockerTestbed;
use tonic::{Code, Status};

/// A sandbox id containerd does not know: its `CreateContainer` answers `NotFound`.
const NO_SANDBOX: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `config` as TOML with `[trust] requirements` set to a file holding `requirements`.
fn with_requirements(
    config: &PullgateConfig,
    dir: &Path,
    requirements: &str,
) -> std::io::Result<String> {
    let path = dir.join("requirements.toml");
    std::fs::write(&path, requirements)?;
    let quoted = toml::Value::String(path.display().to_string()).to_string();
    Ok(config.to_toml().replacen(
        "[trust]\n",
        &format!("[trust]\nrequirements = {quoted}\n"),
        1,
    ))
}

/// Asserts `status` is pullgate's refusal to create a container from
/// `image` (`digest`), and returns its message.
fn refused(status: &Status, image: &str, digest: &str) -> String {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message().to_owned();
    assert!(
        msg.starts_with(&format!("container not created: image {image}")),
        "{msg}"
    );
    assert!(msg.contains(digest), "the digest is named: {msg}");
    assert!(msg.contains("denied by policy"), "{msg}");
    msg
}

/// Asserts pullgate passed the call on: the answer is containerd's own for
/// the same call made straight to containerd.
fn containerds_own(through: &Status, direct: &Status) {
    assert_eq!(through.code(), direct.code(), "{through:?} vs {direct:?}");
    assert_eq!(through.message(), direct.message());
    assert_ne!(through.code(), Code::PermissionDenied, "{through:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_unsigned_image_brought_in_around_pullgate_is_not_created() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_unsigned("app/imported", "v1").await.unwrap();
    let tag_ref = bed.image_ref("app/imported", "v1");
    // Pulled straight from containerd's socket, as `ctr images import` or a
    // node image would have put it there: pullgate never saw it.
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let id = cri::pull(&direct, &tag_ref).await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // By image id, as the kubelet sends it, and by name.
    let pinned = image.pinned_ref(&bed.host(), "app/imported");
    for asked in [id.as_str(), tag_ref.as_str()] {
        let status = cri::create_container(&ch, NO_SANDBOX, asked, &[], "default")
            .await
            .unwrap_err();
        let msg = refused(&status, &pinned, &image.digest);
        assert!(msg.contains("no Notary Project signature"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_signed_image_is_created_by_containerd_whether_or_not_pullgate_pulled_it() {
    let bed = DockerTestbed::start().await.unwrap();
    bed.push_signed("app/through", "v1").await.unwrap();
    bed.push_signed("app/around", "v1").await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    // One pulled through pullgate (its verdict is cached), one around it
    // (verified when the container is created).
    let through = cri::pull(&ch, &bed.image_ref("app/through", "v1"))
        .await
        .unwrap();
    let around = cri::pull(&direct, &bed.image_ref("app/around", "v1"))
        .await
        .unwrap();
    for id in [through, around] {
        let via_pullgate = cri::create_container(&ch, NO_SANDBOX, &id, &[], "default")
            .await
            .unwrap_err();
        let straight = cri::create_container(&direct, NO_SANDBOX, &id, &[], "default")
            .await
            .unwrap_err();
        containerds_own(&via_pullgate, &straight);
        assert_eq!(via_pullgate.code(), Code::NotFound, "{via_pullgate:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_unsigned_image_volume_stops_the_container() {
    let bed = DockerTestbed::start().await.unwrap();
    bed.push_signed("app/main", "v1").await.unwrap();
    let volume = bed.push_unsigned("data/volume", "v1").await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let main = cri::pull(&ch, &bed.image_ref("app/main", "v1"))
        .await
        .unwrap();
    let volume_id = cri::pull(&direct, &bed.image_ref("data/volume", "v1"))
        .await
        .unwrap();

    let status = cri::create_container(&ch, NO_SANDBOX, &main, &[&volume_id], "default")
        .await
        .unwrap_err();
    refused(
        &status,
        &volume.pinned_ref(&bed.host(), "data/volume"),
        &volume.digest,
    );
    // Without the volume, containerd answers.
    let status = cri::create_container(&ch, NO_SANDBOX, &main, &[], "default")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_image_allowed_in_a_permissive_namespace_does_not_run_in_a_strict_one() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_unsigned("app/laundered", "v1").await.unwrap();
    let tag_ref = bed.image_ref("app/laundered", "v1");
    // `dev` only audits; every other namespace gets the strict default.
    let toml = with_requirements(
        &bed.pullgate_config(),
        bed.dir(),
        "[[scope]]\nname = \"dev\"\nregistry_scopes = [\"*\"]\nnamespaces = [\"dev\"]\nmode = \"audit\"\n",
    )
    .unwrap();
    let pullgate = Pullgate::start_binary_with_env(&binary_path(), &toml, bed.dir(), &[])
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // Pulled for a pod in `dev`: allowed (audit), so containerd has it.
    let id = cri::pull_for_pod(&ch, &tag_ref, "dev").await.unwrap();
    // The same image for a pod in `prod`: not created, whatever the cache holds.
    let status = cri::create_container(&ch, NO_SANDBOX, &id, &[], "prod")
        .await
        .unwrap_err();
    let pinned = image.pinned_ref(&bed.host(), "app/laundered");
    refused(&status, &pinned, &image.digest);
    // A pull for `prod` is denied too, and `dev` may still create it.
    let status = cri::pull_for_pod(&ch, &tag_ref, "prod").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = cri::create_container(&ch, NO_SANDBOX, &id, &[], "dev")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_unsigned_sandbox_image_is_refused_and_never_pulled() {
    let bed = DockerTestbed::start_with_sandbox_image("pause:3.9")
        .await
        .unwrap();
    let pause = bed.push_unsigned("pause", "3.9").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let status = cri::run_pod_sandbox(&ch, "default", "web")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    let pause_ref = bed.image_ref("pause", "3.9");
    assert!(
        msg.starts_with(&format!("pod sandbox not created: image {pause_ref}")),
        "{msg}"
    );
    assert!(msg.contains(&pause.digest), "{msg}");
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert!(cri::image_status(&direct, &pause_ref)
        .await
        .unwrap()
        .is_none());
    assert!(
        cri::image_status(&direct, &pause.pinned_ref(&bed.host(), "pause"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_signed_sandbox_image_is_pulled_through_the_gate_before_the_sandbox() {
    let bed = DockerTestbed::start_with_sandbox_image("pause:3.9")
        .await
        .unwrap();
    let pause = bed.push_signed("pause", "3.9").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // containerd's own answer (no CNI, no runnable sandbox here), not a denial.
    let status = cri::run_pod_sandbox(&ch, "default", "web")
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        !status.message().contains("pod sandbox not created"),
        "{status:?}"
    );
    // The sandbox image is there, pulled by pullgate pinned at the signed
    // digest, its tag pointing there.
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let pause_ref = bed.image_ref("pause", "3.9");
    assert!(cri::image_status(&direct, &pause_ref)
        .await
        .unwrap()
        .is_some());
    let record = cri::containerd_image(&direct, &pause_ref).await.unwrap();
    assert_eq!(
        record.and_then(|r| r.target).map(|t| t.digest),
        Some(pause.digest.clone())
    );
    // Present now: the next sandbox is admitted from the verdict cache.
    let again = cri::run_pod_sandbox(&ch, "default", "web-2")
        .await
        .unwrap_err();
    assert_ne!(again.code(), Code::PermissionDenied, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn image_volume_artifacts_are_verified_like_images() {
    use pullgate_tests::image::push_random_artifact;
    const DATA: &str = "application/vnd.example.model.v1";
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let signed = push_random_artifact(&host, "data/signed", "v1", DATA)
        .await
        .unwrap();
    bed.sign("data/signed", &signed, &bed.pki).await.unwrap();
    let unsigned = push_random_artifact(&host, "data/unsigned", "v1", DATA)
        .await
        .unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();

    // The kubelet pulls an image volume with PullImage: the unsigned
    // artifact is denied, naming it, and containerd never sees it.
    let unsigned_ref = bed.image_ref("data/unsigned", "v1");
    let status = cri::pull(&ch, &unsigned_ref).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(&unsigned.digest), "{status:?}");
    assert!(cri::image_status(&direct, &unsigned_ref)
        .await
        .unwrap()
        .is_none());
    // The signed one is allowed: containerd pulls it pinned (or, where this
    // containerd cannot use an artifact as an image, answers with its own
    // error, passed on intact).
    let signed_ref = bed.image_ref("data/signed", "v1");
    let pinned = signed.pinned_ref(&host, "data/signed");
    match cri::pull(&ch, &signed_ref).await {
        Ok(_) => {
            let record = cri::containerd_image(&direct, &pinned).await.unwrap();
            assert_eq!(
                record.and_then(|r| r.target).map(|t| t.digest),
                Some(signed.digest.clone())
            );
        }
        Err(through) => {
            // containerd 1.6: "failed to unpack image on snapshotter native:
            // mismatched image rootfs and manifest layers".
            let straight = cri::pull(&direct, &pinned).await.unwrap_err();
            assert_eq!(
                through.code(),
                straight.code(),
                "{through:?} vs {straight:?}"
            );
            assert_ne!(through.code(), Code::PermissionDenied, "{through:?}");
        }
    }
}

/// An OCI testbed's pullgate whose allow verdicts live one second, with an audit log.
async fn short_lived_verdicts(
    bed: &pullgate_tests::testbed::OciTestbed,
) -> anyhow::Result<(Pullgate, std::path::PathBuf)> {
    let audit = bed.dir().join("audit.log");
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "[cache]\nallow_ttl_secs = 1\n\n[audit]\npath = {}\n",
        toml::Value::String(audit.display().to_string())
    );
    Ok((bed.start_pullgate_with(&config).await?, audit))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_registry_outage_does_not_stop_a_restart_of_an_allowed_container() {
    use pullgate_tests::pullgate::audit_records;
    let bed = pullgate_tests::testbed::OciTestbed::start().await.unwrap();
    bed.push_signed("app/restarts", "v1").await.unwrap();
    let (pullgate, audit) = short_lived_verdicts(&bed).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let id = cri::pull(&ch, &bed.image_ref("app/restarts", "v1"))
        .await
        .unwrap();
    // The verdict expires, and the registry goes away.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    bed.registry.set_down(true);

    // The container restarts: containerd answers (allowed, with a warning).
    let status = cri::create_container(&ch, NO_SANDBOX, &id, &[], "default")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    pullgate
        .wait_for_log("allowed on the standing allow")
        .await
        .unwrap();
    let records = audit_records(&audit, 2).await;
    let last = records.last().unwrap();
    assert_eq!(last["verdict"], "standing", "{records:?}");
    assert_eq!(last["door"], "create", "{records:?}");
    assert_eq!(last["namespace"], "default", "{records:?}");

    // A pull is not a restart: nothing new comes onto the node unverified.
    let pinned = cri::image_status(&ch, &id)
        .await
        .unwrap()
        .unwrap()
        .repo_digests;
    let status = cri::pull(&ch, &pinned[0]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_changed_policy_stops_the_restart_through_an_outage_and_denies_it_after() {
    let bed = pullgate_tests::testbed::OciTestbed::start().await.unwrap();
    let image = bed.push_signed("app/restarts", "v1").await.unwrap();
    let (pullgate, _) = short_lived_verdicts(&bed).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let id = cri::pull(&ch, &bed.image_ref("app/restarts", "v1"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    // The policy changes (another signer trusted): a new generation, under
    // which nothing stands. With the registry down, the container stays down.
    let stranger = pullgate_testkit::TestPki::new("stranger").unwrap();
    bed.write_trust_policy(&["*"], &[&stranger]).unwrap();
    pullgate.wait_for_log("policy reloaded").await.unwrap();
    bed.registry.set_down(true);
    let status = cri::create_container(&ch, NO_SANDBOX, &id, &[], "default")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().starts_with("container not created:"),
        "{status:?}"
    );
    // With the registry back, the new policy denies it outright.
    bed.registry.set_down(false);
    let status = cri::create_container(&ch, NO_SANDBOX, &id, &[], "default")
        .await
        .unwrap_err();
    refused(
        &status,
        &image.pinned_ref(&bed.host(), "app/restarts"),
        &image.digest,
    );
}

/// Pushes a checkpoint image naming `base` (pinned) in its `config.dump`,
/// behind `filler` bytes of memory pages, as `repo:v1`, signed.
async fn push_signed_checkpoint(
    bed: &DockerTestbed,
    repo: &str,
    base: &str,
    filler: usize,
) -> anyhow::Result<pullgate_tests::image::PushedImage> {
    use pullgate_tests::image::{build_checkpoint_image, config_dump, push_image};
    let base_name = format!("{}:v1", base.split('@').next().unwrap_or(base));
    let built = build_checkpoint_image(&config_dump(base, &base_name), filler)?;
    let pushed = push_image(&bed.host(), repo, "v1", &built).await?;
    bed.sign(repo, &pushed, &bed.pki).await?;
    Ok(pushed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_checkpoint_restores_only_onto_a_base_image_allowed_for_the_pod() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let unsigned = bed.push_unsigned("app/base-unsigned", "v1").await.unwrap();
    let signed = bed.push_signed("app/base-signed", "v1").await.unwrap();
    let unsigned_base = unsigned.pinned_ref(&host, "app/base-unsigned");
    let signed_base = signed.pinned_ref(&host, "app/base-signed");
    // Both checkpoint images are signed: only their base images differ.
    push_signed_checkpoint(&bed, "ckpt/onto-unsigned", &unsigned_base, 4096)
        .await
        .unwrap();
    push_signed_checkpoint(&bed, "ckpt/onto-signed", &signed_base, 4096)
        .await
        .unwrap();
    // Brought in around pullgate, as `ctr images import` would.
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let onto_unsigned = cri::pull(&direct, &bed.image_ref("ckpt/onto-unsigned", "v1"))
        .await
        .unwrap();
    let onto_signed = cri::pull(&direct, &bed.image_ref("ckpt/onto-signed", "v1"))
        .await
        .unwrap();
    let audit = bed.dir().join("audit.log");
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "[audit]\npath = {}\n",
        toml::Value::String(audit.display().to_string())
    );
    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    // The unsigned base, absent from containerd: refused, naming the
    // checkpoint, the base and its digest; the base is not pulled.
    let status = cri::create_container(&ch, NO_SANDBOX, &onto_unsigned, &[], "default")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    assert!(
        msg.starts_with("container not created: checkpoint image "),
        "{msg}"
    );
    assert!(msg.contains("ckpt/onto-unsigned"), "{msg}");
    assert!(
        msg.contains(&format!("restores onto base image {unsigned_base}")),
        "{msg}"
    );
    assert!(msg.contains("denied by policy"), "{msg}");
    assert!(cri::image_status(&direct, &unsigned_base)
        .await
        .unwrap()
        .is_none());
    // Decided at the create door, for the pod: the checkpoint allowed, its base denied.
    let records = pullgate_tests::pullgate::audit_records(&audit, 2).await;
    let base_record = records
        .iter()
        .find(|r| {
            r["image"]
                .as_str()
                .is_some_and(|i| i.contains("app/base-unsigned"))
        })
        .unwrap_or_else(|| panic!("no audit record of the base: {records:?}"));
    assert_eq!(base_record["verdict"], "deny", "{records:?}");
    assert_eq!(base_record["door"], "create", "{records:?}");
    assert_eq!(base_record["namespace"], "default", "{records:?}");
    // Present in containerd (pulled around pullgate): still refused.
    cri::pull(&direct, &unsigned_base).await.unwrap();
    let status = cri::create_container(&ch, NO_SANDBOX, &onto_unsigned, &[], "default")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(&unsigned.digest), "{status:?}");

    // The signed base: pulled through the gate, pinned, then the call goes
    // to containerd, whose own answer (1.6 restores nothing) comes back.
    assert!(cri::image_status(&direct, &signed_base)
        .await
        .unwrap()
        .is_none());
    let via_pullgate = cri::create_container(&ch, NO_SANDBOX, &onto_signed, &[], "default")
        .await
        .unwrap_err();
    let straight = cri::create_container(&direct, NO_SANDBOX, &onto_signed, &[], "default")
        .await
        .unwrap_err();
    containerds_own(&via_pullgate, &straight);
    let record = cri::containerd_image(&direct, &signed_base).await.unwrap();
    assert_eq!(
        record.and_then(|r| r.target).map(|t| t.digest),
        Some(signed.digest.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_checkpoint_whose_config_dump_lies_beyond_the_read_limit_is_refused() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let signed = bed.push_signed("app/base", "v1").await.unwrap();
    let base = signed.pinned_ref(&host, "app/base");
    // 256 KiB of memory pages before config.dump; pullgate reads 64 KiB.
    push_signed_checkpoint(&bed, "ckpt/large", &base, 256 << 10)
        .await
        .unwrap();
    push_signed_checkpoint(&bed, "ckpt/small", &base, 1024)
        .await
        .unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let large = cri::pull(&direct, &bed.image_ref("ckpt/large", "v1"))
        .await
        .unwrap();
    let small = cri::pull(&direct, &bed.image_ref("ckpt/small", "v1"))
        .await
        .unwrap();
    let toml = bed.pullgate_config().to_toml().replacen(
        "[server]\n",
        "[server]\ncheckpoint_read_bytes = 65536\n",
        1,
    );
    let pullgate = Pullgate::start_binary_with_env(&binary_path(), &toml, bed.dir(), &[])
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let status = cri::create_container(&ch, NO_SANDBOX, &large, &[], "default")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let msg = status.message();
    assert!(
        msg.starts_with("container not created: checkpoint image "),
        "{msg}"
    );
    assert!(msg.contains("ckpt/large"), "{msg}");
    assert!(msg.contains("larger than the 65536 bytes"), "{msg}");
    assert!(cri::image_status(&direct, &base).await.unwrap().is_none());
    // The same base behind a small layer: read, pulled through the gate, forwarded.
    let status = cri::create_container(&ch, NO_SANDBOX, &small, &[], "default")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(cri::image_status(&direct, &base).await.unwrap().is_some());
}
