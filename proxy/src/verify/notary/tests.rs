//! Tests for Notary Project verification: the shared notation vectors (one
//! case per file, verdicts from their SOURCE.md) and minted envelopes for the
//! cases the vectors do not cover. Errors are compared as variants.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::jws::{EnvelopeError, Field};
use super::*;
use crate::verify::mint::AsCertificate as _;
use crate::verify::notary::error::KeyUsageProblem;
use crate::verify::rfc3339;
use crate::verify::x509::{parse_certificate_file, KeyKind};
use pullgate_testkit::{self as mint, Key};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors");

/// [`super::verify`] with the default options (`verifyTimestamp: always`).
fn verify(media_type: &str, envelope: &[u8], anchors: &Anchors<'_>, now: SystemTime) -> Report {
    super::verify(
        media_type,
        envelope,
        anchors,
        Options::default(),
        &revocation::NoRevocationData,
        now,
    )
}

fn vector(rel: &str) -> Vec<u8> {
    let path = Path::new(VECTORS).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn at(s: &str) -> SystemTime {
    rfc3339::parse(s).unwrap()
}

/// Every certificate of a vector trust store directory.
fn store(rel: &str) -> Vec<Certificate> {
    let dir: PathBuf = Path::new(VECTORS)
        .join("notation-go/truststore/x509")
        .join(rel);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .flat_map(|p| parse_certificate_file(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

fn anchors<'a>(ca: &'a [Certificate], sa: &'a [Certificate]) -> Anchors<'a> {
    Anchors {
        ca: ca.iter().collect(),
        signing_authority: sa.iter().collect(),
        tsa: Vec::new(),
    }
}

fn jan_2024() -> SystemTime {
    at("2024-01-01T00:00:00Z")
}

fn results(report: &Report) -> Vec<(Validation, bool)> {
    report
        .checks
        .iter()
        .map(|c| (c.validation, c.result.is_ok()))
        .collect()
}

fn assert_all_pass(report: &Report) {
    assert_eq!(
        results(report),
        vec![
            (Validation::Integrity, true),
            (Validation::Authenticity, true),
            (Validation::AuthenticTimestamp, true),
            (Validation::Expiry, true),
            (Validation::Revocation, true),
        ],
        "{report:#?}"
    );
}

fn err(report: &Report, v: Validation) -> &NotaryError {
    match report.check(v) {
        Some(Err(e)) => e,
        other => panic!("{v:?}: expected an error, got {other:?} in {report:#?}"),
    }
}

fn integrity_only(report: &Report) -> &NotaryError {
    assert_eq!(report.checks.len(), 1, "{report:#?}");
    assert!(report.target.is_none() && report.signer.is_none());
    err(report, Validation::Integrity)
}

// ---------------------------------------------------------------------------
// notation-go mock envelopes (SOURCE.md: mock-envelopes table)

const MOCK_SUBJECT: &str = "CN=Notation Test Root,O=Notary,L=Seattle,ST=WA,C=US";
const MOCK_DIGEST: &str = "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e";

#[test]
fn ca_valid_sig_env_passes_every_check() {
    let (ca, sa) = (
        store("ca/valid-trust-store"),
        store("signingAuthority/valid-trust-store"),
    );
    let env = vector("notation-go/mock-envelopes/ca_valid_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&ca, &sa), jan_2024());
    assert_all_pass(&report);
    let target = report.target.as_ref().unwrap();
    assert_eq!(target.digest.to_string(), MOCK_DIGEST);
    assert_eq!(target.size, 528);
    assert_eq!(
        target.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let signer = report.signer.as_ref().unwrap();
    assert_eq!(signer.subject, MOCK_SUBJECT);
    assert_eq!(signer.signing_scheme, SigningScheme::X509);
    assert_eq!(signer.signing_time, Some(at("2020-11-09T07:00:00Z")));
    assert_eq!(report.expiry, Some(at("2120-11-09T07:00:00Z")));
    assert_eq!(report.countersignature, Countersignature::Absent);
}

#[test]
fn ca_valid_sig_env_with_wrong_store_fails_authenticity_only() {
    let (ca, sa) = (
        store("ca/valid-trust-store-2"),
        store("signingAuthority/valid-trust-store-2"),
    );
    let env = vector("notation-go/mock-envelopes/ca_valid_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&ca, &sa), jan_2024());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UntrustedChain
    ));
    assert!(matches!(report.check(Validation::Integrity), Some(Ok(()))));
    assert!(matches!(
        report.check(Validation::AuthenticTimestamp),
        Some(Ok(()))
    ));
    assert!(matches!(report.check(Validation::Expiry), Some(Ok(()))));
}

#[test]
fn ca_scheme_ignores_signing_authority_anchors() {
    let sa = store("signingAuthority/valid-trust-store");
    let env = vector("notation-go/mock-envelopes/ca_valid_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&[], &sa), jan_2024());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UntrustedChain
    ));
}

#[test]
fn ca_expired_sig_env_fails_expiry() {
    let ca = store("ca/valid-trust-store");
    let env = vector("notation-go/mock-envelopes/ca_expired_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&ca, &[]), jan_2024());
    match err(&report, Validation::Expiry) {
        NotaryError::SignatureExpired { expiry, at: when } => {
            assert_eq!(*expiry, at("2022-07-29T23:59:00Z"));
            assert_eq!(*when, jan_2024());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        report.check(Validation::Authenticity),
        Some(Ok(()))
    ));
    // Before the expiry the same envelope passes.
    let report = verify(
        MEDIA_TYPE_JWS,
        &env,
        &anchors(&ca, &[]),
        at("2022-07-29T23:58:59Z"),
    );
    assert_all_pass(&report);
}

#[test]
fn ca_invalid_sig_env_fails_integrity_on_padded_base64url() {
    let ca = store("ca/valid-trust-store");
    let env = vector("notation-go/mock-envelopes/ca_invalid_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&ca, &[]), jan_2024());
    assert!(matches!(
        integrity_only(&report),
        NotaryError::Malformed(EnvelopeError::Base64 {
            field: Field::Payload
        })
    ));
}

#[test]
fn sa_vectors_verify_against_signing_authority_stores() {
    let (ca, sa) = (
        store("ca/valid-trust-store"),
        store("signingAuthority/valid-trust-store"),
    );
    let a = anchors(&ca, &sa);

    let valid = vector("notation-go/mock-envelopes/sa_valid_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &valid, &a, jan_2024());
    assert_all_pass(&report);
    let signer = report.signer.as_ref().unwrap();
    assert_eq!(signer.signing_scheme, SigningScheme::X509SigningAuthority);
    assert_eq!(signer.signing_time, Some(at("2020-11-09T07:00:00Z")));

    let expired = vector("notation-go/mock-envelopes/sa_expired_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &expired, &a, jan_2024());
    assert!(matches!(
        err(&report, Validation::Expiry),
        NotaryError::SignatureExpired { .. }
    ));
    assert!(matches!(
        report.check(Validation::Authenticity),
        Some(Ok(()))
    ));

    let invalid = vector("notation-go/mock-envelopes/sa_invalid_sig_env.json");
    let report = verify(MEDIA_TYPE_JWS, &invalid, &a, jan_2024());
    assert!(matches!(
        integrity_only(&report),
        NotaryError::Malformed(EnvelopeError::Base64 { .. })
    ));

    // The signingAuthority scheme needs a signingAuthority store: the same
    // root in a `ca` store does not do.
    let report = verify(MEDIA_TYPE_JWS, &valid, &anchors(&ca, &[]), jan_2024());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UntrustedChain
    ));

    let (ca2, sa2) = (
        store("ca/valid-trust-store-2"),
        store("signingAuthority/valid-trust-store-2"),
    );
    let report = verify(MEDIA_TYPE_JWS, &valid, &anchors(&ca2, &sa2), jan_2024());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UntrustedChain
    ));
}

#[test]
fn plugin_vectors_fail_integrity() {
    let (ca, sa) = (
        store("ca/valid-trust-store"),
        store("signingAuthority/valid-trust-store"),
    );
    for file in [
        "ca_plugin_sig_env.json",
        "sa_plugin_sig_env.json",
        "ca_compatible_pluginver_sig_env_0.0.9.json",
        "ca_compatible_pluginver_sig_env_1.0.0.json",
        "ca_compatible_pluginver_sig_env_1.0.0-alpha.json",
        "ca_compatible_pluginver_sig_env_1.0.0-alpha.beta.json",
        "ca_incompatible_pluginver_sig_env_1.0.1.json",
        "ca_incompatible_pluginver_sig_env_1.0.9.json",
        "ca_incompatible_pluginver_sig_env_1.1.0-alpha.json",
        "ca_incompatible_pluginver_sig_env_1.2.3.json",
    ] {
        let env = vector(&format!("notation-go/mock-envelopes/{file}"));
        let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&ca, &sa), jan_2024());
        match integrity_only(&report) {
            NotaryError::AwsSigner(
                aws_signer::AwsSignerError::UnsupportedPlugin { .. }
                | aws_signer::AwsSignerError::MinVersionWithoutPlugin,
            ) => {}
            other => panic!("{file}: {other:?}"),
        }
    }
}

#[test]
fn sig_env_with_metadata_reports_annotations_and_untrusted_expired_signer() {
    let ca = store("ca/valid-trust-store");
    let env = vector("notation-go/mock-envelopes/sig_env_with_metadata.json");
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&ca, &[]), jan_2024());
    assert!(matches!(report.check(Validation::Integrity), Some(Ok(()))));
    let target = report.target.as_ref().unwrap();
    assert_eq!(target.size, 942);
    assert_eq!(
        target
            .annotations
            .get("io.wabbit-networks.buildId")
            .map(String::as_str),
        Some("123")
    );
    assert_eq!(
        target
            .annotations
            .get("io.wabbit-networks.buildTime")
            .map(String::as_str),
        Some("1672944615")
    );
    // Its self-signed leaf is not in any store, and expired on 2023-01-12.
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UntrustedChain
    ));
    assert!(matches!(
        err(&report, Validation::AuthenticTimestamp),
        NotaryError::CertificateExpired { .. }
    ));
}

