//! A minimal plain-HTTP OCI distribution client for pushing test content:
//! blobs (monolithic `POST` then `PUT ?digest=`), manifests by tag or digest,
//! and manifest reads. No auth, no TLS: test registries are on loopback.
//!
//! Spec: <https://github.com/opencontainers/distribution-spec/blob/main/spec.md>,
//! "Pushing blobs" (POST then PUT) and "Pushing Manifests".

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Manifest media types asked for on reads.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.artifact.manifest.v1+json";

/// `sha256:<hex>` of `data`.
pub use pullgate_testkit::sha256_digest;

/// One HTTP response, body read in full.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Whole body.
    pub body: Bytes,
}

impl Response {
    /// A header as text, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a manifest push returned.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// Digest of the bytes pushed.
    pub digest: String,
    /// `OCI-Subject` header: set only by registries with the referrers API,
    /// when the manifest had a `subject`.
    pub oci_subject: Option<String>,
}

/// A manifest read back from a registry.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// `Content-Type` of the response.
    pub media_type: String,
    /// The bytes as stored.
    pub body: Bytes,
}

/// A plain-HTTP client for one registry host.
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Registry {
    /// A client for `host` (`host:port`), spoken to over plain HTTP.
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The `host:port` this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one request to `path_and_query` (or to an absolute URL, as a
    /// `Location` header may give) and reads the whole response.
    ///
    /// # Errors
    /// Connection or protocol failure; any status is returned, not an error.
    pub async fn send(
        &self,
        method: Method,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response> {
        let uri: Uri = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://")
        {
            path_or_url.parse()?
        } else {
            format!("http://{}{}", self.host, path_or_url).parse()?
        };
        let mut req = Request::builder().method(method.clone()).uri(uri.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .header(header::CONTENT_LENGTH, body.len())
            .body(Full::new(body))?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("{method} {uri}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .with_context(|| format!("reading body of {method} {uri}"))?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET /v2/` answers 200.
    ///
    /// # Errors
    /// Any other answer, or none.
    pub async fn ping(&self) -> Result<()> {
        let resp = self.send(Method::GET, "/v2/", &[], Bytes::new()).await?;
        if resp.status != StatusCode::OK {
            bail!("GET /v2/ on {}: {}", self.host, resp.status);
        }
        Ok(())
    }

    /// Pushes `data` as a blob of `repo` (monolithic upload: `POST` for an
    /// upload session, then `PUT <location>?digest=`); returns its digest.
    ///
    /// # Errors
    /// The registry refuses either step.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let start = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Bytes::new(),
            )
            .await?;
        if start.status != StatusCode::ACCEPTED {
            bail!(
                "starting blob upload to {}/{repo}: {} {}",
                self.host,
                start.status,
                String::from_utf8_lossy(&start.body)
            );
        }
        let location = start
            .header("location")
            .context("blob upload answer has no Location")?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={}", digest.replace(':', "%3A"));
        let done = self
            .send(
                Method::PUT,
                &put_url,
                &[("content-type", "application/octet-stream")],
                Bytes::copy_from_slice(data),
            )
            .await?;
        if done.status != StatusCode::CREATED {
            bail!(
                "finishing blob upload {digest} to {}/{repo}: {} {}",
                self.host,
                done.status,
                String::from_utf8_lossy(&done.body)
            );
        }
        Ok(digest)
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the manifest's digest
    /// and the registry's `OCI-Subject` answer.
    ///
    /// # Errors
    /// The registry refuses the manifest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<PutManifest> {
        let resp = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", media_type)],
                Bytes::copy_from_slice(body),
            )
            .await?;
        if resp.status != StatusCode::CREATED {
            bail!(
                "PUT manifest {}/{repo}:{reference}: {} {}",
                self.host,
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        Ok(PutManifest {
            digest: sha256_digest(body),
            oci_subject: resp.header("oci-subject").map(str::to_owned),
        })
    }

    /// `GET /v2/<repo>/manifests/<reference>`; `None` when the registry says 404.
    ///
    /// # Errors
    /// Any status other than 200 or 404.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<FetchedManifest>> {
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("accept", MANIFEST_ACCEPT)],
                Bytes::new(),
            )
            .await?;
        match resp.status {
            StatusCode::OK => Ok(Some(FetchedManifest {
                media_type: resp.header("content-type").unwrap_or_default().to_owned(),
                body: resp.body,
            })),
            StatusCode::NOT_FOUND => Ok(None),
            other => bail!(
                "GET manifest {}/{repo}:{reference}: {other} {}",
                self.host,
                String::from_utf8_lossy(&resp.body)
            ),
        }
    }

    /// `DELETE /v2/<repo>/manifests/<digest>` (docker-registry needs
    /// `storage.delete.enabled`, which [`crate::docker_registry`] sets).
    ///
    /// # Errors
    /// Any status other than 202.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<()> {
        let resp = self
            .send(
                Method::DELETE,
                &format!("/v2/{repo}/manifests/{digest}"),
                &[],
                Bytes::new(),
            )
            .await?;
        if resp.status != StatusCode::ACCEPTED {
            bail!(
                "DELETE manifest {}/{repo}@{digest}: {} {}",
                self.host,
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        Ok(())
    }

    /// `GET /v2/<repo>/blobs/<digest>`.
    ///
    /// # Errors
    /// Any status other than 200.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Result<Bytes> {
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/blobs/{digest}"),
                &[],
                Bytes::new(),
            )
            .await?;
        if resp.status != StatusCode::OK {
            bail!("GET blob {}/{repo}@{digest}: {}", self.host, resp.status);
        }
        Ok(resp.body)
    }
}
