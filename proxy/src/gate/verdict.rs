//! The verdict rules: what the results of the signatures of one digest add
//! up to, and for how long that verdict may be served.
//!
//! Input: one [`Examined`] per signature looked at (accepted, rejected, or
//! inconclusive), the requirements scope, the configured allow and deny
//! TTLs, and `now`. Output: a [`Judgement`] — allowed (signers and TTL),
//! denied (reason and TTL) or inconclusive (the error to fail open or closed
//! on). Pure: no I/O, no clock, no registry; every rule has a row in the
//! table tests beside it.
//!
//! The rules, in order:
//! 1. No signature of a kind the scope accepts listed: denied,
//!    [`DenyReason::NoSignature`].
//! 2. The accepted signers meet the requirements (`min_signers`, named
//!    identities) and there is at least one: allowed, whatever else failed.
//!    Signers are counted across kinds (`pullgate_policy::requirements::AcceptedSigner`):
//!    a Notary Project signer by certificate subject, a cosign key by its
//!    file name, a keyless cosign signer by issuer and subject.
//! 3. Otherwise, a signature that could not be examined (registry outage,
//!    deadline, a fault of pullgate's own) might have been the one needed:
//!    inconclusive, never denied.
//! 4. Otherwise, some signatures passed but not the signers required:
//!    denied, [`DenyReason::RequirementsUnmet`].
//! 5. Otherwise some signature failed: denied,
//!    [`DenyReason::SignaturesRejected`] with the first failure.
//! 6. Otherwise every signature passed, yet none has a signer the
//!    requirements can count (a Notary Project certificate subject that is
//!    not a distinguished name): denied, [`DenyReason::SignerNotNamed`].
//!
//! An allow lives no longer than the configured allow TTL, nor past the
//! earliest of the accepted signatures' certificate `notAfter`, signed
//! expiry and revocation `nextUpdate` (the TTL is zero, never negative, when
//! that instant has passed). A cosign signature sets none of these: it is
//! judged at its proven signing time, so time alone never ends it; what it
//! relied on is the scope's keys and trusted root, whose change starts a new
//! policy generation (see `verify::cosign`, "Expiry and caching").

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pullgate_policy::requirements::{
    AcceptedSigner, CosignSigner, ScopeRequirement, SignatureKind,
};
use pullgate_policy::{Digest, DistinguishedName, Validation};

use super::decision::{
    DenyReason, FailureReason, GateError, Kinds, LoggedFailure, SignatureFailure,
};

/// A signature that passed the trust policy (Notary Project) or its
/// scope's `[scope.cosign]` table, with the instants past which its allow
/// must not be served (the verdict rules cap the TTL by the earliest).
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    /// The signer as shown: a Notary Project signing certificate's subject,
    /// or a cosign signer (`cosign key release.pub`, `subject (issuer …)`).
    pub(crate) subject: String,
    /// The cosign signer; `None` for a Notary Project signature, whose
    /// signer is the certificate subject.
    pub(crate) cosign: Option<CosignSigner>,
    /// The signing certificate's `notAfter`.
    pub(crate) not_after: Option<SystemTime>,
    /// The signature's signed expiry (`io.cncf.notary.expiry`).
    pub(crate) expiry: Option<SystemTime>,
    /// When the level enforces revocation: the earliest `nextUpdate` of the
    /// revocation data the check read (set by the caller, which holds the cache).
    pub(crate) revocation_until: Option<SystemTime>,
    /// Failures the verification level logs instead of enforcing (permissive, audit), with why.
    pub(crate) logged: Vec<(Validation, LoggedFailure)>,
}

impl Accepted {
    /// The signer as the requirements count it; `None` for a Notary Project
    /// signature whose subject is not a distinguished name.
    pub(crate) fn signer(&self) -> Option<AcceptedSigner> {
        match &self.cosign {
            Some(c) => Some(AcceptedSigner::Cosign(c.clone())),
            None => self
                .subject
                .parse::<DistinguishedName>()
                .ok()
                .map(AcceptedSigner::Notary),
        }
    }
}

/// What became of one signature, as the rules see it.
#[derive(Debug, Clone)]
pub(crate) struct Examined {
    /// The signature manifest's digest.
    pub(crate) signature: Digest,
    /// The layer of that manifest, when each layer is one signature (cosign).
    pub(crate) layer: Option<usize>,
    /// Its kind; `None` for a referrer that could not be identified (its
    /// manifest could not be fetched).
    pub(crate) kind: Option<SignatureKind>,
    pub(crate) result: SignatureResult,
}

/// The three ways one signature can end.
#[derive(Debug, Clone)]
pub(crate) enum SignatureResult {
    /// It passed the trust policy.
    Accepted(Accepted),
    /// It failed: its content, or an answer the registry gave for it.
    Rejected(FailureReason),
    /// It could not be examined: the registry could not answer, the
    /// deadline passed, or pullgate's own plumbing failed.
    Inconclusive(GateError),
}

