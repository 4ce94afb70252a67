//! Notary Project COSE envelopes (notaryproject/specifications
//! `specs/signature-envelope-cose.md`): COSE_Sign1_Tagged, the chain in the
//! unprotected `x5chain` (label 33).

use ciborium::Value;

use crate::jws::{HEADER_SIGNING_SCHEME, HEADER_SIGNING_TIME, PAYLOAD_CONTENT_TYPE, SIGNING_AGENT};
use crate::key::Key;

/// One COSE header: `(label, value)` pairs in the order written.
pub type Header = Vec<(Value, Value)>;

/// A `notary.x509` COSE protected header for COSE `alg`, signed 2021-01-01
/// (epoch 1609459200).
pub fn cose_header(alg: i64) -> Header {
    vec![
        (Value::from(1), Value::from(alg)),
        (
            Value::from(2),
            Value::Array(vec![Value::from(HEADER_SIGNING_SCHEME)]),
        ),
        (Value::from(3), Value::from(PAYLOAD_CONTENT_TYPE)),
        (
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from("notary.x509"),
        ),
        (
            Value::from(HEADER_SIGNING_TIME),
            Value::Tag(1, Box::new(Value::from(1_609_459_200_i64))),
        ),
    ]
}

/// Sets (or adds) one header entry.
pub fn cose_set(header: &mut Header, label: Value, value: Value) {
    match header.iter_mut().find(|(l, _)| *l == label) {
        Some(entry) => entry.1 = value,
        None => header.push((label, value)),
    }
}

/// Removes one header entry.
pub fn cose_remove(header: &mut Header, label: &Value) {
    header.retain(|(l, _)| l != label);
}

/// `value`, CBOR-encoded.
pub fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a `Value` into a `Vec` cannot fail: no I/O, every value encodes.
    if ciborium::ser::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// A COSE_Sign1_Tagged envelope signed by `signer`, `x5chain` (DER, leaf
/// first) unprotected.
pub fn cose_envelope(
    protected: &[(Value, Value)],
    payload: &[u8],
    signer: &Key,
    x5chain: &[Vec<u8>],
) -> Vec<u8> {
    cose_envelope_with(
        protected,
        payload,
        &|msg| signer.sign(msg),
        x5chain,
        Vec::new(),
    )
}

/// Like [`cose_envelope`], with any signing function and extra unprotected
/// entries. The signature is over `Sig_structure` (RFC 9052 §4.4):
/// `["Signature1", protected, h'', payload]`.
pub fn cose_envelope_with(
    protected: &[(Value, Value)],
    payload: &[u8],
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
    x5chain: &[Vec<u8>],
    extra_unprotected: Header,
) -> Vec<u8> {
    let protected = cbor(&Value::Map(protected.to_vec()));
    let tbs = cbor(&Value::Array(vec![
        Value::from("Signature1"),
        Value::Bytes(protected.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]));
    let mut unprotected = vec![
        (
            Value::from(33),
            Value::Array(x5chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
        ),
        (
            Value::from("io.cncf.notary.signingAgent"),
            Value::from(SIGNING_AGENT),
        ),
    ];
    unprotected.extend(extra_unprotected);
    cbor(&Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(unprotected),
            Value::Bytes(payload.to_vec()),
            Value::Bytes(sign(&tbs)),
        ])),
    ))
}
