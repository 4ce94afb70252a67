//! The Notary Project JWS envelope (`application/jose+json`): bytes to a
//! typed, signature-checked envelope.
//!
//! Contract: [`parse`] turns untrusted bytes into an [`Envelope`] (flattened
//! JWS JSON serialization, strict unpadded base64url, x5c decoded and parsed
//! as certificates); [`check_protected_header`] applies the protected-header
//! rules; [`verify_signature`] checks `alg` against the signing key and the
//! signature over `BASE64URL(protected) '.' BASE64URL(payload)`. Each step
//! returns a typed [`NotaryError`]; nothing here panics or reads the clock.
//!
//! Spec: [JWS Signature Envelope](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-jws.md).

use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::aws_signer::{self, AwsSignerError};
use super::NotaryError;
pub(crate) use super::{Algorithm, Header};
use super::{
    SigningScheme, HEADER_AUTHENTIC_SIGNING_TIME, HEADER_EXPIRY, HEADER_SIGNING_SCHEME,
    HEADER_SIGNING_TIME, HEADER_VERIFICATION_PLUGIN, HEADER_VERIFICATION_PLUGIN_MIN_VERSION,
    MAX_CHAIN_CERTIFICATES, PAYLOAD_CONTENT_TYPE,
};
use crate::verify::rfc3339::{self, InvalidDateTime};
use crate::verify::x509::Certificate;

/// Protected header: the signature algorithm.
pub(crate) const HEADER_ALG: &str = "alg";
/// Protected header: the payload content type.
pub(crate) const HEADER_CTY: &str = "cty";
/// Protected header: the critical header names.
pub(crate) const HEADER_CRIT: &str = "crit";
/// Unprotected header carrying the certificate chain, leaf first.
pub(crate) const HEADER_X5C: &str = "x5c";
/// Unprotected header carrying an RFC 3161 timestamp token (standard base64).
pub(crate) const HEADER_TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";

/// JWS and JWA registered header parameter names, which must not appear in
/// `crit` ([RFC 7515 §4.1.11](https://datatracker.ietf.org/doc/html/rfc7515#section-4.1.11)).
const REGISTERED_HEADERS: [&str; 16] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc",
    "zip", "epk", "apu", "apv",
];

/// What in the envelope is malformed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("it is not a flattened JWS JSON object with exactly payload, protected, header and signature ({0})")]
    Json(serde_json::Error),
    #[error("{field} is not unpadded base64url")]
    Base64 { field: Field },
    #[error("the protected header is not a JSON object")]
    ProtectedHeader,
    #[error("protected header {name:?} must be {expected}")]
    HeaderType {
        name: String,
        expected: &'static str,
    },
    #[error("protected header {name:?}: {source}")]
    HeaderTime {
        name: &'static str,
        source: InvalidDateTime,
    },
    #[error("\"crit\" must be a non-empty array of header names")]
    Crit,
    #[error("the unprotected header has no x5c certificate chain")]
    MissingX5c,
    #[error("x5c must be an array of base64 strings")]
    X5cType,
    #[error("x5c certificate #{index} is not valid base64")]
    X5cBase64 { index: usize },
    #[error("the timestamp countersignature is not a valid base64 string")]
    TimestampSignature,
    #[error("the payload is not a Notary Project payload with a targetArtifact descriptor ({0})")]
    Payload(serde_json::Error),
    #[error("the signed target digest {value:?} is not a valid digest")]
    Digest { value: String },
}

/// A base64url member of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Payload,
    Protected,
    Signature,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Payload => "the payload",
            Field::Protected => "the protected header",
            Field::Signature => "the signature",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    payload: String,
    protected: String,
    header: Map<String, Value>,
    signature: String,
}

/// A structurally valid envelope whose signature is not yet checked.
#[derive(Debug)]
pub(crate) struct Envelope {
    /// `BASE64URL(protected) '.' BASE64URL(payload)`, exactly as received.
    signing_input: Vec<u8>,
    pub(crate) protected: Map<String, Value>,
    pub(crate) payload: Vec<u8>,
    /// The signature bytes (what an RFC 3161 countersignature timestamps).
    pub(crate) signature: Vec<u8>,
    /// Leaf first, never empty.
    pub(crate) chain: Vec<Certificate>,
    /// The RFC 3161 token, still unverified.
    pub(crate) timestamp_signature: Option<Vec<u8>>,
}

/// [JWS envelope, Signature](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-jws.md#create-the-jws-signing-input):
/// "Base64Url encoding ... with all trailing '=' characters omitted and
/// without the inclusion of any additional characters."
fn base64url(value: &str, field: Field) -> Result<Vec<u8>, NotaryError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| EnvelopeError::Base64 { field }.into())
}

