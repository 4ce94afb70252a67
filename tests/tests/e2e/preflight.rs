//! `pullgate preflight --config NEW` through the real binary and a real
//! containerd: what a stricter configuration would change on the node,
//! decided by two in-process gates, the running daemon untouched.
//!
//! Containers do not start on these machines (runc cannot start a sandbox
//! here, no CNI), so nothing runs: the images containerd holds are listed
//! and judged, and the exit status is the one for a node where nothing
//! running would be denied (0). The rule that a running container's denial
//! exits 1 is covered by the unit tests of `cli::preflight`.

use std::path::Path;
use std::process::{Command, Output};

use pullgate_tests::cri;
use pullgate_tests::pullgate::binary_path;
use pullgate_tests::testbed::OciTestbed;

/// Runs `pullgate preflight --config new` with `$PULLGATE_CONFIG` naming the
/// configuration in force, as on a node.
fn preflight(current: &Path, new: &Path, json: bool) -> std::io::Result<Output> {
    let mut cmd = Command::new(binary_path());
    cmd.arg("preflight").arg("--config").arg(new);
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.env("PULLGATE_CONFIG", current).output()
}

/// The row of the image whose decided record has `digest`.
fn row<'a>(report: &'a serde_json::Value, digest: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["digest"] == digest))
        .unwrap_or_else(|| panic!("no row for {digest}: {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_unsigned_image_brought_in_around_pullgate_would_be_denied_under_a_strict_config() {
    let bed = OciTestbed::start().await.unwrap();
    let unsigned = bed.push_unsigned("app/imported", "v1").await.unwrap();
    let signed = bed.push_signed("app/signed", "v1").await.unwrap();
    // Pulled straight from containerd's socket: pullgate never saw them.
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    for repo in ["app/imported", "app/signed"] {
        cri::pull(&direct, &bed.image_ref(repo, "v1"))
            .await
            .unwrap();
    }

    // In force: one scope for everything, in audit mode (a rollout's first step).
    let config = bed.pullgate_config();
    let requirements = bed.dir().join("audit.toml");
    std::fs::write(
        &requirements,
        "[[scope]]\nname = \"rollout\"\nregistry_scopes = [\"*\"]\nmode = \"audit\"\n",
    )
    .unwrap();
    let current = bed.dir().join("current.toml");
    std::fs::write(
        &current,
        config.to_toml().replacen(
            "[trust]\n",
            &format!(
                "[trust]\nrequirements = {}\n",
                toml::Value::String(requirements.display().to_string())
            ),
            1,
        ),
    )
    .unwrap();
    // NEW: the same trust files, enforced (the built-in requirements).
    let new = bed.dir().join("new.toml");
    std::fs::write(&new, config.to_toml()).unwrap();

    let out = preflight(&current, &new, true).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    let imported = row(&report, &unsigned.digest);
    assert_eq!(imported["now"]["verdict"], "audit_allow", "{imported:#}");
    assert_eq!(imported["now"]["scope"], "rollout", "{imported:#}");
    assert_eq!(imported["new"]["verdict"], "deny", "{imported:#}");
    assert_eq!(imported["changes"], true);
    assert!(
        imported["new"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no Notary Project signature")),
        "{imported:#}"
    );
    assert_eq!(imported["pods"], serde_json::json!([]));
    let kept = row(&report, &signed.digest);
    assert_eq!(kept["now"]["verdict"], "allow", "{kept:#}");
    assert_eq!(kept["new"]["verdict"], "allow", "{kept:#}");
    assert_eq!(kept["changes"], false);
    // Nothing runs (containers cannot start here): nothing running would be denied.
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // Text: the change, in words; the unchanged image is not listed.
    let out = preflight(&current, &new, false).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text
        .find(&unsigned.digest)
        .unwrap_or_else(|| panic!("{text}"));
    let block = &text[at..];
    assert!(
        block.contains("now:  allow (audit mode: would be denied) [scope rollout]"),
        "{text}"
    );
    assert!(block.contains("new:  would deny"), "{text}");
    assert!(!text.contains(&signed.digest), "{text}");
    assert!(text.contains("1 would change"), "{text}");
    assert_eq!(out.status.code(), Some(0));

    // A NEW configuration whose files do not load: no verdict, exit 2.
    let broken = bed.dir().join("broken.toml");
    std::fs::write(
        &broken,
        "[trust]\npolicy = \"/nonexistent/trustpolicy.json\"\n",
    )
    .unwrap();
    let out = preflight(&current, &broken, false).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the new configuration's trust files"),
        "{stderr}"
    );
}
