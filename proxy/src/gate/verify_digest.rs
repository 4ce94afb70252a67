//! Discovering and verifying the signatures of one digest: the work the
//! verdict cache runs once for all concurrent pulls of one [`VerdictKey`].
//!
//! Input: a [`VerifyJob`] (policy in force, statement if any, repository,
//! digest, credentials). Output: a [`Verdict`] with how long it may be
//! cached and the records of the signatures examined (which the cache does
//! not keep), or a [`GateError`] when the registry could not answer.
//!
//! One path for both signature kinds: discover the candidates (`discover`:
//! referrers and cosign's `.sig` tag, requested at once) → fetch each
//! candidate's manifest and signature blob, up to [`SIGNATURE_FETCHES`]
//! candidates at once → verify each on the blocking pool, at most `[server]
//! max_concurrent_verifications` at once → judge (`verdict`). Unless every
//! signature is wanted (`pullgate verify`, or requirements that name
//! identities or several signers), the work stops as soon as the signatures
//! examined meet the requirements ([`verdict::enough`]); fetches still in
//! flight are dropped. The results are judged in discovery order, whatever
//! order they finished in, so a denial names the same first failure every
//! time.
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
//! are examined.
//!
//! [`VerdictKey`]: super::VerdictKey

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use pullgate_policy::requirements::{CosignRejection, ScopeRequirement, SignatureKind};
use pullgate_policy::{Enforcement, Validation};

use super::cosign_signature::{decide_cosign, run_verifier as run_cosign, Fetched};
use super::decision::{
    DenyReason, FailureReason, GateError, Kinds, SignatureProblem, SignatureRecord, Signatures,
    Verdict,
};
use super::discover::{accepts, discover, identify, Candidate, Identified, Source};
use super::engine::{fetch_failed, VerifyJob};
use super::policy_state::without_anchors;
use super::signature::{decide_signature, run_verifier, Accepted};
use super::verdict::{self, Examined, Judgement, SignatureResult};
use crate::cache::Computed;
use crate::deadline::Deadline;
use crate::metrics::Phase;
use crate::registry::Descriptor;
use crate::verify::cosign::{self, ImageSubject, SignatureLayer};
use crate::verify::notary;

/// Signature candidates fetched at once for one verification: the default
/// `max_signatures`, so any number up to it costs one wave (each fetch also
/// waits for the registry host's own bound on requests in flight, as many).
pub(super) const SIGNATURE_FETCHES: usize = 32;

/// A cosign signature as fetched, owned (it moves to the blocking pool).
enum CosignBlob {
    Layer {
        media_type: String,
        payload: Bytes,
        annotations: BTreeMap<String, String>,
    },
    Bundle(Bytes),
}

/// Discovers and verifies the signatures of one digest. Runs in the cache's task.
pub(super) async fn run(job: VerifyJob) -> Result<Computed<Verdict, Signatures>, GateError> {
    job.run().await
}

impl VerifyJob {
    async fn run(&self) -> Result<Computed<Verdict, Signatures>, GateError> {
        let result = self.run_inner().await;
        self.engine.metrics.verification(match &result {
            Ok(Computed {
                value: Verdict::Allowed { .. },
                ..
            }) => "allowed",
            Ok(_) => "denied",
            Err(_) => "error",
        });
        result
    }

