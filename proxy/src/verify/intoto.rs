//! In-toto statements carried in DSSE envelopes: what an attestation says.
//!
//! Input: the DSSE envelope's payload type and (already signature-checked)
//! payload bytes, the image digest and the predicate type required. Output:
//! the [`Statement`] (predicate type, subject and predicate as JSON, the
//! names of the subjects that carry the digest), or the typed reason it is
//! not an attestation of this image. Pure; the payload is capped by the
//! envelope's own cap (the Sigstore bundle's, `cosign::MAX_BUNDLE_BYTES`).
//!
//! [in-toto Statement v1](https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md):
//! "`subject` ... Set of software artifacts that the attestation applies
//! to", each with a `digest` map of algorithm to hex; "`predicateType` ...
//! URI identifying the type of the Predicate". Statement v0.1 (what cosign
//! v2 writes) has the same fields.

use std::sync::Arc;

use pullgate_policy::reference::DigestAlgorithm;
use pullgate_policy::Digest;
use serde::Deserialize;

/// DSSE payload type of an in-toto statement.
///
/// [in-toto Envelope](https://github.com/in-toto/attestation/blob/main/spec/v1/envelope.md):
/// "payloadType: `application/vnd.in-toto+json`".
pub(crate) const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// What a verified statement says.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub(crate) predicate_type: String,
    /// The `subject` list as written.
    pub(crate) subject: serde_json::Value,
    /// The `predicate` as written (`null` when absent).
    pub(crate) predicate: serde_json::Value,
    /// The `name`s of the subjects whose digest is the image's (empty
    /// strings for subjects without one).
    pub(crate) names_of_image: Vec<String>,
}

/// Why a DSSE payload is not an attestation of this image.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Error {
    #[error("the DSSE payload type is {found:?}, not {PAYLOAD_TYPE}")]
    PayloadType { found: String },
    #[error("the DSSE payload is not an in-toto statement: {0}")]
    Malformed(Arc<serde_json::Error>),
    #[error("the statement has predicate type {found:?}, not {expected:?}")]
    PredicateType { expected: String, found: String },
    #[error("the statement has no subject with the image digest {expected}")]
    SubjectMismatch { expected: Digest },
    #[error("the bundle signs a message, not an in-toto statement")]
    NotAStatement,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "predicateType")]
    predicate_type: String,
    subject: Vec<RawSubject>,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Deserialize, serde::Serialize)]
struct RawSubject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// Reads the statement of an envelope and checks it is an attestation of
/// type `predicate_type` about `digest`.
///
/// # Errors
/// The first of: payload type, malformed statement, predicate type, subject.
pub(crate) fn statement_for(
    payload_type: &str,
    payload: &[u8],
    digest: &Digest,
    predicate_type: &str,
) -> Result<Statement, Error> {
    if payload_type != PAYLOAD_TYPE {
        return Err(Error::PayloadType {
            found: payload_type.chars().take(128).collect(),
        });
    }
    let raw: Raw = serde_json::from_slice(payload).map_err(|e| Error::Malformed(Arc::new(e)))?;
    if raw.predicate_type != predicate_type {
        return Err(Error::PredicateType {
            expected: predicate_type.to_owned(),
            found: raw.predicate_type.chars().take(128).collect(),
        });
    }
    let algorithm = match digest.algorithm() {
        DigestAlgorithm::Sha256 => "sha256",
        DigestAlgorithm::Sha512 => "sha512",
    };
    let names_of_image: Vec<String> = raw
        .subject
        .iter()
        .filter(|s| {
            s.digest
                .get(algorithm)
                .is_some_and(|h| h.eq_ignore_ascii_case(digest.hex()))
        })
        .map(|s| s.name.clone())
        .collect();
    if names_of_image.is_empty() {
        return Err(Error::SubjectMismatch {
            expected: digest.clone(),
        });
    }
    let subject = serde_json::to_value(&raw.subject).map_err(|e| Error::Malformed(Arc::new(e)))?;
    Ok(Statement {
        predicate_type: raw.predicate_type,
        subject,
        predicate: raw.predicate,
        names_of_image,
    })
}

/// The predicate type a DSSE payload names, if it is a statement at all
/// (for denials about attestations of other types).
pub(crate) fn predicate_type_of(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "predicateType")]
        predicate_type: String,
    }
    serde_json::from_slice::<Typed>(payload)
        .ok()
        .map(|t| t.predicate_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLSA: &str = "https://slsa.dev/provenance/v1";

    fn digest() -> Digest {
        Digest::sha256_of(b"image")
    }

    fn statement(predicate_type: &str, hex: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "r.example/app", "digest": {"sha256": hex}}],
            "predicateType": predicate_type,
            "predicate": {"buildDefinition": {"buildType": "x"}},
        }))
        .unwrap()
    }

    #[test]
    fn a_statement_about_the_image_is_read() {
        let s = statement_for(
            PAYLOAD_TYPE,
            &statement(SLSA, digest().hex()),
            &digest(),
            SLSA,
        )
        .unwrap();
        assert_eq!(s.predicate_type, SLSA);
        assert_eq!(s.names_of_image, ["r.example/app"]);
        assert_eq!(s.predicate["buildDefinition"]["buildType"], "x");
        assert_eq!(s.subject[0]["name"], "r.example/app");
    }

    #[test]
    fn wrong_payload_type_predicate_type_or_subject_is_refused() {
        let good = statement(SLSA, digest().hex());
        assert!(matches!(
            statement_for("application/json", &good, &digest(), SLSA),
            Err(Error::PayloadType { .. })
        ));
        assert!(matches!(
            statement_for(
                PAYLOAD_TYPE,
                &good,
                &digest(),
                "https://slsa.dev/provenance/v0.2"
            ),
            Err(Error::PredicateType { .. })
        ));
        let other = Digest::sha256_of(b"another image");
        assert!(matches!(
            statement_for(PAYLOAD_TYPE, &statement(SLSA, other.hex()), &digest(), SLSA),
            Err(Error::SubjectMismatch { .. })
        ));
        for junk in [&b"not json"[..], b"{}", b"[]", b"{\"predicateType\": 1}"] {
            assert!(matches!(
                statement_for(PAYLOAD_TYPE, junk, &digest(), SLSA),
                Err(Error::Malformed(_))
            ));
        }
        assert_eq!(predicate_type_of(&good).as_deref(), Some(SLSA));
    }

    proptest::proptest! {
        /// Untrusted payloads and envelopes never panic the parsers.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), text in ".{0,200}") {
            let _ = statement_for(PAYLOAD_TYPE, &bytes, &digest(), SLSA);
            let _ = statement_for(PAYLOAD_TYPE, text.as_bytes(), &digest(), SLSA);
            let _ = predicate_type_of(&bytes);
            let _ = crate::verify::cosign::att::payload_of(&bytes);
            let _ = crate::verify::cosign::att::payload_of(text.as_bytes());
        }
    }
}