/// How long verdicts may be cached, from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ttls {
    pub(crate) allow: Duration,
    pub(crate) deny: Duration,
}

/// What the signatures of one digest add up to.
#[derive(Debug, Clone)]
pub(crate) enum Judgement {
    /// The requirements are met by `signers`; cache for `ttl`.
    Allowed { signers: Vec<String>, ttl: Duration },
    /// The policy says no; cache for `ttl`.
    Denied { reason: DenyReason, ttl: Duration },
    /// No verdict: a signature that might have counted could not be examined.
    Inconclusive(GateError),
}

/// Judges the signatures of one digest (rules in the module docs).
pub(crate) fn judge(
    examined: &[Examined],
    requirement: &ScopeRequirement,
    ttls: Ttls,
    now: SystemTime,
) -> Judgement {
    let denied = |reason| Judgement::Denied {
        reason,
        ttl: ttls.deny,
    };
    if examined.is_empty() {
        return denied(DenyReason::NoSignature {
            kinds: Kinds::of(requirement),
        });
    }
    let accepted: Vec<&Accepted> = examined
        .iter()
        .filter_map(|e| match &e.result {
            SignatureResult::Accepted(a) => Some(a),
            SignatureResult::Rejected(_) | SignatureResult::Inconclusive(_) => None,
        })
        .collect();
    let signers = signers(&accepted);
    let met = requirement.evaluate_signers(&ids(&signers));
    if met.is_ok() && !signers.is_empty() {
        return Judgement::Allowed {
            signers: signers.into_iter().map(|(_, s)| s.to_owned()).collect(),
            ttl: allow_ttl(&accepted, ttls.allow, now),
        };
    }
    // A signature we could not examine might have been the good one: inconclusive, not denied.
    let inconclusive = examined.iter().find_map(|e| match &e.result {
        SignatureResult::Inconclusive(error) => Some(error),
        SignatureResult::Accepted(_) | SignatureResult::Rejected(_) => None,
    });
    if let Some(error) = inconclusive {
        return Judgement::Inconclusive(error.clone());
    }
    if let (Err(unmet), false) = (met, signers.is_empty()) {
        return denied(DenyReason::RequirementsUnmet {
            requirement: requirement.name().to_owned(),
            unmet,
        });
    }
    let first = examined.iter().find_map(|e| match &e.result {
        SignatureResult::Rejected(reason) => Some(SignatureFailure {
            signature: e.signature.clone(),
            layer: e.layer,
            reason: reason.clone(),
        }),
        SignatureResult::Accepted(_) | SignatureResult::Inconclusive(_) => None,
    });
    match first {
        Some(first) => denied(DenyReason::SignaturesRejected {
            found: examined.len(),
            first: Arc::new(first),
        }),
        // Every signature passed, yet no signer counts: accepted Notary
        // Project signatures whose subject is not a distinguished name.
        None => denied(DenyReason::SignerNotNamed {
            found: accepted.len(),
            subject: accepted
                .first()
                .map(|a| a.subject.clone())
                .unwrap_or_default(),
        }),
    }
}

/// Whether the signatures examined so far already meet the requirements,
/// so the rest need not be fetched (unless every signature is wanted).
pub(crate) fn enough(examined: &[Examined], requirement: &ScopeRequirement) -> bool {
    let accepted: Vec<&Accepted> = examined
        .iter()
        .filter_map(|e| match &e.result {
            SignatureResult::Accepted(a) => Some(a),
            SignatureResult::Rejected(_) | SignatureResult::Inconclusive(_) => None,
        })
        .collect();
    requirement
        .evaluate_signers(&ids(&signers(&accepted)))
        .is_ok()
}

/// The accepted signers as the requirements count them (a Notary Project
/// signer only when its subject is a distinguished name, what the
/// requirements name identities by), with the signer as shown.
fn signers<'a>(accepted: &[&'a Accepted]) -> Vec<(AcceptedSigner, &'a str)> {
    accepted
        .iter()
        .filter_map(|a| Some((a.signer()?, a.subject.as_str())))
        .collect()
}

fn ids(signers: &[(AcceptedSigner, &str)]) -> Vec<AcceptedSigner> {
    signers.iter().map(|(s, _)| s.clone()).collect()
}

/// The configured allow TTL, cut short by the earliest instant past which
/// one of the accepted signatures must not be trusted; zero once it passed.
fn allow_ttl(accepted: &[&Accepted], configured: Duration, now: SystemTime) -> Duration {
    let until = accepted
        .iter()
        .flat_map(|a| [a.not_after, a.expiry, a.revocation_until])
        .flatten()
        .min();
    match until {
        None => configured,
        Some(until) => configured.min(until.duration_since(now).unwrap_or(Duration::ZERO)),
    }
}

#[cfg(test)]
mod tests;
