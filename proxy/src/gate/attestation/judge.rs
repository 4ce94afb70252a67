//! The pure half of checking attestations: verifying one fetched bundle
//! ([`verify`]) and judging the attestations of one digest against the
//! scope's `[[scope.attestations]]` ([`judge`]).
//!
//! Input: bundle bytes, the scope's cosign trust and requirement, the
//! digest and `now`; then the [`Found`] attestations. Output: for each
//! requirement, met (with the instant a condition that reads `now` stops
//! holding, if it does within the allow TTL) or the [`AttestationDenial`]
//! of the first one unmet. No I/O and no clock; [`verify`] is CPU-bound and
//! runs on the blocking pool (the caller, `gate::attestation`, fetches).
//!
//! Verdict lifetime: a condition that reads `now` (a scan at most 7 days
//! old) may stop holding with time alone. The allow is then cut to the
//! last second at which every such condition still holds, found by
//! evaluating at `now + allow TTL` and, when that fails, bisecting down to
//! the second; this assumes such a condition, once false, stays false (as
//! "within N days" does). Conditions that do not read `now` do not limit it.

use std::time::{Duration, SystemTime};

use pullgate_policy::requirements::{
    AttestationRequirement, ConditionFailure, CosignRequirement, StatementFacts,
};
use pullgate_policy::Digest;

use crate::gate::cosign::judge as cosign_judge;
use crate::gate::decision::{AttestationDenial, AttestationUnmet, FailureReason, GateError};
use crate::verify::cosign::trust::CosignTrust;
use crate::verify::cosign::{att, bundle, ImageSubject, SignatureLayer};
use crate::verify::intoto;

/// What one attestation referrer turned out to be.
#[derive(Debug, Clone)]
pub(in crate::gate) enum Outcome {
    /// Signed by a signer of the scope, about this image, of predicate
    /// type `requirements[index]`; its signature must not be trusted past
    /// `until` (a Notary Project certificate, expiry or revocation data).
    Verified {
        index: usize,
        statement: Box<intoto::Statement>,
        until: Option<SystemTime>,
    },
    /// Of predicate type `requirements[index]`, but its signature or statement failed.
    Rejected { index: usize, reason: FailureReason },
    /// Not an attestation of a type the scope requires (another predicate
    /// type, not a statement, not a bundle): ignored.
    Irrelevant,
    /// Could not be examined (outage, deadline, a fault of pullgate's own).
    Inconclusive(GateError),
}

/// One attestation referrer and what became of it.
#[derive(Debug, Clone)]
pub(in crate::gate) struct Found {
    /// The referrer manifest's digest.
    pub(in crate::gate) manifest: Digest,
    pub(in crate::gate) outcome: Outcome,
}