// ---------------------------------------------------------------------------
// Envelopes made by the real notation (internal/, notation-e2e, timestamp/)

/// The x5c certificates of a vector envelope.
fn chain_of(env: &[u8]) -> Vec<Certificate> {
    jws::parse(env).unwrap().chain
}

#[test]
fn notation_jws_signature_passes_with_its_self_signed_leaf_as_anchor() {
    let env = vector("notation-go/internal/jws_signature.sig");
    let leaf = chain_of(&env);
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&leaf, &[]), jan_2024());
    assert_all_pass(&report);
    assert_eq!(
        report.signer.as_ref().unwrap().subject,
        "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"
    );
    assert_eq!(
        report.target.as_ref().unwrap().digest.to_string(),
        "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
    );
    assert_eq!(report.expiry, None);
    // signingTime is "2023-03-14T16:10:02+08:00".
    assert_eq!(
        report.signer.as_ref().unwrap().signing_time,
        Some(at("2023-03-14T08:10:02Z"))
    );
}

/// Replaces one character inside a base64url member with another valid one.
fn tamper(env: &[u8], member: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(env).unwrap();
    let s = v[member].as_str().unwrap().to_owned();
    let mut bytes = URL_SAFE_NO_PAD.decode(&s).unwrap();
    bytes[10] ^= 0x01;
    v[member] = Value::String(URL_SAFE_NO_PAD.encode(bytes));
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn tampered_notation_jws_signature_fails_integrity() {
    let env = vector("notation-go/internal/jws_signature.sig");
    let leaf = chain_of(&env);
    // Byte 10 of the protected header is inside `"alg":"PS256"`: the flip
    // turns it into PS356, refused before the signature is even checked.
    let report = verify(
        MEDIA_TYPE_JWS,
        &tamper(&env, "protected"),
        &anchors(&leaf, &[]),
        jan_2024(),
    );
    assert!(matches!(
        integrity_only(&report),
        NotaryError::UnsupportedAlgorithm { .. }
    ));
    let report = verify(
        MEDIA_TYPE_JWS,
        &tamper(&env, "payload"),
        &anchors(&leaf, &[]),
        jan_2024(),
    );
    assert!(matches!(
        integrity_only(&report),
        NotaryError::SignatureInvalid
    ));
    let report = verify(
        MEDIA_TYPE_JWS,
        &tamper(&env, "signature"),
        &anchors(&leaf, &[]),
        jan_2024(),
    );
    assert!(matches!(
        integrity_only(&report),
        NotaryError::SignatureInvalid
    ));
}

#[test]
fn malformed_e2e_signature_fails_integrity() {
    let env = vector("notation-e2e/signatures/malformed.jws.sig");
    let report = verify(MEDIA_TYPE_JWS, &env, &Anchors::default(), jan_2024());
    assert!(matches!(
        integrity_only(&report),
        NotaryError::Malformed(EnvelopeError::Json(_))
    ));
}

#[test]
fn e2e_blob_signature_with_timestamp_is_checked_at_now() {
    let env = vector("notation-e2e/signatures/blob.jws.sig");
    let leaf = chain_of(&env);
    // testcert2 expires 2025-01-01 08:04:39; the Microsoft TSA token is not
    // verified yet, so validity is checked at `now`.
    let report = verify(
        MEDIA_TYPE_JWS,
        &env,
        &anchors(&leaf, &[]),
        at("2024-12-31T12:00:00Z"),
    );
    assert_all_pass(&report);
    assert_eq!(report.countersignature, Countersignature::NotVerified);
    let report = verify(
        MEDIA_TYPE_JWS,
        &env,
        &anchors(&leaf, &[]),
        at("2026-01-01T00:00:00Z"),
    );
    assert!(matches!(
        err(&report, Validation::AuthenticTimestamp),
        NotaryError::CertificateExpired { .. }
    ));
    assert!(matches!(
        report.check(Validation::Authenticity),
        Some(Ok(()))
    ));
}

#[test]
fn timestamp_vectors_fall_back_to_now() {
    let ca = store("ca/valid-trust-store");
    let a = anchors(&ca, &[]);
    let now = at("2025-01-01T00:00:00Z");
    // CN=alpine (→ 2033) is TestTimestamp.crt in ca/valid-trust-store.
    for file in ["jwsWithTimestamp.sig", "withoutTimestamp.sig"] {
        let env = vector(&format!("notation-go/timestamp/sigEnv/{file}"));
        let report = verify(MEDIA_TYPE_JWS, &env, &a, now);
        assert_all_pass(&report);
    }
    let env = vector("notation-go/timestamp/sigEnv/jwsWithTimestamp.sig");
    assert_eq!(
        verify(MEDIA_TYPE_JWS, &env, &a, now).countersignature,
        Countersignature::NotVerified
    );
    // Signed by testTSA, expired 2024-06-18 07:30:31; without a `tsa` trust
    // store the timestamp is not verified (as notation-go), so it fails.
    let env = vector("notation-go/timestamp/sigEnv/jwsExpiredWithTimestamp.sig");
    let leaf = chain_of(&env);
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&leaf, &[]), now);
    assert!(matches!(
        err(&report, Validation::AuthenticTimestamp),
        NotaryError::CertificateExpired { .. }
    ));
    // The COSE vector behaves the same.
    let cose = vector("notation-go/timestamp/sigEnv/coseWithTimestamp.sig");
    let report = verify(MEDIA_TYPE_COSE, &cose, &a, now);
    assert_all_pass(&report);
    assert_eq!(report.countersignature, Countersignature::NotVerified);
    let report = verify("application/cbor", &cose, &a, now);
    assert!(matches!(
        integrity_only(&report),
        NotaryError::UnsupportedMediaType { .. }
    ));
}

