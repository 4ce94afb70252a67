//! cosign `.sig` layers and image bundles: the containers/image fixtures,
//! the sigstore-go and cosign bundles (verdicts from each `SOURCE.md`), and
//! signatures minted here with P-256, P-384, Ed25519 and RSA keys.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use pullgate_policy::requirements::{CosignRejection, CosignRequirement, Requirements};
use pullgate_policy::{Digest, Repository};
use pullgate_testkit::cosign::{seeded_key, KeyAlg};

use super::conformance::{now, vectors};
use super::trust::{CosignKey, CosignTrust, KeyProblem, SigstoreRoot};
use super::{
    bundle, simple_signing, CosignCheck, CosignFormat, CosignSigner, Error, ImageSubject, Report,
    SignatureLayer, ANNOTATION_BUNDLE, ANNOTATION_CERTIFICATE, ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE, MEDIA_TYPE_SIMPLE_SIGNING,
};

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vectors().join(rel)).unwrap()
}

fn key(rel: &str) -> CosignKey {
    let name = Path::new(rel)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    CosignKey::from_pem(&name, &read(rel)).unwrap()
}

fn root(rel: &str) -> Arc<SigstoreRoot> {
    Arc::new(SigstoreRoot::from_json(rel, &read(rel)).unwrap())
}

fn pgi() -> Arc<SigstoreRoot> {
    root("cosign/trusted_root_pgi.json")
}

/// A containers/image `dir:` signature file: `\0sigstore-json\n` + JSON.
struct Layer {
    media_type: String,
    payload: Vec<u8>,
    annotations: BTreeMap<String, String>,
}

impl Layer {
    fn from_dir_signature(bytes: &[u8]) -> Self {
        let json = bytes.strip_prefix(b"\x00sigstore-json\n").unwrap();
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        Self {
            media_type: v["mimeType"].as_str().unwrap().to_owned(),
            payload: base64::engine::general_purpose::STANDARD
                .decode(v["payload"].as_str().unwrap())
                .unwrap(),
            annotations: serde_json::from_value(v["annotations"].clone()).unwrap(),
        }
    }

    fn as_layer(&self) -> SignatureLayer<'_> {
        SignatureLayer {
            media_type: &self.media_type,
            payload: &self.payload,
            annotations: &self.annotations,
        }
    }
}

fn repo(s: &str) -> Repository {
    s.parse().unwrap()
}

fn manifest_digest(rel: &str) -> Digest {
    Digest::sha256_of(&read(rel))
}

fn verify_layer(
    layer: &Layer,
    trust: &CosignTrust,
    repository: &Repository,
    digest: &Digest,
) -> Report {
    simple_signing::verify(
        layer.as_layer(),
        trust,
        ImageSubject { repository, digest },
        now(),
    )
}

/// A requirement trusting `keys` (file names) and `identities`, built
/// through the requirements file as an operator writes it.
fn requirement(
    keys: &[&str],
    root: bool,
    signed_identity: &str,
    identities: &[(&str, &str)],
) -> CosignRequirement {
    let mut toml = String::from(
        "[[scope]]\nname = \"release\"\nregistry_scopes = [\"registry.example/app\"]\nsignature_kinds = [\"cosign\"]\n[scope.cosign]\n",
    );
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("\"/etc/pullgate/cosign/{k}\""))
        .collect();
    toml.push_str(&format!("keys = [{}]\n", keys.join(", ")));
    if root {
        toml.push_str("trusted_root = \"/etc/pullgate/sigstore/trusted_root.json\"\n");
    }
    toml.push_str(&format!("signed_identity = \"{signed_identity}\"\n"));
    for (issuer, subject) in identities {
        toml.push_str(&format!(
            "[[scope.cosign.identities]]\nissuer = {issuer:?}\nsubject_regex = {subject:?}\n"
        ));
    }
    Requirements::from_toml(&toml).unwrap().scopes()[0]
        .cosign()
        .unwrap()
        .clone()
}

fn decide(req: &CosignRequirement, report: &Report) -> Result<(), CosignRejection> {
    let signer = report.signer.clone().ok_or(CosignRejection::CheckFailed {
        check: CosignCheck::Signature,
    })?;
    req.evaluate(report.format, &signer, &report.results())
}

fn failure(report: &Report, check: CosignCheck) -> &Error {
    match report.check(check) {
        Some(Err(e)) => e,
        other => panic!("{check} should have failed, got {other:?}: {report:?}"),
    }
}

fn passed(report: &Report, check: CosignCheck) -> bool {
    matches!(report.check(check), Some(Ok(())))
}

const VALID_REPO: &str = "192.168.64.2:5000/cosign-signed-single-sample";

