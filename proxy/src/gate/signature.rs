//! Deciding one signature from its verifier report: the statement's level
//! (which checks are enforced, logged or skipped), its trusted identities
//! (certificate subject, or AWS Signer signing profile), and the check that
//! the signature signs the digest being decided.
//!
//! Input: a `notary::Report` and the statement. Output: an [`Accepted`]
//! signer, or the [`FailureReason`] of the check that rejected it. Pure and
//! synchronous; [`run_verifier`] is CPU-bound and runs on the blocking pool.

use std::time::SystemTime;

use pullgate_policy::{
    evaluate_signature, Check, Digest, DistinguishedName, SignatureVerdict, Statement, StoreType,
    Validation,
};

use super::decision::FailureReason;
use crate::verify::notary;
use crate::verify::revocation::RevocationData;
use crate::verify::trust_store::TrustStore;

/// A signature that passed the trust policy.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The signing certificate's subject.
    pub(crate) subject: String,
    /// The earliest of the signing certificate's `notAfter`, the signed
    /// expiry and, when the level enforces revocation, the `nextUpdate` of
    /// the revocation data the check read.
    pub(crate) valid_until: Option<SystemTime>,
    /// Failures the verification level logs instead of enforcing (permissive, audit), with why.
    pub(crate) logged: Vec<(Validation, String)>,
}

/// The earlier of two optional instants (`None` is no bound).
pub(super) fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs the verifier on one envelope with the revocation data at hand. CPU-bound: call on the blocking pool.
pub(super) fn run_verifier(
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

/// Applies the statement (levels, trusted identities) and the target check to one verifier report.
pub(super) fn decide_signature(
    statement: &Statement,
    report: &notary::Report,
    digest: &Digest,
) -> Result<Accepted, FailureReason> {
    let subject = report.signer.as_ref().map(|s| s.subject.clone());
    let not_after = report.signer.as_ref().map(|s| s.not_after);
    let valid_until = earliest(not_after, report.expiry);
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
    let mut checks: Vec<Check> = report
        .checks
        .iter()
        .map(|c| Check {
            validation: c.validation,
            passed: c.result.is_ok(),
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
                let why = match (report.check(v), profile_refusal) {
                    (Some(Err(e)), _) => e.to_string(),
                    (_, Some(refusal)) => refusal.to_string(),
                    _ => "the signing certificate is not a trusted identity".to_owned(),
                };
                tracing::warn!(validation = %v, level = %statement.level(), reason = %why,
                    "verification failure logged, not enforced");
                (v, why)
            })
            .collect(),
        SignatureVerdict::Rejected { by, .. } => {
            return Err(match report.check(by) {
                Some(Err(e)) => FailureReason::Check {
                    validation: by,
                    error: e.to_string(),
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
                None => FailureReason::Check {
                    validation: by,
                    error: "the verifier did not run this check".to_owned(),
                },
            });
        }
    };
    // The Notary Project verifier checks the signed target equals the artifact being verified.
    match &report.target {
        Some(t) if &t.digest == digest => Ok(Accepted {
            subject: subject.unwrap_or_default(),
            valid_until,
            logged,
        }),
        Some(t) => Err(FailureReason::TargetMismatch {
            signed: t.digest.clone(),
        }),
        None => Err(FailureReason::Check {
            validation: Validation::Integrity,
            error: "the envelope names no target artifact".to_owned(),
        }),
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

#[cfg(test)]
mod aws_signer_tests;
