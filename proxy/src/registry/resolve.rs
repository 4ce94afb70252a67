//! Tag → digest, and manifests by digest.
//!
//! Input: an [`ImageRef`] (or a repository and digest), credentials and the
//! pull's deadline. Output: [`Resolved`] (digest, media type, size) or a
//! parsed, digest-verified [`Manifest`]. Limits: manifests are read up to
//! `limits.manifest_bytes`. Timeouts: one request each, under
//! `min(deadline, request_timeout)`.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};
use pullgate_policy::{Digest, ImageRef, Repository};

use super::body::{content_length, verify_digest};
use super::client::{Capability, RegistryClient, Request};
use super::credentials::Credentials;
use super::error::{Error, Kind, Op};
use super::manifest::{media_type_essence, parse_manifest, Manifest};
use super::media_type;
use crate::deadline::Deadline;

/// What a tag resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The manifest (or index) digest the tag points at now.
    pub(crate) digest: Digest,
    /// Its media type; empty when the reference carried the digest (no request made).
    pub(crate) media_type: String,
    /// Its size in bytes; 0 when the reference carried the digest (no request made).
    pub(crate) size: u64,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

impl RegistryClient {
    /// Resolves `image` to the digest its tag points at, with one
    /// `HEAD /v2/<name>/manifests/<tag>`. A reference that carries a digest
    /// costs no request.
    ///
    /// # Errors
    /// `NotFound` for an unknown tag; `BadHeader` when the registry sends a
    /// digest header that does not parse; every transport, status, auth and
    /// deadline error of a request.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn resolve(
        &self,
        image: &ImageRef,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Resolved, Error> {
        if let Some(d) = image.digest() {
            return Ok(Resolved {
                digest: d.clone(),
                media_type: String::new(),
                size: 0,
            });
        }
        let repo = image.repository();
        let Some(tag) = image.tag() else {
            return Err(self.error(
                Kind::Internal("reference has neither tag nor digest"),
                repo,
                Op::Configuring,
            ));
        };
        let op = Op::ResolvingTag(tag.to_owned());
        let head = Request {
            method: Method::HEAD,
            path: format!("manifests/{tag}"),
            accept: Some(media_type::ACCEPT_MANIFESTS),
            limit: self.limits().manifest_bytes,
            capability: Capability::Resolve,
            sink: None,
        };
        let fetched = self.fetch(repo, head, creds, deadline, op.clone()).await?;
        let media_type = header_str(&fetched.headers, CONTENT_TYPE.as_str())
            .map(media_type_essence)
            .unwrap_or_default()
            .to_owned();
        match header_str(&fetched.headers, media_type::HEADER_CONTENT_DIGEST) {
            Some(d) => {
                let digest = d.trim().parse::<Digest>().map_err(|_| {
                    self.error(
                        Kind::BadHeader {
                            name: "Docker-Content-Digest",
                        },
                        repo,
                        op.clone(),
                    )
                })?;
                Ok(Resolved {
                    digest,
                    media_type,
                    size: content_length(&fetched.headers).unwrap_or(0),
                })
            }
            // distribution-spec, "Pulling manifests"
            // (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#pulling-manifests):
            // "A successful response SHOULD contain the digest of the
            // uploaded blob in the header `Docker-Content-Digest`."
            // SHOULD, not MUST: without it, GET the manifest and hash it.
            None => {
                let get = Request {
                    method: Method::GET,
                    path: format!("manifests/{tag}"),
                    accept: Some(media_type::ACCEPT_MANIFESTS),
                    limit: self.limits().manifest_bytes,
                    capability: Capability::Resolve,
                    sink: None,
                };
                let fetched = self.fetch(repo, get, creds, deadline, op).await?;
                let media_type = header_str(&fetched.headers, CONTENT_TYPE.as_str())
                    .map(media_type_essence)
                    .unwrap_or_default()
                    .to_owned();
                Ok(Resolved {
                    digest: Digest::sha256_of(&fetched.body),
                    media_type,
                    size: fetched.body.len() as u64,
                })
            }
        }
    }

    /// Fetches the manifest of a signature (a referrer) `digest` names,
    /// capped at `limits.signature_manifest_bytes` (far below an image
    /// manifest's cap: many are fetched at once), checks its digest and
    /// parses it.
    ///
    /// # Errors
    /// `TooLarge`, `DigestMismatch`, `Malformed` / `UnsupportedMediaType`
    /// for a document pullgate cannot read; every transport, status, auth and
    /// deadline error of a request.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn fetch_signature_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Manifest, Error> {
        let op = Op::FetchingManifest(digest.clone());
        let req = Request {
            method: Method::GET,
            path: format!("manifests/{digest}"),
            accept: Some(media_type::ACCEPT_MANIFESTS),
            limit: self.limits().signature_manifest_bytes,
            capability: Capability::Pull,
            sink: None,
        };
        let fetched = self.fetch(repo, req, creds, deadline, op.clone()).await?;
        verify_digest(digest, &fetched.body).map_err(|k| self.error(k, repo, op.clone()))?;
        let content_type = header_str(&fetched.headers, CONTENT_TYPE.as_str());
        parse_manifest(&fetched.body, content_type)
            .map_err(|e| self.error(e.into_kind("manifest"), repo, op))
    }

    /// Fetches the manifest or index `digest` names as bytes, capped at
    /// `limits.manifest_bytes` and digest-checked, with its media type (the
    /// document's `mediaType`, else the response's `Content-Type`, else empty).
    ///
    /// # Errors
    /// `TooLarge`, `DigestMismatch`; every transport, status, auth and
    /// deadline error of a request.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn fetch_manifest_bytes(
        &self,
        repo: &Repository,
        digest: &Digest,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<(bytes::Bytes, String), Error> {
        let op = Op::FetchingManifest(digest.clone());
        let req = Request {
            method: Method::GET,
            path: format!("manifests/{digest}"),
            accept: Some(media_type::ACCEPT_MANIFESTS),
            limit: self.limits().manifest_bytes,
            capability: Capability::Pull,
            sink: None,
        };
        let fetched = self.fetch(repo, req, creds, deadline, op.clone()).await?;
        verify_digest(digest, &fetched.body).map_err(|k| self.error(k, repo, op))?;
        let media_type = header_str(&fetched.headers, CONTENT_TYPE.as_str())
            .map(media_type_essence)
            .unwrap_or_default()
            .to_owned();
        Ok((fetched.body, media_type))
    }
}
