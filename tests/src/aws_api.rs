//! A loopback stand-in for the three AWS endpoints pullgate's AWS Signer
//! revocation check talks to, on one free `127.0.0.1` port:
//!
//! - the Signer API's `GET /revocations` (`GetRevocationStatus`), which
//!   **verifies the SigV4 signature itself**, recomputed here from the
//!   test's known credentials (independently of the `aws-sigv4` crate the
//!   proxy signs with), and answers as told: not revoked, revoked (the
//!   profile version), HTTP 500, or no answer at all;
//! - STS `POST /` `AssumeRoleWithWebIdentity`, answering the web identity
//!   token it is told to expect with fixed credentials;
//! - IMDSv2: `PUT /latest/api/token`, then `GET /latest/meta-data/iam/security-credentials/[role]`
//!   with that token;
//! - the container credentials endpoint (ECS, EKS Pod Identity):
//!   `GET /container-credentials/<anything>`, answering only the
//!   `Authorization` header it is told to expect (none by default).
//!
//! Every revocation request is recorded (its query, whether its signature
//! verified), so a test can assert what was asked. Drop stops the server.
//! AWS itself is never reachable from these tests: this is what they talk to.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The access key id of the test credentials (secret [`SECRET_ACCESS_KEY`]).
pub const ACCESS_KEY_ID: &str = "AKIDPULLGATETEST0001";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "pullgate/test+secret/0000000000000000000";
/// The session token the STS and IMDS stand-ins hand out.
pub const SESSION_TOKEN: &str = "pullgate-test-session-token/with+chars=";
/// The IMDS role name.
pub const IMDS_ROLE: &str = "pullgate-node-role";
/// The IMDSv2 session token handed out.
const IMDS_TOKEN: &str = "imds-token-0123";

/// How `GET /revocations` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `{"revokedEntities": []}`.
    NotRevoked,
    /// `{"revokedEntities": [<the profile-version ARN asked about>]}`.
    Revoked,
    /// HTTP 500.
    ServerError,
    /// Never answers (the connection stays open).
    Hang,
}

/// One `GET /revocations` as received.
#[derive(Debug, Clone)]
pub struct RevocationCall {
    /// Query parameters, decoded; `certificateHashes` keeps every value.
    pub params: BTreeMap<String, Vec<String>>,
    /// Whether the SigV4 signature verified with the expected secret.
    pub signature_ok: bool,
    /// Why not, when it did not.
    pub signature_problem: Option<String>,
    /// The access key id the request was signed with.
    pub access_key_id: Option<String>,
    /// The region in its credential scope.
    pub region: Option<String>,
}

#[derive(Debug)]
struct State {
    answer: Answer,
    /// The secret (and token) requests must be signed with.
    secret: String,
    session_token: Option<String>,
    web_identity_token: Option<String>,
    calls: Vec<RevocationCall>,
    sts_calls: usize,
    imds_calls: usize,
    container_authorization: Option<String>,
    container_calls: usize,
}

/// The running stand-in; drop stops it.
#[derive(Debug)]
pub struct AwsApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for AwsApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AwsApi {
    /// Starts on `127.0.0.1:0`, answering `answer`, expecting requests signed
    /// with [`SECRET_ACCESS_KEY`] and no session token.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(answer: Answer) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            answer,
            secret: SECRET_ACCESS_KEY.to_owned(),
            session_token: None,
            web_identity_token: None,
            calls: Vec::new(),
            sts_calls: 0,
            imds_calls: 0,
            container_authorization: None,
            container_calls: 0,
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Changes the answer from now on.
    pub fn set_answer(&self, answer: Answer) {
        self.with(|s| s.answer = answer);
    }

    /// Expects requests signed with the STS/IMDS credentials (secret
    /// [`SECRET_ACCESS_KEY`] reversed, with [`SESSION_TOKEN`]) from now on.
    pub fn expect_session_credentials(&self) {
        self.with(|s| {
            s.secret = session_secret();
            s.session_token = Some(SESSION_TOKEN.to_owned());
        });
    }

