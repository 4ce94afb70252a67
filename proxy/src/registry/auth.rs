//! Registry authentication: credentials from the CRI request (bound to the
//! one host they belong to), HTTP basic, and the distribution token flow,
//! with tokens cached until they expire (at most [`MAX_TOKEN_LIFETIME`]).
//!
//! Nothing secret is sent unasked: a request carries credentials only once
//! its host has asked with a `401` challenge (remembered for its later
//! requests), and only credentials of that host ([`Credentials`]). A token fetch that fails forgets the host's
//! challenge, so the next request learns the challenge afresh.
//!
//! Input: [`Credentials`], the `WWW-Authenticate` challenge of a 401, and the
//! scope needed (`repository:<name>:pull`). Output: the `Authorization`
//! header for the next request. Limits: a token response is read through the
//! capped reader at `limits.token_bytes`; the cache holds at most
//! [`MAX_CACHED`] tokens and challenges. Timeouts: a token fetch runs inside
//! the budget of the request that needed it.
//!
//! Token flow (distribution `docs/spec/auth/token.md`,
//! <https://github.com/distribution/distribution/blob/v2.8.3/docs/spec/auth/token.md>):
//! on `401` with `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`,
//! `GET <realm>?service=…&scope=…` (basic credentials attached when we have
//! them) answers `{"token": …, "expires_in": …}`; an identity (refresh)
//! token is exchanged with `POST <realm>` as in `docs/spec/auth/oauth.md`.
//! Tokens are cached per (host, scope, credentials), never shared between
//! different credentials.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderValue, Method, Uri};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pullgate_policy::reference::canonical_host;
use serde::Deserialize;
use tokio::time::Instant;

use super::auth_file::{AuthFile, LookupError};
use super::body::{content_length, read_capped, read_error_kind};
use super::credentials::{fingerprint, Credentials, CredentialsError, Secret};
use super::error::{Context, Error, Kind, Op};
use super::hosts::{Endpoint, TlsRoots};
use super::media_type;
use super::transport::Transport;
use crate::deadline::Deadline;

/// Most cached tokens (and remembered challenges) before the cache is pruned.
pub(super) const MAX_CACHED: usize = 4096;
/// Lifetime of a token whose response has no `expires_in`
/// (token.md: "If omitted, the default is 60 seconds").
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest a token is kept, whatever `expires_in` says: a registry cannot
/// make pullgate hold a token for days, and `now + lifetime` cannot
/// overflow (an `expires_in` of 2^64 - 1 seconds once panicked there).
/// Docker Hub issues 300-second tokens; an hour is far above what registries
/// give.
pub(super) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is dropped this long before it expires, so it does not expire in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// `client_id` sent in the OAuth refresh-token exchange (oauth.md requires one).
const OAUTH_CLIENT_ID: &str = "pullgate";

/// Query-component encoding: everything but unreserved characters.
pub(super) const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Authentication scheme of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthScheme {
    Basic,
    Bearer,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    pub(super) scheme: AuthScheme,
    pub(super) realm: Option<String>,
    pub(super) service: Option<String>,
    pub(super) scope: Option<String>,
}

impl Challenge {
    /// The challenge to answer among all `WWW-Authenticate` values: bearer
    /// if offered, else basic.
    pub(super) fn pick<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<Self> {
        let all: Vec<Challenge> = values
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        all.iter()
            .find(|c| c.scheme == AuthScheme::Bearer && c.realm.is_some())
            .or_else(|| all.iter().find(|c| c.scheme == AuthScheme::Basic))
            .cloned()
    }
}

/// Parses a `WWW-Authenticate` value (RFC 9110 §11.6.1: `challenge =
/// auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, several per header,
/// comma-separated). Unknown schemes are skipped; never panics.
pub(super) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:=".contains(&c);
    let is_key = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    // Bounded by the header length: every iteration consumes at least one byte.
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b',') {
            i += 1;
        }
        let start = i;
        while i < b.len() && is_key(b[i]) {
            i += 1;
        }
        if i == start {
            // Not a token: skip the byte.
            i += 1;
            continue;
        }
        let word = String::from_utf8_lossy(&b[start..i]).into_owned();
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && current.is_some() {
            // auth-param: key = token / quoted-string
            j += 1;
            while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
            let mut value = Vec::new();
            if j < b.len() && b[j] == b'"' {
                j += 1;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                    }
                    value.push(b[j]);
                    j += 1;
                }
                j += 1; // closing quote (or past the end)
            } else {
                while j < b.len() && is_tchar(b[j]) && b[j] != b',' {
                    value.push(b[j]);
                    j += 1;
                }
            }
            if let Some((_, params)) = current.as_mut() {
                params.push((
                    word.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
            i = j;
        } else {
            // A new challenge starts with its scheme.
            if let Some(c) = current.take() {
                out.extend(challenge_from(c));
            }
            current = Some((word, Vec::new()));
            i = j.max(i);
        }
    }
    if let Some(c) = current.take() {
        out.extend(challenge_from(c));
    }
    out
}

