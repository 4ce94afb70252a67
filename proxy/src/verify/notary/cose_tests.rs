//! Minted COSE_Sign1 envelopes (the COSE counterparts of the JWS cases in
//! `tests.rs`), the expired-leaf-with-and-without-timestamp cases, and the
//! never-panics properties of the COSE parser. Errors are compared as
//! variants.

use std::path::Path;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ciborium::Value;

use super::cose::CoseError;
use super::timestamp::TimestampError;
use super::*;
use crate::verify::mint::AsCertificate as _;
use crate::verify::rfc3339;
use crate::verify::x509::{parse_certificate_file, KeyKind};
use pullgate_testkit::{self as mint, Key};

type CoseHeader = Vec<(Value, Value)>;

fn at(s: &str) -> SystemTime {
    rfc3339::parse(s).unwrap()
}

fn now() -> SystemTime {
    at("2030-06-01T00:00:00Z")
}

struct Pki {
    root: mint::Issued,
    leaf: mint::Issued,
}

fn pki_with(edit: impl FnOnce(&mut rcgen::CertificateParams), key: Key) -> Pki {
    let root =
        mint::self_signed(mint::ca_params("Test Root", Some(1)), Key::p256().unwrap()).unwrap();
    let mut params = mint::leaf_params("cose signer");
    edit(&mut params);
    let leaf = mint::issue(params, key, &root).unwrap();
    Pki { root, leaf }
}

fn p256() -> Pki {
    pki_with(|_| {}, Key::p256().unwrap())
}

fn sign(pki: &Pki, header: &CoseHeader) -> Vec<u8> {
    mint::cose_envelope(
        header,
        &mint::payload(),
        &pki.leaf.key,
        &[pki.leaf.der(), pki.root.der()],
    )
}

fn run_at(pki: &Pki, env: &[u8], when: SystemTime) -> Report {
    let root = [pki.root.certificate()];
    let anchors = Anchors {
        ca: root.iter().collect(),
        ..Anchors::default()
    };
    verify(
        MEDIA_TYPE_COSE,
        env,
        &anchors,
        Options::default(),
        &revocation::NoRevocationData,
        when,
    )
}

fn run(pki: &Pki, env: &[u8]) -> Report {
    run_at(pki, env, now())
}

fn all_pass(report: &Report) -> bool {
    report.checks.len() == 5 && report.checks.iter().all(|c| c.result.is_ok())
}

fn integrity_error(report: Report) -> NotaryError {
    assert_eq!(report.checks.len(), 1, "{report:#?}");
    assert!(report.target.is_none() && report.signer.is_none());
    report
        .checks
        .into_iter()
        .next()
        .unwrap()
        .result
        .unwrap_err()
}

fn err(report: &Report, v: Validation) -> &NotaryError {
    match report.check(v) {
        Some(Err(e)) => e,
        other => panic!("{v:?}: expected an error, got {other:?}"),
    }
}

/// Decodes a minted envelope, lets `edit` change it, re-encodes it (the
/// signature is kept as it was).
fn edit_message(env: &[u8], edit: impl FnOnce(&mut Vec<Value>)) -> Vec<u8> {
    let value: Value = ciborium::de::from_reader(env).unwrap();
    let Value::Tag(18, inner) = value else {
        panic!()
    };
    let Value::Array(mut items) = *inner else {
        panic!()
    };
    edit(&mut items);
    mint::cbor(&Value::Tag(18, Box::new(Value::Array(items))))
}

#[test]
fn minted_cose_es256_ps256_es384_pass() {
    let pki = p256();
    let report = run(&pki, &sign(&pki, &mint::cose_header(-7)));
    assert!(all_pass(&report), "{report:#?}");
    assert_eq!(
        report.target.as_ref().unwrap().digest.to_string(),
        mint::TARGET_DIGEST
    );
    let signer = report.signer.as_ref().unwrap();
    assert_eq!(
        signer.subject,
        "CN=cose signer,O=Notary,L=Seattle,ST=WA,C=US"
    );
    assert_eq!(signer.signing_time, Some(at("2021-01-01T00:00:00Z")));

    let pki = pki_with(|_| {}, Key::rsa2048().unwrap());
    assert!(all_pass(&run(&pki, &sign(&pki, &mint::cose_header(-37)))));
    let pki = pki_with(|_| {}, Key::p384().unwrap());
    assert!(all_pass(&run(&pki, &sign(&pki, &mint::cose_header(-35)))));
}

#[test]
fn minted_cose_single_certificate_x5chain_and_protected_x5chain() {
    let pki = p256();
    let header = mint::cose_header(-7);
    // RFC 9360: one certificate may be a bare bstr.
    let env = mint::cose_envelope(&header, &mint::payload(), &pki.leaf.key, &[]);
    let env = edit_message(&env, |items| {
        items[1] = Value::Map(vec![(Value::from(33), Value::Bytes(pki.leaf.der()))]);
    });
    let leaf = [pki.leaf.certificate()];
    let anchors = Anchors {
        ca: leaf.iter().collect(),
        ..Anchors::default()
    };
    let report = verify(
        MEDIA_TYPE_COSE,
        &env,
        &anchors,
        Options::default(),
        &revocation::NoRevocationData,
        now(),
    );
    // The leaf alone is not a self-signed root.
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::RootNotSelfSigned { .. }
    ));
    // x5chain in the protected header is read too.
    let mut header = mint::cose_header(-7);
    header.push((
        Value::from(33),
        Value::Array(vec![
            Value::Bytes(pki.leaf.der()),
            Value::Bytes(pki.root.der()),
        ]),
    ));
    let env = mint::cose_envelope(&header, &mint::payload(), &pki.leaf.key, &[]);
    let env = edit_message(&env, |items| items[1] = Value::Map(Vec::new()));
    assert!(all_pass(&run(&pki, &env)));
}

