//! pullgate's own requirements per registry scope, beside the Notary trust policy.
//!
//! The Notary trust policy (`trustpolicy.json`) says whether *one* signature
//! is good: trust stores, trusted identities, verification level. This file
//! says what an *image* needs on top of that, per registry scope:
//!
//! ```toml
//! [[scope]]
//! name = "production"                      # named in denials and the audit log
//! registry_scopes = ["registry.example/app", "registry.example/api"]  # or ["registry.example/team/*"], ["*"]
//! signature_kinds = ["notation"]           # default ["notation"]; or ["cosign"], or both (either may satisfy)
//! min_signers = 2                          # distinct trusted signers required, across kinds (default 1)
//! identities = [                           # each must have signed (approval workflows)
//!   "x509.subject: C=US, ST=WA, O=Acme, OU=CI",
//!   "x509.subject: C=US, ST=WA, O=Acme, OU=Scanner",
//! ]
//! on_registry_error = "fail_closed"        # or "fail_open" (dangerous: logged at startup)
//! mode = "enforce"                         # or "audit" / "warn"
//! namespaces = ["team-a", "kube-*"]         # optional: only pods of these namespaces (globs)
//! signature_repository = "registry.example/signatures"  # optional: where signatures are (COSIGN_REPOSITORY)
//!
//! [scope.cosign]                           # required when signature_kinds lists "cosign"
//! keys = ["/etc/pullgate/cosign/release.pub"]
//! trusted_root = "/etc/pullgate/sigstore/trusted_root.json"
//! signed_identity = "match_repository"     # or "any"
//! [[scope.cosign.identities]]              # trusted keyless signers
//! issuer = "https://token.actions.githubusercontent.com"
//! subject_regex = "^https://github\\.com/acme/app/"
//!
//! [[scope.attestations]]                   # signed in-toto attestations required (by the scope's signers)
//! predicate_type = "https://slsa.dev/provenance/v1"
//! conditions = ['predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app"']
//!
//! [[break_glass]]                          # digests allowed whatever the policy says
//! digest = "sha256:…"
//! reason = "INC-4711: hotfix while the signer is down"
//! ```
//!
//! A break-glass digest skips verification in the repositories of its
//! optional `registry_scopes` (default `["*"]`: every repository a trust
//! policy statement covers); a repository no statement covers stays denied.
//! Name the repository of the incident, so the digest is not let through
//! everywhere:
//!
//! ```toml
//! [[break_glass]]
//! digest = "sha256:…"
//! reason = "INC-4711"
//! registry_scopes = ["registry.example/app"]
//! ```
//!
//! `signature_repository` (cosign's `COSIGN_REPOSITORY`) moves where a
//! scope's signatures are looked up: the `.sig` tag and the referrers of
//! the image's digest in that repository instead of the image's; what a
//! signature must name (the image's digest, and repository under
//! `match_repository`) does not change.
//!
//! Signers are counted across kinds ([`AcceptedSigner`]): a Notary signer
//! by its certificate subject, a cosign key by its file name, a keyless
//! cosign signer by issuer and subject. The `identities` list names Notary
//! signers (`x509.subject:`); keyless cosign signers are trusted through
//! `[[scope.cosign.identities]]` ([`cosign`]). A scope whose kinds do not
//! include "notation" needs no Notary trust policy statement.
//!
//! `registry_scopes` entries are exact repositories, prefix globs
//! (`registry.example/team/*`: one path segment below; `registry.example/team/**`:
//! any depth below; `registry.example/*` below a host) or `*`/`**` (every
//! repository); see [`RepositoryPattern`]. Which entry decides a request
//! ([`Requirements::placement`]), two rules in this order:
//! 1. the namespace: a scope that lists `namespaces` (globs on the pod's
//!    namespace, `*` matching any run of characters) applies only to
//!    requests of a pod in one of them, and wins over every scope that lists
//!    none; a request without a namespace (crictl, containerd's image
//!    verifier, `pullgate verify`) sees only the scopes that list none. So a
//!    namespace's rules cannot be weakened by a repository rule written for
//!    everyone else ([`Requirements::for_pod`]);
//! 2. then, among the scopes rule 1 left, the most specific registry scope
//!    matching the repository: exact name, then the prefix glob with the
//!    longest literal prefix (at equal prefix, `/*` before `/**`), then
//!    `*`/`**` ([`Specificity`]); else the built-in default (notation, one
//!    signer, fail closed, enforce).
//!
//! One registry scope listed by two entries of the same namespaces is
//! refused at load, naming both: neither would be more specific. (Two
//! different patterns are never equally specific for one repository.)
//! `pullgate policy check FILE --image REF --namespace NS` prints which
//! rule chose the scope. Scopes are canonicalised at load as trust policy
//! scopes are ([`crate::reference`], "Canonical form", and in
//! [`Repository::scope_form`], "Loopback aliases"), the literal part of a
//! glob too, so two spellings of one repository in two entries are refused
//! as listed twice. Notary trust policy statements keep notation's own scope
//! rules (exact repository or `*`).
//!
//! Modes:
//! - `enforce`: a denial refuses the pull (`PermissionDenied`).
//! - `audit`: a denial is allowed; the would-be denial goes to the audit log
//!   and the journal at `info`. For dry runs of a new policy.
//! - `warn`: a denial is allowed; the would-be denial goes to the audit log
//!   and the journal at `warn`. The CRI `PullImageResponse` has no field for
//!   warnings, so nothing reaches `kubectl describe pod`; alert on
//!   `pullgate_decisions_total{verdict="warn"}` instead.
//!
//! Every key, its default and what it does: [`example`] (printed by
//! `pullgate config example --requirements`).
//!
//! Validated at load: every error names the entry (`scope "production"`,
//! `break_glass[2]`) and the value. Pure: no I/O.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;