#[test]
fn limits_are_enforced_before_parsing() {
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    let report = verify(MEDIA_TYPE_JWS, &big, &Anchors::default(), jan_2024());
    assert!(matches!(
        integrity_only(&report),
        NotaryError::EnvelopeTooLarge { .. }
    ));

    let env = vector("notation-go/internal/jws_signature.sig");
    let mut v: Value = serde_json::from_slice(&env).unwrap();
    let leaf = v["header"]["x5c"][0].clone();
    v["header"]["x5c"] = Value::Array(vec![leaf; MAX_CHAIN_CERTIFICATES + 1]);
    let report = verify(
        MEDIA_TYPE_JWS,
        &serde_json::to_vec(&v).unwrap(),
        &Anchors::default(),
        jan_2024(),
    );
    assert!(matches!(
        integrity_only(&report),
        NotaryError::TooManyCertificates {
            count: 11,
            limit: 10
        }
    ));
}

#[test]
fn envelope_structure_rules() {
    let env = vector("notation-go/internal/jws_signature.sig");
    let base: Value = serde_json::from_slice(&env).unwrap();
    let check = |edit: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        edit(&mut v);
        let report = verify(
            MEDIA_TYPE_JWS,
            &serde_json::to_vec(&v).unwrap(),
            &Anchors::default(),
            jan_2024(),
        );
        assert_eq!(report.checks.len(), 1);
        report
            .checks
            .into_iter()
            .next()
            .unwrap()
            .result
            .unwrap_err()
    };
    // General JWS JSON serialization and extra members are refused.
    assert!(matches!(
        check(&|v| {
            v["signatures"] = json!([]);
        }),
        NotaryError::Malformed(EnvelopeError::Json(_))
    ));
    assert!(matches!(
        check(&|v| {
            v["header"].as_object_mut().unwrap().remove("x5c");
        }),
        NotaryError::Malformed(EnvelopeError::MissingX5c)
    ));
    assert!(matches!(
        check(&|v| {
            v["header"]["x5c"] = json!([]);
        }),
        NotaryError::Malformed(EnvelopeError::MissingX5c)
    ));
    assert!(matches!(
        check(&|v| {
            v["header"]["x5c"] = json!(["%%%"]);
        }),
        NotaryError::Malformed(EnvelopeError::X5cBase64 { index: 0 })
    ));
    assert!(matches!(
        check(&|v| {
            v["header"]["x5c"] = json!(["AAAA"]);
        }),
        NotaryError::Certificate { index: 0, .. }
    ));
    assert!(matches!(
        check(&|v| {
            v["header"]["io.cncf.notary.timestampSignature"] = json!(7);
        }),
        NotaryError::Malformed(EnvelopeError::TimestampSignature)
    ));
    // Unknown unprotected headers (and the mock vectors' `SigningAgent`
    // spelling) are fine.
    let mut v = base.clone();
    v["header"]["x-unknown"] = json!({"a": 1});
    let leaf = chain_of(&env);
    let report = verify(
        MEDIA_TYPE_JWS,
        &serde_json::to_vec(&v).unwrap(),
        &anchors(&leaf, &[]),
        jan_2024(),
    );
    assert_all_pass(&report);
}

