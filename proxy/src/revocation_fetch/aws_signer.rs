//! AWS Signer revocation: the Signer `GetRevocationStatus` API, SigV4-signed,
//! with credentials from the standard AWS chain.
//!
//! Input: the [`RevocationQuery`] the verifier built from a trusted AWS
//! Signer signature (`verify::notary::aws_signer`), `now` (read by the gate;
//! it dates the SigV4 signature) and the pull's [`Deadline`]. Output: `Ok`
//! (nothing revoked), [`AwsSignerError::Revoked`], or
//! [`AwsSignerError::Unavailable`] saying why no answer was had; what each
//! does is the verification level's (Revocation: enforced under strict,
//! logged under permissive and audit), as for OCSP and CRL.
//!
//! The request: `GET <endpoint>/revocations?certificateHashes=…&jobArn=…&platformId=Notation-OCI-SHA384-ECDSA&profileVersionArn=…&signatureTimestamp=…`,
//! signed with SigV4 for service `signer` (the `aws-sigv4` crate), answered
//! with `{"revokedEntities": [...]}`.
//!
//! Where things are (first found wins; the environment is read once at startup):
//!
//! | what | from |
//! |---|---|
//! | region | `[aws_signer] region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, else the signing profile ARN's region |
//! | Signer endpoint | `[aws_signer] endpoint`, `AWS_ENDPOINT_URL_SIGNER`, `AWS_ENDPOINT_URL`, else `https://signer.<region>.amazonaws.com` |
//! | credentials | `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`[/`AWS_SESSION_TOKEN`]; else `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (IRSA) through STS `AssumeRoleWithWebIdentity`; else the container credentials endpoint, `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (ECS, under `http://169.254.170.2`) or `AWS_CONTAINER_CREDENTIALS_FULL_URI` (EKS Pod Identity), with `Authorization` from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at each fetch) or `AWS_CONTAINER_AUTHORIZATION_TOKEN`; else IMDSv2 (unless `AWS_EC2_METADATA_DISABLED=true`) |
//! | STS endpoint | `[aws_signer] sts_endpoint`, `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else `https://sts.<region>.amazonaws.com` |
//! | IMDS endpoint | `[aws_signer] imds_endpoint`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else `http://169.254.169.254` |
//!
//! Not read: shared config and credentials files (`~/.aws`), SSO.
//!
//! As the AWS SDKs, a full container credentials URI over plain `http` is
//! used only when its host is loopback or the ECS or EKS agent's address
//! (`169.254.170.2`, `169.254.170.23`, `[fd00:ec2::23]`): the token and
//! the credentials must not cross a network in the clear.
//!
//! Why the credential fetches are hand-written: `aws-config`, which does
//! them, brings the SDK's own HTTP stack and TLS provider (a second hyper
//! and rustls setup beside the project's); the three fetches are small. Each
//! is one request through the same client as the API call, under the same
//! per-request timeout (`timeout_ms`), the pull's deadline and the same
//! body cap (`max_response_bytes`); the token file is read with a cap of
//! [`MAX_TOKEN_FILE_BYTES`]. Credentials are kept until five minutes before
//! they expire.
//!
//! Limits: answers (not revoked, revoked) are cached per query for
//! `cache_ttl_secs`, at most `cache_entries` of them; an unavailable answer
//! is not cached. A "not revoked" answer comes with the instant its cache
//! time ends ([`AwsSignerRevocation::checked`]): the gate serves an allow
//! that relied on it no longer. At most [`MAX_CONCURRENT_CALLS`] calls are in flight.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pullgate_policy::config::AwsSignerConfig;
use tokio::sync::{Mutex, Semaphore};

use crate::capped_body;
use crate::deadline::Deadline;
use crate::verify::notary::aws_signer::{
    check_status, AwsSignerError, CredentialSource, RevocationQuery, Unavailable,
};
use crate::verify::rfc3339;

