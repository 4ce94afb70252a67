//! Blob fetches: a descriptor's bytes, capped and digest-checked.

use bytes::Bytes;
use http::Method;
use pullgate_policy::Repository;

use super::body::verify_digest;
use super::client::{Capability, RegistryClient, Request};
use super::credentials::Credentials;
use super::error::{Error, Kind, Op};
use super::manifest::Descriptor;
use crate::deadline::Deadline;

impl RegistryClient {
    /// Fetches the blob `desc` names, capped at `cap` and at `desc.size`, and
    /// checks its digest.
    ///
    /// # Errors
    /// `TooLarge` when `desc.size > cap` (no request is made) or the registry
    /// sends more than `desc.size`; `DigestMismatch` when the bytes are
    /// shorter than `desc.size` or hash to another digest; plus every
    /// transport, status and deadline error of a request.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is kept between calls except cached tokens.
    pub(crate) async fn fetch_blob(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        cap: u64,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Bytes, Error> {
        let op = Op::FetchingBlob(desc.digest.clone());
        if desc.size > cap {
            return Err(self.error(Kind::TooLarge { limit: cap }, repo, op));
        }
        let req = Request {
            method: Method::GET,
            path: format!("blobs/{}", desc.digest),
            accept: None,
            limit: desc.size,
            capability: Capability::Pull,
            sink: None,
        };
        let fetched = self.fetch(repo, req, creds, deadline, op.clone()).await?;
        let got = fetched.body.len() as u64;
        if got != desc.size {
            return Err(self.error(
                Kind::SizeMismatch {
                    expected: desc.size,
                    got,
                },
                repo,
                op,
            ));
        }
        verify_digest(&desc.digest, &fetched.body).map_err(|k| self.error(k, repo, op))?;
        Ok(fetched.body)
    }

    /// Streams the blob `desc` names into `sink`, at most `desc.size` bytes;
    /// the receiver checks size and digest (containerd's commit does).
    /// Returns when the body ended or the receiver went away.
    ///
    /// # Errors
    /// `TooLarge` when the registry sends more than `desc.size`; every
    /// transport, status and deadline error of a request.
    ///
    /// # Cancel safety
    /// Cancel safe: what was sent stays sent.
    pub(crate) async fn stream_blob(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        creds: &Credentials,
        deadline: Deadline,
        sink: tokio::sync::mpsc::Sender<Bytes>,
    ) -> Result<(), Error> {
        let req = Request {
            method: Method::GET,
            path: format!("blobs/{}", desc.digest),
            accept: None,
            limit: desc.size,
            capability: Capability::Pull,
            sink: Some(sink),
        };
        let op = Op::FetchingBlob(desc.digest.clone());
        self.fetch(repo, req, creds, deadline, op).await.map(drop)
    }
}
