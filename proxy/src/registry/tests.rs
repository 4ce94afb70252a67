//! The registry client against the in-process OCI registry of `pullgate-tests`.
//!
//! Deadlines are short and only ever asserted through error kinds, never
//! through elapsed wall-clock time.

use std::time::Duration;

use pullgate_policy::config::{Limits, RegistryConfig};
use pullgate_policy::{Digest, ImageRef, Repository};
use pullgate_tests::oci_registry::{AuthMode, OciRegistry, RequestKind};
use serde_json::json;

use super::credentials::Secret;
use super::error::Kind;
use super::media_type::{OCI_ARTIFACT_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::*;
use crate::deadline::Deadline;

const NOTARY: &str = "application/vnd.cncf.notary.signature";
const SBOM: &str = "application/vnd.example.sbom.v1";
const JWS: &str = "application/jose+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

fn config_for(reg: &OciRegistry) -> RegistryConfig {
    RegistryConfig {
        plain_http: vec![reg.host()],
        request_timeout_ms: 5_000,
        ..RegistryConfig::default()
    }
}

fn client(reg: &OciRegistry) -> RegistryClient {
    RegistryClient::new(&config_for(reg)).unwrap()
}

fn client_with(reg: &OciRegistry, f: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
    let mut cfg = config_for(reg);
    f(&mut cfg);
    RegistryClient::new(&cfg).unwrap()
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(20))
}

fn repo(reg: &OciRegistry, name: &str) -> Repository {
    format!("{}/{name}", reg.host()).parse().unwrap()
}

fn image(reg: &OciRegistry, reference: &str) -> ImageRef {
    format!("{}/{reference}", reg.host()).parse().unwrap()
}

fn digest(s: &str) -> Digest {
    s.parse().unwrap()
}

/// Pushes a one-layer image and tags it; returns (digest, manifest size).
fn push_image(reg: &OciRegistry, name: &str, tag: &str) -> (String, usize) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = b"layer bytes".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": reg.put_blob(name, config.clone()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": reg.put_blob(name, layer.clone()), "size": layer.len()}],
    })
    .to_string();
    let len = manifest.len();
    (reg.put_manifest(name, tag, OCI_MANIFEST, manifest), len)
}

/// Pushes an image-manifest signature of `subject`; returns its digest.
fn push_signature(
    reg: &OciRegistry,
    name: &str,
    subject: (&str, usize),
    artifact_type: &str,
    payload: &[u8],
) -> String {
    let blob = reg.put_blob(name, payload.to_vec());
    let empty = reg.put_blob(name, b"{}".to_vec());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_JSON, "digest": empty, "size": 2},
        "layers": [{"mediaType": JWS, "digest": blob, "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[\"abc\"]"},
    })
    .to_string();
    let d = sha256(manifest.as_bytes());
    reg.put_manifest(name, &d, OCI_MANIFEST, manifest)
}

fn sha256(b: &[u8]) -> String {
    Digest::sha256_of(b).to_string()
}

#[tokio::test]
async fn resolves_a_tag_with_one_head() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let c = client(&reg);
    let r = c
        .resolve(&image(&reg, "app:v1"), &Credentials::Anonymous, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
    assert_eq!(r.media_type, OCI_MANIFEST);
    assert_eq!(r.size, len as u64);
    let counts = reg.counts();
    assert_eq!(counts.resolve_head, 1);
    assert_eq!(counts.total(), 1);
}

#[tokio::test]
async fn a_digest_reference_costs_no_request() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    let r = client(&reg)
        .resolve(
            &image(&reg, &format!("app:v1@{d}")),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
    assert_eq!(reg.counts().total(), 0);
}

#[tokio::test]
async fn unknown_tag_is_not_found() {
    let reg = OciRegistry::start().await;
    let err = client(&reg)
        .resolve(
            &image(&reg, "app:nope"),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn referrers_filtered_over_three_pages() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let mut want = Vec::new();
    for i in 0..5 {
        want.push(push_signature(
            &reg,
            "app",
            (&d, len),
            NOTARY,
            format!("sig {i}").as_bytes(),
        ));
    }
    push_signature(&reg, "app", (&d, len), SBOM, b"sbom");
    reg.set_referrers_page_size(Some(2));
    let got = client(&reg)
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    let got_digests: Vec<String> = got.iter().map(|x| x.digest.to_string()).collect();
    assert_eq!(got_digests, want);
    assert!(got
        .iter()
        .all(|x| x.artifact_type.as_deref() == Some(NOTARY)));
    assert!(got[0]
        .annotations
        .contains_key("io.cncf.notary.x509chain.thumbprint#S256"));
    assert_eq!(reg.counts().referrers, 3);
}

#[tokio::test]
async fn referrers_stop_at_the_page_limit() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    for i in 0..5 {
        push_signature(
            &reg,
            "app",
            (&d, len),
            NOTARY,
            format!("sig {i}").as_bytes(),
        );
    }
    reg.set_referrers_page_size(Some(2));
    let c = client_with(&reg, |cfg| cfg.limits.max_referrers_pages = 2);
    let got = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(
        got.cut_at_pages,
        Some(2),
        "the walk was cut with a page unread"
    );
    assert_eq!(reg.counts().referrers, 2);
    // Read to its end: not cut.
    let c = client_with(&reg, |cfg| cfg.limits.max_referrers_pages = 3);
    let all = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!((all.len(), all.cut_at_pages), (5, None));
}

