//! cosign `.sig` layers: the simple-signing payload and its annotations.
//!
//! Input: a [`SignatureLayer`] (media type, payload bytes, annotations),
//! the scope's [`CosignTrust`], the [`ImageSubject`] and `now`. Output: a
//! [`Report`] with Signature, Certificate (keyless), TransparencyLog (when
//! a log entry is needed), Payload and SignedIdentity.
//!
//! A layer with `dev.sigstore.cosign/certificate` is keyless: its
//! certificate, chain and Rekor SET (`dev.sigstore.cosign/bundle`) are put
//! into a Sigstore bundle v0.1 (message signature over the payload, the
//! certificate chain without self-signed roots, one Rekor v1 entry with its
//! inclusion promise) and verified by `sigstore-verify`, which checks the
//! SET with the trusted root's Rekor key, that the entry's body is this
//! signature over this payload by this certificate, the certificate chain
//! and SCT at the integrated time, and the signature. A key-based layer is
//! checked against each configured key; with a trusted root, its Rekor SET
//! is required and checked the same way.
//!
//! [containers-signature(5)](https://github.com/containers/image/blob/main/docs/containers-signature.5.md):
//! "`critical.image.docker-manifest-digest` ... Consumers MUST verify that
//! the digest matches the manifest of the image being verified"; "`critical.type`
//! ... consumers MUST reject a signature with an unexpected `type`" (cosign
//! writes `cosign container image signature`); `critical.identity.docker-reference`
//! is compared with the image's repository under `matchRepository`
//! (`signed_identity = "match_repository"`), or not at all under `any`.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use pullgate_policy::{Digest, ImageRef};
use sha2::Digest as _;
use sigstore_verify::types::{Artifact, Bundle, SignatureBytes};

use super::payload::{self, RekorBundle};
use super::trust::CosignTrust;
use super::{
    bundle, AnnotationProblem, CosignCheck, CosignFormat, CosignSigner, Error, ImageSubject,
    Report, SignatureLayer, ANNOTATION_BUNDLE, ANNOTATION_CERTIFICATE, ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE, MAX_ANNOTATION_BYTES, MAX_PAYLOAD_BYTES, MEDIA_TYPE_SIMPLE_SIGNING,
    SIMPLE_SIGNING_TYPE,
};
use crate::verify::x509;

const PROVIDER: &str = "another Sigstore crypto provider is installed in this process";

/// Verifies one cosign signature layer for `subject`; every check is reported.
pub(crate) fn verify(
    layer: SignatureLayer<'_>,
    trust: &CosignTrust,
    subject: ImageSubject<'_>,
    now: SystemTime,
) -> Report {
    let mut report = Report::new(CosignFormat::SimpleSigning);
    if !super::provider::install() {
        report.push(CosignCheck::Signature, Err(Error::Internal(PROVIDER)));
        return report;
    }
    if layer.payload.len() > MAX_PAYLOAD_BYTES {
        report.push(
            CosignCheck::Signature,
            Err(Error::TooLarge {
                what: "simple-signing payload",
                size: layer.payload.len(),
                limit: MAX_PAYLOAD_BYTES,
            }),
        );
        return report;
    }
    signature_checks(layer, trust, now, &mut report);
    payload_checks(layer.payload, subject, &mut report);
    report
}

pub(super) fn annotation<'a>(
    layer: &SignatureLayer<'a>,
    name: &'static str,
) -> Result<Option<&'a str>, Error> {
    match layer.annotations.get(name) {
        None => Ok(None),
        Some(v) if v.len() > MAX_ANNOTATION_BYTES => Err(Error::TooLarge {
            what: name,
            size: v.len(),
            limit: MAX_ANNOTATION_BYTES,
        }),
        Some(v) => Ok(Some(v.as_str())),
    }
}

