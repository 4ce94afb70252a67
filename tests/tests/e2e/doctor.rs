//! The node checks an operator runs: `pullgate doctor` against a kubelet
//! configuration file and a stand-in kubelet process, and `pullgate verify`
//! reading the configuration the daemon reads (`$PULLGATE_CONFIG`).

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Output};

use pullgate_tests::cri;
use pullgate_tests::pullgate::{binary_path, metrics_text, Pullgate};
use pullgate_tests::testbed::OciTestbed;
use tonic::Code;

/// A process whose `argv[0]` is `kubelet` and whose command line carries
/// `args`, as doctor finds a kubelet under `/proc`. Killed on drop.
struct StandInKubelet(Child);

impl StandInKubelet {
    fn start(args: &[String]) -> std::io::Result<Self> {
        // `sh -c` with a loop, so the shell stays (no exec of the last
        // command) and keeps its command line: `kubelet -c … sh <args>`.
        let child = Command::new("/bin/sh")
            .arg0("kubelet")
            .args(["-c", "while :; do sleep 1; done", "sh"])
            .args(args)
            .spawn()?;
        Ok(Self(child))
    }
}

impl Drop for StandInKubelet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn doctor(
    config: &Path,
    kubelet_config: &Path,
    containerd_config: &Path,
) -> std::io::Result<Output> {
    Command::new(binary_path())
        .args(["doctor", "--offline", "--output", "json", "--config"])
        .arg(config)
        .arg("--kubelet-config")
        .arg(kubelet_config)
        .arg("--containerd-config")
        .arg(containerd_config)
        .env_remove("PULLGATE_CONFIG")
        .output()
}