#[tokio::test]
async fn referrers_filtered_here_when_the_registry_ignores_the_filter() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let sig = push_signature(&reg, "app", (&d, len), NOTARY, b"sig");
    push_signature(&reg, "app", (&d, len), SBOM, b"sbom");
    reg.set_referrers_filter(false);
    let got = client(&reg)
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].digest, digest(&sig));
}

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

#[tokio::test]
async fn referrers_of_several_types_are_read_unfiltered() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let notary = push_signature(&reg, "app", (&d, len), NOTARY, b"sig");
    push_signature(&reg, "app", (&d, len), SBOM, b"sbom");
    let bundle = push_signature(&reg, "app", (&d, len), BUNDLE, b"bundle");
    reg.reset_counts();
    let got = client(&reg)
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY, BUNDLE],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    let got: Vec<String> = got.iter().map(|x| x.digest.to_string()).collect();
    assert_eq!(got, [notary, bundle]);
    // One request, without a filter: the spec's filter takes one type.
    assert_eq!(reg.counts().referrers, 1);
}

/// A tag-schema index written by a client that leaves `artifactType` out
/// (docker-registry has no referrers API, so the client writes the index):
/// its entries are kept for the caller to identify by their manifests;
/// entries of other types are not.
#[tokio::test]
async fn untyped_tag_schema_entries_are_kept_for_identification() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let bundle = push_signature(&reg, "app", (&d, len), BUNDLE, b"bundle");
    let sbom = push_signature(&reg, "app", (&d, len), SBOM, b"sbom");
    reg.set_referrers_api(false);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": bundle, "size": 10},
            {"mediaType": OCI_MANIFEST, "digest": sbom, "size": 10, "artifactType": SBOM},
        ],
    })
    .to_string();
    reg.put_manifest("app", &digest(&d).referrers_tag(), OCI_INDEX, index);
    let got = client(&reg)
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[BUNDLE],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].digest, digest(&bundle));
    assert_eq!(got[0].artifact_type, None);
}

#[tokio::test]
async fn referrers_404_falls_back_to_the_tag_schema() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let sig = push_signature(&reg, "app", (&d, len), NOTARY, b"sig");
    push_signature(&reg, "app", (&d, len), SBOM, b"sbom");
    reg.set_referrers_api(false);
    let c = client(&reg);
    // No tag-schema index yet: no referrers, not an error.
    let none = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    reg.put_referrers_tag_index("app", &d);
    reg.reset_counts();
    let got = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].digest, digest(&sig));
    let counts = reg.counts();
    assert_eq!((counts.referrers, counts.manifest_get), (1, 1));
}

#[tokio::test]
async fn reads_image_manifest_signatures_with_subject() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let sig = push_signature(&reg, "app", (&d, len), NOTARY, b"envelope");
    let c = client(&reg);
    let m = c
        .fetch_signature_manifest(
            &repo(&reg, "app"),
            &digest(&sig),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.artifact_type.as_deref(), Some(NOTARY));
    assert_eq!(
        m.subject.as_ref().map(|s| s.digest.clone()),
        Some(digest(&d))
    );
    assert_eq!(m.layers.len(), 1);
    let blob = c
        .fetch_blob(
            &repo(&reg, "app"),
            &m.layers[0],
            1 << 20,
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(&blob[..], b"envelope");

    // An image manifest without artifactType takes its config's media type.
    let m = c
        .fetch_signature_manifest(
            &repo(&reg, "app"),
            &digest(&d),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(m.artifact_type.as_deref(), Some(CONFIG));
}

#[tokio::test]
async fn reads_the_older_artifact_manifest() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let blob = reg.put_blob("app", b"cose".to_vec());
    let manifest = json!({
        "mediaType": OCI_ARTIFACT_MANIFEST,
        "artifactType": NOTARY,
        "blobs": [{"mediaType": "application/cose", "digest": blob, "size": 4}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": d, "size": len},
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"},
    })
    .to_string();
    let sig = reg.put_manifest(
        "app",
        &sha256(manifest.as_bytes()),
        OCI_ARTIFACT_MANIFEST,
        manifest,
    );
    let c = client(&reg);
    let found = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].media_type, OCI_ARTIFACT_MANIFEST);
    let m = c
        .fetch_signature_manifest(
            &repo(&reg, "app"),
            &digest(&sig),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(m.media_type, OCI_ARTIFACT_MANIFEST);
    assert_eq!(m.artifact_type.as_deref(), Some(NOTARY));
    assert_eq!(m.layers[0].media_type, "application/cose");
    assert!(m.config.is_none());
    assert!(m
        .annotations
        .contains_key("io.cncf.notary.x509chain.thumbprint#S256"));
}

