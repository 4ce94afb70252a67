//! Discovering and verifying the signatures of one digest: the work the
//! verdict cache runs once for all concurrent pulls of one [`VerdictKey`].
//!
//! Input: a [`VerifyJob`] (policy in force, the ids of its statement, if
//! any, and scope, repository, digest, credentials). Output: a [`Verdict`]
//! with how long it may be cached and the records of the signatures
//! examined (which the cache does not keep), or a [`GateError`] when the
//! registry could not answer.
//!
//! The orchestration only, the same for both signature kinds: discover the
//! candidates (`discover`: referrers and cosign's `.sig` tag, requested at
//! once) → fan out: fetch each referrer's manifest, identify its kind and
//! hand it to that kind's check (`notary::check`, `cosign::check_bundle`,
//! `cosign::check_layer`: fetch, verify on the blocking pool, revocation,
//! judge one signature), up to [`SIGNATURE_FETCHES`] candidates at once →
//! order → judge the set (`verdict`) → when that allows and the scope
//! requires attestations, find and judge them (`attestation`), under the
//! same turn and deadline. Unless every signature is wanted
//! (`pullgate verify`, or requirements that name identities or several
//! signers), the work stops as soon as the signatures examined meet the
//! requirements ([`verdict::enough`]); fetches still in flight are dropped.
//! The results are judged in discovery order (by promise, see `discover`),
//! whatever order they finished in, so a denial names the same first
//! failure every time; a denial judged on fewer candidates than were listed
//! (the `max_signatures` cap) says so and names the key to raise.
//!
//! Round trips beyond resolution: one for both listings (two more when the
//! referrers API answers 404 and the tag schema is read, one per further
//! referrers page), then two per candidate (manifest, then blob; a `.sig`
//! layer needs only its blob), [`SIGNATURE_FETCHES`] candidates in flight at
//! once: three in all for up to `max_signatures` (32) candidates, whatever
//! their order. What that holds is bounded per turn: [`SIGNATURE_FETCHES`] ×
//! (`signature_manifest_bytes` + `signature_blob_bytes`), 40 MiB at the
//! defaults.
//!
//! Limits and timeouts: discovery and every fetch run under the configured
//! decision budget, holding one of `[registry] max_concurrent_discoveries`
//! turns (waited for under that budget), each request under the registry
//! client's caps (`[registry.limits]`); at most `max_signatures` candidates
//! are examined, the most promising first.
//!
//! [`VerdictKey`]: super::VerdictKey

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use pullgate_policy::requirements::{CosignRejection, ScopeRequirement, SignatureKind};

use super::attestation::{self, Attested};
use super::decision::{
    DenyReason, FailureReason, GateError, Kinds, SignatureProblem, SignatureRecord, Signatures,
    Verdict,
};
use super::discover::{accepts, discover, identify, Candidate, Identified, Promise, Source};
use super::engine::{fetch_failed, VerifyJob, SIGNATURE_FETCHES};
use super::policy_state::{without_anchors, CosignScope};
use super::verdict::{self, Examined, Judgement, SignatureResult};
use super::{cosign, notary};
use crate::cache::Computed;
use crate::deadline::Deadline;
use crate::metrics::Phase;
use crate::registry::Descriptor;

/// Discovers and verifies the signatures of one digest. Runs in the cache's task.
pub(super) async fn run(job: VerifyJob) -> Result<Computed<Verdict, Signatures>, GateError> {
    let result = run_inner(&job).await;
    job.engine.metrics.verification(match &result {
        Ok(Computed {
            value: Verdict::Allowed { .. },
            ..
        }) => "allowed",
        Ok(_) => "denied",
        Err(_) => "error",
    });
    result
}

