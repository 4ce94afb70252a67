//! Pulls pullgate lets through: signed images, by tag and by digest, through
//! the referrers tag schema (docker-registry) — and what containerd holds after.

use pullgate_tests::cri;
use pullgate_tests::pullgate::audit_records;
use pullgate_tests::testbed::DockerTestbed;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn signed_image_by_tag_is_pulled_pinned_and_its_tag_resolves() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_signed("app/signed", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let tag_ref = bed.image_ref("app/signed", "v1");
    let image_ref = cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("pull denied: {s:?}\n{}", pullgate.log_tail()));
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");

    // The kubelet's next ImageStatus by tag finds it, so IfNotPresent does not re-pull.
    let status = cri::image_status(&ch, &tag_ref).await.unwrap();
    let status = status.unwrap_or_else(|| panic!("tag not resolvable\n{}", pullgate.log_tail()));
    assert_eq!(status.id, image_ref);
    assert!(
        status.repo_tags.contains(&tag_ref),
        "{:?}",
        status.repo_tags
    );
    let pinned = image.pinned_ref(&bed.host(), "app/signed");
    assert!(
        status.repo_digests.contains(&pinned),
        "{:?}",
        status.repo_digests
    );

    // containerd itself holds the image by the verified digest.
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert!(cri::image_status(&direct, &pinned).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn signed_image_by_digest_is_pulled() {
    let bed = DockerTestbed::start().await.unwrap();
    let image = bed.push_signed("app/by-digest", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    let pinned = image.pinned_ref(&bed.host(), "app/by-digest");
    cri::pull(&ch, &pinned)
        .await
        .unwrap_or_else(|s| panic!("pull denied: {s:?}\n{}", pullgate.log_tail()));
    assert!(cri::image_status(&ch, &pinned).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn second_pull_of_a_verified_digest_is_answered_from_the_cache() {
    let bed = DockerTestbed::start().await.unwrap();
    bed.push_signed("app/cached", "v1").await.unwrap();
    let audit = bed.dir().join("audit.log");
    let mut config = bed.pullgate_config();
    config.extra = format!("[audit]\npath = {:?}\n", audit.display().to_string());
    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/cached", "v1");
    cri::pull(&ch, &tag_ref).await.unwrap();
    cri::pull(&ch, &tag_ref).await.unwrap();
    let records = audit_records(&audit, 2).await;
    let cached: Vec<_> = records
        .iter()
        .map(|r| (&r["verdict"], &r["cached"]))
        .collect();
    assert_eq!(
        cached,
        [
            (&json!("allow"), &json!(false)),
            (&json!("allow"), &json!(true))
        ],
        "the second verdict must come from the cache: {records:?}"
    );
    // A hot pull writes no log line at info; the first decision does.
    let log = pullgate.log_tail();
    assert_eq!(log.matches(" allowed").count(), 1, "{log}");
}

/// The OCI 1.1 referrers API path: an in-process registry that serves
/// `GET /v2/<name>/referrers/<digest>`, paginated, so discovery follows `Link`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn signed_image_found_through_the_referrers_api_is_pulled() {
    use pullgate_testkit::TestPki;
    use pullgate_tests::testbed::OciTestbed;

    let bed = OciTestbed::start().await.unwrap();
    bed.registry.set_referrers_page_size(Some(1));
    let image = bed.push_unsigned("app/api", "v1").await.unwrap();
    // An untrusted signature besides the trusted one, so the list spans two pages.
    let stranger = TestPki::new("stranger").unwrap();
    bed.sign("app/api", &image, &stranger).await.unwrap();
    bed.sign("app/api", &image, &bed.pki).await.unwrap();

    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    bed.registry.reset_counts();
    let tag_ref = bed.image_ref("app/api", "v1");
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("pull denied: {s:?}\n{}", pullgate.log_tail()));
    let counts = bed.registry.counts();
    assert!(counts.referrers >= 2, "pagination not followed: {counts:?}");
    assert!(cri::image_status(&ch, &tag_ref).await.unwrap().is_some());
}

/// An image allowed without a digest (level `skip`) goes to containerd under
/// the canonical reference the gate judged, not the client's spelling: for
/// `LOCALHOST:<port>/…`, containerd looks up `hosts.toml` of
/// `localhost:<port>` (the only one there is) and records the image under
/// that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_unpinned_allow_reaches_containerd_under_the_canonical_reference() {
    let bed = DockerTestbed::start().await.unwrap();
    bed.push_unsigned("app/skipped", "v1").await.unwrap();
    let port = bed.host().rsplit_once(':').unwrap().1.to_owned();
    let canonical_host = format!("localhost:{port}");
    bed.containerd.add_registry(&canonical_host).await.unwrap();
    let doc = serde_json::json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "skipped",
            "registryScopes": [format!("{canonical_host}/app/skipped")],
            "signatureVerification": { "level": "skip" },
        }]
    });
    std::fs::write(
        bed.trust_policy_path(),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    cri::pull(&ch, &format!("LOCALHOST:{port}/app/skipped:v1"))
        .await
        .unwrap_or_else(|s| {
            panic!(
                "skipped image not pulled: {s:?}\n{}\n{}",
                pullgate.log_tail(),
                bed.containerd.log_tail()
            )
        });
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let held = cri::image_status(&direct, &format!("{canonical_host}/app/skipped:v1"))
        .await
        .unwrap();
    assert!(
        held.is_some(),
        "containerd holds no {canonical_host}/app/skipped:v1"
    );
}

