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
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, LOCATION, USER_AGENT, WWW_AUTHENTICATE};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pullgate_policy::config::{Limits, RegistryConfig};
use pullgate_policy::Repository;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;

use super::auth::{AuthState, Challenge, Credentials, Secret};
use super::auth_file::AuthFile;
use super::blob::{content_length, read_capped, read_error_kind};
use super::error::{Context, Error, Kind, Op};
pub(super) use super::hosts::Capability;
use super::hosts::{Endpoint, HostsDir, TlsRoots};
use crate::deadline::Deadline;

/// Sent on every request, so registry operators can tell who is asking.
const USER_AGENT_VALUE: &str = concat!("pullgate/", env!("CARGO_PKG_VERSION"));
/// Redirects followed for one request (blob stores redirect once, to storage).
const MAX_REDIRECTS: usize = 3;
/// Requests in flight to one registry host at a time (STYLE §4: a semaphore
/// per registry); more wait, under their deadline. As many as one
/// verification's signature fetches, so those go out in one wave.
pub(super) const MAX_CONCURRENT_PER_HOST: usize = 32;
/// Registry hosts with a semaphore; beyond this, idle ones are dropped.
const MAX_TRACKED_HOSTS: usize = 1024;
/// Largest CA bundle read from a hosts.toml `ca` path.
const MAX_CA_FILE: u64 = 1 << 20;
/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// OCI distribution client: one connection pool per TLS setting, shared by
/// clones.
#[derive(Clone)]
pub(crate) struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// `hosts.toml` files and the HTTP clients for their TLS settings,
    /// replaced whole by [`RegistryClient::reload_hosts`].
    hosts: RwLock<Arc<Hosts>>,
    /// containerd's registry `config_path`, re-read on reload.
    hosts_dir: Option<PathBuf>,
    plain_http: HashSet<String>,
    limits: Limits,
    request_timeout: Duration,
    auth: AuthState,
    /// `[registry] auth_file`, for pulls that came without credentials.
    auth_file: Option<AuthFile>,
    /// One semaphore per endpoint host, bounding concurrent requests to it.
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One reading of the hosts directory, with a client per TLS setting it names.
struct Hosts {
    dir: HostsDir,
    clients: HashMap<TlsRoots, HttpClient>,
}

