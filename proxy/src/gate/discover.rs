//! Finding the signatures of one digest: the candidates a requirements
//! scope's signature kinds ask for, from every place they are stored.
//!
//! Input: the registry client, repository, digest, credentials and deadline
//! of one verification, and the scope's kinds. Output: [`Candidate`]s in
//! discovery order (referrers first, then the layers of the `.sig`
//! manifest), at most `limits.max_signatures`; or the registry error when a
//! listing could not be read.
//!
//! Where signatures are found, one path for both kinds:
//! - the referrers API (tag schema when it answers 404), for the artifact
//!   types of the scope's kinds: Notary Project signatures
//!   (`application/vnd.cncf.notary.signature`), Sigstore bundles (v0.3's
//!   own media type and the `version`-parameter ones before it) and cosign
//!   signatures attached as referrers, plus index entries without an
//!   artifact type, identified later by their manifest;
//! - cosign's `sha256-<hex>.sig` tag (scopes listing cosign): a manifest
//!   whose every layer is one simple-signing signature.
//!
//! Both listings are requested at once (one round trip when the referrers
//! API answers). Each is one request under `min(deadline, request_timeout)`
//! (the referrers walk follows at most `max_referrers_pages` pages), capped
//! as the registry client caps it.

use pullgate_policy::requirements::{ScopeRequirement, SignatureKind};
use pullgate_policy::{Digest, Repository};

use crate::deadline::Deadline;
use crate::registry::{self, Credentials, Descriptor, RegistryClient};
use crate::verify::{cosign, notary};

/// One place a signature (or several, for a cosign signature manifest) may be.
#[derive(Debug, Clone)]
pub(super) enum Candidate {
    /// A manifest that refers to the digest: a Notary Project signature, a
    /// Sigstore bundle, a cosign signature manifest, or (no artifact type in
    /// the index) to be identified by its manifest.
    Referrer(Descriptor),
    /// Layer `index` of the `.sig` manifest `manifest`: one simple-signing
    /// signature, its descriptor already read.
    SigLayer {
        manifest: Digest,
        index: usize,
        layer: Descriptor,
    },
}

/// The kind of signature a referrer holds, by its artifact type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Identified {
    /// A Notary Project signature manifest.
    Notary,
    /// A manifest whose layer is a Sigstore bundle.
    Bundle,
    /// A cosign signature manifest: each layer a simple-signing signature.
    SimpleSigning,
    /// Something else (an SBOM, an attestation format pullgate does not read).
    Other,
}

/// What `artifact_type` says a referrer is.
///
/// cosign `specs/BUNDLE_SPEC.md`, "Retrieval": "From this the client can
/// identify any Sigstore bundles by looking at the `artifactType` field."
pub(super) fn identify(artifact_type: Option<&str>) -> Identified {
    match artifact_type {
        Some(notary::ARTIFACT_TYPE) => Identified::Notary,
        Some(t) if cosign::is_bundle_media_type(t) => Identified::Bundle,
        Some(cosign::ARTIFACT_TYPE_SIGNATURE) => Identified::SimpleSigning,
        _ => Identified::Other,
    }
}

/// Whether `requirement` counts signatures of `identified`.
pub(super) fn accepts(requirement: &ScopeRequirement, identified: Identified) -> bool {
    let has = |k| requirement.signature_kinds().contains(&k);
    match identified {
        Identified::Notary => has(SignatureKind::Notation),
        Identified::Bundle | Identified::SimpleSigning => has(SignatureKind::Cosign),
        Identified::Other => false,
    }
}

/// The artifact types the referrers listing is asked for.
pub(super) fn artifact_types(requirement: &ScopeRequirement) -> Vec<&'static str> {
    let mut types = Vec::new();
    for kind in requirement.signature_kinds() {
        match kind {
            SignatureKind::Notation => types.push(notary::ARTIFACT_TYPE),
            SignatureKind::Cosign => {
                types.push(cosign::ARTIFACT_TYPE_BUNDLE);
                types.extend(cosign::BUNDLE_MEDIA_TYPES_PARAMETERISED);
                types.push(cosign::ARTIFACT_TYPE_SIGNATURE);
            }
            // A kind this build does not know has no place to look.
            _ => {}
        }
    }
    types
}