#[test]
fn containers_image_key_signature_is_accepted_with_its_key_in_any_order() {
    let layer =
        Layer::from_dir_signature(&read("containers-image/dir-img-cosign-valid/signature-1"));
    let digest = manifest_digest("containers-image/dir-img-cosign-valid/manifest.json");
    for keys in [
        vec![key("containers-image/cosign.pub")],
        vec![
            key("containers-image/cosign.pub"),
            key("containers-image/cosign2.pub"),
        ],
        vec![
            key("containers-image/cosign2.pub"),
            key("containers-image/cosign.pub"),
        ],
    ] {
        let trust = CosignTrust { keys, root: None };
        let report = verify_layer(&layer, &trust, &repo(VALID_REPO), &digest);
        assert!(report.first_failure().is_none(), "{report:?}");
        assert_eq!(
            report.signer,
            Some(CosignSigner::Key {
                name: "cosign.pub".to_owned()
            })
        );
        assert_eq!(report.target.as_ref(), Some(&digest));
        let req = requirement(
            &["cosign.pub", "cosign2.pub"],
            false,
            "match_repository",
            &[],
        );
        assert_eq!(decide(&req, &report), Ok(()));
    }
}

#[test]
fn containers_image_rejections() {
    let trust = CosignTrust {
        keys: vec![key("containers-image/cosign.pub")],
        root: None,
    };
    let valid =
        Layer::from_dir_signature(&read("containers-image/dir-img-cosign-valid/signature-1"));
    let digest = manifest_digest("containers-image/dir-img-cosign-valid/manifest.json");
    let req = requirement(&["cosign.pub"], false, "match_repository", &[]);
    let any = requirement(&["cosign.pub"], false, "any", &[]);

    // Another repository: the signed identity fails, unless the scope says "any".
    let report = verify_layer(&valid, &trust, &repo("docker.io/testing/manifest"), &digest);
    assert!(matches!(
        failure(&report, CosignCheck::SignedIdentity),
        Error::RepositoryMismatch { .. }
    ));
    assert_eq!(
        decide(&req, &report),
        Err(CosignRejection::CheckFailed {
            check: CosignCheck::SignedIdentity
        })
    );
    assert_eq!(decide(&any, &report), Ok(()));

    // The signature annotation replaced by base64("invalid signature").
    let mut bad =
        Layer::from_dir_signature(&read("containers-image/dir-img-cosign-valid/signature-1"));
    bad.annotations.insert(
        ANNOTATION_SIGNATURE.to_owned(),
        base64::engine::general_purpose::STANDARD.encode("invalid signature"),
    );
    let report = verify_layer(&bad, &trust, &repo(VALID_REPO), &digest);
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::NoMatchingKey { configured: 1 }
    ));
    assert!(report.signer.is_none());
    // Payload and identity still ran: the denial can say everything.
    assert!(passed(&report, CosignCheck::Payload) && passed(&report, CosignCheck::SignedIdentity));

    // Signed by a key we do not have.
    let unknown = Layer::from_dir_signature(&read("containers-image/unknown-cosign-key.signature"));
    let report = verify_layer(&unknown, &trust, &repo(VALID_REPO), &digest);
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::NoMatchingKey { .. }
    ));

    // The manifest was modified after signing.
    let modified = Layer::from_dir_signature(&read(
        "containers-image/dir-img-cosign-modified-manifest/signature-1",
    ));
    let other = manifest_digest("containers-image/dir-img-cosign-modified-manifest/manifest.json");
    let report = verify_layer(&modified, &trust, &repo(VALID_REPO), &other);
    assert!(passed(&report, CosignCheck::Signature));
    assert!(matches!(
        failure(&report, CosignCheck::Payload),
        Error::DigestMismatch { .. }
    ));
    assert_eq!(
        decide(&req, &report),
        Err(CosignRejection::CheckFailed {
            check: CosignCheck::Payload
        })
    );

    // Not a signature at all (text/plain attachment).
    let other_attachment = Layer::from_dir_signature(&read(
        "containers-image/dir-img-cosign-other-attachment/signature-1",
    ));
    let report = verify_layer(
        &other_attachment,
        &trust,
        &repo("docker.io/testing/manifest"),
        &digest,
    );
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::NotSimpleSigning { .. }
    ));
    assert!(matches!(
        failure(&report, CosignCheck::Payload),
        Error::Payload(_)
    ));
}

#[test]
fn containers_image_signature_made_with_a_tag_matches_its_repository() {
    let trust = CosignTrust {
        keys: vec![key("containers-image/cosign.pub")],
        root: None,
    };
    let layer = Layer::from_dir_signature(&read(
        "containers-image/dir-img-cosign-valid-with-tag/signature-1",
    ));
    let digest = manifest_digest("containers-image/dir-img-cosign-valid-with-tag/manifest.json");
    let report = verify_layer(
        &layer,
        &trust,
        &repo("192.168.64.2:5000/skopeo-signed"),
        &digest,
    );
    assert!(report.first_failure().is_none(), "{report:?}");
    let report = verify_layer(&layer, &trust, &repo("192.168.64.2:5000/other"), &digest);
    assert!(matches!(
        failure(&report, CosignCheck::SignedIdentity),
        Error::RepositoryMismatch { .. }
    ));
}