pub mod attestation;
pub mod cosign;
mod example;
mod pattern;
mod warnings;

pub use self::attestation::{
    AttestationProblem, AttestationRequirement, Condition, ConditionFailure, StatementFacts,
};
pub use self::example::example;
pub use self::pattern::{Depth, PatternError, RepositoryPattern, Specificity};
pub use self::warnings::{RequirementsWarning, ScopeWeakness};

pub use self::cosign::{
    CosignCheck, CosignFormat, CosignProblem, CosignRejection, CosignRequirement, CosignSigner,
    KeylessIdentity, SignedIdentity,
};

use crate::identity::{
    parse_trusted_identities, DistinguishedName, IdentityError, TrustedIdentity, WILDCARD,
};
use crate::reference::{Digest, ReferenceError, Repository};
use crate::trust_policy::RegistryScope;

/// A kind of signature an image may be required to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureKind {
    /// Notary Project signatures (JWS or COSE envelopes).
    Notation,
    /// cosign signatures: simple-signing `.sig` layers and Sigstore bundles.
    Cosign,
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Notation => f.write_str("notation"),
            Self::Cosign => f.write_str("cosign"),
        }
    }
}

/// What happens when the registry cannot be reached for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailMode {
    /// Refuse the pull (`Unavailable`). The default.
    #[default]
    Closed,
    /// Let the pull through unverified, logged and audited. Dangerous.
    Open,
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "fail_closed",
            Self::Open => "fail_open",
        })
    }
}

/// What a denial does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Refuse the pull. The default.
    #[default]
    Enforce,
    /// Allow; record the would-be denial in the audit log (journal at `info`).
    Audit,
    /// Allow; record the would-be denial in the audit log and the journal at `warn`.
    Warn,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Enforce => "enforce",
            Self::Audit => "audit",
            Self::Warn => "warn",
        })
    }
}

/// The requirements of one registry scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequirement {
    name: String,
    scopes: Vec<RepositoryPattern>,
    signature_kinds: Vec<SignatureKind>,
    min_signers: usize,
    identities: Vec<TrustedIdentity>,
    on_registry_error: FailMode,
    mode: Mode,
    cosign: Option<CosignRequirement>,
    namespaces: Vec<NamespacePattern>,
    signature_repository: Option<Repository>,
    attestations: Vec<AttestationRequirement>,
}

/// A glob on a pod's namespace (`team-a`, `kube-*`): `*` matches any run of
/// characters; everything else matches itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespacePattern(String);

