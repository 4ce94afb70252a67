//! What a verdict is found by: everything that decided it.
//!
//! Input: the ids of the trust policy statement and requirements scope the
//! policy in force chose for a repository (`PolicyState::plan_for`), the
//! repository and the digest. Output: a [`VerdictKey`]. The verdict cache, single flight, the
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
//! A scope's required attestations (`[[scope.attestations]]`: predicate
//! types and CEL conditions) decide its verdicts too. They live in the
//! requirements file, whose content is part of the policy fingerprint, so
//! changing one starts a new generation and no verdict judged under other
//! conditions is served.
//!
//! The key is compact, since the cache holds one per verdict (up to
//! `[cache] max_entries`): statement and scope as `u16` ids, the digest as
//! its raw bytes with the algorithm as the variant ([`DigestKey`]), the
//! repository as one shared string; the names of statement and scope and the
//! typed [`Digest`] and [`Repository`] are rebuilt from them when a verdict is
//! persisted.

use std::sync::Arc;

use pullgate_policy::reference::DigestAlgorithm;
use pullgate_policy::{Digest, Repository};

use super::policy_state::ids::{PolicyGeneration, ScopeId, StatementId};

/// The trust policy statement, requirements scope, repository, digest and
/// policy generation a verdict was decided under.
///
/// Statement and scope are the ids the policy of `generation` gave them
/// (`u16`s; names are what the persisted form keeps, see
/// `PolicyState::names`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct VerdictKey {
    /// The trust policy statement; `None` when no statement judged the
    /// signatures (a scope listing cosign, where Notary Project signatures
    /// count for nothing).
    pub(crate) statement: Option<StatementId>,
    /// Which requirements scope applies.
    pub(crate) scope: ScopeId,
    /// The repository whose signatures were discovered and checked, as
    /// `Repository`'s canonical text (`domain/path`).
    pub(crate) repository: Arc<str>,
    /// The scope's `signature_repository`, where the signatures were
    /// looked up instead of next to the image; `None`: next to it. (The
    /// scope and generation imply it; kept so that no path from a key to
    /// a verdict can forget where its signatures came from.)
    /// (A thin pointer, so the common `None` costs one word.)
    pub(crate) signatures: Option<Arc<Repository>>,
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
    /// The bytes of `digest` (a parsed [`Digest`] is lowercase hex of its
    /// algorithm's length, so every pair of characters is one byte).
    pub(crate) fn of(digest: &Digest) -> Self {
        match digest.algorithm() {
            DigestAlgorithm::Sha256 => {
                let mut b = [0u8; 32];
                unhex(digest.hex(), &mut b);
                Self::Sha256(b)
            }
            DigestAlgorithm::Sha512 => {
                let mut b = Box::new([0u8; 64]);
                unhex(digest.hex(), b.as_mut_slice());
                Self::Sha512(b)
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

/// Decodes the hex of a parsed digest into `out`.
fn unhex(hex: &str, out: &mut [u8]) {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        // A parsed digest has no other character.
        _ => 0,
    };
    for (pair, byte) in hex.as_bytes().chunks_exact(2).zip(out.iter_mut()) {
        *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
}

impl VerdictKey {
    /// The key of `digest` in `repository` under `statement` and `scope`
    /// (ids given by the policy of `generation`).
    pub(super) fn new(
        statement: Option<StatementId>,
        scope: ScopeId,
        repository: &Repository,
        signatures: Option<&Repository>,
        digest: &Digest,
        generation: PolicyGeneration,
    ) -> Self {
        Self {
            statement,
            scope,
            repository: Arc::from(repository.to_string()),
            signatures: signatures.map(|r| Arc::new(r.clone())),
            digest: DigestKey::of(digest),
            generation,
        }
    }

    /// The repository, parsed back from the key's text.
    pub(crate) fn repository(&self) -> Option<Repository> {
        self.repository.parse().ok()
    }

    /// The signature repository; `None` when the signatures
    /// were looked up next to the image.
    pub(crate) fn signature_repository(&self) -> Option<Repository> {
        self.signatures.as_deref().cloned()
    }
}

#[cfg(test)]
mod tests {
    use pullgate_policy::requirements::Requirements;
    use pullgate_policy::TrustPolicyDocument;

    use super::*;
    use crate::gate::policy_state::{PolicyState, Route};

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

    fn state(generation: u64) -> PolicyState {
        PolicyState::for_tests(
            TrustPolicyDocument::from_json(POLICY.as_bytes()).unwrap(),
            Requirements::from_toml(REQUIREMENTS).unwrap(),
            PolicyGeneration(generation),
        )
    }

    fn digest() -> Digest {
        format!("sha256:{}", "a".repeat(64)).parse().unwrap()
    }

    fn key_for(state: &PolicyState, repo: &str) -> VerdictKey {
        let repo: Repository = repo.parse().unwrap();
        let plan = state.plan_for(&repo, None);
        let Route::Verify { statement } = plan.route else {
            panic!("{repo} is verified")
        };
        state.key(statement, plan.scope, &repo, &digest())
    }

    #[test]
    fn one_digest_gets_one_key_per_statement_and_scope() {
        let state = state(3);
        let prod = key_for(&state, "reg.example/prod/app");
        let dev = key_for(&state, "reg.example/dev/app");
        let web = key_for(&state, "reg.example/prod/web");
        let other = key_for(&state, "reg.example/other/app");
        let other2 = key_for(&state, "elsewhere.example/x");

        // Different statements: never one verdict.
        assert_ne!(prod, dev);
        assert_ne!(prod, other);
        // Same statement, other requirements scope (the user's "default"
        // entry against the built-in default): not one verdict either.
        assert_eq!(prod.statement, web.statement);
        assert_ne!(prod.scope, web.scope);
        assert_ne!(prod, web);
        assert_eq!(state.names(&web).unwrap(), (Some("prod"), Some("default")));
        assert_eq!(state.names(&prod).unwrap(), (Some("prod"), None));
        // Same statement and scope, another repository: not one verdict
        // (its signatures are discovered there).
        assert_eq!(
            (other.statement, other.scope),
            (other2.statement, other2.scope)
        );
        assert_ne!(other, other2);
        assert_eq!(other, key_for(&state, "reg.example/other/app"));
        // Another generation: another verdict.
        let mut later = prod.clone();
        later.generation = PolicyGeneration(4);
        assert_ne!(prod, later);
    }

    #[test]
    fn names_round_trip_for_persistence() {
        let state = state(3);
        for repo in [
            "reg.example/prod/app",
            "reg.example/prod/web",
            "reg.example/dev/app",
        ] {
            let key = key_for(&state, repo);
            let (statement, scope) = state.names(&key).unwrap();
            let back = state
                .key_from_names(
                    statement,
                    scope,
                    &key.repository().unwrap(),
                    None,
                    &key.digest.digest().unwrap(),
                )
                .unwrap();
            assert_eq!(back, key, "{repo}");
            assert_eq!(key.repository().unwrap().to_string(), repo);
            assert_eq!(key.digest.digest().unwrap(), digest());
        }
        // A statement or scope the policy no longer has: no key.
        let repo: Repository = "reg.example/prod/app".parse().unwrap();
        assert!(state
            .key_from_names(Some("gone"), None, &repo, None, &digest())
            .is_none());
        assert!(state
            .key_from_names(Some("prod"), Some("gone"), &repo, None, &digest())
            .is_none());
    }

    /// A key made under another generation has no names in this one: its
    /// ids are not this policy's.
    #[test]
    fn a_key_of_another_generation_has_no_names() {
        let old = state(3);
        let key = key_for(&old, "reg.example/dev/app");
        assert!(state(4).names(&key).is_none());
        assert!(old.names(&key).is_some());
    }

    /// A scope decided without a statement (cosign) keys without one, and
    /// persists and restores so; it is never the key of a statement's verdict.
    #[test]
    fn a_key_without_statement_round_trips() {
        let state = state(3);
        let repo: Repository = "reg.example/prod/web".parse().unwrap();
        let none = state.key(None, state.plan_for(&repo, None).scope, &repo, &digest());
        assert_eq!(none.statement, None);
        assert_ne!(none, key_for(&state, "reg.example/prod/web"));
        let (statement, scope) = state.names(&none).unwrap();
        assert_eq!((statement, scope), (None, Some("default")));
        let back = state
            .key_from_names(None, scope, &repo, None, &digest())
            .unwrap();
        assert_eq!(back, none);
    }

    #[test]
    fn digests_round_trip_through_their_bytes() {
        let sha256 = digest();
        let sha512: Digest = format!("sha512:{}", "0f".repeat(64)).parse().unwrap();
        for d in [sha256, sha512] {
            let key = DigestKey::of(&d);
            assert_eq!(key.digest().unwrap(), d);
        }
        let mixed: Digest = format!("sha256:{}", "0123456789abcdef".repeat(4))
            .parse()
            .unwrap();
        assert_eq!(DigestKey::of(&mixed).digest().unwrap(), mixed);
        // Two algorithms over the same leading bytes are never one key.
        let a: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let b: Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
        assert_ne!(DigestKey::of(&a), DigestKey::of(&b));
    }

    /// A verdict whose signatures came from one signature repository is
    /// never the verdict of a scope that looks in another (or next to the
    /// image), even under the same names and generation.
    #[test]
    fn the_signature_repository_is_part_of_the_key() {
        let with = |sigs: &str| {
            let requirements = format!(
                "[[scope]]\nname = \"release\"\nregistry_scopes = [\"reg.example/prod/app\"]\n\
                 signature_kinds = [\"cosign\"]\n{sigs}\n[scope.cosign]\nkeys = [\"/k.pub\"]\n"
            );
            PolicyState::for_tests(
                TrustPolicyDocument::from_json(POLICY.as_bytes()).unwrap(),
                Requirements::from_toml(&requirements).unwrap(),
                PolicyGeneration(3),
            )
        };
        let a = with("signature_repository = \"reg.example/sigs/a\"");
        let b = with("signature_repository = \"reg.example/sigs/b\"");
        let beside = with("");
        let repo: Repository = "reg.example/prod/app".parse().unwrap();
        let key = |s: &PolicyState| s.key(None, s.plan_for(&repo, None).scope, &repo, &digest());
        let (ka, kb, kn) = (key(&a), key(&b), key(&beside));
        assert_eq!(ka.scope, kb.scope);
        assert_ne!(ka, kb);
        assert_ne!(ka, kn);
        let sigs_a = ka.signature_repository();
        assert_eq!(
            sigs_a.as_ref().map(ToString::to_string).as_deref(),
            Some("reg.example/sigs/a")
        );
        assert_eq!(kn.signature_repository(), None);
        // Restored only under a scope that looks where the verdict's signatures were.
        let (statement, scope) = a.names(&ka).unwrap();
        assert_eq!(
            a.key_from_names(statement, scope, &repo, sigs_a.as_ref(), &digest()),
            Some(ka.clone())
        );
        assert_eq!(
            b.key_from_names(statement, scope, &repo, sigs_a.as_ref(), &digest()),
            None
        );
        assert_eq!(
            beside.key_from_names(statement, scope, &repo, sigs_a.as_ref(), &digest()),
            None
        );
        assert_eq!(
            a.key_from_names(statement, scope, &repo, None, &digest()),
            None
        );
    }

    /// Ids stay small: a key of a sha256 digest is a few words.
    #[test]
    fn the_key_stays_compact() {
        assert!(size_of::<Option<StatementId>>() <= 4);
        assert!(size_of::<ScopeId>() <= 4);
        // 72, plus one word for the signature repository.
        assert!(size_of::<VerdictKey>() <= 80, "{}", size_of::<VerdictKey>());
    }
}
