//! Prefix and glob registry scopes in requirements, end to end: a
//! `host/team/*` scope requiring a cosign key judges the repositories one
//! segment below `host/team` and no other, and `policy check` names the
//! glob and the precedence that chose it.

use pullgate_testkit::cosign::CosignKey;
use pullgate_tests::cosign::attach_cosign_signature;
use pullgate_tests::cri;
use pullgate_tests::pullgate::{binary_path, Pullgate};
use pullgate_tests::testbed::DockerTestbed;

use super::cosign::{config, denied, in_containerd, STATEMENT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_prefix_scope_applies_below_its_prefix_and_nowhere_else() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let key = CosignKey::generate().unwrap();
    let toml = config(
        &bed,
        &key,
        None,
        &[("team", "team/*", "[\"cosign\"]", 1)],
        "",
    )
    .unwrap();
    // Under the prefix: signed by the scope's key, and unsigned.
    let signed = bed.push_unsigned("team/app", "v1").await.unwrap();
    attach_cosign_signature(&host, "team/app", &signed, &key)
        .await
        .unwrap();
    let unsigned = bed.push_unsigned("team/web", "v1").await.unwrap();
    // Outside it (another path, and two segments below): signed by the
    // same key, which only the team scope trusts.
    let outside = bed.push_unsigned("other/app", "v1").await.unwrap();
    attach_cosign_signature(&host, "other/app", &outside, &key)
        .await
        .unwrap();
    let deep = bed.push_unsigned("team/app/deep", "v1").await.unwrap();
    attach_cosign_signature(&host, "team/app/deep", &deep, &key)
        .await
        .unwrap();

    let pullgate = Pullgate::start(&toml, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    cri::pull(&ch, &bed.image_ref("team/app", "v1"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", pullgate.log_tail()));
    assert!(in_containerd(&bed, &signed.pinned_ref(&host, "team/app"))
        .await
        .unwrap());

    let tag_ref = bed.image_ref("team/web", "v1");
    let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
    let reason = denied(&status, &tag_ref, &unsigned.digest, "team");
    assert!(
        reason.contains("no cosign signature of this digest was found"),
        "{reason}"
    );

    // Not under `team/*`: the built-in default (Notary Project signatures
    // under the testbed's statement) decides, and a cosign signature
    // counts for nothing there.
    for (repo, image) in [("other/app", &outside), ("team/app/deep", &deep)] {
        let tag_ref = bed.image_ref(repo, "v1");
        let status = cri::pull(&ch, &tag_ref).await.unwrap_err();
        let reason = denied(&status, &tag_ref, &image.digest, STATEMENT);
        assert!(!reason.contains("cosign"), "{repo}: {reason}");
        assert!(
            !in_containerd(&bed, &image.pinned_ref(&host, repo))
                .await
                .unwrap(),
            "{repo}"
        );
    }

    // `policy check` names the glob and the precedence it applied.
    let cfg = bed.dir().join("pullgate.toml");
    std::fs::write(&cfg, &toml).unwrap();
    let out = std::process::Command::new(binary_path())
        .args(["policy", "check"])
        .arg(&cfg)
        .args(["--image", &bed.image_ref("team/web", "v1")])
        .args(["--namespace", "web"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("requirements scope \"team\""), "{text}");
    // Scopes print in their canonical form: loopback is `localhost`.
    let scope_host = host.replace("127.0.0.1", "localhost");
    assert!(
        text.contains(&format!(
            "its registry scope {scope_host}/team/* (prefix glob (one segment)) is the most specific"
        )),
        "{text}"
    );
    assert!(text.contains("precedence: 1. namespace"), "{text}");
}
