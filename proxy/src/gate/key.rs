//! What a verdict is found by: everything that decided it.
//!
//! Input: the policy in force, the repository of an image and its digest.
//! Output: a [`VerdictKey`]. The verdict cache, single flight, the
//! `ImageStatus` check ([`Gate::may_show`](super::Gate::may_show)) and the
//! persisted verdicts all use this one key, so a verdict made under one
//! trust policy statement (its trust stores, trusted identities, level) or
//! one requirements scope (`min_signers`, required identities) is never
//! served under another, and a verdict on one repository is never served
//! for another: signatures are discovered per repository (a digest signed
//! in `reg/app/b` may have no signature in `reg/app/a`), and a check may
//! depend on the repository itself (cosign's `docker-reference` in the
//! simple-signing payload). The same digest pushed to `reg/prod/app` and
//! `reg/dev/app` is verified once in each.
//!
//! A requirements scope that lists cosign may be decided without a trust
//! policy statement (see `policy_state::Plan`): its key names none. Its
//! cosign trust material (keys, trusted root) is the scope's, and a change
//! of those files starts a new generation.
//!
//! The key is compact, since the cache holds one per verdict (up to
//! `[cache] max_entries`): the digest as its raw bytes with the algorithm as
//! the variant ([`DigestKey`]), the repository as one shared string; the
//! typed [`Digest`] and [`Repository`] are rebuilt from them when a verdict is
//! persisted.

use std::sync::Arc;

use pullgate_policy::reference::DigestAlgorithm;
use pullgate_policy::requirements::{Requirements, ScopeRequirement};
use pullgate_policy::{Digest, Repository, Statement, TrustPolicyDocument};

use super::PolicyGeneration;

/// The trust policy statement, requirements scope, repository, digest and
/// policy generation a verdict was decided under.
///
/// Statement and scope are positions in the documents of `generation`
/// (unique within one generation; names are what the persisted form keeps).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct VerdictKey {
    /// Position of the trust policy statement in the trust policy document;
    /// `None` when no statement judged the signatures (a scope listing
    /// cosign, where Notary Project signatures count for nothing).
    pub(crate) statement: Option<usize>,
    /// Which requirements scope applies.
    pub(crate) requirement: RequirementScope,
    /// The repository whose signatures were discovered and checked, as
    /// `Repository`'s canonical text (`domain/path`).
    pub(crate) repository: Arc<str>,
    /// The manifest digest verified.
    pub(crate) digest: DigestKey,
    /// The policy (trust files) in force.
    pub(crate) generation: PolicyGeneration,
}

/// A manifest digest as the raw bytes its hex spells, the algorithm as the variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DigestKey {
    /// `sha256:<64 hex>`.
    Sha256([u8; 32]),
    /// `sha512:<128 hex>`, boxed so the common case stays small.
    Sha512(Box<[u8; 64]>),
}

impl DigestKey {
    /// The bytes of `digest` (`None` only if its hex did not decode, which
    /// a parsed [`Digest`] rules out).
    pub(crate) fn of(digest: &Digest) -> Option<Self> {
        match digest.algorithm() {
            DigestAlgorithm::Sha256 => {
                let mut b = [0u8; 32];
                hex::decode_to_slice(digest.hex(), &mut b).ok()?;
                Some(Self::Sha256(b))
            }
            DigestAlgorithm::Sha512 => {
                let mut b = Box::new([0u8; 64]);
                hex::decode_to_slice(digest.hex(), b.as_mut_slice()).ok()?;
                Some(Self::Sha512(b))
            }
        }
    }

    /// The digest again, as `Digest` (for persisting and logging).
    pub(crate) fn digest(&self) -> Option<Digest> {
        let text = match self {
            Self::Sha256(b) => format!("sha256:{}", hex::encode(b)),
            Self::Sha512(b) => format!("sha512:{}", hex::encode(b.as_slice())),
        };
        text.parse().ok()
    }
}

/// A requirements scope, as part of a [`VerdictKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RequirementScope {
    /// The `[[scope]]` entry at this position of the requirements file.
    Entry(usize),
    /// The built-in default (no entry covers the repository). Its own
    /// variant: a user's entry may be called `default` too.
    BuiltIn,
}

