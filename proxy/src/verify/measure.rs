//! The verifier's entry points for `bench/` (criterion micro-benchmarks):
//! small public wrappers over the crate-private verifier, so the benchmarks
//! measure exactly the code the gate runs without making its types public.
//!
//! Nothing here is meant for other callers: the gate calls
//! `notary::verify` (and, once wired, `cosign::simple_signing::verify` and
//! `cosign::bundle::verify_image_bundle`) directly and keeps its typed report.

use std::time::SystemTime;

use super::notary::{self, Anchors, Options};
use super::x509;

/// A parsed X.509 certificate (opaque).
#[derive(Debug, Clone)]
pub struct Certificate(x509::Certificate);

/// Parses every certificate of a PEM or DER file; `None` if any is unusable.
pub fn parse_certificates(bytes: &[u8]) -> Option<Vec<Certificate>> {
    x509::parse_certificate_file(bytes)
        .ok()
        .map(|certs| certs.into_iter().map(Certificate).collect())
}

/// The Notary Project envelope formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/jose+json`
    Jws,
    /// `application/cose`
    Cose,
}

impl Format {
    fn media_type(self) -> &'static str {
        match self {
            Format::Jws => notary::MEDIA_TYPE_JWS,
            Format::Cose => notary::MEDIA_TYPE_COSE,
        }
    }
}

/// Full verification (integrity, chain to `ca`, validity at `now`, expiry)
/// with default options; true when every check passes.
pub fn verify(format: Format, envelope: &[u8], ca: &[Certificate], now: SystemTime) -> bool {
    let anchors = Anchors {
        ca: ca.iter().map(|c| &c.0).collect(),
        ..Anchors::default()
    };
    let report = notary::verify(
        format.media_type(),
        envelope,
        &anchors,
        Options::default(),
        &super::revocation::NoRevocationData,
        now,
    );
    report.checks.iter().all(|c| c.result.is_ok())
}

/// Envelope parsing alone: structure, protected header rules and the
/// certificates, without any signature check. Returns the chain.
pub fn parse_envelope(format: Format, envelope: &[u8]) -> Option<Vec<Certificate>> {
    let chain = match format {
        Format::Jws => {
            let e = notary::jws::parse(envelope).ok()?;
            notary::jws::check_protected_header(&e.protected).ok()?;
            e.chain
        }
        Format::Cose => {
            let e = notary::cose::parse(envelope).ok()?;
            notary::cose::check_protected_header(&e.protected).ok()?;
            e.chain
        }
    };
    Some(chain.into_iter().map(Certificate).collect())
}

/// Chain validation alone: the code-signing chain rules (certificate
/// signatures included), a `ca` anchor in the chain, validity at `at`.
pub fn validate_chain(chain: &[Certificate], ca: &[Certificate], at: SystemTime) -> bool {
    let chain: Vec<x509::Certificate> = chain.iter().map(|c| c.0.clone()).collect();
    let anchors: Vec<&x509::Certificate> = ca.iter().map(|c| &c.0).collect();
    notary::chain::validate_code_signing_chain(&chain).is_ok()
        && notary::chain::trusted_index(&chain, &anchors).is_some()
        && notary::chain::check_validity(&chain, at).is_ok()
}

/// cosign trust material: named public keys and a Sigstore trusted root (opaque).
#[derive(Debug, Clone)]
pub struct CosignTrust(super::cosign::trust::CosignTrust);

/// Parses cosign keys (`(file name, PEM)`) and an optional
/// `trusted_root.json`; `None` if any is unusable.
pub fn cosign_trust(keys: &[(&str, &[u8])], trusted_root: Option<&[u8]>) -> Option<CosignTrust> {
    use super::cosign::trust::{CosignKey, SigstoreRoot};
    let keys = keys
        .iter()
        .map(|(name, pem)| CosignKey::from_pem(name, pem).ok())
        .collect::<Option<Vec<_>>>()?;
    let root = match trusted_root {
        Some(json) => Some(std::sync::Arc::new(
            SigstoreRoot::from_json("trusted_root.json", json).ok()?,
        )),
        None => None,
    };
    Some(CosignTrust(super::cosign::trust::CosignTrust {
        keys,
        root,
    }))
}

/// Full verification of a cosign simple-signing layer (payload and
/// annotations) for the image `repository@digest`; true when every check
/// passes and a signer was established.
pub fn cosign_simple_signing(
    trust: &CosignTrust,
    payload: &[u8],
    annotations: &std::collections::BTreeMap<String, String>,
    repository: &str,
    digest: &str,
    now: SystemTime,
) -> bool {
    use super::cosign::{simple_signing, ImageSubject, SignatureLayer, MEDIA_TYPE_SIMPLE_SIGNING};
    let (Ok(repository), Ok(digest)) = (
        repository.parse::<pullgate_policy::Repository>(),
        digest.parse::<pullgate_policy::Digest>(),
    ) else {
        return false;
    };
    let layer = SignatureLayer {
        media_type: MEDIA_TYPE_SIMPLE_SIGNING,
        payload,
        annotations,
    };
    let subject = ImageSubject {
        repository: &repository,
        digest: &digest,
    };
    let report = simple_signing::verify(layer, &trust.0, subject, now);
    report.signer.is_some() && report.first_failure().is_none()
}

/// Full verification of a Sigstore bundle over blob bytes (the
/// sigstore-conformance shape); true when every check passes.
pub fn cosign_bundle(trust: &CosignTrust, bundle: &[u8], artifact: &[u8], now: SystemTime) -> bool {
    let report = super::cosign::bundle::verify_blob_bundle(bundle, artifact, &trust.0, now);
    report.signer.is_some() && report.first_failure().is_none()
}

/// Verification of a Sigstore bundle attached to the image
/// `repository@digest` (OCI referrer); true when every check passes.
pub fn cosign_image_bundle(
    trust: &CosignTrust,
    bundle: &[u8],
    repository: &str,
    digest: &str,
    now: SystemTime,
) -> bool {
    use super::cosign::{bundle, ImageSubject};
    let (Ok(repository), Ok(digest)) = (
        repository.parse::<pullgate_policy::Repository>(),
        digest.parse::<pullgate_policy::Digest>(),
    ) else {
        return false;
    };
    let subject = ImageSubject {
        repository: &repository,
        digest: &digest,
    };
    let report = bundle::verify_image_bundle(bundle, &trust.0, subject, now);
    report.signer.is_some() && report.first_failure().is_none()
}
