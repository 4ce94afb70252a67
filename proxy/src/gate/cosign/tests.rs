//! One cosign signature decided from the verifier's report, with
//! containers/image's cosign-made `.sig` layers (verdicts from their
//! `SOURCE.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use pullgate_policy::requirements::{
    CosignCheck, CosignRejection, CosignRequirement, CosignSigner, Requirements,
};
use pullgate_policy::{Digest, Repository};

use super::*;
use crate::gate::decision::FailureReason;
use crate::gate::verdict::Accepted;
use crate::verify::cosign::trust::{CosignKey, CosignTrust};
use crate::verify::cosign::{self};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/containers-image")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vectors().join(rel)).unwrap()
}

/// `signature-N` of a containers/image `dir:` image: `\0sigstore-json\n` + JSON.
struct Layer {
    media_type: String,
    payload: Vec<u8>,
    annotations: BTreeMap<String, String>,
}

fn layer(rel: &str) -> Layer {
    let bytes = read(rel);
    let json = bytes.strip_prefix(b"\x00sigstore-json\n").unwrap();
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    Layer {
        media_type: v["mimeType"].as_str().unwrap().to_owned(),
        payload: base64::engine::general_purpose::STANDARD
            .decode(v["payload"].as_str().unwrap())
            .unwrap(),
        annotations: serde_json::from_value(v["annotations"].clone()).unwrap(),
    }
}

/// `[scope.cosign]` listing `keys` (file names under `/etc/pullgate/cosign`).
fn requirement(keys: &[&str], signed_identity: &str) -> CosignRequirement {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("\"/etc/pullgate/cosign/{k}\""))
        .collect();
    let toml = format!(
        "[[scope]]\nname = \"release\"\nregistry_scopes = [\"r.example/app\"]\nsignature_kinds = [\"cosign\"]\n\
         [scope.cosign]\nkeys = [{}]\nsigned_identity = \"{signed_identity}\"\n",
        keys.join(", ")
    );
    Requirements::from_toml(&toml).unwrap().scopes()[0]
        .cosign()
        .unwrap()
        .clone()
}

/// Trust holding the key file `file` under the signer name `name`.
fn trust(name: &str, file: &str) -> CosignTrust {
    CosignTrust {
        keys: vec![CosignKey::from_pem(name, &read(file)).unwrap()],
        root: None,
    }
}

const REPO: &str = "192.168.64.2:5000/cosign-signed-single-sample";

fn decide(
    l: &Layer,
    trust: &CosignTrust,
    req: &CosignRequirement,
    repo: &str,
    digest: &Digest,
) -> Result<Accepted, FailureReason> {
    let repository: Repository = repo.parse().unwrap();
    let fetched = Fetched::Layer(SignatureLayer {
        media_type: &l.media_type,
        payload: &l.payload,
        annotations: &l.annotations,
    });
    // containers/image's fixtures were signed in 2022; any later `now` will do.
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let report = judge::verify(
        fetched,
        trust,
        ImageSubject {
            repository: &repository,
            digest,
        },
        now,
    );
    judge::judge(req, &report, digest)
}

fn failed_check(r: Result<Accepted, FailureReason>) -> (CosignCheck, Arc<cosign::Error>) {
    match r {
        Err(FailureReason::Cosign { check, error }) => (check, error),
        other => panic!("expected a failed cosign check, got {other:?}"),
    }
}

#[test]
fn a_key_signed_layer_is_accepted_with_no_time_bound() {
    let l = layer("dir-img-cosign-valid/signature-1");
    let digest = Digest::sha256_of(&read("dir-img-cosign-valid/manifest.json"));
    let accepted = decide(
        &l,
        &trust("cosign.pub", "cosign.pub"),
        &requirement(&["cosign.pub"], "match_repository"),
        REPO,
        &digest,
    )
    .unwrap();
    assert_eq!(accepted.subject, "cosign key cosign.pub");
    assert_eq!(
        accepted.cosign,
        Some(CosignSigner::Key {
            name: "cosign.pub".to_owned()
        })
    );
    assert!(accepted.not_after.is_none() && accepted.expiry.is_none());
    assert!(accepted.revocation_until.is_none() && accepted.logged.is_empty());
}

