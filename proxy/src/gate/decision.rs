//! What the gate answers: the decision on one pull ([`Decision`] with its
//! [`Allow`] proof token or [`Denial`]), why an image is denied
//! ([`DenyReason`], [`SignatureFailure`]), why no decision could be made
//! ([`GateError`]), the cached verdict on one digest ([`Verdict`]) and what
//! became of each signature examined for it ([`SignatureRecord`]).
//!
//! Only the gate builds an [`Allow`]: its fields are private to `gate`, and
//! `cri` forwards a pull only with one in hand.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pullgate_policy::requirements::{
    ConditionFailure, CosignCheck, CosignRejection, ScopeRequirement, SignatureKind, Unmet,
};
use pullgate_policy::{
    Digest, ImageRef, PinnedRef, Repository, SigningProfileRefusal, TrustStoreRef, Validation,
};

use super::origin::Origin;
use crate::audit::SignatureEntry;
use crate::deadline::{Deadline, DeadlineExceeded};
use crate::registry::{self, Credentials};
use crate::verify;
use crate::verify::cosign;

/// One pull to decide.
#[derive(Debug)]
pub(crate) struct PullRequest {
    pub(crate) image: ImageRef,
    pub(crate) credentials: Credentials,
    pub(crate) deadline: Deadline,
    /// The door and pod it comes from (the pod's namespace chooses the requirements scope).
    pub(crate) origin: Origin,
}

/// The gate's answer.
#[derive(Debug)]
pub(crate) enum Decision {
    Allow(Allow),
    Deny(Denial),
}

/// Proof that the gate allowed a pull; only `gate` constructs it (its
/// fields and constructors are private to `gate`).
#[derive(Debug, Clone)]
pub(crate) struct Allow {
    target: PullTarget,
    tagged: Option<String>,
}

/// What containerd is asked to pull.
#[derive(Debug, Clone)]
enum PullTarget {
    /// The digest that was decided on: `name@digest`.
    Pinned(PinnedRef),
    /// No digest was decided on (level `skip`, a registry outage under
    /// `fail_open` before the tag resolved, a scope in `audit` or `warn`
    /// mode without a statement): the reference as the gate judged it, in
    /// its canonical spelling, so containerd's `hosts.toml` lookup sees the
    /// host the gate matched scopes against, not the client's spelling.
    Canonical(ImageRef),
}

impl Allow {
    /// An allow of `image` pinned to `digest`; the tag it named is created after the pull.
    pub(super) fn pinned_to(image: &ImageRef, digest: Digest) -> Self {
        Self {
            tagged: tag_to_create(image),
            target: PullTarget::Pinned(image.pinned(digest)),
        }
    }

    /// An allow of `image` without a digest: forwarded under its canonical reference.
    pub(super) fn unpinned(image: &ImageRef) -> Self {
        Self {
            tagged: None,
            target: PullTarget::Canonical(image.clone()),
        }
    }

    /// [`Allow::pinned_to`] when the digest is known, else [`Allow::unpinned`].
    pub(super) fn pinned_if_resolved(image: &ImageRef, digest: Option<Digest>) -> Self {
        match digest {
            Some(d) => Self::pinned_to(image, d),
            None => Self::unpinned(image),
        }
    }

    /// The digest containerd must pull as `name@digest`, when one was decided on.
    pub(crate) fn pinned(&self) -> Option<&PinnedRef> {
        match &self.target {
            PullTarget::Pinned(p) => Some(p),
            PullTarget::Canonical(_) => None,
        }
    }

    /// The name containerd is asked to pull: `name@digest`, or else the
    /// canonical reference (never the client's own spelling).
    pub(crate) fn image_to_pull(&self) -> String {
        match &self.target {
            PullTarget::Pinned(p) => p.to_string(),
            PullTarget::Canonical(image) => image.to_string(),
        }
    }

    /// `name:tag` to point at the pinned digest after the pull, when the request had a tag.
    pub(crate) fn tagged_name(&self) -> Option<String> {
        self.tagged.clone()
    }
}

/// The `name:tag` to point at the pinned digest after the pull, if any.
fn tag_to_create(image: &ImageRef) -> Option<String> {
    // `name:tag@digest` asks for the digest; containerd records no tag for it either.
    image
        .digest()
        .is_none()
        .then(|| image.tagged_name())
        .flatten()
}