impl NamespacePattern {
    /// Parses a pattern: lower-case letters, digits, `-` and `*`, 1 to 63 characters
    /// (a Kubernetes namespace is a DNS label).
    ///
    /// # Errors
    /// The pattern as given, when it is empty, too long or has another character.
    pub fn parse(text: &str) -> Result<Self, ScopeProblem> {
        let ok = !text.is_empty()
            && text.len() <= 63
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(ScopeProblem::Namespace {
                pattern: text.chars().take(80).collect(),
            })
        }
    }

    /// Whether `namespace` matches this glob.
    pub fn matches(&self, namespace: &str) -> bool {
        glob_matches(self.0.as_bytes(), namespace.as_bytes())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*`-only glob matching, iterative (no backtracking blow-up: one saved star).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A signer whose signature passed verification and its policy, as the
/// requirements count it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AcceptedSigner {
    /// A Notary Project signature's leaf certificate subject.
    Notary(DistinguishedName),
    /// A cosign signature (key or keyless).
    Cosign(CosignSigner),
}

impl Default for ScopeRequirement {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            scopes: vec![RepositoryPattern::Any],
            signature_kinds: vec![SignatureKind::Notation],
            min_signers: 1,
            identities: Vec::new(),
            on_registry_error: FailMode::Closed,
            mode: Mode::Enforce,
            cosign: None,
            namespaces: Vec::new(),
            signature_repository: None,
            attestations: Vec::new(),
        }
    }
}

/// Why an image's accepted signatures do not meet a scope's requirements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    /// Fewer distinct trusted signers than `min_signers`.
    #[error("{have} distinct trusted signer(s) signed it, {need} required")]
    TooFewSigners {
        /// Distinct accepted signers.
        have: usize,
        /// `min_signers`.
        need: usize,
    },
    /// A named identity has no accepted signature.
    #[error("required identity \"{identity}\" has not signed it")]
    MissingIdentity {
        /// The identity, as written in the requirements.
        identity: String,
    },
}

impl ScopeRequirement {
    /// The entry's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its registry scopes.
    pub fn registry_scopes(&self) -> &[RepositoryPattern] {
        &self.scopes
    }

    /// Required signature kinds.
    pub fn signature_kinds(&self) -> &[SignatureKind] {
        &self.signature_kinds
    }

    /// Distinct trusted signers required (at least the number of named identities).
    pub fn min_signers(&self) -> usize {
        self.min_signers
    }

    /// Identities that must each have signed.
    pub fn identities(&self) -> &[TrustedIdentity] {
        &self.identities
    }

    /// What a registry outage does.
    pub fn on_registry_error(&self) -> FailMode {
        self.on_registry_error
    }

    /// What a denial does.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The pod namespaces this entry is limited to; empty: requests of any
    /// namespace, or of none, that no namespace entry claims.
    pub fn namespaces(&self) -> &[NamespacePattern] {
        &self.namespaces
    }

    /// The `[scope.cosign]` table; present exactly when the kinds list cosign.
    pub fn cosign(&self) -> Option<&CosignRequirement> {
        self.cosign.as_ref()
    }

    /// Where the signatures of the scope's images (of every kind) are
    /// looked up instead of next to the image, for the image's digest
    /// (cosign's `COSIGN_REPOSITORY`); `None`: the image's own repository.
    pub fn signature_repository(&self) -> Option<&Repository> {
        self.signature_repository.as_ref()
    }

    /// The signed attestations an image must carry (`[[scope.attestations]]`),
    /// each from a signer of [`Self::cosign`] or, when the kinds list
    /// notation, signed with notation under the trust policy statement.
    pub fn attestations(&self) -> &[AttestationRequirement] {
        &self.attestations
    }

    /// Whether a Notary Project trust policy statement must cover the
    /// repository: only when "notation" is one of the kinds.
    pub fn needs_notary_statement(&self) -> bool {
        self.signature_kinds.contains(&SignatureKind::Notation)
    }

    /// Whether deciding needs every signature examined (not just the first good one).
    pub fn needs_every_signature(&self) -> bool {
        self.min_signers > 1 || !self.identities.is_empty()
    }

    /// Checks the subjects of the signatures that passed the trust policy.
    ///
    /// # Errors
    /// The first unmet requirement: named identities in order, then the count.
    pub fn evaluate(&self, accepted_signers: &[DistinguishedName]) -> Result<(), Unmet> {
        let signers: Vec<AcceptedSigner> = accepted_signers
            .iter()
            .cloned()
            .map(AcceptedSigner::Notary)
            .collect();
        self.evaluate_signers(&signers)
    }

    /// Checks the signers of every kind whose signatures passed.
    ///
    /// Named `identities` are met by Notary signers only; `min_signers`
    /// counts distinct signers of all kinds.
    ///
    /// # Errors
    /// The first unmet requirement: named identities in order, then the count.
    pub fn evaluate_signers(&self, accepted_signers: &[AcceptedSigner]) -> Result<(), Unmet> {
        for identity in &self.identities {
            let met = accepted_signers
                .iter()
                .any(|s| matches!(s, AcceptedSigner::Notary(dn) if identity.matches(dn)));
            if !met {
                return Err(Unmet::MissingIdentity {
                    identity: identity.to_string(),
                });
            }
        }
        let distinct: HashSet<String> = accepted_signers
            .iter()
            .map(|s| match s {
                AcceptedSigner::Notary(dn) => format!("notary:{dn}"),
                AcceptedSigner::Cosign(CosignSigner::Key { name }) => format!("cosign-key:{name}"),
                AcceptedSigner::Cosign(CosignSigner::Keyless { issuer, subject }) => {
                    format!("cosign-keyless:{issuer}\n{subject}")
                }
            })
            .collect();
        if distinct.len() < self.min_signers {
            return Err(Unmet::TooFewSigners {
                have: distinct.len(),
                need: self.min_signers,
            });
        }
        Ok(())
    }
}

/// A digest allowed whatever the policy says, in the repositories of its
/// `registry_scopes` (default `*`: every repository); every use is logged
/// at `warn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    /// The manifest digest.
    pub digest: Digest,
    /// Why (for the log and the audit record).
    pub reason: String,
    /// Where it applies, in [`Repository::scope_form`]; `[*]` when not given.
    pub registry_scopes: Vec<RegistryScope>,
}