/// The status doctor gave the check `name`.
fn status(out: &Output, name: &str) -> anyhow::Result<String> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let check = report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .ok_or_else(|| anyhow::anyhow!("no check {name}: {report}"))?;
    Ok(check["status"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn doctor_fails_a_node_whose_kubelet_is_not_wired_and_passes_one_that_is() {
    let bed = OciTestbed::start().await.unwrap();
    let c = bed.pullgate_config();
    let config = bed.dir().join("pullgate.toml");
    std::fs::write(&config, c.to_toml()).unwrap();
    let ours = format!("unix://{}", c.socket.display());
    let kubelet_config = bed.dir().join("kubelet-config.yaml");
    let no_containerd_config = bed.dir().join("no-containerd-config.toml");

    // Not wired: the kubelet file names containerd, as a stock node's does.
    std::fs::write(
        &kubelet_config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             containerRuntimeEndpoint: unix://{}\n",
            c.upstream.display()
        ),
    )
    .unwrap();
    let kubelet =
        StandInKubelet::start(&[format!("--config={}", kubelet_config.display())]).unwrap();
    let out = doctor(&config, &kubelet_config, &no_containerd_config).unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(status(&out, "kubelet.process").unwrap(), "ok", "{out:?}");
    assert_eq!(
        status(&out, "kubelet.image_service").unwrap(),
        "fail",
        "{out:?}"
    );
    assert_eq!(
        status(&out, "kubelet.runtime_service").unwrap(),
        "warn",
        "{out:?}"
    );
    // The text form: one line per check, the fix below a failed one.
    let text = Command::new(binary_path())
        .args(["doctor", "--offline", "--config"])
        .arg(&config)
        .arg("--kubelet-config")
        .arg(&kubelet_config)
        .arg("--containerd-config")
        .arg(&no_containerd_config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("fail  kubelet.image_service:")
            && stdout.contains("fix: set `imageServiceEndpoint:"),
        "{stdout}"
    );
    assert!(stdout.contains("EnvironmentFile="), "{stdout}");
    drop(kubelet);

    // The file names pullgate, but a flag (as kubeadm's KUBELET_EXTRA_ARGS
    // would add) points the image service back at containerd: flags win.
    std::fs::write(
        &kubelet_config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             imageServiceEndpoint: \"{ours}\"\ncontainerRuntimeEndpoint: {ours}\n"
        ),
    )
    .unwrap();
    let kubelet = StandInKubelet::start(&[
        format!("--config={}", kubelet_config.display()),
        format!("--image-service-endpoint=unix://{}", c.upstream.display()),
    ])
    .unwrap();
    let out = doctor(&config, &kubelet_config, &no_containerd_config).unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        status(&out, "kubelet.image_service").unwrap(),
        "fail",
        "{out:?}"
    );
    drop(kubelet);

    // Wired: the file and the flag both name pullgate's socket.
    let kubelet = StandInKubelet::start(&[
        format!("--config={}", kubelet_config.display()),
        format!("--image-service-endpoint={ours}"),
    ])
    .unwrap();
    let out = doctor(&config, &kubelet_config, &no_containerd_config).unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for check in [
        "pullgate.config",
        "kubelet.process",
        "kubelet.config_file",
        "kubelet.image_service",
        "kubelet.runtime_service",
        "containerd.socket",
        "pullgate.policy",
        "pullgate.trust_stores",
    ] {
        assert_eq!(status(&out, check).unwrap(), "ok", "{check}: {out:?}");
    }
    drop(kubelet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn verify_without_config_reads_pullgate_config_and_decides_as_the_daemon() {
    let bed = OciTestbed::start().await.unwrap();
    let signed = bed.push_signed("app/same", "good").await.unwrap();
    bed.push_unsigned("app/same", "bad").await.unwrap();
    let config = bed.dir().join("pullgate.toml");
    std::fs::write(&config, bed.pullgate_config().to_toml()).unwrap();

    // The daemon, with the file.
    let pullgate = Pullgate::start(&bed.pullgate_config().to_toml(), bed.dir())
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/same", "good"))
        .await
        .unwrap();
    let denied = cri::pull(&ch, &bed.image_ref("app/same", "bad"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // `verify` without --config, with $PULLGATE_CONFIG: the same decisions.
    let verify = |image: String, env: Option<&Path>| {
        let mut cmd = Command::new(binary_path());
        cmd.args(["verify", "--output", "json"]).arg(image);
        match env {
            Some(p) => cmd.env("PULLGATE_CONFIG", p),
            None => cmd.env_remove("PULLGATE_CONFIG"),
        };
        cmd.output().unwrap()
    };
    let good = verify(bed.image_ref("app/same", "good"), Some(&config));
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let record: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(record["verdict"], "allow", "{record}");
    assert_eq!(record["digest"], signed.digest.as_str(), "{record}");
    let stderr = String::from_utf8_lossy(&good.stderr);
    assert!(
        stderr.contains(&format!("{} ($PULLGATE_CONFIG)", config.display())),
        "the file used is logged: {stderr}"
    );
    let bad = verify(bed.image_ref("app/same", "bad"), Some(&config));
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");

    // Without it (and no /etc/pullgate/pullgate.toml here) the built-in
    // defaults apply, which name no trust policy on this machine: no decision.
    if !Path::new("/etc/pullgate/pullgate.toml").exists() {
        let defaults = verify(bed.image_ref("app/same", "good"), None);
        assert_eq!(defaults.status.code(), Some(2), "{defaults:?}");
        assert!(
            String::from_utf8_lossy(&defaults.stderr).contains("built-in defaults"),
            "{defaults:?}"
        );
    }

    // `policy check` without a file checks that same configuration.
    let check = Command::new(binary_path())
        .args(["policy", "check"])
        .env("PULLGATE_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout).starts_with(&format!(
            "{}: valid pullgate configuration",
            config.display()
        )),
        "{check:?}"
    );

    // A $PULLGATE_CONFIG naming a missing file is an error, never the defaults.
    let missing = verify(
        bed.image_ref("app/same", "good"),
        Some(&bed.dir().join("missing.toml")),
    );
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "the cause once: {stderr}"
    );
}

