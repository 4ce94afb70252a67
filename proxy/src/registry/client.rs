//! The HTTP side of the registry client: one connection pool per TLS
//! setting, endpoint choice from `hosts.toml`, authentication retries,
//! redirects, per-request timeouts and the capped body read.
//!
//! Input: a repository, a path below `/v2/<name>/`, credentials and the pull's
//! [`Deadline`]. Output: status, headers and a body read through
//! [`read_capped`]. Timeouts: every request (token
//! fetch, redirects and body included) runs under
//! `min(deadline, request_timeout)`; when that fires, the error is
//! `DeadlineExceeded` if the pull's deadline has passed and `Timeout`
//! otherwise.
//!
//! Why not `oci-client` (oras-project/rust-oci-client): it reads manifests
//! and referrers indexes without a size cap, has no per-call deadline (only
//! client-wide timeouts), and does not fall back to the referrers tag schema
//! when the referrers API is missing. Those three are the point of this
//! module, so a thin client over hyper is less code than working around them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{LOCATION, WWW_AUTHENTICATE};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use pullgate_policy::config::{Limits, RegistryConfig};
use pullgate_policy::Repository;
use tokio::sync::Semaphore;

use super::auth::{Auth, Challenge};
use super::auth_file::AuthFile;
use super::body::{content_length, read_capped, read_error_kind};
use super::credentials::{Credentials, Secret};
use super::error::{Context, Error, Kind, Op};
pub(super) use super::hosts::Capability;
use super::hosts::Endpoint;
use super::transport::{resolve_reference, Transport, MAX_CONCURRENT_PER_HOST};
use crate::deadline::Deadline;

/// Redirects followed for one request (blob stores redirect once, to storage).
const MAX_REDIRECTS: usize = 3;
/// Registry hosts with a semaphore; beyond this, idle ones are dropped.
const MAX_TRACKED_HOSTS: usize = 1024;

/// OCI distribution client: one connection pool per TLS setting, shared by
/// clones.
#[derive(Clone)]
pub(crate) struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Endpoints and HTTP clients, replaced whole by
    /// [`RegistryClient::reload_hosts`].
    transport: Transport,
    limits: Limits,
    request_timeout: Duration,
    /// Challenges, tokens and `[registry] auth_file`.
    auth: Auth,
    /// One semaphore per endpoint host, bounding concurrent requests to it.
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("transport", &self.inner.transport)
            .field("limits", &self.inner.limits)
            .field("request_timeout", &self.inner.request_timeout)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// One request below `/v2/<name>/`.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) method: Method,
    /// Path and query after `<name>/`, e.g. `manifests/v1`.
    pub(super) path: String,
    pub(super) accept: Option<&'static str>,
    /// Cap of the body read.
    pub(super) limit: u64,
    pub(super) capability: Capability,
    /// Where the body goes chunk by chunk instead of into [`Fetched::body`]
    /// (still capped at `limit`); `None`: read into memory.
    pub(super) sink: Option<tokio::sync::mpsc::Sender<Bytes>>,
}

/// A successful (2xx) response with its body read.
#[derive(Debug)]
pub(super) struct Fetched {
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The endpoint that answered (pagination stays on it).
    pub(super) endpoint: Endpoint,
}

impl RegistryClient {
    /// Builds the client: reads `hosts.toml` files under `cfg.hosts_dir` and
    /// sets up TLS (system roots, plus each `ca` and `skip_verify` found).
    ///
    /// Plain HTTP is spoken only to hosts in `cfg.plain_http` and to
    /// endpoints a `hosts.toml` writes as `http://`.
    ///
    /// # Errors
    /// A `hosts.toml` that cannot be read or parsed, or a CA file that is not PEM.
    pub(crate) fn new(cfg: &RegistryConfig) -> Result<Self, Error> {
        // Reference domains are canonical (lower case), and so are these.
        let plain_http: HashSet<String> = cfg.plain_http_hosts().into_iter().collect();
        let warn_plain = !plain_http.is_empty();
        let transport = Transport::new(cfg.hosts_dir.clone(), plain_http)?;
        if warn_plain {
            tracing::warn!(hosts = ?cfg.plain_http, "registry plain_http: these registries are reached without TLS");
        }
        let inner = Arc::new(Inner {
            transport,
            limits: cfg.limits,
            request_timeout: cfg.request_timeout(),
            auth: Auth::new(cfg.auth_file.clone().map(AuthFile::new)),
            in_flight: Mutex::new(HashMap::new()),
        });
        Ok(Self { inner })
    }