#[test]
fn containers_image_key_signature_with_rekor_set() {
    let layer = Layer::from_dir_signature(&read(
        "containers-image/dir-img-cosign-key-rekor-valid/signature-1",
    ));
    let digest = manifest_digest("containers-image/dir-img-cosign-key-rekor-valid/manifest.json");
    let repository = repo("192.168.64.2:5000/cosign-signed/key-1");
    let trust = CosignTrust {
        keys: vec![key("containers-image/cosign2.pub")],
        root: Some(pgi()),
    };
    let report = verify_layer(&layer, &trust, &repository, &digest);
    assert!(report.first_failure().is_none(), "{report:?}");
    assert!(passed(&report, CosignCheck::TransparencyLog));
    // integratedTime 1674251859 = 2023-01-20T21:57:39Z.
    assert_eq!(
        report.signed_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_674_251_859))
    );
    let req = requirement(&["cosign2.pub"], true, "match_repository", &[]);
    assert_eq!(decide(&req, &report), Ok(()));

    // The wrong key.
    let wrong = CosignTrust {
        keys: vec![key("containers-image/cosign.pub")],
        root: Some(pgi()),
    };
    let report = verify_layer(&layer, &wrong, &repository, &digest);
    assert!(report.signer.is_none(), "{report:?}");
    assert!(report.first_failure().is_some());

    // The SET removed: with a trusted root the log entry is required.
    let mut no_set = Layer::from_dir_signature(&read(
        "containers-image/dir-img-cosign-key-rekor-valid/signature-1",
    ));
    no_set.annotations.remove(ANNOTATION_BUNDLE);
    let report = verify_layer(&no_set, &trust, &repository, &digest);
    assert!(passed(&report, CosignCheck::Signature));
    assert!(matches!(
        failure(&report, CosignCheck::TransparencyLog),
        Error::NoLogEntry
    ));
    assert_eq!(
        decide(&req, &report),
        Err(CosignRejection::CheckFailed {
            check: CosignCheck::TransparencyLog
        })
    );

    // A garbage SET.
    let mut garbage = Layer::from_dir_signature(&read(
        "containers-image/dir-img-cosign-key-rekor-valid/signature-1",
    ));
    garbage
        .annotations
        .insert(ANNOTATION_BUNDLE.to_owned(), "this is not JSON".to_owned());
    let report = verify_layer(&garbage, &trust, &repository, &digest);
    assert!(matches!(
        failure(&report, CosignCheck::TransparencyLog),
        Error::RekorBundle(_)
    ));

    // This SET transplanted onto another signature (dir-img-cosign-valid).
    let mut transplanted =
        Layer::from_dir_signature(&read("containers-image/dir-img-cosign-valid/signature-1"));
    transplanted.annotations.insert(
        ANNOTATION_BUNDLE.to_owned(),
        layer.annotations[ANNOTATION_BUNDLE].clone(),
    );
    let trust1 = CosignTrust {
        keys: vec![key("containers-image/cosign.pub")],
        root: Some(pgi()),
    };
    let report = verify_layer(
        &transplanted,
        &trust1,
        &repo(VALID_REPO),
        &manifest_digest("containers-image/dir-img-cosign-valid/manifest.json"),
    );
    assert!(report.signer.is_none(), "{report:?}");
    assert!(report.first_failure().is_some());
}

fn fulcio_layer() -> Layer {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_SIGNATURE.to_owned(),
        String::from_utf8(read("containers-image/rekor-sig")).unwrap(),
    );
    annotations.insert(
        ANNOTATION_CERTIFICATE.to_owned(),
        String::from_utf8(read("containers-image/fulcio-cert")).unwrap(),
    );
    annotations.insert(
        ANNOTATION_CHAIN.to_owned(),
        String::from_utf8(read("containers-image/fulcio-chain")).unwrap(),
    );
    annotations.insert(
        ANNOTATION_BUNDLE.to_owned(),
        String::from_utf8(read("containers-image/rekor-set")).unwrap(),
    );
    Layer {
        media_type: MEDIA_TYPE_SIMPLE_SIGNING.to_owned(),
        payload: read("containers-image/rekor-payload"),
        annotations,
    }
}

const FULCIO_REPO: &str = "192.168.64.2:5000/test-repo-2100826901021538654/alpine";

fn fulcio_digest(layer: &Layer) -> Digest {
    let v: serde_json::Value = serde_json::from_slice(&layer.payload).unwrap();
    v["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn containers_image_fulcio_and_rekor_signature() {
    let layer = fulcio_layer();
    let digest = fulcio_digest(&layer);
    assert!(digest.to_string().starts_with("sha256:fa93b016"));
    let trust = CosignTrust {
        keys: Vec::new(),
        root: Some(pgi()),
    };
    let report = verify_layer(&layer, &trust, &repo(FULCIO_REPO), &digest);
    assert!(report.first_failure().is_none(), "{report:?}");
    for check in [
        CosignCheck::Signature,
        CosignCheck::Certificate,
        CosignCheck::TransparencyLog,
        CosignCheck::Payload,
        CosignCheck::SignedIdentity,
    ] {
        assert!(passed(&report, check), "{check}");
    }
    assert_eq!(
        report.signer,
        Some(CosignSigner::Keyless {
            issuer: "https://github.com/login/oauth".to_owned(),
            subject: "mitr@redhat.com".to_owned(),
        })
    );
    // integrated time 1670870899 = 2022-12-12T18:48:19Z; the ten-minute
    // certificate expired long before `now` and still counts.
    assert_eq!(
        report.signed_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_670_870_899))
    );
    assert!(report.not_after.unwrap() < now());

    let trusted = requirement(
        &[],
        true,
        "match_repository",
        &[("https://github.com/login/oauth", "^mitr@redhat\\.com$")],
    );
    assert_eq!(decide(&trusted, &report), Ok(()));
    let other_subject = requirement(
        &[],
        true,
        "match_repository",
        &[("https://github.com/login/oauth", "^someone@redhat\\.com$")],
    );
    assert!(matches!(
        decide(&other_subject, &report),
        Err(CosignRejection::UntrustedIdentity { .. })
    ));
    let other_issuer = requirement(
        &[],
        true,
        "match_repository",
        &[("https://accounts.google.com", "^mitr@redhat\\.com$")],
    );
    assert!(matches!(
        decide(&other_issuer, &report),
        Err(CosignRejection::UntrustedIdentity { .. })
    ));

    // `now` before the proven signing time.
    let early = simple_signing::verify(
        layer.as_layer(),
        &trust,
        ImageSubject {
            repository: &repo(FULCIO_REPO),
            digest: &digest,
        },
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_670_870_000),
    );
    assert!(matches!(
        failure(&early, CosignCheck::TransparencyLog),
        Error::SignedInFuture { .. }
    ));
}