    async fn run_inner(&self) -> Result<Computed<Verdict, Signatures>, GateError> {
        let ttls = self.engine.ttls;
        let requirement = self.policy.scope(self.scope);
        // A notation-only scope whose statement has no trust anchors: no
        // signature can pass, and the denial says why. (A scope that also
        // accepts cosign may still be satisfied by a cosign signature.)
        if let Some(stores) = self
            .statement
            .filter(|_| requirement.cosign().is_none())
            .and_then(|id| without_anchors(&self.policy.store, self.policy.statement(id)))
        {
            return Ok(Computed {
                value: Verdict::denied(DenyReason::NoTrustAnchors { stores }),
                ttl: ttls.deny,
                detail: Arc::from(Vec::new()),
            });
        }
        let deadline = Deadline::after(self.engine.budget);
        // One turn for the whole network part (referrers walk, signature
        // fetches, revocation data): what a registry makes pullgate hold is
        // bounded by the number of turns. Waiting counts against this
        // verification's deadline; each pull waits at most until its own.
        let _turn = match deadline.run(self.engine.discoveries.acquire()).await {
            Ok(Ok(turn)) => turn,
            Ok(Err(_)) => return Err(GateError::Internal("discovery semaphore closed")),
            Err(_) => return Err(GateError::Deadline),
        };
        let t = Instant::now();
        let source = Source {
            registry: &self.engine.registry,
            repository: &self.repository,
            digest: &self.digest,
            credentials: &self.credentials,
            deadline,
        };
        let found = discover(source, requirement, self.engine.limits.max_signatures).await;
        self.engine.metrics.phase(Phase::discover, t.elapsed());
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
        let exhaustive = self.exhaustive || requirement.needs_every_signature();
        // Completion order for `enough`, discovery order for the judgement.
        let mut examined: Vec<Examined> = Vec::with_capacity(candidates.len());
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(candidates.len());
        let mut pending = futures_util::stream::iter(candidates.into_iter().enumerate())
            .map(|(i, candidate)| async move {
                (i, self.examine(candidate, requirement, deadline).await)
            })
            .buffer_unordered(SIGNATURE_FETCHES);
        while let Some((i, results)) = pending.next().await {
            for (sub, e) in results.into_iter().enumerate() {
                self.note(&e);
                examined.push(e);
                order.push((i, sub));
            }
            if !exhaustive && verdict::enough(&examined, requirement) {
                break;
            }
        }
        drop(pending);
        let mut ordered: Vec<((usize, usize), Examined)> =
            order.into_iter().zip(examined).collect();
        ordered.sort_by_key(|(at, _)| *at);
        let examined: Vec<Examined> = ordered.into_iter().map(|(_, e)| e).collect();
        // Only the gate reads the clock.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let judgement = verdict::judge(&examined, requirement, ttls, now);
        let signatures: Signatures = examined.iter().map(record).collect();
        match judgement {
            Judgement::Allowed { signers, ttl } => Ok(Computed {
                ttl,
                value: Verdict::allowed(signers.into(), now + ttl),
                detail: signatures,
            }),
            Judgement::Denied { reason, ttl } => Ok(Computed {
                ttl,
                value: Verdict::denied(reason),
                detail: signatures,
            }),
            Judgement::Inconclusive(e) => Err(e),
        }
    }

    /// Logs and counts one examined signature.
    fn note(&self, e: &Examined) {
        let kind = e.kind.map_or("unidentified", kind_label);
        match &e.result {
            SignatureResult::Accepted(ok) => {
                self.engine.metrics.signature(kind, "accepted");
                for (v, _) in &ok.logged {
                    self.engine.metrics.logged_validation(v.as_str());
                }
            }
            SignatureResult::Rejected(reason) => {
                self.engine.metrics.signature(kind, "rejected");
                tracing::info!(digest = %self.digest, signature = %e.signature, layer = ?e.layer,
                    kind, "{reason}");
            }
            SignatureResult::Inconclusive(error) => {
                self.engine.metrics.signature(kind, "inconclusive");
                tracing::info!(digest = %self.digest, signature = %e.signature, layer = ?e.layer,
                    kind, "signature could not be examined: {error}");
            }
        }
    }

    /// Fetches and verifies the signatures of one candidate: none when it
    /// turns out not to be a signature of a kind the scope accepts, several
    /// for a cosign signature manifest (one per layer).
    async fn examine(
        &self,
        candidate: Candidate,
        requirement: &ScopeRequirement,
        deadline: Deadline,
    ) -> Vec<Examined> {
        match candidate {
            Candidate::Referrer(desc) => self.examine_referrer(desc, requirement, deadline).await,
            Candidate::SigLayer {
                manifest,
                index,
                layer,
            } => vec![Examined {
                signature: manifest,
                layer: Some(index),
                kind: Some(SignatureKind::Cosign),
                result: self
                    .check_simple_signing(&layer, requirement, deadline)
                    .await,
            }],
        }
    }