    /// Re-reads the hosts directory (blocking) and swaps it in when its
    /// content changed: `Ok(true)`; `Ok(false)` when unchanged.
    ///
    /// # Errors
    /// As [`RegistryClient::new`]; the previous table stays in force.
    pub(crate) fn reload_hosts(&self) -> Result<bool, Error> {
        self.inner.transport.reload()
    }

    pub(super) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// An error about `repo` on its registry.
    pub(super) fn error(&self, kind: Kind, repo: &Repository, op: Op) -> Error {
        Error::new(
            kind,
            &Context {
                host: repo.domain().to_owned(),
                repo: Some(repo.path().to_owned()),
                op,
            },
        )
    }

    /// Sends `req` to the first endpoint able to serve it, trying the next on
    /// connection failures, request timeouts, 404 and 401/403 (as containerd
    /// does).
    pub(super) async fn fetch(
        &self,
        repo: &Repository,
        req: Request,
        creds: &Credentials,
        deadline: Deadline,
        op: Op,
    ) -> Result<Fetched, Error> {
        let eps = self.inner.transport.endpoints(repo, &op)?;
        let candidates: Vec<&Endpoint> = eps.iter().filter(|e| e.can(req.capability)).collect();
        let n = candidates.len();
        if n == 0 {
            return Err(Error::config(format!(
                "hosts.toml for {} gives no endpoint able to {:?}",
                repo.domain(),
                req.capability
            )));
        }
        let mut last = None;
        for (i, ep) in candidates.into_iter().enumerate() {
            let ctx = Context {
                host: ep.authority.to_string(),
                repo: Some(repo.path().to_owned()),
                op: op.clone(),
            };
            let uri = format!(
                "{}{}/{}/{}",
                ep.origin(),
                ep.base_path,
                repo.path(),
                req.path
            );
            let uri: Uri = match uri.parse() {
                Ok(u) => u,
                Err(_) => {
                    return Err(Error::new(
                        Kind::Internal("request URI does not parse"),
                        &ctx,
                    ))
                }
            };
            match self
                .fetch_uri(repo, ep, uri, &req, creds, deadline, &ctx)
                .await
            {
                Ok(f) => return Ok(f),
                // A 401/403 too: a mirror on another host never gets the
                // pull's credentials, so its refusal must not end the pull
                // (containerd's resolver also tries the next host on any
                // error status). What is read is digest-checked either way.
                Err(e)
                    if i + 1 < n
                        && (e.is_unreachable()
                            || e.is_not_found()
                            || e.is_unauthorized()
                            || (e.is_timeout() && !e.is_deadline_exceeded())) =>
                {
                    tracing::debug!(error = %e, "trying the next registry endpoint");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| self.error(Kind::Internal("no endpoint tried"), repo, op)))
    }

    /// One request to an absolute `uri` on `ep`, under
    /// `min(deadline, request_timeout)`.
    #[allow(clippy::too_many_arguments)] // reason: the request's parts, all needed; a struct would only rename them
    pub(super) async fn fetch_uri(
        &self,
        repo: &Repository,
        ep: &Endpoint,
        uri: Uri,
        req: &Request,
        creds: &Credentials,
        deadline: Deadline,
        ctx: &Context,
    ) -> Result<Fetched, Error> {
        // No request starts once the pull's deadline has passed.
        if deadline.is_past() {
            return Err(Error::new(Kind::DeadlineExceeded, ctx));
        }
        // Only the credentials of this endpoint's own host, if any. Looked up
        // before the request's budget starts: a slow credential helper is a
        // credentials error (fail closed), never a registry timeout.
        let secret = self.inner.auth.secret_for(ep, creds, deadline, ctx).await?;
        let budget = deadline.at_most(self.inner.request_timeout);
        let semaphore = self.semaphore(ep.authority.as_str());
        let work = async {
            // Waiting for a permit counts against the budget too.
            let _permit = semaphore
                .acquire()
                .await
                .map_err(|_| Error::new(Kind::Internal("registry semaphore closed"), ctx))?;
            self.exchange(repo, ep, uri, req, secret.as_ref(), ctx)
                .await
        };
        match budget.run(work).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error(deadline, ctx)),
        }
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut map = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = map.get(host) {
            return s.clone();
        }
        if map.len() >= MAX_TRACKED_HOSTS {
            // Keep only semaphores some request still holds.
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let s = Arc::new(Semaphore::new(MAX_CONCURRENT_PER_HOST));
        map.insert(host.to_owned(), s.clone());
        s
    }