#[test]
fn minted_cose_tampering_fails_integrity() {
    let pki = p256();
    let env = sign(&pki, &mint::cose_header(-7));
    // Payload changed after signing.
    let tampered = edit_message(&env, |items| {
        let Value::Bytes(p) = &mut items[2] else {
            panic!()
        };
        p[20] ^= 1;
    });
    assert!(matches!(
        integrity_error(run(&pki, &tampered)),
        NotaryError::SignatureInvalid
    ));
    // Protected header re-encoded with another signing time.
    let mut header = mint::cose_header(-7);
    mint::cose_set(
        &mut header,
        Value::from(HEADER_SIGNING_TIME),
        Value::Tag(1, Box::new(Value::from(1_609_459_201_i64))),
    );
    let forged = mint::cbor(&Value::Map(header));
    let tampered = edit_message(&env, |items| items[0] = Value::Bytes(forged));
    assert!(matches!(
        integrity_error(run(&pki, &tampered)),
        NotaryError::SignatureInvalid
    ));
    // Signature changed.
    let tampered = edit_message(&env, |items| {
        let Value::Bytes(s) = &mut items[3] else {
            panic!()
        };
        s[5] ^= 1;
    });
    assert!(matches!(
        integrity_error(run(&pki, &tampered)),
        NotaryError::SignatureInvalid
    ));
    // Unprotected headers are not signed: adding one changes nothing.
    let extra = edit_message(&env, |items| {
        let Value::Map(m) = &mut items[1] else {
            panic!()
        };
        m.push((Value::from("x-unknown"), Value::from(1)));
    });
    assert!(all_pass(&run(&pki, &extra)));
}

fn header_error(edit: impl FnOnce(&mut CoseHeader)) -> NotaryError {
    let pki = p256();
    let mut header = mint::cose_header(-7);
    edit(&mut header);
    integrity_error(run(&pki, &sign(&pki, &header)))
}

