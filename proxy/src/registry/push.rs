//! Pushing an artifact (`pullgate policy push`): each blob (skipped when
//! the registry has it; else `POST` an upload and `PUT` its bytes with
//! their digest), then the manifest by tag.
//!
//! distribution-spec v1.1.0, "Pushing blobs"
//! (<https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#pushing-blobs>):
//! `POST /v2/<name>/blobs/uploads/` "… the registry responds with a 202 and
//! a `Location` header", then `PUT <location>?digest=<digest>` (a
//! monolithic upload); "Pushing manifests": `PUT
//! /v2/<name>/manifests/<reference>` with the manifest's media type as
//! `Content-Type`.
//!
//! Pushes go to the registry itself (not `hosts.toml` mirrors), with the
//! credentials `[registry] auth_file` holds for its host. Each request runs
//! under `min(deadline, request_timeout)`; response bodies are not read.

use bytes::Bytes;
use http::header::LOCATION;
use http::{Method, StatusCode, Uri};
use pullgate_policy::{Digest, Repository};

use super::client::RegistryClient;
use super::error::{Context, Error, Kind, Op};
use super::transport::resolve_reference;
use crate::deadline::Deadline;

/// The `Content-Type` of a blob upload.
const OCTET_STREAM: &str = "application/octet-stream";

impl RegistryClient {
    /// Pushes `bytes` as a blob of `repo`, unless the registry has it; returns its digest.
    ///
    /// # Errors
    /// Any refusal (status), transport, auth or deadline error.
    pub(crate) async fn push_blob(
        &self,
        repo: &Repository,
        bytes: Bytes,
        deadline: Deadline,
    ) -> Result<Digest, Error> {
        let digest = Digest::sha256_of(&bytes);
        let op = Op::PushingBlob(digest.clone());
        let ep = self.push_endpoint(repo, &op)?;
        let ctx = Context {
            host: ep.authority.to_string(),
            repo: Some(repo.path().to_owned()),
            op,
        };
        let base = format!("{}{}/{}", ep.origin(), ep.base_path, repo.path());
        let uri = |s: String| -> Result<Uri, Error> {
            s.parse()
                .map_err(|_| Error::new(Kind::Internal("push URI does not parse"), &ctx))
        };
        let head = uri(format!("{base}/blobs/{digest}"))?;
        let r = self
            .send_push(repo, &ep, Method::HEAD, head, None, deadline, &ctx)
            .await?;
        if r.status().is_success() {
            return Ok(digest);
        }
        let start = uri(format!("{base}/blobs/uploads/"))?;
        let r = self
            .send_push(repo, &ep, Method::POST, start.clone(), None, deadline, &ctx)
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(Error::for_status(r.status(), &ctx));
        }
        let location = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| resolve_reference(&start, l))
            .ok_or_else(|| Error::new(Kind::BadHeader { name: "Location" }, &ctx))?;
        let sep = if location.query().is_some() { '&' } else { '?' };
        let put = uri(format!("{location}{sep}digest={digest}"))?;
        let r = self
            .send_push(
                repo,
                &ep,
                Method::PUT,
                put,
                Some((OCTET_STREAM, bytes)),
                deadline,
                &ctx,
            )
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(Error::for_status(r.status(), &ctx));
        }
        Ok(digest)
    }

    /// Pushes `manifest` (of `media_type`) as `repo:tag`; returns its digest.
    ///
    /// # Errors
    /// Any refusal (status), transport, auth or deadline error.
    pub(crate) async fn push_manifest(
        &self,
        repo: &Repository,
        tag: &str,
        media_type: &'static str,
        manifest: Bytes,
        deadline: Deadline,
    ) -> Result<Digest, Error> {
        let digest = Digest::sha256_of(&manifest);
        let op = Op::PushingManifest(tag.to_owned());
        let ep = self.push_endpoint(repo, &op)?;
        let ctx = Context {
            host: ep.authority.to_string(),
            repo: Some(repo.path().to_owned()),
            op,
        };
        let put: Uri = format!(
            "{}{}/{}/manifests/{tag}",
            ep.origin(),
            ep.base_path,
            repo.path()
        )
        .parse()
        .map_err(|_| Error::new(Kind::Internal("push URI does not parse"), &ctx))?;
        let r = self
            .send_push(
                repo,
                &ep,
                Method::PUT,
                put,
                Some((media_type, manifest)),
                deadline,
                &ctx,
            )
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(Error::for_status(r.status(), &ctx));
        }
        Ok(digest)
    }
}