    pub(super) fn timeout_error(&self, deadline: Deadline, ctx: &Context) -> Error {
        let kind = if deadline.is_past() {
            Kind::DeadlineExceeded
        } else {
            Kind::Timeout
        };
        Error::new(kind, ctx)
    }

    async fn exchange(
        &self,
        repo: &Repository,
        ep: &Endpoint,
        uri: Uri,
        req: &Request,
        secret: Option<&Secret>,
        ctx: &Context,
    ) -> Result<Fetched, Error> {
        let default_scope = format!("repository:{}:pull", repo.path());
        let mut scope = default_scope.clone();
        let mut resp = None;
        for attempt in 0..2 {
            let authz = self.authorization(ep, &scope, secret, ctx).await?;
            let r = self
                .inner
                .transport
                .send(
                    &ep.tls,
                    req.method.clone(),
                    uri.clone(),
                    req.accept,
                    authz.clone(),
                    ctx,
                )
                .await?;
            if r.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = Challenge::pick(r.headers().get_all(WWW_AUTHENTICATE).iter());
                let Some(challenge) = challenge else {
                    return Err(Error::new(Kind::Unauthorized { status: r.status() }, ctx));
                };
                let asked = challenge.scope.clone().unwrap_or_else(|| scope.clone());
                self.inner.auth.state.learn(
                    ep.authority.as_str(),
                    challenge,
                    &[&scope, &asked],
                    secret,
                );
                scope = asked;
                continue;
            }
            resp = Some(r);
            break;
        }
        let Some(mut resp) = resp else {
            return Err(Error::new(
                Kind::Unauthorized {
                    status: StatusCode::UNAUTHORIZED,
                },
                ctx,
            ));
        };
        let mut redirects = 0;
        let mut at = uri;
        while resp.status().is_redirection() && resp.status() != StatusCode::NOT_MODIFIED {
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(Error::new(
                    Kind::Status {
                        status: resp.status(),
                    },
                    ctx,
                ));
            }
            let next = self.redirect_target(&at, resp.headers(), ep, ctx)?;
            // Credentials stay with the registry: a redirect to storage on
            // another host gets a signed URL, not our token.
            let same_origin = next.authority() == at.authority() && next.scheme() == at.scheme();
            let authz = if same_origin {
                self.authorization(ep, &scope, secret, ctx).await?
            } else {
                None
            };
            resp = self
                .inner
                .transport
                .send(
                    &ep.tls,
                    req.method.clone(),
                    next.clone(),
                    req.accept,
                    authz,
                    ctx,
                )
                .await?;
            at = next;
        }
        if !resp.status().is_success() {
            return Err(Error::for_status(resp.status(), ctx));
        }
        let (parts, body) = resp.into_parts();
        let body = if req.method == Method::HEAD {
            Bytes::new()
        } else if let Some(sink) = &req.sink {
            stream_capped(body, content_length(&parts.headers), req.limit, sink)
                .await
                .map_err(|e| Error::new(read_error_kind(e), ctx))?;
            Bytes::new()
        } else {
            read_capped(body, content_length(&parts.headers), req.limit)
                .await
                .map_err(|e| Error::new(read_error_kind(e), ctx))?
        };
        Ok(Fetched {
            headers: parts.headers,
            body,
            endpoint: ep.clone(),
        })
    }

    /// Where pushes to `repo` go: the registry itself, the last endpoint
    /// `hosts.toml` lists (mirrors, listed first, are for pulls).
    pub(super) fn push_endpoint(&self, repo: &Repository, op: &Op) -> Result<Endpoint, Error> {
        let eps = self.inner.transport.endpoints(repo, op)?;
        eps.last()
            .cloned()
            .ok_or_else(|| Error::config(format!("no endpoint for {}", repo.domain())))
    }

    /// One push request (`method` on `uri`, with `body` as its content
    /// type) to `ep`, with the credentials of `[registry] auth_file` for
    /// its host and scope `repository:<name>:pull,push`, answering one
    /// challenge; under `min(deadline, request_timeout)`. Returns the
    /// response whatever its status; its body is not read.
    #[allow(clippy::too_many_arguments)] // reason: the parts of one request
    pub(super) async fn send_push(
        &self,
        repo: &Repository,
        ep: &Endpoint,
        method: Method,
        uri: Uri,
        body: Option<(&'static str, Bytes)>,
        deadline: Deadline,
        ctx: &Context,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let secret = self
            .inner
            .auth
            .secret_for(ep, &Credentials::NotGiven, deadline, ctx)
            .await?;
        let work = async {
            let mut scope = format!("repository:{}:pull,push", repo.path());
            for attempt in 0..2 {
                let authz = self.authorization(ep, &scope, secret.as_ref(), ctx).await?;
                let r = self
                    .inner
                    .transport
                    .send_with_body(
                        &ep.tls,
                        method.clone(),
                        uri.clone(),
                        None,
                        authz,
                        body.clone(),
                        ctx,
                    )
                    .await?;
                if r.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                    if let Some(challenge) =
                        Challenge::pick(r.headers().get_all(WWW_AUTHENTICATE).iter())
                    {
                        let asked = challenge.scope.clone().unwrap_or_else(|| scope.clone());
                        self.inner.auth.state.learn(
                            ep.authority.as_str(),
                            challenge,
                            &[&scope, &asked],
                            secret.as_ref(),
                        );
                        scope = asked;
                        continue;
                    }
                }
                return Ok(r);
            }
            Err(Error::new(
                Kind::Unauthorized {
                    status: StatusCode::UNAUTHORIZED,
                },
                ctx,
            ))
        };
        match deadline.at_most(self.inner.request_timeout).run(work).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error(deadline, ctx)),
        }
    }

    /// The `Authorization` header for a request to `ep` (see [`Auth::authorization`]).
    async fn authorization(
        &self,
        ep: &Endpoint,
        scope: &str,
        secret: Option<&Secret>,
        ctx: &Context,
    ) -> Result<Option<HeaderValue>, Error> {
        let inner = &self.inner;
        inner
            .auth
            .authorization(
                &inner.transport,
                inner.limits.token_bytes,
                ep,
                scope,
                secret,
                ctx,
            )
            .await
    }

    fn redirect_target(
        &self,
        at: &Uri,
        headers: &HeaderMap,
        ep: &Endpoint,
        ctx: &Context,
    ) -> Result<Uri, Error> {
        let bad = || Error::new(Kind::BadHeader { name: "Location" }, ctx);
        let loc = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(bad)?;
        let next = resolve_reference(at, loc).ok_or_else(bad)?;
        // No downgrade: plain HTTP only where the endpoint itself is plain.
        if next.scheme() == Some(&Scheme::HTTP)
            && !(ep.scheme == Scheme::HTTP && next.authority() == Some(&ep.authority))
            && !next
                .authority()
                .is_some_and(|a| self.inner.transport.is_plain_http(a.as_str()))
        {
            return Err(bad());
        }
        Ok(next)
    }
}

/// Sends `body` to `sink` chunk by chunk, never more than `limit` bytes in
/// all; a closed sink ends the read early (the receiver gave up).
async fn stream_capped<B>(
    mut body: B,
    declared: Option<u64>,
    limit: u64,
    sink: &tokio::sync::mpsc::Sender<Bytes>,
) -> Result<(), super::body::ReadError>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    use super::body::ReadError;
    use http_body_util::BodyExt as _;
    if declared.is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len() as u64);
            if total > limit {
                return Err(ReadError::TooLarge { limit });
            }
            if sink.send(data).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