#[tokio::test]
async fn oversized_manifest_is_refused_with_or_without_length() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    let c = client_with(&reg, |cfg| {
        cfg.limits = Limits {
            signature_manifest_bytes: 1024,
            ..Limits::default()
        }
    });
    for declare_length in [true, false] {
        reg.serve_oversized(&d, 64 << 10, declare_length);
        let err = c
            .fetch_signature_manifest(
                &repo(&reg, "app"),
                &digest(&d),
                &Credentials::Anonymous,
                deadline(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), Kind::TooLarge { limit: 1024 }),
            "{err:?}"
        );
        assert!(err.is_too_large());
    }
}

#[tokio::test]
async fn oversized_blob_is_refused() {
    let reg = OciRegistry::start().await;
    let blob = reg.put_blob("app", vec![7u8; 100]);
    let desc = Descriptor {
        media_type: JWS.to_owned(),
        digest: digest(&blob),
        size: 100,
        artifact_type: None,
        annotations: Default::default(),
    };
    let c = client(&reg);
    // Larger than the cap by its own descriptor: no request at all.
    let err = c
        .fetch_blob(
            &repo(&reg, "app"),
            &desc,
            99,
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), Kind::TooLarge { limit: 99 }),
        "{err:?}"
    );
    assert_eq!(reg.counts().blob_get, 0);
    // The registry sends more than the descriptor says.
    reg.serve_oversized(&blob, 1000, false);
    let err = c
        .fetch_blob(
            &repo(&reg, "app"),
            &desc,
            1 << 20,
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), Kind::TooLarge { limit: 100 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_content_is_a_digest_mismatch() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    let blob = reg.put_blob("app", b"right".to_vec());
    reg.serve_wrong_body(&d, b"{}".to_vec());
    reg.serve_wrong_body(&blob, b"wrong".to_vec());
    let c = client(&reg);
    let err = c
        .fetch_signature_manifest(
            &repo(&reg, "app"),
            &digest(&d),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), Kind::DigestMismatch { ref expected, .. } if *expected == digest(&d)),
        "{err:?}"
    );
    let desc = Descriptor {
        media_type: JWS.to_owned(),
        digest: digest(&blob),
        size: 5,
        artifact_type: None,
        annotations: Default::default(),
    };
    let err = c
        .fetch_blob(
            &repo(&reg, "app"),
            &desc,
            1024,
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(err.is_digest_mismatch(), "{err:?}");
    // Shorter than the descriptor says.
    reg.serve_wrong_body(&blob, b"righ".to_vec());
    let err = c
        .fetch_blob(
            &repo(&reg, "app"),
            &desc,
            1024,
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            Kind::SizeMismatch {
                expected: 5,
                got: 4
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hanging_registry_hits_the_deadline() {
    let reg = OciRegistry::start().await;
    push_image(&reg, "app", "v1");
    reg.set_hang(RequestKind::ResolveHead, true);
    let c = client(&reg);
    let err = c
        .resolve(
            &image(&reg, "app:v1"),
            &Credentials::Anonymous,
            Deadline::after(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(err.is_timeout());
}

#[tokio::test]
async fn a_slow_request_times_out_before_the_deadline() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    reg.set_hang(RequestKind::Referrers, true);
    let c = client_with(&reg, |cfg| cfg.request_timeout_ms = 100);
    let err = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout() && !err.is_deadline_exceeded(), "{err:?}");
}

#[tokio::test]
async fn server_errors_are_typed() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    reg.fail_next(RequestKind::ResolveHead, 1, 500);
    let c = client(&reg);
    let err = c
        .resolve(&image(&reg, "app:v1"), &Credentials::Anonymous, deadline())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::INTERNAL_SERVER_ERROR));
    assert!(!err.is_timeout() && !err.is_not_found() && !err.is_unreachable());
    let r = c
        .resolve(&image(&reg, "app:v1"), &Credentials::Anonymous, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
}

#[tokio::test]
async fn a_down_registry_is_unreachable() {
    let reg = OciRegistry::start().await;
    push_image(&reg, "app", "v1");
    reg.set_down(true);
    let err = client(&reg)
        .resolve(&image(&reg, "app:v1"), &Credentials::Anonymous, deadline())
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    // The gate shows this sentence to operators; its shape is part of the contract.
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "registry {} unreachable while resolving tag v1",
            reg.host()
        )),
        "{shown}"
    );
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let cfg = RegistryConfig {
        plain_http: vec!["127.0.0.1:1".to_owned()],
        ..RegistryConfig::default()
    };
    let img: ImageRef = "127.0.0.1:1/app:v1".parse().unwrap();
    let err = RegistryClient::new(&cfg)
        .unwrap()
        .resolve(&img, &Credentials::Anonymous, deadline())
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
}

