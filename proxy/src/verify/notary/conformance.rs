//! Conformance table: every Notary Project vector under `tests/vectors/`
//! (notation-go mock envelopes, timestamp envelopes and countersignature
//! splices, notation-e2e signatures, notation-core-go encoding vectors),
//! JWS and COSE, each with the verdict and the failure reason its SOURCE.md
//! gives, at a fixed verification time. Reasons are compared as error
//! variants, never as text.
//!
//! Trust stores are the vector stores named by SOURCE.md; where SOURCE.md
//! says a signer is not in any store but "trusting it should give a clean
//! pass", the envelope's own (self-signed) chain is the anchor.

use std::path::Path;
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

use super::cose::{self, CoseError};
use super::jws::{self, EnvelopeError};
use super::timestamp::{self, TimestampError};
use super::*;
use crate::verify::rfc3339;
use crate::verify::x509::parse_certificate_file;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors");

fn vector(rel: &str) -> Vec<u8> {
    let path = Path::new(VECTORS).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn at(s: &str) -> SystemTime {
    rfc3339::parse(s).unwrap()
}

/// Every certificate of a notation-go trust store directory
/// (`ca/valid-trust-store`, `tsa/test-timestamp`, ...), or of a file.
fn store(rel: &str) -> Vec<Certificate> {
    let path = Path::new(VECTORS).join(rel);
    let mut paths: Vec<_> = if path.is_dir() {
        std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    } else {
        vec![path]
    };
    paths.sort();
    paths
        .iter()
        .flat_map(|p| parse_certificate_file(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

const NOTATION_GO_STORES: &str = "notation-go/truststore/x509";

fn go_store(rel: &str) -> Vec<Certificate> {
    store(&format!("{NOTATION_GO_STORES}/{rel}"))
}

/// The certificates an envelope carries.
fn own_chain(media_type: &str, env: &[u8]) -> Vec<Certificate> {
    if media_type == MEDIA_TYPE_COSE {
        cose::parse(env).unwrap().chain
    } else {
        jws::parse(env).unwrap().chain
    }
}

/// Which certificates the policy's trust stores hold.
#[derive(Clone, Copy)]
enum Ca {
    /// Stores of notation-go's `truststore/x509/` (relative paths).
    Stores(&'static str, &'static str),
    /// The envelope's own chain in the `ca` store (self-signed signers).
    Own,
    None,
}

struct Case {
    file: &'static str,
    media_type: &'static str,
    /// A countersignature spliced into the JWS envelope (SOURCE.md
    /// "spliced into withoutTimestamp.sig").
    splice: Option<&'static str>,
    ca: Ca,
    /// `tsa` store, relative to `tests/vectors/`.
    tsa: Option<&'static str>,
    verify_timestamp: VerifyTimestamp,
    now: &'static str,
    expect: Expect,
}

enum Expect {
    /// Every validation passes.
    Pass,
    /// This validation fails with this reason (the others may pass).
    Fail(Validation, fn(&NotaryError) -> bool),
}

const JWS: &str = MEDIA_TYPE_JWS;
const COSE: &str = MEDIA_TYPE_COSE;
const ALWAYS: VerifyTimestamp = VerifyTimestamp::Always;
const VALID_STORES: Ca = Ca::Stores("ca/valid-trust-store", "signingAuthority/valid-trust-store");
const WRONG_STORES: Ca = Ca::Stores(
    "ca/valid-trust-store-2",
    "signingAuthority/valid-trust-store-2",
);
const GLOBALSIGN_TSA: Option<&str> = Some("notation-go/truststore/x509/tsa/test-timestamp");
const MOCK_NOW: &str = "2024-01-01T00:00:00Z";
const TIMESTAMP_NOW: &str = "2025-01-01T00:00:00Z";

fn case(file: &'static str, media_type: &'static str, expect: Expect) -> Case {
    Case {
        file,
        media_type,
        splice: None,
        ca: VALID_STORES,
        tsa: None,
        verify_timestamp: ALWAYS,
        now: MOCK_NOW,
        expect,
    }
}

fn timestamp_case(file: &'static str, media_type: &'static str, ca: Ca, expect: Expect) -> Case {
    Case {
        ca,
        tsa: GLOBALSIGN_TSA,
        now: TIMESTAMP_NOW,
        ..case(file, media_type, expect)
    }
}

fn table() -> Vec<Case> {
    use Validation::*;
    vec![
        // --- notation-go mock envelopes (JWS, PS384, strict/permissive/audit)
        case(
            "notation-go/mock-envelopes/ca_valid_sig_env.json",
            JWS,
            Expect::Pass,
        ),
        Case {
            ca: WRONG_STORES,
            ..case(
                "notation-go/mock-envelopes/ca_valid_sig_env.json",
                JWS,
                Expect::Fail(Authenticity, |e| matches!(e, NotaryError::UntrustedChain)),
            )
        },
        case(
            "notation-go/mock-envelopes/ca_expired_sig_env.json",
            JWS,
            Expect::Fail(Expiry, |e| {
                matches!(e, NotaryError::SignatureExpired { .. })
            }),
        ),
        case(
            "notation-go/mock-envelopes/ca_invalid_sig_env.json",
            JWS,
            Expect::Fail(Integrity, |e| {
                matches!(e, NotaryError::Malformed(EnvelopeError::Base64 { .. }))
            }),
        ),
        case(
            "notation-go/mock-envelopes/sa_valid_sig_env.json",
            JWS,
            Expect::Pass,
        ),
        Case {
            ca: WRONG_STORES,
            ..case(
                "notation-go/mock-envelopes/sa_valid_sig_env.json",
                JWS,
                Expect::Fail(Authenticity, |e| matches!(e, NotaryError::UntrustedChain)),
            )
        },
        case(
            "notation-go/mock-envelopes/sa_expired_sig_env.json",
            JWS,
            Expect::Fail(Expiry, |e| {
                matches!(e, NotaryError::SignatureExpired { .. })
            }),
        ),
        case(
            "notation-go/mock-envelopes/sa_invalid_sig_env.json",
            JWS,
            Expect::Fail(Integrity, |e| {
                matches!(e, NotaryError::Malformed(EnvelopeError::Base64 { .. }))
            }),
        ),
        // A verifier without plugin support must fail (only AWS Signer's plugin is implemented).
        case(
            "notation-go/mock-envelopes/ca_plugin_sig_env.json",
            JWS,
            Expect::Fail(Integrity, |e| {
                matches!(
                    e,
                    NotaryError::AwsSigner(aws_signer::AwsSignerError::UnsupportedPlugin { .. })
                )
            }),
        ),
        case(
            "notation-go/mock-envelopes/sa_plugin_sig_env.json",
            JWS,
            Expect::Fail(Integrity, |e| {
                matches!(
                    e,
                    NotaryError::AwsSigner(aws_signer::AwsSignerError::UnsupportedPlugin { .. })
                )
            }),
        ),
        // Run at audit upstream: the signer is in no store and expired
        // 2023-01-12, so authenticity and the validity check fail.
        case(
            "notation-go/mock-envelopes/sig_env_with_metadata.json",
            JWS,
            Expect::Fail(Authenticity, |e| matches!(e, NotaryError::UntrustedChain)),
        ),
        case(
            "notation-go/mock-envelopes/sig_env_with_metadata.json",
            JWS,
            Expect::Fail(AuthenticTimestamp, |e| {
                matches!(e, NotaryError::CertificateExpired { .. })
            }),
        ),
        // --- notation-go timestamp envelopes: ca:valid-trust-store +
        // tsa:test-timestamp, verifyTimestamp always.
        timestamp_case(
            "notation-go/timestamp/sigEnv/jwsWithTimestamp.sig",
            JWS,
            VALID_STORES,
            Expect::Pass,
        ),
        timestamp_case(
            "notation-go/timestamp/sigEnv/coseWithTimestamp.sig",
            COSE,
            VALID_STORES,
            Expect::Pass,
        ),
        Case {
            verify_timestamp: VerifyTimestamp::AfterCertExpiry,
            ..timestamp_case(
                "notation-go/timestamp/sigEnv/coseWithTimestamp.sig",
                COSE,
                VALID_STORES,
                Expect::Pass,
            )
        },
        // The signer (testTSA) expired at 07:30:31, minutes after signing.
        timestamp_case(
            "notation-go/timestamp/sigEnv/jwsExpiredWithTimestamp.sig",
            JWS,
            Ca::Own,
            Expect::Pass,
        ),
        timestamp_case(
            "notation-go/timestamp/sigEnv/coseExpiredWithTimestamp.sig",
            COSE,
            Ca::Own,
            Expect::Pass,
        ),
        Case {
            tsa: None,
            ..timestamp_case(
                "notation-go/timestamp/sigEnv/coseExpiredWithTimestamp.sig",
                COSE,
                Ca::Own,
                Expect::Fail(AuthenticTimestamp, |e| {
                    matches!(e, NotaryError::CertificateExpired { .. })
                }),
            )
        },
        timestamp_case(
            "notation-go/timestamp/sigEnv/timestampBeforeNotBefore.sig",
            JWS,
            VALID_STORES,
            Expect::Fail(AuthenticTimestamp, |e| {
                matches!(
                    e,
                    NotaryError::Timestamp(TimestampError::BeforeCertificateValidity { .. })
                )
            }),
        ),
        timestamp_case(
            "notation-go/timestamp/sigEnv/timestampAfterNotAfter.sig",
            COSE,
            Ca::Own,
            Expect::Fail(AuthenticTimestamp, |e| {
                matches!(
                    e,
                    NotaryError::Timestamp(TimestampError::AfterCertificateValidity { .. })
                )
            }),
        ),
        timestamp_case(
            "notation-go/timestamp/sigEnv/withoutTimestamp.sig",
            JWS,
            VALID_STORES,
            Expect::Fail(AuthenticTimestamp, |e| {
                matches!(e, NotaryError::Timestamp(TimestampError::Missing))
            }),
        ),
        Case {
            tsa: Some("notation-go/truststore/x509/tsa/test-mismatch"),
            ..timestamp_case(
                "notation-go/timestamp/sigEnv/coseWithTimestamp.sig",
                COSE,
                VALID_STORES,
                Expect::Fail(AuthenticTimestamp, |e| {
                    matches!(
                        e,
                        NotaryError::Timestamp(TimestampError::UntrustedTsa { .. })
                    )
                }),
            )
        },
        // --- countersignature splices into withoutTimestamp.sig
        Case {
            splice: Some("TimeStampTokenWithInvalideContentType.p7s"),
            ..timestamp_case(
                "notation-go/timestamp/sigEnv/withoutTimestamp.sig",
                JWS,
                VALID_STORES,
                Expect::Fail(AuthenticTimestamp, |e| {
                    matches!(
                        e,
                        NotaryError::Timestamp(TimestampError::ContentType { .. })
                    )
                }),
            )
        },
        Case {
            splice: Some("TimeStampTokenWithInvalidTSTInfo.p7s"),
            ..timestamp_case(
                "notation-go/timestamp/sigEnv/withoutTimestamp.sig",
                JWS,
                VALID_STORES,
                Expect::Fail(AuthenticTimestamp, |e| {
                    matches!(e, NotaryError::Timestamp(TimestampError::TstInfo))
                }),
            )
        },
        // A genuine GlobalSign token over other bytes (upstream replaces the
        // signature by `mismatch`; splicing it here gives the same reason).
        Case {
            splice: Some("TimeStampToken.p7s"),
            ..timestamp_case(
                "notation-go/timestamp/sigEnv/withoutTimestamp.sig",
                JWS,
                VALID_STORES,
                Expect::Fail(AuthenticTimestamp, |e| {
                    matches!(e, NotaryError::Timestamp(TimestampError::ImprintMismatch))
                }),
            )
        },
        // --- notation-go internal canned envelopes: self-signed signer,
        // trusting it gives a clean pass.
        Case {
            ca: Ca::Own,
            ..case("notation-go/internal/jws_signature.sig", JWS, Expect::Pass)
        },
        Case {
            ca: Ca::Own,
            ..case(
                "notation-go/internal/cose_signature.sig",
                COSE,
                Expect::Pass,
            )
        },
        // --- notation-e2e signatures (inspect-only upstream): trusting their
        // self-signed signers, before the signers expire, they verify; the
        // Microsoft TSA roots are not among the vectors, so with the e2e
        // `tsa` store (DigiCert, GlobalSign) the countersignature is untrusted.
        Case {
            ca: Ca::Own,
            now: "2024-12-31T12:00:00Z",
            ..case("notation-e2e/signatures/blob.jws.sig", JWS, Expect::Pass)
        },
        Case {
            ca: Ca::Own,
            now: "2025-01-08T00:00:00Z",
            ..case("notation-e2e/signatures/blob.cose.sig", COSE, Expect::Pass)
        },
        Case {
            ca: Ca::Own,
            tsa: Some("notation-e2e/tsa-roots"),
            now: "2026-01-01T00:00:00Z",
            ..case(
                "notation-e2e/signatures/blob.cose.sig",
                COSE,
                Expect::Fail(AuthenticTimestamp, |e| {
                    matches!(
                        e,
                        NotaryError::Timestamp(TimestampError::UntrustedTsa { .. })
                    )
                }),
            )
        },
        Case {
            ca: Ca::Own,
            tsa: Some("notation-e2e/tsa-roots"),
            now: "2026-01-01T00:00:00Z",
            ..case(
                "notation-e2e/signatures/blob.jws.sig",
                JWS,
                Expect::Fail(AuthenticTimestamp, |e| {
                    matches!(
                        e,
                        NotaryError::Timestamp(TimestampError::UntrustedTsa { .. })
                    )
                }),
            )
        },
        Case {
            ca: Ca::None,
            ..case(
                "notation-e2e/signatures/malformed.jws.sig",
                JWS,
                Expect::Fail(Integrity, |e| {
                    matches!(e, NotaryError::Malformed(EnvelopeError::Json(_)))
                }),
            )
        },
        // The same bytes read as COSE are not CBOR either.
        Case {
            ca: Ca::None,
            ..case(
                "notation-e2e/signatures/malformed.jws.sig",
                COSE,
                Expect::Fail(Integrity, |e| {
                    matches!(
                        e,
                        NotaryError::MalformedCose(CoseError::NotTagged | CoseError::Cbor)
                    )
                }),
            )
        },
    ]
}

fn splice(env: &[u8], token_file: &str) -> Vec<u8> {
    let token = vector(&format!(
        "notation-go/timestamp/countersignature/{token_file}"
    ));
    let mut v: Value = serde_json::from_slice(env).unwrap();
    v["header"][jws::HEADER_TIMESTAMP_SIGNATURE] = Value::String(STANDARD.encode(token));
    serde_json::to_vec(&v).unwrap()
}

fn run(case: &Case) -> Report {
    let mut env = vector(case.file);
    if let Some(token) = case.splice {
        env = splice(&env, token);
    }
    let (ca, sa) = match case.ca {
        Ca::Stores(ca, sa) => (go_store(ca), go_store(sa)),
        Ca::Own => (own_chain(case.media_type, &env), Vec::new()),
        Ca::None => (Vec::new(), Vec::new()),
    };
    let tsa = case.tsa.map(store).unwrap_or_default();
    let anchors = Anchors {
        ca: ca.iter().collect(),
        signing_authority: sa.iter().collect(),
        tsa: tsa.iter().collect(),
    };
    let options = Options {
        verify_timestamp: case.verify_timestamp,
    };
    verify(
        case.media_type,
        &env,
        &anchors,
        options,
        &revocation::NoRevocationData,
        at(case.now),
    )
}

#[test]
fn every_vector_has_its_verdict_and_reason() {
    let mut failures = Vec::new();
    let table = table();
    for (i, case) in table.iter().enumerate() {
        let report = run(case);
        let ok = match &case.expect {
            Expect::Pass => {
                report.checks.len() == 5 && report.checks.iter().all(|c| c.result.is_ok())
            }
            Expect::Fail(v, reason) => matches!(report.check(*v), Some(Err(e)) if reason(e)),
        };
        if !ok {
            failures.push(format!(
                "#{i} {} ({}): {:#?}",
                case.file,
                case.media_type,
                report
                    .checks
                    .iter()
                    .map(|c| (c.validation, c.result.as_ref().err()))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(table.len() >= 30);
}

#[test]
fn verified_countersignatures_are_reported() {
    let t = table();
    let pick = |file: &str, vt: VerifyTimestamp| {
        t.iter()
            .find(|c| c.file.ends_with(file) && c.verify_timestamp == vt && c.tsa.is_some())
            .unwrap()
    };
    let report = run(pick("jwsWithTimestamp.sig", ALWAYS));
    match &report.countersignature {
        Countersignature::Verified(ts) => {
            assert_eq!(ts.gen_time, at("2024-06-18T06:29:37Z"));
            assert!(
                ts.tsa.contains("Globalsign TSA for Advanced - G4 - 202311"),
                "{}",
                ts.tsa
            );
        }
        other => panic!("{other:?}"),
    }
    let report = run(pick("coseExpiredWithTimestamp.sig", ALWAYS));
    match &report.countersignature {
        Countersignature::Verified(ts) => assert_eq!(ts.gen_time, at("2024-06-18T07:21:12Z")),
        other => panic!("{other:?}"),
    }
    // afterCertExpiry with an unexpired chain: not verified, checked at now.
    let report = run(pick(
        "coseWithTimestamp.sig",
        VerifyTimestamp::AfterCertExpiry,
    ));
    assert_eq!(report.countersignature, Countersignature::NotVerified);
}

#[test]
fn countersignature_reasons_at_the_token_level() {
    let tsa = go_store("tsa/test-timestamp");
    let anchors: Vec<&Certificate> = tsa.iter().collect();
    // Upstream replaces the envelope signature by `mismatch`.
    let token = vector("notation-go/timestamp/countersignature/TimeStampToken.p7s");
    assert!(matches!(
        timestamp::verify(&token, b"mismatch", &anchors),
        Err(TimestampError::ImprintMismatch)
    ));
    // Without certificates the TSA cannot be found, whatever the imprint.
    let token =
        vector("notation-go/timestamp/countersignature/TimeStampTokenWithoutCertificate.p7s");
    // (Its imprint is over bytes not among the vectors, so the signer check
    // is run on its own.)
    let parsed = timestamp::Token::parse(&token).unwrap();
    assert!(matches!(
        parsed.authenticate(&anchors),
        Err(TimestampError::SigningCertificateNotFound)
    ));
    // The full token authenticates against GlobalSign, not against DigiCert.
    let token = vector("notation-go/timestamp/countersignature/TimeStampToken.p7s");
    let parsed = timestamp::Token::parse(&token).unwrap();
    let ts = parsed.authenticate(&anchors).unwrap();
    assert_eq!(ts.gen_time, at("2021-09-17T14:09:10Z"));
    let digicert = go_store("tsa/test-mismatch");
    assert!(matches!(
        parsed.authenticate(&digicert.iter().collect::<Vec<_>>()),
        Err(TimestampError::UntrustedTsa { .. })
    ));
    // Microsoft's TSA writes fractional seconds (RFC 3161 allows them).
    let v: Value = serde_json::from_slice(&vector("notation-e2e/signatures/blob.jws.sig")).unwrap();
    let token = STANDARD
        .decode(
            v["header"][jws::HEADER_TIMESTAMP_SIGNATURE]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let parsed = timestamp::Token::parse(&token).unwrap();
    assert_eq!(
        parsed.claimed_time(),
        (
            at("2024-12-31T08:05:30Z") + std::time::Duration::from_millis(9),
            std::time::Duration::from_millis(500)
        )
    );
    for garbage in [&b""[..], b"\x30\x00", b"not a token"] {
        assert!(matches!(
            timestamp::verify(garbage, b"x", &anchors),
            Err(TimestampError::NotSignedData)
        ));
    }
}

// ---------------------------------------------------------------------------
// notation-core-go encoding vectors: parse only (no verifiable key).

#[test]
fn core_go_jws_conformance_headers_decode_and_are_refused_for_their_critical_key() {
    let v: Value =
        serde_json::from_slice(&vector("notation-core-go/jws-conformance.json")).unwrap();
    let protected = URL_SAFE_NO_PAD
        .decode(v["protected"].as_str().unwrap())
        .unwrap();
    let map: serde_json::Map<String, Value> = serde_json::from_slice(&protected).unwrap();
    assert_eq!(map["alg"], "ES256");
    assert_eq!(map["cty"], PAYLOAD_CONTENT_TYPE);
    assert_eq!(map[HEADER_SIGNING_SCHEME], "notary.x509");
    assert_eq!(map[HEADER_SIGNING_TIME], "2022-08-29T13:50:00Z");
    assert_eq!(map[HEADER_EXPIRY], "2099-08-30T13:50:00Z");
    assert_eq!(map["signedCritKey1"], "signedCritValue1");
    for k in ["signedKey1", "signedKey2", "signedKey3", "signedKey4"] {
        assert_eq!(map[k], "signedValue1");
    }
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(v["payload"].as_str().unwrap())
            .unwrap(),
        br#"{"key":"hello JWS"}"#
    );
    assert_eq!(
        v["header"]["io.cncf.notary.signingAgent"],
        "NotationConformanceTest/1.0.0"
    );
    // "unknown critical attributes MUST cause signature verification to fail."
    match jws::check_protected_header(&map) {
        Err(NotaryError::UnknownCriticalHeader { name }) => assert_eq!(name, "signedCritKey1"),
        other => panic!("{other:?}"),
    }
    // Without signedCritKey1 in crit the same header is accepted.
    let mut relaxed = map.clone();
    relaxed.insert(
        "crit".into(),
        serde_json::json!([HEADER_SIGNING_SCHEME, HEADER_EXPIRY]),
    );
    let header = jws::check_protected_header(&relaxed).unwrap();
    assert_eq!(header.alg, Algorithm::Es256);
    assert_eq!(header.signing_time, Some(at("2022-08-29T13:50:00Z")));
    assert_eq!(header.expiry, Some(at("2099-08-30T13:50:00Z")));
    // The envelope carries no x5c: a full verification stops at integrity.
    let report = verify(
        JWS,
        &vector("notation-core-go/jws-conformance.json"),
        &Anchors::default(),
        Options::default(),
        &revocation::NoRevocationData,
        at(MOCK_NOW),
    );
    assert!(matches!(
        report.check(Validation::Integrity),
        Some(Err(NotaryError::Malformed(EnvelopeError::MissingX5c)))
    ));
}

#[test]
fn core_go_cose_conformance_headers_decode_and_are_refused_for_their_critical_key() {
    let v: Value =
        serde_json::from_slice(&vector("notation-core-go/cose-conformance.json")).unwrap();
    let hex_field = |f: &str| hex::decode(v[f]["cborHex"].as_str().unwrap()).unwrap();
    let protected = cose::parse_protected(&hex_field("protectedHeaders")).unwrap();
    let time = |name| cose::time_header(&protected, name).unwrap().unwrap();
    assert_eq!(
        time(HEADER_SIGNING_TIME),
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_661_321_924)
    );
    assert_eq!(
        time(HEADER_EXPIRY),
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_661_408_324)
    );
    match cose::check_protected_header(&protected) {
        Err(NotaryError::UnknownCriticalHeader { name }) => assert_eq!(name, "signedCritKey1"),
        other => panic!("{other:?}"),
    }
    // The whole message: COSE_Sign1_Tagged, PS384, payload "hello COSE",
    // and no x5chain, so verification stops at integrity.
    let message = hex_field("expectedOutput");
    assert_eq!(&message[..2], [0xd2, 0x84]);
    let report = verify(
        COSE,
        &message,
        &Anchors::default(),
        Options::default(),
        &revocation::NoRevocationData,
        at(MOCK_NOW),
    );
    assert!(matches!(
        report.check(Validation::Integrity),
        Some(Err(NotaryError::MalformedCose(CoseError::MissingX5chain)))
    ));
    let Value::String(payload) = &v["payload"] else {
        panic!()
    };
    assert_eq!(hex::decode(payload).unwrap(), b"hello COSE");
}