#[test]
fn containers_image_fulcio_rejections() {
    let trust = CosignTrust {
        keys: Vec::new(),
        root: Some(pgi()),
    };
    let good = fulcio_layer();
    let digest = fulcio_digest(&good);

    // Another payload under the same signature, certificate and SET.
    let mut other = fulcio_layer();
    other.payload = b"this payload does not match".to_vec();
    let report = verify_layer(&other, &trust, &repo(FULCIO_REPO), &digest);
    assert!(report.signer.is_none());
    assert!(report.first_failure().is_some());
    assert!(matches!(
        failure(&report, CosignCheck::Payload),
        Error::Payload(_)
    ));

    // Empty and garbage SETs.
    for set in ["", "garbage"] {
        let mut l = fulcio_layer();
        l.annotations
            .insert(ANNOTATION_BUNDLE.to_owned(), set.to_owned());
        let report = verify_layer(&l, &trust, &repo(FULCIO_REPO), &digest);
        assert!(matches!(
            failure(&report, CosignCheck::TransparencyLog),
            Error::RekorBundle(_)
        ));
    }

    // No SET: no proven signing time, so the certificate cannot be judged.
    let mut l = fulcio_layer();
    l.annotations.remove(ANNOTATION_BUNDLE);
    let report = verify_layer(&l, &trust, &repo(FULCIO_REPO), &digest);
    assert!(matches!(
        failure(&report, CosignCheck::TransparencyLog),
        Error::NoLogEntry
    ));
    assert!(report.signer.is_none());

    // A trusted root without this Fulcio (the staging-free scaffolding instance).
    let stranger = CosignTrust {
        keys: Vec::new(),
        root: Some(root("sigstore-go/trusted-roots/scaffolding.json")),
    };
    let report = verify_layer(&good, &stranger, &repo(FULCIO_REPO), &digest);
    assert!(report.signer.is_none());
    assert!(report.first_failure().is_some());

    // No trusted root configured at all.
    let report = verify_layer(&good, &CosignTrust::default(), &repo(FULCIO_REPO), &digest);
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::NoTrustedRoot
    ));

    // A key-based scope cannot be satisfied by a keyless signature, nor the reverse.
    let keys_only = requirement(&["cosign.pub"], true, "match_repository", &[]);
    let report = verify_layer(&good, &trust, &repo(FULCIO_REPO), &digest);
    assert!(matches!(
        decide(&keys_only, &report),
        Err(CosignRejection::UntrustedIdentity { .. })
    ));
}

#[test]
fn cosign_oci_bundle_binds_to_the_image_digest() {
    let bytes = read("cosign/oci-attestation.sigstore.json");
    let trust = CosignTrust {
        keys: Vec::new(),
        root: Some(pgi()),
    };
    let digest: Digest = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
        .parse()
        .unwrap();
    let repository = repo("127.0.0.1:60943/repo");
    let subject = ImageSubject {
        repository: &repository,
        digest: &digest,
    };
    let report = bundle::verify_image_bundle(&bytes, &trust, subject, now());
    // Every cryptographic check passes at the integrated time ...
    for check in [
        CosignCheck::Signature,
        CosignCheck::Certificate,
        CosignCheck::TransparencyLog,
    ] {
        assert!(passed(&report, check), "{check}: {report:?}");
    }
    assert_eq!(
        report.signer,
        Some(CosignSigner::Keyless {
            issuer: "https://github.com/login/oauth".to_owned(),
            subject: "cody@soyland.com".to_owned(),
        })
    );
    // ... but this bundle is an attestation (predicate
    // https://cosign.sigstore.dev/attestation/v1), not an image signature.
    assert!(matches!(
        failure(&report, CosignCheck::Payload),
        Error::PredicateType { .. }
    ));
    assert!(report.check(CosignCheck::SignedIdentity).is_none());

    // Attached to another image: the statement's subject does not match.
    let other = Digest::sha256_of(b"another image");
    let report = bundle::verify_image_bundle(
        &bytes,
        &trust,
        ImageSubject {
            repository: &repository,
            digest: &other,
        },
        now(),
    );
    assert!(report.signer.is_none());
    assert!(matches!(
        failure(&report, CosignCheck::Payload),
        Error::Sigstore(_) | Error::PredicateType { .. } | Error::SubjectMismatch { .. }
    ));
}