    /// A referrer: its manifest, identified by the artifact type the
    /// listing gave (or, without one, by the manifest's own), then the
    /// verifier of its kind.
    async fn examine_referrer(
        &self,
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
        let manifest = match self
            .engine
            .registry
            .fetch_signature_manifest(&self.repository, &desc.digest, &self.credentials, deadline)
            .await
        {
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
            tracing::debug!(digest = %self.digest, referrer = %desc.digest,
                artifact_type = ?manifest.artifact_type,
                "referrer is not a signature of a kind this scope accepts");
            return Vec::new();
        }
        let kind = match identified {
            Identified::Notary => SignatureKind::Notation,
            _ => SignatureKind::Cosign,
        };
        match &manifest.subject {
            Some(s) if s.digest == self.digest => {}
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
        match identified {
            Identified::Notary => one(
                kind,
                self.check_notary(&desc, &manifest.layers, deadline).await,
            ),
            Identified::Bundle => one(
                kind,
                self.check_bundle(&manifest.layers, requirement, deadline)
                    .await,
            ),
            // A cosign signature manifest attached as a referrer: one
            // signature per layer, as in a `.sig` manifest. Its layers are
            // examined one after another (cosign writes one).
            Identified::SimpleSigning => {
                let mut out = Vec::with_capacity(manifest.layers.len());
                for (index, layer) in manifest
                    .layers
                    .iter()
                    .take(self.engine.limits.max_signatures)
                    .enumerate()
                {
                    out.push(Examined {
                        signature: desc.digest.clone(),
                        layer: Some(index),
                        kind: Some(kind),
                        result: self
                            .check_simple_signing(layer, requirement, deadline)
                            .await,
                    });
                }
                out
            }
            Identified::Other => Vec::new(),
        }
    }

    /// A Sigstore bundle referrer: its first layer is the bundle.
    ///
    /// cosign `specs/BUNDLE_SPEC.md`, "Retrieval": "The final step is to use
    /// the `digest` from the first of the `layers` to retrieve the bundle blob".
    async fn check_bundle(
        &self,
        layers: &[Descriptor],
        requirement: &ScopeRequirement,
        deadline: Deadline,
    ) -> SignatureResult {
        let Some(layer) = layers
            .first()
            .filter(|l| cosign::is_bundle_media_type(&l.media_type))
        else {
            return SignatureResult::Rejected(FailureReason::UnsupportedEnvelope {
                found: layers.iter().map(|l| l.media_type.clone()).collect(),
            });
        };
        let bytes = match self
            .fetch_blob(layer, cosign::MAX_BUNDLE_BYTES as u64, deadline)
            .await
        {
            Ok(b) => b,
            Err(e) => return fetch_failed(e),
        };
        self.verify_cosign(CosignBlob::Bundle(bytes), requirement)
            .await
    }

    /// One simple-signing layer (of the `.sig` manifest or a signature referrer).
    async fn check_simple_signing(
        &self,
        layer: &Descriptor,
        requirement: &ScopeRequirement,
        deadline: Deadline,
    ) -> SignatureResult {
        // Not a signature layer: said without fetching it.
        if layer.media_type != cosign::MEDIA_TYPE_SIMPLE_SIGNING {
            return SignatureResult::Rejected(FailureReason::Cosign {
                check: pullgate_policy::requirements::CosignCheck::Signature,
                error: Arc::new(cosign::Error::NotSimpleSigning {
                    media_type: layer.media_type.chars().take(128).collect(),
                }),
            });
        }
        let payload = match self
            .fetch_blob(layer, cosign::MAX_PAYLOAD_BYTES as u64, deadline)
            .await
        {
            Ok(b) => b,
            Err(e) => return fetch_failed(e),
        };
        let blob = CosignBlob::Layer {
            media_type: layer.media_type.clone(),
            payload,
            annotations: layer.annotations.clone(),
        };
        self.verify_cosign(blob, requirement).await
    }

    /// Runs the cosign verifier on the blocking pool and decides the report
    /// under the scope's `[scope.cosign]`.
    async fn verify_cosign(
        &self,
        blob: CosignBlob,
        requirement: &ScopeRequirement,
    ) -> SignatureResult {
        let internal = |what| SignatureResult::Inconclusive(GateError::Internal(what));
        let _ = requirement;
        let Some(cosign) = self.policy.cosign(self.scope) else {
            return internal("cosign scope without its trust material");
        };
        let (cosign_requirement, trust) = (&cosign.requirement, Arc::clone(&cosign.trust));
        let Ok(_permit) = self.engine.permits.acquire().await else {
            return internal("verifier pool closed");
        };
        // Only the gate reads the clock; the verifier gets `now`.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let t = Instant::now();
        let repository = self.repository.clone();
        let digest = self.digest.clone();
        let report = tokio::task::spawn_blocking(move || {
            let subject = ImageSubject {
                repository: &repository,
                digest: &digest,
            };
            let fetched = match &blob {
                CosignBlob::Layer {
                    media_type,
                    payload,
                    annotations,
                } => Fetched::Layer(SignatureLayer {
                    media_type,
                    payload,
                    annotations,
                }),
                CosignBlob::Bundle(bytes) => Fetched::Bundle(bytes),
            };
            run_cosign(fetched, &trust, subject, now)
        })
        .await;
        self.engine.metrics.phase(Phase::verify, t.elapsed());
        let Ok(report) = report else {
            return internal("verifier task failed");
        };
        match decide_cosign(cosign_requirement, &report, &self.digest) {
            Ok(accepted) => SignatureResult::Accepted(accepted),
            Err(reason) => SignatureResult::Rejected(reason),
        }
    }

    /// A Notary Project signature manifest whose `layers` hold the envelope.
    async fn check_notary(
        &self,
        desc: &Descriptor,
        layers: &[Descriptor],
        deadline: Deadline,
    ) -> SignatureResult {
        match self.examine_notary(desc, layers, deadline).await {
            Ok(accepted) => SignatureResult::Accepted(accepted),
            Err(ended) => ended,
        }
    }

    /// [`VerifyJob::check_notary`], ending early (`Err`) with the
    /// signature's rejection or with why it could not be examined.
    async fn examine_notary(
        &self,
        desc: &Descriptor,
        layers: &[Descriptor],
        deadline: Deadline,
    ) -> Result<Accepted, SignatureResult> {
        let reject = SignatureResult::Rejected;
        let internal = |what| SignatureResult::Inconclusive(GateError::Internal(what));
        let Some(statement_id) = self.statement else {
            return Err(reject(FailureReason::NoNotaryStatement {
                repository: self.repository.clone(),
            }));
        };
        let Some(envelope_desc) = layers
            .iter()
            .find(|l| notary::is_supported_envelope(&l.media_type))
        else {
            return Err(reject(FailureReason::UnsupportedEnvelope {
                found: layers.iter().map(|l| l.media_type.clone()).collect(),
            }));
        };
        let envelope = self
            .fetch_blob(envelope_desc, u64::MAX, deadline)
            .await
            .map_err(fetch_failed)?;
        let media_type = envelope_desc.media_type.clone();
        let policy = Arc::clone(&self.policy);
        let _permit = self
            .engine
            .permits
            .acquire()
            .await
            .map_err(|_| internal("verifier pool closed"))?;
        // Only the gate reads the clock; the verifier gets `now`.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let t = Instant::now();
        let revocation = self.engine.revocation.clone();
        let verifier_policy = Arc::clone(&policy);
        let mut report = tokio::task::spawn_blocking(move || {
            run_verifier(
                &verifier_policy.store,
                verifier_policy.statement(statement_id),
                &media_type,
                &envelope,
                &revocation,
                now,
            )
        })
        .await
        .map_err(|_| internal("verifier task failed"))?;
        self.engine.metrics.phase(Phase::verify, t.elapsed());
        let statement = policy.statement(statement_id);

        // Revocation data missing from the cache: fetch it (never for an
        // untrusted chain, never when the policy skips revocation), then check again.
        if report.revocation_needs_data()
            && statement.enforcement(Validation::Revocation) != Enforcement::Skip
            && self
                .engine
                .revocation
                .needs_fetch(&report.revocation_requests, now)
        {
            match self
                .engine
                .revocation
                .prefetch(&report.revocation_requests, now, deadline)
                .await
            {
                Ok(()) => {}
                Err(e) => tracing::warn!(signature = %desc.digest, error = %e,
                    "revocation data could not be fetched; the check stays failed"),
            }
            let revocation = self.engine.revocation.clone();
            report = tokio::task::spawn_blocking(move || {
                report.recheck_revocation(&revocation, now);
                report
            })
            .await
            .map_err(|_| internal("revocation recheck task failed"))?;
        }
        // An AWS Signer signature with a trusted chain: ask Signer (cached),
        // unless the policy skips revocation.
        if let Some(query) = &report.aws_signer {
            if statement.enforcement(Validation::Revocation) != Enforcement::Skip {
                let result = self.engine.aws_signer.status(query, now, deadline).await;
                report.set_aws_signer_revocation(result);
            }
        }
        // An allow that relied on revocation data lives no longer than that
        // data: past its `nextUpdate` the certificate may have been revoked.
        let revocation_until = (statement.enforcement(Validation::Revocation)
            == Enforcement::Enforce)
            .then(|| {
                self.engine
                    .revocation
                    .valid_until(&report.revocation_requests, now)
            })
            .flatten();
        let mut accepted = decide_signature(statement, report, &self.digest).map_err(reject)?;
        accepted.revocation_until = revocation_until;
        Ok(accepted)
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