fn signature_checks(
    layer: SignatureLayer<'_>,
    trust: &CosignTrust,
    now: SystemTime,
    report: &mut Report,
) {
    let parsed = (|| {
        if layer.media_type != MEDIA_TYPE_SIMPLE_SIGNING {
            return Err(Error::NotSimpleSigning {
                media_type: layer.media_type.chars().take(128).collect(),
            });
        }
        let sig_b64 =
            annotation(&layer, ANNOTATION_SIGNATURE)?.ok_or(Error::MissingAnnotation {
                name: ANNOTATION_SIGNATURE,
            })?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig_b64.trim())
            .map_err(|_| Error::Annotation {
                name: ANNOTATION_SIGNATURE,
                problem: AnnotationProblem::Base64,
            })?;
        Ok((
            sig,
            annotation(&layer, ANNOTATION_CERTIFICATE)?,
            annotation(&layer, ANNOTATION_CHAIN)?,
            annotation(&layer, ANNOTATION_BUNDLE)?,
        ))
    })();
    let (sig, cert, chain, rekor) = match parsed {
        Ok(p) => p,
        Err(e) => {
            report.push(CosignCheck::Signature, Err(e));
            return;
        }
    };
    let rekor = match rekor.map(payload::parse_rekor_bundle).transpose() {
        Ok(r) => r,
        Err(e) => {
            report.push(CosignCheck::TransparencyLog, Err(e.into()));
            return;
        }
    };
    match cert {
        Some(cert) => keyless(
            layer.payload,
            &sig,
            cert,
            chain,
            rekor.as_ref(),
            trust,
            now,
            report,
        ),
        None => keyed(layer.payload, &sig, rekor.as_ref(), trust, now, report),
    }
}

#[allow(clippy::too_many_arguments)] // one call site; the pieces of one layer
fn keyless(
    payload: &[u8],
    sig: &[u8],
    cert: &str,
    chain: Option<&str>,
    rekor: Option<&RekorBundle>,
    trust: &CosignTrust,
    now: SystemTime,
    report: &mut Report,
) {
    if trust.root.is_none() {
        report.push(CosignCheck::Signature, Err(Error::NoTrustedRoot));
        return;
    }
    let material = match chain_material(cert, chain) {
        Ok(m) => m,
        Err(e) => {
            report.push(CosignCheck::Signature, Err(e));
            return;
        }
    };
    let Some(rekor) = rekor else {
        report.push(CosignCheck::TransparencyLog, Err(Error::NoLogEntry));
        return;
    };
    match legacy_bundle(material, payload, sig, rekor) {
        Ok(b) => bundle::run(&b, Artifact::from(payload), trust, now, report),
        Err(e) => report.push(CosignCheck::TransparencyLog, Err(e)),
    }
}

/// The verification material of a keyless layer: its certificate
/// annotation and chain (without self-signed roots) as a bundle's
/// `x509CertificateChain`.
pub(super) fn chain_material(cert: &str, chain: Option<&str>) -> Result<serde_json::Value, Error> {
    let pem = |name: &'static str, text: &str| {
        x509::parse_certificate_file(text.as_bytes()).map_err(|_| Error::Annotation {
            name,
            problem: AnnotationProblem::Pem,
        })
    };
    let mut certs: Vec<Vec<u8>> = pem(ANNOTATION_CERTIFICATE, cert)?
        .into_iter()
        .take(1)
        .map(|c| c.der().to_vec())
        .collect();
    if let Some(chain) = chain {
        // Roots come from the trusted root, never from the signature; a
        // bundle may not carry one (sigstore-conformance
        // `bundle-with-root-cert_fail`).
        certs.extend(
            pem(ANNOTATION_CHAIN, chain)?
                .into_iter()
                .filter(|c| !c.is_self_signed())
                .map(|c| c.der().to_vec()),
        );
    }
    Ok(serde_json::json!({
        "x509CertificateChain": {
            "certificates": certs.iter().map(|c| serde_json::json!({"rawBytes": b64(c)})).collect::<Vec<_>>()
        }
    }))
}

