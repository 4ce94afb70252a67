//! Notary Project JWS envelopes (notaryproject/specifications
//! `specs/signature-envelope-jws.md`): the protected header, the payload, and
//! the flattened JWS JSON serialization signed over them.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::key::Key;

/// `cty` of the Notary payload (JWS) and content type of the COSE payload.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// Protected header naming the signing scheme.
pub const HEADER_SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
/// Protected header of the signing time (`notary.x509`).
pub const HEADER_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
/// The `io.cncf.notary.signingAgent` of [`envelope`] and [`envelope_signed_by`].
pub const SIGNING_AGENT: &str = "pullgate-tests/0";

/// The digest [`payload`] names.
pub const TARGET_DIGEST: &str =
    "sha256:73c803930ea3ba1e54bc25c2bdc53edd0284c62ed651fe7b00369da519a3c333";

/// A `notary.x509` protected header for `alg`, signed 2021-01-01.
pub fn header(alg: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("alg".into(), json!(alg));
    map.insert("cty".into(), json!(PAYLOAD_CONTENT_TYPE));
    map.insert("crit".into(), json!([HEADER_SIGNING_SCHEME]));
    map.insert(HEADER_SIGNING_SCHEME.into(), json!("notary.x509"));
    map.insert(HEADER_SIGNING_TIME.into(), json!("2021-01-01T00:00:00Z"));
    map
}

/// A Notary payload whose target artifact is an image manifest of [`TARGET_DIGEST`].
pub fn payload() -> Vec<u8> {
    json!({
        "targetArtifact": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": TARGET_DIGEST,
            "size": 16724,
            "annotations": {"io.wabbit-networks.buildId": "123"}
        }
    })
    .to_string()
    .into_bytes()
}

/// A flattened JWS envelope signed by `signer` with the chain `x5c` (DER, leaf first).
pub fn envelope(
    header: &Map<String, Value>,
    payload: &[u8],
    signer: &Key,
    x5c: &[Vec<u8>],
) -> Vec<u8> {
    envelope_signed_by(header, payload, &|msg| signer.sign(msg), x5c)
}

/// Like [`envelope`], with any signing function (for keys rcgen cannot hold).
pub fn envelope_signed_by(
    header: &Map<String, Value>,
    payload: &[u8],
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
    x5c: &[Vec<u8>],
) -> Vec<u8> {
    envelope_with_agent(header, payload, sign, x5c, SIGNING_AGENT)
}

/// Like [`envelope_signed_by`], with the unprotected `io.cncf.notary.signingAgent` given.
///
/// The signature is over the JWS signing input,
/// `BASE64URL(UTF8(protected)) '.' BASE64URL(payload)`.
pub fn envelope_with_agent(
    header: &Map<String, Value>,
    payload: &[u8],
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
    x5c: &[Vec<u8>],
    signing_agent: &str,
) -> Vec<u8> {
    let protected = URL_SAFE_NO_PAD.encode(Value::Object(header.clone()).to_string());
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let signature = URL_SAFE_NO_PAD.encode(sign(format!("{protected}.{payload}").as_bytes()));
    json!({
        "payload": payload,
        "protected": protected,
        "header": {
            "x5c": x5c.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
            "io.cncf.notary.signingAgent": signing_agent,
        },
        "signature": signature,
    })
    .to_string()
    .into_bytes()
}
