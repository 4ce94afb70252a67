//! Attestations signed with notation: an in-toto statement pushed as an
//! OCI artifact whose `subject` is the image (artifact type and layer
//! media type `application/vnd.in-toto+json`, e.g. `oras attach
//! --artifact-type application/vnd.in-toto+json`), and a Notary Project
//! signature whose subject is that artifact (`notation sign` of its digest).
//!
//! Input: the [`VerifyJob`], the artifact's manifest (subject already
//! checked), the scope's attestation requirements, the deadline. Output:
//! the [`Outcome`] of this attestation.
//!
//! The statement is the artifact's first layer (no DSSE envelope: the
//! notation signature over the artifact's manifest, which names the layer
//! by digest, is what signs it), capped at the bundle cap. Its signatures
//! are the artifact's referrers of the Notary Project artifact type, at
//! most `max_signatures`, checked one after another by `gate::notary`
//! exactly as an image's signatures are, under the trust policy statement
//! of the image's repository, with the artifact's digest as the signed
//! target; the first accepted one counts, and the allow lives no longer
//! than its certificate, expiry or revocation data.

use std::sync::Arc;

use crate::deadline::Deadline;
use crate::gate::decision::FailureReason;
use crate::gate::engine::VerifyJob;
use crate::gate::notary as notary_check;
use crate::gate::verdict::SignatureResult;
use crate::registry::Descriptor;
use crate::verify::{cosign, intoto, notary};

use super::fetch_outcome;
use super::judge::Outcome;

/// Artifact type (and layer media type) of an in-toto statement pushed as an OCI artifact.
pub(super) const ARTIFACT_TYPE: &str = intoto::PAYLOAD_TYPE;

/// Checks one in-toto artifact referrer `desc` (its manifest's `layers` fetched).
pub(super) async fn examine(
    job: &VerifyJob,
    desc: &Descriptor,
    layers: &[Descriptor],
    deadline: Deadline,
) -> Outcome {
    let requirements = job.policy.scope(job.scope).attestations();
    let Some(layer) = layers.first().filter(|l| l.media_type == ARTIFACT_TYPE) else {
        return Outcome::Irrelevant;
    };
    let blob = match job
        .fetch_blob(layer, cosign::MAX_BUNDLE_BYTES as u64, deadline)
        .await
    {
        Ok(b) => b,
        Err(e) => return fetch_outcome(e),
    };
    let Some(index) = intoto::predicate_type_of(&blob)
        .and_then(|t| requirements.iter().position(|r| r.predicate_type() == t))
    else {
        return Outcome::Irrelevant;
    };
    let statement = match intoto::statement_for(
        intoto::PAYLOAD_TYPE,
        &blob,
        &job.digest,
        requirements[index].predicate_type(),
    ) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Rejected {
                index,
                reason: FailureReason::Statement(Arc::new(e)),
            }
        }
    };
    let signatures = match job
        .engine
        .registry
        .referrers_ranked(
            job.signatures_in(),
            &desc.digest,
            &[notary::ARTIFACT_TYPE],
            &|_| 0,
            &job.credentials,
            deadline,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return fetch_outcome(e),
    };
    // The signatures sign the artifact: judged with its digest as the target.
    let artifact_job = VerifyJob {
        digest: desc.digest.clone(),
        ..job.clone()
    };
    let mut first_failure = None;
    for sig in signatures.iter().take(job.engine.limits.max_signatures) {
        let sig_manifest = match job.referrer_manifest(&sig.digest, deadline).await {
            Ok(m) => m,
            Err(e) => match fetch_outcome(e) {
                inconclusive @ Outcome::Inconclusive(_) => return inconclusive,
                _ => continue,
            },
        };
        if sig_manifest.subject.as_ref().map(|s| &s.digest) != Some(&desc.digest) {
            continue;
        }
        match notary_check::check(&artifact_job, &sig.digest, &sig_manifest.layers, deadline).await
        {
            SignatureResult::Accepted(a) => {
                let until = [a.not_after, a.expiry, a.revocation_until]
                    .into_iter()
                    .flatten()
                    .min();
                return Outcome::Verified {
                    index,
                    statement: Box::new(statement),
                    until,
                };
            }
            SignatureResult::Rejected(reason) => {
                first_failure.get_or_insert(reason);
            }
            SignatureResult::Inconclusive(e) => return Outcome::Inconclusive(e),
        }
    }
    Outcome::Rejected {
        index,
        reason: first_failure.unwrap_or(FailureReason::AttestationUnsigned),
    }
}