/// One verification's view of the registry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    pub(super) registry: &'a RegistryClient,
    pub(super) repository: &'a Repository,
    pub(super) digest: &'a Digest,
    pub(super) credentials: &'a Credentials,
    pub(super) deadline: Deadline,
}

/// Lists the signature candidates of the digest for `requirement`: the
/// referrers and, when the scope lists cosign, the `.sig` manifest's
/// layers, both requested at once; at most `max` in all.
///
/// # Errors
/// A listing could not be read (an outage, the deadline, or an answer the
/// registry gave: over its cap, malformed); the decision cannot be made
/// without it.
///
/// # Cancel safety
/// Cancel safe.
pub(super) async fn discover(
    source: Source<'_>,
    requirement: &ScopeRequirement,
    max: usize,
) -> Result<Vec<Candidate>, registry::Error> {
    let types = artifact_types(requirement);
    let referrers = source.registry.referrers(
        source.repository,
        source.digest,
        &types,
        source.credentials,
        source.deadline,
    );
    let sig = async {
        if requirement.cosign().is_none() {
            return Ok(None);
        }
        source
            .registry
            .cosign_signatures(
                source.repository,
                source.digest,
                source.credentials,
                source.deadline,
            )
            .await
    };
    let (referrers, sig) = tokio::join!(referrers, sig);
    let mut out: Vec<Candidate> = referrers?.into_iter().map(Candidate::Referrer).collect();
    // cosign `specs/SIGNATURE_SPEC.md`, "OCI Image Manifest V1": "Only one
    // image manifest is created for every signed object. Multiple
    // signatures can be embedded in one image manifest." — one per layer.
    if let Some(sig) = sig? {
        out.extend(
            sig.manifest
                .layers
                .into_iter()
                .enumerate()
                .map(|(index, layer)| Candidate::SigLayer {
                    manifest: sig.digest.clone(),
                    index,
                    layer,
                }),
        );
    }
    out.truncate(max);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrers_are_identified_by_artifact_type() {
        for (t, want) in [
            (Some(notary::ARTIFACT_TYPE), Identified::Notary),
            (
                Some("application/vnd.dev.sigstore.bundle.v0.3+json"),
                Identified::Bundle,
            ),
            (
                Some("application/vnd.dev.sigstore.bundle+json; version=0.1"),
                Identified::Bundle,
            ),
            (
                Some("application/vnd.dev.sigstore.bundle+json;version=0.2"),
                Identified::Bundle,
            ),
            (
                Some("application/vnd.dev.cosign.artifact.sig.v1+json"),
                Identified::SimpleSigning,
            ),
            (Some("application/spdx+json"), Identified::Other),
            (
                Some("application/vnd.dev.sigstore.bundle+json;version=9"),
                Identified::Other,
            ),
            (None, Identified::Other),
        ] {
            assert_eq!(identify(t), want, "{t:?}");
        }
    }

    #[test]
    fn each_kind_asks_for_its_own_artifact_types() {
        let requirements = pullgate_policy::requirements::Requirements::from_toml(
            "[[scope]]\nname = \"c\"\nregistry_scopes = [\"r.example/c\"]\nsignature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [\"/k.pub\"]\n\
             [[scope]]\nname = \"b\"\nregistry_scopes = [\"r.example/b\"]\nsignature_kinds = [\"notation\", \"cosign\"]\n[scope.cosign]\nkeys = [\"/k.pub\"]\n",
        )
        .unwrap();
        let [cosign_only, both] = requirements.scopes() else {
            panic!("two scopes")
        };
        let notation = ScopeRequirement::default();
        assert_eq!(artifact_types(&notation), [notary::ARTIFACT_TYPE]);
        let c = artifact_types(cosign_only);
        assert!(!c.contains(&notary::ARTIFACT_TYPE));
        assert!(c.contains(&cosign::ARTIFACT_TYPE_BUNDLE));
        assert!(c.contains(&"application/vnd.dev.sigstore.bundle+json;version=0.1"));
        assert!(c.contains(&cosign::ARTIFACT_TYPE_SIGNATURE));
        assert_eq!(artifact_types(both).len(), c.len() + 1);
        assert!(!accepts(cosign_only, Identified::Notary));
        assert!(accepts(cosign_only, Identified::Bundle));
        assert!(accepts(both, Identified::Notary));
        assert!(!accepts(&notation, Identified::SimpleSigning));
        assert!(!accepts(both, Identified::Other));
    }
}