#[test]
fn sigstore_go_bundles() {
    let public_good = CosignTrust {
        keys: Vec::new(),
        root: Some(root("sigstore-go/trusted-roots/public-good.json")),
    };
    // sigstore.js provenance: verifies with the public-good root.
    let bytes = read("sigstore-go/bundles/sigstore.js@2.0.0-provenance.sigstore.json");
    let b = bundle::parse(&bytes).unwrap();
    let artifact_digest = match &b.content {
        sigstore_verify::types::SignatureContent::DsseEnvelope(env) => {
            let st: sigstore_verify::types::Statement =
                serde_json::from_slice(env.payload.as_bytes()).unwrap();
            st.subject[0].digest.sha512.unwrap()
        }
        _ => panic!("a DSSE bundle"),
    };
    let artifact = sigstore_verify::types::ArtifactDigest::new(
        sigstore_verify::types::HashAlgorithm::Sha2512,
        artifact_digest.as_bytes().to_vec(),
    )
    .unwrap();
    let mut report = Report::new(CosignFormat::Bundle);
    bundle::run(&b, artifact.into(), &public_good, now(), &mut report);
    assert!(report.first_failure().is_none(), "{report:?}");
    assert_eq!(
        report.signer,
        Some(CosignSigner::Keyless {
            issuer: "https://token.actions.githubusercontent.com".to_owned(),
            subject: "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main".to_owned(),
        })
    );
    assert_eq!(
        report.signed_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_692_374_735))
    );

    // Two DSSE signatures: refused.
    let bytes = read("sigstore-go/bundles/dsse-2sigs.sigstore.json");
    let report = bundle::verify_blob_bundle(&bytes, b"", &public_good, now());
    assert!(report.signer.is_none());
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::BundleMalformed(_) | Error::Sigstore(_)
    ));

    // OtherName SAN on the scaffolding instance.
    let scaffolding = CosignTrust {
        keys: Vec::new(),
        root: Some(root("sigstore-go/trusted-roots/scaffolding.json")),
    };
    let bytes = read("sigstore-go/bundles/othername.sigstore.json");
    let hash = sigstore_verify::types::Sha256Hash::from_hex(
        "bc103b4a84971ef6459b294a2b98568a2bfb72cded09d4acd1e16366a401f95b",
    )
    .unwrap();
    let mut report = Report::new(CosignFormat::Bundle);
    bundle::run(
        &bundle::parse(&bytes).unwrap(),
        hash.into(),
        &scaffolding,
        now(),
        &mut report,
    );
    assert!(report.first_failure().is_none(), "{report:?}");
    let req = |subject: &str| {
        pullgate_policy::requirements::KeylessIdentity::new("http://oidc.local:8080", subject)
            .unwrap()
    };
    let Some(CosignSigner::Keyless { issuer, subject }) = &report.signer else {
        panic!("keyless: {report:?}")
    };
    assert!(req("^foo!oidc\\.local$").matches(issuer, subject));
    assert!(!req("^foo@oidc\\.local$").matches(issuer, subject));

    // The documented example: provenance of sigstore-js 1.3.0.
    let example = CosignTrust {
        keys: Vec::new(),
        root: Some(root("sigstore-go/examples/trusted-root-public-good.json")),
    };
    let bytes = read("sigstore-go/examples/bundle-provenance.json");
    let b = bundle::parse(&bytes).unwrap();
    let sha512 = "76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751";
    let artifact = sigstore_verify::types::ArtifactDigest::new(
        sigstore_verify::types::HashAlgorithm::Sha2512,
        hex::decode(sha512).unwrap(),
    )
    .unwrap();
    let mut report = Report::new(CosignFormat::Bundle);
    bundle::run(&b, artifact.into(), &example, now(), &mut report);
    assert!(report.first_failure().is_none(), "{report:?}");

    // Key-signed with a TSA timestamp and no log entry: refused (upstream
    // refuses it too, for its key window of [epoch 0, epoch 1]; pullgate
    // keys have no window, but with a trusted root a log entry is required).
    let tsa_only = CosignTrust {
        keys: vec![key("sigstore-go/public-keys/public-key-validity.pem")],
        root: Some(root("sigstore-go/trusted-roots/public-key-validity.json")),
    };
    let bytes = read("sigstore-go/bundles/public-key-validity.sigstore.json");
    let report = bundle::verify_blob_bundle(&bytes, b"test content", &tsa_only, now());
    assert!(report.signer.is_none(), "{report:?}");
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::Sigstore(_)
    ));
}

// ---- minted keys (pullgate_testkit::cosign::seeded_key) ----

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der)
        .unwrap()
        .into_bytes()
}

const MINTED_REPO: &str = "registry.example/app";

fn simple_signing_payload(reference: &str, digest: &Digest, kind: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": kind,
        },
        "optional": null,
    }))
    .unwrap()
}

fn minted_layer(payload: Vec<u8>, sig: &[u8]) -> Layer {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_SIGNATURE.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(sig),
    );
    Layer {
        media_type: MEDIA_TYPE_SIMPLE_SIGNING.to_owned(),
        payload,
        annotations,
    }
}

