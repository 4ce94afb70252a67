//! The Notary Project COSE_Sign1 envelope (`application/cose`): bytes to a
//! typed, signature-checked envelope.
//!
//! Contract: [`parse`] turns untrusted bytes into an [`Envelope`]
//! (`COSE_Sign1_Tagged`, CBOR tag 18, with the protected header decoded, the
//! x5chain parsed as certificates and the countersignature kept as bytes);
//! [`check_protected_header`] applies the protected-header rules and returns
//! the same [`Header`] as the JWS parser; [`verify_signature`] checks `alg`
//! against the signing key and the signature over the `Sig_structure`. Each
//! step returns a typed [`NotaryError`]; nothing here panics or reads the clock.
//!
//! CBOR is decoded with `ciborium` into its generic `Value` (depth-limited,
//! no pre-allocation from declared lengths); maps with a repeated label are
//! refused, since which of two values a verifier would honour is exactly what
//! an attacker would like to choose.
//!
//! Spec: [COSE Sign1 Signature Envelope](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-cose.md),
//! [RFC 9052](https://www.rfc-editor.org/rfc/rfc9052) §4.2 and §4.4.

use std::time::{Duration, SystemTime};

use ciborium::Value;

use super::NotaryError;
use super::{
    Algorithm, Header, HEADER_AUTHENTIC_SIGNING_TIME, HEADER_EXPIRY, HEADER_SIGNING_SCHEME,
    HEADER_SIGNING_TIME, HEADER_VERIFICATION_PLUGIN, HEADER_VERIFICATION_PLUGIN_MIN_VERSION,
    MAX_CHAIN_CERTIFICATES, PAYLOAD_CONTENT_TYPE,
};
use crate::verify::x509::Certificate;

/// CBOR tag of `COSE_Sign1_Tagged` (RFC 9052 §4.2).
pub(crate) const TAG_COSE_SIGN1: u64 = 18;
/// CBOR tag of an epoch-based date/time (RFC 8949 §3.4.2).
const TAG_EPOCH_TIME: u64 = 1;
/// Protected header label: the signature algorithm.
pub(crate) const LABEL_ALG: i128 = 1;
/// Protected header label: the critical header labels.
pub(crate) const LABEL_CRIT: i128 = 2;
/// Protected header label: the payload content type.
pub(crate) const LABEL_CONTENT_TYPE: i128 = 3;
/// Header label of the certificate chain (`x5chain`, RFC 9360).
pub(crate) const LABEL_X5CHAIN: i128 = 33;
/// Unprotected header carrying an RFC 3161 `TimeStampToken` (bstr).
pub(crate) const HEADER_TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";
/// `Sig_structure` context of COSE_Sign1 (RFC 9052 §4.4).
const SIGNATURE1_CONTEXT: &str = "Signature1";
/// CBOR nesting accepted; a Notary envelope needs four levels.
const MAX_CBOR_DEPTH: usize = 16;

/// What in the COSE envelope is malformed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CoseError {
    #[error("it is not a single well-formed CBOR data item")]
    Cbor,
    #[error("it is not a COSE_Sign1_Tagged message (CBOR tag 18)")]
    NotTagged,
    #[error("COSE_Sign1 must be an array of protected (bstr), unprotected (map), payload (bstr) and signature (bstr)")]
    Structure,
    #[error("the payload is detached (nil); a Notary Project signature carries its payload")]
    DetachedPayload,
    #[error("the protected header is not an encoded CBOR map")]
    ProtectedHeader,
    #[error("header label {label} appears more than once")]
    DuplicateLabel { label: String },
    #[error("header labels must be integers or text strings")]
    LabelType,
    #[error("header {name} must be {expected}")]
    HeaderType {
        name: String,
        expected: &'static str,
    },
    #[error("header {name:?} must be an epoch date/time (CBOR tag 1) within range")]
    Time { name: &'static str },
    #[error("crit (label 2) must be a non-empty array of integer or text labels")]
    Crit,
    #[error("the envelope has no x5chain (label 33) certificate chain")]
    MissingX5chain,
    #[error("x5chain must be a byte string or an array of byte strings")]
    X5chainType,
    #[error("the timestamp countersignature must be a byte string")]
    TimestampSignature,
}

/// A header label: COSE allows integers and text strings.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    Int(i128),
    Text(String),
}

impl Label {
    fn display(&self) -> String {
        match self {
            Label::Int(i) => i.to_string(),
            Label::Text(t) => format!("{:?}", t.chars().take(128).collect::<String>()),
        }
    }

    fn name(&self) -> String {
        match self {
            Label::Int(i) => i.to_string(),
            Label::Text(t) => t.chars().take(128).collect(),
        }
    }
}

