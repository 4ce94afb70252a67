use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn pem_cert(path: &str) -> Certificate {
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    Certificate::from_der(&der).unwrap()
}

const E2E: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/notation-e2e/certs/e2e.crt"
);
const NEW_E2E: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/notation-e2e/certs/new_e2e.crt"
);
/// `openssl asn1parse -in e2e.crt -strparse 4 -out e2e.tbs; openssl sha384 < e2e.tbs`
const E2E_TBS_SHA384: &str = "adccc1682ee7c7029f730db368a4c1e61603d80ded63897d962926d89add128895764d56e7dc676a6dde9b8b021ba277";
/// The same for `new_e2e.crt`.
const NEW_E2E_TBS_SHA384: &str = "1cc58b2f22e58b522d1d7b59148e31cc8f31ba2de025d0749f5b83d62f4d871b6d3e521f63d571fa73be43e8b1751578";

/// The construction of the API reference's OpenSSL recipe and of the
/// plugin's `hashCertificates`: own TBS hash then the issuer's, the last
/// certificate doubled. Expected values computed with OpenSSL, not with
/// this code.
#[test]
fn certificate_hashes_follow_the_api_recipe() {
    let a = pem_cert(E2E);
    let b = pem_cert(NEW_E2E);
    assert_eq!(
        certificate_hashes(std::slice::from_ref(&a)),
        [format!("{E2E_TBS_SHA384}{E2E_TBS_SHA384}")]
    );
    assert_eq!(
        certificate_hashes(&[a.clone(), b.clone()]),
        [
            format!("{E2E_TBS_SHA384}{NEW_E2E_TBS_SHA384}"),
            format!("{NEW_E2E_TBS_SHA384}{NEW_E2E_TBS_SHA384}"),
        ]
    );
    assert_eq!(certificate_hashes(&[b, a]).len(), 2);
    assert!(certificate_hashes(&[]).is_empty());
}

/// The plugin's own unit-test vectors (`internal/verifier/verifier_test.go`):
/// the same two certificates must give the same hex as its
/// `GetRevocationStatusInput.CertificateHashes`.
#[test]
fn certificate_hashes_match_the_plugins_test_vectors() {
    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/aws-signer-notation-plugin"
    );
    const HASH_1: &str = "13a01b7e1de3aee0367615c59f6d001238913e594626d0e3c8784489b15a18fada1c31f39d3ba9318cb673ffd8cd679b";
    const HASH_2: &str = "ff41924f0940448d7e46b8c327e129813b1442fb17c9b2a86d49edcb00b707c9662f561c8a3e11a592b25061d488f2a3";
    let one = pem_cert(&format!("{DIR}/testCertificate1.pem"));
    let two = pem_cert(&format!("{DIR}/testCertificate2.pem"));
    assert_eq!(
        certificate_hashes(&[one, two]),
        [format!("{HASH_1}{HASH_2}"), format!("{HASH_2}{HASH_2}")]
    );
}

#[test]
fn plugin_header_and_min_version() {
    assert!(!check_plugin(None, None).unwrap());
    assert!(check_plugin(Some(PLUGIN_NAME), None).unwrap());
    for ok in ["1.0.0", "1.0.350", "v1.0.298", "0.9.9999"] {
        assert!(check_plugin(Some(PLUGIN_NAME), Some(ok)).unwrap(), "{ok}");
    }
    for too_high in [
        "1.0.351",
        "1.1.0",
        "2.0.0",
        "v10.0.0",
        "1.0",
        "1.0.0-rc.1",
        "01.0.0",
        "x",
        "",
    ] {
        assert!(
            matches!(
                check_plugin(Some(PLUGIN_NAME), Some(too_high)),
                Err(AwsSignerError::PluginVersion { .. })
            ),
            "{too_high}"
        );
    }
    assert!(matches!(
        check_plugin(Some("io.example.other"), None),
        Err(AwsSignerError::UnsupportedPlugin { .. })
    ));
    assert!(matches!(
        check_plugin(Some("com.amazonaws.signer.notation.plugin "), None),
        Err(AwsSignerError::UnsupportedPlugin { .. })
    ));
    assert!(matches!(
        check_plugin(None, Some("1.0.0")),
        Err(AwsSignerError::MinVersionWithoutPlugin)
    ));
}

