//! cosign and Sigstore signature verification, offline.
//!
//! Input: one signature as fetched — a cosign simple-signing layer (payload
//! bytes plus its annotations, [`SignatureLayer`]) or a Sigstore bundle
//! (v0.1 to v0.3, JSON) — the trust material of the scope
//! ([`trust::CosignTrust`]: named public keys and a parsed
//! `trusted_root.json`), the image it is checked for ([`ImageSubject`]: the
//! resolved repository and manifest digest) and `now`, read by the gate.
//! Output: a [`Report`] naming the signed digest, the signer (a key's file
//! name, or a Fulcio certificate's issuer and subject), the proven signing
//! time, and the result of each [`CosignCheck`] run. Deciding belongs to
//! `pullgate_policy::requirements::CosignRequirement::evaluate`.
//!
//! | check | simple-signing layer | bundle |
//! |---|---|---|
//! | Signature | `dev.cosignproject.cosign/signature` over the payload bytes, with a configured key or the certificate's key | bundle parses; message signature or DSSE signature verifies |
//! | Certificate | keyless: Fulcio chain to a CA of the trusted root, valid at the proven time; SCT against the CT log keys | same |
//! | TransparencyLog | Rekor SET in `dev.sigstore.cosign/bundle` (keyless always; key-based when a trusted root is configured); signing time not after `now` | Rekor v1 SET and/or inclusion proof with signed checkpoint, Rekor v2 (Ed25519 logs) with an RFC 3161 TSA timestamp |
//! | Payload | `type` is `cosign container image signature`, `docker-manifest-digest` is the image digest | DSSE in-toto statement of predicate type `https://sigstore.dev/cosign/sign/v1` whose subject digest is the image digest (what `cosign sign --new-bundle-format` writes and `cosign verify` checks), or a message signature over the manifest |
//! | SignedIdentity | `docker-reference` names the image's repository | the in-toto statement's subject for the digest has a `name` naming the image's repository (cosign v3 writes none: such a bundle fails it, and counts only under `signed_identity = "any"`); a message signature names none |
//!
//! Attestations go through the same checks: a bundle referrer's DSSE
//! statement (`bundle::verify_attestation_bundle`) or a cosign v2 `.att`
//! layer's envelope (`att`), whose Payload check is that the statement is
//! an in-toto statement of the required predicate type naming the image
//! digest (`verify::intoto`); the statement comes back with the report for
//! the requirement's conditions.
//!
//! Signature, Certificate and TransparencyLog of Sigstore material are run
//! by the `sigstore-verify` crate (pinned `=0.15.1`) in one call that stops
//! at the first failure: its error is reported under the check it belongs
//! to, and the checks after it are not reported (the policy counts a check
//! not reported as failed). Payload and SignedIdentity always run when the
//! payload parses, whatever the signature's result, so a denial can say
//! everything that is wrong. A key-based `.sig` signature without a trusted
//! root is checked here directly (no log to consult).
//!
//! Time: the verifier never reads the clock. Certificates are judged at the
//! signing time proven by the log's integrated time (SET) or a TSA
//! timestamp, never at `now`; `now` only bounds that time from above.
//! `sigstore-verify` itself does read the wall clock, only to refuse material
//! dated in the future (an integrated time after the wall clock; log, CA and
//! TSA keys whose validity starts later): stricter, never more lenient.
//!
//! # Expiry and caching
//! Nothing this verifier accepts stops holding as time passes: a keyless
//! signature is judged at its proven signing time, so its certificate's
//! expiry (ten minutes for Fulcio) does not end the verdict, and keys have
//! no validity window. The `now`-dependent check (signing time not in the
//! future) can only turn a denial into an allow later, never the reverse.
//! A cached allow therefore relies only on the trust material and the
//! policy: a change of a key file or `trusted_root.json` must start a new
//! policy generation. [`Report::not_after`] is the signing certificate's end
//! of validity, reported for the audit log, not a cache deadline.
//!
//! Limits: payloads over [`MAX_PAYLOAD_BYTES`], bundles over
//! [`MAX_BUNDLE_BYTES`] and annotations over [`MAX_ANNOTATION_BYTES`] are
//! refused before parsing. Synchronous, no I/O, no panics on any input.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use pullgate_policy::{Digest, Repository};

pub(crate) use pullgate_policy::requirements::{CosignCheck, CosignFormat, CosignSigner};

pub(crate) mod att;
pub(crate) mod bundle;
pub(crate) mod payload;
pub(crate) mod provider;
pub(crate) mod simple_signing;
pub(crate) mod trust;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;

