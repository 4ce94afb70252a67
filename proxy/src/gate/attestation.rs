//! Checking the attestations a requirements scope asks for
//! (`[[scope.attestations]]`): fetch → verify → judge, after the image's
//! signatures allowed it.
//!
//! Input: the [`VerifyJob`], the scope's requirement and `[scope.cosign]`
//! trust (if any), the verification's deadline and `now`. Output:
//! [`Attested`] (met, with the instant a time condition or a signature
//! stops holding; or the denial naming the attestation and the condition),
//! or the [`GateError`] when the registry could not answer.
//!
//! Where attestations are, by the signers the scope has:
//! - `[scope.cosign]`: Sigstore bundle referrers (`cosign attest
//!   --new-bundle-format`) and the layers of cosign v2's `sha256-<hex>.att`
//!   manifest (one DSSE envelope each), judged as cosign signatures;
//! - kinds listing "notation": referrers of artifact type
//!   `application/vnd.in-toto+json` (the statement as their layer), each
//!   counted when a Notary Project signature of the artifact passes the
//!   trust policy statement (`notary`).
//!
//! 1. List, at once: the referrers of the digest (in the scope's
//!    `signature_repository`, if any) of those artifact types, and the
//!    `.att` manifest. Those whose predicate-type annotation
//!    (`dev.sigstore.bundle.predicateType` or `in-toto.io/predicate-type`
//!    on a referrer, `predicateType` on an `.att` layer) names a required
//!    type first, then those without one; others are not fetched. At most
//!    `max_signatures`, as for signatures.
//! 2. Fetch: each referrer's manifest (its `subject` must be the digest)
//!    and its bundle or statement layer, or the `.att` layer's envelope,
//!    capped at `signature_blob_bytes` and the bundle cap,
//!    [`SIGNATURE_FETCHES`] at once, under the same deadline.
//! 3. Verify and judge: `judge::verify` on the blocking pool (one of
//!    `max_concurrent_verifications` permits), or `notary::examine`; then
//!    `judge::judge`.
//!
//! One round trip for both listings, two per referrer (and, for a notation
//! artifact, one listing and two per signature), one per `.att` layer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use futures_util::StreamExt as _;
use pullgate_policy::requirements::ScopeRequirement;
use pullgate_policy::Digest;

use super::decision::{AttestationDenial, AttestationUnmet, GateError};
use super::engine::{fetch_failed, VerifyJob, SIGNATURE_FETCHES};
use super::policy_state::CosignScope;
use super::verdict::SignatureResult;
use crate::deadline::Deadline;
use crate::metrics::Phase;
use crate::registry::Descriptor;
use crate::verify::cosign::att as att_layer;
use crate::verify::cosign::{self as verifier, ImageSubject, SignatureLayer};

pub(super) mod judge;
mod notary;

use judge::{Fetched, Found, Outcome};

/// Where one attestation may be.
#[derive(Debug)]
enum Candidate {
    /// A Sigstore bundle referrer of the digest.
    Referrer(Descriptor),
    /// A layer of cosign v2's `sha256-<hex>.att` manifest `manifest`.
    AttLayer { manifest: Digest, layer: Descriptor },
}

/// The annotation cosign sets on a bundle referrer naming its predicate type.
const PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// The annotation naming an in-toto artifact's predicate type (as Docker
/// BuildKit writes it on attestation layers).
const INTOTO_PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";

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
    cosign: Option<&CosignScope>,
    deadline: Deadline,
    now: SystemTime,
) -> Result<Attested, GateError> {
    let wanted = requirement.attestations();
    if wanted.is_empty() {
        return Ok(Attested::Met { until: None });
    }
    let mut types = Vec::new();
    if cosign.is_some() {
        types.push(verifier::ARTIFACT_TYPE_BUNDLE);
        types.extend(verifier::BUNDLE_MEDIA_TYPES_PARAMETERISED);
    }
    if requirement.needs_notary_statement() {
        types.push(notary::ARTIFACT_TYPE);
    }
    // Annotations are the pusher's claim: they only order the work.
    let rank_by = |predicate_type: Option<&String>| match predicate_type {
        Some(t) if wanted.iter().any(|w| w.predicate_type() == t) => 0,
        None => 1,
        Some(_) => 2,
    };
    let rank = |d: &Descriptor| {
        rank_by(
            d.annotations
                .get(PREDICATE_ANNOTATION)
                .or_else(|| d.annotations.get(INTOTO_PREDICATE_ANNOTATION)),
        )
    };
    let referrers = job.engine.registry.referrers_ranked(
        job.signatures_in(),
        &job.digest,
        &types,
        &rank,
        &job.credentials,
        deadline,
    );
    let att = async {
        match cosign {
            Some(_) => {
                job.engine
                    .registry
                    .cosign_attestations(
                        job.signatures_in(),
                        &job.digest,
                        &job.credentials,
                        deadline,
                    )
                    .await
            }
            None => Ok(None),
        }
    };
    let (referrers, att) = tokio::join!(referrers, att);
    let mut candidates: Vec<(u8, Candidate)> = referrers?
        .iter()
        .map(|d| (rank(d), Candidate::Referrer(d.clone())))
        .collect();
    if let Some(att) = att? {
        // cosign v2 `.att`: one attestation per layer.
        candidates.extend(att.manifest.layers.into_iter().map(|layer| {
            (
                rank_by(layer.annotations.get(att_layer::ANNOTATION_PREDICATE_TYPE)),
                Candidate::AttLayer {
                    manifest: att.digest.clone(),
                    layer,
                },
            )
        }));
    }
    candidates.retain(|(r, _)| *r < 2);
    // Stable: listing order within a rank, referrers before `.att` layers.
    candidates.sort_by_key(|(r, _)| *r);
    let listed = candidates.len();
    let examined = job.engine.limits.max_signatures;
    candidates.truncate(examined);
    let mut found: Vec<(usize, Found)> =
        futures_util::stream::iter(candidates.into_iter().map(|(_, c)| c).enumerate())
            .map(|(i, candidate)| async move {
                let found = match candidate {
                    Candidate::Referrer(desc) => examine(job, cosign, desc, deadline, now).await,
                    Candidate::AttLayer { manifest, layer } => match cosign {
                        Some(cosign) => {
                            examine_att(job, cosign, manifest, layer, deadline, now).await
                        }
                        None => Found {
                            manifest,
                            outcome: Outcome::Irrelevant,
                        },
                    },
                };
                (i, found)
            })
            .buffer_unordered(SIGNATURE_FETCHES)
            .collect()
            .await;
    found.sort_by_key(|(i, _)| *i);
    let found: Vec<Found> = found.into_iter().map(|(_, f)| f).collect();
    for f in &found {
        note(job, f);
    }
    // The conditions run over what the registry gave: on the blocking pool,
    // so that a fault in the CEL evaluator ends as an inconclusive
    // verification (failing closed), never as a lost cache task.
    let Ok(_permit) = job.engine.permits.acquire().await else {
        return Err(GateError::Internal("verifier pool closed"));
    };
    let policy = Arc::clone(&job.policy);
    let scope = job.scope;
    let allow_ttl = job.engine.ttls.allow;
    let judged = tokio::task::spawn_blocking(move || {
        judge::judge(&found, policy.scope(scope).attestations(), allow_ttl, now)
    })
    .await
    .map_err(|_| GateError::Internal("attestation conditions could not be evaluated"))?;
    match judged {
        Ok(until) => Ok(Attested::Met { until }),
        Err(Ok(mut unmet)) => {
            if listed > examined && matches!(unmet.denial, AttestationDenial::Missing) {
                // What was not examined may hold it: say so, not "missing".
                unmet.denial = AttestationDenial::MissingAmongFirst { examined, listed };
            }
            Ok(Attested::Unmet(unmet))
        }
        Err(Err(e)) => Err(e),
    }
}