async fn run_inner(job: &VerifyJob) -> Result<Computed<Verdict, Signatures>, GateError> {
    let ttls = job.engine.ttls;
    let requirement = job.policy.scope(job.scope);
    // A notation-only scope whose statement has no trust anchors: no
    // signature can pass, and the denial says why. (A scope that also
    // accepts cosign may still be satisfied by a cosign signature.)
    if let Some(stores) = job
        .statement
        .filter(|_| requirement.cosign().is_none())
        .and_then(|id| without_anchors(&job.policy.store, job.policy.statement(id)))
    {
        return Ok(Computed {
            value: Verdict::denied(DenyReason::NoTrustAnchors { stores }),
            ttl: ttls.deny,
            detail: Arc::from(Vec::new()),
        });
    }
    let deadline = Deadline::after(job.engine.budget);
    // One turn for the whole network part (referrers walk, signature
    // fetches, revocation data): what a registry makes pullgate hold is
    // bounded by the number of turns. Waiting counts against this
    // verification's deadline; each pull waits at most until its own.
    let _turn = match deadline.run(job.engine.discoveries.acquire()).await {
        Ok(Ok(turn)) => turn,
        Ok(Err(_)) => return Err(GateError::Internal("discovery semaphore closed")),
        Err(_) => return Err(GateError::Deadline),
    };
    let t = Instant::now();
    let source = Source {
        registry: &job.engine.registry,
        repository: job.signatures_in(),
        digest: &job.digest,
        credentials: &job.credentials,
        deadline,
    };
    let promise = Promise::new(
        &job.policy.store,
        job.statement.map(|id| job.policy.statement(id)),
        requirement.cosign(),
    );
    let max = job.engine.limits.max_signatures;
    let found = discover(source, requirement, &promise, max).await;
    job.engine.metrics.phase(Phase::discover, t.elapsed());
    let found = found?;
    if let (true, Some(pages)) = (found.candidates.is_empty(), found.cut_at_pages) {
        return Ok(Computed {
            ttl: ttls.deny,
            value: Verdict::denied(DenyReason::NoSignatureInPages {
                kinds: Kinds::of(requirement),
                pages,
            }),
            detail: Signatures::from(Vec::new()),
        });
    }
    let candidates = found.candidates;
    // The cap left some listed candidates unexamined: a denial says so.
    let capped = (found.listed > candidates.len()).then_some((candidates.len(), found.listed));
    let cosign = job.policy.cosign(job.scope);
    let exhaustive = job.exhaustive || requirement.needs_every_signature();
    // Completion order for `enough`, discovery order for the judgement.
    let mut examined: Vec<Examined> = Vec::with_capacity(candidates.len());
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(candidates.len());
    let mut pending = futures_util::stream::iter(candidates.into_iter().enumerate())
        .map(|(i, candidate)| async move {
            (
                i,
                examine(job, cosign, candidate, requirement, deadline).await,
            )
        })
        .buffer_unordered(SIGNATURE_FETCHES);
    while let Some((i, results)) = pending.next().await {
        for (sub, e) in results.into_iter().enumerate() {
            note(job, &e);
            examined.push(e);
            order.push((i, sub));
        }
        if !exhaustive && verdict::enough(&examined, requirement) {
            break;
        }
    }
    drop(pending);
    let mut ordered: Vec<((usize, usize), Examined)> = order.into_iter().zip(examined).collect();
    ordered.sort_by_key(|(at, _)| *at);
    let examined: Vec<Examined> = ordered.into_iter().map(|(_, e)| e).collect();
    // Only the gate reads the clock.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    let judgement = verdict::judge(&examined, requirement, ttls, now);
    let signatures: Signatures = examined.iter().map(record).collect();
    match judgement {
        Judgement::Allowed { signers, ttl } if requirement.attestations().is_empty() => {
            Ok(Computed {
                ttl,
                value: Verdict::allowed(signers.into(), now + ttl),
                detail: signatures,
            })
        }
        // The signatures allow it; the attestations the scope requires decide.
        Judgement::Allowed { signers, ttl } => {
            let t = Instant::now();
            let attested = attestation::check(job, requirement, cosign, deadline, now).await;
            job.engine.metrics.phase(Phase::discover, t.elapsed());
            match attested? {
                Attested::Met { until } => {
                    let ttl = until.map_or(ttl, |u| {
                        ttl.min(u.duration_since(now).unwrap_or(Duration::ZERO))
                    });
                    Ok(Computed {
                        ttl,
                        value: Verdict::allowed(signers.into(), now + ttl),
                        detail: signatures,
                    })
                }
                Attested::Unmet(unmet) => Ok(Computed {
                    ttl: ttls.deny,
                    value: Verdict::denied(DenyReason::Attestation(Box::new(unmet))),
                    detail: signatures,
                }),
            }
        }
        Judgement::Denied { reason, ttl } => Ok(Computed {
            ttl,
            value: Verdict::denied(match capped {
                Some((examined, listed)) => DenyReason::Capped {
                    reason: Box::new(reason),
                    examined,
                    listed,
                },
                None => reason,
            }),
            detail: signatures,
        }),
        Judgement::Inconclusive(e) => Err(e),
    }
}

