//! Checking the attestations a requirements scope asks for
//! (`[[scope.attestations]]`): fetch → verify → judge, after the image's
//! signatures allowed it.
//!
//! Input: the [`VerifyJob`], the scope's requirement and `[scope.cosign]`
//! trust, the verification's deadline and `now`. Output: [`Attested`] (met,
//! with the instant a time condition stops holding; or the denial naming
//! the attestation and the condition), or the [`GateError`] when the
//! registry could not answer.
//!
//! 1. List: the referrers of the digest (in the scope's
//!    `signature_repository`, if any) of the Sigstore bundle artifact types,
//!    those whose `dev.sigstore.bundle.predicateType` annotation names a
//!    required predicate type first, then those without one; at most
//!    `max_signatures`, as for signatures.
//! 2. Fetch: each referrer's manifest (its `subject` must be the digest)
//!    and its bundle layer, capped at `signature_blob_bytes` and the bundle
//!    cap, [`SIGNATURE_FETCHES`] at once, under the same deadline.
//! 3. Verify and judge: `judge::verify` on the blocking pool (one of
//!    `max_concurrent_verifications` permits), then `judge::judge`.
//!
//! One round trip for the listing, two per attestation.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt as _;
use pullgate_policy::requirements::ScopeRequirement;

use super::decision::GateError;
use super::engine::{fetch_failed, VerifyJob};
use super::policy_state::CosignScope;
use super::verdict::SignatureResult;
use super::verify_digest::SIGNATURE_FETCHES;
use crate::deadline::Deadline;
use crate::metrics::Phase;
use crate::registry::Descriptor;
use crate::verify::cosign::{self as verifier, ImageSubject};

pub(super) mod judge;

pub(crate) use judge::AttestationUnmet;
use judge::{Found, Outcome};

/// The annotation cosign sets on a bundle referrer naming its predicate type.
const PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// What the attestations of one digest add up to.
#[derive(Debug)]
pub(super) enum Attested {
    /// Every requirement is met; the allow must not outlive `until` (a
    /// condition reading `now` stops holding then).
    Met { until: Option<SystemTime> },
    /// A requirement is not met.
    Unmet(AttestationUnmet),
}

/// Finds, verifies and judges the attestations `requirement` asks for.
///
/// # Errors
/// The listing could not be read, or no attestation met a requirement and
/// one that might have could not be examined.
///
/// # Cancel safety
/// Cancel safe.
pub(super) async fn check(
    job: &VerifyJob,
    requirement: &ScopeRequirement,
    cosign: &CosignScope,
    deadline: Deadline,
    now: SystemTime,
) -> Result<Attested, GateError> {
    let wanted = requirement.attestations();
    if wanted.is_empty() {
        return Ok(Attested::Met { until: None });
    }
    let mut types = vec![verifier::ARTIFACT_TYPE_BUNDLE];
    types.extend(verifier::BUNDLE_MEDIA_TYPES_PARAMETERISED);
    let rank = |d: &Descriptor| match d.annotations.get(PREDICATE_ANNOTATION) {
        Some(t) if wanted.iter().any(|w| w.predicate_type() == t) => 0,
        None => 1,
        Some(_) => 2,
    };
    let listed = job
        .engine
        .registry
        .referrers_ranked(
            job.signatures_in(),
            &job.digest,
            &types,
            &rank,
            &job.credentials,
            deadline,
        )
        .await?;
    let mut candidates: Vec<Descriptor> = listed.iter().filter(|d| rank(d) < 2).cloned().collect();
    candidates.sort_by_key(|d| rank(d));
    candidates.truncate(job.engine.limits.max_signatures);
    let mut found: Vec<(usize, Found)> =
        futures_util::stream::iter(candidates.into_iter().enumerate())
            .map(|(i, desc)| async move { (i, examine(job, cosign, desc, deadline, now).await) })
            .buffer_unordered(SIGNATURE_FETCHES)
            .collect()
            .await;
    found.sort_by_key(|(i, _)| *i);
    let found: Vec<Found> = found.into_iter().map(|(_, f)| f).collect();
    for f in &found {
        note(job, f);
    }
    match judge::judge(&found, wanted, job.engine.ttls.allow, now) {
        Ok(until) => Ok(Attested::Met { until }),
        Err(Ok(unmet)) => Ok(Attested::Unmet(unmet)),
        Err(Err(e)) => Err(e),
    }
}

/// Fetches one bundle referrer and verifies it on the blocking pool.
async fn examine(
    job: &VerifyJob,
    cosign: &CosignScope,
    desc: Descriptor,
    deadline: Deadline,
    now: SystemTime,
) -> Found {
    let found = |outcome| Found {
        manifest: desc.digest.clone(),
        outcome,
    };
    let fetch_failed = |e| match fetch_failed(e) {
        SignatureResult::Inconclusive(e) => Outcome::Inconclusive(e),
        // An attestation the registry would not give is not one of the
        // required type until shown to be: it counts as missing.
        _ => Outcome::Irrelevant,
    };
    let manifest = match job
        .engine
        .registry
        .fetch_signature_manifest(
            job.signatures_in(),
            &desc.digest,
            &job.credentials,
            deadline,
        )
        .await
    {
        Ok(m) => m,
        Err(e) => return found(fetch_failed(e)),
    };
    if manifest.subject.as_ref().map(|s| &s.digest) != Some(&job.digest) {
        return found(Outcome::Irrelevant);
    }
    let Some(layer) = manifest
        .layers
        .first()
        .filter(|l| verifier::is_bundle_media_type(&l.media_type))
    else {
        return found(Outcome::Irrelevant);
    };
    let bytes = match job
        .fetch_blob(layer, verifier::MAX_BUNDLE_BYTES as u64, deadline)
        .await
    {
        Ok(b) => b,
        Err(e) => return found(fetch_failed(e)),
    };
    let Ok(_permit) = job.engine.permits.acquire().await else {
        return found(Outcome::Inconclusive(GateError::Internal(
            "verifier pool closed",
        )));
    };
    let t = std::time::Instant::now();
    let policy = Arc::clone(&job.policy);
    let scope = job.scope;
    let trust = Arc::clone(&cosign.trust);
    let repository = job.repository.clone();
    let digest = job.digest.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let requirement = policy.scope(scope);
        let Some(cosign) = requirement.cosign() else {
            return Outcome::Irrelevant;
        };
        judge::verify(
            &bytes,
            requirement.attestations(),
            cosign,
            &trust,
            ImageSubject {
                repository: &repository,
                digest: &digest,
            },
            now,
        )
    })
    .await;
    job.engine.metrics.phase(Phase::verify, t.elapsed());
    found(outcome.unwrap_or(Outcome::Inconclusive(GateError::Internal(
        "attestation verifier task failed",
    ))))
}

/// Logs one attestation that did not count.
fn note(job: &VerifyJob, f: &Found) {
    match &f.outcome {
        Outcome::Rejected { reason, .. } => {
            tracing::info!(digest = %job.digest, attestation = %f.manifest, "attestation rejected: {reason}");
        }
        Outcome::Inconclusive(e) => {
            tracing::info!(digest = %job.digest, attestation = %f.manifest, "attestation could not be examined: {e}");
        }
        Outcome::Verified { .. } | Outcome::Irrelevant => {}
    }
}
