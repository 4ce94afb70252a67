//! Notary Project signatures next to their image: the push of a signature
//! manifest (referrers API or referrers tag schema), as notation pushes it.
//! The envelopes and the PKI that signs them are `pullgate_testkit`'s.
//!
//! Specs followed:
//! - signature manifest: as notation (notation-go `registry/repository.go`)
//!   pushes it: an OCI image manifest whose config is the 2-byte `{}` blob
//!   with media type `application/vnd.cncf.notary.signature`, one
//!   `application/jose+json` layer, a `subject`, and the
//!   `io.cncf.notary.x509chain.thumbprint#S256` annotation;
//! - referrers tag schema: OCI distribution-spec, "Pushing Manifests with Subject".

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use pullgate_testkit::{JwsOptions, TestPki};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::distribution::{sha256_digest, Registry};
use crate::image::Descriptor;
use crate::image::{PushedImage, OCI_INDEX, OCI_MANIFEST};

/// Artifact type (and notation's config media type) of a Notary Project signature.
pub const NOTARY_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS envelope.
pub const JWS_ENVELOPE: &str = "application/jose+json";
/// Annotation listing the SHA-256 thumbprints of the `x5c` certificates.
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
/// OCI empty descriptor media type (`{}`), for artifact-type-style manifests.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// How a signature is made discoverable from its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersMode {
    /// The registry has the referrers API: push the manifest only, and fail if
    /// the registry does not answer with `OCI-Subject`.
    Api,
    /// Also maintain the `sha256-<hex>` index (registries without the
    /// referrers API, such as docker-registry 2.8).
    TagSchema,
    /// As a client following the spec: tag schema only when the registry did
    /// not answer `OCI-Subject`.
    Auto,
}

/// How the signature manifest declares its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestStyle {
    /// As notation pushes it: config media type
    /// `application/vnd.cncf.notary.signature`, no `artifactType`.
    Notation,
    /// OCI 1.1 guidance: the empty config `application/vnd.oci.empty.v1+json`
    /// and `artifactType: application/vnd.cncf.notary.signature`.
    ArtifactType,
}

/// A signature manifest pushed next to its subject.
#[derive(Debug, Clone)]
pub struct PushedSignature {
    /// The signature manifest's descriptor.
    pub manifest: Descriptor,
    /// The signature manifest, as pushed.
    pub manifest_bytes: Vec<u8>,
    /// The envelope blob's descriptor.
    pub envelope: Descriptor,
    /// The descriptor as listed in a referrers index (with `artifactType`
    /// and the manifest's annotations).
    pub referrer_entry: Value,
}

/// `sha256-<hex>`: the referrers tag schema tag for `digest`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Thumbprints of the `x5c` certificates of a JWS `envelope`, leaf first.
fn envelope_thumbprints(envelope: &[u8]) -> Result<Vec<String>> {
    let v: Value = serde_json::from_slice(envelope).context("envelope is not JSON")?;
    let x5c = v["header"]["x5c"]
        .as_array()
        .context("envelope has no header.x5c")?;
    x5c.iter()
        .map(|c| {
            let der = STANDARD.decode(c.as_str().context("x5c entry is not a string")?)?;
            Ok(hex::encode(Sha256::digest(der)))
        })
        .collect()
}

/// Signs `subject` once per signer, in order, and attaches each JWS
/// envelope through the referrers API (which lists them in push order).
/// ECDSA signing here is deterministic (RFC 6979): each envelope gets its
/// own signing time, so equal signers' envelopes (and manifests) stay apart.
///
/// # Errors
/// As [`TestPki::sign_jws_with`] and [`attach_signature`].
pub async fn attach_signatures_by(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    signers: &[&TestPki],
) -> Result<()> {
    for (k, pki) in signers.iter().enumerate() {
        let options = JwsOptions {
            signing_time: format!("2025-06-01T00:{:02}:{:02}Z", k / 60 % 60, k % 60),
            ..JwsOptions::default()
        };
        let envelope = pki.sign_jws_with(&subject.descriptor(), &options);
        attach_signature(host, repo, subject, &envelope, ReferrersMode::Api).await?;
    }
    Ok(())
}

/// [`attach_signature_with`] in notation's [`ManifestStyle::Notation`].
///
/// # Errors
/// As [`attach_signature_with`].
pub async fn attach_signature(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    envelope: &[u8],
    mode: ReferrersMode,
) -> Result<PushedSignature> {
    attach_signature_with(host, repo, subject, envelope, mode, ManifestStyle::Notation).await
}