#[test]
fn minted_key_signatures_table() {
    let digest = Digest::sha256_of(b"the image manifest");
    let other_digest = Digest::sha256_of(b"another manifest");
    let repository = repo(MINTED_REPO);
    let req = requirement(&["release.pub"], false, "match_repository", &[]);
    let any = requirement(&["release.pub"], false, "any", &[]);
    for alg in [
        KeyAlg::P256,
        KeyAlg::P384,
        KeyAlg::Ed25519,
        KeyAlg::RsaPkcs1,
        KeyAlg::RsaPss,
    ] {
        let (pk, sign) = seeded_key(alg, 1).unwrap();
        let (other_pk, _) = seeded_key(alg, 2).unwrap();
        let release = CosignTrust {
            keys: vec![CosignKey::from_pem("release.pub", &pk).unwrap()],
            root: None,
        };
        let wrong = CosignTrust {
            keys: vec![CosignKey::from_pem("release.pub", &other_pk).unwrap()],
            root: None,
        };
        let good_payload = simple_signing_payload(
            "registry.example/app:1.0",
            &digest,
            super::SIMPLE_SIGNING_TYPE,
        );
        let good = minted_layer(good_payload.clone(), &sign(&good_payload));

        // Good.
        let report = verify_layer(&good, &release, &repository, &digest);
        assert!(report.first_failure().is_none(), "{alg:?}: {report:?}");
        assert_eq!(decide(&req, &report), Ok(()), "{alg:?}");

        // Wrong key.
        let report = verify_layer(&good, &wrong, &repository, &digest);
        assert!(
            matches!(
                failure(&report, CosignCheck::Signature),
                Error::NoMatchingKey { configured: 1 }
            ),
            "{alg:?}"
        );
        assert!(decide(&req, &report).is_err());

        // Tampered signature.
        let mut sig = sign(&good_payload);
        let last = sig.len() - 1;
        sig[last / 2] ^= 0x01;
        let tampered = minted_layer(good_payload.clone(), &sig);
        let report = verify_layer(&tampered, &release, &repository, &digest);
        assert!(
            matches!(
                failure(&report, CosignCheck::Signature),
                Error::NoMatchingKey { .. }
            ),
            "{alg:?}"
        );

        // Tampered payload (signature over the original).
        let mut altered = good_payload.clone();
        altered.extend_from_slice(b" ");
        let report = verify_layer(
            &minted_layer(altered, &sign(&good_payload)),
            &release,
            &repository,
            &digest,
        );
        assert!(
            matches!(
                failure(&report, CosignCheck::Signature),
                Error::NoMatchingKey { .. }
            ),
            "{alg:?}"
        );

        // A good signature naming another digest.
        let p = simple_signing_payload(MINTED_REPO, &other_digest, super::SIMPLE_SIGNING_TYPE);
        let report = verify_layer(
            &minted_layer(p.clone(), &sign(&p)),
            &release,
            &repository,
            &digest,
        );
        assert!(passed(&report, CosignCheck::Signature), "{alg:?}");
        assert!(
            matches!(
                failure(&report, CosignCheck::Payload),
                Error::DigestMismatch { .. }
            ),
            "{alg:?}"
        );
        assert_eq!(report.target.as_ref(), Some(&other_digest));
        assert_eq!(
            decide(&any, &report),
            Err(CosignRejection::CheckFailed {
                check: CosignCheck::Payload
            })
        );

        // Wrong type.
        let p = simple_signing_payload(MINTED_REPO, &digest, "atomic container signature");
        let report = verify_layer(
            &minted_layer(p.clone(), &sign(&p)),
            &release,
            &repository,
            &digest,
        );
        assert!(
            matches!(
                failure(&report, CosignCheck::Payload),
                Error::WrongType { .. }
            ),
            "{alg:?}"
        );
        assert!(decide(&any, &report).is_err());

        // Another repository: refused under match_repository, accepted under any.
        let p = simple_signing_payload(
            "registry.example/other:1.0",
            &digest,
            super::SIMPLE_SIGNING_TYPE,
        );
        let report = verify_layer(
            &minted_layer(p.clone(), &sign(&p)),
            &release,
            &repository,
            &digest,
        );
        assert!(
            matches!(
                failure(&report, CosignCheck::SignedIdentity),
                Error::RepositoryMismatch { .. }
            ),
            "{alg:?}"
        );
        assert_eq!(
            decide(&req, &report),
            Err(CosignRejection::CheckFailed {
                check: CosignCheck::SignedIdentity
            })
        );
        assert_eq!(decide(&any, &report), Ok(()), "{alg:?}");

        // A key the scope does not list (same key, another file name).
        let renamed = CosignTrust {
            keys: vec![CosignKey::from_pem("other.pub", &pk).unwrap()],
            root: None,
        };
        let report = verify_layer(&good, &renamed, &repository, &digest);
        assert!(matches!(
            decide(&req, &report),
            Err(CosignRejection::UntrustedKey { .. })
        ));
    }
}

