//! Test-only in-toto attestations pushed as OCI artifacts, for signing
//! with notation: the statement as the one layer of a manifest of artifact
//! type `application/vnd.in-toto+json` whose `subject` is the image, as
//! `oras attach --artifact-type application/vnd.in-toto+json` pushes it; the
//! manifest is then signed like an image (`notation sign <artifact digest>`).

use anyhow::{bail, Result};
use serde_json::json;

use crate::distribution::Registry;
use crate::image::{Descriptor, PushedImage, OCI_MANIFEST};
use crate::signer::OCI_EMPTY;

/// Artifact type and layer media type of an in-toto statement artifact.
pub const IN_TOTO_ARTIFACT: &str = "application/vnd.in-toto+json";
/// The annotation naming the statement's predicate type (BuildKit's).
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// Pushes `statement` (of `predicate_type`) as an in-toto artifact whose
/// subject is `subject`, through the referrers API; the artifact's manifest.
///
/// # Errors
/// A push is refused, or the registry does not acknowledge the subject.
pub async fn attach_intoto_artifact(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    statement: &[u8],
    predicate_type: &str,
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    registry.push_blob(repo, statement).await?;
    let empty = b"{}";
    registry.push_blob(repo, empty).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": IN_TOTO_ARTIFACT,
        "config": Descriptor::of(OCI_EMPTY, empty).to_json(),
        "layers": [Descriptor::of(IN_TOTO_ARTIFACT, statement).to_json()],
        "subject": subject.descriptor().to_json(),
        "annotations": { PREDICATE_TYPE_ANNOTATION: predicate_type },
    }))?;
    let desc = Descriptor::of(OCI_MANIFEST, &manifest);
    let put = registry
        .put_manifest(repo, &desc.digest, OCI_MANIFEST, &manifest)
        .await?;
    if put.oci_subject.as_deref() != Some(subject.digest.as_str()) {
        bail!(
            "registry {host} did not acknowledge the subject of {repo}@{}",
            desc.digest
        );
    }
    Ok(PushedImage {
        digest: put.digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
    })
}