/// Logs and counts one examined signature.
fn note(job: &VerifyJob, e: &Examined) {
    let kind = e.kind.map_or("unidentified", kind_label);
    match &e.result {
        SignatureResult::Accepted(ok) => {
            job.engine.metrics.signature(kind, "accepted");
            for (v, _) in &ok.logged {
                job.engine.metrics.logged_validation(v.as_str());
            }
        }
        SignatureResult::Rejected(reason) => {
            job.engine.metrics.signature(kind, "rejected");
            tracing::info!(digest = %job.digest, signature = %e.signature, layer = ?e.layer,
                kind, "{reason}");
        }
        SignatureResult::Inconclusive(error) => {
            job.engine.metrics.signature(kind, "inconclusive");
            tracing::info!(digest = %job.digest, signature = %e.signature, layer = ?e.layer,
                kind, "signature could not be examined: {error}");
        }
    }
}

/// Fetches and verifies the signatures of one candidate: none when it
/// turns out not to be a signature of a kind the scope accepts, several
/// for a cosign signature manifest (one per layer).
async fn examine(
    job: &VerifyJob,
    cosign: Option<&CosignScope>,
    candidate: Candidate,
    requirement: &ScopeRequirement,
    deadline: Deadline,
) -> Vec<Examined> {
    match candidate {
        Candidate::Referrer(desc) => {
            examine_referrer(job, cosign, desc, requirement, deadline).await
        }
        Candidate::SigLayer {
            manifest,
            index,
            layer,
        } => match cosign {
            Some(cosign) => vec![Examined {
                signature: manifest,
                layer: Some(index),
                kind: Some(SignatureKind::Cosign),
                result: cosign::check_layer(job, cosign, &layer, deadline).await,
            }],
            // Discovered only for a scope that lists cosign.
            None => Vec::new(),
        },
    }
}

