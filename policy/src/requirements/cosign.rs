//! The `[scope.cosign]` table: what a cosign signature must show to count.
//!
//! ```toml
//! [scope.cosign]
//! keys = ["/etc/pullgate/cosign/release.pub"]                 # key-based signers
//! trusted_root = "/etc/pullgate/sigstore/trusted_root.json"   # keyless signers and bundles
//! signed_identity = "match_repository"                         # or "any"
//! [[scope.cosign.identities]]                                  # keyless signers
//! issuer = "https://token.actions.githubusercontent.com"
//! subject_regex = "^https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/"
//! ```
//!
//! Paths stay paths: this crate reads no file; the proxy loads the keys and
//! the trusted root and names the file in its errors. The regex is compiled
//! here, at load, so evaluation cannot fail on it.
//!
//! The verifier reports each [`CosignCheck`] it ran; [`CosignRequirement::evaluate`]
//! decides. Every check the signature's [`CosignFormat`] and signer need
//! must be reported and passed (a check not reported counts as failed),
//! except [`CosignCheck::SignedIdentity`] under `signed_identity = "any"`.
//! A keyless signer must match one `[[scope.cosign.identities]]` entry: the
//! issuer exactly, the certificate's subject (SAN) by the regex, which is
//! unanchored unless it anchors itself (write `^…$`).

use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

/// Whether the simple-signing payload's `critical.identity.docker-reference`
/// must name the image's repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignedIdentity {
    /// It must name the repository being pulled (tag and digest ignored),
    /// as containers/image's `matchRepository`. The default.
    #[default]
    MatchRepository,
    /// Any docker-reference is accepted: the signature binds the digest
    /// only (for images copied between registries).
    Any,
}

impl fmt::Display for SignedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MatchRepository => "match_repository",
            Self::Any => "any",
        })
    }
}

/// One trusted keyless signer: an OIDC issuer and a pattern for the
/// certificate subject (the Fulcio certificate's SAN).
#[derive(Debug, Clone)]
pub struct KeylessIdentity {
    issuer: String,
    subject_regex: Regex,
}

impl PartialEq for KeylessIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.issuer == other.issuer && self.subject_regex.as_str() == other.subject_regex.as_str()
    }
}

impl Eq for KeylessIdentity {}

impl KeylessIdentity {
    /// Builds an identity; the regex is compiled here.
    ///
    /// # Errors
    /// [`CosignProblem::EmptyIssuer`] or [`CosignProblem::SubjectRegex`].
    pub fn new(issuer: &str, subject_regex: &str) -> Result<Self, CosignProblem> {
        if issuer.trim().is_empty() {
            return Err(CosignProblem::EmptyIssuer);
        }
        let subject_regex = Regex::new(subject_regex).map_err(|e| CosignProblem::SubjectRegex {
            regex: subject_regex.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            issuer: issuer.to_owned(),
            subject_regex,
        })
    }

    /// The OIDC issuer, compared exactly.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject pattern, as written.
    pub fn subject_regex(&self) -> &str {
        self.subject_regex.as_str()
    }

    /// Whether a certificate with this issuer and subject is this signer.
    pub fn matches(&self, issuer: &str, subject: &str) -> bool {
        self.issuer == issuer && self.subject_regex.is_match(subject)
    }
}

impl fmt::Display for KeylessIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "issuer {:?} subject ~ /{}/",
            self.issuer,
            self.subject_regex.as_str()
        )
    }
}

/// One check a cosign verifier runs, as the verifier reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CosignCheck {
    /// The envelope parses and its signature verifies over the signed
    /// content, with a configured key or the signing certificate's key.
    Signature,
    /// Keyless: the signing certificate chains to a certificate authority
    /// of the trusted root and was valid at the proven signing time; its
    /// SCT verifies with a CT log key of the trusted root.
    Certificate,
    /// The signature is in a transparency log of the trusted root (Rekor
    /// SET, or inclusion proof with a signed checkpoint) and its signing
    /// time is proven (integrated time or an RFC 3161 timestamp from a TSA
    /// of the trusted root), not after `now`.
    TransparencyLog,
    /// The signed content names the image: the simple-signing payload's
    /// type and `docker-manifest-digest`, or the bundle's DSSE statement
    /// (predicate type and subject digest) or message digest.
    Payload,
    /// The signature names the image's repository: a simple-signing
    /// payload's `docker-reference`, a bundle's in-toto statement subject
    /// `name`.
    SignedIdentity,
}