#[test]
fn minted_cose_algorithms() {
    // EdDSA, HMAC 256/256, RS256, reserved 0, and a text alg.
    for alg in [-8_i64, 5, -257, 0] {
        match header_error(|h| mint::cose_set(h, Value::from(1), Value::from(alg))) {
            NotaryError::UnsupportedAlgorithm { alg: got } => assert_eq!(got, alg.to_string()),
            other => panic!("{alg}: {other:?}"),
        }
    }
    assert!(matches!(
        header_error(|h| mint::cose_set(h, Value::from(1), Value::from("ES256"))),
        NotaryError::UnsupportedAlgorithm { .. }
    ));
    assert!(matches!(
        header_error(|h| mint::cose_remove(h, &Value::from(1))),
        NotaryError::MissingHeader { .. }
    ));
    // alg must match the key: ES384 / PS256 / ES512 with a P-256 key.
    for (alg, expected) in [
        (-35, Algorithm::Es384),
        (-37, Algorithm::Ps256),
        (-36, Algorithm::Es512),
    ] {
        match header_error(|h| mint::cose_set(h, Value::from(1), Value::from(alg))) {
            NotaryError::AlgorithmKeyMismatch { alg, key } => {
                assert_eq!((alg, key), (expected, KeyKind::P256));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn minted_cose_protected_header_rules() {
    let crit = |names: Vec<Value>| {
        move |h: &mut CoseHeader| mint::cose_set(h, Value::from(2), Value::Array(names))
    };
    match header_error(|h| {
        h.push((Value::from("io.example.magic"), Value::from("x")));
        crit(vec![
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from("io.example.magic"),
        ])(h);
    }) {
        NotaryError::UnknownCriticalHeader { name } => assert_eq!(name, "io.example.magic"),
        other => panic!("{other:?}"),
    }
    // An integer label outside 0..=8 that is present but unknown.
    assert!(matches!(
        header_error(|h| {
            h.push((Value::from(99), Value::from("x")));
            crit(vec![Value::from(HEADER_SIGNING_SCHEME), Value::from(99)])(h);
        }),
        NotaryError::UnknownCriticalHeader { .. }
    ));
    // Labels 0..=8 may not be critical; absent headers may not be listed.
    assert!(matches!(
        header_error(crit(vec![
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from(1)
        ])),
        NotaryError::InvalidCriticalHeader { .. }
    ));
    assert!(matches!(
        header_error(crit(vec![
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from(HEADER_EXPIRY)
        ])),
        NotaryError::InvalidCriticalHeader { .. }
    ));
    assert!(matches!(
        header_error(crit(Vec::new())),
        NotaryError::MalformedCose(CoseError::Crit)
    ));
    assert!(matches!(
        header_error(|h| mint::cose_remove(h, &Value::from(2))),
        NotaryError::MissingHeader { .. }
    ));
    match header_error(|h| {
        h.push((
            Value::from(HEADER_EXPIRY),
            Value::Tag(1, Box::new(Value::from(4_102_444_800_i64))),
        ))
    }) {
        NotaryError::MissingCriticalHeader { name } => assert_eq!(name, HEADER_EXPIRY),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        header_error(|h| mint::cose_set(h, Value::from(3), Value::from("application/json"))),
        NotaryError::UnsupportedContentType { .. }
    ));
    assert!(matches!(
        header_error(|h| mint::cose_set(h, Value::from(3), Value::from(50))),
        NotaryError::UnsupportedContentType { .. }
    ));
    assert!(matches!(
        header_error(|h| mint::cose_remove(h, &Value::from(3))),
        NotaryError::MissingHeader { .. }
    ));
    assert!(matches!(
        header_error(|h| mint::cose_set(
            h,
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from("notary.default.x509")
        )),
        NotaryError::UnsupportedSigningScheme { .. }
    ));
    assert!(matches!(
        header_error(|h| mint::cose_remove(h, &Value::from(HEADER_SIGNING_TIME))),
        NotaryError::MissingHeader {
            name: HEADER_SIGNING_TIME
        }
    ));
    // Times are CBOR tag 1, not RFC 3339 text.
    assert!(matches!(
        header_error(|h| mint::cose_set(
            h,
            Value::from(HEADER_SIGNING_TIME),
            Value::from("2021-01-01T00:00:00Z")
        )),
        NotaryError::MalformedCose(CoseError::Time { .. })
    ));
    assert!(matches!(
        header_error(|h| mint::cose_set(
            h,
            Value::from(HEADER_SIGNING_TIME),
            Value::Tag(1, Box::new(Value::from(u64::MAX)))
        )),
        NotaryError::MalformedCose(CoseError::Time { .. })
    ));
    assert!(matches!(
        header_error(|h| h.push((
            Value::from(HEADER_VERIFICATION_PLUGIN),
            Value::from("com.example.plugin")
        ))),
        NotaryError::UnsupportedCriticalHeader { .. }
    ));
    // A repeated label is refused, whatever its values.
    assert!(matches!(
        header_error(|h| h.push((Value::from(1), Value::from(-7)))),
        NotaryError::MalformedCose(CoseError::DuplicateLabel { .. })
    ));
    // Fractional seconds are accepted (SHOULD NOT, not MUST NOT).
    let pki = p256();
    let mut header = mint::cose_header(-7);
    mint::cose_set(
        &mut header,
        Value::from(HEADER_SIGNING_TIME),
        Value::Tag(1, Box::new(Value::Float(1_609_459_200.5))),
    );
    let report = run(&pki, &sign(&pki, &header));
    assert!(all_pass(&report));
    assert_eq!(
        report.signer.unwrap().signing_time,
        Some(at("2021-01-01T00:00:00Z"))
    );
}

#[test]
fn minted_cose_structure_rules() {
    let pki = p256();
    let env = sign(&pki, &mint::cose_header(-7));
    let structure = |edit: &dyn Fn(&mut Vec<Value>)| {
        integrity_error(run(&pki, &edit_message(&env, |items| edit(items))))
    };
    assert!(matches!(
        structure(&|items| items[2] = Value::Null),
        NotaryError::MalformedCose(CoseError::DetachedPayload)
    ));
    assert!(matches!(
        structure(&|items| {
            items.pop();
        }),
        NotaryError::MalformedCose(CoseError::Structure)
    ));
    assert!(matches!(
        structure(&|items| items[1] = Value::Map(Vec::new())),
        NotaryError::MalformedCose(CoseError::MissingX5chain)
    ));
    assert!(matches!(
        structure(&|items| items[1] = Value::Map(vec![(Value::from(33), Value::from(1))])),
        NotaryError::MalformedCose(CoseError::X5chainType)
    ));
    assert!(matches!(
        structure(
            &|items| items[1] = Value::Map(vec![(Value::from(33), Value::Bytes(b"junk".to_vec()))])
        ),
        NotaryError::Certificate { index: 0, .. }
    ));
    assert!(matches!(
        structure(&|items| {
            let Value::Map(m) = &mut items[1] else {
                panic!()
            };
            m.push((
                Value::from(cose::HEADER_TIMESTAMP_SIGNATURE),
                Value::from("text"),
            ));
        }),
        NotaryError::MalformedCose(CoseError::TimestampSignature)
    ));
    assert!(matches!(
        structure(&|items| items[0] = Value::Bytes(vec![0x80])),
        NotaryError::MalformedCose(CoseError::ProtectedHeader)
    ));
    // A parameter in both buckets.
    assert!(matches!(
        structure(&|items| {
            let Value::Map(m) = &mut items[1] else {
                panic!()
            };
            m.push((Value::from(1), Value::from(-7)));
        }),
        NotaryError::MalformedCose(CoseError::DuplicateLabel { .. })
    ));
    // Untagged, wrongly tagged, trailing bytes, not CBOR.
    let untagged = {
        let Value::Tag(_, inner) = ciborium::de::from_reader::<Value, _>(env.as_slice()).unwrap()
        else {
            panic!()
        };
        mint::cbor(&inner)
    };
    assert!(matches!(
        integrity_error(run(&pki, &untagged)),
        NotaryError::MalformedCose(CoseError::NotTagged)
    ));
    let mut trailing = env.clone();
    trailing.push(0);
    assert!(matches!(
        integrity_error(run(&pki, &trailing)),
        NotaryError::MalformedCose(CoseError::Cbor)
    ));
    assert!(matches!(
        integrity_error(run(&pki, b"{\"payload\":1}")),
        NotaryError::MalformedCose(_)
    ));
    let mut too_many = env.clone();
    too_many.truncate(0);
    let chain: Vec<Vec<u8>> =
        std::iter::repeat_n(pki.leaf.der(), MAX_CHAIN_CERTIFICATES + 1).collect();
    too_many.extend(mint::cose_envelope(
        &mint::cose_header(-7),
        &mint::payload(),
        &pki.leaf.key,
        &chain,
    ));
    assert!(matches!(
        integrity_error(run(&pki, &too_many)),
        NotaryError::TooManyCertificates { count: 11, .. }
    ));
}

#[test]
fn minted_cose_certificate_and_time_checks() {
    // Untrusted root.
    let pki = p256();
    let env = sign(&pki, &mint::cose_header(-7));
    let other =
        mint::self_signed(mint::ca_params("Test Root", Some(1)), Key::p256().unwrap()).unwrap();
    let anchor = [other.certificate()];
    let anchors = Anchors {
        ca: anchor.iter().collect(),
        ..Anchors::default()
    };
    let report = verify(
        MEDIA_TYPE_COSE,
        &env,
        &anchors,
        Options::default(),
        &revocation::NoRevocationData,
        now(),
    );
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::UntrustedChain
    ));
    // serverAuth-only EKU.
    let pki = pki_with(
        |p| p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        Key::p256().unwrap(),
    );
    let report = run(&pki, &sign(&pki, &mint::cose_header(-7)));
    assert!(matches!(
        err(&report, Validation::Authenticity),
        NotaryError::ForbiddenExtendedKeyUsage { .. }
    ));
    // Expired leaf, no timestamp: fails at now, passes before expiry.
    let pki = pki_with(
        |p| p.not_after = rcgen::date_time_ymd(2022, 1, 1),
        Key::p256().unwrap(),
    );
    let env = sign(&pki, &mint::cose_header(-7));
    assert!(matches!(
        err(&run(&pki, &env), Validation::AuthenticTimestamp),
        NotaryError::CertificateExpired { .. }
    ));
    assert!(all_pass(&run_at(&pki, &env, at("2021-06-01T00:00:00Z"))));
    // notary.x509.signingAuthority is checked at its authentic signing time.
    let mut header = mint::cose_header(-7);
    mint::cose_remove(&mut header, &Value::from(HEADER_SIGNING_TIME));
    mint::cose_set(
        &mut header,
        Value::from(HEADER_SIGNING_SCHEME),
        Value::from("notary.x509.signingAuthority"),
    );
    mint::cose_set(
        &mut header,
        Value::from(HEADER_AUTHENTIC_SIGNING_TIME),
        Value::Tag(1, Box::new(Value::from(1_622_505_600_i64))), // 2021-06-01
    );
    mint::cose_set(
        &mut header,
        Value::from(2),
        Value::Array(vec![
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from(HEADER_AUTHENTIC_SIGNING_TIME),
        ]),
    );
    let env = sign(&pki, &header);
    let root = [pki.root.certificate()];
    let anchors = Anchors {
        signing_authority: root.iter().collect(),
        ..Anchors::default()
    };
    let report = verify(
        MEDIA_TYPE_COSE,
        &env,
        &anchors,
        Options::default(),
        &revocation::NoRevocationData,
        now(),
    );
    assert!(all_pass(&report), "{report:#?}");
    // Expiry.
    let pki = p256();
    let mut header = mint::cose_header(-7);
    header.push((
        Value::from(HEADER_EXPIRY),
        Value::Tag(1, Box::new(Value::from(1_906_502_400_i64))), // 2030-06-01
    ));
    mint::cose_set(
        &mut header,
        Value::from(2),
        Value::Array(vec![
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from(HEADER_EXPIRY),
        ]),
    );
    let env = sign(&pki, &header);
    assert!(matches!(
        err(&run(&pki, &env), Validation::Expiry),
        NotaryError::SignatureExpired { .. }
    ));
    assert!(all_pass(&run_at(
        &pki,
        &env,
        now() - std::time::Duration::from_secs(1)
    )));
}

// ---------------------------------------------------------------------------
// Expired leaf with and without a valid timestamp (GlobalSign TSA vectors:
// the signer CN=testTSA expired at 2024-06-18T07:30:31Z, minutes after a
// GlobalSign timestamp).

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors");

fn vector(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(VECTORS).join(rel)).unwrap()
}