/// The SigV4 signing name of the Signer API.
const SERVICE: &str = "signer";
/// Largest web identity token file read.
pub(crate) const MAX_TOKEN_FILE_BYTES: u64 = 16 * 1024;
/// Most `GetRevocationStatus` calls in flight at once, across all pulls.
pub(crate) const MAX_CONCURRENT_CALLS: usize = 8;
/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// The IMDSv2 session token lifetime asked for.
const IMDS_TOKEN_TTL_SECS: &str = "21600";
const IMDS_DEFAULT: &str = "http://169.254.169.254";
/// Where `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is relative to (the ECS agent).
const CONTAINER_RELATIVE_BASE: &str = "http://169.254.170.2";
/// Hosts a full container credentials URI may name over plain `http`.
const CONTAINER_PLAIN_HTTP_HOSTS: [&str; 4] = [
    "localhost",
    "169.254.170.2",
    "169.254.170.23",
    "[fd00:ec2::23]",
];
/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The AWS settings of the process environment, read once at startup
/// (tests build one by hand).
#[derive(Debug, Clone, Default)]
pub(crate) struct Environment {
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) web_identity_token_file: Option<std::path::PathBuf>,
    pub(crate) role_arn: Option<String>,
    pub(crate) role_session_name: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) endpoint_url_signer: Option<String>,
    pub(crate) endpoint_url_sts: Option<String>,
    pub(crate) imds_endpoint: Option<String>,
    pub(crate) imds_disabled: bool,
    pub(crate) container_relative_uri: Option<String>,
    pub(crate) container_full_uri: Option<String>,
    pub(crate) container_authorization_token: Option<String>,
    pub(crate) container_authorization_token_file: Option<std::path::PathBuf>,
}

impl Environment {
    /// Reads the `AWS_*` variables of this process.
    pub(crate) fn from_process() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        Self {
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            session_token: get("AWS_SESSION_TOKEN"),
            web_identity_token_file: get("AWS_WEB_IDENTITY_TOKEN_FILE").map(Into::into),
            role_arn: get("AWS_ROLE_ARN"),
            role_session_name: get("AWS_ROLE_SESSION_NAME"),
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            endpoint_url: get("AWS_ENDPOINT_URL"),
            endpoint_url_signer: get("AWS_ENDPOINT_URL_SIGNER"),
            endpoint_url_sts: get("AWS_ENDPOINT_URL_STS"),
            imds_endpoint: get("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
            imds_disabled: get("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            container_relative_uri: get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            container_full_uri: get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            container_authorization_token: get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            container_authorization_token_file: get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                .map(Into::into),
        }
    }

    /// The container credentials URL: the relative URI under the ECS
    /// agent's address, else the full URI (the SDKs' order); `None` when
    /// neither is set.
    fn container_url(&self) -> Option<String> {
        match (&self.container_relative_uri, &self.container_full_uri) {
            (Some(rel), _) => Some(format!(
                "{CONTAINER_RELATIVE_BASE}/{}",
                rel.trim_start_matches('/')
            )),
            (None, Some(full)) => Some(full.clone()),
            (None, None) => None,
        }
    }
}

/// AWS credentials and when they stop working.
#[derive(Clone)]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expires: Option<SystemTime>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn usable_at(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| now + REFRESH_BEFORE_EXPIRY < e)
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The `GetRevocationStatus` client with its answer cache. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AwsSignerRevocation {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    cfg: AwsSignerConfig,
    env: Environment,
    credentials: Mutex<Option<Credentials>>,
    /// Each answer, with the instant it stops being served (asked + `cache_ttl_secs`),
    /// checked against the caller's `now` on lookup.
    answers: quick_cache::sync::Cache<RevocationQuery, (Result<(), AwsSignerError>, SystemTime)>,
    calls: Semaphore,
}

impl std::fmt::Debug for AwsSignerRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSignerRevocation")
            .field("cached", &self.inner.answers.len())
            .finish_non_exhaustive()
    }
}

impl AwsSignerRevocation {
    /// A client for `[aws_signer]` and the environment `env`.
    ///
    /// # Errors
    /// The TLS client configuration cannot be built.
    pub(crate) fn new(cfg: &AwsSignerConfig, env: Environment) -> Result<Self, rustls::Error> {
        let answers =
            quick_cache::sync::Cache::new(usize::try_from(cfg.cache_entries).unwrap_or(usize::MAX));
        Ok(Self {
            inner: Arc::new(Inner {
                http: https_client()?,
                cfg: cfg.clone(),
                env,
                credentials: Mutex::new(None),
                answers,
                calls: Semaphore::new(MAX_CONCURRENT_CALLS),
            }),
        })
    }