impl BreakGlass {
    /// Whether the entry applies in `repo`.
    pub fn covers(&self, repo: &Repository) -> bool {
        self.registry_scopes.iter().any(|s| match s {
            RegistryScope::Global => true,
            RegistryScope::Repository(r) => repo.is_in_scope(r),
        })
    }
}

/// Which entry decides a repository, and the rules that chose it
/// ([`Requirements::placement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The entry's position in [`Requirements::scopes`].
    pub position: usize,
    /// Its registry scope that matched, the most specific of its own.
    pub pattern: &'a RepositoryPattern,
    /// The entry's namespace glob that matched the pod's namespace; `None`
    /// when it was chosen among the entries that list no namespaces.
    pub namespace: Option<&'a NamespacePattern>,
}

/// The validated requirements file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    scopes: Vec<ScopeRequirement>,
    default: ScopeRequirement,
    break_glass: Vec<BreakGlass>,
}

/// Why a requirements file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not TOML, an unknown key, or a wrong type.
    #[error("requirements are not valid: {0}")]
    Malformed(String),
    /// A `[[scope]]` entry is wrong.
    #[error("requirements scope {scope:?} {problem}")]
    Scope {
        /// Its `name` (or `#<index>` when unnamed).
        scope: String,
        /// What is wrong.
        problem: ScopeProblem,
    },
    /// A registry scope is listed by two entries (of the same namespaces):
    /// neither would be more specific than the other.
    #[error("registry scope {scope} is listed by requirements scopes {first:?} and {second:?}; neither is more specific, so list it in one")]
    ScopeInMultipleEntries {
        /// The registry scope (boxed: keeps the error small).
        scope: Box<RepositoryPattern>,
        /// The first entry.
        first: String,
        /// The second entry.
        second: String,
    },
    /// A `[[break_glass]]` entry is wrong.
    #[error("break_glass[{index}] {problem}")]
    BreakGlass {
        /// 0-based index.
        index: usize,
        /// What is wrong.
        problem: BreakGlassProblem,
    },
}