fn globalsign_tsa() -> Vec<Certificate> {
    parse_certificate_file(&vector(
        "notation-go/truststore/x509/tsa/test-timestamp/globalsignRoot.cer",
    ))
    .unwrap()
}

/// The envelope without its countersignature (unprotected: still intact).
fn without_timestamp(media_type: &str, env: &[u8]) -> Vec<u8> {
    if media_type == MEDIA_TYPE_COSE {
        edit_message(env, |items| {
            let Value::Map(m) = &mut items[1] else {
                panic!()
            };
            m.retain(|(l, _)| *l != Value::from(cose::HEADER_TIMESTAMP_SIGNATURE));
        })
    } else {
        let mut v: serde_json::Value = serde_json::from_slice(env).unwrap();
        v["header"]
            .as_object_mut()
            .unwrap()
            .remove(jws::HEADER_TIMESTAMP_SIGNATURE);
        serde_json::to_vec(&v).unwrap()
    }
}

/// Another (well-formed, trusted) token over other bytes.
fn with_foreign_timestamp(media_type: &str, env: &[u8]) -> Vec<u8> {
    let token = vector("notation-go/timestamp/countersignature/TimeStampToken.p7s");
    if media_type == MEDIA_TYPE_COSE {
        edit_message(env, |items| {
            let Value::Map(m) = &mut items[1] else {
                panic!()
            };
            for (l, v) in m.iter_mut() {
                if *l == Value::from(cose::HEADER_TIMESTAMP_SIGNATURE) {
                    *v = Value::Bytes(token.clone());
                }
            }
        })
    } else {
        let mut v: serde_json::Value = serde_json::from_slice(env).unwrap();
        v["header"][jws::HEADER_TIMESTAMP_SIGNATURE] =
            serde_json::Value::String(STANDARD.encode(&token));
        serde_json::to_vec(&v).unwrap()
    }
}