/// Pushes JWS `envelope` as a signature of `subject` in `host/repo`: the
/// envelope blob, the config blob `{}`, the signature manifest (by digest),
/// and, per `mode`, the referrers tag-schema index.
///
/// # Errors
/// A push is refused; in [`ReferrersMode::Api`], the registry did not
/// acknowledge the subject; in tag-schema mode, the `sha256-<hex>` tag names
/// something other than an image index.
pub async fn attach_signature_with(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    envelope: &[u8],
    mode: ReferrersMode,
    style: ManifestStyle,
) -> Result<PushedSignature> {
    let registry = Registry::new(host);
    registry.push_blob(repo, envelope).await?;
    let config_bytes = b"{}";
    registry.push_blob(repo, config_bytes).await?;
    let envelope_desc = Descriptor::of(JWS_ENVELOPE, envelope);

    let thumbprints = envelope_thumbprints(envelope)?;
    let annotations = json!({
        THUMBPRINT_ANNOTATION: serde_json::to_string(&thumbprints)?,
    });
    let (config_media_type, artifact_type) = match style {
        ManifestStyle::Notation => (NOTARY_SIGNATURE, None),
        ManifestStyle::ArtifactType => (OCI_EMPTY, Some(NOTARY_SIGNATURE)),
    };
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(config_media_type, config_bytes).to_json(),
        "layers": [envelope_desc.to_json()],
        "subject": subject.descriptor().to_json(),
        "annotations": annotations,
    });
    if let Some(at) = artifact_type {
        manifest["artifactType"] = json!(at);
    }
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_desc = Descriptor::of(OCI_MANIFEST, &manifest_bytes);
    let put = registry
        .put_manifest(repo, &manifest_desc.digest, OCI_MANIFEST, &manifest_bytes)
        .await?;

    // "The value of the `artifactType` MUST be set to the `artifactType` value
    // in the pushed manifest, if present. If the `artifactType` is empty or
    // missing in a pushed image manifest, the value of `artifactType` MUST be
    // set to the config descriptor `mediaType` value. All annotations from the
    // pushed manifest MUST be copied to this descriptor."
    let mut entry = manifest_desc.to_json();
    entry["artifactType"] = json!(artifact_type.unwrap_or(config_media_type));
    entry["annotations"] = manifest["annotations"].clone();

    let use_tag_schema = match mode {
        ReferrersMode::TagSchema => true,
        ReferrersMode::Auto => put.oci_subject.is_none(),
        ReferrersMode::Api => {
            if put.oci_subject.as_deref() != Some(subject.digest.as_str()) {
                bail!(
                    "registry {host} did not acknowledge the subject of {repo}@{} \
                     (OCI-Subject: {:?}); it has no referrers API",
                    manifest_desc.digest,
                    put.oci_subject
                );
            }
            false
        }
    };
    if use_tag_schema {
        add_to_referrers_index(&registry, repo, &subject.digest, &entry).await?;
    }
    Ok(PushedSignature {
        manifest: manifest_desc,
        manifest_bytes,
        envelope: envelope_desc,
        referrer_entry: entry,
    })
}

/// Appends `entry` to the referrers tag-schema index of `subject_digest`.
///
/// OCI distribution-spec, "Pushing Manifests with Subject": when the
/// registry did not set `OCI-Subject`, the client MUST "Pull the current
/// referrers list using the referrers tag schema. If that pull returns a
/// manifest other than the expected image index, the client SHOULD report a
/// failure and skip the remaining steps. If the tag returns a 404, the client
/// MUST begin with an empty image index. Verify the descriptor for the
/// manifest is not already in the referrers list (duplicate entries SHOULD
/// NOT be created). Append a descriptor for the pushed manifest [...]. Push
/// the updated referrers list using the same referrers tag schema."
pub(crate) async fn add_to_referrers_index(
    registry: &Registry,
    repo: &str,
    subject_digest: &str,
    entry: &Value,
) -> Result<()> {
    let tag = referrers_tag(subject_digest);
    let mut index = match registry.get_manifest(repo, &tag).await? {
        None => json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] }),
        Some(found) => {
            let v: Value = serde_json::from_slice(&found.body)
                .with_context(|| format!("{repo}:{tag} is not JSON"))?;
            if v["mediaType"] != OCI_INDEX || !v["manifests"].is_array() {
                bail!(
                    "{repo}:{tag} is not an image index (Content-Type {}); not touching it",
                    found.media_type
                );
            }
            v
        }
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .context("index manifests is not an array")?;
    if !manifests.iter().any(|m| m["digest"] == entry["digest"]) {
        manifests.push(entry.clone());
    }
    let bytes = serde_json::to_vec(&index)?;
    registry.put_manifest(repo, &tag, OCI_INDEX, &bytes).await?;
    Ok(())
}

/// The descriptors listed in `host/repo:sha256-<hex>` for `subject_digest`
/// (empty when the tag does not exist).
///
/// # Errors
/// The registry fails, or the tag is not an image index.
pub async fn referrers_from_tag_schema(
    host: &str,
    repo: &str,
    subject_digest: &str,
) -> Result<Vec<Value>> {
    let registry = Registry::new(host);
    let tag = referrers_tag(subject_digest);
    let Some(found) = registry.get_manifest(repo, &tag).await? else {
        return Ok(Vec::new());
    };
    let v: Value = serde_json::from_slice(&found.body)?;
    Ok(v["manifests"]
        .as_array()
        .context("referrers index has no manifests")?
        .clone())
}

/// `sha256:<hex>` of `data` (re-exported for tests that build envelopes by hand).
pub fn digest_of(data: &[u8]) -> String {
    sha256_digest(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrers_tag_replaces_the_colon() {
        assert_eq!(referrers_tag("sha256:abcd"), "sha256-abcd");
    }
}