// ---------------------------------------------------------------------------
// Minted envelopes

struct Pki {
    root: mint::Issued,
    leaf: mint::Issued,
}

fn p256_pki() -> Pki {
    let root =
        mint::self_signed(mint::ca_params("Test Root", Some(1)), Key::p256().unwrap()).unwrap();
    let leaf = mint::issue(mint::leaf_params("signer"), Key::p256().unwrap(), &root).unwrap();
    Pki { root, leaf }
}

fn sign(pki: &Pki, header: &serde_json::Map<String, Value>) -> Vec<u8> {
    mint::envelope(
        header,
        &mint::payload(),
        &pki.leaf.key,
        &[pki.leaf.der(), pki.root.der()],
    )
}

fn run(pki: &Pki, env: &[u8], now: SystemTime) -> Report {
    let root = [pki.root.certificate()];
    verify(MEDIA_TYPE_JWS, env, &anchors(&root, &[]), now)
}

fn minted_now() -> SystemTime {
    at("2030-06-01T00:00:00Z")
}

#[test]
fn minted_es256_passes() {
    let pki = p256_pki();
    let report = run(&pki, &sign(&pki, &mint::header("ES256")), minted_now());
    assert_all_pass(&report);
    let target = report.target.as_ref().unwrap();
    assert_eq!(target.digest.to_string(), mint::TARGET_DIGEST);
    assert_eq!(target.size, 16724);
    assert_eq!(
        report.signer.as_ref().unwrap().subject,
        "CN=signer,O=Notary,L=Seattle,ST=WA,C=US"
    );
}