#[test]
fn expired_leaf_with_and_without_a_valid_timestamp() {
    let tsa = globalsign_tsa();
    let now = at("2026-01-01T00:00:00Z");
    for (file, media_type) in [
        ("jwsExpiredWithTimestamp.sig", MEDIA_TYPE_JWS),
        ("coseExpiredWithTimestamp.sig", MEDIA_TYPE_COSE),
    ] {
        let env = vector(&format!("notation-go/timestamp/sigEnv/{file}"));
        let chain = if media_type == MEDIA_TYPE_COSE {
            cose::parse(&env).unwrap().chain
        } else {
            jws::parse(&env).unwrap().chain
        };
        let anchors = Anchors {
            ca: chain.iter().collect(),
            tsa: tsa.iter().collect(),
            ..Anchors::default()
        };
        for verify_timestamp in [VerifyTimestamp::Always, VerifyTimestamp::AfterCertExpiry] {
            let options = Options { verify_timestamp };
            // With its valid timestamp: every check passes.
            let report = verify(
                media_type,
                &env,
                &anchors,
                options,
                &revocation::NoRevocationData,
                now,
            );
            assert!(all_pass(&report), "{file}: {report:#?}");
            assert!(matches!(
                report.countersignature,
                Countersignature::Verified(_)
            ));
            // Without it: the expired leaf fails AuthenticTimestamp.
            let bare = without_timestamp(media_type, &env);
            let report = verify(
                media_type,
                &bare,
                &anchors,
                options,
                &revocation::NoRevocationData,
                now,
            );
            assert!(matches!(report.check(Validation::Integrity), Some(Ok(()))));
            assert!(matches!(
                err(&report, Validation::AuthenticTimestamp),
                NotaryError::Timestamp(TimestampError::Missing)
            ));
            // With a genuine timestamp of something else: refused.
            let foreign = with_foreign_timestamp(media_type, &env);
            let report = verify(
                media_type,
                &foreign,
                &anchors,
                options,
                &revocation::NoRevocationData,
                now,
            );
            assert!(matches!(
                err(&report, Validation::AuthenticTimestamp),
                NotaryError::Timestamp(TimestampError::ImprintMismatch)
            ));
            assert_eq!(report.countersignature, Countersignature::Invalid);
        }
        // No `tsa` store: the timestamp is not used, validity is at now.
        let anchors = Anchors {
            ca: chain.iter().collect(),
            ..Anchors::default()
        };
        let report = verify(
            media_type,
            &env,
            &anchors,
            Options::default(),
            &revocation::NoRevocationData,
            now,
        );
        assert!(matches!(
            err(&report, Validation::AuthenticTimestamp),
            NotaryError::CertificateExpired { .. }
        ));
        assert_eq!(report.countersignature, Countersignature::NotVerified);
    }
}

