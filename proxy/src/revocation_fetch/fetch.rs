//! HTTP for revocation data: plain `http` only, one capped body per
//! request, each request under its own timeout and the pull's deadline.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::MAX_REDIRECTS;
use crate::capped_body;
use crate::deadline::Deadline;
use crate::verify::revocation::{
    FetchFailure, RevocationError, MEDIA_TYPE_OCSP_REQUEST, MEDIA_TYPE_OCSP_RESPONSE,
};

pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 6960 Appendix A.1 GET requests are used while the URL-encoded
/// request stays under this (notation-core-go uses the same bound).
const MAX_GET_REQUEST_LEN: usize = 255;

/// What Go's `url.QueryEscape` leaves alone: unreserved characters.
const QUERY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    // "support only HTTP CRL URLs": https is refused, not attempted.
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}

/// How an OCSP request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OcspMethod {
    Get,
    Post,
}

/// GET when the URL-encoded base64 request is short, else POST.
pub(super) fn ocsp_method(request: &[u8]) -> (OcspMethod, String) {
    let encoded = utf8_percent_encode(&STANDARD.encode(request), QUERY_ESCAPE).to_string();
    if encoded.len() < MAX_GET_REQUEST_LEN {
        (OcspMethod::Get, encoded)
    } else {
        (OcspMethod::Post, encoded)
    }
}

/// Asks the OCSP responder at `url` about `request` (DER `OCSPRequest`).
///
/// # Cancel safety
/// Cancel safe.
pub(super) async fn ocsp(
    client: &HttpClient,
    url: &str,
    request: &[u8],
    limit: u64,
    timeout: Duration,
    deadline: Deadline,
) -> Result<Bytes, FetchFailure> {
    let (method, encoded) = ocsp_method(request);
    ocsp_with(
        client, url, request, method, &encoded, limit, timeout, deadline,
    )
    .await
}

// One argument per request property; a struct would only be unpacked again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn ocsp_with(
    client: &HttpClient,
    url: &str,
    request: &[u8],
    method: OcspMethod,
    encoded: &str,
    limit: u64,
    timeout: Duration,
    deadline: Deadline,
) -> Result<Bytes, FetchFailure> {
    // Refuse an unsupported URL by its own name, before building the GET URL.
    http_uri(url)?;
    match method {
        // RFC 6960 Appendix A.1: "GET {url}/{url-encoding of base-64
        // encoding of the DER encoding of the OCSPRequest}".
        OcspMethod::Get => {
            let url = if url.ends_with('/') {
                format!("{url}{encoded}")
            } else {
                format!("{url}/{encoded}")
            };
            fetch(
                client,
                Method::GET,
                &url,
                Bytes::new(),
                MEDIA_TYPE_OCSP_RESPONSE,
                limit,
                timeout,
                deadline,
            )
            .await
        }
        OcspMethod::Post => {
            fetch(
                client,
                Method::POST,
                url,
                Bytes::copy_from_slice(request),
                MEDIA_TYPE_OCSP_RESPONSE,
                limit,
                timeout,
                deadline,
            )
            .await
        }
    }
}

/// GETs `url` (a CRL).
///
/// # Cancel safety
/// Cancel safe.
pub(super) async fn get(
    client: &HttpClient,
    url: &str,
    limit: u64,
    timeout: Duration,
    deadline: Deadline,
) -> Result<Bytes, FetchFailure> {
    fetch(
        client,
        Method::GET,
        url,
        Bytes::new(),
        "application/pkix-crl, */*",
        limit,
        timeout,
        deadline,
    )
    .await
}

fn http_uri(url: &str) -> Result<Uri, FetchFailure> {
    let unsupported = || {
        FetchFailure::Unusable(Box::new(RevocationError::UnsupportedUrl {
            url: url.chars().take(256).collect(),
        }))
    };
    let uri: Uri = url.parse().map_err(|_| unsupported())?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(unsupported());
    }
    Ok(uri)
}

/// Where a `Location` sends us: an absolute `http` URL, or a path on the
/// same server (RFC 9110 §10.2.2 allows a relative reference).
fn redirect_target(current: &Uri, location: &str) -> Result<Uri, FetchFailure> {
    match current.authority() {
        Some(authority) if location.starts_with('/') && !location.starts_with("//") => {
            http_uri(&format!("http://{authority}{location}"))
        }
        _ => http_uri(location),
    }
}

// As for `ocsp_with`.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
    accept: &str,
    limit: u64,
    timeout: Duration,
    deadline: Deadline,
) -> Result<Bytes, FetchFailure> {
    let mut uri = http_uri(url)?;
    let exchange = async {
        let mut redirects = 0;
        loop {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .header(ACCEPT, accept);
            if method == Method::POST {
                req = req.header(CONTENT_TYPE, MEDIA_TYPE_OCSP_REQUEST);
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|_| FetchFailure::Transport)?;
            let resp = client.request(req).await.map_err(|e| {
                tracing::debug!(%uri, "revocation request failed: {e}");
                FetchFailure::Transport
            })?;
            let status = resp.status();
            if status.is_redirection() && method == Method::GET {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(FetchFailure::Redirects);
                }
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or(FetchFailure::Status {
                        status: status.as_u16(),
                    })?;
                uri = redirect_target(&uri, location)?;
                continue;
            }
            // "each URL is invoked in sequential order, until a 2xx response
            // is received".
            if !status.is_success() {
                return Err(FetchFailure::Status {
                    status: status.as_u16(),
                });
            }
            return read_capped(resp, limit).await;
        }
    };
    match deadline.at_most(timeout).run(exchange).await {
        Ok(result) => result,
        Err(_) if deadline.is_past() => Err(FetchFailure::Deadline),
        Err(_) => Err(FetchFailure::Timeout { timeout }),
    }
}

/// Reads a response body through the one capped reader (`crate::capped_body`).
async fn read_capped(resp: http::Response<Incoming>, limit: u64) -> Result<Bytes, FetchFailure> {
    let declared = capped_body::content_length(resp.headers());
    capped_body::read_capped(resp.into_body(), declared, limit)
        .await
        .map_err(|e| match e {
            capped_body::ReadError::TooLarge { limit } => FetchFailure::TooLarge { limit },
            capped_body::ReadError::Body(_) => FetchFailure::Transport,
        })
}