#[test]
fn minted_ps256_passes() {
    // RSA-2048 leaf under an ECDSA root.
    let root = mint::self_signed(mint::ca_params("Test Root", None), Key::p256().unwrap()).unwrap();
    let leaf = mint::issue(
        mint::leaf_params("rsa signer"),
        Key::rsa2048().unwrap(),
        &root,
    )
    .unwrap();
    let pki = Pki { root, leaf };
    let report = run(&pki, &sign(&pki, &mint::header("PS256")), minted_now());
    assert_all_pass(&report);

    // A self-signed RSA leaf alone (its certificate signed with PKCS#1 v1.5).
    let single = mint::self_signed(mint::leaf_params("self"), Key::rsa2048().unwrap()).unwrap();
    let env = mint::envelope(
        &mint::header("PS256"),
        &mint::payload(),
        &single.key,
        &[single.der()],
    );
    let anchor = [single.certificate()];
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
    assert_all_pass(&report);
}

#[test]
fn minted_es384_and_ps512_pass() {
    let root = mint::self_signed(mint::ca_params("Test Root", None), Key::p384().unwrap()).unwrap();
    let anchor = [root.certificate()];
    for (alg, wrong, key) in [
        ("ES384", "ES256", Key::p384().unwrap()),
        ("PS512", "PS384", Key::rsa4096().unwrap()),
    ] {
        let leaf = mint::issue(mint::leaf_params("signer"), key, &root).unwrap();
        let chain = [leaf.der(), root.der()];
        let env = mint::envelope(&mint::header(alg), &mint::payload(), &leaf.key, &chain);
        let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
        assert_all_pass(&report);
        // The same key under another size of the family is an algorithm
        // substitution.
        let env = mint::envelope(&mint::header(wrong), &mint::payload(), &leaf.key, &chain);
        let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
        assert!(matches!(
            integrity_only(&report),
            NotaryError::AlgorithmKeyMismatch { .. }
        ));
    }
}

#[test]
fn es512_with_p521_key_passes() {
    // rcgen (ring) cannot make P-521 keys: the leaf is an openssl-made
    // self-signed fixture (valid 2026-11-26 → 2126) and its test-only key.
    use p521::pkcs8::DecodePrivateKey as _;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/verify/testdata");
    let pem = std::fs::read_to_string(dir.join("p521-test-only.pk8.pem")).unwrap();
    let secret = p521::SecretKey::from_pkcs8_pem(&pem).unwrap();
    let key = p521::ecdsa::SigningKey::from_slice(&secret.to_bytes()).unwrap();
    let cert = parse_certificate_file(&std::fs::read(dir.join("p521-self-signed.crt")).unwrap())
        .unwrap()
        .remove(0);
    let sign = |msg: &[u8]| {
        let sig: p521::ecdsa::Signature = signature::Signer::sign(&key, msg);
        sig.to_bytes().to_vec()
    };
    let x5c = [cert.der().to_vec()];
    let anchor = [cert];
    for (alg, ok) in [("ES512", true), ("ES384", false)] {
        let env = mint::envelope_signed_by(&mint::header(alg), &mint::payload(), &sign, &x5c);
        let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
        if ok {
            assert_all_pass(&report);
        } else {
            assert!(matches!(
                integrity_only(&report),
                NotaryError::AlgorithmKeyMismatch {
                    key: KeyKind::P521,
                    ..
                }
            ));
        }
    }
}

#[test]
fn verifier_outputs_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Report>();
    send_sync::<crate::verify::trust_store::TrustStore>();
    send_sync::<Anchors<'static>>();
}

#[test]
fn minted_tampering_fails_integrity() {
    let pki = p256_pki();
    let env = sign(&pki, &mint::header("ES256"));
    let report = run(&pki, &tamper(&env, "payload"), minted_now());
    assert!(matches!(
        integrity_only(&report),
        NotaryError::SignatureInvalid
    ));

    // A protected header re-encoded with a changed value keeps valid JSON.
    let mut v: Value = serde_json::from_slice(&env).unwrap();
    let mut h = mint::header("ES256");
    h.insert(HEADER_SIGNING_TIME.into(), json!("2021-01-02T00:00:00Z"));
    v["protected"] = Value::String(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()));
    let report = run(&pki, &serde_json::to_vec(&v).unwrap(), minted_now());
    assert!(matches!(
        integrity_only(&report),
        NotaryError::SignatureInvalid
    ));
}

#[test]
fn minted_untrusted_root_fails_authenticity() {
    let pki = p256_pki();
    let other =
        mint::self_signed(mint::ca_params("Test Root", Some(1)), Key::p256().unwrap()).unwrap();
    let env = sign(&pki, &mint::header("ES256"));
    let anchor = [other.certificate()];
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UntrustedChain
    ));
    assert!(matches!(
        report.check(Validation::AuthenticTimestamp),
        Some(Ok(()))
    ));
}

fn leaf_with(edit: impl FnOnce(&mut rcgen::CertificateParams)) -> Pki {
    let root =
        mint::self_signed(mint::ca_params("Test Root", Some(1)), Key::p256().unwrap()).unwrap();
    let mut params = mint::leaf_params("signer");
    edit(&mut params);
    let leaf = mint::issue(params, Key::p256().unwrap(), &root).unwrap();
    Pki { root, leaf }
}