#[tokio::test]
async fn token_flow_with_basic_credentials_and_cache() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    reg.set_auth(AuthMode::Token {
        basic: Some(("alice".into(), "s3cret".into())),
        refresh_token: None,
        expires_in: 300,
    });
    let c = client(&reg);
    let alice = Credentials::for_host(
        &reg.host(),
        Secret::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        },
    );
    for _ in 0..2 {
        let r = c
            .resolve(&image(&reg, "app:v1"), &alice, deadline())
            .await
            .unwrap();
        assert_eq!(r.digest, digest(&d));
    }
    let counts = reg.counts();
    assert_eq!(counts.token, 1, "token cached between requests");
    assert_eq!(counts.resolve_head, 3, "one 401, then two authorised HEADs");

    // Other credentials never reuse alice's token.
    let mallory = Credentials::for_host(
        &reg.host(),
        Secret::Basic {
            username: "alice".into(),
            password: "guess".into(),
        },
    );
    let err = c
        .resolve(&image(&reg, "app:v1"), &mallory, deadline())
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let err = c
        .resolve(&image(&reg, "app:v1"), &Credentials::Anonymous, deadline())
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");

    // A revoked token is replaced once.
    reg.revoke_tokens();
    c.resolve(&image(&reg, "app:v1"), &alice, deadline())
        .await
        .unwrap();
}