/// A decoded header map, labels unique, in the order received.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderMap(Vec<(Label, Value)>);

impl HeaderMap {
    fn from_value(value: Value) -> Result<Self, CoseError> {
        let Value::Map(entries) = value else {
            return Err(CoseError::Structure);
        };
        let mut out: Vec<(Label, Value)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let label = match k {
                Value::Integer(i) => Label::Int(i.into()),
                Value::Text(t) => Label::Text(t),
                _ => return Err(CoseError::LabelType),
            };
            if out.iter().any(|(l, _)| *l == label) {
                return Err(CoseError::DuplicateLabel {
                    label: label.display(),
                });
            }
            out.push((label, v));
        }
        Ok(Self(out))
    }

    fn get_int(&self, label: i128) -> Option<&Value> {
        self.0
            .iter()
            .find(|(l, _)| *l == Label::Int(label))
            .map(|(_, v)| v)
    }

    fn get_text(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
            .map(|(_, v)| v)
    }

    fn contains(&self, label: &Label) -> bool {
        self.0.iter().any(|(l, _)| l == label)
    }
}

/// A structurally valid COSE_Sign1 envelope whose signature is not yet checked.
#[derive(Debug)]
pub(crate) struct Envelope {
    /// The protected header bstr exactly as received (signed as is).
    protected_bytes: Vec<u8>,
    pub(crate) protected: HeaderMap,
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    /// Leaf first, never empty.
    pub(crate) chain: Vec<Certificate>,
    /// The RFC 3161 token, still unverified.
    pub(crate) timestamp_signature: Option<Vec<u8>>,
}

fn decode(bytes: &[u8]) -> Result<Value, CoseError> {
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_CBOR_DEPTH)
        .map_err(|_| CoseError::Cbor)?;
    // One data item, nothing after it.
    if !reader.is_empty() {
        return Err(CoseError::Cbor);
    }
    Ok(value)
}

/// Parses the envelope structure.
///
/// [Signature Envelope](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-cose.md#signature-envelope):
/// "The final signature envelope is a `COSE_Sign1_Tagged` object, consisting
/// of Payload, ProtectedHeaders, UnprotectedHeaders, and Signature."
///
/// # Errors
/// [`NotaryError::MalformedCose`], [`NotaryError::TooManyCertificates`] or
/// [`NotaryError::Certificate`] for an x5chain entry that is not a usable certificate.
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, NotaryError> {
    let Value::Tag(TAG_COSE_SIGN1, inner) = decode(bytes)? else {
        return Err(CoseError::NotTagged.into());
    };
    let Value::Array(items) = *inner else {
        return Err(CoseError::Structure.into());
    };
    let [protected, unprotected, payload, signature]: [Value; 4] =
        items.try_into().map_err(|_| CoseError::Structure)?;
    let Value::Bytes(protected_bytes) = protected else {
        return Err(CoseError::Structure.into());
    };
    let protected = parse_protected(&protected_bytes)?;
    let unprotected = HeaderMap::from_value(unprotected)?;
    // RFC 9052 §3: "The same parameter MUST NOT occur in both the protected
    // and unprotected headers", else a verifier could read the unsigned one.
    if let Some((label, _)) = unprotected.0.iter().find(|(l, _)| protected.contains(l)) {
        return Err(CoseError::DuplicateLabel {
            label: label.display(),
        }
        .into());
    }
    let payload = match payload {
        Value::Bytes(b) => b,
        Value::Null => return Err(CoseError::DetachedPayload.into()),
        _ => return Err(CoseError::Structure.into()),
    };
    let Value::Bytes(signature) = signature else {
        return Err(CoseError::Structure.into());
    };

    // [Unprotected Headers]: "x5chain (array of bstr): This REQUIRED parameter
    // ... The certificate containing the public key corresponding to the key
    // used to digitally sign the COSE MUST be the first certificate ...
    // Optionally, this header can be presented in the protected header."
    // RFC 9360 §2: a single certificate may be a bare bstr.
    let x5chain = protected
        .get_int(LABEL_X5CHAIN)
        .or_else(|| unprotected.get_int(LABEL_X5CHAIN))
        .ok_or(CoseError::MissingX5chain)?;
    let ders: Vec<&[u8]> = match x5chain {
        Value::Bytes(der) => vec![der.as_slice()],
        Value::Array(items) => {
            if items.len() > MAX_CHAIN_CERTIFICATES {
                return Err(NotaryError::TooManyCertificates {
                    count: items.len(),
                    limit: MAX_CHAIN_CERTIFICATES,
                });
            }
            items
                .iter()
                .map(|v| match v {
                    Value::Bytes(der) => Ok(der.as_slice()),
                    _ => Err(CoseError::X5chainType),
                })
                .collect::<Result<_, _>>()?
        }
        _ => return Err(CoseError::X5chainType.into()),
    };
    if ders.is_empty() {
        return Err(CoseError::MissingX5chain.into());
    }
    let mut chain = Vec::with_capacity(ders.len());
    for (index, der) in ders.into_iter().enumerate() {
        chain.push(
            Certificate::from_der(der)
                .map_err(|reason| NotaryError::Certificate { index, reason })?,
        );
    }
    let timestamp_signature = match unprotected.get_text(HEADER_TIMESTAMP_SIGNATURE) {
        None => None,
        Some(Value::Bytes(b)) => Some(b.clone()),
        Some(_) => return Err(CoseError::TimestampSignature.into()),
    };
    Ok(Envelope {
        protected_bytes,
        protected,
        payload,
        signature,
        chain,
        timestamp_signature,
    })
}