/// What is wrong with one `[[scope]]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeProblem {
    /// No `name`, or a name used twice.
    #[error("needs a unique, non-empty name")]
    Name,
    /// A `namespaces` entry is not a namespace glob.
    #[error(
        "has namespace pattern {pattern:?}; a namespace glob is 1 to 63 of a-z, 0-9, '-' and '*'"
    )]
    Namespace {
        /// The pattern as given (cut to 80 characters).
        pattern: String,
    },
    /// `registry_scopes` empty.
    #[error("has no registry_scopes")]
    NoRegistryScopes,
    /// A registry scope does not parse.
    #[error("has invalid registry scope {scope:?}: {reason}")]
    InvalidRegistryScope {
        /// As written.
        scope: String,
        /// Why.
        reason: ReferenceError,
    },
    /// A registry scope has a `*` elsewhere than as its whole last segment.
    #[error("has registry scope {scope:?}; a glob is only the whole last segment (host/path/* for one segment below, host/path/** for any depth) or the whole scope (* or **)")]
    RegistryScopeGlob {
        /// As written.
        scope: String,
    },
    /// `signature_repository` is not one repository (`host/path`).
    #[error("has signature_repository {repository:?}, which is not one repository (host/path, no tag, digest or glob){}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    InvalidSignatureRepository {
        /// As written.
        repository: String,
        /// Why, when the name does not parse.
        reason: Option<ReferenceError>,
    },
    /// An unknown or unsupported signature kind.
    #[error("has signature kind {kind:?}, supported: \"notation\", \"cosign\"")]
    SignatureKind {
        /// As written.
        kind: String,
    },
    /// `signature_kinds = []`.
    #[error("has an empty signature_kinds list")]
    NoSignatureKinds,
    /// `min_signers = 0`.
    #[error("has min_signers = 0; at least one signer is always required (use trust policy level \"skip\" to skip verification)")]
    ZeroSigners,
    /// `min_signers` below the number of named identities.
    #[error(
        "has min_signers = {min_signers} but names {identities} identities that must all sign"
    )]
    FewerSignersThanIdentities {
        /// As written.
        min_signers: usize,
        /// Named identities.
        identities: usize,
    },
    /// An AWS Signer signing-profile ARN among the required identities:
    /// requirements count signers by certificate subject, and every AWS
    /// Signer signature has the same one.
    #[error("names AWS Signer signing profile \"{identity}\"; requirements match certificate subjects, which AWS Signer shares between all its customers, so a signing-profile ARN cannot be required here (trust it in trustpolicy.json)")]
    SigningProfileIdentity {
        /// As written.
        identity: String,
    },
    /// `"*"` among the required identities.
    #[error("names identity \"*\", which is not one identity; use min_signers to require a count")]
    WildcardIdentity,
    /// An identity does not parse, or two overlap.
    #[error("identities: {0}")]
    Identity(IdentityError),
    /// The `[scope.cosign]` table is wrong, missing or superfluous.
    #[error("{0}")]
    Cosign(CosignProblem),
    /// A `[[scope.attestations]]` entry is wrong (boxed: keeps the error small).
    #[error("{0}")]
    Attestation(Box<AttestationProblem>),
    /// `on_registry_error` or `mode` has an unknown value.
    #[error("has {key} = {value:?}; expected one of {expected}")]
    UnknownValue {
        /// The key.
        key: &'static str,
        /// As written.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
}