#[test]
fn minted_leaf_requirements() {
    let pki =
        leaf_with(|p| p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]);
    let report = run(&pki, &sign(&pki, &mint::header("ES256")), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::ForbiddenExtendedKeyUsage { .. }
    ));

    // No EKU at all is allowed.
    let pki = leaf_with(|p| p.extended_key_usages = vec![]);
    assert_all_pass(&run(
        &pki,
        &sign(&pki, &mint::header("ES256")),
        minted_now(),
    ));

    let pki = leaf_with(|p| p.key_usages = vec![rcgen::KeyUsagePurpose::ContentCommitment]);
    let report = run(&pki, &sign(&pki, &mint::header("ES256")), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::KeyUsage {
            problem: KeyUsageProblem::MissingDigitalSignature,
            ..
        }
    ));

    let pki = leaf_with(|p| {
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ]
    });
    let report = run(&pki, &sign(&pki, &mint::header("ES256")), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::KeyUsage {
            problem: KeyUsageProblem::NotOnlyDigitalSignature,
            ..
        }
    ));

    let pki = leaf_with(|p| p.key_usages = vec![]);
    let report = run(&pki, &sign(&pki, &mint::header("ES256")), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::KeyUsage {
            problem: KeyUsageProblem::Missing,
            ..
        }
    ));

    let pki = leaf_with(|p| p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained));
    let report = run(&pki, &sign(&pki, &mint::header("ES256")), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::LeafIsCa { .. }
    ));
}

#[test]
fn minted_intermediate_requirements() {
    let root = mint::self_signed(mint::ca_params("Test Root", None), Key::p256().unwrap()).unwrap();
    let mut params = mint::ca_params("Not A CA", None);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let intermediate = mint::issue(params, Key::p256().unwrap(), &root).unwrap();
    let leaf = mint::issue(
        mint::leaf_params("signer"),
        Key::p256().unwrap(),
        &intermediate,
    )
    .unwrap();
    let env = mint::envelope(
        &mint::header("ES256"),
        &mint::payload(),
        &leaf.key,
        &[leaf.der(), intermediate.der(), root.der()],
    );
    let anchor = [root.certificate()];
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
    match err(&report, Validation::Authenticity) {
        NotaryError::NotCa { subject } => assert!(subject.starts_with("CN=Not A CA")),
        other => panic!("{other:?}"),
    }

    // pathLen 0 on the root with an intermediate below it.
    let root =
        mint::self_signed(mint::ca_params("Test Root", Some(0)), Key::p256().unwrap()).unwrap();
    let intermediate = mint::issue(
        mint::ca_params("Intermediate", None),
        Key::p256().unwrap(),
        &root,
    )
    .unwrap();
    let leaf = mint::issue(
        mint::leaf_params("signer"),
        Key::p256().unwrap(),
        &intermediate,
    )
    .unwrap();
    let chain = [leaf.der(), intermediate.der(), root.der()];
    let env = mint::envelope(&mint::header("ES256"), &mint::payload(), &leaf.key, &chain);
    let anchor = [root.certificate()];
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::PathLenExceeded {
            path_len: 0,
            depth: 1,
            ..
        }
    ));

    // A correct three-certificate chain passes; trusting only the
    // intermediate (pinning) passes too.
    let root =
        mint::self_signed(mint::ca_params("Test Root", Some(1)), Key::p256().unwrap()).unwrap();
    let intermediate = mint::issue(
        mint::ca_params("Intermediate", Some(0)),
        Key::p256().unwrap(),
        &root,
    )
    .unwrap();
    let leaf = mint::issue(
        mint::leaf_params("signer"),
        Key::p256().unwrap(),
        &intermediate,
    )
    .unwrap();
    let chain = [leaf.der(), intermediate.der(), root.der()];
    let env = mint::envelope(&mint::header("ES256"), &mint::payload(), &leaf.key, &chain);
    for anchor in [[root.certificate()], [intermediate.certificate()]] {
        let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
        assert_all_pass(&report);
    }

    // Out of order, missing root, or an unrelated certificate in the middle.
    let anchor = [root.certificate()];
    let stranger =
        mint::self_signed(mint::ca_params("Stranger", None), Key::p256().unwrap()).unwrap();
    for (chain, check) in [
        (
            vec![leaf.der(), root.der(), intermediate.der()],
            (|e: &NotaryError| matches!(e, NotaryError::NotIssuedBy { index: 0, .. }))
                as fn(&NotaryError) -> bool,
        ),
        (vec![leaf.der(), intermediate.der()], |e: &NotaryError| {
            matches!(e, NotaryError::RootNotSelfSigned { .. })
        }),
        (vec![leaf.der(), stranger.der()], |e: &NotaryError| {
            matches!(e, NotaryError::NotIssuedBy { index: 0, .. })
        }),
    ] {
        let env = mint::envelope(&mint::header("ES256"), &mint::payload(), &leaf.key, &chain);
        let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
        let e = err(&report, Validation::Authenticity);
        assert!(check(e), "{e:?}");
    }

    // A self-signed signing certificate followed by more certificates.
    let selfie = mint::self_signed(mint::leaf_params("selfie"), Key::p256().unwrap()).unwrap();
    let chain = [selfie.der(), root.der()];
    let env = mint::envelope(
        &mint::header("ES256"),
        &mint::payload(),
        &selfie.key,
        &chain,
    );
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&anchor, &[]), minted_now());
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UnexpectedSelfSigned { index: 0, .. }
    ));
}