/// Stops pullgate with SIGTERM (it saves its verdicts on the way out) and waits for it.
async fn terminate(pullgate: &mut Pullgate) -> anyhow::Result<()> {
    let status = Command::new("kill")
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

/// The check `name` of a JSON report.
fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn doctor_counts_images_without_a_saved_allow_and_judges_the_sandbox_image() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_unsigned("app/around", "v1").await.unwrap();
    bed.push_signed("app/through", "v1").await.unwrap();
    let state = bed.dir().join("state");
    let mut c = bed.pullgate_config();
    c.extra = format!(
        "[cache]\nstate_dir = {}\n",
        toml::Value::String(state.display().to_string())
    );
    // The signed image through the daemon, which saves its verdict at shutdown.
    let mut daemon = bed.start_pullgate_with(&c).await.unwrap();
    let ch = cri::connect(daemon.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/through", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", daemon.log_tail()));
    drop(ch);
    terminate(&mut daemon).await.unwrap();
    drop(daemon);
    // The unsigned one straight from containerd's socket, around pullgate.
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    cri::pull(&direct, &bed.image_ref("app/around", "v1"))
        .await
        .unwrap();

    let with_sandbox = |repo: &str| {
        let path = bed
            .dir()
            .join(format!("doctor-{}.toml", repo.replace('/', "-")));
        let sandbox = toml::Value::String(bed.image_ref(repo, "v1")).to_string();
        std::fs::write(
            &path,
            c.to_toml().replacen(
                "[server]\n",
                &format!("[server]\nsandbox_image = {sandbox}\n"),
                1,
            ),
        )
        .unwrap();
        path
    };
    let run = |config: &Path, args: &[&str]| {
        let out = Command::new(binary_path())
            .arg("doctor")
            .args(args)
            .args(["--output", "json", "--config"])
            .arg(config)
            .env_remove("PULLGATE_CONFIG")
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        report
    };

    // The signed image as the sandbox image: its saved verdict allows it.
    let report = run(&with_sandbox("app/through"), &["--offline", "--verbose"]);
    let without = check(&report, "images.without_verdict");
    assert_eq!(without["status"], "warn", "{without:#}");
    let detail = without["detail"].as_str().unwrap();
    assert!(detail.starts_with("1 of 2 image(s)"), "{detail}");
    assert!(
        detail.contains("verdicts made since its last save are not seen"),
        "{detail}"
    );
    let items = without["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{without:#}");
    assert!(
        items[0].as_str().unwrap().contains("app/around"),
        "{without:#}"
    );
    assert_eq!(
        check(&report, "images.sandbox")["status"],
        "ok",
        "{report:#}"
    );
    // Without --verbose: the count only.
    let report = run(&with_sandbox("app/through"), &["--offline"]);
    assert!(check(&report, "images.without_verdict")
        .get("items")
        .is_none());

    // The unsigned image as the sandbox image: no saved verdict; decided
    // now, it is denied, so every pod start would be refused.
    let config = with_sandbox("app/around");
    let report = run(&config, &["--offline"]);
    assert_eq!(
        check(&report, "images.sandbox")["status"],
        "warn",
        "{report:#}"
    );
    let report = run(&config, &[]);
    let sandbox = check(&report, "images.sandbox");
    assert_eq!(sandbox["status"], "fail", "{sandbox:#}");
    assert!(
        sandbox["detail"]
            .as_str()
            .unwrap()
            .contains("no Notary Project signature"),
        "{sandbox:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn the_daemon_counts_images_without_a_verdict_for_prometheus() {
    let bed = OciTestbed::start().await.unwrap();
    bed.push_unsigned("app/around", "v1").await.unwrap();
    bed.push_signed("app/through", "v1").await.unwrap();
    let state = bed.dir().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = bed.pullgate_config();
    c.extra = format!(
        "[cache]\nstate_dir = {}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        toml::Value::String(state.display().to_string())
    );
    // A first daemon verifies the signed image and saves the verdict at shutdown.
    let mut first = bed.start_pullgate_with(&c).await.unwrap();
    let ch = cri::connect(first.socket()).await.unwrap();
    cri::pull(&ch, &bed.image_ref("app/through", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", first.log_tail()));
    drop(ch);
    terminate(&mut first).await.unwrap();
    drop(first);
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    cri::pull(&direct, &bed.image_ref("app/around", "v1"))
        .await
        .unwrap();

    // The next one restores it, and its first pass (at start) counts only
    // the image pulled around pullgate.
    let second = bed.start_pullgate_with(&c).await.unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        body = metrics_text(port).await.unwrap_or_default();
        if body.contains("pullgate_images_without_verdict 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        body.contains("pullgate_images_without_verdict 1\n"),
        "{body}\n{}",
        second.log_tail()
    );
}
