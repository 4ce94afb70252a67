//! Finding the signatures of one digest: the candidates a requirements
//! scope's signature kinds ask for, from every place they are stored.
//!
//! Input: the registry client, repository, digest, credentials and deadline
//! of one verification, the scope's kinds, and what makes a candidate
//! promising ([`Promise`]). Output: [`Candidate`]s ordered by promise, at
//! most `limits.max_signatures`, and how many were listed; or the registry
//! error when a listing could not be read.
//!
//! Order: the cap applies after it, so anyone who may push referrers (a
//! scanner, a CI job without the signing key) cannot push the real
//! signature past the cap with junk listed first. In order:
//! 1. Notary Project signatures whose `io.cncf.notary.x509chain.thumbprint#S256`
//!    annotation, as the listing gives it, names a certificate of a trust
//!    store the statement verifies with;
//! 2. cosign signatures: the `.sig` tag's layers and cosign signature
//!    referrers, unless their annotations show a signer the scope cannot
//!    trust (a certificate in a keys-only scope, none in a keyless-only
//!    one), and Sigstore bundles, unless the listed predicate type is not
//!    cosign's image signature;
//! 3. the rest (no or other thumbprints, untyped entries, mismatches), in
//!    listing order.
//!
//! Annotations are the pusher's claim, not verified: they only order the
//! work. A flood that copies the real thumbprints still ranks with the real
//! signature; a denial caused by the cap says so and names the key.
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

use std::collections::{BTreeMap, HashSet};

use pullgate_policy::requirements::{CosignRequirement, ScopeRequirement, SignatureKind};
use pullgate_policy::{Digest, Repository, Statement, StoreType};
use sha2::{Digest as _, Sha256};

use crate::deadline::Deadline;
use crate::registry::{self, Credentials, Descriptor, RegistryClient};
use crate::verify::trust_store::TrustStore;
use crate::verify::{cosign, notary};

/// The annotation of a Notary Project signature manifest listing the
/// SHA-256 thumbprints of its certificate chain, a JSON array in a string.
///
/// Notary Project signature specification, "OCI Signatures": "This REQUIRED
/// annotation whose value contains the list of SHA-256 fingerprints of
/// signing certificate and certificate chain (including root) used for
/// signature generation. The list of fingerprints is present as a JSON
/// array string, corresponding to ordered certificates in *Certificate
/// Chain* unsigned attribute in the signature envelope."
pub(super) const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";

/// The annotation cosign sets on a bundle referrer naming the bundle's
/// in-toto predicate type.
const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// Longest thumbprint annotation read (a chain of a dozen certificates is
/// under 1 KiB); a longer one ranks as no match.
const MAX_THUMBPRINT_ANNOTATION: usize = 4 << 10;

/// What makes a candidate promising for one verification: the thumbprints
/// of the statement's signing certificates, and which cosign signers the
/// scope trusts.
#[derive(Debug, Clone, Default)]
pub(super) struct Promise {
    /// Lowercase hex SHA-256 of each certificate of the statement's `ca`
    /// and `signingAuthority` stores.
    thumbprints: HashSet<String>,
    /// The scope trusts cosign keys.
    cosign_keys: bool,
    /// The scope trusts keyless (Fulcio) cosign signers.
    cosign_keyless: bool,
}

impl Promise {
    /// The promise for `statement` (its certificates in `store`) and the
    /// scope's `[scope.cosign]` table.
    pub(super) fn new(
        store: &TrustStore,
        statement: Option<&Statement>,
        cosign: Option<&CosignRequirement>,
    ) -> Self {
        let thumbprints = statement
            .into_iter()
            .flat_map(Statement::trust_stores)
            .filter(|r| r.kind != StoreType::Tsa)
            .flat_map(|r| store.get(r.kind, &r.name).into_iter().flatten())
            .map(|c| hex::encode(Sha256::digest(c.der())))
            .collect();
        Self {
            thumbprints,
            cosign_keys: cosign.is_some_and(|c| !c.keys().is_empty()),
            cosign_keyless: cosign.is_some_and(|c| !c.identities().is_empty()),
        }
    }

    /// The rank of a referrer as listed: 0 first, 2 last.
    pub(super) fn rank_referrer(&self, desc: &Descriptor) -> u8 {
        match identify(desc.artifact_type.as_deref()) {
            Identified::Notary if self.names_trusted_certificate(&desc.annotations) => 0,
            Identified::Notary | Identified::Other => 2,
            Identified::Bundle => match desc.annotations.get(BUNDLE_PREDICATE_ANNOTATION) {
                Some(t) if t != cosign::SIGN_PREDICATE_TYPE => 2,
                _ => 1,
            },
            Identified::SimpleSigning => 1,
        }
    }

    /// The rank of a `.sig` layer: 1, or 2 when its annotations show a
    /// signer the scope cannot trust.
    fn rank_sig_layer(&self, layer: &Descriptor) -> u8 {
        let keyless = layer
            .annotations
            .contains_key(cosign::ANNOTATION_CERTIFICATE);
        if (keyless && self.cosign_keyless) || (!keyless && self.cosign_keys) {
            1
        } else {
            2
        }
    }

    fn rank(&self, candidate: &Candidate) -> u8 {
        match candidate {
            Candidate::Referrer(desc) => self.rank_referrer(desc),
            Candidate::SigLayer { layer, .. } => self.rank_sig_layer(layer),
        }
    }

