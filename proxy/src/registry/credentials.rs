//! Registry credentials: the secrets of one pull and the one host they belong
//! to, read from the CRI request ([`Credentials::from_cri`]) or an auth file
//! (`auth_file`), and why reading them failed ([`CredentialsError`]).
//!
//! A leaf of `registry`: the types only, no I/O; sending them is `auth`'s.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
use pullgate_policy::reference::canonical_host;
use pullgate_policy::Repository;
use sha2::{Digest as _, Sha256};

/// A secret that authenticates to one registry host.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Secret {
    /// Username and password (basic auth, or basic auth at the token realm).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth refresh token, exchanged at the realm for access tokens.
    IdentityToken(String),
    /// A bearer token, sent only in answer to a `Bearer` challenge of its host.
    RegistryToken(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Self::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Secret {
    /// The `Authorization: Basic` value of username and password; `None` for tokens.
    pub(super) fn basic_header(&self) -> Option<HeaderValue> {
        let Self::Basic { username, password } = self else {
            return None;
        };
        let enc =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// Tells credentials apart in the token cache without keeping them twice.
pub(super) fn fingerprint(secret: Option<&Secret>) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut put = |tag: u8, s: &str| {
        h.update([tag]);
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    match secret {
        None => put(0, ""),
        Some(Secret::Basic { username, password }) => {
            put(1, username);
            put(1, password);
        }
        Some(Secret::IdentityToken(t)) => put(2, t),
        Some(Secret::RegistryToken(t)) => put(3, t),
    }
    h.finalize().into()
}

/// Registry credentials of one pull, and the one host they belong to.
///
/// A secret goes only to its host: to the endpoints of that host (a mirror
/// on another host gets nothing) and to the token realm that host's
/// challenge names. containerd's CRI plugin does the same with
/// `AuthConfig.server_address` (`ParseAuth` in containerd 1.6
/// `pkg/cri/server/image_pull.go`: "Do not return the auth info when server
/// address doesn't match"); where containerd then sends credentials without
/// a `server_address` to every endpoint, pullgate binds them to the image's
/// own registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// The pull came with none (no CRI `AuthConfig`, or `pullgate verify`):
    /// each host gets what `[registry] auth_file` holds for it, or nothing.
    NotGiven,
    /// Anonymous everywhere: the client sent an `AuthConfig` with nothing usable.
    Anonymous,
    /// For `host` (a canonical registry host) and no other.
    ForHost {
        /// Canonical host ([`canonical_host`]).
        host: String,
        /// The secret.
        secret: Secret,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGiven => f.write_str("NotGiven"),
            Self::Anonymous => f.write_str("Anonymous"),
            Self::ForHost { host, secret } => f
                .debug_struct("ForHost")
                .field("host", host)
                .field("secret", secret)
                .finish(),
        }
    }
}

/// The host a CRI `AuthConfig.server_address` names, canonical: a scheme and
/// a path are dropped as docker's `ConvertToHostname` does (so Docker Hub's
/// `https://index.docker.io/v1/` is `docker.io`), then the host is spelled as
/// image references are. containerd 1.6 takes only the host of a URL (a
/// bare `host` matches nothing there); pullgate accepts both forms.
fn server_address_host(server_address: &str) -> Option<String> {
    let rest = server_address.trim();
    let rest = rest
        .strip_prefix("https://")
        .or_else(|| rest.strip_prefix("http://"))
        .unwrap_or(rest);
    canonical_host(rest.split('/').next().unwrap_or(rest))
}

/// The fields of a CRI `AuthConfig`.
#[derive(Clone, Copy, Default)]
pub(crate) struct CriAuth<'a> {
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
    pub(crate) auth: &'a str,
    pub(crate) server_address: &'a str,
    pub(crate) identity_token: &'a str,
    pub(crate) registry_token: &'a str,
}

impl Credentials {
    /// Credentials for `host` only (canonicalised here).
    #[cfg(test)]
    pub(crate) fn for_host(host: &str, secret: Secret) -> Self {
        match canonical_host(host) {
            Some(host) => Self::ForHost { host, secret },
            None => Self::Anonymous,
        }
    }

    /// Reads a CRI `AuthConfig` sent with a pull of an image in `image`.
    ///
    /// The secret, most specific field first: registry token, identity
    /// token, username and password, then `auth` (base64 of `user:pass`).
    /// Empty fields count as absent; an `auth` that does not decode gives
    /// `Anonymous` (and a warning), so the registry's refusal names the
    /// problem rather than pullgate guessing.
    ///
    /// Its host: the one `server_address` names, else the image's registry.
    /// A `server_address` that names no host gives `Anonymous` (and a
    /// warning): credentials whose owner is unknown go nowhere.
    pub(crate) fn from_cri(a: CriAuth<'_>, image: &Repository) -> Self {
        let Some(secret) = Self::secret_from_cri(a) else {
            return Self::Anonymous;
        };
        if a.server_address.is_empty() {
            return Self::ForHost {
                host: image.domain().to_owned(),
                secret,
            };
        }
        match server_address_host(a.server_address) {
            Some(host) => Self::ForHost { host, secret },
            None => {
                tracing::warn!(
                    "CRI AuthConfig.server_address names no registry host; pulling anonymously"
                );
                Self::Anonymous
            }
        }
    }