#[test]
fn minted_expired_leaf_fails_authentic_timestamp() {
    let pki = leaf_with(|p| p.not_after = rcgen::date_time_ymd(2022, 1, 1));
    let env = sign(&pki, &mint::header("ES256"));
    let report = run(&pki, &env, minted_now());
    match err(&report, Validation::AuthenticTimestamp) {
        NotaryError::CertificateExpired {
            not_after,
            at: when,
            ..
        } => {
            assert_eq!(*not_after, at("2022-01-01T00:00:00Z"));
            assert_eq!(*when, minted_now());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        report.check(Validation::Authenticity),
        Some(Ok(()))
    ));

    let pki = leaf_with(|p| p.not_before = rcgen::date_time_ymd(2035, 1, 1));
    let report = run(&pki, &sign(&pki, &mint::header("ES256")), minted_now());
    assert!(matches!(
        err(&report, Validation::AuthenticTimestamp),
        NotaryError::CertificateNotYetValid { .. }
    ));
}

#[test]
fn minted_signing_authority_is_checked_at_authentic_signing_time() {
    let pki = leaf_with(|p| p.not_after = rcgen::date_time_ymd(2022, 1, 1));
    let mut h = mint::header("ES256");
    h.remove(HEADER_SIGNING_TIME);
    h.insert(
        HEADER_SIGNING_SCHEME.into(),
        json!("notary.x509.signingAuthority"),
    );
    h.insert(
        HEADER_AUTHENTIC_SIGNING_TIME.into(),
        json!("2021-06-01T00:00:00Z"),
    );
    h.insert(
        "crit".into(),
        json!([HEADER_SIGNING_SCHEME, HEADER_AUTHENTIC_SIGNING_TIME]),
    );
    let env = sign(&pki, &h);
    let root = [pki.root.certificate()];
    let report = verify(MEDIA_TYPE_JWS, &env, &anchors(&[], &root), minted_now());
    assert_all_pass(&report);
    assert_eq!(
        report.signer.as_ref().unwrap().signing_time,
        Some(at("2021-06-01T00:00:00Z"))
    );
}

/// Signs `header` with a fresh P-256 PKI and returns the integrity error.
fn header_error(header: &serde_json::Map<String, Value>) -> NotaryError {
    let pki = p256_pki();
    let mut report = run(&pki, &sign(&pki, header), minted_now());
    assert_eq!(report.checks.len(), 1, "{report:#?}");
    report.checks.remove(0).result.unwrap_err()
}

#[test]
fn minted_protected_header_rules() {
    for alg in ["none", "HS256", "RS256", "EdDSA", "ps256", ""] {
        match header_error(&mint::header(alg)) {
            NotaryError::UnsupportedAlgorithm { alg: got } => assert_eq!(got, alg),
            other => panic!("{alg}: {other:?}"),
        }
    }
    assert!(matches!(
        header_error(&mint::header("ES384")),
        NotaryError::AlgorithmKeyMismatch {
            alg: Algorithm::Es384,
            key: KeyKind::P256
        }
    ));
    assert!(matches!(
        header_error(&mint::header("PS256")),
        NotaryError::AlgorithmKeyMismatch { .. }
    ));

    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut h = mint::header("ES256");
        f(&mut h);
        header_error(&h)
    };
    match edit(&|h| {
        h.insert("io.example.magic".into(), json!("x"));
        h.insert(
            "crit".into(),
            json!([HEADER_SIGNING_SCHEME, "io.example.magic"]),
        );
    }) {
        NotaryError::UnknownCriticalHeader { name } => assert_eq!(name, "io.example.magic"),
        other => panic!("{other:?}"),
    }
    // An unknown header that is not critical is fine.
    let pki = p256_pki();
    let mut h = mint::header("ES256");
    h.insert("io.example.informational".into(), json!(1));
    assert_all_pass(&run(&pki, &sign(&pki, &h), minted_now()));

    assert!(matches!(
        edit(&|h| {
            h.insert("crit".into(), json!([HEADER_SIGNING_SCHEME, "alg"]));
        }),
        NotaryError::InvalidCriticalHeader { .. }
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert("crit".into(), json!([HEADER_SIGNING_SCHEME, HEADER_EXPIRY]));
        }),
        NotaryError::InvalidCriticalHeader { .. }
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert("crit".into(), json!([]));
        }),
        NotaryError::Malformed(EnvelopeError::Crit)
    ));
    assert!(matches!(
        edit(&|h| {
            h.remove("crit");
        }),
        NotaryError::MissingHeader { name: "crit" }
    ));
    match edit(&|h| {
        h.insert(HEADER_EXPIRY.into(), json!("2099-01-01T00:00:00Z"));
    }) {
        NotaryError::MissingCriticalHeader { name } => assert_eq!(name, HEADER_EXPIRY),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        edit(&|h| {
            h.insert("crit".into(), json!(["io.cncf.notary.expiry"]));
            h.insert(HEADER_EXPIRY.into(), json!("2099-01-01T00:00:00Z"));
        }),
        NotaryError::MissingCriticalHeader { .. }
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert("cty".into(), json!("application/json"));
        }),
        NotaryError::UnsupportedContentType { .. }
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert(HEADER_SIGNING_SCHEME.into(), json!("notary.default.x509"));
        }),
        NotaryError::UnsupportedSigningScheme { .. }
    ));
    assert!(matches!(
        edit(&|h| {
            h.remove(HEADER_SIGNING_TIME);
        }),
        NotaryError::MissingHeader {
            name: HEADER_SIGNING_TIME
        }
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert(HEADER_SIGNING_TIME.into(), json!("yesterday"));
        }),
        NotaryError::Malformed(EnvelopeError::HeaderTime { .. })
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert(
                HEADER_AUTHENTIC_SIGNING_TIME.into(),
                json!("2021-01-01T00:00:00Z"),
            );
            h.insert(
                "crit".into(),
                json!([HEADER_SIGNING_SCHEME, HEADER_AUTHENTIC_SIGNING_TIME]),
            );
        }),
        NotaryError::HeaderNotAllowed {
            name: HEADER_AUTHENTIC_SIGNING_TIME,
            scheme: SigningScheme::X509
        }
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert(
                HEADER_SIGNING_SCHEME.into(),
                json!("notary.x509.signingAuthority"),
            );
        }),
        NotaryError::MissingHeader {
            name: HEADER_AUTHENTIC_SIGNING_TIME
        }
    ));
    assert!(matches!(
        edit(&|h| {
            h.insert(
                HEADER_VERIFICATION_PLUGIN.into(),
                json!("com.example.plugin"),
            );
        }),
        NotaryError::AwsSigner(aws_signer::AwsSignerError::UnsupportedPlugin { .. })
    ));
}