/// A referrer: its manifest, identified by the artifact type the
/// listing gave (or, without one, by the manifest's own), then the
/// verifier of its kind.
async fn examine_referrer(
    job: &VerifyJob,
    cosign: Option<&CosignScope>,
    desc: Descriptor,
    requirement: &ScopeRequirement,
    deadline: Deadline,
) -> Vec<Examined> {
    let listed = identify(desc.artifact_type.as_deref());
    let one = |kind, result| {
        vec![Examined {
            signature: desc.digest.clone(),
            layer: None,
            kind: Some(kind),
            result,
        }]
    };
    let manifest = match job.referrer_manifest(&desc.digest, deadline).await {
        Ok(m) => m,
        Err(e) => {
            return match (listed, fetch_failed(e)) {
                (Identified::Notary, r) => one(SignatureKind::Notation, r),
                (Identified::Bundle | Identified::SimpleSigning, r) => {
                    one(SignatureKind::Cosign, r)
                }
                // Unidentified: it might have been a signature only if
                // the registry could not answer; an answer about it
                // (404, malformed) leaves it not a signature.
                (Identified::Other, r @ SignatureResult::Inconclusive(_)) => vec![Examined {
                    signature: desc.digest.clone(),
                    layer: None,
                    kind: None,
                    result: r,
                }],
                (Identified::Other, _) => Vec::new(),
            };
        }
    };
    let identified = match listed {
        Identified::Other => identify(manifest.artifact_type.as_deref()),
        known => known,
    };
    if !accepts(requirement, identified) {
        tracing::debug!(digest = %job.digest, referrer = %desc.digest,
            artifact_type = ?manifest.artifact_type,
            "referrer is not a signature of a kind this scope accepts");
        return Vec::new();
    }
    let kind = match identified {
        Identified::Notary => SignatureKind::Notation,
        _ => SignatureKind::Cosign,
    };
    match &manifest.subject {
        Some(s) if s.digest == job.digest => {}
        other => {
            return one(
                kind,
                SignatureResult::Rejected(FailureReason::SubjectMismatch {
                    subject: other
                        .as_ref()
                        .map_or_else(|| "missing".to_owned(), |s| s.digest.to_string()),
                }),
            )
        }
    }
    match (identified, cosign) {
        (Identified::Notary, _) => one(
            kind,
            notary::check(job, &desc.digest, &manifest.layers, deadline).await,
        ),
        (Identified::Bundle, Some(cosign)) => one(
            kind,
            cosign::check_bundle(job, cosign, &manifest.layers, deadline).await,
        ),
        // A cosign signature manifest attached as a referrer: one
        // signature per layer, as in a `.sig` manifest. Its layers are
        // examined one after another (cosign writes one).
        (Identified::SimpleSigning, Some(cosign)) => {
            let mut out = Vec::with_capacity(manifest.layers.len());
            for (index, layer) in manifest
                .layers
                .iter()
                .take(job.engine.limits.max_signatures)
                .enumerate()
            {
                out.push(Examined {
                    signature: desc.digest.clone(),
                    layer: Some(index),
                    kind: Some(kind),
                    result: cosign::check_layer(job, cosign, layer, deadline).await,
                });
            }
            out
        }
        // Not a signature, or a cosign one in a scope without a
        // `[scope.cosign]` table (which `accepts` already refused).
        (Identified::Other, _) | (Identified::Bundle | Identified::SimpleSigning, None) => {
            Vec::new()
        }
    }
}

/// The audit log's record of one examined signature.
fn record(examined: &Examined) -> SignatureRecord {
    let (signer, failure, logged) = match &examined.result {
        SignatureResult::Accepted(a) => (Some(a.subject.clone()), None, a.logged.clone()),
        SignatureResult::Rejected(reason) => (
            match reason {
                FailureReason::UntrustedIdentity { subject } => Some(subject.clone()),
                FailureReason::CosignRejected(CosignRejection::UntrustedKey { name }) => {
                    Some(format!("cosign key {name}"))
                }
                FailureReason::CosignRejected(CosignRejection::UntrustedIdentity {
                    issuer,
                    subject,
                }) => Some(format!("{subject} (issuer {issuer})")),
                _ => None,
            },
            Some(SignatureProblem::Rejected(reason.clone())),
            Vec::new(),
        ),
        SignatureResult::Inconclusive(error) => (
            None,
            Some(SignatureProblem::Inconclusive(error.clone())),
            Vec::new(),
        ),
    };
    SignatureRecord {
        digest: examined.signature.clone(),
        kind: examined.kind,
        layer: examined.layer,
        signer,
        failure,
        logged,
    }
}

/// The `kind` label of a signature kind (metrics, logs).
fn kind_label(kind: SignatureKind) -> &'static str {
    match kind {
        SignatureKind::Notation => "notation",
        SignatureKind::Cosign => "cosign",
        // A kind this build does not know is never discovered.
        _ => "other",
    }
}