/// One attestation as fetched.
#[derive(Debug, Clone, Copy)]
pub(in crate::gate) enum Fetched<'a> {
    /// A Sigstore bundle's bytes (the layer of a bundle referrer).
    Bundle(&'a [u8]),
    /// A layer of cosign v2's `.att` manifest: a DSSE envelope and its annotations.
    AttLayer(SignatureLayer<'a>),
}

/// Verifies one fetched attestation as one of `requirements`' predicate
/// types, judged as a cosign signature under `cosign`.
/// CPU-bound: call on the blocking pool.
pub(in crate::gate) fn verify(
    fetched: Fetched<'_>,
    requirements: &[AttestationRequirement],
    cosign: &CosignRequirement,
    trust: &CosignTrust,
    subject: ImageSubject<'_>,
    now: SystemTime,
) -> Outcome {
    let Some(index) = predicate_type(fetched)
        .and_then(|t| requirements.iter().position(|r| r.predicate_type() == t))
    else {
        return Outcome::Irrelevant;
    };
    let predicate_type = requirements[index].predicate_type();
    let (report, statement) = match fetched {
        Fetched::Bundle(bytes) => {
            bundle::verify_attestation_bundle(bytes, trust, subject, predicate_type, now)
        }
        Fetched::AttLayer(layer) => att::verify(layer, trust, subject, predicate_type, now),
    };
    match (
        cosign_judge::judge(cosign, &report, subject.digest),
        statement,
    ) {
        // Judged at its proven signing time: time alone does not end it.
        (Ok(_), Some(statement)) => Outcome::Verified {
            index,
            statement: Box::new(statement),
            until: None,
        },
        (Err(reason), _) => Outcome::Rejected { index, reason },
        // The judge requires the Payload check, which yields the statement.
        (Ok(_), None) => Outcome::Inconclusive(GateError::Internal(
            "attestation accepted without a statement",
        )),
    }
}

/// The predicate type an attestation's DSSE statement names (before any
/// check: only to pick the requirement it is checked against).
fn predicate_type(fetched: Fetched<'_>) -> Option<String> {
    match fetched {
        Fetched::Bundle(bytes) => {
            let bundle = bundle::parse(bytes).ok()?;
            match &bundle.content {
                sigstore_verify::types::SignatureContent::DsseEnvelope(env) => {
                    intoto::predicate_type_of(env.payload.as_bytes())
                }
                _ => None,
            }
        }
        Fetched::AttLayer(layer) => {
            let (_, payload) = att::payload_of(layer.payload)?;
            intoto::predicate_type_of(&payload)
        }
    }
}

/// Judges every requirement on the attestations found (in discovery
/// order): `Ok(until)` when each is met by one verified attestation that
/// meets all its conditions, `until` the earliest instant a time condition
/// stops holding (within `allow_ttl`, see the module docs) or a Notary
/// Project signature of one stops being trusted.
///
/// # Errors
/// `Err(Ok(unmet))`: the first requirement unmet; `Err(Err(e))`: none
/// met it, and an attestation that might have could not be examined.
pub(in crate::gate) fn judge(
    found: &[Found],
    requirements: &[AttestationRequirement],
    allow_ttl: Duration,
    now: SystemTime,
) -> Result<Option<SystemTime>, Result<AttestationUnmet, GateError>> {
    let mut until: Option<SystemTime> = None;
    for (index, requirement) in requirements.iter().enumerate() {
        let unmet = |denial| {
            Err(Ok(AttestationUnmet {
                predicate_type: requirement.predicate_type().to_owned(),
                denial,
            }))
        };
        let mut first_condition: Option<AttestationDenial> = None;
        let mut met: Option<Option<SystemTime>> = None;
        for f in found {
            let Outcome::Verified {
                index: i,
                statement,
                until: signature_until,
            } = &f.outcome
            else {
                continue;
            };
            if *i != index {
                continue;
            }
            match holds(requirement, statement, allow_ttl, now) {
                Ok(u) => {
                    met = Some(u.into_iter().chain(*signature_until).min());
                    break;
                }
                Err((condition, failure)) => {
                    first_condition.get_or_insert(AttestationDenial::Condition {
                        attestation: f.manifest.clone(),
                        condition,
                        failure,
                    });
                }
            }
        }
        if let Some(u) = met {
            until = match (until, u) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            continue;
        }
        if let Some(e) = found.iter().find_map(|f| match &f.outcome {
            Outcome::Inconclusive(e) => Some(e),
            _ => None,
        }) {
            return Err(Err(e.clone()));
        }
        if let Some(denial) = first_condition {
            return unmet(denial);
        }
        let rejected = found.iter().find_map(|f| match &f.outcome {
            Outcome::Rejected { index: i, reason } if *i == index => {
                Some(AttestationDenial::Rejected {
                    attestation: f.manifest.clone(),
                    reason: reason.clone(),
                })
            }
            _ => None,
        });
        return unmet(rejected.unwrap_or(AttestationDenial::Missing));
    }
    Ok(until)
}

/// Whether `statement` meets every condition at `now`; `Ok(Some(t))` when
/// a condition reading `now` stops holding within `allow_ttl` (`t` the last
/// second it holds).
fn holds(
    requirement: &AttestationRequirement,
    statement: &intoto::Statement,
    allow_ttl: Duration,
    now: SystemTime,
) -> Result<Option<SystemTime>, (String, ConditionFailure)> {
    let facts = StatementFacts::new(
        &statement.predicate_type,
        &statement.subject,
        &statement.predicate,
    )
    .map_err(|e| {
        (
            requirement
                .conditions()
                .first()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            ConditionFailure::Error {
                message: e.to_string(),
            },
        )
    })?;
    requirement
        .evaluate(&facts, now)
        .map_err(|(c, f)| (c.as_str().to_owned(), f))?;
    // A century at most: `now + horizon` cannot overflow.
    let horizon = allow_ttl.min(Duration::from_secs(100 * 365 * 86_400));
    if !requirement.uses_now() || requirement.evaluate(&facts, now + horizon).is_ok() {
        return Ok(None);
    }
    // Holds at `now`, not at `now + horizon`: the last second it holds.
    let (mut good, mut bad) = (0u64, horizon.as_secs().max(1));
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if requirement
            .evaluate(&facts, now + Duration::from_secs(mid))
            .is_ok()
        {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(Some(now + Duration::from_secs(good)))
}

#[cfg(test)]
mod tests;