    /// STS accepts this web identity token (and no other).
    pub fn accept_web_identity_token(&self, token: &str) {
        self.with(|s| s.web_identity_token = Some(token.to_owned()));
    }

    /// The container credentials endpoint answers requests whose
    /// `Authorization` header is `token` (and no other).
    pub fn expect_container_authorization(&self, token: &str) {
        self.with(|s| s.container_authorization = Some(token.to_owned()));
    }

    /// How many container credentials requests arrived.
    pub fn container_calls(&self) -> usize {
        self.with(|s| s.container_calls)
    }

    /// Every `GET /revocations` so far.
    pub fn calls(&self) -> Vec<RevocationCall> {
        self.with(|s| s.calls.clone())
    }

    /// How many STS and IMDS credential requests arrived.
    pub fn credential_calls(&self) -> (usize, usize) {
        self.with(|s| (s.sts_calls, s.imds_calls))
    }
}

/// Where the container credentials endpoint answers (any path below it).
pub const CONTAINER_CREDENTIALS_PATH: &str = "/container-credentials/";

/// The secret STS and IMDS hand out.
fn session_secret() -> String {
    SECRET_ACCESS_KEY.chars().rev().collect()
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method == Method::PUT && path == "/latest/api/token" {
        lock(&state).imds_calls += 1;
        if req
            .headers()
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .is_none()
        {
            return Ok(reply(StatusCode::BAD_REQUEST, ""));
        }
        return Ok(reply(StatusCode::OK, IMDS_TOKEN));
    }
    if let Some(role) = path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
        lock(&state).imds_calls += 1;
        let token_ok = req
            .headers()
            .get("x-aws-ec2-metadata-token")
            .is_some_and(|t| t == IMDS_TOKEN);
        if !token_ok {
            return Ok(reply(StatusCode::UNAUTHORIZED, ""));
        }
        if role.is_empty() {
            return Ok(reply(StatusCode::OK, format!("{IMDS_ROLE}\n")));
        }
        if role != IMDS_ROLE {
            return Ok(reply(StatusCode::NOT_FOUND, ""));
        }
        let body = serde_json::json!({
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": ACCESS_KEY_ID,
            "SecretAccessKey": session_secret(),
            "Token": SESSION_TOKEN,
            "Expiration": "2099-01-01T00:00:00Z",
        });
        return Ok(reply(StatusCode::OK, body.to_string()));
    }
    if method == Method::GET && path.starts_with(CONTAINER_CREDENTIALS_PATH) {
        let expected = {
            let mut s = lock(&state);
            s.container_calls += 1;
            s.container_authorization.clone()
        };
        let sent = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if sent != expected {
            return Ok(reply(StatusCode::UNAUTHORIZED, "{}"));
        }
        let body = serde_json::json!({
            "AccessKeyId": ACCESS_KEY_ID,
            "SecretAccessKey": session_secret(),
            "Token": SESSION_TOKEN,
            "AccountId": "123456789012",
            "Expiration": "2099-01-01T00:00:00Z",
        });
        return Ok(reply(StatusCode::OK, body.to_string()));
    }
    if method == Method::POST && path == "/" {
        lock(&state).sts_calls += 1;
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let form: BTreeMap<String, String> = parse_query(&String::from_utf8_lossy(&body))
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().next().unwrap_or_default()))
            .collect();
        let expected = lock(&state).web_identity_token.clone();
        let ok = form.get("Action").map(String::as_str) == Some("AssumeRoleWithWebIdentity")
            && form.contains_key("RoleArn")
            && expected.is_some()
            && form.get("WebIdentityToken") == expected.as_ref();
        if !ok {
            return Ok(reply(StatusCode::FORBIDDEN, "<Error/>"));
        }
        let xml = format!(
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
             <AccessKeyId>{ACCESS_KEY_ID}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
             <SessionToken>{SESSION_TOKEN}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
             </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            session_secret()
        );
        return Ok(reply(StatusCode::OK, xml));
    }
    if method == Method::GET && path == "/revocations" {
        let (answer, secret, token) = {
            let s = lock(&state);
            (s.answer, s.secret.clone(), s.session_token.clone())
        };
        let check = verify_sigv4(&req, &secret, token.as_deref());
        let params = parse_query(req.uri().query().unwrap_or(""));
        let call = RevocationCall {
            signature_ok: check.is_ok(),
            signature_problem: check.as_ref().err().cloned(),
            access_key_id: check.as_ref().ok().map(|c| c.0.clone()),
            region: check.as_ref().ok().map(|c| c.1.clone()),
            params: params.clone(),
        };
        lock(&state).calls.push(call);
        if let Err(why) = check {
            return Ok(reply(
                StatusCode::FORBIDDEN,
                format!("{{\"message\":\"{why}\"}}"),
            ));
        }
        return Ok(match answer {
            Answer::NotRevoked => reply(StatusCode::OK, r#"{"revokedEntities":[]}"#),
            Answer::Revoked => {
                let pv = params
                    .get("profileVersionArn")
                    .and_then(|v| v.first())
                    .cloned()
                    .unwrap_or_default();
                reply(
                    StatusCode::OK,
                    serde_json::json!({ "revokedEntities": [pv] }).to_string(),
                )
            }
            Answer::ServerError => reply(StatusCode::INTERNAL_SERVER_ERROR, "{}"),
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                reply(StatusCode::OK, "{}")
            }
        });
    }
    Ok(reply(StatusCode::NOT_FOUND, ""))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 unreserved characters stay; everything else is `%XX` (upper case): SigV4's URI encoding.