#[tokio::test]
async fn identity_and_registry_tokens() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    reg.set_auth(AuthMode::Token {
        basic: None,
        refresh_token: Some("refresh-me".into()),
        expires_in: 300,
    });
    let c = client(&reg);
    let r = c
        .resolve(
            &image(&reg, "app:v1"),
            &Credentials::for_host(&reg.host(), Secret::IdentityToken("refresh-me".into())),
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
    let err = c
        .resolve(
            &image(&reg, "app:v1"),
            &Credentials::for_host(&reg.host(), Secret::IdentityToken("stale".into())),
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let err = c
        .resolve(
            &image(&reg, "app:v1"),
            &Credentials::for_host(&reg.host(), Secret::RegistryToken("not-issued".into())),
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
}

#[tokio::test]
async fn basic_auth_registry() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    reg.set_auth(AuthMode::Basic {
        username: "bob".into(),
        password: "pw".into(),
    });
    let creds = Credentials::from_cri(
        CriAuth {
            username: "bob",
            password: "pw",
            ..CriAuth::default()
        },
        &repo(&reg, "app"),
    );
    let r = client(&reg)
        .resolve(&image(&reg, "app:v1"), &creds, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
}

#[tokio::test]
async fn hosts_toml_mirror_then_server() {
    let mirror = OciRegistry::start().await;
    let upstream = OciRegistry::start().await;
    let (d, _) = push_image(&upstream, "app", "v1");
    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().join(upstream.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"http://{}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            upstream.host(),
            mirror.host()
        ),
    )
    .unwrap();
    let c = RegistryClient::new(&RegistryConfig {
        hosts_dir: Some(dir.path().to_owned()),
        ..RegistryConfig::default()
    })
    .unwrap();
    // The mirror does not have the tag (404): the server answers.
    let r = c
        .resolve(
            &image(&upstream, "app:v1"),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
    assert_eq!(mirror.counts().resolve_head, 1);
    assert_eq!(upstream.counts().resolve_head, 1);
}

/// hosts.toml for `upstream` listing `mirror` first (pull and resolve).
fn hosts_dir_with_mirror(upstream: &OciRegistry, mirror: &OciRegistry) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().join(upstream.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"http://{}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            upstream.host(),
            mirror.host()
        ),
    )
    .unwrap();
    dir
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Issue 10.4: the kubelet's credentials go to the image's own host only.
/// The mirror (another loopback address, so another host) challenges too,
/// and is answered anonymously; before, its token realm got alice's
/// password.
#[tokio::test]
async fn a_mirror_on_another_host_gets_no_credentials() {
    let upstream = OciRegistry::start().await;
    let mirror = OciRegistry::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let (d, _) = push_image(&upstream, "app", "v1");
    upstream.set_auth(AuthMode::Token {
        basic: Some(("alice".into(), "s3cret".into())),
        refresh_token: None,
        expires_in: 300,
    });
    // Anyone gets a token at the mirror, which does not have the image.
    mirror.set_auth(AuthMode::Token {
        basic: None,
        refresh_token: None,
        expires_in: 300,
    });
    let dir = hosts_dir_with_mirror(&upstream, &mirror);
    let c = RegistryClient::new(&RegistryConfig {
        hosts_dir: Some(dir.path().to_owned()),
        ..RegistryConfig::default()
    })
    .unwrap();
    let alice = CriAuth {
        username: "alice",
        password: "s3cret",
        ..CriAuth::default()
    };
    let img = image(&upstream, "app:v1");
    for server_address in ["", &format!("http://{}", upstream.host())] {
        let creds = Credentials::from_cri(
            CriAuth {
                server_address,
                ..alice
            },
            img.repository(),
        );
        let r = c.resolve(&img, &creds, deadline()).await.unwrap();
        assert_eq!(r.digest, digest(&d));
    }
    let password = basic_header("alice", "s3cret");
    let to_mirror = mirror.seen();
    assert!(
        to_mirror
            .iter()
            .all(|s| s.authorization.as_deref() != Some(&password)),
        "{to_mirror:?}"
    );
    assert!(mirror.counts().resolve_head >= 1 && mirror.counts().token >= 1);
    assert!(upstream.authorizations().contains(&password));

    // Credentials naming the mirror's host go to the mirror only.
    let creds = Credentials::from_cri(
        CriAuth {
            server_address: &mirror.host(),
            ..alice
        },
        img.repository(),
    );
    let before = upstream.seen().len();
    let err = c.resolve(&img, &creds, deadline()).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(upstream.seen()[before..]
        .iter()
        .all(|s| s.authorization.as_deref() != Some(&password)));
    assert!(mirror.authorizations().contains(&password));
}

/// Issue 10.4: a registry token is a bearer token for its host, sent only
/// when that host's challenge asks for one.
#[tokio::test]
async fn a_registry_token_is_sent_only_when_challenged() {
    let open = OciRegistry::start().await;
    let (d, _) = push_image(&open, "app", "v1");
    let creds = Credentials::for_host(&open.host(), Secret::RegistryToken("tok-abc".into()));
    let r = client(&open)
        .resolve(&image(&open, "app:v1"), &creds, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
    assert!(open.authorizations().is_empty(), "{:?}", open.seen());

    let guarded = OciRegistry::start().await;
    let (d, _) = push_image(&guarded, "app", "v1");
    guarded.set_auth(AuthMode::Token {
        basic: None,
        refresh_token: None,
        expires_in: 300,
    });
    let token = guarded.issue_token();
    let creds = Credentials::for_host(&guarded.host(), Secret::RegistryToken(token.clone()));
    let r = client(&guarded)
        .resolve(&image(&guarded, "app:v1"), &creds, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
    let seen = guarded.seen();
    assert_eq!(seen[0].authorization, None, "{seen:?}");
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(guarded.counts().token, 0, "the token is used as is");
}

/// Issue 11.6: a realm that failed once is not remembered forever.
#[tokio::test]
async fn a_failed_token_fetch_forgets_the_challenge() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    reg.set_auth(AuthMode::Token {
        basic: None,
        refresh_token: None,
        expires_in: 300,
    });
    // A realm nobody listens on (port 1 on loopback).
    reg.set_token_realm(Some("http://127.0.0.1:1/token".into()));
    let c = client_with(&reg, |cfg| cfg.plain_http.push("127.0.0.1:1".into()));
    let err = c
        .resolve(&image(&reg, "app:v1"), &Credentials::NotGiven, deadline())
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    // The registry moved its realm back; the next pull learns it.
    reg.set_token_realm(None);
    let r = c
        .resolve(&image(&reg, "app:v1"), &Credentials::NotGiven, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
}

/// Issue 11.4: `expires_in` = 2^64 - 1 panicked on `Instant + Duration`.
#[tokio::test]
async fn an_endless_token_lifetime_is_clamped() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    reg.set_auth(AuthMode::Token {
        basic: None,
        refresh_token: None,
        expires_in: u64::MAX,
    });
    let c = client(&reg);
    for _ in 0..2 {
        let r = c
            .resolve(&image(&reg, "app:v1"), &Credentials::NotGiven, deadline())
            .await
            .unwrap();
        assert_eq!(r.digest, digest(&d));
    }
    assert_eq!(reg.counts().token, 1, "the clamped token is cached");
}

/// Issue 11.3: pages stop once `max_signatures` are held.
#[tokio::test]
async fn referrers_stop_once_max_signatures_are_held() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let mut all = Vec::new();
    for i in 0..9 {
        all.push(push_signature(
            &reg,
            "app",
            (&d, len),
            NOTARY,
            format!("sig {i}").as_bytes(),
        ));
    }
    reg.set_referrers_page_size(Some(2));
    let c = client_with(&reg, |cfg| cfg.limits.max_signatures = 3);
    let got = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    let got: Vec<String> = got.iter().map(|x| x.digest.to_string()).collect();
    assert_eq!(got, all[..3]);
    assert_eq!(reg.counts().referrers, 2, "pages 3 to 5 are not read");

    // The tag-schema index is one document: cut to the same number.
    reg.set_referrers_api(false);
    reg.put_referrers_tag_index("app", &d);
    let got = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
}

/// Issue 23.4: the cap keeps the best ranked, read over every page, so a
/// promising signature listed after junk (on the same page, or a later
/// one) is kept; pages stop once the cap holds only the best rank.
#[tokio::test]
async fn ranked_referrers_keep_the_promising_past_the_cap() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let junk = reg.add_synthetic_referrers("app", &d, 50, NOTARY);
    let real = push_signature(&reg, "app", (&d, len), NOTARY, b"the real one");
    let c = client_with(&reg, |cfg| cfg.limits.max_signatures = 3);
    let rank = |x: &Descriptor| u8::from(x.digest.to_string() != real);
    for page_size in [None, Some(7)] {
        reg.set_referrers_page_size(page_size);
        let got = c
            .referrers_ranked(
                &repo(&reg, "app"),
                &digest(&d),
                &[NOTARY],
                &rank,
                &Credentials::Anonymous,
                deadline(),
            )
            .await
            .unwrap();
        let got_digests: Vec<String> = got.iter().map(|x| x.digest.to_string()).collect();
        assert_eq!(
            got_digests,
            [real.clone(), junk[0].clone(), junk[1].clone()],
            "{page_size:?}"
        );
        assert_eq!(got.listed, 51, "{page_size:?}");
        // Unranked, the junk listed first fills the cap.
        let plain = c
            .referrers(
                &repo(&reg, "app"),
                &digest(&d),
                &[NOTARY],
                &Credentials::Anonymous,
                deadline(),
            )
            .await
            .unwrap();
        assert!(plain.iter().all(|x| x.digest.to_string() != real));
    }
    // Three of the best rank held: later pages are not read.
    reg.reset_counts();
    reg.set_referrers_page_size(Some(7));
    let all_best = c
        .referrers_ranked(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &|_| 0,
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!((all_best.len(), reg.counts().referrers), (3, 1));
}

/// Issue 13: `[registry] auth_file` serves pulls that came without
/// credentials, each host its own entry; the kubelet's credentials win.
#[tokio::test]
async fn the_auth_file_serves_pulls_without_credentials() {
    let basic = OciRegistry::start().await;
    let (d, _) = push_image(&basic, "app", "v1");
    basic.set_auth(AuthMode::Basic {
        username: "bob".into(),
        password: "pw".into(),
    });
    let token = OciRegistry::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    let (d2, _) = push_image(&token, "app", "v1");
    token.set_auth(AuthMode::Token {
        basic: Some(("carol".into(), "pw2".into())),
        refresh_token: None,
        expires_in: 300,
    });
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("auth.json");
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {
            format!("http://{}", basic.host()): {"auth": "Ym9iOnB3"},
            token.host(): {"username": "carol", "password": "pw2"},
        }})
        .to_string(),
    )
    .unwrap();
    let c = RegistryClient::new(&RegistryConfig {
        plain_http: vec![basic.host(), token.host()],
        auth_file: Some(auth_file),
        ..RegistryConfig::default()
    })
    .unwrap();
    let r = c
        .resolve(&image(&basic, "app:v1"), &Credentials::NotGiven, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d));
    let r = c
        .resolve(&image(&token, "app:v1"), &Credentials::NotGiven, deadline())
        .await
        .unwrap();
    assert_eq!(r.digest, digest(&d2));
    // bob's password went to his registry only; carol's to the other's realm only.
    assert!(basic.authorizations().contains(&basic_header("bob", "pw")));
    assert!(!token.authorizations().contains(&basic_header("bob", "pw")));
    assert!(!basic
        .authorizations()
        .contains(&basic_header("carol", "pw2")));
    // The kubelet's (wrong) credentials win over the file's.
    let wrong = Credentials::from_cri(
        CriAuth {
            username: "bob",
            password: "nope",
            ..CriAuth::default()
        },
        &repo(&basic, "app"),
    );
    let err = c
        .resolve(&image(&basic, "app:v1"), &wrong, deadline())
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
}