/// Decodes a protected header bstr's content.
///
/// RFC 9052 §3: "empty_or_serialized_map ... a zero-length byte string"
/// stands for an empty protected header.
///
/// # Errors
/// [`NotaryError::MalformedCose`].
pub(crate) fn parse_protected(bytes: &[u8]) -> Result<HeaderMap, NotaryError> {
    if bytes.is_empty() {
        return Ok(HeaderMap::default());
    }
    let value = decode(bytes).map_err(|_| CoseError::ProtectedHeader)?;
    HeaderMap::from_value(value).map_err(|e| {
        match e {
            CoseError::Structure => CoseError::ProtectedHeader,
            e => e,
        }
        .into()
    })
}

fn text_header<'a>(map: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, NotaryError> {
    match map.get_text(name) {
        None => Ok(None),
        Some(Value::Text(s)) => Ok(Some(s)),
        Some(_) => Err(CoseError::HeaderType {
            name: format!("{name:?}"),
            expected: "a text string",
        }
        .into()),
    }
}

/// [Protected Header](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-cose.md#protected-header):
/// times are "an Epoch-Based Date/Time defined in RFC 8949 ... The optional
/// fractional seconds SHOULD NOT be used" (so they are accepted, and
/// truncated towards the past).
pub(crate) fn time_header(
    map: &HeaderMap,
    name: &'static str,
) -> Result<Option<SystemTime>, NotaryError> {
    let Some(value) = map.get_text(name) else {
        return Ok(None);
    };
    let bad = || NotaryError::from(CoseError::Time { name });
    let Value::Tag(TAG_EPOCH_TIME, inner) = value else {
        return Err(bad());
    };
    let seconds: i128 = match inner.as_ref() {
        Value::Integer(i) => (*i).into(),
        // In range of i64 seconds, so the cast cannot saturate silently.
        Value::Float(f) if f.is_finite() && f.abs() < 9.0e15 => f.floor() as i128,
        _ => return Err(bad()),
    };
    let magnitude = u64::try_from(seconds.unsigned_abs()).map_err(|_| bad())?;
    let offset = Duration::from_secs(magnitude);
    let time = if seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(offset)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(offset)
    };
    time.map(Some).ok_or_else(bad)
}