/// A hot pull by tag reads the tag record and leaves it alone when it already
/// points at the verified digest (no `Update`, so `updated_at` is unchanged);
/// a tag record pointing at another digest is moved back to the verified one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_tag_already_at_the_verified_digest_is_not_rewritten_and_one_elsewhere_is_moved() {
    let bed = DockerTestbed::start().await.unwrap();
    let host = bed.host();
    let image = bed.push_signed("app/retag", "v1").await.unwrap();
    let other = bed.push_signed("app/retag", "other").await.unwrap();
    assert_ne!(image.digest, other.digest);
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/retag", "v1");

    // Absent: the first pull creates the tag record at the verified digest.
    cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("pull denied: {s:?}\n{}", pullgate.log_tail()));
    let first = cri::containerd_image(&direct, &tag_ref)
        .await
        .unwrap()
        .expect("tag record created");
    let target = |r: &pullgate_proto::containerd::services::images::v1::Image| {
        r.target.as_ref().map(|t| t.digest.clone())
    };
    assert_eq!(target(&first), Some(image.digest.clone()));

    // Already there: a second pull (cached verdict) writes nothing.
    cri::pull(&ch, &tag_ref).await.unwrap();
    let second = cri::containerd_image(&direct, &tag_ref)
        .await
        .unwrap()
        .expect("tag record kept");
    assert_eq!(target(&second), Some(image.digest.clone()));
    assert_eq!(
        second.updated_at,
        first.updated_at,
        "the tag record was written again\n{}",
        pullgate.log_tail()
    );

    // Elsewhere: someone points the tag at another image; the next pull by
    // tag puts it back at the digest it verified.
    let other_pinned = other.pinned_ref(&host, "app/retag");
    cri::pull(&ch, &other_pinned).await.unwrap();
    cri::containerd_tag(&direct, &other_pinned, &tag_ref)
        .await
        .unwrap();
    let moved = cri::containerd_image(&direct, &tag_ref)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(target(&moved), Some(other.digest.clone()));
    cri::pull(&ch, &tag_ref).await.unwrap();
    let back = cri::containerd_image(&direct, &tag_ref)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        target(&back),
        Some(image.digest.clone()),
        "{}",
        pullgate.log_tail()
    );
    assert_ne!(back.updated_at, moved.updated_at);
}