/// Artifact type of a Sigstore bundle attached as an OCI referrer, and the
/// media type of its one layer (cosign `specs/BUNDLE_SPEC.md`).
pub(crate) const ARTIFACT_TYPE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The bundle media types before v0.3's own: bundles of versions 0.1 to
/// 0.3 written with a `version` parameter (sigstore protobuf-specs).
pub(crate) const BUNDLE_MEDIA_TYPES_PARAMETERISED: [&str; 3] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];
/// Artifact type of a cosign simple-signing signature attached as an OCI
/// 1.1 referrer (`cosign sign --registry-referrers-mode=oci-1-1`); its
/// layers are simple-signing layers as in a `.sig` manifest.
pub(crate) const ARTIFACT_TYPE_SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// Whether `media_type` names a Sigstore bundle (any version), compared
/// without case and without whitespace around the parameter.
pub(crate) fn is_bundle_media_type(media_type: &str) -> bool {
    let norm: String = media_type
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    norm == ARTIFACT_TYPE_BUNDLE || BUNDLE_MEDIA_TYPES_PARAMETERISED.contains(&norm.as_str())
}

/// Layer media type of a cosign signature (`.sig` image layer).
pub(crate) const MEDIA_TYPE_SIMPLE_SIGNING: &str =
    "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation: base64 signature over the payload bytes.
pub(crate) const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation: PEM signing certificate (keyless).
pub(crate) const ANNOTATION_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation: PEM chain of the signing certificate.
pub(crate) const ANNOTATION_CHAIN: &str = "dev.sigstore.cosign/chain";
/// Layer annotation: Rekor SET bundle (`{"SignedEntryTimestamp", "Payload"}`).
pub(crate) const ANNOTATION_BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// `critical.type` of a simple-signing payload.
pub(crate) const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// In-toto predicate type of a cosign v3 image signature bundle.
pub(crate) const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// DSSE payload type of an in-toto statement.
pub(crate) const IN_TOTO_PAYLOAD_TYPE: &str = crate::verify::intoto::PAYLOAD_TYPE;

/// Simple-signing payloads larger than this are refused.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Bundles larger than this are refused.
pub(crate) const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// Annotation values (signature, certificate, chain, SET) larger than this are refused.
pub(crate) const MAX_ANNOTATION_BYTES: usize = 64 * 1024;

/// The image a signature is checked for: what the gate resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageSubject<'a> {
    pub(crate) repository: &'a Repository,
    pub(crate) digest: &'a Digest,
}

/// One cosign signature layer as found in the registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignatureLayer<'a> {
    /// The layer's media type.
    pub(crate) media_type: &'a str,
    /// The layer blob (the simple-signing payload), digest-checked by the fetcher.
    pub(crate) payload: &'a [u8],
    /// The layer's annotations.
    pub(crate) annotations: &'a BTreeMap<String, String>,
}

/// Why one check failed. Messages end up in a kubelet event: lowercase, no
/// trailing period, saying what to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Error {
    #[error("the signature layer has media type {media_type:?}, not {MEDIA_TYPE_SIMPLE_SIGNING}")]
    NotSimpleSigning { media_type: String },
    #[error("the signature layer has no {name} annotation")]
    MissingAnnotation { name: &'static str },
    #[error("annotation {name} is not valid: {problem}")]
    Annotation {
        name: &'static str,
        problem: AnnotationProblem,
    },
    #[error("the {what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("the simple-signing payload is not valid: {0}")]
    Payload(#[from] payload::PayloadError),
    #[error("the payload signs type {found:?}, not {SIMPLE_SIGNING_TYPE:?}")]
    WrongType { found: String },
    #[error("the signature is for {signed}, not for the image digest {expected}")]
    DigestMismatch { expected: Digest, signed: Digest },
    #[error("the signature names {signed:?}, which is not a digest")]
    InvalidSignedDigest { signed: String },
    #[error("the signature names repository {signed}, not {expected} (set signed_identity = \"any\" to accept any)")]
    RepositoryMismatch {
        expected: Repository,
        signed: Repository,
    },
    #[error("the bundle names no repository (its in-toto statement's subject has no name, as cosign v3 writes it), so it cannot show it was made for {expected}; set signed_identity = \"any\" in [scope.cosign] to accept bundles on the signer's identity alone")]
    BundleNamesNoRepository { expected: Repository },
    #[error("the bundle's in-toto statement names {signed:?}, not an image repository")]
    InvalidSubjectName { signed: String },
    #[error("the signature's docker-reference {signed:?} is not an image reference")]
    InvalidDockerReference { signed: String },
    #[error("the signature is not made by any of the {configured} configured cosign key(s)")]
    NoMatchingKey { configured: usize },
    #[error("the signature is key-based but this scope configures no cosign keys")]
    NoKeys,
    #[error("keyless signatures and bundles need a trusted_root, and this scope configures none")]
    NoTrustedRoot,
    #[error("the signature has no transparency log entry (no {ANNOTATION_BUNDLE} annotation), so its signing time is not proven")]
    NoLogEntry,
    #[error("the Rekor bundle annotation is not valid: {0}")]
    RekorBundle(#[from] payload::RekorBundleError),
    #[error("the bundle is not valid JSON of a Sigstore bundle: {0}")]
    BundleMalformed(Arc<sigstore_verify::types::Error>),
    #[error("the bundle's DSSE envelope does not hold an in-toto statement: {0}")]
    Statement(Arc<serde_json::Error>),
    #[error("the bundle's DSSE payload type is {found:?}, not {IN_TOTO_PAYLOAD_TYPE}")]
    PayloadType { found: String },
    #[error("the bundle's statement has predicate type {found:?}, not {SIGN_PREDICATE_TYPE} (an attestation is not an image signature)")]
    PredicateType { found: String },
    #[error("the bundle's statement has no subject with the image digest {expected}")]
    SubjectMismatch { expected: Digest },
    #[error("{0}")]
    Attestation(crate::verify::intoto::Error),
    #[error(
        "the attestation layer has media type {media_type:?}, not {}",
        att::MEDIA_TYPE_DSSE
    )]
    NotAttestationLayer { media_type: String },
    #[error("the DSSE envelope has {count} signatures; cosign writes one")]
    EnvelopeSignatures { count: usize },
    #[error("the proven signing time is after the verification time")]
    SignedInFuture {
        signed_at: SystemTime,
        now: SystemTime,
    },
    #[error("{0}")]
    Sigstore(Arc<sigstore_verify::Error>),
    #[error("internal error in the cosign verifier: {0}")]
    Internal(&'static str),
}

/// What is wrong with an annotation value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AnnotationProblem {
    #[error("not base64")]
    Base64,
    #[error("not a PEM certificate")]
    Pem,
}