/// Parses the envelope structure.
///
/// [Signature Envelope](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-jws.md#signature-envelope):
/// "The final signature envelope comprises of Payload, ProtectedHeaders,
/// UnprotectedHeaders, and Signature, no additional top level fields are
/// supported. ... the compliant signature envelope MUST be in flattened JWS
/// JSON format."
///
/// # Errors
/// [`NotaryError::Malformed`], [`NotaryError::TooManyCertificates`] or
/// [`NotaryError::Certificate`] for an x5c entry that is not a usable certificate.
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, NotaryError> {
    let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(EnvelopeError::Json)?;
    let protected_bytes = base64url(&raw.protected, Field::Protected)?;
    let payload = base64url(&raw.payload, Field::Payload)?;
    let signature = base64url(&raw.signature, Field::Signature)?;
    let protected = match serde_json::from_slice::<Value>(&protected_bytes) {
        Ok(Value::Object(map)) => map,
        _ => return Err(EnvelopeError::ProtectedHeader.into()),
    };

    // [Unprotected Headers]: "x5c ... This REQUIRED header contains the
    // ordered list of X.509 certificate or certificate chain ... each string
    // in the array is a base64-encoded DER certificate value. The certificate
    // containing the public key corresponding to the key used to digitally
    // sign the JWS MUST be the first certificate".
    let x5c = match raw.header.get(HEADER_X5C) {
        None => return Err(EnvelopeError::MissingX5c.into()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(EnvelopeError::X5cType.into()),
    };
    if x5c.is_empty() {
        return Err(EnvelopeError::MissingX5c.into());
    }
    if x5c.len() > MAX_CHAIN_CERTIFICATES {
        return Err(NotaryError::TooManyCertificates {
            count: x5c.len(),
            limit: MAX_CHAIN_CERTIFICATES,
        });
    }
    let mut chain = Vec::with_capacity(x5c.len());
    for (index, item) in x5c.iter().enumerate() {
        let Value::String(b64) = item else {
            return Err(EnvelopeError::X5cType.into());
        };
        let der = STANDARD
            .decode(b64)
            .map_err(|_| EnvelopeError::X5cBase64 { index })?;
        chain.push(
            Certificate::from_der(&der)
                .map_err(|reason| NotaryError::Certificate { index, reason })?,
        );
    }
    let timestamp_signature = match raw.header.get(HEADER_TIMESTAMP_SIGNATURE) {
        None => None,
        Some(Value::String(b64)) => Some(
            STANDARD
                .decode(b64)
                .map_err(|_| EnvelopeError::TimestampSignature)?,
        ),
        Some(_) => return Err(EnvelopeError::TimestampSignature.into()),
    };

    let mut signing_input = Vec::with_capacity(raw.protected.len() + 1 + raw.payload.len());
    signing_input.extend_from_slice(raw.protected.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(raw.payload.as_bytes());
    Ok(Envelope {
        signing_input,
        protected,
        payload,
        signature,
        chain,
        timestamp_signature,
    })
}

fn string_header<'a>(
    map: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, NotaryError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EnvelopeError::HeaderType {
            name: name.to_owned(),
            expected: "a string",
        }
        .into()),
    }
}

