//! Checking one Notary Project signature: fetch → verify → revocation →
//! judge, the same shape as `cosign`.
//!
//! Input: the [`VerifyJob`] (statement, repository, digest, credentials,
//! engine) and the signature manifest's layers. Output: a
//! [`SignatureResult`] — accepted (with the instant past which its allow
//! must not be served), rejected (which check, or what the registry
//! answered), or inconclusive (the registry could not answer, the deadline
//! passed).
//!
//! 1. Fetch: the first layer of a supported envelope media type (JWS or
//!    COSE), capped at `[registry.limits] signature_blob_bytes`.
//! 2. Verify: [`judge::verify()`] on the blocking pool, holding one of
//!    `[server] max_concurrent_verifications` permits, with the revocation
//!    data already cached.
//! 3. Revocation: when the statement does not skip revocation, OCSP
//!    responses and CRLs missing from the cache are fetched (never for an
//!    untrusted chain) and the check is run again; an AWS Signer signature
//!    asks Signer's `GetRevocationStatus` (cached).
//! 4. Judge: [`judge::judge`] under the statement's level and trusted
//!    identities; an allow that relied on revocation data lives no longer
//!    than its `nextUpdate`, nor, for AWS Signer, than the cache time of
//!    Signer's "not revoked" answer (`[aws_signer] cache_ttl_secs`).
//!
//! Every network await runs under the verification's deadline.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use pullgate_policy::{Digest, Enforcement, Statement, Validation};

use super::decision::{FailureReason, GateError};
use super::engine::{fetch_failed, VerifyJob};
use super::verdict::{Accepted, SignatureResult};
use crate::deadline::Deadline;
use crate::metrics::Phase;
use crate::registry::Descriptor;
use crate::verify::notary::{self as verifier, Report};

pub(super) mod judge;

/// Checks the Notary Project signature `signature`, a manifest whose
/// `layers` hold the envelope.
pub(super) async fn check(
    job: &VerifyJob,
    signature: &Digest,
    layers: &[Descriptor],
    deadline: Deadline,
) -> SignatureResult {
    match examine(job, signature, layers, deadline).await {
        Ok(accepted) => SignatureResult::Accepted(accepted),
        Err(ended) => ended,
    }
}

/// [`check`], ending early (`Err`) with the signature's rejection or with
/// why it could not be examined.
async fn examine(
    job: &VerifyJob,
    signature: &Digest,
    layers: &[Descriptor],
    deadline: Deadline,
) -> Result<Accepted, SignatureResult> {
    let Some(statement_id) = job.statement else {
        return Err(SignatureResult::Rejected(
            FailureReason::NoNotaryStatement {
                repository: job.repository.clone(),
            },
        ));
    };
    let (media_type, envelope) = fetch(job, layers, deadline).await?;
    // Only the gate reads the clock; the verifier gets `now`.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    let report = verify(job, statement_id, media_type, envelope, now).await?;
    let statement = job.policy.statement(statement_id);
    let (report, signer_until) =
        revocation(job, statement, signature, report, now, deadline).await?;
    let revocation_until = relied_until(
        statement.enforcement(Validation::Revocation),
        job.engine
            .revocation
            .valid_until(&report.revocation_requests, now),
        signer_until,
    );
    let mut accepted =
        judge::judge(statement, report, &job.digest).map_err(SignatureResult::Rejected)?;
    accepted.revocation_until = revocation_until;
    Ok(accepted)
}

/// The instant past which an allow that relied on revocation answers must
/// not be served: the earliest of the OCSP responses' and CRLs' `nextUpdate`
/// (`data`) and the end of AWS Signer's answer's cache time (`signer`).
/// Past it the certificate or signing profile may have been revoked. `None`
/// when the level does not enforce revocation (the allow relied on no answer).
pub(super) fn relied_until(
    revocation: Enforcement,
    data: Option<SystemTime>,
    signer: Option<SystemTime>,
) -> Option<SystemTime> {
    if revocation != Enforcement::Enforce {
        return None;
    }
    data.into_iter().chain(signer).min()
}

/// The envelope: the first layer of a supported media type, and its bytes.
async fn fetch(
    job: &VerifyJob,
    layers: &[Descriptor],
    deadline: Deadline,
) -> Result<(String, Bytes), SignatureResult> {
    let Some(envelope) = layers
        .iter()
        .find(|l| verifier::is_supported_envelope(&l.media_type))
    else {
        return Err(SignatureResult::Rejected(
            FailureReason::UnsupportedEnvelope {
                found: layers.iter().map(|l| l.media_type.clone()).collect(),
            },
        ));
    };
    let bytes = job
        .fetch_blob(envelope, u64::MAX, deadline)
        .await
        .map_err(fetch_failed)?;
    Ok((envelope.media_type.clone(), bytes))
}

/// Runs the verifier on the blocking pool, with the revocation data cached so far.
async fn verify(
    job: &VerifyJob,
    statement: super::policy_state::StatementId,
    media_type: String,
    envelope: Bytes,
    now: SystemTime,
) -> Result<Report, SignatureResult> {
    let engine = &job.engine;
    let _permit = engine
        .permits
        .acquire()
        .await
        .map_err(|_| internal("verifier pool closed"))?;
    let t = std::time::Instant::now();
    let revocation = engine.revocation.clone();
    let policy = Arc::clone(&job.policy);
    let report = tokio::task::spawn_blocking(move || {
        judge::verify(
            &policy.store,
            policy.statement(statement),
            &media_type,
            &envelope,
            &revocation,
            now,
        )
    })
    .await
    .map_err(|_| internal("verifier task failed"))?;
    engine.metrics.phase(Phase::verify, t.elapsed());
    Ok(report)
}

/// The revocation checks that need the network: revocation data missing
/// from the cache is fetched (never for an untrusted chain, never when the
/// statement skips revocation) and the check run again; an AWS Signer
/// signature with a trusted chain asks Signer (cached), and a "not revoked"
/// answer comes with the instant its cache time ends.
async fn revocation(
    job: &VerifyJob,
    statement: &Statement,
    signature: &Digest,
    mut report: Report,
    now: SystemTime,
    deadline: Deadline,
) -> Result<(Report, Option<SystemTime>), SignatureResult> {
    if statement.enforcement(Validation::Revocation) == Enforcement::Skip {
        return Ok((report, None));
    }
    let cache = &job.engine.revocation;
    if report.revocation_needs_data() && cache.needs_fetch(&report.revocation_requests, now) {
        if let Err(e) = cache
            .prefetch(&report.revocation_requests, now, deadline)
            .await
        {
            tracing::warn!(%signature, error = %e,
                "revocation data could not be fetched; the check stays failed");
        }
        let cache = cache.clone();
        report = tokio::task::spawn_blocking(move || {
            report.recheck_revocation(&cache, now);
            report
        })
        .await
        .map_err(|_| internal("revocation recheck task failed"))?;
    }
    let mut signer_until = None;
    if let Some(query) = &report.aws_signer {
        let result = job.engine.aws_signer.checked(query, now, deadline).await;
        signer_until = result.as_ref().ok().copied();
        report.set_aws_signer_revocation(result.map(|_| ()));
    }
    Ok((report, signer_until))
}

/// A fault of pullgate's own plumbing: the signature could not be examined.
fn internal(what: &'static str) -> SignatureResult {
    SignatureResult::Inconclusive(GateError::Internal(what))
}

#[cfg(test)]
mod aws_signer_tests;
