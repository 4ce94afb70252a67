//! Smoke tests of the harness itself, against a real containerd and a real
//! docker-registry (run with `-- --include-ignored`, as root).
//!
//! They also pin the containerd behaviour pullgate relies on: after CRI
//! `PullImage("name@sha256:…")`, creating `name:tag` through the native images
//! API (namespace `k8s.io`, target and labels copied from the pinned record)
//! makes CRI `ImageStatus("name:tag")` find the image.

use std::time::Duration;

use pullgate_testkit::cosign::{signature_tag, CosignKey};
use pullgate_testkit::{KeyType, TestPki};
use pullgate_tests::containerd::Containerd;
use pullgate_tests::cosign::attach_cosign_signature;
use pullgate_tests::cri;
use pullgate_tests::distribution::Registry;
use pullgate_tests::docker_registry::DockerRegistry;
use pullgate_tests::image::{push_random_image, push_random_index};
use pullgate_tests::raw_h2;
use pullgate_tests::signer::{
    attach_signature, referrers_from_tag_schema, ReferrersMode, NOTARY_SIGNATURE,
    THUMBPRINT_ANNOTATION,
};
use pullgate_tests::testbed::DockerTestbed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn containerd_pulls_a_pushed_image_by_tag_and_by_digest() {
    let registry = DockerRegistry::start().await.unwrap();
    let host = registry.host();
    let containerd = Containerd::start(&[&host]).await.unwrap();
    let ch = cri::connect(containerd.socket()).await.unwrap();

    let v = cri::version(&ch).await.unwrap();
    assert_eq!(v.runtime_name, "containerd");
    check_authorities_on(containerd.socket()).await.unwrap();

    let by_tag = push_random_image(&host, "smoke/tagged", "v1")
        .await
        .unwrap();
    let tag_ref = format!("{host}/smoke/tagged:v1");
    let id = cri::pull(&ch, &tag_ref)
        .await
        .unwrap_or_else(|s| panic!("pull {tag_ref}: {s}\n{}", containerd.log_tail()));
    let status = cri::image_status(&ch, &tag_ref).await.unwrap().unwrap();
    assert_eq!(status.id, id);
    assert!(status.repo_tags.contains(&tag_ref), "{status:?}");
    assert!(
        status
            .repo_digests
            .contains(&by_tag.pinned_ref(&host, "smoke/tagged")),
        "{status:?}"
    );

    let by_digest = push_random_image(&host, "smoke/pinned", "v1")
        .await
        .unwrap();
    let pinned = by_digest.pinned_ref(&host, "smoke/pinned");
    let id = cri::pull(&ch, &pinned).await.unwrap();
    let status = cri::image_status(&ch, &pinned).await.unwrap().unwrap();
    assert_eq!(status.id, id);
    // A pull by digest records no tag.
    assert!(status.repo_tags.is_empty(), "{status:?}");
    let tag_ref = format!("{host}/smoke/pinned:v1");
    assert!(cri::image_status(&ch, &tag_ref).await.unwrap().is_none());

    // An image index: containerd picks the child for this platform.
    let index = push_random_index(&host, "smoke/index", "v1").await.unwrap();
    let index_ref = format!("{host}/smoke/index:v1");
    cri::pull(&ch, &index_ref).await.unwrap();
    let status = cri::image_status(&ch, &index_ref).await.unwrap().unwrap();
    assert!(
        status
            .repo_digests
            .contains(&index.index.pinned_ref(&host, "smoke/index")),
        "{status:?}"
    );
    let record = cri::containerd_image(&ch, &index_ref)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.target.unwrap().digest, index.index.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn native_tag_after_pinned_pull_makes_cri_image_status_find_the_tag() {
    let registry = DockerRegistry::start().await.unwrap();
    let host = registry.host();
    let containerd = Containerd::start(&[&host]).await.unwrap();
    let ch = cri::connect(containerd.socket()).await.unwrap();

    let image = push_random_image(&host, "smoke/retag", "v1").await.unwrap();
    let pinned = image.pinned_ref(&host, "smoke/retag");
    let tag_ref = format!("{host}/smoke/retag:v1");
    let id = cri::pull(&ch, &pinned).await.unwrap();
    assert!(cri::image_status(&ch, &tag_ref).await.unwrap().is_none());

    let record = cri::containerd_image(&ch, &pinned).await.unwrap().unwrap();
    assert_eq!(record.target.as_ref().unwrap().digest, image.digest);
    cri::containerd_tag(&ch, &pinned, &tag_ref).await.unwrap();
    let tagged = cri::containerd_image(&ch, &tag_ref).await.unwrap().unwrap();
    assert_eq!(tagged.target, record.target);
    assert_eq!(tagged.labels, record.labels);

    // The CRI plugin learns of the new name from containerd's event stream;
    // give it a moment rather than assume it is synchronous.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = cri::image_status(&ch, &tag_ref).await.unwrap() {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ImageStatus({tag_ref}) never found the image\n{}",
            containerd.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.id, id);
    assert!(status.repo_tags.contains(&tag_ref), "{status:?}");
    assert!(status.repo_digests.contains(&pinned), "{status:?}");

    // Tagging again (the name now exists) updates in place.
    cri::containerd_tag(&ch, &pinned, &tag_ref).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn tag_schema_signature_is_listed_in_the_referrers_index() {
    let registry = DockerRegistry::start().await.unwrap();
    let host = registry.host();
    let image = push_random_image(&host, "smoke/signed", "v1")
        .await
        .unwrap();

    for (i, key_type) in [KeyType::EcdsaP256, KeyType::Rsa3072]
        .into_iter()
        .enumerate()
    {
        let pki = TestPki::with_key_type("smoke", key_type).unwrap();
        let envelope = pki.sign_jws(&image.descriptor());
        let sig = attach_signature(
            &host,
            "smoke/signed",
            &image,
            &envelope,
            ReferrersMode::TagSchema,
        )
        .await
        .unwrap();
        let listed = referrers_from_tag_schema(&host, "smoke/signed", &image.digest)
            .await
            .unwrap();
        assert_eq!(listed.len(), i + 1, "{listed:?}");
        let entry = listed
            .iter()
            .find(|d| d["digest"] == sig.manifest.digest.as_str())
            .unwrap();
        assert_eq!(entry["artifactType"], NOTARY_SIGNATURE);
        assert_eq!(entry["size"], sig.manifest.size);
        let thumbs: Vec<String> = serde_json::from_str(
            entry["annotations"][THUMBPRINT_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(thumbs, pki.thumbprints());
    }

    // cosign's tag, next to the tag schema index.
    let key = CosignKey::generate().unwrap();
    let cosign_sig = attach_cosign_signature(&host, "smoke/signed", &image, &key)
        .await
        .unwrap();
    let registry_client = Registry::new(&host);
    let fetched = registry_client
        .get_manifest("smoke/signed", &signature_tag(&image.digest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched.body.as_ref(), cosign_sig.manifest.as_slice());

    // Deleting a signature manifest works (storage.delete.enabled).
    registry_client
        .delete_manifest("smoke/signed", &cosign_sig.digest)
        .await
        .unwrap();
    assert!(registry_client
        .get_manifest("smoke/signed", &cosign_sig.digest)
        .await
        .unwrap()
        .is_none());

    // docker-registry 2.8 has no referrers API: that is why the tag schema is used.
    let resp = registry_client
        .send(
            http::Method::GET,
            &format!("/v2/smoke/signed/referrers/{}", image.digest),
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, http::StatusCode::NOT_FOUND);

    // Attaching in Api mode fails loudly on such a registry.
    let pki = TestPki::new("smoke").unwrap();
    let envelope = pki.sign_jws(&image.descriptor());
    let err = attach_signature(&host, "smoke/signed", &image, &envelope, ReferrersMode::Api)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no referrers API"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn testbed_images_pull_through_containerd() {
    let bed = DockerTestbed::start().await.unwrap();
    let signed = bed.push_signed("bed/signed", "v1").await.unwrap();
    let listed = referrers_from_tag_schema(&bed.host(), "bed/signed", &signed.digest)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    bed.push_unsigned("bed/unsigned", "v1").await.unwrap();

    let policy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bed.trust_policy_path()).unwrap()).unwrap();
    assert_eq!(policy["trustPolicies"][0]["registryScopes"][0], "*");
    assert!(bed.dir().join("truststore/x509/ca/e2e/root.crt").exists());
    let config = bed.pullgate_config().to_toml();
    assert!(config.contains(&bed.host()), "{config}");

    let ch = cri::connect(bed.containerd.socket()).await.unwrap();
    for repo in ["bed/signed", "bed/unsigned"] {
        cri::pull(&ch, &bed.image_ref(repo, "v1")).await.unwrap();
    }
}

/// containerd (grpc-go) answers whatever `:authority` a client sends; the
/// raw client gets a decodable answer for each form pullgate must accept.
async fn check_authorities_on(socket: &std::path::Path) -> anyhow::Result<()> {
    use prost::Message as _;
    use pullgate_proto::runtime::v1::{VersionRequest, VersionResponse};
    let request = VersionRequest {
        version: "v1".to_owned(),
    }
    .encode_to_vec();
    let path_form = socket.display().to_string();
    let encoded_form = path_form.replace('/', "%2F");
    for authority in ["localhost", encoded_form.as_str(), path_form.as_str()] {
        let outcome = raw_h2::unary(
            socket,
            authority.as_bytes(),
            "/runtime.v1.RuntimeService/Version",
            &request,
        )
        .await?;
        anyhow::ensure!(outcome.answered(), "{authority}: {outcome:?}");
        let v = VersionResponse::decode(outcome.message.as_slice())?;
        anyhow::ensure!(v.runtime_name == "containerd", "{authority}: {v:?}");
    }
    Ok(())
}