/// Applies the protected header rules of the COSE envelope spec.
///
/// # Errors
/// The first rule broken.
pub(crate) fn check_protected_header(map: &HeaderMap) -> Result<Header, NotaryError> {
    // "alg (int): This REQUIRED parameter (label 1) defines which signing
    // algorithm was used".
    let alg = match map.get_int(LABEL_ALG) {
        None => return Err(NotaryError::MissingHeader { name: "alg (1)" }),
        Some(Value::Integer(i)) => {
            let value: i128 = (*i).into();
            Algorithm::from_cose(value).ok_or_else(|| NotaryError::UnsupportedAlgorithm {
                alg: value.to_string(),
            })?
        }
        Some(Value::Text(name)) => {
            return Err(NotaryError::UnsupportedAlgorithm {
                alg: name.chars().take(32).collect(),
            })
        }
        Some(_) => {
            return Err(CoseError::HeaderType {
                name: "alg (1)".to_owned(),
                expected: "an integer",
            }
            .into())
        }
    };

    // "content type (tstr): The REQUIRED parameter content type (label 3) ...
    // The supported value is application/vnd.cncf.notary.payload.v1+json."
    match map.get_int(LABEL_CONTENT_TYPE) {
        None => {
            return Err(NotaryError::MissingHeader {
                name: "content type (3)",
            })
        }
        Some(Value::Text(cty)) if cty == PAYLOAD_CONTENT_TYPE => {}
        Some(Value::Text(cty)) => {
            return Err(NotaryError::UnsupportedContentType {
                cty: cty.chars().take(128).collect(),
            })
        }
        Some(Value::Integer(i)) => {
            return Err(NotaryError::UnsupportedContentType {
                cty: i128::from(*i).to_string(),
            })
        }
        Some(_) => {
            return Err(CoseError::HeaderType {
                name: "content type (3)".to_owned(),
                expected: "a text string",
            }
            .into())
        }
    }

    // "crit (array of int/tstr): This REQUIRED parameter (label 2) lists the
    // header parameters that implementations MUST understand and process. It
    // MUST only contain parameters apart from integer labels in the range of
    // 0 to 8. This header MUST contain io.cncf.notary.signingScheme ... and
    // optionally contain io.cncf.notary.authenticSigningTime and
    // io.cncf.notary.expiry if these critical headers are present".
    // RFC 9052 §3.1: "The array MUST have at least one value in it."
    let crit: Vec<Label> = match map.get_int(LABEL_CRIT) {
        None => return Err(NotaryError::MissingHeader { name: "crit (2)" }),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::Integer(i) => Ok(Label::Int((*i).into())),
                Value::Text(t) => Ok(Label::Text(t.clone())),
                _ => Err(CoseError::Crit),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(CoseError::Crit.into()),
    };
    // [Guidelines for implementations]: a verifier without the plugin
    // protocol "MUST fail signature verification if it cannot perform the
    // equivalent verification logic". The one plugin whose logic is
    // implemented (AWS Signer's, `aws_signer`) signs JWS envelopes only, so
    // in COSE any plugin attribute fails.
    for name in [
        HEADER_VERIFICATION_PLUGIN,
        HEADER_VERIFICATION_PLUGIN_MIN_VERSION,
    ] {
        if map.get_text(name).is_some() {
            return Err(NotaryError::UnsupportedCriticalHeader {
                name: name.to_owned(),
            });
        }
    }
    const KNOWN_CRITICAL: [&str; 3] = [
        HEADER_SIGNING_SCHEME,
        HEADER_EXPIRY,
        HEADER_AUTHENTIC_SIGNING_TIME,
    ];
    for label in &crit {
        let reserved = matches!(label, Label::Int(0..=8));
        if reserved || !map.contains(label) {
            return Err(NotaryError::InvalidCriticalHeader { name: label.name() });
        }
        // [Extended attributes]: "unknown critical attributes MUST cause
        // signature verification to fail."
        let known = matches!(label, Label::Text(t) if KNOWN_CRITICAL.contains(&t.as_str()));
        if !known {
            return Err(NotaryError::UnknownCriticalHeader { name: label.name() });
        }
    }
    for name in KNOWN_CRITICAL {
        let label = Label::Text(name.to_owned());
        if map.contains(&label) && !crit.contains(&label) {
            return Err(NotaryError::MissingCriticalHeader {
                name: name.to_owned(),
            });
        }
    }

    let scheme_name =
        text_header(map, HEADER_SIGNING_SCHEME)?.ok_or(NotaryError::MissingHeader {
            name: HEADER_SIGNING_SCHEME,
        })?;
    super::signed_attributes(
        alg,
        scheme_name,
        time_header(map, HEADER_SIGNING_TIME)?,
        time_header(map, HEADER_AUTHENTIC_SIGNING_TIME)?,
        time_header(map, HEADER_EXPIRY)?,
    )
}

/// `ToBeSigned`: the CBOR encoding of
/// `["Signature1", body_protected, external_aad = h'', payload]`.
///
/// [Signature](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-cose.md#signature):
/// "Construct the `Sig_structure` for `COSE_Sign1` ... Encode `Sig_structure`
/// into a CBOR object as a byte string named `ToBeSigned`." ciborium writes
/// definite lengths in their shortest form, the deterministic encoding RFC
/// 9052 §9 asks for here.
pub(crate) fn to_be_signed(protected: &[u8], payload: &[u8]) -> Result<Vec<u8>, NotaryError> {
    let structure = Value::Array(vec![
        Value::Text(SIGNATURE1_CONTEXT.to_owned()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]);
    let mut out = Vec::with_capacity(protected.len() + payload.len() + 32);
    ciborium::ser::into_writer(&structure, &mut out)
        .map_err(|_| NotaryError::Internal("cannot encode Sig_structure"))?;
    Ok(out)
}

/// Checks `alg` against the signing key, then the signature over the
/// `Sig_structure`.
///
/// # Errors
/// [`NotaryError::AlgorithmKeyMismatch`] or [`NotaryError::SignatureInvalid`].
pub(crate) fn verify_signature(envelope: &Envelope, alg: Algorithm) -> Result<(), NotaryError> {
    let tbs = to_be_signed(&envelope.protected_bytes, &envelope.payload)?;
    super::verify_leaf_signature(alg, &envelope.chain, &tbs, &envelope.signature)
}