/// A refusal, written for `kubectl describe pod`.
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    pub(crate) image: ImageRef,
    pub(crate) digest: Option<Digest>,
    /// The policy the text names: the trust policy statement, or, for a
    /// requirements scope decided without one (cosign), that scope.
    pub(crate) statement: Option<String>,
    pub(crate) reason: DenyReason,
    /// The scope's `signature_repository`, where signatures were looked up
    /// (named when none was found there).
    pub(crate) signatures_in: Option<Repository>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "image {}", self.image)?;
        if let Some(d) = &self.digest {
            write!(f, " ({d})")?;
        }
        match &self.statement {
            Some(s) => write!(f, " denied by policy \"{s}\": {}", self.reason)?,
            None => write!(f, " denied: {}", self.reason)?,
        }
        match (&self.reason, &self.signatures_in) {
            (
                DenyReason::NoSignature { .. } | DenyReason::NoSignatureInPages { .. },
                Some(repository),
            ) => write!(
                f,
                " (looked up in {repository}, the scope's signature_repository)"
            ),
            _ => Ok(()),
        }
    }
}

/// What did not go ahead because no decision could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halted {
    /// A pull (`PullImage`, the image verifier): `image … not pulled`.
    Pull,
    /// An image a runtime door would run (a container's, a sandbox's, a
    /// checkpoint's base): `image … not run`, inside the door's own sentence
    /// (`container not created: …`).
    Run,
}

/// What did not go ahead because no decision could be made, as every door
/// says it (the CRI status, the image verifier's line): `image <ref>
/// [(<digest>)] not pulled|run: signature verification could not complete
/// (<why>); failing closed`.
#[derive(Clone, Copy)]
pub(crate) struct Undecided<'a> {
    /// What stopped.
    pub(crate) halted: Halted,
    /// The image as the door names it.
    pub(crate) image: &'a dyn fmt::Display,
    /// The digest, when the door names it apart from the image.
    pub(crate) digest: Option<&'a dyn fmt::Display>,
    /// Why no decision could be made.
    pub(crate) why: &'a dyn fmt::Display,
}

impl fmt::Display for Undecided<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = match self.halted {
            Halted::Pull => "not pulled",
            Halted::Run => "not run",
        };
        write!(f, "image {}", self.image)?;
        if let Some(d) = self.digest {
            write!(f, " ({d})")?;
        }
        write!(
            f,
            " {not}: signature verification could not complete ({}); failing closed",
            self.why
        )
    }
}

impl fmt::Debug for Undecided<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Undecided").field(&self.to_string()).finish()
    }
}

/// Why a required attestation does not count, said in one sentence with
/// the predicate type.
#[derive(Debug, Clone)]
pub(crate) enum AttestationDenial {
    /// No attestation of the type was found.
    Missing,
    /// None among the `examined` most promising of the `listed` candidates
    /// (`[registry.limits] max_signatures` cut the rest).
    MissingAmongFirst { examined: usize, listed: usize },
    /// The first attestation of the type failed its signature or statement checks.
    Rejected {
        attestation: Digest,
        reason: FailureReason,
    },
    /// The first attestation of the type fails a condition (none meets all).
    Condition {
        attestation: Digest,
        condition: String,
        failure: ConditionFailure,
    },
}

/// A denial because of a required attestation.
#[derive(Debug, Clone)]
pub(crate) struct AttestationUnmet {
    pub(crate) predicate_type: String,
    pub(crate) denial: AttestationDenial,
}

impl fmt::Display for AttestationUnmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pt = &self.predicate_type;
        match &self.denial {
            AttestationDenial::Missing => write!(
                f,
                "no signed attestation {pt} of this digest was found (an in-toto statement of that predicate type naming this digest, signed by a signer of the scope: cosign attest, or an in-toto artifact signed with notation); attest it and push it"
            ),
            AttestationDenial::MissingAmongFirst { examined, listed } => write!(
                f,
                "no signed attestation {pt} of this digest among the {examined} most promising of the {listed} candidates listed (raise [registry.limits] max_signatures to examine more)"
            ),
            AttestationDenial::Rejected {
                attestation,
                reason,
            } => write!(
                f,
                "the attestation {pt} ({}) does not count: {reason}",
                short(attestation)
            ),
            AttestationDenial::Condition {
                attestation,
                condition,
                failure,
            } => write!(
                f,
                "the attestation {pt} ({}) fails condition '{condition}' ({failure})",
                short(attestation)
            ),
        }
    }
}