impl fmt::Display for CosignCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Signature => "signature",
            Self::Certificate => "certificate",
            Self::TransparencyLog => "transparency log",
            Self::Payload => "payload",
            Self::SignedIdentity => "signed identity",
        })
    }
}

/// How the cosign signature was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CosignFormat {
    /// A `.sig` (or referrer) layer: simple-signing payload plus annotations.
    SimpleSigning,
    /// A Sigstore bundle (v0.1 to v0.3) attached as a referrer.
    Bundle,
}

/// Who made a cosign signature, as the verifier established it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CosignSigner {
    /// A configured key, named by its file name.
    Key {
        /// The key file's name (`release.pub`).
        name: String,
    },
    /// A Fulcio certificate.
    Keyless {
        /// The OIDC issuer extension.
        issuer: String,
        /// The subject alternative name (URI or email).
        subject: String,
    },
}

impl fmt::Display for CosignSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key { name } => write!(f, "cosign key {name}"),
            Self::Keyless { issuer, subject } => write!(f, "{subject} (issuer {issuer})"),
        }
    }
}

/// Why a cosign signature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignRejection {
    /// A check the signature needs failed.
    #[error("the {check} check failed")]
    CheckFailed {
        /// Which.
        check: CosignCheck,
    },
    /// A check the signature needs was not reported.
    #[error("the {check} check was not run")]
    CheckNotRun {
        /// Which.
        check: CosignCheck,
    },
    /// The keyless signer matches no `[[scope.cosign.identities]]` entry.
    #[error("keyless signer {subject} (issuer {issuer}) is not a trusted identity")]
    UntrustedIdentity {
        /// Certificate issuer.
        issuer: String,
        /// Certificate subject.
        subject: String,
    },
    /// The signature was verified with a key this scope does not list.
    #[error("cosign key {name} is not trusted by this scope")]
    UntrustedKey {
        /// The key's name.
        name: String,
    },
}

/// What is wrong with a `[scope.cosign]` table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignProblem {
    /// `signature_kinds` includes "cosign" but there is no `[scope.cosign]`.
    #[error("lists signature kind \"cosign\" but has no [scope.cosign] table")]
    Missing,
    /// `[scope.cosign]` is there but "cosign" is not a signature kind.
    #[error("has a [scope.cosign] table but signature_kinds does not list \"cosign\"")]
    NotAKind,
    /// Neither keys nor keyless identities: no cosign signature could count.
    #[error(
        "[scope.cosign] names no keys and no identities, so no cosign signature could be trusted"
    )]
    NoSigners,
    /// Keyless identities without a trusted root to check certificates with.
    #[error("[scope.cosign] names identities but no trusted_root to verify their certificates")]
    IdentitiesWithoutTrustedRoot,
    /// A path is empty or relative.
    #[error("[scope.cosign] has path {path:?}, which must be absolute")]
    Path {
        /// As written.
        path: PathBuf,
    },
    /// Two key files with the same file name: the signer name would be ambiguous.
    #[error("[scope.cosign] lists two keys named {name:?}; key file names name the signer and must be unique")]
    DuplicateKeyName {
        /// The file name.
        name: String,
    },
    /// An identity's issuer is empty.
    #[error("[[scope.cosign.identities]] has an empty issuer")]
    EmptyIssuer,
    /// An identity's `subject_regex` does not compile.
    #[error("[[scope.cosign.identities]] has subject_regex {regex:?}, which is not a valid regex: {reason}")]
    SubjectRegex {
        /// As written.
        regex: String,
        /// The regex crate's error.
        reason: String,
    },
    /// `signed_identity` has an unknown value.
    #[error(
        "[scope.cosign] has signed_identity = {value:?}; expected \"match_repository\" or \"any\""
    )]
    SignedIdentity {
        /// As written.
        value: String,
    },
}

/// A validated `[scope.cosign]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignRequirement {
    keys: Vec<PathBuf>,
    trusted_root: Option<PathBuf>,
    signed_identity: SignedIdentity,
    identities: Vec<KeylessIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCosign {
    #[serde(default)]
    keys: Vec<PathBuf>,
    trusted_root: Option<PathBuf>,
    signed_identity: Option<String>,
    #[serde(default)]
    identities: Vec<RawIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    issuer: String,
    subject_regex: String,
}