#[test]
fn rejections_name_the_check_and_the_signer() {
    let l = layer("dir-img-cosign-valid/signature-1");
    let digest = Digest::sha256_of(&read("dir-img-cosign-valid/manifest.json"));
    let req = requirement(&["cosign.pub"], "match_repository");

    // The wrong key (another key file under the trusted name).
    let (check, error) = failed_check(decide(
        &l,
        &trust("cosign.pub", "cosign2.pub"),
        &req,
        REPO,
        &digest,
    ));
    assert_eq!(check, CosignCheck::Signature);
    assert!(
        matches!(*error, cosign::Error::NoMatchingKey { configured: 1 }),
        "{error:?}"
    );

    // A good signature of another manifest.
    let other = Digest::sha256_of(&read("dir-img-cosign-modified-manifest/manifest.json"));
    let (check, error) = failed_check(decide(
        &layer("dir-img-cosign-modified-manifest/signature-1"),
        &trust("cosign.pub", "cosign.pub"),
        &req,
        REPO,
        &other,
    ));
    assert_eq!(check, CosignCheck::Payload);
    assert!(
        matches!(*error, cosign::Error::DigestMismatch { .. }),
        "{error:?}"
    );

    // Another repository: refused under match_repository, accepted under any.
    let (check, _) = failed_check(decide(
        &l,
        &trust("cosign.pub", "cosign.pub"),
        &req,
        "r.example/elsewhere",
        &digest,
    ));
    assert_eq!(check, CosignCheck::SignedIdentity);
    assert!(decide(
        &l,
        &trust("cosign.pub", "cosign.pub"),
        &requirement(&["cosign.pub"], "any"),
        "r.example/elsewhere",
        &digest,
    )
    .is_ok());

    // Verified with a key the scope does not list.
    match decide(
        &l,
        &trust("cosign.pub", "cosign.pub"),
        &requirement(&["release.pub"], "match_repository"),
        REPO,
        &digest,
    ) {
        Err(FailureReason::CosignRejected(CosignRejection::UntrustedKey { name })) => {
            assert_eq!(name, "cosign.pub")
        }
        other => panic!("{other:?}"),
    }

    // A signature annotation that is not a signature at all.
    let mut broken = layer("dir-img-cosign-valid/signature-1");
    broken.annotations.insert(
        cosign::ANNOTATION_SIGNATURE.to_owned(),
        "bm90IGEgc2lnbmF0dXJl".to_owned(),
    );
    let (check, _) = failed_check(decide(
        &broken,
        &trust("cosign.pub", "cosign.pub"),
        &req,
        REPO,
        &digest,
    ));
    assert_eq!(check, CosignCheck::Signature);
}

/// The key-signed v0.3 bundles the end-to-end tests attach (minted by
/// `pullgate_tests::cosign` with a test transparency log) pass every check
/// the verifier runs on Rekor's; the same bundle fails for another image,
/// with another log's trusted root, and with another key.
#[test]
fn a_minted_key_signed_bundle_passes_as_rekor_logged_ones_do() {
    use pullgate_testkit::cosign::{self as mint, TestLog};

    let key = mint::CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let digest = Digest::sha256_of(b"an image manifest");
    let statement =
        mint::sign_statement("r.example/app", &digest.to_string(), mint::SIGN_PREDICATE);
    let bundle = mint::key_signed_bundle(&key, &log, &statement).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("release.pub");
    key.write_public_key(&key_path).unwrap();
    let root_path = dir.path().join("trusted_root.json");
    log.write_trusted_root(&root_path).unwrap();
    let trust = CosignTrust::load(std::slice::from_ref(&key_path), Some(&root_path)).unwrap();
    let toml = format!(
        "[[scope]]\nname = \"release\"\nregistry_scopes = [\"r.example/app\"]\nsignature_kinds = [\"cosign\"]\n\
         [scope.cosign]\nkeys = [{:?}]\ntrusted_root = {:?}\n",
        key_path.display().to_string(),
        root_path.display().to_string()
    );
    let req = Requirements::from_toml(&toml).unwrap().scopes()[0]
        .cosign()
        .unwrap()
        .clone();
    let repository: Repository = "r.example/app".parse().unwrap();
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let verify = |trust: &CosignTrust, digest: &Digest| {
        let report = judge::verify(
            Fetched::Bundle(&bundle),
            trust,
            ImageSubject {
                repository: &repository,
                digest,
            },
            now,
        );
        (judge::judge(&req, &report, digest), report)
    };

    let (decided, report) = verify(&trust, &digest);
    let accepted = decided.unwrap_or_else(|e| panic!("{e}: {report:?}"));
    assert_eq!(accepted.subject, "cosign key release.pub");
    assert_eq!(
        report.format,
        pullgate_policy::requirements::CosignFormat::Bundle
    );
    assert!(
        report.signed_at.is_some(),
        "the SET proves the signing time"
    );

    // Another image: the statement's subject is not it.
    let other = Digest::sha256_of(b"another manifest");
    assert!(verify(&trust, &other).0.is_err());

    // The public-good root does not know the test log.
    let pgi =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/cosign/trusted_root_pgi.json");
    let foreign = CosignTrust::load(std::slice::from_ref(&key_path), Some(&pgi)).unwrap();
    let (check, _) = failed_check(verify(&foreign, &digest).0);
    assert_eq!(check, CosignCheck::TransparencyLog);

    // Another key under the trusted name.
    let stranger = mint::CosignKey::generate().unwrap();
    stranger.write_public_key(&key_path).unwrap();
    let wrong = CosignTrust::load(std::slice::from_ref(&key_path), Some(&root_path)).unwrap();
    assert!(verify(&wrong, &digest).0.is_err());
}