/// Why an image was denied.
#[derive(Debug, Clone)]
pub(crate) enum DenyReason {
    /// No trust policy statement's registry scope covers the repository.
    NoApplicableStatement { repository: Repository },
    /// The registry lists no signature of the kinds the scope accepts.
    NoSignature { kinds: Kinds },
    /// None of the kinds the scope accepts among the first `pages` pages of
    /// referrers (nor at the `.sig` tag), and the registry links to more
    /// than `[registry.limits] max_referrers_pages` allows.
    NoSignatureInPages { kinds: Kinds, pages: usize },
    /// Signatures were found, none passed.
    SignaturesRejected {
        found: usize,
        first: Arc<SignatureFailure>,
    },
    /// Some signatures passed, but not the signers the requirements ask for.
    RequirementsUnmet { requirement: String, unmet: Unmet },
    /// Every trust store the statement verifies signatures with is empty or missing.
    NoTrustAnchors { stores: Vec<EmptyStore> },
    /// Every signature examined passed, but none has a signer the
    /// requirements can count: each is a Notary Project signature whose
    /// signing certificate subject is not a distinguished name (the
    /// requirements count and name signers by distinguished name).
    SignerNotNamed {
        /// How many signatures passed.
        found: usize,
        /// The first one's certificate subject, as the certificate spells it.
        subject: String,
    },
    /// The signatures allowed it, but a required attestation
    /// (`[[scope.attestations]]`) is missing, rejected, or fails a condition.
    Attestation(Box<AttestationUnmet>),
    /// `reason`, judged on the `examined` most promising of the `listed`
    /// signature candidates: `[registry.limits] max_signatures` left the
    /// rest unexamined.
    Capped {
        reason: Box<DenyReason>,
        examined: usize,
        listed: usize,
    },
}

/// The signature kinds a requirements scope accepts, as a denial names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub(crate) notation: bool,
    pub(crate) cosign: bool,
}

impl Kinds {
    /// The kinds `requirement` lists.
    pub(crate) fn of(requirement: &ScopeRequirement) -> Self {
        let has = |k| requirement.signature_kinds().contains(&k);
        Self {
            notation: has(SignatureKind::Notation),
            cosign: has(SignatureKind::Cosign),
        }
    }
}

/// A named trust store without certificates, as a statement names it.
#[derive(Debug, Clone)]
pub(crate) struct EmptyStore {
    /// `type:name`, as in the trust policy.
    pub(crate) store: TrustStoreRef,
    /// Whether the store's directory is missing (rather than empty).
    pub(crate) missing: bool,
}

impl fmt::Display for EmptyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing {
            write!(f, "trust store {} does not exist", self.store)
        } else {
            write!(f, "trust store {} is empty", self.store)
        }
    }
}