#[test]
fn credentials_debug_hides_secrets() {
    let shown = format!(
        "{:?} {:?}",
        Credentials::for_host(
            "r.example",
            Secret::Basic {
                username: "user".into(),
                password: "hunter2".into()
            }
        ),
        Credentials::for_host("r.example", Secret::IdentityToken("idtok".into()))
    );
    assert!(
        !shown.contains("hunter2") && !shown.contains("idtok"),
        "{shown}"
    );
}

#[test]
fn index_media_type_constant_matches_the_test_registry() {
    assert_eq!(OCI_INDEX, pullgate_tests::oci_registry::OCI_INDEX);
}

#[tokio::test]
async fn absolute_links_on_the_same_origin_are_followed_and_others_refused() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    for i in 0..3 {
        push_signature(
            &reg,
            "app",
            (&d, len),
            NOTARY,
            format!("sig {i}").as_bytes(),
        );
    }
    reg.set_referrers_page_size(Some(1));
    reg.set_referrers_link_origin(Some(format!("http://{}", reg.host())));
    let c = client(&reg);
    let got = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    // A Link to another host would carry our token there: refused.
    reg.set_referrers_link_origin(Some("http://203.0.113.9:5000".to_owned()));
    let err = c
        .referrers(
            &repo(&reg, "app"),
            &digest(&d),
            &[NOTARY],
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), Kind::BadHeader { name: "Link" }),
        "{err:?}"
    );
    assert!(err.is_malformed());
}