/// Fetches one bundle referrer and verifies it on the blocking pool.
async fn examine(
    job: &VerifyJob,
    cosign: Option<&CosignScope>,
    desc: Descriptor,
    deadline: Deadline,
    now: SystemTime,
) -> Found {
    let found = |outcome| Found {
        manifest: desc.digest.clone(),
        outcome,
    };
    let manifest = match job.referrer_manifest(&desc.digest, deadline).await {
        Ok(m) => m,
        Err(e) => return found(fetch_outcome(e)),
    };
    if manifest.subject.as_ref().map(|s| &s.digest) != Some(&job.digest) {
        return found(Outcome::Irrelevant);
    }
    let artifact_type = desc
        .artifact_type
        .as_deref()
        .or(manifest.artifact_type.as_deref());
    if artifact_type == Some(notary::ARTIFACT_TYPE) {
        if !job.policy.scope(job.scope).needs_notary_statement() {
            return found(Outcome::Irrelevant);
        }
        return found(notary::examine(job, &desc, &manifest.layers, deadline).await);
    }
    let Some(cosign) = cosign else {
        return found(Outcome::Irrelevant);
    };
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
        Err(e) => return found(fetch_outcome(e)),
    };
    found(verify(job, cosign, Blob::Bundle(bytes), now).await)
}

/// Fetches one layer of the `.att` manifest and verifies it.
async fn examine_att(
    job: &VerifyJob,
    cosign: &CosignScope,
    manifest: Digest,
    layer: Descriptor,
    deadline: Deadline,
    now: SystemTime,
) -> Found {
    let found = |outcome| Found {
        manifest: manifest.clone(),
        outcome,
    };
    if layer.media_type != att_layer::MEDIA_TYPE_DSSE {
        return found(Outcome::Irrelevant);
    }
    match job
        .fetch_blob(&layer, verifier::MAX_BUNDLE_BYTES as u64, deadline)
        .await
    {
        Ok(payload) => found(
            verify(
                job,
                cosign,
                Blob::AttLayer {
                    media_type: layer.media_type,
                    payload,
                    annotations: layer.annotations,
                },
                now,
            )
            .await,
        ),
        Err(e) => found(fetch_outcome(e)),
    }
}

/// An attestation as fetched, owned (it moves to the blocking pool).
enum Blob {
    Bundle(Bytes),
    AttLayer {
        media_type: String,
        payload: Bytes,
        annotations: BTreeMap<String, String>,
    },
}

/// A fetch that failed: an outage leaves it unexamined; any other answer
/// leaves it unshown, so it counts as missing.
fn fetch_outcome(e: crate::registry::Error) -> Outcome {
    match fetch_failed(e) {
        SignatureResult::Inconclusive(e) => Outcome::Inconclusive(e),
        _ => Outcome::Irrelevant,
    }
}

/// Runs `judge::verify` on the blocking pool, holding a verifier permit.
async fn verify(job: &VerifyJob, cosign: &CosignScope, blob: Blob, now: SystemTime) -> Outcome {
    let Ok(_permit) = job.engine.permits.acquire().await else {
        return Outcome::Inconclusive(GateError::Internal("verifier pool closed"));
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
        let fetched = match &blob {
            Blob::Bundle(bytes) => Fetched::Bundle(bytes),
            Blob::AttLayer {
                media_type,
                payload,
                annotations,
            } => Fetched::AttLayer(SignatureLayer {
                media_type,
                payload,
                annotations,
            }),
        };
        judge::verify(
            fetched,
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
    outcome.unwrap_or(Outcome::Inconclusive(GateError::Internal(
        "attestation verifier task failed",
    )))
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