impl DenyReason {
    /// A short label for metrics.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::NoApplicableStatement { .. } => "no_statement",
            Self::NoSignature { .. } => "no_signature",
            Self::NoSignatureInPages { .. } => "no_signature_in_pages",
            Self::SignaturesRejected { .. } => "signatures_rejected",
            Self::RequirementsUnmet { .. } => "requirements_unmet",
            Self::NoTrustAnchors { .. } => "no_trust_anchors",
            Self::SignerNotNamed { .. } => "signer_not_named",
            Self::Attestation(_) => "attestation_unmet",
            Self::Capped { reason, .. } => reason.label(),
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoApplicableStatement { repository } => write!(
                f,
                "no trust policy statement has a registry scope that covers {repository}"
            ),
            Self::NoSignature { kinds } => match (kinds.notation, kinds.cosign) {
                (true, false) => f.write_str(
                    "no Notary Project signature of this digest was found in the registry; sign it with notation and push the signature",
                ),
                (false, true) => f.write_str(
                    "no cosign signature of this digest was found in the registry (no Sigstore bundle or cosign signature among its referrers, no sha256-<hex>.sig tag); sign it with cosign and push the signature",
                ),
                _ => f.write_str(
                    "no Notary Project or cosign signature of this digest was found in the registry; sign it with notation or cosign and push the signature",
                ),
            },
            Self::NoSignatureInPages { kinds, pages } => write!(
                f,
                "no {} signature of this digest among the first {pages} pages of referrers the registry listed; it lists more than [registry.limits] max_referrers_pages lets pullgate read",
                match (kinds.notation, kinds.cosign) {
                    (true, false) => "Notary Project",
                    (false, true) => "cosign",
                    _ => "Notary Project or cosign",
                }
            ),
            Self::SignaturesRejected { found: 1, first } => write!(f, "{first}"),
            Self::SignaturesRejected { found, first } => {
                write!(f, "none of the {found} signatures passed; the first: {first}")
            }
            Self::RequirementsUnmet { requirement, unmet } => {
                write!(f, "requirements of scope \"{requirement}\" not met: {unmet}")
            }
            Self::NoTrustAnchors { stores } => {
                f.write_str("no signature can be trusted: ")?;
                for (i, s) in stores.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s}")?;
                }
                Ok(())
            }
            Self::SignerNotNamed { found: 1, subject } => write!(
                f,
                "the signature passed, but its signing certificate subject \"{subject}\" is not a distinguished name, so it cannot count as a signer"
            ),
            Self::SignerNotNamed { found, subject } => write!(
                f,
                "{found} signatures passed, but no signing certificate subject is a distinguished name (the first: \"{subject}\"), so none can count as a signer"
            ),
            Self::Attestation(unmet) => write!(f, "{unmet}"),
            Self::Capped {
                reason,
                examined,
                listed,
            } => write!(
                f,
                "{reason}; only the {examined} most promising of the {listed} signatures listed were examined (raise [registry.limits] max_signatures to examine more)"
            ),
        }
    }
}

/// Why one signature did not count.
#[derive(Debug, Clone)]
pub(crate) struct SignatureFailure {
    pub(crate) signature: Digest,
    /// The layer of `signature` (a cosign signature manifest, whose every
    /// layer is one signature); `None` for a manifest that is one signature.
    pub(crate) layer: Option<usize>,
    pub(crate) reason: FailureReason,
}