/// containerd's CRI plugin learns of a tag record written through the images
/// API from an event it handles on one goroutine, so behind a backlog of image
/// events it reports the tag late. The pull answers only once the CRI image
/// service reports the tag at the pulled image: created (first pull) and
/// moved (the registry's tag moved to another signed image).
///
/// The backlog: [`EVENT_BACKLOG`] image records written through containerd's
/// socket just before each pull (on this machine the last of 400 is reported
/// 50–70 ms after the pull returns, and pullgate without the wait answered
/// before its own tag was reported in every run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_tag_resolves_when_its_pull_returns_even_behind_a_backlog_of_image_events() {
    use pullgate_tests::testbed::OciTestbed;

    let bed = OciTestbed::start().await.unwrap();
    let host = bed.host();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    let tag_ref = bed.image_ref("app/backlog", "v1");

    for round in ["created", "moved"] {
        // A new image under the same tag each round: the second moves it.
        let image = bed.push_signed("app/backlog", "v1").await.unwrap();
        // Present in containerd first, so the pull by tag below is quick
        // and the backlog is still being worked through when it returns.
        let pinned = image.pinned_ref(&host, "app/backlog");
        let id = cri::pull(&ch, &pinned)
            .await
            .unwrap_or_else(|s| panic!("pull denied: {s:?}\n{}", pullgate.log_tail()));
        image_event_backlog(&direct, &pinned, &format!("{host}/backlog-{round}"))
            .await
            .unwrap();

        assert_eq!(cri::pull(&ch, &tag_ref).await.unwrap(), id, "{round}");
        let status = cri::image_status(&ch, &tag_ref).await.unwrap();
        assert_eq!(
            status.map(|s| s.id),
            Some(id),
            "{round}: the tag does not resolve to the pulled image when the pull returns\n{}",
            pullgate.log_tail()
        );
    }
}

/// Image records written per backlog.
const EVENT_BACKLOG: usize = 400;

/// Writes [`EVENT_BACKLOG`] records `<prefix>:<n>` for `from`, eight at a
/// time, through containerd's images API: one `/images/create` event each.
async fn image_event_backlog(
    direct: &tonic::transport::Channel,
    from: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut writers = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let (direct, from, prefix) = (direct.clone(), from.to_owned(), prefix.to_owned());
        writers.spawn(async move {
            for n in (lane..EVENT_BACKLOG).step_by(8) {
                cri::containerd_tag(&direct, &from, &format!("{prefix}:{n}")).await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(())
}

/// notation 2's configuration directory as `[trust] policy`: its
/// `trustpolicy.oci.json` is read (before a `trustpolicy.json` beside it),
/// and its blob policy is ignored with a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_notation_2_directory_is_read_through_its_trustpolicy_oci_json() {
    let bed = DockerTestbed::start().await.unwrap();
    bed.push_signed("app/oci-policy", "v1").await.unwrap();
    bed.push_unsigned("app/oci-policy-unsigned", "v1")
        .await
        .unwrap();
    let policy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bed.trust_policy_path()).unwrap()).unwrap();
    let notation = bed.dir().join("notation");
    std::fs::create_dir_all(&notation).unwrap();
    std::fs::write(
        notation.join("trustpolicy.oci.json"),
        serde_json::to_vec_pretty(&policy).unwrap(),
    )
    .unwrap();
    // A notation 1 file beside it covering no repository of the test
    // registry: were it the one read, the signed image would be denied.
    let mut elsewhere = policy.clone();
    for statement in elsewhere["trustPolicies"].as_array_mut().unwrap() {
        statement["registryScopes"] = json!(["registry.invalid/none"]);
    }
    std::fs::write(
        notation.join("trustpolicy.json"),
        serde_json::to_vec_pretty(&elsewhere).unwrap(),
    )
    .unwrap();
    std::fs::write(
        notation.join("trustpolicy.blob.json"),
        br#"{"version":"1.0","trustPolicies":[]}"#,
    )
    .unwrap();
    let mut config = bed.pullgate_config();
    config.policy = notation;
    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    pullgate
        .wait_for_log("is a policy for blobs, not images: ignored")
        .await
        .unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    cri::pull(&ch, &bed.image_ref("app/oci-policy", "v1"))
        .await
        .unwrap_or_else(|s| panic!("pull denied: {s:?}\n{}", pullgate.log_tail()));
    let status = cri::pull(&ch, &bed.image_ref("app/oci-policy-unsigned", "v1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}