impl VerdictKey {
    /// The key of `digest` in `repository` under `statement` and
    /// `requirement`, both taken from `document` and `requirements` (by
    /// identity, not by name); `None` when `statement` is not one of
    /// `document`'s.
    pub(crate) fn new(
        document: &TrustPolicyDocument,
        requirements: &Requirements,
        statement: Option<&Statement>,
        requirement: &ScopeRequirement,
        repository: &Repository,
        digest: &Digest,
        generation: PolicyGeneration,
    ) -> Option<Self> {
        let statement = match statement {
            None => None,
            Some(statement) => Some(
                document
                    .statements()
                    .iter()
                    .position(|s| std::ptr::eq(s, statement))?,
            ),
        };
        let requirement = requirements
            .scopes()
            .iter()
            .position(|r| std::ptr::eq(r, requirement))
            .map_or(RequirementScope::BuiltIn, RequirementScope::Entry);
        Some(Self {
            statement,
            requirement,
            repository: Arc::from(repository.to_string()),
            digest: DigestKey::of(digest)?,
            generation,
        })
    }

    /// The key of a persisted verdict: the statement (if any) and scope
    /// named, when they exist in the policy of `generation`.
    pub(crate) fn from_names(
        document: &TrustPolicyDocument,
        requirements: &Requirements,
        statement: Option<&str>,
        requirement: Option<&str>,
        repository: &Repository,
        digest: &Digest,
        generation: PolicyGeneration,
    ) -> Option<Self> {
        let statement = match statement {
            None => None,
            Some(name) => Some(
                document
                    .statements()
                    .iter()
                    .position(|s| s.name() == name)?,
            ),
        };
        let requirement = match requirement {
            None => RequirementScope::BuiltIn,
            Some(name) => RequirementScope::Entry(
                requirements
                    .scopes()
                    .iter()
                    .position(|r| r.name() == name)?,
            ),
        };
        Some(Self {
            statement,
            requirement,
            repository: Arc::from(repository.to_string()),
            digest: DigestKey::of(digest)?,
            generation,
        })
    }

    /// The repository, parsed back from the key's text.
    pub(crate) fn repository(&self) -> Option<Repository> {
        self.repository.parse().ok()
    }