#[test]
fn query_is_canonical_and_complete() {
    let q = RevocationQuery {
        certificate_hashes: vec!["ab".into(), "cd".into()],
        job_arn: "arn:aws:signer:us-west-2:123456789012:/signing-jobs/0f1e-22".into(),
        profile_version_arn: "arn:aws:signer:us-west-2:123456789012:/signing-profiles/p/V1".into(),
        signature_timestamp: UNIX_EPOCH + Duration::from_secs(1_657_134_628),
    };
    assert_eq!(
        q.path_and_query(),
        "/revocations?certificateHashes=ab&certificateHashes=cd\
         &jobArn=arn%3Aaws%3Asigner%3Aus-west-2%3A123456789012%3A%2Fsigning-jobs%2F0f1e-22\
         &platformId=Notation-OCI-SHA384-ECDSA\
         &profileVersionArn=arn%3Aaws%3Asigner%3Aus-west-2%3A123456789012%3A%2Fsigning-profiles%2Fp%2FV1\
         &signatureTimestamp=2022-07-06T19%3A10%3A28Z"
    );
    assert_eq!(q.profile_region(), Some("us-west-2"));
    assert_eq!(
        date_time(UNIX_EPOCH + Duration::from_millis(1_657_134_628_120)),
        "2022-07-06T19:10:28.12Z"
    );
}

