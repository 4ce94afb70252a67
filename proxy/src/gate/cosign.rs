//! Checking one cosign signature: fetch → verify → judge, the same shape
//! as `notary` (the transparency-log and certificate-timestamp checks run
//! inside the verifier, offline, against the scope's trusted root: there is
//! no revocation step).
//!
//! Input: the [`VerifyJob`] (repository, digest, credentials, engine), the
//! scope's `[scope.cosign]` table with its trust material ([`CosignScope`]),
//! and the layer to check: a simple-signing layer (of the `.sig` manifest or
//! a signature referrer) or a Sigstore bundle referrer's layers. Output: a
//! [`SignatureResult`].
//!
//! 1. Fetch: the payload or bundle blob, capped at `[registry.limits]
//!    signature_blob_bytes` and at the format's own cap.
//! 2. Verify: [`judge::verify`] on the blocking pool, holding one of
//!    `[server] max_concurrent_verifications` permits.
//! 3. Judge: [`judge::judge`] under the scope's `[scope.cosign]` table.
//!
//! An accepted cosign signature sets no instant past which its allow must
//! not be served: it is judged at its proven signing time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use pullgate_policy::requirements::CosignCheck;

use super::decision::{FailureReason, GateError};
use super::engine::{fetch_failed, VerifyJob};
use super::policy_state::CosignScope;
use super::verdict::SignatureResult;
use crate::deadline::Deadline;
use crate::metrics::Phase;
use crate::registry::Descriptor;
use crate::verify::cosign::{self as verifier, ImageSubject, SignatureLayer};

pub(super) mod judge;

use judge::Fetched;

/// A cosign signature as fetched, owned (it moves to the blocking pool).
enum Blob {
    Layer {
        media_type: String,
        payload: Bytes,
        annotations: BTreeMap<String, String>,
    },
    Bundle(Bytes),
}

/// Checks a Sigstore bundle referrer: its first layer is the bundle.
///
/// cosign `specs/BUNDLE_SPEC.md`, "Retrieval": "The final step is to use
/// the `digest` from the first of the `layers` to retrieve the bundle blob".
pub(super) async fn check_bundle(
    job: &VerifyJob,
    cosign: &CosignScope,
    layers: &[Descriptor],
    deadline: Deadline,
) -> SignatureResult {
    let Some(layer) = layers
        .first()
        .filter(|l| verifier::is_bundle_media_type(&l.media_type))
    else {
        return SignatureResult::Rejected(FailureReason::UnsupportedEnvelope {
            found: layers.iter().map(|l| l.media_type.clone()).collect(),
        });
    };
    let bytes = match job
        .fetch_blob(layer, verifier::MAX_BUNDLE_BYTES as u64, deadline)
        .await
    {
        Ok(b) => b,
        Err(e) => return fetch_failed(e),
    };
    verify_and_judge(job, cosign, Blob::Bundle(bytes)).await
}

/// Checks one simple-signing layer (of the `.sig` manifest or a signature referrer).
pub(super) async fn check_layer(
    job: &VerifyJob,
    cosign: &CosignScope,
    layer: &Descriptor,
    deadline: Deadline,
) -> SignatureResult {
    // Not a signature layer: said without fetching it.
    if layer.media_type != verifier::MEDIA_TYPE_SIMPLE_SIGNING {
        return SignatureResult::Rejected(FailureReason::Cosign {
            check: CosignCheck::Signature,
            error: Arc::new(verifier::Error::NotSimpleSigning {
                media_type: layer.media_type.chars().take(128).collect(),
            }),
        });
    }
    let payload = match job
        .fetch_blob(layer, verifier::MAX_PAYLOAD_BYTES as u64, deadline)
        .await
    {
        Ok(b) => b,
        Err(e) => return fetch_failed(e),
    };
    let blob = Blob::Layer {
        media_type: layer.media_type.clone(),
        payload,
        annotations: layer.annotations.clone(),
    };
    verify_and_judge(job, cosign, blob).await
}

/// Runs the verifier on the blocking pool and judges the report under the
/// scope's `[scope.cosign]`.
async fn verify_and_judge(job: &VerifyJob, cosign: &CosignScope, blob: Blob) -> SignatureResult {
    let internal = |what| SignatureResult::Inconclusive(GateError::Internal(what));
    let engine = &job.engine;
    let Ok(_permit) = engine.permits.acquire().await else {
        return internal("verifier pool closed");
    };
    // Only the gate reads the clock; the verifier gets `now`.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    let t = Instant::now();
    let trust = Arc::clone(&cosign.trust);
    let repository = job.repository.clone();
    let digest = job.digest.clone();
    let report = tokio::task::spawn_blocking(move || {
        let subject = ImageSubject {
            repository: &repository,
            digest: &digest,
        };
        let fetched = match &blob {
            Blob::Layer {
                media_type,
                payload,
                annotations,
            } => Fetched::Layer(SignatureLayer {
                media_type,
                payload,
                annotations,
            }),
            Blob::Bundle(bytes) => Fetched::Bundle(bytes),
        };
        judge::verify(fetched, &trust, subject, now)
    })
    .await;
    engine.metrics.phase(Phase::verify, t.elapsed());
    let Ok(report) = report else {
        return internal("verifier task failed");
    };
    match judge::judge(&cosign.requirement, &report, &job.digest) {
        Ok(accepted) => SignatureResult::Accepted(accepted),
        Err(reason) => SignatureResult::Rejected(reason),
    }
}

#[cfg(test)]
mod tests;