/// Issue 23.6: a bundle signs a repository only through its in-toto
/// statement's subject `name`. Under `match_repository` (the default) a
/// bundle made for `acme/app-debug` does not count in `acme/app-prod`, nor
/// does one naming no repository (as cosign v3 writes it); under `any` both
/// count on the signer alone.
#[test]
fn a_bundle_counts_in_a_match_repository_scope_only_when_it_names_the_repository() {
    use pullgate_testkit::cosign::{self as mint, TestLog};

    let key = mint::CosignKey::generate().unwrap();
    let log = TestLog::generate().unwrap();
    let digest = Digest::sha256_of(b"an image manifest");
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("release.pub");
    key.write_public_key(&key_path).unwrap();
    let root_path = dir.path().join("trusted_root.json");
    log.write_trusted_root(&root_path).unwrap();
    let trust = CosignTrust::load(std::slice::from_ref(&key_path), Some(&root_path)).unwrap();
    let req = |signed_identity: &str| {
        let toml = format!(
            "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"r.example/acme/app-prod\"]\nsignature_kinds = [\"cosign\"]\n\
             [scope.cosign]\nkeys = [{:?}]\ntrusted_root = {:?}\nsigned_identity = {signed_identity:?}\n",
            key_path.display().to_string(),
            root_path.display().to_string()
        );
        Requirements::from_toml(&toml).unwrap().scopes()[0]
            .cosign()
            .unwrap()
            .clone()
    };
    let (strict, any) = (req("match_repository"), req("any"));
    let prod: Repository = "r.example/acme/app-prod".parse().unwrap();
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let decide = |name: &str, req: &CosignRequirement| {
        let statement = mint::sign_statement(name, &digest.to_string(), mint::SIGN_PREDICATE);
        let bundle = mint::key_signed_bundle(&key, &log, &statement).unwrap();
        let report = judge::verify(
            Fetched::Bundle(&bundle),
            &trust,
            ImageSubject {
                repository: &prod,
                digest: &digest,
            },
            now,
        );
        judge::judge(req, &report, &digest)
    };
    // Named for the repository pulled (a tag or digest may follow): counts.
    for name in [
        "r.example/acme/app-prod",
        "r.example/acme/app-prod:v1",
        &format!("r.example/acme/app-prod@{digest}"),
    ] {
        assert!(decide(name, &strict).is_ok(), "{name}");
    }
    // Made for another repository: refused, naming it.
    let (check, error) = failed_check(decide("r.example/acme/app-debug", &strict));
    assert_eq!(check, CosignCheck::SignedIdentity);
    assert!(
        matches!(&*error, cosign::Error::RepositoryMismatch { signed, .. }
            if signed.to_string() == "r.example/acme/app-debug"),
        "{error:?}"
    );
    // Naming no repository (cosign v3): refused, and the reason says what to set.
    let (check, error) = failed_check(decide("", &strict));
    assert_eq!(check, CosignCheck::SignedIdentity);
    assert!(
        matches!(&*error, cosign::Error::BundleNamesNoRepository { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("signed_identity = \"any\""));
    // Under `any`, the signer alone decides.
    for name in ["", "r.example/acme/app-debug", "r.example/acme/app-prod"] {
        assert!(decide(name, &any).is_ok(), "{name:?}");
    }
}
