//! Blob fetches, digest checks, and the registry's view of the one capped
//! reader (`crate::capped_body`) every response body goes through.

use bytes::Bytes;
use http::Method;
use pullgate_policy::{Digest, Repository};

use super::auth::Credentials;
use super::client::{Capability, RegistryClient, Request};
use super::error::{Error, Kind, Op};
use super::manifest::Descriptor;
use crate::deadline::Deadline;

pub(super) use crate::capped_body::{content_length, read_capped, ReadError};

/// The registry error for a failed capped read.
pub(super) fn read_error_kind(e: ReadError) -> Kind {
    match e {
        ReadError::TooLarge { limit } => Kind::TooLarge { limit },
        ReadError::Body(e) => Kind::Body(e),
    }
}

/// Checks that `bytes` are exactly what `expected` names.
pub(super) fn verify_digest(expected: &Digest, bytes: &[u8]) -> Result<(), Kind> {
    if expected.matches(bytes) {
        Ok(())
    } else {
        Err(Kind::DigestMismatch {
            expected: expected.clone(),
            got: Digest::sha256_of(bytes),
        })
    }
}

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
}