    /// The revocation status of one AWS Signer signature: cached, else asked.
    ///
    /// # Errors
    /// [`AwsSignerError::Revoked`] or [`AwsSignerError::Unavailable`].
    ///
    /// # Cancel safety
    /// Cancel safe: an answer is cached only once complete.
    #[cfg(test)]
    pub(crate) async fn status(
        &self,
        query: &RevocationQuery,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<(), AwsSignerError> {
        self.checked(query, now, deadline).await.map(|_| ())
    }

    /// [`status`](Self::status), with the instant past which a "not
    /// revoked" answer must not be relied on: when it was asked (`now` of
    /// that call) plus `cache_ttl_secs`, the same for every later hit of
    /// the cached answer. An allow that relied on it lives no longer.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    ///
    /// # Cancel safety
    /// Cancel safe: an answer is cached only once complete.
    pub(crate) async fn checked(
        &self,
        query: &RevocationQuery,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<SystemTime, AwsSignerError> {
        if let Some((answer, until)) = self.inner.answers.get(query) {
            if now < until {
                return answer.map(|()| until);
            }
            self.inner
                .answers
                .remove_if(query, |(_, until)| *until <= now);
        }
        let answer = self.ask(query, now, deadline).await;
        // A cache time past the end of `SystemTime` relies on nothing: now.
        let until = now
            .checked_add(Duration::from_secs(self.inner.cfg.cache_ttl_secs))
            .unwrap_or(now);
        match &answer {
            Ok(()) | Err(AwsSignerError::Revoked { .. }) => {
                self.inner
                    .answers
                    .insert(query.clone(), (answer.clone(), until));
            }
            Err(_) => {}
        }
        answer.map(|()| until)
    }

    async fn ask(
        &self,
        query: &RevocationQuery,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<(), AwsSignerError> {
        let unavailable = AwsSignerError::Unavailable;
        let cfg = &self.inner.cfg;
        let env = &self.inner.env;
        let region = cfg
            .region
            .as_deref()
            .or(env.region.as_deref())
            .or(query.profile_region())
            // It becomes part of a host name and of the signing scope: only
            // what region names are made of ("us-west-2", "us-gov-west-1").
            .filter(|r| {
                !r.is_empty()
                    && r.len() <= 32
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
            .ok_or(unavailable(Unavailable::NoRegion))?
            .to_owned();
        let endpoint = cfg
            .endpoint
            .clone()
            .or_else(|| env.endpoint_url_signer.clone())
            .or_else(|| env.endpoint_url.clone())
            .unwrap_or_else(|| format!("https://signer.{region}.amazonaws.com"));
        let url = format!(
            "{}{}",
            endpoint.trim_end_matches('/'),
            query.path_and_query()
        );
        let uri = checked_uri(&url).map_err(unavailable)?;
        let _permit = self
            .inner
            .calls
            .acquire()
            .await
            .map_err(|_| unavailable(Unavailable::Transport))?;
        let creds = self
            .credentials(&region, now, deadline)
            .await
            .map_err(unavailable)?;
        let req = signed_get(&uri, &creds, &region, now).map_err(unavailable)?;
        let body = self.send(req, deadline).await.map_err(unavailable)?;
        check_status(&body)
    }

    /// The credentials of the chain, fetched when none are held or they expire soon.
    async fn credentials(
        &self,
        region: &str,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<Credentials, Unavailable> {
        let env = &self.inner.env;
        if let (Some(id), Some(secret)) = (&env.access_key_id, &env.secret_access_key) {
            return Ok(Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: env.session_token.clone(),
                expires: None,
            });
        }
        // Held across the fetch so concurrent pulls make one fetch, not many.
        let mut held = self.inner.credentials.lock().await;
        if let Some(c) = held.as_ref().filter(|c| c.usable_at(now)) {
            return Ok(c.clone());
        }
        let fresh = if let (Some(file), Some(role)) = (&env.web_identity_token_file, &env.role_arn)
        {
            self.web_identity(file, role, region, deadline)
                .await
                .map_err(|e| Unavailable::Credentials {
                    from: CredentialSource::WebIdentity,
                    failure: Box::new(e),
                })?
        } else if let Some(url) = env.container_url() {
            self.container(&url, deadline)
                .await
                .map_err(|e| Unavailable::Credentials {
                    from: CredentialSource::Container,
                    failure: Box::new(e),
                })?
        } else if !env.imds_disabled {
            self.imds(deadline)
                .await
                .map_err(|e| Unavailable::Credentials {
                    from: CredentialSource::InstanceMetadata,
                    failure: Box::new(e),
                })?
        } else {
            return Err(Unavailable::NoCredentials);
        };
        *held = Some(fresh.clone());
        Ok(fresh)
    }

    /// STS `AssumeRoleWithWebIdentity` (an unsigned call: the token is the credential).
    async fn web_identity(
        &self,
        token_file: &std::path::Path,
        role_arn: &str,
        region: &str,
        deadline: Deadline,
    ) -> Result<Credentials, Unavailable> {
        let token = read_token_file(token_file).await?;
        let cfg = &self.inner.cfg;
        let env = &self.inner.env;
        let endpoint = cfg
            .sts_endpoint
            .clone()
            .or_else(|| env.endpoint_url_sts.clone())
            .or_else(|| env.endpoint_url.clone())
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        let session = env
            .role_session_name
            .clone()
            .unwrap_or_else(|| "pullgate".to_owned());
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("RoleArn", role_arn),
            ("RoleSessionName", session.as_str()),
            ("Version", "2011-06-15"),
            ("WebIdentityToken", token.trim()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, FORM_VALUE)))
        .collect::<Vec<_>>()
        .join("&");
        let uri = checked_uri(&format!("{}/", endpoint.trim_end_matches('/')))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| Unavailable::Transport)?;
        let body = self.send(req, deadline).await?;
        let xml = std::str::from_utf8(&body).map_err(|_| Unavailable::Malformed)?;
        let field = |name| xml_text(xml, name).ok_or(Unavailable::Malformed);
        Ok(Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: Some(field("SessionToken")?),
            expires: xml_text(xml, "Expiration").and_then(|e| rfc3339::parse(&e).ok()),
        })
    }

    /// The container credentials endpoint (ECS task role, EKS Pod
    /// Identity): one `GET`, with the authorization token when one is set.
    async fn container(&self, url: &str, deadline: Deadline) -> Result<Credentials, Unavailable> {
        let uri = checked_uri(url)?;
        if uri.scheme() == Some(&http::uri::Scheme::HTTP) && !container_host_allowed(&uri) {
            return Err(Unavailable::PlainHttpEndpoint {
                url: url.to_owned(),
            });
        }
        let env = &self.inner.env;
        let token = match (
            &env.container_authorization_token_file,
            &env.container_authorization_token,
        ) {
            // The file wins, and is read at each fetch: EKS rotates it.
            (Some(file), _) => Some(read_token_file(file).await?.trim().to_owned()),
            (None, Some(t)) => Some(t.clone()),
            (None, None) => None,
        };
        let mut req = Request::builder().method(Method::GET).uri(uri);
        if let Some(t) = &token {
            // A header value may not hold CR or LF (the SDKs refuse such a token too).
            let value = http::HeaderValue::from_str(t).map_err(|_| Unavailable::Malformed)?;
            req = req.header(http::header::AUTHORIZATION, value);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|_| Unavailable::Transport)?;
        let body = self.send(req, deadline).await?;
        session_credentials(&body)
    }

    /// IMDSv2: a session token (PUT), the instance role's name, its credentials.
    async fn imds(&self, deadline: Deadline) -> Result<Credentials, Unavailable> {
        let base = self
            .inner
            .cfg
            .imds_endpoint
            .clone()
            .or_else(|| self.inner.env.imds_endpoint.clone())
            .unwrap_or_else(|| IMDS_DEFAULT.to_owned());
        let base = base.trim_end_matches('/');
        let req = Request::builder()
            .method(Method::PUT)
            .uri(checked_uri(&format!("{base}/latest/api/token"))?)
            .header("x-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL_SECS)
            .body(Full::new(Bytes::new()))
            .map_err(|_| Unavailable::Transport)?;
        let token = self.send(req, deadline).await?;
        let token = std::str::from_utf8(&token)
            .map_err(|_| Unavailable::Malformed)?
            .trim()
            .to_owned();
        let get = |path: String| {
            Request::builder()
                .method(Method::GET)
                .uri(checked_uri(&format!("{base}{path}"))?)
                .header("x-aws-ec2-metadata-token", token.as_str())
                .body(Full::new(Bytes::new()))
                .map_err(|_| Unavailable::Transport)
        };
        let roles = self
            .send(
                get("/latest/meta-data/iam/security-credentials/".to_owned())?,
                deadline,
            )
            .await?;
        let role = std::str::from_utf8(&roles)
            .ok()
            .and_then(|r| r.lines().next())
            .map(str::trim)
            .filter(|r| !r.is_empty() && !r.contains('/'))
            .ok_or(Unavailable::Malformed)?
            .to_owned();
        let role = utf8_percent_encode(&role, FORM_VALUE).to_string();
        let body = self
            .send(
                get(format!("/latest/meta-data/iam/security-credentials/{role}"))?,
                deadline,
            )
            .await?;
        session_credentials(&body)
    }

    /// One request: a 2xx body read under the cap, or why not.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        deadline: Deadline,
    ) -> Result<Bytes, Unavailable> {
        let timeout = Duration::from_millis(self.inner.cfg.timeout_ms);
        let limit = self.inner.cfg.max_response_bytes;
        let exchange = async {
            let resp = self.inner.http.request(req).await.map_err(|e| {
                tracing::debug!("AWS request failed: {e}");
                Unavailable::Transport
            })?;
            let status = resp.status();
            if !status.is_success() {
                return Err(Unavailable::Status {
                    status: status.as_u16(),
                });
            }
            let declared = capped_body::content_length(resp.headers());
            capped_body::read_capped(resp.into_body(), declared, limit)
                .await
                .map_err(|e| match e {
                    capped_body::ReadError::TooLarge { limit } => Unavailable::TooLarge { limit },
                    capped_body::ReadError::Body(_) => Unavailable::Transport,
                })
        };
        match deadline.at_most(timeout).run(exchange).await {
            Ok(r) => r,
            Err(_) if deadline.is_past() => Err(Unavailable::Deadline),
            Err(_) => Err(Unavailable::Timeout { timeout }),
        }
    }
}

/// The JSON IMDS and the container credentials endpoint answer with.
fn session_credentials(body: &[u8]) -> Result<Credentials, Unavailable> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Session {
        access_key_id: String,
        secret_access_key: String,
        token: Option<String>,
        expiration: Option<String>,
    }
    let c: Session = serde_json::from_slice(body).map_err(|_| Unavailable::Malformed)?;
    Ok(Credentials {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: c.token,
        expires: c.expiration.and_then(|e| rfc3339::parse(&e).ok()),
    })
}