#[test]
fn declared_lengths_are_not_trusted() {
    // Tag 18, then an array / byte string / map claiming far more items or
    // bytes than the input holds: refused without allocating for them.
    for bytes in [
        &[0xd2, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        &[
            0xd2, 0x84, 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
        ],
        &[
            0xd2, 0x84, 0x40, 0xbb, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        &[0xd2, 0x84, 0x5f, 0x41, 0x00],
    ] {
        let report = verify(
            MEDIA_TYPE_COSE,
            bytes,
            &Anchors::default(),
            Options::default(),
            &revocation::NoRevocationData,
            now(),
        );
        assert!(matches!(
            integrity_error(report),
            NotaryError::MalformedCose(CoseError::Cbor)
        ));
    }
    // Deep nesting stops at the recursion limit.
    let mut deep = vec![0xd2];
    deep.extend(std::iter::repeat_n(0x81, 10_000));
    deep.push(0x00);
    let report = verify(
        MEDIA_TYPE_COSE,
        &deep,
        &Anchors::default(),
        Options::default(),
        &revocation::NoRevocationData,
        now(),
    );
    assert!(matches!(
        integrity_error(report),
        NotaryError::MalformedCose(CoseError::Cbor)
    ));
}

// ---------------------------------------------------------------------------
// Never panics

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    fn valid() -> Vec<Vec<u8>> {
        vec![
            vector("notation-go/internal/cose_signature.sig"),
            vector("notation-go/timestamp/sigEnv/coseWithTimestamp.sig"),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<Vec<u8>>().prop_map(Value::Bytes),
            "\\PC{0,12}".prop_map(Value::Text),
            any::<f64>().prop_map(Value::Float),
            Just(Value::Null),
            Just(Value::Bool(true)),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(Value::Map),
                (0u64..40, inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = verify(MEDIA_TYPE_COSE, &bytes, &Anchors::default(), Options::default(), &revocation::NoRevocationData, now());
        }

        #[test]
        fn on_arbitrary_cbor(value in arb_value()) {
            let bytes = mint::cbor(&Value::Tag(18, Box::new(value)));
            let _ = verify(MEDIA_TYPE_COSE, &bytes, &Anchors::default(), Options::default(), &revocation::NoRevocationData, now());
        }

        #[test]
        fn on_arbitrary_protected_headers(entries in prop::collection::vec((arb_value(), arb_value()), 0..8)) {
            let pki = p256();
            let mut header = mint::cose_header(-7);
            header.extend(entries);
            let _ = run(&pki, &sign(&pki, &header));
        }

        #[test]
        fn on_mutated_valid_envelopes(
            which in 0usize..2,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut env = valid().swap_remove(which);
            for (index, byte) in edits {
                let i = index.index(env.len());
                env[i] = byte;
            }
            let tsa = globalsign_tsa();
            let anchors = Anchors { tsa: tsa.iter().collect(), ..Anchors::default() };
            let _ = verify(MEDIA_TYPE_COSE, &env, &anchors, Options::default(), &revocation::NoRevocationData, now());
        }

        #[test]
        fn timestamp_tokens_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut token = vector("notation-go/timestamp/countersignature/TimeStampToken.p7s");
            for (index, byte) in edits {
                let i = index.index(token.len());
                token[i] = byte;
            }
            token.truncate(cut.index(token.len() + 1));
            let tsa = globalsign_tsa();
            let anchors: Vec<&Certificate> = tsa.iter().collect();
            let _ = timestamp::verify(&token, b"sig", &anchors);
            if let Ok(t) = timestamp::Token::parse(&token) {
                let _ = t.authenticate(&anchors);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Minted TSA: RFC 3161 tokens made here, each wrong in one place.

mod minted_tsa {
    use super::*;
    use pullgate_testkit::TokenSpec;

    struct Setup {
        signing: Pki,
        tsa_root: mint::Issued,
        tsa: mint::Issued,
        /// COSE envelope by a leaf that expired 2022-01-01, no timestamp.
        env: Vec<u8>,
        signature: Vec<u8>,
    }

    fn setup_with(tsa_edit: impl FnOnce(&mut rcgen::CertificateParams)) -> Setup {
        let signing = pki_with(
            |p| p.not_after = rcgen::date_time_ymd(2022, 1, 1),
            Key::p256().unwrap(),
        );
        let env = sign(&signing, &mint::cose_header(-7));
        let tsa_root =
            mint::self_signed(mint::ca_params("TSA Root", None), Key::p256().unwrap()).unwrap();
        let mut params = mint::tsa_params("TSA");
        tsa_edit(&mut params);
        let tsa = mint::issue(params, Key::p256().unwrap(), &tsa_root).unwrap();
        let signature = cose::parse(&env).unwrap().signature;
        Setup {
            signing,
            tsa_root,
            tsa,
            env,
            signature,
        }
    }

    fn setup() -> Setup {
        setup_with(|_| {})
    }

    fn with_token(env: &[u8], token: Vec<u8>) -> Vec<u8> {
        edit_message(env, |items| {
            let Value::Map(m) = &mut items[1] else {
                panic!()
            };
            m.push((
                Value::from(cose::HEADER_TIMESTAMP_SIGNATURE),
                Value::Bytes(token),
            ));
        })
    }

    fn check(s: &Setup, env: &[u8], options: Options) -> Report {
        let root = [s.signing.root.certificate()];
        let tsa_root = [s.tsa_root.certificate()];
        let anchors = Anchors {
            ca: root.iter().collect(),
            tsa: tsa_root.iter().collect(),
            ..Anchors::default()
        };
        verify(
            MEDIA_TYPE_COSE,
            env,
            &anchors,
            options,
            &revocation::NoRevocationData,
            now(),
        )
    }

    fn timestamp_error(s: &Setup, spec: &TokenSpec<'_>) -> TimestampError {
        let env = with_token(&s.env, mint::timestamp_token(spec).unwrap());
        let mut report = check(s, &env, Options::default());
        assert!(matches!(report.check(Validation::Integrity), Some(Ok(()))));
        assert_eq!(report.countersignature, Countersignature::Invalid);
        let i = report
            .checks
            .iter()
            .position(|c| c.validation == Validation::AuthenticTimestamp)
            .unwrap();
        match report.checks.remove(i).result {
            Err(NotaryError::Timestamp(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_valid_minted_timestamp_rescues_an_expired_leaf() {
        let s = setup();
        let spec = TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z");
        let env = with_token(&s.env, mint::timestamp_token(&spec).unwrap());
        let report = check(&s, &env, Options::default());
        assert!(all_pass(&report), "{report:#?}");
        match &report.countersignature {
            Countersignature::Verified(ts) => {
                assert_eq!(ts.gen_time, at("2021-06-01T00:00:00Z"));
                assert_eq!(ts.accuracy, std::time::Duration::from_secs(1));
                assert_eq!(ts.tsa, "CN=TSA,O=Notary,L=Seattle,ST=WA,C=US");
            }
            other => panic!("{other:?}"),
        }
        // Without it, the same envelope fails on the expired leaf.
        assert!(matches!(
            err(
                &check(&s, &s.env, Options::default()),
                Validation::AuthenticTimestamp
            ),
            NotaryError::Timestamp(TimestampError::Missing)
        ));
        // The same token in a JWS envelope: imprint of another signature.
        let pki = &s.signing;
        let jws_env = mint::envelope(
            &mint::header("ES256"),
            &mint::payload(),
            &pki.leaf.key,
            &[pki.leaf.der(), pki.root.der()],
        );
        let mut v: serde_json::Value = serde_json::from_slice(&jws_env).unwrap();
        v["header"][jws::HEADER_TIMESTAMP_SIGNATURE] =
            serde_json::Value::String(STANDARD.encode(mint::timestamp_token(&spec).unwrap()));
        let root = [pki.root.certificate()];
        let tsa_root = [s.tsa_root.certificate()];
        let anchors = Anchors {
            ca: root.iter().collect(),
            tsa: tsa_root.iter().collect(),
            ..Anchors::default()
        };
        let report = verify(
            MEDIA_TYPE_JWS,
            &serde_json::to_vec(&v).unwrap(),
            &anchors,
            Options::default(),
            &revocation::NoRevocationData,
            now(),
        );
        assert!(matches!(
            err(&report, Validation::AuthenticTimestamp),
            NotaryError::Timestamp(TimestampError::ImprintMismatch)
        ));
        // A JWS token over the JWS signature works the same way.
        let jws_sig = jws::parse(&jws_env).unwrap().signature;
        let spec = TokenSpec::new(&s.tsa, &jws_sig, "20210601000000Z");
        v["header"][jws::HEADER_TIMESTAMP_SIGNATURE] =
            serde_json::Value::String(STANDARD.encode(mint::timestamp_token(&spec).unwrap()));
        let report = verify(
            MEDIA_TYPE_JWS,
            &serde_json::to_vec(&v).unwrap(),
            &anchors,
            Options::default(),
            &revocation::NoRevocationData,
            now(),
        );
        assert!(all_pass(&report), "{report:#?}");
    }

    #[test]
    fn minted_tokens_wrong_in_one_place() {
        let s = setup();
        let base = || TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z");
        assert!(matches!(
            timestamp_error(
                &s,
                &TokenSpec {
                    content_type: "1.2.840.113549.1.7.1",
                    ..base()
                }
            ),
            TimestampError::ContentType { .. }
        ));
        assert!(matches!(
            timestamp_error(
                &s,
                &TokenSpec {
                    corrupt_message_digest: true,
                    ..base()
                }
            ),
            TimestampError::MessageDigestMismatch
        ));
        assert!(matches!(
            timestamp_error(
                &s,
                &TokenSpec {
                    corrupt_cert_hash: true,
                    ..base()
                }
            ),
            TimestampError::SigningCertificateMismatch
        ));
        assert!(matches!(
            timestamp_error(
                &s,
                &TokenSpec {
                    corrupt_signature: true,
                    ..base()
                }
            ),
            TimestampError::SignatureInvalid
        ));
        assert!(matches!(
            timestamp_error(
                &s,
                &TokenSpec {
                    certificates: Vec::new(),
                    ..base()
                }
            ),
            TimestampError::SigningCertificateNotFound
        ));
        assert!(matches!(
            timestamp_error(
                &s,
                &TokenSpec {
                    stamped: b"other bytes",
                    ..base()
                }
            ),
            TimestampError::ImprintMismatch
        ));
        // After the signing leaf expired (2022-01-01).
        match timestamp_error(
            &s,
            &TokenSpec {
                gen_time: "20230101000000Z",
                ..base()
            },
        ) {
            TimestampError::AfterCertificateValidity {
                subject, latest, ..
            } => {
                assert!(subject.starts_with("CN=cose signer"));
                assert_eq!(latest, at("2023-01-01T00:00:01Z"));
            }
            other => panic!("{other:?}"),
        }
        // Before the signing leaf was valid (here: from 2022-06-01).
        let early = Setup {
            signing: pki_with(
                |p| p.not_before = rcgen::date_time_ymd(2022, 6, 1),
                Key::p256().unwrap(),
            ),
            ..setup()
        };
        let early = Setup {
            env: sign(&early.signing, &mint::cose_header(-7)),
            ..early
        };
        let signature = cose::parse(&early.env).unwrap().signature;
        match timestamp_error(
            &early,
            &TokenSpec::new(&early.tsa, &signature, "20210601000000Z"),
        ) {
            TimestampError::BeforeCertificateValidity {
                earliest,
                not_before,
                ..
            } => {
                assert_eq!(earliest, at("2021-05-31T23:59:59Z"));
                assert_eq!(not_before, at("2022-06-01T00:00:00Z"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accuracy_bounds_the_timestamp() {
        let s = setup();
        // genTime + accuracy == notAfter is still inside (closed interval).
        let spec = TokenSpec {
            gen_time: "20211231235959Z",
            accuracy_seconds: Some(1),
            ..TokenSpec::new(&s.tsa, &s.signature, "")
        };
        let env = with_token(&s.env, mint::timestamp_token(&spec).unwrap());
        assert!(all_pass(&check(&s, &env, Options::default())));
        // One more second of accuracy and it may be after.
        let spec = TokenSpec {
            accuracy_seconds: Some(2),
            ..spec
        };
        assert!(matches!(
            timestamp_error(&s, &spec),
            TimestampError::AfterCertificateValidity { .. }
        ));
    }

    #[test]
    fn the_tsa_certificate_and_chain_are_checked() {
        // A TSA certificate without the timeStamping EKU.
        let s = setup_with(|p| p.custom_extensions = Vec::new());
        let spec = TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z");
        match timestamp_error(&s, &spec) {
            TimestampError::TsaChain(e) => {
                assert!(matches!(*e, NotaryError::NotTimestamping { .. }), "{e:?}")
            }
            other => panic!("{other:?}"),
        }
        // A code-signing certificate as TSA.
        let s = setup_with(|p| {
            p.custom_extensions = Vec::new();
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        });
        let spec = TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z");
        match timestamp_error(&s, &spec) {
            TimestampError::TsaChain(e) => {
                assert!(
                    matches!(*e, NotaryError::ForbiddenExtendedKeyUsage { .. }),
                    "{e:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A TSA certificate not yet valid at genTime.
        let s = setup_with(|p| p.not_before = rcgen::date_time_ymd(2025, 1, 1));
        let spec = TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z");
        match timestamp_error(&s, &spec) {
            TimestampError::TsaChain(e) => {
                assert!(
                    matches!(*e, NotaryError::CertificateNotYetValid { .. }),
                    "{e:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Another TSA root.
        let s = setup();
        let spec = TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z");
        let env = with_token(&s.env, mint::timestamp_token(&spec).unwrap());
        let root = [s.signing.root.certificate()];
        let other =
            mint::self_signed(mint::ca_params("TSA Root", None), Key::p256().unwrap()).unwrap();
        let other = [other.certificate()];
        let anchors = Anchors {
            ca: root.iter().collect(),
            tsa: other.iter().collect(),
            ..Anchors::default()
        };
        let report = verify(
            MEDIA_TYPE_COSE,
            &env,
            &anchors,
            Options::default(),
            &revocation::NoRevocationData,
            now(),
        );
        assert!(matches!(
            err(&report, Validation::AuthenticTimestamp),
            NotaryError::Timestamp(TimestampError::UntrustedTsa { .. })
        ));
    }

    #[test]
    fn tsa_intermediate_from_the_token() {
        let signing = pki_with(
            |p| p.not_after = rcgen::date_time_ymd(2022, 1, 1),
            Key::p256().unwrap(),
        );
        let env = sign(&signing, &mint::cose_header(-7));
        let signature = cose::parse(&env).unwrap().signature;
        let tsa_root =
            mint::self_signed(mint::ca_params("TSA Root", Some(1)), Key::p256().unwrap()).unwrap();
        let tsa_ca = mint::issue(
            mint::ca_params("TSA CA", Some(0)),
            Key::p256().unwrap(),
            &tsa_root,
        )
        .unwrap();
        let tsa = mint::issue(mint::tsa_params("TSA"), Key::p256().unwrap(), &tsa_ca).unwrap();
        let s = Setup {
            signing,
            tsa_root,
            tsa,
            env,
            signature,
        };
        // The token carries the leaf and the intermediate, not the root.
        let spec = TokenSpec {
            certificates: vec![tsa_ca.der(), s.tsa.der()],
            ..TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z")
        };
        let env = with_token(&s.env, mint::timestamp_token(&spec).unwrap());
        let report = check(&s, &env, Options::default());
        assert!(all_pass(&report), "{report:#?}");
        // Without the intermediate the TSA does not chain to the root.
        let spec = TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z");
        assert!(matches!(
            timestamp_error(&s, &spec),
            TimestampError::UntrustedTsa { .. }
        ));
    }

    #[test]
    fn after_cert_expiry_skips_the_timestamp_while_the_chain_is_valid() {
        let s = setup();
        let broken = TokenSpec {
            corrupt_signature: true,
            ..TokenSpec::new(&s.tsa, &s.signature, "20210601000000Z")
        };
        let env = with_token(&s.env, mint::timestamp_token(&broken).unwrap());
        let after = Options {
            verify_timestamp: VerifyTimestamp::AfterCertExpiry,
        };
        // Before the leaf expires the (broken) token is not looked at.
        let root = [s.signing.root.certificate()];
        let tsa_root = [s.tsa_root.certificate()];
        let anchors = Anchors {
            ca: root.iter().collect(),
            tsa: tsa_root.iter().collect(),
            ..Anchors::default()
        };
        let report = verify(
            MEDIA_TYPE_COSE,
            &env,
            &anchors,
            after,
            &revocation::NoRevocationData,
            at("2021-07-01T00:00:00Z"),
        );
        assert!(all_pass(&report), "{report:#?}");
        assert_eq!(report.countersignature, Countersignature::NotVerified);
        // Once it has expired, the token is required and verified.
        assert!(matches!(
            err(&check(&s, &env, after), Validation::AuthenticTimestamp),
            NotaryError::Timestamp(TimestampError::SignatureInvalid)
        ));
        // With `always`, it is verified even while the chain is valid.
        let report = verify(
            MEDIA_TYPE_COSE,
            &env,
            &anchors,
            Options::default(),
            &revocation::NoRevocationData,
            at("2021-07-01T00:00:00Z"),
        );
        assert!(matches!(
            err(&report, Validation::AuthenticTimestamp),
            NotaryError::Timestamp(TimestampError::SignatureInvalid)
        ));
    }
}