/// What is wrong with one `[[break_glass]]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakGlassProblem {
    /// The digest does not parse.
    #[error("has invalid digest {digest:?}: {reason}")]
    Digest {
        /// As written.
        digest: String,
        /// Why.
        reason: ReferenceError,
    },
    /// No reason given.
    #[error("needs a non-empty reason")]
    NoReason,
    /// `registry_scopes = []`: it would apply nowhere.
    #[error("has an empty registry_scopes list (leave it out to apply in every repository)")]
    NoRegistryScopes,
    /// A registry scope does not parse.
    #[error("has invalid registry scope {scope:?}: {reason}")]
    InvalidRegistryScope {
        /// As written.
        scope: String,
        /// Why.
        reason: ReferenceError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    scope: Vec<RawScope>,
    #[serde(default)]
    break_glass: Vec<RawBreakGlass>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    name: Option<String>,
    #[serde(default)]
    registry_scopes: Vec<String>,
    signature_kinds: Option<Vec<String>>,
    min_signers: Option<usize>,
    #[serde(default)]
    identities: Vec<String>,
    on_registry_error: Option<String>,
    mode: Option<String>,
    cosign: Option<cosign::RawCosign>,
    #[serde(default)]
    namespaces: Vec<String>,
    signature_repository: Option<String>,
    #[serde(default)]
    attestations: Vec<attestation::RawAttestation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakGlass {
    digest: String,
    #[serde(default)]
    reason: String,
    registry_scopes: Option<Vec<String>>,
}

impl Requirements {
    /// Parses and validates a requirements TOML document.
    ///
    /// # Errors
    /// The first problem, naming the entry and the value.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let raw: RawFile = toml::from_str(text).map_err(|e| Error::Malformed(e.to_string()))?;
        let mut scopes: Vec<ScopeRequirement> = Vec::with_capacity(raw.scope.len());
        for (index, r) in raw.scope.into_iter().enumerate() {
            let scope = ScopeRequirement::from_raw(index, r, &scopes)?;
            for s in &scope.scopes {
                // One registry scope may be in several entries only for
                // disjoint namespace lists (an entry without namespaces is
                // the one for every other request).
                if let Some(first) = scopes.iter().find(|e| {
                    e.scopes.contains(s)
                        && (e.namespaces.is_empty() == scope.namespaces.is_empty())
                        && (e.namespaces.is_empty()
                            || e.namespaces.iter().any(|n| scope.namespaces.contains(n)))
                }) {
                    return Err(Error::ScopeInMultipleEntries {
                        scope: Box::new(s.clone()),
                        first: first.name.clone(),
                        second: scope.name.clone(),
                    });
                }
            }
            scopes.push(scope);
        }
        let mut break_glass = Vec::with_capacity(raw.break_glass.len());
        for (index, b) in raw.break_glass.into_iter().enumerate() {
            let digest = b
                .digest
                .parse::<Digest>()
                .map_err(|reason| Error::BreakGlass {
                    index,
                    problem: BreakGlassProblem::Digest {
                        digest: b.digest.clone(),
                        reason,
                    },
                })?;
            if b.reason.trim().is_empty() {
                return Err(Error::BreakGlass {
                    index,
                    problem: BreakGlassProblem::NoReason,
                });
            }
            let registry_scopes = match b.registry_scopes {
                None => vec![RegistryScope::Global],
                Some(list) if list.is_empty() => {
                    return Err(Error::BreakGlass {
                        index,
                        problem: BreakGlassProblem::NoRegistryScopes,
                    })
                }
                Some(list) => {
                    let mut scopes = Vec::with_capacity(list.len());
                    for s in list {
                        let scope =
                            parse_registry_scope(&s).map_err(|reason| Error::BreakGlass {
                                index,
                                problem: BreakGlassProblem::InvalidRegistryScope {
                                    scope: s,
                                    reason,
                                },
                            })?;
                        if !scopes.contains(&scope) {
                            scopes.push(scope);
                        }
                    }
                    scopes
                }
            };
            break_glass.push(BreakGlass {
                digest,
                reason: b.reason,
                registry_scopes,
            });
        }
        Ok(Self {
            scopes,
            default: ScopeRequirement::default(),
            break_glass,
        })
    }

    /// The requirement for `repo` in a request that names no pod namespace:
    /// among the entries that list no namespaces, the most specific
    /// registry scope matching it, else the built-in default.
    pub fn for_repository(&self, repo: &Repository) -> &ScopeRequirement {
        self.for_pod(repo, None)
    }

    /// The requirement for `repo` for a pod in `namespace` (`None`: the
    /// request names none), as [`Self::placement`] chooses it; the built-in
    /// default when no entry covers it.
    pub fn for_pod(&self, repo: &Repository, namespace: Option<&str>) -> &ScopeRequirement {
        self.position_for_pod(repo, namespace)
            .and_then(|i| self.scopes.get(i))
            .unwrap_or(&self.default)
    }

    /// The position in [`Self::scopes`] of the requirement for `repo` in a
    /// request that names no namespace; `None` when the built-in default applies.
    pub fn position_for(&self, repo: &Repository) -> Option<usize> {
        self.position_for_pod(repo, None)
    }

    /// The position in [`Self::scopes`] of the requirement for `repo` for a
    /// pod in `namespace` (see [`Self::placement`]); `None` when the built-in
    /// default applies.
    pub fn position_for_pod(&self, repo: &Repository, namespace: Option<&str>) -> Option<usize> {
        self.placement(repo, namespace).map(|p| p.position)
    }

    /// Which entry decides `repo` for a pod in `namespace`, and by which
    /// rule; `None` when the built-in default applies.
    ///
    /// Two rules, in this order: first the namespace (an entry whose
    /// `namespaces` match the pod's wins over every entry that lists none;
    /// a request without a namespace sees only the latter), then, among the
    /// entries the first rule left, the most specific registry scope
    /// matching the repository ([`Specificity`]: exact, then the longest
    /// literal prefix glob, `*` before `**` at equal prefix, then `*`/`**`),
    /// file order between entries whose namespace lists differ but both
    /// match (the load refuses the other ties).
    pub fn placement(&self, repo: &Repository, namespace: Option<&str>) -> Option<Placement<'_>> {
        let best = |of_namespace: bool| {
            let mut found: Option<Placement<'_>> = None;
            for (position, s) in self.scopes.iter().enumerate() {
                let by_namespace = match namespace {
                    Some(ns) if of_namespace => match s.namespaces.iter().find(|p| p.matches(ns)) {
                        Some(p) => Some(p),
                        None => continue,
                    },
                    _ if of_namespace => continue,
                    _ if !s.namespaces.is_empty() => continue,
                    _ => None,
                };
                let Some(pattern) = s
                    .scopes
                    .iter()
                    .filter(|p| p.matches(repo))
                    .max_by_key(|p| p.specificity())
                else {
                    continue;
                };
                if found
                    .as_ref()
                    .is_none_or(|f| pattern.specificity() > f.pattern.specificity())
                {
                    found = Some(Placement {
                        position,
                        pattern,
                        namespace: by_namespace,
                    });
                }
            }
            found
        };
        best(true).or_else(|| best(false))
    }

    /// The built-in default requirement (no `[[scope]]` entry covers the repository).
    pub fn built_in(&self) -> &ScopeRequirement {
        &self.default
    }

    /// The break-glass entry for `digest` in `repo`, if any.
    pub fn break_glass(&self, repo: &Repository, digest: &Digest) -> Option<&BreakGlass> {
        self.break_glass
            .iter()
            .find(|b| &b.digest == digest && b.covers(repo))
    }

    /// All `[[scope]]` entries, in file order.
    pub fn scopes(&self) -> &[ScopeRequirement] {
        &self.scopes
    }

    /// All break-glass entries, in file order.
    pub fn break_glass_entries(&self) -> &[BreakGlass] {
        &self.break_glass
    }
}