impl Error {
    /// The check a `sigstore-verify` error belongs to.
    fn sigstore_check(e: &sigstore_verify::Error) -> CosignCheck {
        use sigstore_verify::Error as E;
        match e {
            E::Certificate(_) | E::IdentityMismatch { .. } | E::IssuerMismatch { .. } => {
                CosignCheck::Certificate
            }
            E::TransparencyLog(_) | E::Timestamp(_) => CosignCheck::TransparencyLog,
            E::ArtifactMismatch(_) => CosignCheck::Payload,
            _ => CosignCheck::Signature,
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone)]
pub(crate) struct CheckReport {
    pub(crate) check: CosignCheck,
    pub(crate) result: Result<(), Error>,
}

/// Everything learnt from one cosign signature.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) format: CosignFormat,
    /// The manifest digest the signature names (`docker-manifest-digest`,
    /// the statement subject or the message digest); `None` if unreadable.
    pub(crate) target: Option<Digest>,
    /// Who signed; `None` if no key or certificate verified the signature.
    pub(crate) signer: Option<CosignSigner>,
    /// The signing time proven by a log or TSA; `None` without one.
    pub(crate) signed_at: Option<SystemTime>,
    /// Keyless: the signing certificate's end of validity (for the audit
    /// log; see the module docs on why it does not bound a cached verdict).
    pub(crate) not_after: Option<SystemTime>,
    /// One per check run, in order.
    pub(crate) checks: Vec<CheckReport>,
}

impl Report {
    fn new(format: CosignFormat) -> Self {
        Self {
            format,
            target: None,
            signer: None,
            signed_at: None,
            not_after: None,
            checks: Vec::new(),
        }
    }

    fn push(&mut self, check: CosignCheck, result: Result<(), Error>) {
        self.checks.push(CheckReport { check, result });
    }

    /// The first failure of `check`, `Some(Ok)` if it ran and passed, `None` if not run.
    pub(crate) fn check(&self, check: CosignCheck) -> Option<Result<(), &Error>> {
        let mut ran = false;
        for c in self.checks.iter().filter(|c| c.check == check) {
            ran = true;
            if let Err(e) = &c.result {
                return Some(Err(e));
            }
        }
        ran.then_some(Ok(()))
    }

    /// `(check, passed)` pairs, as `CosignRequirement::evaluate` takes them.
    pub(crate) fn results(&self) -> Vec<(CosignCheck, bool)> {
        self.checks
            .iter()
            .map(|c| (c.check, c.result.is_ok()))
            .collect()
    }

    /// The first failed check, if any.
    pub(crate) fn first_failure(&self) -> Option<(CosignCheck, &Error)> {
        self.checks
            .iter()
            .find_map(|c| c.result.as_ref().err().map(|e| (c.check, e)))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first_failure() {
            Some((check, e)) => write!(f, "{check} check failed: {e}"),
            None => f.write_str("all checks passed"),
        }
    }
}

/// `jiff` time (what `sigstore-verify` reports) as `SystemTime`.
fn system_time(t: impl Into<SystemTime>) -> SystemTime {
    t.into()
}