impl fmt::Display for SignatureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signature {}", short(&self.signature))?;
        if let Some(layer) = self.layer {
            write!(f, " layer {layer}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The failed step of one signature: a fact about the signature (its
/// content, or an answer the registry gave for it), never a fault of
/// pullgate's own (that is [`GateError::Internal`]).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FailureReason {
    /// A verification enforced by the level failed.
    #[error("{validation} check failed: {error}")]
    Check {
        validation: Validation,
        error: Arc<verify::notary::NotaryError>,
    },
    /// A verification the level enforces was not run by the verifier (it
    /// stopped earlier); as the policy reads it, a failed check.
    #[error("{validation} check failed: the verifier did not run this check")]
    NotRun { validation: Validation },
    /// The envelope passed integrity but names no target artifact.
    #[error("integrity check failed: the envelope names no target artifact")]
    NoTarget,
    /// The signing certificate's subject is not a trusted identity of the statement.
    #[error("signing certificate subject \"{subject}\" is not a trusted identity of the trust policy statement")]
    UntrustedIdentity { subject: String },
    /// An AWS Signer signature whose signing profile the statement does not trust.
    #[error("AWS Signer signing profile version \"{profile_version}\" is not trusted: {why}")]
    UntrustedSigningProfile {
        profile_version: String,
        why: SigningProfileRefusal,
    },
    /// The signature covers another artifact.
    #[error("it signs {signed}, not this image")]
    TargetMismatch { signed: Digest },
    /// The signature manifest's `subject` is another artifact.
    #[error("its manifest's subject is {subject}, not this image")]
    SubjectMismatch { subject: String },
    /// The signature manifest carries no envelope of a known media type.
    #[error("no signature envelope of a supported media type (found {found:?})")]
    UnsupportedEnvelope { found: Vec<String> },
    /// The registry answered, but not with the signature (404, 401, 403,
    /// over its cap, not matching its digest, malformed).
    #[error("cannot fetch it: {0}")]
    Fetch(registry::Error),
    /// A Notary Project signature in a scope that also accepts cosign, where
    /// no trust policy statement verifies Notary Project signatures.
    #[error("no trust policy statement that verifies Notary Project signatures covers {repository} (none covers it, or its level is skip)")]
    NoNotaryStatement { repository: Repository },
    /// A check a cosign signature needs failed (the verifier's error).
    #[error("cosign {check} check failed: {error}")]
    Cosign {
        check: CosignCheck,
        error: Arc<cosign::Error>,
    },
    /// The scope's `[scope.cosign]` refused the signer, or a check it
    /// needs was not run.
    #[error("{0}")]
    CosignRejected(CosignRejection),
    /// An attestation's in-toto statement is not about this image, or not
    /// of the predicate type required.
    #[error("{0}")]
    Statement(Arc<verify::intoto::Error>),
    /// An attestation artifact with no Notary Project signature.
    #[error("it has no Notary Project signature (sign the attestation artifact with notation)")]
    AttestationUnsigned,
}

/// Why a check the level only logs failed: the verifier's error, or the
/// statement's refusal of the signer.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LoggedFailure {
    /// The verifier's check failed.
    #[error("{0}")]
    Check(Arc<verify::notary::NotaryError>),
    /// The verifier did not run the check.
    #[error("the verifier did not run this check")]
    NotRun,
    /// The statement does not trust the AWS Signer signing profile.
    #[error("{0}")]
    SigningProfile(SigningProfileRefusal),
    /// The statement does not trust the certificate subject.
    #[error("the signing certificate is not a trusted identity")]
    UntrustedIdentity,
}

/// The decision could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum GateError {
    /// The registry could not answer.
    #[error("{0}")]
    Registry(#[from] registry::Error),
    /// The request's deadline passed while it waited for the (shared)
    /// discovery and verification of the image's signatures.
    #[error("deadline exceeded while the image's signatures were being discovered and verified")]
    Deadline,
    /// A fault of pullgate's own plumbing (a task that ended without a
    /// result, a verifier task that panicked): inconclusive, so it fails closed.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl GateError {
    /// Whether the request's deadline passed.
    pub(crate) fn is_deadline(&self) -> bool {
        match self {
            Self::Deadline => true,
            Self::Registry(e) => e.is_timeout(),
            Self::Internal(_) => false,
        }
    }

    /// A short label for metrics.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Registry(e) if e.is_timeout() => "timeout",
            Self::Registry(e) if e.is_unreachable() => "unreachable",
            Self::Registry(e) if e.is_server_error() => "server_error",
            Self::Registry(e) if e.is_rate_limited() => "rate_limited",
            Self::Registry(e) if e.is_unauthorized() => "unauthorized",
            Self::Registry(e) if e.is_not_found() => "not_found",
            Self::Registry(_) => "other",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<DeadlineExceeded> for GateError {
    fn from(_: DeadlineExceeded) -> Self {
        Self::Deadline
    }
}

/// The signatures examined for one verdict, in the order examined.
pub(crate) type Signatures = Arc<[SignatureRecord]>;

/// What became of one signature, for the audit record of the decision that
/// examined it and for `pullgate verify` (rendered to text only there).
#[derive(Debug, Clone)]
pub(crate) struct SignatureRecord {
    /// The signature manifest's digest.
    pub(crate) digest: Digest,
    /// Its kind; `None` when it could not be identified.
    pub(crate) kind: Option<SignatureKind>,
    /// The layer of that manifest, for a cosign signature manifest whose
    /// every layer is one signature.
    pub(crate) layer: Option<usize>,
    pub(crate) signer: Option<String>,
    /// `None` if it passed.
    pub(crate) failure: Option<SignatureProblem>,
    /// Failures the level logged rather than enforced.
    pub(crate) logged: Vec<(Validation, LoggedFailure)>,
}

/// Why one signature did not pass.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SignatureProblem {
    /// It failed: a fact about the signature.
    #[error("{0}")]
    Rejected(FailureReason),
    /// It could not be examined (registry outage, deadline, a fault of pullgate's own).
    #[error("could not be examined: {0}")]
    Inconclusive(GateError),
}