/// Whether a plain-`http` container credentials URI names a host the SDKs
/// allow: loopback, or the ECS or EKS agent.
fn container_host_allowed(uri: &Uri) -> bool {
    let Some(host) = uri.host() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    loopback
        || CONTAINER_PLAIN_HTTP_HOSTS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
}

/// What a form value (and an IMDS path segment) percent-encodes.
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An absolute `http` or `https` URL.
fn checked_uri(url: &str) -> Result<Uri, Unavailable> {
    let bad = || Unavailable::BadEndpoint {
        url: url.chars().take(256).collect(),
    };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(bad()),
    }
}

/// A GET of `uri` signed with SigV4 for the Signer API.
fn signed_get(
    uri: &Uri,
    creds: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<Request<Full<Bytes>>, Unavailable> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or(Unavailable::Signing)?;
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "pullgate",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| Unavailable::Signing)?
        .into();
    let url = uri.to_string();
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|_| Unavailable::Signing)?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|_| Unavailable::Signing)?
        .into_parts();
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(uri.clone())
        .header(http::header::HOST, host.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|_| Unavailable::Signing)?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(req)
}

/// Reads the web identity token file, refusing one over [`MAX_TOKEN_FILE_BYTES`].
async fn read_token_file(path: &std::path::Path) -> Result<String, Unavailable> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|_| Unavailable::Malformed)?;
    let mut buf = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|_| Unavailable::Malformed)?;
    if buf.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(Unavailable::TooLarge {
            limit: MAX_TOKEN_FILE_BYTES,
        });
    }
    String::from_utf8(buf).map_err(|_| Unavailable::Malformed)
}

/// The text of the first `<name>…</name>` element, XML entities decoded.
/// STS answers are flat and small; this is all of them that is read.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let raw = xml[start..start + len].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// An HTTP/1.1 and HTTP/2 client over plain TCP or rustls (ring, system roots).
fn https_client() -> Result<HttpClient, rustls::Error> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
    };
    let tls = match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates: the AWS Signer API will be unreachable over https");
            builder()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector))
}

#[cfg(test)]
mod tests;