    fn secret_from_cri(a: CriAuth<'_>) -> Option<Secret> {
        if !a.registry_token.is_empty() {
            return Some(Secret::RegistryToken(a.registry_token.to_owned()));
        }
        if !a.identity_token.is_empty() {
            return Some(Secret::IdentityToken(a.identity_token.to_owned()));
        }
        if !a.username.is_empty() || !a.password.is_empty() {
            return Some(Secret::Basic {
                username: a.username.to_owned(),
                password: a.password.to_owned(),
            });
        }
        if !a.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(a.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|s| s.split_once(':')) {
                Some((u, p)) => {
                    return Some(Secret::Basic {
                        username: u.to_owned(),
                        password: p.to_owned(),
                    })
                }
                None => tracing::warn!(
                    "CRI AuthConfig.auth is not base64 of user:password; pulling anonymously"
                ),
            }
        }
        None
    }
}

/// Why credentials could not be read. Names the file, host or helper; never
/// the content.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialsError {
    /// The file cannot be read.
    #[error("cannot read auth file {path}: {reason}")]
    Unreadable {
        path: PathBuf,
        reason: std::io::ErrorKind,
    },
    /// The file is over `auth_file::MAX_AUTH_FILE`.
    #[error("auth file {path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    /// Not the JSON of a config.json / auth.json (only the position is kept:
    /// the parser's message could quote a secret).
    #[error(
        "auth file {path} is not a Docker config.json / auth.json (line {line}, column {column})"
    )]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// An `auths` entry whose `auth` is not base64 of `user:password`.
    #[error("auth file {path}: the \"auth\" of {host} is not base64 of user:password")]
    BadAuthEntry { path: PathBuf, host: String },
    /// A helper name that is not a plain file-name suffix.
    #[error("auth file names credential helper {name:?}, which is not a plain name")]
    BadHelperName { name: String },
    /// The helper could not be started (not on `PATH`, not executable).
    #[error("credential helper docker-credential-{helper} could not be started: {reason}")]
    HelperNotStarted {
        helper: String,
        reason: std::io::ErrorKind,
    },
    /// The helper exited unsuccessfully for another reason than "not found".
    #[error("credential helper docker-credential-{helper} failed for {host} ({status})")]
    HelperFailed {
        helper: String,
        host: String,
        status: std::process::ExitStatus,
    },
    /// The helper ran longer than allowed.
    #[error("credential helper docker-credential-{helper} did not answer within {timeout:?}")]
    HelperTimedOut { helper: String, timeout: Duration },
    /// The helper wrote more than `auth_file::MAX_HELPER_OUTPUT`.
    #[error("credential helper docker-credential-{helper} wrote more than {limit} bytes")]
    HelperOutputTooLarge { helper: String, limit: u64 },
    /// Reading the file or running the helper did not finish before the
    /// pull's deadline.
    #[error("reading the credentials did not finish before the pull's deadline")]
    DeadlinePassed,
    /// The helper's answer is not its JSON credentials.
    #[error("credential helper docker-credential-{helper} answered with something other than credentials JSON")]
    HelperMalformed { helper: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cri<'a>(f: impl FnOnce(&mut CriAuth<'a>)) -> CriAuth<'a> {
        let mut a = CriAuth::default();
        f(&mut a);
        a
    }

    #[test]
    fn from_cri_prefers_specific_fields_and_redacts() {
        let image: Repository = "registry.example/app".parse().unwrap();
        let for_image = |secret| Credentials::ForHost {
            host: "registry.example".into(),
            secret,
        };
        assert_eq!(
            Credentials::from_cri(cri(|a| a.registry_token = "rt"), &image),
            for_image(Secret::RegistryToken("rt".into()))
        );
        assert_eq!(
            Credentials::from_cri(
                cri(|a| {
                    a.username = "u";
                    a.password = "p";
                    a.identity_token = "it";
                }),
                &image
            ),
            for_image(Secret::IdentityToken("it".into()))
        );
        assert_eq!(
            Credentials::from_cri(cri(|a| a.auth = "dTpwOnE="), &image), // u:p:q
            for_image(Secret::Basic {
                username: "u".into(),
                password: "p:q".into()
            })
        );
        assert_eq!(
            Credentials::from_cri(cri(|a| a.auth = "!!!"), &image),
            Credentials::Anonymous
        );
        assert_eq!(
            Credentials::from_cri(CriAuth::default(), &image),
            Credentials::Anonymous
        );
        let alice = Credentials::from_cri(
            cri(|a| {
                a.username = "alice";
                a.password = "s3cret";
            }),
            &image,
        );
        let shown = format!("{alice:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("alice"),
            "{shown}"
        );
        let token = Credentials::for_host("r.example", Secret::RegistryToken("tok".into()));
        assert!(!format!("{token:?}").contains("tok\""), "{token:?}");
    }

    #[test]
    fn server_address_names_the_host_in_any_spelling() {
        let image: Repository = "registry.example/app".parse().unwrap();
        let host_of = |server_address: &str| match Credentials::from_cri(
            cri(|a| {
                a.username = "u";
                a.password = "p";
                a.server_address = server_address;
            }),
            &image,
        ) {
            Credentials::ForHost { host, .. } => Some(host),
            _ => None,
        };
        for (given, want) in [
            ("https://index.docker.io/v1/", Some("docker.io")),
            ("index.docker.io", Some("docker.io")),
            ("registry-1.docker.io", Some("docker.io")),
            ("Docker.IO", Some("docker.io")),
            ("https://Registry.Example:443/v2/", Some("registry.example")),
            ("http://127.0.0.1:5000", Some("127.0.0.1:5000")),
            ("mirror.example/some/path", Some("mirror.example")),
            ("", Some("registry.example")),
            ("https://", None),
            ("not a host", None),
        ] {
            assert_eq!(host_of(given).as_deref(), want, "{given:?}");
        }
    }
}
