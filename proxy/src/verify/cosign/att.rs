//! cosign v2 `.att` layers: an attestation as `cosign attest` wrote it
//! before the bundle format, one per layer of the `sha256-<hex>.att`
//! manifest.
//!
//! Input: the layer (media type `application/vnd.dsse.envelope.v1+json`,
//! the DSSE envelope as its blob, cosign's annotations), the scope's
//! [`CosignTrust`], the [`ImageSubject`], the predicate type required and
//! `now`. Output: the [`Report`] (as for a `.sig` layer) and the in-toto
//! statement when its Payload check passed.
//!
//! The signature is the envelope's (DSSE v1 over `PAE(payloadType,
//! payload)`, secure-systems-lab/dsse `protocol.md`), not the layer's
//! `dev.cosignproject.cosign/signature` annotation (cosign leaves it
//! empty). Key-based and keyless as for `.sig`: without a trusted root a
//! key-based envelope is checked here against each configured key; with one
//! (and always for keyless, whose certificate is in
//! `dev.sigstore.cosign/certificate`), the envelope, its certificate or key
//! and its Rekor entry (the SET in `dev.sigstore.cosign/bundle`, an
//! `intoto` entry) go into a Sigstore bundle v0.1 that `sigstore-verify`
//! checks exactly as a `cosign attest --new-bundle-format` bundle.

use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;
use sigstore_verify::types::SignatureBytes;

use super::trust::CosignTrust;
use super::{
    bundle, payload, simple_signing, AnnotationProblem, CosignCheck, CosignFormat, CosignSigner,
    Error, ImageSubject, Report, SignatureLayer, ANNOTATION_BUNDLE, ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN, MAX_BUNDLE_BYTES,
};
use crate::verify::intoto;

/// Media type of a `.att` layer: one DSSE envelope.
pub(crate) const MEDIA_TYPE_DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation cosign v2 writes with the statement's predicate type.
pub(crate) const ANNOTATION_PREDICATE_TYPE: &str = "predicateType";

/// A DSSE envelope as JSON (secure-systems-lab/dsse `envelope.md`).
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
    #[serde(default)]
    keyid: String,
}

/// The envelope's payload type and decoded payload, for the predicate type
/// before any check (`None` when it is not an envelope).
pub(crate) fn payload_of(blob: &[u8]) -> Option<(String, Vec<u8>)> {
    if blob.len() > MAX_BUNDLE_BYTES {
        return None;
    }
    let env: Envelope = serde_json::from_slice(blob).ok()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env.payload.trim())
        .ok()?;
    Some((env.payload_type, payload))
}