/// The signer name of a key file: its file name.
pub fn key_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl CosignRequirement {
    pub(crate) fn from_raw(raw: RawCosign) -> Result<Self, CosignProblem> {
        let absolute = |p: &PathBuf| {
            if p.is_absolute() {
                Ok(())
            } else {
                Err(CosignProblem::Path { path: p.clone() })
            }
        };
        let mut names: Vec<String> = Vec::with_capacity(raw.keys.len());
        for k in &raw.keys {
            absolute(k)?;
            let name = key_name(k);
            if names.contains(&name) {
                return Err(CosignProblem::DuplicateKeyName { name });
            }
            names.push(name);
        }
        if let Some(root) = &raw.trusted_root {
            absolute(root)?;
        }
        let signed_identity = match raw.signed_identity.as_deref() {
            None | Some("match_repository") => SignedIdentity::MatchRepository,
            Some("any") => SignedIdentity::Any,
            Some(v) => {
                return Err(CosignProblem::SignedIdentity {
                    value: v.to_owned(),
                })
            }
        };
        let identities = raw
            .identities
            .iter()
            .map(|i| KeylessIdentity::new(&i.issuer, &i.subject_regex))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.keys.is_empty() && identities.is_empty() {
            return Err(CosignProblem::NoSigners);
        }
        if !identities.is_empty() && raw.trusted_root.is_none() {
            return Err(CosignProblem::IdentitiesWithoutTrustedRoot);
        }
        Ok(Self {
            keys: raw.keys,
            trusted_root: raw.trusted_root,
            signed_identity,
            identities,
        })
    }

    /// Public key files (PEM) of the key-based signers.
    pub fn keys(&self) -> &[PathBuf] {
        &self.keys
    }

    /// The Sigstore `trusted_root.json` (Fulcio CAs, Rekor and CT log keys, TSAs).
    pub fn trusted_root(&self) -> Option<&Path> {
        self.trusted_root.as_deref()
    }

    /// Whether `docker-reference` must name the repository.
    pub fn signed_identity(&self) -> SignedIdentity {
        self.signed_identity
    }

    /// Trusted keyless signers.
    pub fn identities(&self) -> &[KeylessIdentity] {
        &self.identities
    }

    /// The checks a signature of this format and signer must pass.
    ///
    /// A key-based signature needs a transparency-log entry only when a
    /// trusted root is configured (as cosign does with `--key` and a
    /// trusted root, and containers/image with `rekorPublicKeyPath`); a
    /// keyless one always does, since its certificate is judged at the
    /// signing time the log (or a TSA) proves. Under `match_repository`
    /// both formats must name the repository (SignedIdentity); the list is
    /// the same for both (`_format` is kept for the callers).
    pub fn required_checks(
        &self,
        _format: CosignFormat,
        signer: &CosignSigner,
    ) -> Vec<CosignCheck> {
        let mut checks = vec![CosignCheck::Signature];
        match signer {
            CosignSigner::Keyless { .. } => {
                checks.push(CosignCheck::Certificate);
                checks.push(CosignCheck::TransparencyLog);
            }
            CosignSigner::Key { .. } => {
                if self.trusted_root.is_some() {
                    checks.push(CosignCheck::TransparencyLog);
                }
            }
        }
        checks.push(CosignCheck::Payload);
        // A bundle names the repository only by its in-toto statement's
        // subject `name` (cosign v3 writes none): under `match_repository`
        // it must, as a `.sig` payload's `docker-reference` must.
        if self.signed_identity == SignedIdentity::MatchRepository {
            checks.push(CosignCheck::SignedIdentity);
        }
        checks
    }

    /// Decides one cosign signature from the verifier's reported checks
    /// (`(check, passed)`) and signer.
    ///
    /// # Errors
    /// The first reason it does not count: an untrusted signer, then the
    /// required checks in order.
    pub fn evaluate(
        &self,
        format: CosignFormat,
        signer: &CosignSigner,
        checks: &[(CosignCheck, bool)],
    ) -> Result<(), CosignRejection> {
        match signer {
            CosignSigner::Key { name } => {
                if !self.keys.iter().any(|k| &key_name(k) == name) {
                    return Err(CosignRejection::UntrustedKey { name: name.clone() });
                }
            }
            CosignSigner::Keyless { issuer, subject } => {
                if !self.identities.iter().any(|i| i.matches(issuer, subject)) {
                    return Err(CosignRejection::UntrustedIdentity {
                        issuer: issuer.clone(),
                        subject: subject.clone(),
                    });
                }
            }
        }
        for check in self.required_checks(format, signer) {
            // Every report of the check must pass; none counts as failed.
            let mut reported = checks.iter().filter(|(c, _)| *c == check).peekable();
            if reported.peek().is_none() {
                return Err(CosignRejection::CheckNotRun { check });
            }
            if reported.any(|(_, passed)| !passed) {
                return Err(CosignRejection::CheckFailed { check });
            }
        }
        Ok(())
    }
}