fn keyed(
    payload: &[u8],
    sig: &[u8],
    rekor: Option<&RekorBundle>,
    trust: &CosignTrust,
    now: SystemTime,
    report: &mut Report,
) {
    if trust.keys.is_empty() {
        report.push(CosignCheck::Signature, Err(Error::NoKeys));
        return;
    }
    match (trust.root.is_some(), rekor) {
        (true, Some(rekor)) => {
            let material = serde_json::json!({"publicKey": {"hint": ""}});
            match legacy_bundle(material, payload, sig, rekor) {
                Ok(b) => bundle::run(&b, Artifact::from(payload), trust, now, report),
                Err(e) => report.push(CosignCheck::TransparencyLog, Err(e)),
            }
        }
        (has_root, _) => {
            let signature = SignatureBytes::new(sig.to_vec());
            let found = trust.keys.iter().find(|key| {
                key.schemes().iter().any(|scheme| {
                    sigstore_verify::crypto::verify_signature(
                        key.spki(),
                        payload,
                        &signature,
                        *scheme,
                    )
                    .is_ok()
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
            if has_root {
                report.push(CosignCheck::TransparencyLog, Err(Error::NoLogEntry));
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Sigstore bundle v0.1 holding a `.sig` layer's signature over the
/// payload, `material`, and its Rekor v1 entry (inclusion promise only, as
/// v0.1 allows).
/// A bundle's `tlogEntries[]` item for a Rekor v1 entry known by its SET
/// (inclusion promise only, as bundle v0.1 allows).
pub(super) fn tlog_entry(rekor: &RekorBundle) -> serde_json::Value {
    serde_json::json!({
        "logIndex": rekor.log_index.to_string(),
        "logId": {"keyId": b64(&rekor.log_id)},
        "kindVersion": {"kind": rekor.kind, "version": rekor.api_version},
        "integratedTime": rekor.integrated_time.to_string(),
        "inclusionPromise": {"signedEntryTimestamp": rekor.signed_entry_timestamp},
        "canonicalizedBody": rekor.body,
    })
}

fn legacy_bundle(
    material: serde_json::Value,
    payload: &[u8],
    sig: &[u8],
    rekor: &RekorBundle,
) -> Result<Bundle, Error> {
    let mut material = material;
    if let Some(m) = material.as_object_mut() {
        m.insert(
            "tlogEntries".to_owned(),
            serde_json::json!([tlog_entry(rekor)]),
        );
    }
    let doc = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&sha2::Sha256::digest(payload))},
            "signature": b64(sig),
        },
    });
    Bundle::from_json(&doc.to_string()).map_err(|e| Error::BundleMalformed(Arc::new(e)))
}

/// Payload and SignedIdentity: run whenever the payload parses.
fn payload_checks(payload: &[u8], subject: ImageSubject<'_>, report: &mut Report) {
    let parsed = match payload::parse_simple_signing(payload) {
        Ok(p) => p,
        Err(e) => {
            report.push(CosignCheck::Payload, Err(e.into()));
            return;
        }
    };
    let kind = if parsed.kind == SIMPLE_SIGNING_TYPE {
        Ok(())
    } else {
        Err(Error::WrongType {
            found: parsed.kind.chars().take(128).collect(),
        })
    };
    report.push(CosignCheck::Payload, kind);
    let digest = match parsed.manifest_digest.parse::<Digest>() {
        Ok(signed) => {
            report.target = Some(signed.clone());
            if &signed == subject.digest {
                Ok(())
            } else {
                Err(Error::DigestMismatch {
                    expected: subject.digest.clone(),
                    signed,
                })
            }
        }
        Err(_) => Err(Error::InvalidSignedDigest {
            signed: parsed.manifest_digest.chars().take(128).collect(),
        }),
    };
    report.push(CosignCheck::Payload, digest);
    let identity = match parsed.docker_reference.parse::<ImageRef>() {
        Ok(r) if r.repository() == subject.repository => Ok(()),
        Ok(r) => Err(Error::RepositoryMismatch {
            expected: subject.repository.clone(),
            signed: r.repository().clone(),
        }),
        Err(_) => Err(Error::InvalidDockerReference {
            signed: parsed.docker_reference.chars().take(256).collect(),
        }),
    };
    report.push(CosignCheck::SignedIdentity, identity);
}