    /// Whether the thumbprint annotation names a certificate of the statement's stores.
    fn names_trusted_certificate(&self, annotations: &BTreeMap<String, String>) -> bool {
        let Some(listed) = annotations
            .get(THUMBPRINT_ANNOTATION)
            .filter(|a| a.len() <= MAX_THUMBPRINT_ANNOTATION)
        else {
            return false;
        };
        serde_json::from_str::<Vec<String>>(listed).is_ok_and(|listed| {
            listed
                .iter()
                .any(|t| self.thumbprints.contains(&t.to_ascii_lowercase()))
        })
    }
}

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

/// The signature candidates of one digest, ordered by promise, how many
/// were listed before `max_signatures` cut them, and whether the referrers
/// walk was cut short by `max_referrers_pages` (see `registry::Referrers`).
#[derive(Debug)]
pub(super) struct Discovered {
    pub(super) candidates: Vec<Candidate>,
    /// Candidates listed in what was read (referrers of the wanted types
    /// and `.sig` layers); more than `candidates` when the cap cut some.
    pub(super) listed: usize,
    pub(super) cut_at_pages: Option<usize>,
}

/// Lists the signature candidates of the digest for `requirement`: the
/// referrers and, when the scope lists cosign, the `.sig` manifest's
/// layers, both requested at once; the `max` most promising in all, in
/// order of promise (listing order within a rank).
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
    promise: &Promise,
    max: usize,
) -> Result<Discovered, registry::Error> {
    let types = artifact_types(requirement);
    let rank = |d: &Descriptor| promise.rank_referrer(d);
    let referrers = source.registry.referrers_ranked(
        source.repository,
        source.digest,
        &types,
        &rank,
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
    let referrers = referrers?;
    let cut_at_pages = referrers.cut_at_pages;
    let mut listed = referrers.listed;
    let mut out: Vec<Candidate> = referrers.iter().cloned().map(Candidate::Referrer).collect();
    // cosign `specs/SIGNATURE_SPEC.md`, "OCI Image Manifest V1": "Only one
    // image manifest is created for every signed object. Multiple
    // signatures can be embedded in one image manifest." — one per layer.
    if let Some(sig) = sig? {
        listed = listed.saturating_add(sig.manifest.layers.len());
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
    // A stable sort: listing order within a rank, referrers before `.sig` layers.
    out.sort_by_key(|c| promise.rank(c));
    out.truncate(max);
    Ok(Discovered {
        candidates: out,
        listed,
        cut_at_pages,
    })
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

    fn listed(artifact_type: &str, annotations: &[(&str, &str)]) -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            digest: format!("sha256:{}", "a".repeat(64)).parse().unwrap(),
            size: 512,
            artifact_type: Some(artifact_type.to_owned()),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn candidates_rank_by_promise() {
        let trusted = "ab".repeat(32);
        let promise = Promise {
            thumbprints: HashSet::from([trusted.clone()]),
            cosign_keys: true,
            cosign_keyless: false,
        };
        let chain = format!("[\"{}\", \"{}\"]", "cd".repeat(32), trusted.to_uppercase());
        let rank = |t, a: &[(&str, &str)]| promise.rank_referrer(&listed(t, a));
        // A Notary Project signature naming a trusted certificate, in any case.
        assert_eq!(
            rank(notary::ARTIFACT_TYPE, &[(THUMBPRINT_ANNOTATION, &chain)]),
            0
        );
        // Other thumbprints, none, or an annotation that does not parse: last.
        let other = format!("[\"{}\"]", "cd".repeat(32));
        for a in [
            &[(THUMBPRINT_ANNOTATION, other.as_str())][..],
            &[],
            &[(THUMBPRINT_ANNOTATION, trusted.as_str())],
        ] {
            assert_eq!(rank(notary::ARTIFACT_TYPE, a), 2, "{a:?}");
        }
        // Bundles next, unless listed as an attestation.
        assert_eq!(rank(cosign::ARTIFACT_TYPE_BUNDLE, &[]), 1);
        assert_eq!(
            rank(
                cosign::ARTIFACT_TYPE_BUNDLE,
                &[(BUNDLE_PREDICATE_ANNOTATION, cosign::SIGN_PREDICATE_TYPE)]
            ),
            1
        );
        assert_eq!(
            rank(
                cosign::ARTIFACT_TYPE_BUNDLE,
                &[(
                    BUNDLE_PREDICATE_ANNOTATION,
                    "https://slsa.dev/provenance/v1"
                )]
            ),
            2
        );
        assert_eq!(rank(cosign::ARTIFACT_TYPE_SIGNATURE, &[]), 1);
        assert_eq!(rank("application/spdx+json", &[]), 2);
        // `.sig` layers: a keyless one is no promise in a keys-only scope.
        let layer = |a: &[(&str, &str)]| Candidate::SigLayer {
            manifest: format!("sha256:{}", "b".repeat(64)).parse().unwrap(),
            index: 0,
            layer: listed(cosign::MEDIA_TYPE_SIMPLE_SIGNING, a),
        };
        assert_eq!(promise.rank(&layer(&[])), 1);
        assert_eq!(
            promise.rank(&layer(&[(cosign::ANNOTATION_CERTIFICATE, "-----BEGIN")])),
            2
        );
        let keyless = Promise {
            cosign_keys: false,
            cosign_keyless: true,
            ..Promise::default()
        };
        assert_eq!(keyless.rank(&layer(&[])), 2);
        assert_eq!(
            keyless.rank(&layer(&[(cosign::ANNOTATION_CERTIFICATE, "-----BEGIN")])),
            1
        );
    }
}