#[test]
fn status_answers() {
    assert!(check_status(br#"{"revokedEntities":[]}"#).is_ok());
    assert!(check_status(br#"{}"#).is_ok());
    let Err(AwsSignerError::Revoked {
        resources,
        certificates,
    }) = check_status(
        br#"{"revokedEntities":["arn:aws:signer:us-west-2:1:/signing-jobs/j","00ff"]}"#,
    )
    else {
        panic!("not revoked")
    };
    assert_eq!(resources, ["arn:aws:signer:us-west-2:1:/signing-jobs/j"]);
    assert_eq!(certificates, 1);
    for bad in [&b"not json"[..], br#"{"revokedEntities":"x"}"#, b""] {
        assert!(matches!(
            check_status(bad),
            Err(AwsSignerError::Unavailable(Unavailable::Malformed))
        ));
    }
}

// Envelopes with the header set of an AWS Signer signature, over a test PKI
// shaped like AWS Signer's (`mint::aws_signer_pki`).

use serde_json::{json, Value};

use crate::verify::mint::AsCertificate as _;
use crate::verify::notary::NotaryError;
use crate::verify::notary::{self, Anchors, Options, Report, MEDIA_TYPE_JWS};
use crate::verify::revocation::NoRevocationData;
use crate::verify::Validation;
use pullgate_testkit::{self as mint, AwsSignerPki};

const PROFILE_VERSION: &str =
    "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release/Ab12Cd34Ef";
const JOB: &str =
    "arn:aws:signer:us-west-2:123456789012:/signing-jobs/2f6e3b1c-5a0d-4c41-9d5e-0c6a0b1b2c3d";

fn at(s: &str) -> SystemTime {
    crate::verify::rfc3339::parse(s).unwrap()
}

fn pki() -> AwsSignerPki {
    mint::aws_signer_pki((2020, 1, 1), (2040, 1, 1)).unwrap()
}

fn header() -> serde_json::Map<String, Value> {
    mint::aws_signer_header(
        PROFILE_VERSION,
        JOB,
        "2024-03-01T10:00:00Z",
        "2035-03-01T10:00:00Z",
    )
}

fn envelope(pki: &AwsSignerPki, header: &serde_json::Map<String, Value>) -> Vec<u8> {
    mint::envelope(header, &mint::payload(), &pki.leaf.key, &pki.x5c())
}

/// Verified with the PKI's root in a `signingAuthority` store (or a `ca` one).
fn run(pki: &AwsSignerPki, env: &[u8], as_ca: bool, now: SystemTime) -> Report {
    let root = [pki.root.certificate()];
    let (ca, sa) = if as_ca {
        (root.iter().collect(), Vec::new())
    } else {
        (Vec::new(), root.iter().collect())
    };
    let anchors = Anchors {
        ca,
        signing_authority: sa,
        tsa: Vec::new(),
    };
    notary::verify(
        MEDIA_TYPE_JWS,
        env,
        &anchors,
        Options::default(),
        &NoRevocationData,
        now,
    )
}

fn check(report: &Report, v: Validation) -> &Result<(), NotaryError> {
    report
        .check(v)
        .unwrap_or_else(|| panic!("{v} not run: {report:#?}"))
}

fn integrity_error(report: &Report) -> &NotaryError {
    match check(report, Validation::Integrity) {
        Err(e) => e,
        Ok(()) => panic!("integrity passed: {report:#?}"),
    }
}

#[test]
fn aws_signer_envelope_passes_and_asks_for_revocation() {
    let pki = pki();
    let mut report = run(
        &pki,
        &envelope(&pki, &header()),
        false,
        at("2030-01-01T00:00:00Z"),
    );
    for v in [
        Validation::Integrity,
        Validation::Authenticity,
        Validation::AuthenticTimestamp,
        Validation::Expiry,
    ] {
        assert!(check(&report, v).is_ok(), "{v}: {report:#?}");
    }
    // Not yet asked: the Revocation check fails until the gate reports an answer.
    assert!(matches!(
        check(&report, Validation::Revocation),
        Err(NotaryError::AwsSigner(AwsSignerError::NotChecked))
    ));
    assert!(
        report.revocation_requests.is_empty(),
        "no OCSP/CRL for AWS Signer"
    );
    let signer = report.signer.as_ref().unwrap();
    assert_eq!(
        signer.subject,
        "CN=AWS Signer,OU=AWS Cryptography,O=AWS,L=Seattle,ST=WA,C=US"
    );
    assert_eq!(
        signer.aws_signing_profile_version.as_deref(),
        Some(PROFILE_VERSION)
    );
    let query = report.aws_signer.clone().unwrap();
    assert_eq!(query.job_arn, JOB);
    assert_eq!(query.profile_version_arn, PROFILE_VERSION);
    assert_eq!(query.signature_timestamp, at("2024-03-01T10:00:00Z"));
    let chain = [
        pki.leaf.certificate(),
        pki.regional.certificate(),
        pki.intermediate.certificate(),
        pki.root.certificate(),
    ];
    assert_eq!(query.certificate_hashes, certificate_hashes(&chain));
    assert_eq!(query.certificate_hashes.len(), 4);
    let own = |c: &Certificate| hex::encode(Sha384::digest(c.tbs_der()));
    assert_eq!(
        query.certificate_hashes[3],
        format!("{}{}", own(&chain[3]), own(&chain[3]))
    );
    assert_eq!(
        query.certificate_hashes[0],
        format!("{}{}", own(&chain[0]), own(&chain[1]))
    );

    report.set_aws_signer_revocation(Ok(()));
    assert!(check(&report, Validation::Revocation).is_ok());
    report.set_aws_signer_revocation(Err(AwsSignerError::Revoked {
        resources: vec![JOB.to_owned()],
        certificates: 0,
    }));
    assert!(matches!(
        check(&report, Validation::Revocation),
        Err(NotaryError::AwsSigner(AwsSignerError::Revoked { .. }))
    ));
}

#[test]
fn certificates_are_checked_at_the_authentic_signing_time() {
    // The leaf expired in 2021; it signed in 2020: still good in 2030.
    let pki = mint::aws_signer_pki((2020, 1, 1), (2021, 1, 1)).unwrap();
    let mut h = header();
    h.insert(
        "io.cncf.notary.authenticSigningTime".into(),
        json!("2020-06-01T00:00:00Z"),
    );
    let report = run(&pki, &envelope(&pki, &h), false, at("2030-01-01T00:00:00Z"));
    assert!(
        check(&report, Validation::AuthenticTimestamp).is_ok(),
        "{report:#?}"
    );
    // Signed after the leaf expired: fails.
    h.insert(
        "io.cncf.notary.authenticSigningTime".into(),
        json!("2022-06-01T00:00:00Z"),
    );
    let report = run(&pki, &envelope(&pki, &h), false, at("2030-01-01T00:00:00Z"));
    assert!(matches!(
        check(&report, Validation::AuthenticTimestamp),
        Err(NotaryError::CertificateExpired { .. })
    ));
    // And the signature's own expiry is checked at now.
    let report = run(
        &pki,
        &envelope(&pki, &header()),
        false,
        at("2036-01-01T00:00:00Z"),
    );
    assert!(matches!(
        check(&report, Validation::Expiry),
        Err(NotaryError::SignatureExpired { .. })
    ));
}

#[test]
fn chain_must_end_in_a_signing_authority_store() {
    let pki = pki();
    let report = run(
        &pki,
        &envelope(&pki, &header()),
        true,
        at("2030-01-01T00:00:00Z"),
    );
    assert!(matches!(
        check(&report, Validation::Authenticity),
        Err(NotaryError::UntrustedChain)
    ));
    // Never asked about an untrusted chain.
    assert!(report.aws_signer.is_none());
    assert!(matches!(
        check(&report, Validation::Revocation),
        Err(NotaryError::RevocationSkippedUntrustedChain)
    ));
}

#[test]
fn header_rules_of_aws_signer_signatures() {
    let pki = pki();
    let now = at("2030-01-01T00:00:00Z");
    let edited = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut h = header();
        edit(&mut h);
        run(&pki, &envelope(&pki, &h), false, now)
    };
    let crit_push = |h: &mut serde_json::Map<String, Value>, name: &str| {
        if let Some(Value::Array(c)) = h.get_mut("crit") {
            c.push(json!(name));
        }
    };
    let crit_remove = |h: &mut serde_json::Map<String, Value>, name: &str| {
        if let Some(Value::Array(c)) = h.get_mut("crit") {
            c.retain(|v| v != name);
        }
    };

    // An extra unknown critical attribute fails, as for any signature.
    let r = edited(&|h| {
        h.insert("com.amazonaws.signer.somethingNew".into(), json!("x"));
        crit_push(h, "com.amazonaws.signer.somethingNew");
    });
    assert!(
        matches!(integrity_error(&r), NotaryError::UnknownCriticalHeader { name } if name == "com.amazonaws.signer.somethingNew")
    );
    // A non-critical unknown attribute is ignored.
    let r = edited(&|h| {
        h.insert("com.amazonaws.signer.somethingNew".into(), json!("x"));
    });
    assert!(check(&r, Validation::Integrity).is_ok());

    // Both extended attributes are required strings, and critical.
    for name in [ATTR_SIGNING_PROFILE_VERSION, ATTR_SIGNING_JOB] {
        let r = edited(&|h| {
            h.remove(name);
            crit_remove(h, name);
        });
        assert!(
            matches!(integrity_error(&r), NotaryError::AwsSigner(AwsSignerError::Attribute { name: n }) if *n == name)
        );
        let r = edited(&|h| {
            h.insert(name.into(), json!(42));
        });
        assert!(matches!(
            integrity_error(&r),
            NotaryError::AwsSigner(AwsSignerError::Attribute { .. })
        ));
        let r = edited(&|h| crit_remove(h, name));
        assert!(matches!(
            integrity_error(&r),
            NotaryError::MissingCriticalHeader { .. }
        ));
    }

    // A minimum plugin version above the one implemented fails.
    let r = edited(&|h| {
        h.insert(
            "io.cncf.notary.verificationPluginMinVersion".into(),
            json!("1.0.351"),
        );
    });
    assert!(matches!(
        integrity_error(&r),
        NotaryError::AwsSigner(AwsSignerError::PluginVersion { .. })
    ));
    // Another plugin fails.
    let r = edited(&|h| {
        h.insert(
            "io.cncf.notary.verificationPlugin".into(),
            json!("com.example.other"),
        );
    });
    assert!(matches!(
        integrity_error(&r),
        NotaryError::AwsSigner(AwsSignerError::UnsupportedPlugin { .. })
    ));
    // The AWS attributes without the plugin header are unknown critical attributes.
    let r = edited(&|h| {
        h.remove("io.cncf.notary.verificationPlugin");
        h.remove("io.cncf.notary.verificationPluginMinVersion");
        crit_remove(h, "io.cncf.notary.verificationPlugin");
        crit_remove(h, "io.cncf.notary.verificationPluginMinVersion");
    });
    assert!(matches!(
        integrity_error(&r),
        NotaryError::UnknownCriticalHeader { .. }
    ));
    // notary.x509 is refused for AWS Signer signatures.
    let r = edited(&|h| {
        h.insert("io.cncf.notary.signingScheme".into(), json!("notary.x509"));
        h.remove("io.cncf.notary.authenticSigningTime");
        crit_remove(h, "io.cncf.notary.authenticSigningTime");
        h.insert(
            "io.cncf.notary.signingTime".into(),
            json!("2024-03-01T10:00:00Z"),
        );
    });
    assert!(matches!(
        integrity_error(&r),
        NotaryError::AwsSigner(AwsSignerError::Scheme { .. })
    ));
    // The signature still has to verify.
    let mut env: Value = serde_json::from_slice(&envelope(&pki, &header())).unwrap();
    env["signature"] = json!("AAAA");
    let r = run(&pki, &serde_json::to_vec(&env).unwrap(), false, now);
    assert!(matches!(
        integrity_error(&r),
        NotaryError::SignatureInvalid | NotaryError::Malformed(_)
    ));
}

/// The roots shipped in `truststore/aws-signer/` are the ones their README
/// names (fingerprints of the DER), and parse as trust anchors.
#[test]
fn shipped_roots_have_the_published_fingerprints() {
    use sha2::Sha256;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../truststore/aws-signer/");
    for (file, fingerprint, cn) in [
        (
            "aws-signer-notation-root.crt",
            "90a87d0543c3f094dbff9589b6649affe2f3d6e0f308799be2258461c686473f",
            "CN=AWS Signer Code Signing Root CA G1",
        ),
        (
            "aws-us-gov-signer-notation-root.crt",
            "673653ab76f41a10546cdeb4107ecd6df2c15c2c9a0d32ed97d271b4436fc3e8",
            "CN=AWS Signer Code Signing GovCloud (US) Root CA G1",
        ),
    ] {
        let cert = pem_cert(&format!("{dir}{file}"));
        assert_eq!(
            hex::encode(Sha256::digest(cert.der())),
            fingerprint,
            "{file}"
        );
        assert!(cert.subject().starts_with(cn), "{file}: {}", cert.subject());
    }
}