fn aws_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_query(q: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_default()
            .push(percent_decode(v));
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Checks the SigV4 `Authorization` of `req` for service `signer`, as the
/// Signature Version 4 specification computes it. `Ok((access key id, region))`.
fn verify_sigv4(
    req: &Request<Incoming>,
    secret: &str,
    token: Option<&str>,
) -> Result<(String, String), String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let auth = header("authorization").ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or("malformed Authorization")?;
        match k {
            "Credential" => credential = Some(v.to_owned()),
            "SignedHeaders" => signed_headers = Some(v.to_owned()),
            "Signature" => signature = Some(v.to_owned()),
            _ => return Err(format!("unexpected Authorization part {k}")),
        }
    }
    let credential = credential.ok_or("no Credential")?;
    let signed_headers = signed_headers.ok_or("no SignedHeaders")?;
    let signature = signature.ok_or("no Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(format!("bad credential scope {credential}"));
    };
    if *service != "signer" {
        return Err(format!("signed for service {service}"));
    }
    let amz_date = header("x-amz-date").ok_or("no x-amz-date")?;
    if !amz_date.starts_with(date) {
        return Err("x-amz-date is not the scope's date".to_owned());
    }
    if let Some(token) = token {
        if header("x-amz-security-token").as_deref() != Some(token) {
            return Err("missing or wrong x-amz-security-token".to_owned());
        }
        if !signed_headers
            .split(';')
            .any(|h| h == "x-amz-security-token")
        {
            return Err("x-amz-security-token is not signed".to_owned());
        }
    }
    for required in ["host", "x-amz-date"] {
        if !signed_headers.split(';').any(|h| h == required) {
            return Err(format!("{required} is not signed"));
        }
    }
    // Canonical request.
    let mut query: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                aws_encode(&percent_decode(k)),
                aws_encode(&percent_decode(v)),
            )
        })
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = header(name).ok_or(format!("signed header {name} is absent"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let empty_hash = hex::encode(Sha256::digest(b""));
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{empty_hash}",
        req.method(),
        req.uri().path(),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/signer/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"signer");
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    if expected != signature {
        return Err("signature mismatch".to_owned());
    }
    Ok(((*akid).to_owned(), (*region).to_owned()))
}