impl ScopeRequirement {
    fn from_raw(index: usize, raw: RawScope, earlier: &[Self]) -> Result<Self, Error> {
        let label = raw
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("#{index}"));
        let fail = |problem| Error::Scope {
            scope: label.clone(),
            problem,
        };
        let name = match raw.name {
            Some(n) if !n.is_empty() && !earlier.iter().any(|e| e.name == n) => n,
            _ => return Err(fail(ScopeProblem::Name)),
        };
        if raw.registry_scopes.is_empty() {
            return Err(fail(ScopeProblem::NoRegistryScopes));
        }
        let mut scopes = Vec::with_capacity(raw.registry_scopes.len());
        for s in raw.registry_scopes {
            let scope = RepositoryPattern::parse(&s).map_err(|e| {
                fail(match e {
                    PatternError::Name(reason) => ScopeProblem::InvalidRegistryScope {
                        scope: s.clone(),
                        reason,
                    },
                    PatternError::Glob => ScopeProblem::RegistryScopeGlob { scope: s.clone() },
                })
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        let kinds_raw = raw
            .signature_kinds
            .unwrap_or_else(|| vec!["notation".to_owned()]);
        if kinds_raw.is_empty() {
            return Err(fail(ScopeProblem::NoSignatureKinds));
        }
        let mut signature_kinds = Vec::new();
        for k in kinds_raw {
            let kind = match k.as_str() {
                "notation" => SignatureKind::Notation,
                "cosign" => SignatureKind::Cosign,
                _ => return Err(fail(ScopeProblem::SignatureKind { kind: k })),
            };
            if !signature_kinds.contains(&kind) {
                signature_kinds.push(kind);
            }
        }
        if raw.identities.iter().any(|i| i == WILDCARD) {
            return Err(fail(ScopeProblem::WildcardIdentity));
        }
        let identities = if raw.identities.is_empty() {
            Vec::new()
        } else {
            // Same grammar and overlap rule as `trustedIdentities`: two
            // overlapping required identities could be met by one signer.
            parse_trusted_identities(&raw.identities)
                .map_err(|e| fail(ScopeProblem::Identity(e)))?
        };
        if let Some(TrustedIdentity::SigningProfile(arn)) = identities
            .iter()
            .find(|i| matches!(i, TrustedIdentity::SigningProfile(_)))
        {
            return Err(fail(ScopeProblem::SigningProfileIdentity {
                identity: arn.to_string(),
            }));
        }
        let min_signers = raw.min_signers.unwrap_or(identities.len().max(1));
        if min_signers == 0 {
            return Err(fail(ScopeProblem::ZeroSigners));
        }
        if min_signers < identities.len() {
            return Err(fail(ScopeProblem::FewerSignersThanIdentities {
                min_signers,
                identities: identities.len(),
            }));
        }
        let on_registry_error = match raw.on_registry_error.as_deref() {
            None | Some("fail_closed") => FailMode::Closed,
            Some("fail_open") => FailMode::Open,
            Some(v) => {
                return Err(fail(ScopeProblem::UnknownValue {
                    key: "on_registry_error",
                    value: v.to_owned(),
                    expected: "\"fail_closed\", \"fail_open\"",
                }))
            }
        };
        let mode = match raw.mode.as_deref() {
            None | Some("enforce") => Mode::Enforce,
            Some("audit") => Mode::Audit,
            Some("warn") => Mode::Warn,
            Some(v) => {
                return Err(fail(ScopeProblem::UnknownValue {
                    key: "mode",
                    value: v.to_owned(),
                    expected: "\"enforce\", \"audit\", \"warn\"",
                }))
            }
        };
        let mut namespaces: Vec<NamespacePattern> = Vec::with_capacity(raw.namespaces.len());
        for n in &raw.namespaces {
            let pattern = NamespacePattern::parse(n).map_err(fail)?;
            if !namespaces.contains(&pattern) {
                namespaces.push(pattern);
            }
        }
        let cosign = match (signature_kinds.contains(&SignatureKind::Cosign), raw.cosign) {
            (true, Some(c)) => {
                Some(CosignRequirement::from_raw(c).map_err(|e| fail(ScopeProblem::Cosign(e)))?)
            }
            (true, None) => return Err(fail(ScopeProblem::Cosign(CosignProblem::Missing))),
            (false, Some(_)) => return Err(fail(ScopeProblem::Cosign(CosignProblem::NotAKind))),
            (false, None) => None,
        };
        let signature_repository = match raw.signature_repository {
            None => None,
            Some(text) => {
                if text.contains('*') {
                    return Err(fail(ScopeProblem::InvalidSignatureRepository {
                        repository: text,
                        reason: None,
                    }));
                }
                match text.parse::<Repository>() {
                    Ok(r) => Some(r),
                    Err(reason) => {
                        return Err(fail(ScopeProblem::InvalidSignatureRepository {
                            repository: text,
                            reason: Some(reason),
                        }))
                    }
                }
            }
        };
        let attestations = AttestationRequirement::from_raw_list(raw.attestations)
            .map_err(|e| fail(ScopeProblem::Attestation(Box::new(e))))?;
        Ok(Self {
            name,
            scopes,
            signature_kinds,
            min_signers,
            identities,
            on_registry_error,
            mode,
            cosign,
            namespaces,
            signature_repository,
            attestations,
        })
    }
}

/// `*`, or a repository in [`Repository::scope_form`].
fn parse_registry_scope(s: &str) -> Result<RegistryScope, ReferenceError> {
    if s == WILDCARD {
        return Ok(RegistryScope::Global);
    }
    Ok(RegistryScope::Repository(
        s.parse::<Repository>()?.scope_form(),
    ))
}

#[cfg(test)]
mod tests;
