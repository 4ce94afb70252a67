//! HTTP to registry endpoints: the endpoints `hosts.toml` gives a host, one
//! connection pool per TLS setting (system roots, a `ca` file, `skip_verify`),
//! and sending one request. No authentication, retries or redirects: those
//! are the client's (`client.rs`) and `auth`'s, above this.
//!
//! Plain HTTP is spoken only to hosts in `[registry] plain_http` and to
//! endpoints a `hosts.toml` writes as `http://`. Limits: a CA file is read up
//! to [`MAX_CA_FILE`]; idle pooled connections close after
//! [`POOL_IDLE_TIMEOUT`]. Timeouts are the caller's (every send runs under
//! the request's budget).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use http::{HeaderValue, Method, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pullgate_policy::Repository;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use super::error::{Context, Error, Kind, Op};
use super::hosts::{Endpoint, HostsDir, TlsRoots};

/// Sent on every request, so registry operators can tell who is asking.
const USER_AGENT_VALUE: &str = concat!("pullgate/", env!("CARGO_PKG_VERSION"));
/// Requests in flight to one registry host at a time (STYLE §4: a semaphore
/// per registry); more wait, under their deadline. As many as one
/// verification's signature fetches, so those go out in one wave.
pub(super) const MAX_CONCURRENT_PER_HOST: usize = 32;
/// Largest CA bundle read from a hosts.toml `ca` path.
const MAX_CA_FILE: u64 = 1 << 20;
/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The endpoints of every registry host and an HTTP client for each TLS
/// setting they name.
pub(super) struct Transport {
    /// `hosts.toml` files and the HTTP clients for their TLS settings,
    /// replaced whole by [`Transport::reload`].
    hosts: RwLock<Arc<Hosts>>,
    /// containerd's registry `config_path`, re-read on reload.
    hosts_dir: Option<PathBuf>,
    plain_http: HashSet<String>,
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

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("hosts_dir", &self.hosts_dir)
            .field("plain_http", &self.plain_http)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Reads the `hosts.toml` files under `hosts_dir` and builds a client
    /// per TLS setting they name.
    ///
    /// # Errors
    /// A `hosts.toml` that cannot be read or parsed, or a CA file that is not PEM.
    pub(super) fn new(
        hosts_dir: Option<PathBuf>,
        plain_http: HashSet<String>,
    ) -> Result<Self, Error> {
        let hosts = Hosts::build(HostsDir::read(hosts_dir.as_deref(), &plain_http)?, None)?;
        Ok(Self {
            hosts: RwLock::new(Arc::new(hosts)),
            hosts_dir,
            plain_http,
        })
    }

    /// Re-reads the hosts directory (blocking) and swaps it in when its
    /// content changed: `Ok(true)`; `Ok(false)` when unchanged.
    ///
    /// # Errors
    /// As [`Transport::new`]; the previous table stays in force.
    pub(super) fn reload(&self) -> Result<bool, Error> {
        let current = self.hosts();
        let fresh = HostsDir::read(self.hosts_dir.as_deref(), &self.plain_http)?;
        if fresh.fingerprint() == current.dir.fingerprint() {
            return Ok(false);
        }
        let system = current.clients.get(&TlsRoots::System).cloned();
        let hosts = Hosts::build(fresh, system)?;
        *self
            .hosts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(hosts);
        Ok(true)
    }

    fn hosts(&self) -> Arc<Hosts> {
        Arc::clone(
            &self
                .hosts
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Whether `authority` may be reached over plain HTTP (`[registry] plain_http`).
    pub(super) fn is_plain_http(&self, authority: &str) -> bool {
        self.plain_http.contains(authority)
    }

    /// The endpoints that serve `repo`'s registry, in order.
    pub(super) fn endpoints(&self, repo: &Repository, op: &Op) -> Result<Arc<[Endpoint]>, Error> {
        self.hosts()
            .dir
            .endpoints(repo.domain(), &self.plain_http)
            .map(Arc::from)
            .map_err(|e| e.during(op.clone()))
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
        body: Option<(&'static str, Bytes)>,
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
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                Full::new(bytes)
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