fn time_header(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<SystemTime>, NotaryError> {
    string_header(map, name)?
        .map(|s| {
            rfc3339::parse(s).map_err(|source| EnvelopeError::HeaderTime { name, source }.into())
        })
        .transpose()
}

/// Applies the protected header rules of the JWS envelope spec.
///
/// # Errors
/// The first rule broken.
pub(crate) fn check_protected_header(map: &Map<String, Value>) -> Result<Header, NotaryError> {
    // "alg ... This REQUIRED header defines which signing algorithm was used".
    let alg_name =
        string_header(map, HEADER_ALG)?.ok_or(NotaryError::MissingHeader { name: HEADER_ALG })?;
    let alg = Algorithm::from_name(alg_name).ok_or_else(|| NotaryError::UnsupportedAlgorithm {
        alg: alg_name.chars().take(32).collect(),
    })?;

    // "cty ... The REQUIRED header content-type ... The supported value is
    // application/vnd.cncf.notary.payload.v1+json."
    let cty =
        string_header(map, HEADER_CTY)?.ok_or(NotaryError::MissingHeader { name: HEADER_CTY })?;
    if cty != PAYLOAD_CONTENT_TYPE {
        return Err(NotaryError::UnsupportedContentType {
            cty: cty.chars().take(128).collect(),
        });
    }

    // "crit ... This REQUIRED (optional as per JWS spec, but required in
    // Notary Project JWS signature) header lists the headers that
    // implementation MUST understand and process. It MUST only contain headers
    // apart from registered headers ... This header MUST contain
    // io.cncf.notary.signingScheme ... and optionally contain
    // io.cncf.notary.authenticSigningTime and io.cncf.notary.expiry if these
    // critical headers are present in the signature."
    // RFC 7515 §4.1.11: "Producers MUST NOT use the empty list "[]" as the
    // crit value."
    let crit: Vec<&str> = match map.get(HEADER_CRIT) {
        None => return Err(NotaryError::MissingHeader { name: HEADER_CRIT }),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().ok_or(EnvelopeError::Crit))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(EnvelopeError::Crit.into()),
    };
    // [Guidelines for implementations](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#guidelines-for-notary-project-signature-implementors):
    // an implementation that does not implement the plugin protocol "MUST
    // fail signature verification if it cannot perform the equivalent
    // verification logic". The AWS Signer plugin's logic is implemented
    // (`aws_signer`); any other plugin fails.
    let plugin = string_header(map, HEADER_VERIFICATION_PLUGIN)?;
    let min_version = string_header(map, HEADER_VERIFICATION_PLUGIN_MIN_VERSION)?;
    let is_aws_signer = aws_signer::check_plugin(plugin, min_version)?;
    let mut known: Vec<&str> = vec![
        HEADER_SIGNING_SCHEME,
        HEADER_EXPIRY,
        HEADER_AUTHENTIC_SIGNING_TIME,
    ];
    if is_aws_signer {
        // The plugin's own attributes are ones it processes
        // (`ProcessedAttributes`), so listing them as critical is understood.
        known.extend([
            HEADER_VERIFICATION_PLUGIN,
            HEADER_VERIFICATION_PLUGIN_MIN_VERSION,
            aws_signer::ATTR_SIGNING_PROFILE_VERSION,
            aws_signer::ATTR_SIGNING_JOB,
        ]);
    }
    for name in &crit {
        if REGISTERED_HEADERS.contains(name) || !map.contains_key(*name) {
            return Err(NotaryError::InvalidCriticalHeader {
                name: name.chars().take(128).collect(),
            });
        }
        // [Extended attributes](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#extended-attributes):
        // "unknown critical attributes MUST cause signature verification to fail."
        if !known.contains(name) {
            return Err(NotaryError::UnknownCriticalHeader {
                name: name.chars().take(128).collect(),
            });
        }
    }
    // The AWS Signer attributes are required to be critical as the signing
    // scheme's are: notation hands a plugin only the critical extended
    // attributes, and the plugin fails without these two.
    let mut must_be_critical = vec![
        HEADER_SIGNING_SCHEME,
        HEADER_EXPIRY,
        HEADER_AUTHENTIC_SIGNING_TIME,
    ];
    if is_aws_signer {
        must_be_critical.extend([
            aws_signer::ATTR_SIGNING_PROFILE_VERSION,
            aws_signer::ATTR_SIGNING_JOB,
        ]);
    }
    for name in must_be_critical {
        if map.contains_key(name) && !crit.contains(&name) {
            return Err(NotaryError::MissingCriticalHeader {
                name: name.to_owned(),
            });
        }
    }
    let aws_signer = if is_aws_signer {
        // The plugin's `getValueAsString`: present and a string, else
        // "unable to parse attribute".
        let attribute = |name: &'static str| match map.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(AwsSignerError::Attribute { name }),
        };
        Some(aws_signer::Attributes {
            profile_version: attribute(aws_signer::ATTR_SIGNING_PROFILE_VERSION)?,
            job: attribute(aws_signer::ATTR_SIGNING_JOB)?,
        })
    } else {
        None
    };

    // "io.cncf.notary.signingScheme ... Supported values are notary.x509 and
    // notary.x509.signingAuthority."
    let scheme_name =
        string_header(map, HEADER_SIGNING_SCHEME)?.ok_or(NotaryError::MissingHeader {
            name: HEADER_SIGNING_SCHEME,
        })?;
    let mut header = super::signed_attributes(
        alg,
        scheme_name,
        time_header(map, HEADER_SIGNING_TIME)?,
        time_header(map, HEADER_AUTHENTIC_SIGNING_TIME)?,
        time_header(map, HEADER_EXPIRY)?,
    )?;
    if aws_signer.is_some() && header.scheme != SigningScheme::X509SigningAuthority {
        // The plugin's `validate`: "'<scheme>' signing scheme" is unsupported.
        return Err(AwsSignerError::Scheme {
            scheme: header.scheme,
        }
        .into());
    }
    header.aws_signer = aws_signer;
    Ok(header)
}

/// Checks `alg` against the signing key, then the signature.
///
/// [Protected Headers, alg](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-jws.md#protected-headers):
/// "verifier of the signature MUST match alg with signature algorithm of the
/// signing key to mitigate algorithm substitution attacks."
/// RFC 7518 §3.5 fixes the PSS salt length to the hash output length; §3.4
/// fixes the ECDSA signature to the `R || S` octet sequence.
///
/// # Errors
/// [`NotaryError::AlgorithmKeyMismatch`] or [`NotaryError::SignatureInvalid`].
pub(crate) fn verify_signature(envelope: &Envelope, alg: Algorithm) -> Result<(), NotaryError> {
    super::verify_leaf_signature(
        alg,
        &envelope.chain,
        &envelope.signing_input,
        &envelope.signature,
    )
}
