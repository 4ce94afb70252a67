//! Fetching a policy bundle through the registry client: the tag's digest
//! (one `HEAD`), then, by that digest, the manifest and each file.
//!
//! Limits: the manifest is capped at `[registry.limits] manifest_bytes`
//! and must be a bundle (`Layout::parse`) before any file is fetched;
//! each file is capped at its layer's size (at most
//! `MAX_FILE_BYTES`) and checked against
//! its digest. Timeouts: every request under `min(deadline,
//! [registry] request_timeout_ms)`. Credentials: as for `pullgate verify`
//! (`[registry] auth_file`, else anonymous), to the source's registry only.

use bytes::Bytes;
use pullgate_policy::{Digest, ImageRef, Repository};

use crate::deadline::Deadline;
use crate::policy_bundle::layout::{BundleError, BundleFile, Layout, MAX_FILE_BYTES};
use crate::registry::{self, Credentials, Descriptor, RegistryClient};

/// Why a bundle could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The registry could not be asked, or refused (retried at the next poll).
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// The manifest is not a policy bundle (refused).
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// A bundle as fetched: its manifest (checked against `digest`), layout
/// and files (each checked against its layer's digest).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) manifest: Bytes,
    pub(crate) layout: Layout,
    pub(crate) files: Vec<(BundleFile, Bytes)>,
}

/// The digest `image`'s tag points at now (no request when it carries one).
///
/// # Errors
/// Every registry error of the `HEAD`.
///
/// # Cancel safety
/// Cancel safe.
pub(crate) async fn current_digest(
    registry: &RegistryClient,
    image: &ImageRef,
    deadline: Deadline,
) -> Result<Digest, registry::Error> {
    Ok(registry
        .resolve(image, &Credentials::NotGiven, deadline)
        .await?
        .digest)
}

/// Fetches the bundle `digest` names in `repo`.
///
/// # Errors
/// `FetchError`.
///
/// # Cancel safety
/// Cancel safe: nothing is kept.
pub(crate) async fn bundle(
    registry: &RegistryClient,
    repo: &Repository,
    digest: &Digest,
    deadline: Deadline,
) -> Result<Fetched, FetchError> {
    let creds = Credentials::NotGiven;
    let (manifest, _media_type) = registry
        .fetch_manifest_bytes(repo, digest, &creds, deadline)
        .await?;
    let layout = Layout::parse(&manifest)?;
    let mut files = Vec::with_capacity(layout.files.len());
    for file in &layout.files {
        let desc = Descriptor {
            media_type: String::new(),
            digest: file.digest.clone(),
            size: file.size,
            artifact_type: None,
            annotations: std::collections::BTreeMap::new(),
        };
        let bytes = registry
            .fetch_blob(repo, &desc, MAX_FILE_BYTES, &creds, deadline)
            .await?;
        files.push((file.clone(), bytes));
    }
    Ok(Fetched {
        manifest,
        layout,
        files,
    })
}