#[tokio::test]
async fn blob_redirects_are_followed() {
    let reg = OciRegistry::start().await;
    let blob = reg.put_blob("app", b"stored elsewhere".to_vec());
    reg.set_blob_redirect(true);
    let desc = Descriptor {
        media_type: JWS.to_owned(),
        digest: digest(&blob),
        size: 16,
        artifact_type: None,
        annotations: Default::default(),
    };
    let got = client(&reg)
        .fetch_blob(
            &repo(&reg, "app"),
            &desc,
            1024,
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert_eq!(&got[..], b"stored elsewhere");
    assert_eq!(reg.counts().blob_get, 1);
}

#[tokio::test]
async fn a_passed_deadline_sends_nothing() {
    let reg = OciRegistry::start().await;
    push_image(&reg, "app", "v1");
    let past = Deadline::after(Duration::ZERO);
    let err = client(&reg)
        .resolve(&image(&reg, "app:v1"), &Credentials::Anonymous, past)
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert_eq!(reg.counts().total(), 0);
}

#[tokio::test]
async fn malformed_manifest_is_a_typed_error() {
    let reg = OciRegistry::start().await;
    let bad = b"{\"mediaType\": 42".to_vec();
    let d = reg.put_manifest("app", &sha256(&bad), OCI_MANIFEST, bad);
    let err = client(&reg)
        .fetch_signature_manifest(
            &repo(&reg, "app"),
            &digest(&d),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap_err();
    assert!(err.is_malformed(), "{err:?}");
}

#[tokio::test]
async fn cosign_signature_tag() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    let c = client(&reg);
    let none = c
        .cosign_signatures(
            &repo(&reg, "app"),
            &digest(&d),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap();
    assert!(none.is_none());
    let payload = reg.put_blob("app", b"{\"critical\":{}}".to_vec());
    let config = reg.put_blob("app", b"{}".to_vec());
    let sig = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config, "size": 2},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": payload, "size": 15,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}
        }],
    })
    .to_string();
    let tag = digest(&d).cosign_signature_tag();
    let sig_digest = reg.put_manifest("app", &tag, OCI_MANIFEST, sig);
    let found = c
        .cosign_signatures(
            &repo(&reg, "app"),
            &digest(&d),
            &Credentials::Anonymous,
            deadline(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.digest, digest(&sig_digest));
    assert_eq!(
        found.manifest.layers[0].annotations["dev.cosignproject.cosign/signature"],
        "MEUCIQ=="
    );
}

