//! A requirements scope's registry scope: an exact repository, a prefix
//! glob, or every repository.
//!
//! Forms (the glob is only ever the whole last segment):
//! - `registry.example/team/app`: that repository;
//! - `registry.example/team/*`: a repository one path segment below
//!   `registry.example/team` (`team/app`, not `team/app/x`, not `team`);
//! - `registry.example/team/**`: any depth below it (`team/app`, `team/a/b`);
//! - `registry.example/*`, `registry.example/**`: the same below a host;
//! - `*` or `**`: every repository (one scope, written either way).
//!
//! The literal part is canonicalised as repository names are
//! ([`crate::reference`], "Canonical form", and [`Repository::scope_form`]):
//! `127.0.0.1:5000/team/*` and `localhost:5000/team/*` are one pattern, and
//! `docker.io/*` is `docker.io/library/*` (a one-segment Docker Hub name is a
//! `library/` one), while `docker.io/**` is all of Docker Hub.
//!
//! Precedence ([`Specificity`]): an exact repository, then the prefix glob
//! with the longest literal prefix (in path segments; at equal prefix, `*`
//! before `**`), then `*`/`**`. Two patterns matching one repository with
//! equal specificity are the same pattern, so the load's refusal of a
//! pattern listed twice leaves no tie.

use std::fmt;

use crate::reference::{ReferenceError, Repository};

/// One registry scope of a `[[scope]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RepositoryPattern {
    /// One repository, in [`Repository::scope_form`].
    Exact(Repository),
    /// Repositories below a literal prefix.
    Prefix {
        /// The canonical host (scope form: loopback written `localhost`).
        domain: String,
        /// The literal path below the host; empty for a host-wide glob.
        path: String,
        /// How far below the prefix.
        depth: Depth,
    },
    /// Every repository (`*` or `**`).
    Any,
}

/// How many path segments a prefix glob adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// `/*`: exactly one.
    One,
    /// `/**`: one or more.
    Any,
}

/// How specific a pattern is; the greater wins (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    class: u8,
    literal_segments: usize,
    narrow: bool,
}

/// Why a registry scope is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// The name, or the literal part of a glob, does not parse.
    Name(ReferenceError),
    /// A `*` elsewhere than as the whole last segment or the whole scope.
    Glob,
}

impl RepositoryPattern {
    /// Parses a registry scope as written in a `[[scope]]` entry.
    ///
    /// # Errors
    /// [`PatternError`]: a name that does not parse, or a misplaced glob.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text == "*" || text == "**" {
            return Ok(Self::Any);
        }
        let (literal, depth) = if let Some(l) = text.strip_suffix("/**") {
            (l, Depth::Any)
        } else if let Some(l) = text.strip_suffix("/*") {
            (l, Depth::One)
        } else if text.contains('*') {
            return Err(PatternError::Glob);
        } else {
            let repo: Repository = text.parse().map_err(PatternError::Name)?;
            return Ok(Self::Exact(repo.scope_form()));
        };
        if literal.is_empty() || literal.contains('*') {
            return Err(PatternError::Glob);
        }
        // Canonicalise the literal as the name of a repository one segment
        // below it would be: the host as a repository's host, the path as
        // a repository's path (Docker Hub's `library/` included).
        const PROBE: &str = "x";
        let probe: Repository = format!("{literal}/{PROBE}")
            .parse::<Repository>()
            .map_err(PatternError::Name)?
            .scope_form();
        let host_only = !literal.contains('/');
        let path = match (host_only, depth) {
            // `docker.io/**` is all of Docker Hub, not only `library/`.
            (true, Depth::Any) => String::new(),
            _ => match probe.path().strip_suffix(PROBE) {
                Some(p) => p.strip_suffix('/').unwrap_or(p).to_owned(),
                None => return Err(PatternError::Glob),
            },
        };
        Ok(Self::Prefix {
            domain: probe.domain().to_owned(),
            path,
            depth,
        })
    }

    /// Whether `repo` (in any spelling) falls under this pattern.
    pub fn matches(&self, repo: &Repository) -> bool {
        match self {
            Self::Exact(r) => repo.is_in_scope(r),
            Self::Any => true,
            Self::Prefix {
                domain,
                path,
                depth,
            } => {
                let repo = repo.scope_form();
                if repo.domain() != domain {
                    return false;
                }
                let rest = if path.is_empty() {
                    Some(repo.path())
                } else {
                    repo.path()
                        .strip_prefix(path.as_str())
                        .and_then(|r| r.strip_prefix('/'))
                };
                match rest {
                    Some(r) if !r.is_empty() => *depth == Depth::Any || !r.contains('/'),
                    _ => false,
                }
            }
        }
    }

    /// Where the pattern stands in precedence (greater wins).
    pub fn specificity(&self) -> Specificity {
        match self {
            Self::Exact(_) => Specificity {
                class: 2,
                literal_segments: 0,
                narrow: true,
            },
            Self::Prefix { path, depth, .. } => Specificity {
                class: 1,
                literal_segments: 1 + path.split('/').filter(|s| !s.is_empty()).count(),
                narrow: *depth == Depth::One,
            },
            Self::Any => Specificity {
                class: 0,
                literal_segments: 0,
                narrow: false,
            },
        }
    }

    /// How this pattern matched, for `policy check`: "names it exactly",
    /// "prefix glob …", or "`*`".
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact repository",
            Self::Prefix {
                depth: Depth::One, ..
            } => "prefix glob (one segment)",
            Self::Prefix {
                depth: Depth::Any, ..
            } => "prefix glob (any depth)",
            Self::Any => "every repository",
        }
    }

    /// The registry host the pattern names; `None` for `*`.
    pub fn domain(&self) -> Option<&str> {
        match self {
            Self::Exact(r) => Some(r.domain()),
            Self::Prefix { domain, .. } => Some(domain),
            Self::Any => None,
        }
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(r) => write!(f, "{r}"),
            Self::Any => f.write_str("*"),
            Self::Prefix {
                domain,
                path,
                depth,
            } => {
                f.write_str(domain)?;
                if !path.is_empty() {
                    write!(f, "/{path}")?;
                }
                f.write_str(match depth {
                    Depth::One => "/*",
                    Depth::Any => "/**",
                })
            }
        }
    }
}