    /// The statement's name (`None` when no statement judged) and the
    /// scope's name (`None` for the built-in default), as persisted; `None`
    /// when the key is not of this policy.
    pub(crate) fn names<'a>(
        &self,
        document: &'a TrustPolicyDocument,
        requirements: &'a Requirements,
    ) -> Option<(Option<&'a str>, Option<&'a str>)> {
        let statement = match self.statement {
            None => None,
            Some(i) => Some(document.statements().get(i)?.name()),
        };
        let requirement = match self.requirement {
            RequirementScope::BuiltIn => None,
            RequirementScope::Entry(i) => Some(requirements.scopes().get(i)?.name()),
        };
        Some((statement, requirement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{
        "version": "1.0",
        "trustPolicies": [
            {"name": "prod", "registryScopes": ["reg.example/prod/app", "reg.example/prod/web"],
             "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:prod"], "trustedIdentities": ["*"]},
            {"name": "dev", "registryScopes": ["reg.example/dev/app"],
             "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:dev"], "trustedIdentities": ["*"]},
            {"name": "rest", "registryScopes": ["*"],
             "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:prod"], "trustedIdentities": ["*"]}
        ]
    }"#;

    /// A user entry called `default`, besides the built-in default.
    const REQUIREMENTS: &str = r#"
        [[scope]]
        name = "default"
        registry_scopes = ["reg.example/prod/web"]
        min_signers = 2
    "#;

    fn digest() -> Digest {
        format!("sha256:{}", "a".repeat(64)).parse().unwrap()
    }

    fn key_for(
        document: &TrustPolicyDocument,
        requirements: &Requirements,
        repo: &str,
    ) -> VerdictKey {
        let repo: Repository = repo.parse().unwrap();
        let statement = document.statement_for(&repo).unwrap();
        let requirement = requirements.for_repository(&repo);
        VerdictKey::new(
            document,
            requirements,
            Some(statement),
            requirement,
            &repo,
            &digest(),
            PolicyGeneration(3),
        )
        .unwrap()
    }

    #[test]
    fn one_digest_gets_one_key_per_statement_and_scope() {
        let document = TrustPolicyDocument::from_json(POLICY.as_bytes()).unwrap();
        let requirements = Requirements::from_toml(REQUIREMENTS).unwrap();
        let prod = key_for(&document, &requirements, "reg.example/prod/app");
        let dev = key_for(&document, &requirements, "reg.example/dev/app");
        let web = key_for(&document, &requirements, "reg.example/prod/web");
        let other = key_for(&document, &requirements, "reg.example/other/app");
        let other2 = key_for(&document, &requirements, "elsewhere.example/x");

        // Different statements: never one verdict.
        assert_ne!(prod, dev);
        assert_ne!(prod, other);
        // Same statement, other requirements scope (the user's "default"
        // entry against the built-in default): not one verdict either.
        assert_eq!(prod.statement, web.statement);
        assert_ne!(prod, web);
        assert_eq!(web.requirement, RequirementScope::Entry(0));
        assert_eq!(prod.requirement, RequirementScope::BuiltIn);
        // Same statement and scope, another repository: not one verdict
        // (its signatures are discovered there).
        assert_eq!(
            (other.statement, other.requirement),
            (other2.statement, other2.requirement)
        );
        assert_ne!(other, other2);
        assert_eq!(
            other,
            key_for(&document, &requirements, "reg.example/other/app")
        );
        // Another generation: another verdict.
        let mut later = prod.clone();
        later.generation = PolicyGeneration(4);
        assert_ne!(prod, later);
    }

    #[test]
    fn names_round_trip_for_persistence() {
        let document = TrustPolicyDocument::from_json(POLICY.as_bytes()).unwrap();
        let requirements = Requirements::from_toml(REQUIREMENTS).unwrap();
        for repo in [
            "reg.example/prod/app",
            "reg.example/prod/web",
            "reg.example/dev/app",
        ] {
            let key = key_for(&document, &requirements, repo);
            let (statement, requirement) = key.names(&document, &requirements).unwrap();
            let back = VerdictKey::from_names(
                &document,
                &requirements,
                statement,
                requirement,
                &key.repository().unwrap(),
                &key.digest.digest().unwrap(),
                PolicyGeneration(3),
            )
            .unwrap();
            assert_eq!(back, key, "{repo}");
            assert_eq!(key.repository().unwrap().to_string(), repo);
            assert_eq!(key.digest.digest().unwrap(), digest());
        }
        // A statement the policy no longer has: no key.
        assert!(VerdictKey::from_names(
            &document,
            &requirements,
            Some("gone"),
            None,
            &"reg.example/prod/app".parse().unwrap(),
            &digest(),
            PolicyGeneration(3)
        )
        .is_none());
    }

    /// A scope decided without a statement (cosign) keys without one, and
    /// persists and restores so; it is never the key of a statement's verdict.
    #[test]
    fn a_key_without_statement_round_trips() {
        let document = TrustPolicyDocument::from_json(POLICY.as_bytes()).unwrap();
        let requirements = Requirements::from_toml(REQUIREMENTS).unwrap();
        let repo: Repository = "reg.example/prod/web".parse().unwrap();
        let requirement = requirements.for_repository(&repo);
        let none = VerdictKey::new(
            &document,
            &requirements,
            None,
            requirement,
            &repo,
            &digest(),
            PolicyGeneration(3),
        )
        .unwrap();
        assert_eq!(none.statement, None);
        assert_ne!(
            none,
            key_for(&document, &requirements, "reg.example/prod/web")
        );
        let (statement, scope) = none.names(&document, &requirements).unwrap();
        assert_eq!((statement, scope), (None, Some("default")));
        let back = VerdictKey::from_names(
            &document,
            &requirements,
            None,
            scope,
            &repo,
            &digest(),
            PolicyGeneration(3),
        )
        .unwrap();
        assert_eq!(back, none);
    }

    #[test]
    fn digests_round_trip_through_their_bytes() {
        let sha256 = digest();
        let sha512: Digest = format!("sha512:{}", "0f".repeat(64)).parse().unwrap();
        for d in [sha256, sha512] {
            let key = DigestKey::of(&d).unwrap();
            assert_eq!(key.digest().unwrap(), d);
        }
        // Two algorithms over the same leading bytes are never one key.
        let a: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let b: Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
        assert_ne!(DigestKey::of(&a), DigestKey::of(&b));
    }

    #[test]
    fn a_statement_of_another_document_has_no_key() {
        let document = TrustPolicyDocument::from_json(POLICY.as_bytes()).unwrap();
        let copy = TrustPolicyDocument::from_json(POLICY.as_bytes()).unwrap();
        let requirements = Requirements::default();
        let repo: Repository = "reg.example/dev/app".parse().unwrap();
        let foreign = copy.statement_for(&repo).unwrap();
        assert!(VerdictKey::new(
            &document,
            &requirements,
            Some(foreign),
            requirements.for_repository(&repo),
            &repo,
            &digest(),
            PolicyGeneration(1),
        )
        .is_none());
    }
}