#[test]
fn key_files_are_checked_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, _) = seeded_key(KeyAlg::P256, 1).unwrap();
    let good = dir.path().join("release.pub");
    std::fs::write(&good, &pk).unwrap();
    let trust = CosignTrust::load(std::slice::from_ref(&good), None).unwrap();
    assert_eq!(trust.keys[0].name(), "release.pub");

    let cases: &[(&[u8], KeyProblem)] = &[
        (b"not pem", KeyProblem::Pem),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            KeyProblem::PemLabel {
                label: "CERTIFICATE".to_owned(),
            },
        ),
        (
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            KeyProblem::Malformed,
        ),
    ];
    for (bytes, want) in cases {
        let path = dir.path().join("bad.pub");
        std::fs::write(&path, bytes).unwrap();
        match CosignTrust::load(std::slice::from_ref(&path), None) {
            Err(super::trust::TrustError::Key { path: p, problem }) => {
                assert_eq!(p, path);
                assert_eq!(&problem, want);
            }
            other => panic!("{other:?}"),
        }
    }
    // RSA 1024 is refused.
    let small = {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        let n = (rsa::BigUint::from(1u8) << 1023usize) | rsa::BigUint::from(1u8);
        let key = rsa::RsaPublicKey::new_unchecked(n, rsa::BigUint::from(65537u32));
        pem("RSA PUBLIC KEY", key.to_pkcs1_der().unwrap().as_bytes())
    };
    assert_eq!(
        CosignKey::from_pem("small.pub", &small).unwrap_err(),
        KeyProblem::RsaSize { bits: 1024 }
    );
    // A missing file and a bad trusted root name the file.
    let missing = dir.path().join("missing.pub");
    assert!(matches!(
        CosignTrust::load(std::slice::from_ref(&missing), None),
        Err(super::trust::TrustError::Read { path, .. }) if path == missing
    ));
    let bad_root = dir.path().join("trusted_root.json");
    std::fs::write(&bad_root, b"{\"mediaType\": 1}").unwrap();
    assert!(matches!(
        CosignTrust::load(&[], Some(&bad_root)),
        Err(super::trust::TrustError::TrustedRoot { path, .. }) if path == bad_root
    ));
    let good_root = dir.path().join("pgi.json");
    std::fs::write(&good_root, read("cosign/trusted_root_pgi.json")).unwrap();
    assert!(CosignTrust::load(&[], Some(&good_root))
        .unwrap()
        .root
        .is_some());
}

mod parsers_never_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simple_signing_layers(payload in proptest::collection::vec(any::<u8>(), 0..512), sig in "[A-Za-z0-9+/=]{0,120}", set in ".{0,200}") {
            let mut layer = minted_layer(payload, b"");
            layer.annotations.insert(ANNOTATION_SIGNATURE.to_owned(), sig);
            layer.annotations.insert(ANNOTATION_BUNDLE.to_owned(), set);
            let digest = Digest::sha256_of(b"x");
            let trust = CosignTrust { keys: vec![CosignKey::from_pem("k.pub", &seeded_key(KeyAlg::P256, 1).unwrap().0).unwrap()], root: None };
            let _ = verify_layer(&layer, &trust, &repo(MINTED_REPO), &digest);
        }

        #[test]
        fn json_like_payloads(s in "(\\{|\\}|\"critical\"|\"type\"|\"image\"|\"identity\"|\"docker-reference\"|\"docker-manifest-digest\"|:|,|\"sha256:[0-9a-f]{0,64}\"|\"[a-z./:]{0,20}\"|null|\\[|\\]){0,40}") {
            let _ = super::super::payload::parse_simple_signing(s.as_bytes());
            let _ = super::super::payload::parse_rekor_bundle(&s);
        }

        #[test]
        fn bundles(s in "(\\{|\\}|\"mediaType\"|\"application/vnd.dev.sigstore.bundle\\+json;version=0.[123]\"|\"verificationMaterial\"|\"messageSignature\"|\"dsseEnvelope\"|\"tlogEntries\"|\"publicKey\"|\"certificate\"|\"rawBytes\"|\"[A-Za-z0-9+/=]{0,24}\"|:|,|\\[|\\]|[0-9]{1,4}){0,60}") {
            let trust = CosignTrust { keys: Vec::new(), root: Some(pgi()) };
            let digest = Digest::sha256_of(b"x");
            let repository = repo(MINTED_REPO);
            let _ = bundle::verify_image_bundle(s.as_bytes(), &trust, ImageSubject { repository: &repository, digest: &digest }, now());
        }

        #[test]
        fn pem_keys(s in "(-----BEGIN (PUBLIC KEY|RSA PUBLIC KEY|EC KEY)-----|\n|[A-Za-z0-9+/=]{0,70}|-----END (PUBLIC KEY|RSA PUBLIC KEY)-----){0,8}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CosignKey::from_pem("k.pub", s.as_bytes());
            let _ = CosignKey::from_pem("k.pub", &bytes);
            let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
            spki.extend_from_slice(&bytes);
            let _ = CosignKey::from_pem("k.pub", &pem("PUBLIC KEY", &spki));
        }
    }
}