impl Hosts {
    /// Builds the clients of `dir` (blocking: CA files are read), reusing `system` for the system roots.
    fn build(dir: HostsDir, system: Option<HttpClient>) -> Result<Self, Error> {
        let mut clients = HashMap::new();
        let system = match system {
            Some(c) => c,
            None => build_client(&TlsRoots::System)?,
        };
        clients.insert(TlsRoots::System, system);
        for tls in dir.tls_settings() {
            if *tls == TlsRoots::DangerousSkipVerify {
                tracing::warn!("hosts.toml skip_verify: TLS certificates of a registry endpoint are not checked");
            }
            clients.insert(tls.clone(), build_client(tls)?);
        }
        Ok(Self { dir, clients })
    }
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("hosts_dir", &self.inner.hosts_dir)
            .field("plain_http", &self.inner.plain_http)
            .field("limits", &self.inner.limits)
            .field("request_timeout", &self.inner.request_timeout)
            .field("auth_file", &self.inner.auth_file)
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
        let hosts = Hosts::build(HostsDir::read(cfg.hosts_dir.as_deref(), &plain_http)?, None)?;
        if !plain_http.is_empty() {
            tracing::warn!(hosts = ?cfg.plain_http, "registry plain_http: these registries are reached without TLS");
        }
        let inner = Arc::new(Inner {
            hosts: RwLock::new(Arc::new(hosts)),
            hosts_dir: cfg.hosts_dir.clone(),
            plain_http,
            limits: cfg.limits,
            request_timeout: cfg.request_timeout(),
            auth: AuthState::default(),
            auth_file: cfg.auth_file.clone().map(AuthFile::new),
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
        let current = self.hosts();
        let fresh = HostsDir::read(self.inner.hosts_dir.as_deref(), &self.inner.plain_http)?;
        if fresh.fingerprint() == current.dir.fingerprint() {
            return Ok(false);
        }
        let system = current.clients.get(&TlsRoots::System).cloned();
        let hosts = Hosts::build(fresh, system)?;
        *self
            .inner
            .hosts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(hosts);
        Ok(true)
    }

    fn hosts(&self) -> Arc<Hosts> {
        Arc::clone(
            &self
                .inner
                .hosts
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(super) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(super) fn auth(&self) -> &AuthState {
        &self.inner.auth
    }

    pub(super) fn auth_file(&self) -> Option<&AuthFile> {
        self.inner.auth_file.as_ref()
    }

    pub(super) fn is_plain_http(&self, authority: &str) -> bool {
        self.inner.plain_http.contains(authority)
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

    fn endpoints(&self, repo: &Repository, op: &Op) -> Result<Arc<[Endpoint]>, Error> {
        self.hosts()
            .dir
            .endpoints(repo.domain(), &self.inner.plain_http)
            .map(Arc::from)
            .map_err(|e| e.during(op.clone()))
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
        let eps = self.endpoints(repo, &op)?;
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
        let secret = self.secret_for(ep, creds, deadline, ctx).await?;
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
                self.inner
                    .auth
                    .learn(ep.authority.as_str(), challenge, &[&scope, &asked], secret);
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
        let status = resp.status();
        match status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Err(Error::new(Kind::NotFound, ctx)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::new(Kind::Unauthorized { status }, ctx))
            }
            _ => return Err(Error::new(Kind::Status { status }, ctx)),
        }
        let (parts, body) = resp.into_parts();
        let body = if req.method == Method::HEAD {
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
                .is_some_and(|a| self.is_plain_http(a.as_str()))
        {
            return Err(bad());
        }
        Ok(next)
    }

    /// Sends one request; maps connection failures to `Unreachable`.
    pub(super) async fn send(
        &self,
        tls: &TlsRoots,
        method: Method,
        uri: Uri,
        accept: Option<&'static str>,
        authorization: Option<HeaderValue>,
        ctx: &Context,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        self.send_with_body(tls, method, uri, accept, authorization, None, ctx)
            .await
    }

    #[allow(clippy::too_many_arguments)] // reason: the parts of one HTTP request
    pub(super) async fn send_with_body(
        &self,
        tls: &TlsRoots,
        method: Method,
        uri: Uri,
        accept: Option<&'static str>,
        authorization: Option<HeaderValue>,
        form: Option<String>,
        ctx: &Context,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let hosts = self.hosts();
        let client = hosts
            .clients
            .get(tls)
            .or_else(|| hosts.clients.get(&TlsRoots::System))
            .cloned()
            .ok_or_else(|| Error::new(Kind::Internal("no HTTP client for TLS setting"), ctx))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(a) = accept {
            builder = builder.header(ACCEPT, a);
        }
        if let Some(a) = authorization {
            builder = builder.header(AUTHORIZATION, a);
        }
        let body = match form {
            Some(f) => {
                builder = builder.header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                );
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|_| Error::new(Kind::Internal("request does not build"), ctx))?;
        client
            .request(request)
            .await
            .map_err(|e| Error::new(Kind::Unreachable(Box::new(e)), ctx))
    }
}

/// Resolves a `Location` or `Link` target against the URI it came from:
/// absolute URLs as they are, absolute paths on the same origin. Relative
/// paths without a leading `/` are not used by registries and are refused.
pub(super) fn resolve_reference(base: &Uri, target: &str) -> Option<Uri> {
    if target.starts_with('/') && !target.starts_with("//") {
        let scheme = base.scheme_str()?;
        let authority = base.authority()?;
        return format!("{scheme}://{authority}{target}").parse().ok();
    }
    let uri: Uri = target.parse().ok()?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Some(uri),
        _ => None,
    }
}

fn build_client(tls: &TlsRoots) -> Result<HttpClient, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS setup: {e}")))
    };
    let config = match tls {
        TlsRoots::System => {
            use hyper_rustls::ConfigBuilderExt as _;
            match builder()?.with_native_roots() {
                Ok(b) => b.with_no_client_auth(),
                Err(e) => {
                    tracing::warn!(error = %e, "no system CA certificates: HTTPS registries will fail");
                    builder()?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                }
            }
        }
        TlsRoots::Files(paths) => {
            let mut roots = rustls::RootCertStore::empty();
            for p in paths {
                let pem = read_ca_file(p)?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| Error::config(format!("{}: {e}", p.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| Error::config(format!("{}: {e}", p.display())))?;
                }
            }
            builder()?
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        TlsRoots::DangerousSkipVerify => builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerousSkipVerify(provider.clone())))
            .with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        // Without a timer the pool never expires idle connections.
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_CONCURRENT_PER_HOST)
        .build(connector))
}

/// Reads a CA file named by hosts.toml, refusing one over [`MAX_CA_FILE`].
fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::config(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(|e| bad(&e))?.len();
    if len > MAX_CA_FILE {
        return Err(bad(&format!("larger than {MAX_CA_FILE} bytes")));
    }
    std::fs::read(path).map_err(|e| bad(&e))
}

/// hosts.toml `skip_verify = true`: accepts any server certificate, still
/// checks handshake signatures. Only built for endpoints that ask for it, and
/// logged at startup.
#[derive(Debug)]
struct DangerousSkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for DangerousSkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