impl SignatureRecord {
    pub(super) fn entry(&self) -> SignatureEntry {
        SignatureEntry {
            digest: self.digest.to_string(),
            kind: self.kind.map(|k| k.to_string()),
            layer: self.layer,
            signer: self.signer.clone(),
            passed: self.failure.is_none(),
            reason: self.failure.as_ref().map(ToString::to_string),
            logged_failures: self
                .logged
                .iter()
                .map(|(v, why)| format!("{v}: {why}"))
                .collect(),
        }
    }
}

/// The accepted signers' subjects of an allow verdict, shared: verdicts
/// with the same signers hold one list (see [`SignerLists`]), and a cache
/// hit clones a pointer.
pub(crate) type Signers = Arc<[String]>;

/// A verdict on one digest under one policy generation, as the cache keeps
/// it: only what a later pull needs (allowed and by whom, until when; or
/// why not). The per-signature records are not part of it: they go to the
/// audit log with the decision that examined them, and `pullgate verify`
/// examines the signatures afresh.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    Allowed {
        signers: Signers,
        /// When the verdict expires, in whole seconds since the Unix epoch
        /// (rounded down; for persisting it).
        until: u64,
    },
    Denied {
        reason: Arc<DenyReason>,
    },
}

impl Verdict {
    /// An allow by `signers` until `until` (rounded down to the second).
    pub(super) fn allowed(signers: Signers, until: SystemTime) -> Self {
        Self::Allowed {
            signers,
            until: until.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }

    /// A denial for `reason`; the most common one, no signature, is one
    /// shared value per set of kinds rather than one per verdict.
    pub(super) fn denied(reason: DenyReason) -> Self {
        static NO_SIGNATURE: [std::sync::OnceLock<Arc<DenyReason>>; 4] = [
            std::sync::OnceLock::new(),
            std::sync::OnceLock::new(),
            std::sync::OnceLock::new(),
            std::sync::OnceLock::new(),
        ];
        let reason = match reason {
            DenyReason::NoSignature { kinds } => {
                let slot = usize::from(kinds.notation) | usize::from(kinds.cosign) << 1;
                Arc::clone(
                    NO_SIGNATURE[slot].get_or_init(|| Arc::new(DenyReason::NoSignature { kinds })),
                )
            }
            other => Arc::new(other),
        };
        Self::Denied { reason }
    }

    /// When an allow verdict expires, as a time (for persisting it).
    pub(super) fn until(&self) -> Option<SystemTime> {
        match self {
            Self::Allowed { until, .. } => Some(UNIX_EPOCH + Duration::from_secs(*until)),
            Self::Denied { .. } => None,
        }
    }
}

/// Signer lists shared by allow verdicts: most verdicts name one of a few
/// signers, so each distinct list is kept once. Bounded: past
/// [`SignerLists::MAX`] distinct lists, a verdict keeps its own.
#[derive(Debug, Default)]
pub(crate) struct SignerLists {
    lists: std::sync::Mutex<std::collections::HashSet<Signers>>,
}

impl SignerLists {
    /// Most distinct signer lists kept for sharing.
    pub(crate) const MAX: usize = 1024;

    /// The shared list equal to `signers` (`signers` itself when it is the first such).
    pub(crate) fn share(&self, signers: Signers) -> Signers {
        let mut lists = match self.lists.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(known) = lists.get(&signers) {
            return Arc::clone(known);
        }
        if lists.len() < Self::MAX {
            lists.insert(Arc::clone(&signers));
        }
        signers
    }

    /// `verdict` with its signer list shared.
    pub(crate) fn shared(&self, verdict: Verdict) -> Verdict {
        match verdict {
            Verdict::Allowed { signers, until } => Verdict::Allowed {
                signers: self.share(signers),
                until,
            },
            denied @ Verdict::Denied { .. } => denied,
        }
    }
}

/// `sha256:0123456789ab…` for messages.
pub(crate) fn short(d: &Digest) -> String {
    let s = d.to_string();
    match s.char_indices().nth(19) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}
