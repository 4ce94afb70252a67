//! The pure half of checking one Notary Project signature: running the
//! verifier on its envelope ([`verify()`]), and judging its report ([`judge`])
//! under the statement's level (which checks are enforced, logged or
//! skipped), its trusted identities (certificate subject, or AWS Signer
//! signing profile), and the check that the signature signs the digest
//! being decided.
//!
//! Input: the envelope, or a `notary::Report`, and the statement. Output: an
//! [`Accepted`] signer, or the [`FailureReason`] of the check that rejected
//! it. No I/O and no clock; [`verify()`] is CPU-bound and runs on the blocking
//! pool (the caller, `gate::notary`, fetches and asks for revocation data).

use std::sync::Arc;
use std::time::SystemTime;

use pullgate_policy::{
    evaluate_signature, Check, Digest, DistinguishedName, SignatureVerdict, Statement, StoreType,
    Validation,
};

use crate::gate::decision::{FailureReason, LoggedFailure};
use crate::gate::verdict::Accepted;
use crate::verify::notary;
use crate::verify::revocation::RevocationData;
use crate::verify::trust_store::TrustStore;

/// Runs the verifier on one envelope with the revocation data at hand. CPU-bound: call on the blocking pool.
pub(in crate::gate) fn verify(
    store: &TrustStore,
    statement: &Statement,
    media_type: &str,
    envelope: &[u8],
    revocation: &dyn RevocationData,
    now: SystemTime,
) -> notary::Report {
    let anchors = anchors(store, statement);
    let options = notary::Options {
        verify_timestamp: statement.verify_timestamp(),
    };
    notary::verify(media_type, envelope, &anchors, options, revocation, now)
}

/// Applies the statement (levels, trusted identities) and the target check
/// to one verifier report, which it consumes (its errors move into the result).
pub(in crate::gate) fn judge(
    statement: &Statement,
    report: notary::Report,
    digest: &Digest,
) -> Result<Accepted, FailureReason> {
    let subject = report.signer.as_ref().map(|s| s.subject.clone());
    let not_after = report.signer.as_ref().map(|s| s.not_after);
    // An AWS Signer signature is trusted by its signed signing profile,
    // never by the certificate subject (AWS Signer's own, for everyone).
    let profile_version = report
        .signer
        .as_ref()
        .and_then(|s| s.aws_signing_profile_version.clone());
    let profile_refusal = profile_version
        .as_deref()
        .and_then(|p| statement.trusts_signing_profile(p).err());
    let identity_ok = match &profile_version {
        Some(_) => profile_refusal.is_none(),
        None => subject
            .as_deref()
            .and_then(|s| s.parse::<DistinguishedName>().ok())
            .is_some_and(|dn| statement.trusts_identity(&dn)),
    };
    let results: Vec<(Validation, Result<(), Arc<notary::NotaryError>>)> = report
        .checks
        .into_iter()
        .map(|c| (c.validation, c.result.map_err(Arc::new)))
        .collect();
    let result = |v: Validation| results.iter().find(|(r, _)| *r == v).map(|(_, r)| r);
    let mut checks: Vec<Check> = results
        .iter()
        .map(|(validation, result)| Check {
            validation: *validation,
            passed: result.is_ok(),
        })
        .collect();
    if !identity_ok {
        checks.push(Check {
            validation: Validation::Authenticity,
            passed: false,
        });
    }
    let logged = match evaluate_signature(statement, &checks) {
        SignatureVerdict::Accepted { logged_failures } => logged_failures
            .into_iter()
            .map(|v| {
                let why = match (result(v), profile_refusal) {
                    (Some(Err(e)), _) => LoggedFailure::Check(Arc::clone(e)),
                    (None, _) => LoggedFailure::NotRun,
                    // The check passed, so the identity check failed it.
                    (Some(Ok(())), Some(refusal)) => LoggedFailure::SigningProfile(refusal),
                    (Some(Ok(())), None) => LoggedFailure::UntrustedIdentity,
                };
                tracing::warn!(validation = %v, level = %statement.level(), reason = %why,
                    "verification failure logged, not enforced");
                (v, why)
            })
            .collect(),
        SignatureVerdict::Rejected { by, .. } => {
            return Err(match result(by) {
                Some(Err(e)) => FailureReason::Check {
                    validation: by,
                    error: Arc::clone(e),
                },
                // The chain passed, so the identity check failed it.
                Some(Ok(())) => match (profile_version, profile_refusal) {
                    (Some(profile_version), Some(why)) => FailureReason::UntrustedSigningProfile {
                        profile_version,
                        why,
                    },
                    _ => FailureReason::UntrustedIdentity {
                        subject: subject.unwrap_or_default(),
                    },
                },
                None => FailureReason::NotRun { validation: by },
            });
        }
    };
    // The Notary Project verifier checks the signed target equals the artifact being verified.
    match report.target {
        Some(t) if &t.digest == digest => Ok(Accepted {
            subject: subject.unwrap_or_default(),
            cosign: None,
            not_after,
            expiry: report.expiry,
            revocation_until: None,
            logged,
        }),
        Some(t) => Err(FailureReason::TargetMismatch { signed: t.digest }),
        None => Err(FailureReason::NoTarget),
    }
}

/// The certificates of the statement's trust stores, by store type.
fn anchors<'a>(store: &'a TrustStore, statement: &Statement) -> notary::Anchors<'a> {
    let mut out = notary::Anchors {
        ca: Vec::new(),
        signing_authority: Vec::new(),
        tsa: Vec::new(),
    };
    for r in statement.trust_stores() {
        let bucket = match r.kind {
            StoreType::Ca => &mut out.ca,
            StoreType::SigningAuthority => &mut out.signing_authority,
            StoreType::Tsa => &mut out.tsa,
        };
        bucket.extend(store.get(r.kind, &r.name).into_iter().flatten());
    }
    out
}
