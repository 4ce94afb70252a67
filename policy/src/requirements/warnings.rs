//! What `policy check` warns about in a requirements file: a `*` scope (or
//! the built-in default) weaker than a specific scope, and keyless
//! `subject_regex` patterns that are not anchored.
//!
//! A registry has names pullgate cannot fold into one (another DNS name, an
//! `/etc/hosts` entry, another address), and a pull under such a name falls
//! to `*`; when `*` asks less than the scope written for the repository,
//! that name is a way around it. A `subject_regex` matches anywhere in the
//! certificate subject (cosign's semantics), so `github.com/acme/app/` also
//! matches `https://github.com/evil/x?github.com/acme/app/`. Pure.

use std::fmt;
use std::path::PathBuf;

use crate::identity::TrustedIdentity;

use super::cosign::{KeylessIdentity, SignedIdentity};
use super::{FailMode, Mode, Requirements, ScopeRequirement, SignatureKind};

/// One warning about a requirements file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequirementsWarning {
    /// The scope pulls fall to when no specific scope matches asks less
    /// than a specific scope.
    WeakerGlobal {
        /// The `*` scope's name, or `None` for the built-in default.
        global: Option<String>,
        /// The specific scope's name.
        specific: String,
        /// How it is weaker, each way once.
        ways: Vec<ScopeWeakness>,
    },
    /// A keyless `subject_regex` without `^` at the start and `$` at the end.
    UnanchoredSubjectRegex {
        /// The scope's name.
        scope: String,
        /// The identity's issuer.
        issuer: String,
        /// The pattern as written.
        subject_regex: String,
    },
}

/// One way a `*` scope is weaker than a specific one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeWeakness {
    /// `*` accepts signature kinds the specific scope does not.
    OtherSignatureKinds(Vec<SignatureKind>),
    /// `*` requires fewer distinct signers.
    FewerSigners {
        /// `*`'s `min_signers`.
        global: usize,
        /// The specific scope's.
        specific: usize,
    },
    /// Identities the specific scope requires and `*` does not.
    MissingIdentities(Vec<TrustedIdentity>),
    /// `*` fails open, the specific scope closed.
    FailOpen,
    /// `*` does not enforce, the specific scope does.
    NotEnforced(Mode),
    /// `*` trusts cosign keys the specific scope does not.
    OtherCosignKeys(Vec<PathBuf>),
    /// `*` trusts keyless signers the specific scope does not.
    OtherKeylessIdentities(Vec<String>),
    /// `*` trusts another Sigstore trusted root.
    OtherTrustedRoot,
    /// `*` accepts any signed docker-reference, the specific scope only its repository.
    AnySignedIdentity,
}

impl fmt::Display for ScopeWeakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherSignatureKinds(kinds) => {
                f.write_str("accepts other signature kinds: ")?;
                join(f, kinds)
            }
            Self::FewerSigners { global, specific } => {
                write!(f, "min_signers {global}, not {specific}")
            }
            Self::MissingIdentities(ids) => {
                f.write_str("does not require ")?;
                join(f, ids)
            }
            Self::FailOpen => f.write_str("fail_open"),
            Self::NotEnforced(mode) => write!(f, "mode {mode}, not enforce"),
            Self::OtherCosignKeys(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
                f.write_str("trusts other cosign keys: ")?;
                join(f, &keys)
            }
            Self::OtherKeylessIdentities(ids) => {
                f.write_str("trusts other keyless signers: ")?;
                join(f, ids)
            }
            Self::OtherTrustedRoot => f.write_str("trusts another Sigstore trusted root"),
            Self::AnySignedIdentity => f.write_str("signed_identity any, not match_repository"),
        }
    }
}

impl fmt::Display for RequirementsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeakerGlobal {
                global,
                specific,
                ways,
            } => {
                match global {
                    Some(g) => write!(f, "the global scope \"*\" (scope {g:?})")?,
                    None => f.write_str("the built-in default for repositories no scope names")?,
                }
                write!(f, " is weaker than scope {specific:?} (")?;
                join(f, ways)?;
                write!(
                    f,
                    "); a pull under another name of one of {specific:?}'s registries (a DNS \
                     alias, another address) gets the weaker requirements"
                )
            }
            Self::UnanchoredSubjectRegex {
                scope,
                issuer,
                subject_regex,
            } => write!(
                f,
                "scope {scope:?}: keyless subject_regex {subject_regex:?} (issuer {issuer:?}) is \
                 not anchored with ^…$: it matches any subject that contains it; write \
                 \"^{}$\" unless a prefix or suffix match is meant",
                subject_regex.trim_start_matches('^').trim_end_matches('$')
            ),
        }
    }
}

fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// Whether a pattern is anchored at both ends (`^…$`, or `\A…\z`).
pub(super) fn anchored(pattern: &str) -> bool {
    let start = pattern.starts_with('^') || pattern.starts_with("\\A");
    // A `$` preceded by an odd number of backslashes is a literal dollar.
    let trailing_backslashes = |s: &str| s.chars().rev().take_while(|&c| c == '\\').count();
    let end = match (pattern.strip_suffix('$'), pattern.strip_suffix("\\z")) {
        (Some(rest), _) => trailing_backslashes(rest) % 2 == 0,
        (None, Some(rest)) => trailing_backslashes(rest) % 2 == 0,
        (None, None) => false,
    };
    start && end
}

impl Requirements {
    /// What `policy check` warns about, in file order: scopes the `*` scope
    /// (or the built-in default) is weaker than, then unanchored keyless
    /// subject patterns.
    pub fn warnings(&self) -> Vec<RequirementsWarning> {
        let global = self
            .scopes
            .iter()
            .find(|s| s.scopes.contains(&super::RepositoryPattern::Any));
        let (global_name, global) = match global {
            Some(g) => (Some(g.name.clone()), g),
            None => (None, &self.default),
        };
        let mut out = Vec::new();
        for specific in self.scopes.iter().filter(|s| !std::ptr::eq(*s, global)) {
            let ways = weaknesses(global, specific);
            if !ways.is_empty() {
                out.push(RequirementsWarning::WeakerGlobal {
                    global: global_name.clone(),
                    specific: specific.name.clone(),
                    ways,
                });
            }
        }
        for scope in &self.scopes {
            for id in scope.cosign.iter().flat_map(|c| c.identities()) {
                if !anchored(id.subject_regex()) {
                    out.push(RequirementsWarning::UnanchoredSubjectRegex {
                        scope: scope.name.clone(),
                        issuer: id.issuer().to_owned(),
                        subject_regex: id.subject_regex().to_owned(),
                    });
                }
            }
        }
        out
    }
}

fn keyless(id: &KeylessIdentity) -> String {
    format!("{} {}", id.issuer(), id.subject_regex())
}

fn weaknesses(global: &ScopeRequirement, specific: &ScopeRequirement) -> Vec<ScopeWeakness> {
    let mut ways = Vec::new();
    let kinds: Vec<SignatureKind> = global
        .signature_kinds
        .iter()
        .filter(|k| !specific.signature_kinds.contains(k))
        .copied()
        .collect();
    if !kinds.is_empty() {
        ways.push(ScopeWeakness::OtherSignatureKinds(kinds));
    }
    if global.min_signers < specific.min_signers {
        ways.push(ScopeWeakness::FewerSigners {
            global: global.min_signers,
            specific: specific.min_signers,
        });
    }
    let missing: Vec<TrustedIdentity> = specific
        .identities
        .iter()
        .filter(|i| !global.identities.contains(i))
        .cloned()
        .collect();
    if !missing.is_empty() {
        ways.push(ScopeWeakness::MissingIdentities(missing));
    }
    if global.on_registry_error == FailMode::Open && specific.on_registry_error == FailMode::Closed
    {
        ways.push(ScopeWeakness::FailOpen);
    }
    if global.mode != Mode::Enforce && specific.mode == Mode::Enforce {
        ways.push(ScopeWeakness::NotEnforced(global.mode));
    }
    if let Some(g) = &global.cosign {
        let s = specific.cosign.as_ref();
        let keys: Vec<PathBuf> = g
            .keys()
            .iter()
            .filter(|k| !s.is_some_and(|s| s.keys().contains(k)))
            .cloned()
            .collect();
        if !keys.is_empty() {
            ways.push(ScopeWeakness::OtherCosignKeys(keys));
        }
        let ids: Vec<String> = g
            .identities()
            .iter()
            .filter(|i| !s.is_some_and(|s| s.identities().contains(i)))
            .map(keyless)
            .collect();
        if !ids.is_empty() {
            ways.push(ScopeWeakness::OtherKeylessIdentities(ids));
        }
        if g.trusted_root().is_some() && s.and_then(|s| s.trusted_root()) != g.trusted_root() {
            ways.push(ScopeWeakness::OtherTrustedRoot);
        }
        if g.signed_identity() == SignedIdentity::Any
            && s.is_some_and(|s| s.signed_identity() == SignedIdentity::MatchRepository)
        {
            ways.push(ScopeWeakness::AnySignedIdentity);
        }
    }
    ways
}