fn challenge_from((scheme, params): (String, Vec<(String, String)>)) -> Option<Challenge> {
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        media_type::AUTH_SCHEME_BEARER => AuthScheme::Bearer,
        media_type::AUTH_SCHEME_BASIC => AuthScheme::Basic,
        _ => return None,
    };
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    Some(Challenge {
        scheme,
        realm: get("realm"),
        service: get("service"),
        scope: get("scope"),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    host: String,
    scope: String,
    creds: [u8; 32],
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// Challenges seen per host and tokens per (host, scope, credentials).
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    maps: Mutex<AuthMaps>,
}

#[derive(Debug, Default)]
struct AuthMaps {
    challenges: HashMap<String, Challenge>,
    tokens: HashMap<TokenKey, CachedToken>,
}

impl AuthState {
    /// Short, synchronous critical sections only; a panic elsewhere cannot
    /// leave the maps half-written, so a poisoned lock is still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, AuthMaps> {
        self.maps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the challenge of `host`, and forgets the tokens cached for
    /// `secret` under `scopes`: the host has just refused the request, so a
    /// cached token (sent or about to be) is not one to send again.
    pub(super) fn learn(
        &self,
        host: &str,
        challenge: Challenge,
        scopes: &[&str],
        secret: Option<&Secret>,
    ) {
        let mut maps = self.lock();
        if maps.challenges.len() >= MAX_CACHED {
            maps.challenges.clear();
        }
        for scope in scopes {
            maps.tokens.remove(&TokenKey {
                host: host.to_owned(),
                scope: (*scope).to_owned(),
                creds: fingerprint(secret),
            });
        }
        maps.challenges.insert(host.to_owned(), challenge);
    }

    /// Forgets the challenge of `host`, so its next request goes out without
    /// credentials and learns the challenge the registry gives now.
    pub(super) fn forget(&self, host: &str) {
        self.lock().challenges.remove(host);
    }

    fn challenge(&self, host: &str) -> Option<Challenge> {
        self.lock().challenges.get(host).cloned()
    }

    fn cached(&self, key: &TokenKey) -> Option<String> {
        let maps = self.lock();
        let t = maps.tokens.get(key)?;
        (Instant::now() < t.expires).then(|| t.token.clone())
    }

    fn store(&self, key: TokenKey, token: String, lifetime: Duration) {
        let lifetime = lifetime
            .min(MAX_TOKEN_LIFETIME)
            .saturating_sub(EXPIRY_MARGIN);
        if lifetime.is_zero() {
            return;
        }
        let mut maps = self.lock();
        let now = Instant::now();
        let Some(expires) = now.checked_add(lifetime) else {
            return;
        };
        if maps.tokens.len() >= MAX_CACHED {
            maps.tokens.retain(|_, t| t.expires > now);
            if maps.tokens.len() >= MAX_CACHED {
                maps.tokens.clear();
            }
        }
        maps.tokens.insert(key, CachedToken { token, expires });
    }
}

/// How long a token answered with `expires_in` is kept: token.md's default
/// when absent, never more than [`MAX_TOKEN_LIFETIME`].
pub(super) fn token_lifetime(expires_in: Option<u64>) -> Duration {
    expires_in.map_or(DEFAULT_TOKEN_LIFETIME, |s| {
        Duration::from_secs(s).min(MAX_TOKEN_LIFETIME)
    })
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Authentication for every request of a client: the challenges and tokens
/// learnt, and `[registry] auth_file` for pulls that came without
/// credentials.
#[derive(Debug)]
pub(super) struct Auth {
    pub(super) state: AuthState,
    file: Option<AuthFile>,
}

impl Auth {
    pub(super) fn new(file: Option<AuthFile>) -> Self {
        Self {
            state: AuthState::default(),
            file,
        }
    }

    /// The secret `creds` give for requests to `ep`: only the credentials of
    /// `ep`'s own host (compared in canonical spelling, so Docker Hub's
    /// `registry-1.docker.io` endpoint is `docker.io`); a mirror on another
    /// host gets nothing. With [`Credentials::NotGiven`], the auth file is
    /// asked for `ep`'s host.
    pub(super) async fn secret_for(
        &self,
        ep: &Endpoint,
        creds: &Credentials,
        deadline: Deadline,
        ctx: &Context,
    ) -> Result<Option<Secret>, Error> {
        let Some(host) = canonical_host(ep.authority.as_str()) else {
            return Ok(None);
        };
        match creds {
            Credentials::Anonymous => Ok(None),
            Credentials::ForHost {
                host: owner,
                secret,
            } => Ok((*owner == host).then(|| secret.clone())),
            Credentials::NotGiven => {
                let Some(file) = &self.file else {
                    return Ok(None);
                };
                // Every failure here, the pull's deadline passing included,
                // is about credentials, not a registry outage: it must never
                // count as "registry unreachable" (fail_open).
                file.lookup(&host, deadline).await.map_err(|e| {
                    let c = match e {
                        LookupError::DeadlineExceeded => CredentialsError::DeadlinePassed,
                        LookupError::Credentials(c) => c,
                    };
                    Error::new(Kind::Credentials(c), ctx)
                })
            }
        }
    }

    /// The `Authorization` header for a request to `ep`, answering the
    /// challenge `ep` gave before: basic credentials to a `Basic` challenge;
    /// to a `Bearer` one, a registry token as is, or a token fetched from the
    /// realm. Nothing is sent before the host asked (no challenge known).
    /// A failed token fetch forgets the challenge, so a registry whose realm
    /// moved or failed is asked again rather than failing until restart.
    pub(super) async fn authorization(
        &self,
        transport: &Transport,
        token_cap: u64,
        ep: &Endpoint,
        scope: &str,
        secret: Option<&Secret>,
        ctx: &Context,
    ) -> Result<Option<HeaderValue>, Error> {
        let Some(challenge) = self.state.challenge(ep.authority.as_str()) else {
            return Ok(None);
        };
        match (challenge.scheme, secret) {
            (AuthScheme::Basic, Some(s)) => Ok(s.basic_header()),
            (AuthScheme::Basic, None) => Ok(None),
            (AuthScheme::Bearer, Some(Secret::RegistryToken(t))) => Ok(bearer(t)),
            (AuthScheme::Bearer, _) => {
                let key = TokenKey {
                    host: ep.authority.to_string(),
                    scope: scope.to_owned(),
                    creds: fingerprint(secret),
                };
                if let Some(t) = self.state.cached(&key) {
                    return Ok(bearer(&t));
                }
                let (token, lifetime) =
                    match fetch_token(transport, token_cap, ep, &challenge, scope, secret, ctx)
                        .await
                    {
                        Ok(t) => t,
                        Err(e) => {
                            self.state.forget(ep.authority.as_str());
                            return Err(e);
                        }
                    };
                let header = bearer(&token);
                self.state.store(key, token, lifetime);
                Ok(header)
            }
        }
    }
}

/// Fetches a token from the realm `challenge` names, for `scope`, with
/// `secret` (an identity token is exchanged with `POST`); the answer is read
/// up to `token_cap` bytes.
#[allow(clippy::too_many_arguments)] // reason: the parts of one token request, all needed
async fn fetch_token(
    transport: &Transport,
    token_cap: u64,
    ep: &Endpoint,
    challenge: &Challenge,
    scope: &str,
    secret: Option<&Secret>,
    ctx: &Context,
) -> Result<(String, Duration), Error> {
    let ctx = &Context {
        op: Op::FetchingToken,
        ..ctx.clone()
    };
    let bad_realm = || {
        Error::new(
            Kind::BadHeader {
                name: "WWW-Authenticate realm",
            },
            ctx,
        )
    };
    let realm: Uri = challenge
        .realm
        .as_deref()
        .and_then(|r| r.parse().ok())
        .ok_or_else(bad_realm)?;
    let realm_authority = realm.authority().ok_or_else(bad_realm)?.clone();
    // Credentials travel in clear only where the operator allowed plain HTTP.
    match realm.scheme_str() {
        Some("https") => {}
        Some("http")
            if transport.is_plain_http(realm_authority.as_str())
                || (realm_authority == ep.authority && ep.scheme == http::uri::Scheme::HTTP) => {}
        _ => return Err(bad_realm()),
    }
    let tls = if realm_authority == ep.authority {
        ep.tls.clone()
    } else {
        TlsRoots::System
    };
    let mut params: Vec<String> = Vec::new();
    if let Some(s) = &challenge.service {
        params.push(format!("service={}", utf8_percent_encode(s, QUERY)));
    }
    // token.md: several scopes are sent as repeated `scope` parameters.
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        params.push(format!("scope={}", utf8_percent_encode(s, QUERY)));
    }
    let resp = match secret {
        Some(Secret::IdentityToken(refresh)) => {
            params.push("grant_type=refresh_token".to_owned());
            params.push(format!("client_id={OAUTH_CLIENT_ID}"));
            params.push(format!(
                "refresh_token={}",
                utf8_percent_encode(refresh, QUERY)
            ));
            transport
                .send_with_body(
                    &tls,
                    Method::POST,
                    realm.clone(),
                    None,
                    None,
                    Some((
                        "application/x-www-form-urlencoded",
                        bytes::Bytes::from(params.join("&")),
                    )),
                    ctx,
                )
                .await?
        }
        _ => {
            let sep = if realm.query().is_some() { '&' } else { '?' };
            let uri: Uri = format!("{realm}{sep}{}", params.join("&"))
                .parse()
                .map_err(|_| bad_realm())?;
            let basic = secret.and_then(Secret::basic_header);
            transport
                .send(&tls, Method::GET, uri, None, basic, ctx)
                .await?
        }
    };
    if !resp.status().is_success() {
        return Err(Error::for_status(resp.status(), ctx));
    }
    let declared = content_length(resp.headers());
    let body = read_capped(resp.into_body(), declared, token_cap)
        .await
        .map_err(|e| Error::new(read_error_kind(e), ctx))?;
    parse_token_response(&body).map_err(|kind| Error::new(kind, ctx))
}

/// Reads a token endpoint's answer: `token` (or OAuth's `access_token`),
/// non-empty, and its lifetime ([`token_lifetime`] of `expires_in`).
///
/// token.md, `access_token`: "For compatibility with OAuth 2.0, we will
/// also accept `token` under the name `access_token`. At least one of these
/// fields **must** be specified, but both may also appear (for compatibility
/// with older clients). When both are specified, they should be equivalent;
/// if they differ the client's choice is undefined." (`token` is taken.)
///
/// # Errors
/// `Malformed` when the body is not such a JSON object or names no token.
pub(super) fn parse_token_response(body: &[u8]) -> Result<(String, Duration), Kind> {
    let malformed = |detail: String| Kind::Malformed {
        what: "token response",
        detail,
    };
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("no token".to_owned()))?;
    Ok((token, token_lifetime(parsed.expires_in)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge {
                scheme: AuthScheme::Bearer,
                realm: Some("https://auth.docker.io/token".to_owned()),
                service: Some("registry.docker.io".to_owned()),
                scope: Some("repository:library/nginx:pull".to_owned()),
            }]
        );
        let c = parse_challenges(r#"Basic realm="x", Bearer realm="https://r/t", scope="a b""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, AuthScheme::Basic);
        assert_eq!(c[1].scope.as_deref(), Some("a b"));
        assert!(parse_challenges("Negotiate abc==").is_empty());
    }

    #[test]
    fn token_lifetimes_are_clamped() {
        assert_eq!(token_lifetime(None), DEFAULT_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(Some(300)), Duration::from_secs(300));
        assert_eq!(token_lifetime(Some(u64::MAX)), MAX_TOKEN_LIFETIME);
        // Storing the longest lifetime cannot overflow the clock.
        let state = AuthState::default();
        let key = TokenKey {
            host: "h".into(),
            scope: "s".into(),
            creds: fingerprint(None),
        };
        state.store(key.clone(), "t".into(), Duration::MAX);
        assert_eq!(state.cached(&key).as_deref(), Some("t"));
    }

    #[test]
    fn token_responses_name_a_token() {
        let (t, life) = parse_token_response(br#"{"token":"a","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), life), ("a", Duration::from_secs(300)));
        let (t, life) = parse_token_response(br#"{"access_token":"b"}"#).unwrap();
        assert_eq!((t.as_str(), life), ("b", DEFAULT_TOKEN_LIFETIME));
        let (t, _) = parse_token_response(br#"{"token":"a","access_token":"b"}"#).unwrap();
        assert_eq!(t, "a");
        for bad in [
            &br#"{"token":""}"#[..],
            b"{}",
            b"[]",
            b"not json",
            br#"{"token":1}"#,
        ] {
            assert!(
                matches!(parse_token_response(bad), Err(Kind::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn challenge_parsing_never_panics(s in "\\PC{0,300}") {
            let _ = parse_challenges(&s);
        }

        #[test]
        fn challenge_shaped_input_never_panics(s in "(Bearer|Basic|,| |=|\"|\\\\|realm|scope|[a-z]){0,60}") {
            let _ = parse_challenges(&s);
        }
    }
}
