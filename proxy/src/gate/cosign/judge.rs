//! The pure half of checking one cosign signature: running the verifier on
//! a simple-signing layer or a Sigstore bundle ([`verify`]), and judging its
//! report ([`judge`]) under the scope's `[scope.cosign]` table (trusted keys
//! and keyless identities, the checks each format and signer need) and the
//! check that the signature names the digest being decided.
//!
//! Input: the fetched signature, or a `cosign::Report`, and the scope's
//! `CosignRequirement`. Output: an [`Accepted`] signer, or the
//! [`FailureReason`] that rejected it. No I/O and no clock; [`verify`] is
//! CPU-bound and runs on the blocking pool (the caller, `gate::cosign`,
//! fetches).
//!
//! An accepted cosign signature sets no instant past which its allow must
//! not be served: it was judged at its proven signing time (see
//! `verify::cosign`, "Expiry and caching"); the keys and trusted root it
//! relied on are part of the policy's fingerprint.

use std::sync::Arc;
use std::time::SystemTime;

use pullgate_policy::requirements::{CosignCheck, CosignRejection, CosignRequirement};
use pullgate_policy::Digest;

use crate::gate::decision::FailureReason;
use crate::gate::verdict::Accepted;
use crate::verify::cosign::trust::CosignTrust;
use crate::verify::cosign::{self, bundle, simple_signing, ImageSubject, SignatureLayer};

/// One cosign signature as fetched.
#[derive(Debug, Clone, Copy)]
pub(in crate::gate) enum Fetched<'a> {
    /// A simple-signing layer (of a `.sig` manifest or a signature referrer).
    Layer(SignatureLayer<'a>),
    /// A Sigstore bundle's bytes (the layer of a bundle referrer).
    Bundle(&'a [u8]),
}

/// Runs the cosign verifier on one signature. CPU-bound: call on the blocking pool.
pub(in crate::gate) fn verify(
    fetched: Fetched<'_>,
    trust: &CosignTrust,
    subject: ImageSubject<'_>,
    now: SystemTime,
) -> cosign::Report {
    match fetched {
        Fetched::Layer(layer) => simple_signing::verify(layer, trust, subject, now),
        Fetched::Bundle(bytes) => bundle::verify_image_bundle(bytes, trust, subject, now),
    }
}

/// Applies the scope's `[scope.cosign]` table and the target check to one
/// verifier report.
pub(in crate::gate) fn judge(
    requirement: &CosignRequirement,
    report: &cosign::Report,
    digest: &Digest,
) -> Result<Accepted, FailureReason> {
    let failed = |check: CosignCheck, rejection: CosignRejection| match report.check(check) {
        Some(Err(e)) => FailureReason::Cosign {
            check,
            error: Arc::new(e.clone()),
        },
        _ => FailureReason::CosignRejected(rejection),
    };
    // No key or certificate verified the signature: say why.
    let Some(signer) = &report.signer else {
        return Err(match report.first_failure() {
            Some((check, e)) => FailureReason::Cosign {
                check,
                error: Arc::new(e.clone()),
            },
            None => FailureReason::CosignRejected(CosignRejection::CheckNotRun {
                check: CosignCheck::Signature,
            }),
        });
    };
    match requirement.evaluate(report.format, signer, &report.results()) {
        Ok(()) => {}
        Err(rejection @ CosignRejection::CheckFailed { check }) => {
            return Err(failed(check, rejection))
        }
        Err(rejection) => return Err(FailureReason::CosignRejected(rejection)),
    }
    // The Payload check compared the signed digest already; this repeats
    // it on the report's target, as the Notary Project path does, so no
    // report can count for another image.
    match &report.target {
        Some(t) if t == digest => Ok(Accepted {
            subject: signer.to_string(),
            cosign: Some(signer.clone()),
            not_after: None,
            expiry: None,
            revocation_until: None,
            logged: Vec::new(),
        }),
        Some(t) => Err(FailureReason::TargetMismatch { signed: t.clone() }),
        None => Err(FailureReason::NoTarget),
    }
}