#[tokio::test]
async fn concurrent_requests_to_one_registry_are_bounded() {
    let reg = OciRegistry::start().await;
    let (d, len) = push_image(&reg, "app", "v1");
    let payload = b"envelope".to_vec();
    let blob = reg.put_blob("app", payload.clone());
    push_signature(&reg, "app", (&d, len), NOTARY, &payload);
    reg.set_latency(Duration::from_millis(20));
    let c = client(&reg);
    let desc = Descriptor {
        media_type: JWS.to_owned(),
        digest: digest(&blob),
        size: payload.len() as u64,
        artifact_type: None,
        annotations: Default::default(),
    };
    let r = repo(&reg, "app");
    let fetches = (0..3 * transport::MAX_CONCURRENT_PER_HOST)
        .map(|_| c.fetch_blob(&r, &desc, 1024, &Credentials::Anonymous, deadline()));
    for got in futures_util::future::join_all(fetches).await {
        assert_eq!(&got.unwrap()[..], &payload[..]);
    }
    let most = reg.max_in_flight();
    assert!(
        most > 1 && most <= transport::MAX_CONCURRENT_PER_HOST,
        "{most}"
    );
    assert_eq!(
        reg.counts().blob_get,
        3 * transport::MAX_CONCURRENT_PER_HOST as u64
    );
}

/// A TLS front for `backend` with a certificate for `localhost` from a fresh
/// CA; returns its address, the CA in PEM, and the task to abort.
async fn tls_front(
    backend: std::net::SocketAddr,
) -> (std::net::SocketAddr, String, tokio::task::JoinHandle<()>) {
    use std::sync::Arc;
    let tls = pullgate_testkit::tls::TlsServer::new(&["localhost"]).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![tls.server.der().into()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(tls.server_key_der().into()),
    )
    .unwrap();
    // The registry behind speaks HTTP/1.1 only.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            conns.spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
            });
        }
    });
    (addr, tls.ca.pem(), task)
}

#[tokio::test]
async fn https_with_hosts_toml_ca_and_skip_verify() {
    let reg = OciRegistry::start().await;
    let (d, _) = push_image(&reg, "app", "v1");
    let (addr, ca_pem, front) = tls_front(reg.addr()).await;
    let host = format!("localhost:{}", addr.port());
    let img: ImageRef = format!("{host}/app:v1").parse().unwrap();

    // System roots only: the test CA is unknown, the handshake fails.
    let err = RegistryClient::new(&RegistryConfig::default())
        .unwrap()
        .resolve(&img, &Credentials::Anonymous, deadline())
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");

    for setting in ["ca = \"ca.pem\"", "skip_verify = true"] {
        let dir = tempfile::tempdir().unwrap();
        let host_dir = dir.path().join(&host);
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(host_dir.join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(
            host_dir.join("hosts.toml"),
            format!("server = \"https://{host}\"\n\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  {setting}\n"),
        )
        .unwrap();
        let c = RegistryClient::new(&RegistryConfig {
            hosts_dir: Some(dir.path().to_owned()),
            ..RegistryConfig::default()
        })
        .unwrap();
        let r = c
            .resolve(&img, &Credentials::Anonymous, deadline())
            .await
            .unwrap_or_else(|e| panic!("{setting}: {e:?}"));
        assert_eq!(r.digest, digest(&d), "{setting}");
    }
    front.abort();
}

/// The gate spawns pulls on a multi-threaded runtime: the client and its
/// futures must be shareable and `Send`.
#[test]
fn client_and_futures_are_send() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let c = RegistryClient::new(&RegistryConfig::default()).unwrap();
    send_sync(&c);
    let img: ImageRef = "localhost:5000/app:v1".parse().unwrap();
    let repo = img.repository().clone();
    let d = Digest::sha256_of(b"x");
    let creds = Credentials::Anonymous;
    let desc = Descriptor {
        media_type: JWS.to_owned(),
        digest: d.clone(),
        size: 1,
        artifact_type: None,
        annotations: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    send(c.resolve(&img, &creds, deadline()));
    send(c.referrers(&repo, &d, &[NOTARY], &creds, deadline()));
    send(c.fetch_signature_manifest(&repo, &d, &creds, deadline()));
    send(c.fetch_blob(&repo, &desc, 1, &creds, deadline()));
    send(c.cosign_signatures(&repo, &d, &creds, deadline()));
}