#[test]
fn minted_payload_rules() {
    let pki = p256_pki();
    for payload in [
        json!({}),
        json!({"targetArtifact": {"mediaType": "a/b", "size": 1}}),
        json!({"targetArtifact": {"mediaType": "a/b", "digest": "sha256:zz", "size": 1}}),
        json!({"targetArtifact": {"mediaType": "a/b", "digest": mint::TARGET_DIGEST, "size": -1}}),
        json!([1, 2]),
    ] {
        let env = mint::envelope(
            &mint::header("ES256"),
            &serde_json::to_vec(&payload).unwrap(),
            &pki.leaf.key,
            &[pki.leaf.der(), pki.root.der()],
        );
        let report = run(&pki, &env, minted_now());
        assert!(
            matches!(
                integrity_only(&report),
                NotaryError::Malformed(EnvelopeError::Payload(_) | EnvelopeError::Digest { .. })
            ),
            "{payload}"
        );
    }
}

#[test]
fn minted_expiry_boundary() {
    let pki = p256_pki();
    let mut h = mint::header("ES256");
    h.insert(HEADER_EXPIRY.into(), json!("2030-06-01T00:00:00Z"));
    h.insert("crit".into(), json!([HEADER_SIGNING_SCHEME, HEADER_EXPIRY]));
    let env = sign(&pki, &h);
    // "expired when the current time is greater than or equal to expiry time"
    let report = run(&pki, &env, minted_now());
    assert!(matches!(
        err(&report, Validation::Expiry),
        NotaryError::SignatureExpired { .. }
    ));
    let report = run(&pki, &env, minted_now() - Duration::from_secs(1));
    assert_all_pass(&report);
}

// ---------------------------------------------------------------------------
// Never panics

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    fn valid_envelopes() -> Vec<Vec<u8>> {
        vec![
            vector("notation-go/mock-envelopes/ca_valid_sig_env.json"),
            vector("notation-go/internal/jws_signature.sig"),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = verify(MEDIA_TYPE_JWS, &bytes, &Anchors::default(), jan_2024());
        }

        #[test]
        fn on_arbitrary_json(s in "\\{(\"(payload|protected|header|signature|x5c)\":(\"[A-Za-z0-9_=-]{0,40}\"|\\{\\}|\\[\\]|1),?){0,6}\\}") {
            let _ = verify(MEDIA_TYPE_JWS, s.as_bytes(), &Anchors::default(), jan_2024());
        }

        #[test]
        fn on_mutated_valid_envelopes(
            which in 0usize..2,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut env = valid_envelopes().swap_remove(which);
            for (index, byte) in edits {
                let i = index.index(env.len());
                env[i] = byte;
            }
            let ca = store("ca/valid-trust-store");
            let _ = verify(MEDIA_TYPE_JWS, &env, &anchors(&ca, &ca), jan_2024());
        }

        #[test]
        fn on_mutated_protected_headers(
            key in prop::sample::select(vec!["alg", "cty", "crit", HEADER_SIGNING_SCHEME, HEADER_SIGNING_TIME, HEADER_EXPIRY, HEADER_AUTHENTIC_SIGNING_TIME]),
            value in prop_oneof![
                Just(json!(null)), Just(json!(1)), Just(json!([])), Just(json!({})),
                Just(json!(["alg"])), Just(json!("9999-12-31T23:59:60Z")),
                Just(json!("0000-01-01T00:00:00-23:59")), "\\PC{0,20}".prop_map(Value::String),
            ],
        ) {
            let env = vector("notation-go/internal/jws_signature.sig");
            let mut v: Value = serde_json::from_slice(&env).unwrap();
            let protected = URL_SAFE_NO_PAD.decode(v["protected"].as_str().unwrap()).unwrap();
            let mut h: serde_json::Map<String, Value> = serde_json::from_slice(&protected).unwrap();
            h.insert(key.to_owned(), value);
            v["protected"] = Value::String(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()));
            let _ = verify(MEDIA_TYPE_JWS, &serde_json::to_vec(&v).unwrap(), &Anchors::default(), jan_2024());
        }
    }
}