#[test]
fn a_payload_naming_two_digests_is_refused() {
    let digest = Digest::sha256_of(b"the image manifest");
    let other = Digest::sha256_of(b"another manifest");
    // Duplicate keys: a parser keeping the first and one keeping the last
    // would disagree on what was signed; serde's derive refuses duplicates.
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{MINTED_REPO}"}},"image":{{"docker-manifest-digest":"{other}","docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let (pk, sign) = seeded_key(KeyAlg::P256, 1).unwrap();
    let trust = CosignTrust {
        keys: vec![CosignKey::from_pem("release.pub", &pk).unwrap()],
        root: None,
    };
    let layer = minted_layer(payload.clone().into_bytes(), &sign(payload.as_bytes()));
    let report = verify_layer(&layer, &trust, &repo(MINTED_REPO), &digest);
    assert!(passed(&report, CosignCheck::Signature));
    assert!(matches!(
        failure(&report, CosignCheck::Payload),
        Error::Payload(_)
    ));
    assert!(report.target.is_none());
}

/// A cosign v2 `.att` layer: a DSSE envelope over `statement` signed by `sign`.
fn att_layer(
    statement: &[u8],
    sign: &pullgate_testkit::cosign::SignFn,
    signatures: usize,
) -> Layer {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut pae = format!(
        "DSSEv1 {} application/vnd.in-toto+json {} ",
        "application/vnd.in-toto+json".len(),
        statement.len()
    )
    .into_bytes();
    pae.extend_from_slice(statement);
    let sig = b64(&sign(&pae));
    let envelope = serde_json::json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": b64(statement),
        "signatures": vec![serde_json::json!({"keyid": "", "sig": sig}); signatures],
    });
    Layer {
        media_type: super::att::MEDIA_TYPE_DSSE.to_owned(),
        payload: serde_json::to_vec(&envelope).unwrap(),
        annotations: BTreeMap::from([(
            "predicateType".to_owned(),
            "https://slsa.dev/provenance/v1".to_owned(),
        )]),
    }
}

#[test]
fn att_layers_are_verified_as_dsse_envelopes_with_a_statement() {
    const SLSA: &str = "https://slsa.dev/provenance/v1";
    let repository = repo("r.example/app");
    let digest = Digest::sha256_of(b"image");
    let subject = ImageSubject {
        repository: &repository,
        digest: &digest,
    };
    let statement = |hex: &str, predicate_type: &str| {
        serde_json::to_vec(&serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "r.example/app", "digest": {"sha256": hex}}],
            "predicateType": predicate_type,
            "predicate": {"builder": {"id": "ci"}},
        }))
        .unwrap()
    };
    let (pk, sign) = seeded_key(KeyAlg::P256, 7).unwrap();
    let trust = CosignTrust {
        keys: vec![CosignKey::from_pem("release.pub", &pk).unwrap()],
        root: None,
    };
    let good = att_layer(&statement(digest.hex(), SLSA), &sign, 1);
    let (report, st) = super::att::verify(good.as_layer(), &trust, subject, SLSA, now());
    assert!(report.first_failure().is_none(), "{report:?}");
    assert_eq!(
        report.signer,
        Some(CosignSigner::Key {
            name: "release.pub".to_owned()
        })
    );
    assert_eq!(st.unwrap().predicate["builder"]["id"], "ci");
    // Another key.
    let (_, other) = seeded_key(KeyAlg::P256, 8).unwrap();
    let forged = att_layer(&statement(digest.hex(), SLSA), &other, 1);
    let (report, _) = super::att::verify(forged.as_layer(), &trust, subject, SLSA, now());
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::NoMatchingKey { .. }
    ));
    // Another image, another predicate type: the Payload check fails.
    let other_image = Digest::sha256_of(b"other");
    for layer in [
        att_layer(&statement(other_image.hex(), SLSA), &sign, 1),
        att_layer(
            &statement(digest.hex(), "https://example.com/other"),
            &sign,
            1,
        ),
    ] {
        let (report, st) = super::att::verify(layer.as_layer(), &trust, subject, SLSA, now());
        assert!(st.is_none());
        assert!(matches!(
            failure(&report, CosignCheck::Payload),
            Error::Attestation(_)
        ));
    }
    // Two signatures, another media type, junk: refused before any check.
    let two = att_layer(&statement(digest.hex(), SLSA), &sign, 2);
    let (report, _) = super::att::verify(two.as_layer(), &trust, subject, SLSA, now());
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::EnvelopeSignatures { count: 2 }
    ));
    let mut wrong_type = att_layer(&statement(digest.hex(), SLSA), &sign, 1);
    wrong_type.media_type = MEDIA_TYPE_SIMPLE_SIGNING.to_owned();
    let (report, _) = super::att::verify(wrong_type.as_layer(), &trust, subject, SLSA, now());
    assert!(matches!(
        failure(&report, CosignCheck::Signature),
        Error::NotAttestationLayer { .. }
    ));
    let mut junk = att_layer(&statement(digest.hex(), SLSA), &sign, 1);
    junk.payload = b"{\"payloadType\": 1}".to_vec();
    let (report, _) = super::att::verify(junk.as_layer(), &trust, subject, SLSA, now());
    assert!(report.first_failure().is_some());
    // With a trusted root, a layer without its Rekor SET does not count.
    let rooted = CosignTrust {
        keys: trust.keys.clone(),
        root: Some(pgi()),
    };
    let (report, _) = super::att::verify(good.as_layer(), &rooted, subject, SLSA, now());
    assert!(matches!(
        failure(&report, CosignCheck::TransparencyLog),
        Error::NoLogEntry
    ));
}