/// Verifies one `.att` layer for `subject` as an attestation of `predicate_type`.
pub(crate) fn verify(
    layer: SignatureLayer<'_>,
    trust: &CosignTrust,
    subject: ImageSubject<'_>,
    predicate_type: &str,
    now: SystemTime,
) -> (Report, Option<intoto::Statement>) {
    let mut report = Report::new(CosignFormat::SimpleSigning);
    let parsed = parse(layer);
    let (env, payload, sig) = match parsed {
        Ok(p) => p,
        Err(e) => {
            report.push(CosignCheck::Signature, Err(e));
            return (report, None);
        }
    };
    let cert = simple_signing::annotation(&layer, ANNOTATION_CERTIFICATE);
    let rekor = simple_signing::annotation(&layer, ANNOTATION_BUNDLE);
    let chain = simple_signing::annotation(&layer, ANNOTATION_CHAIN);
    let (cert, rekor, chain) = match (cert, rekor, chain) {
        (Ok(c), Ok(r), Ok(ch)) => (c, r, ch),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            report.push(CosignCheck::Signature, Err(e));
            return (report, None);
        }
    };
    if cert.is_none() && trust.root.is_none() {
        keyed(&env.payload_type, &payload, &sig, trust, &mut report);
        let statement = bundle::attestation_payload(
            &env.payload_type,
            &payload,
            subject,
            predicate_type,
            &mut report,
        );
        return (report, statement);
    }
    // A trusted root (or a certificate, which needs one): the log entry
    // proves the signing time, and sigstore-verify checks all of it.
    let Some(rekor) = rekor else {
        report.push(CosignCheck::TransparencyLog, Err(Error::NoLogEntry));
        return (report, None);
    };
    let rekor = match payload::parse_rekor_bundle(rekor) {
        Ok(r) => r,
        Err(e) => {
            report.push(CosignCheck::TransparencyLog, Err(e.into()));
            return (report, None);
        }
    };
    let mut material = match cert {
        Some(cert) => match simple_signing::chain_material(cert, chain) {
            Ok(m) => m,
            Err(e) => {
                report.push(CosignCheck::Signature, Err(e));
                return (report, None);
            }
        },
        None => serde_json::json!({"publicKey": {"hint": ""}}),
    };
    if let Some(m) = material.as_object_mut() {
        m.insert(
            "tlogEntries".to_owned(),
            serde_json::json!([simple_signing::tlog_entry(&rekor)]),
        );
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let doc = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": b64(&payload),
            "payloadType": env.payload_type,
            "signatures": [{"sig": b64(&sig), "keyid": env.signatures.first().map(|s| s.keyid.as_str()).unwrap_or_default()}],
        },
    });
    bundle::verify_attestation_bundle(
        doc.to_string().as_bytes(),
        trust,
        subject,
        predicate_type,
        now,
    )
}

/// The envelope, its decoded payload and its one signature.
fn parse(layer: SignatureLayer<'_>) -> Result<(Envelope, Vec<u8>, Vec<u8>), Error> {
    if layer.media_type != MEDIA_TYPE_DSSE {
        return Err(Error::NotAttestationLayer {
            media_type: layer.media_type.chars().take(128).collect(),
        });
    }
    if layer.payload.len() > MAX_BUNDLE_BYTES {
        return Err(Error::TooLarge {
            what: "DSSE envelope",
            size: layer.payload.len(),
            limit: MAX_BUNDLE_BYTES,
        });
    }
    let env: Envelope = serde_json::from_slice(layer.payload)
        .map_err(|e| Error::Statement(std::sync::Arc::new(e)))?;
    let decode = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| Error::Annotation {
                name: "DSSE envelope",
                problem: AnnotationProblem::Base64,
            })
    };
    let payload = decode(&env.payload)?;
    // cosign writes one signature per envelope.
    let sig = match env.signatures.as_slice() {
        [one] => decode(&one.sig)?,
        _ => {
            return Err(Error::EnvelopeSignatures {
                count: env.signatures.len(),
            })
        }
    };
    Ok((env, payload, sig))
}

/// A key-based envelope without a trusted root: DSSE v1 signs
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
fn keyed(payload_type: &str, payload: &[u8], sig: &[u8], trust: &CosignTrust, report: &mut Report) {
    if trust.keys.is_empty() {
        report.push(CosignCheck::Signature, Err(Error::NoKeys));
        return;
    }
    if !super::provider::install() {
        report.push(
            CosignCheck::Signature,
            Err(Error::Internal("no Sigstore crypto provider")),
        );
        return;
    }
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(payload);
    let signature = SignatureBytes::new(sig.to_vec());
    let found = trust.keys.iter().find(|key| {
        key.schemes().iter().any(|scheme| {
            sigstore_verify::crypto::verify_signature(key.spki(), &pae, &signature, *scheme).is_ok()
        })
    });
    match found {
        Some(key) => {
            report.signer = Some(CosignSigner::Key {
                name: key.name().to_owned(),
            });
            report.push(CosignCheck::Signature, Ok(()));
        }
        None => report.push(
            CosignCheck::Signature,
            Err(Error::NoMatchingKey {
                configured: trust.keys.len(),
            }),
        ),
    }
}
