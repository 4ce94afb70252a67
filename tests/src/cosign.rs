//! cosign signatures next to their image, in the two ways cosign attaches
//! them (what is signed, and how, is `pullgate_testkit::cosign`'s):
//!
//! - key-pair signatures as cosign 2.x writes them without the new bundle
//!   format: a manifest at tag `sha256-<hex>.sig` whose layers are
//!   simple-signing payloads, each carrying its base64 signature in the
//!   annotation `dev.cosignproject.cosign/signature` (sigstore/cosign
//!   `specs/SIGNATURE_SPEC.md`);
//! - Sigstore bundles v0.3 as `cosign sign --key --new-bundle-format`
//!   writes them, attached as an OCI referrer (sigstore/cosign
//!   `specs/BUNDLE_SPEC.md`);
//! - attestations as `cosign attest --key --new-bundle-format` writes
//!   them: the same bundle over an in-toto statement of another predicate
//!   type, attached as a referrer annotated with its predicate type
//!   ([`attach_attestation`]); and as cosign v2 wrote them, DSSE envelopes
//!   as the layers of the `sha256-<hex>.att` manifest ([`push_att_manifest`]).

use anyhow::Result;
use pullgate_testkit::cosign::signature_tag;
use pullgate_testkit::cosign::{
    dsse_entry_body, dsse_envelope, CosignKey, SigLayer, TestLog, BUNDLE_V03, DSSE_ENVELOPE,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING,
};
use serde_json::json;

use crate::distribution::{sha256_digest, Registry};
use crate::image::{Descriptor, PushedImage, OCI_CONFIG, OCI_MANIFEST};
use crate::signer::{add_to_referrers_index, ReferrersMode, OCI_EMPTY};

/// Signs `subject` in `host/repo` with `key` and pushes the signature as
/// `repo:sha256-<hex>.sig` (replacing any signature manifest there).
///
/// # Errors
/// A push is refused.
pub async fn attach_cosign_signature(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    key: &CosignKey,
) -> Result<PushedImage> {
    let layer = key.sign_image(&format!("{host}/{repo}"), &subject.digest);
    push_sig_manifest(host, repo, &subject.digest, &[layer]).await
}

/// Pushes `layers` as the `.sig` manifest of `subject_digest` in
/// `host/repo` (one signature per layer, in order), replacing any there.
///
/// # Errors
/// A push is refused.
pub async fn push_sig_manifest(
    host: &str,
    repo: &str,
    subject_digest: &str,
    layers: &[SigLayer],
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    let mut descriptors = Vec::with_capacity(layers.len());
    let mut diff_ids = Vec::with_capacity(layers.len());
    let mut pushed = std::collections::HashSet::new();
    for l in layers {
        // A payload repeated across layers is one blob.
        if pushed.insert(sha256_digest(&l.payload)) {
            registry.push_blob(repo, &l.payload).await?;
        }
        let mut d = Descriptor::of(SIMPLE_SIGNING, &l.payload).to_json();
        d["annotations"] = json!({ SIGNATURE_ANNOTATION: l.signature });
        descriptors.push(d);
        diff_ids.push(sha256_digest(&l.payload));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    registry.push_blob(repo, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": descriptors,
    }))?;
    let put = registry
        .put_manifest(
            repo,
            &signature_tag(subject_digest),
            OCI_MANIFEST,
            &manifest,
        )
        .await?;
    Ok(PushedImage {
        digest: put.digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
    })
}

/// The annotation cosign puts on an attestation referrer manifest.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// Pushes `statements` (each with its predicate type), signed with `key`
/// into DSSE envelopes, as the `sha256-<hex>.att` manifest of
/// `subject_digest` in `host/repo`, as cosign v2 `attest --key` writes it:
/// one layer per envelope, annotated with its `predicateType`, an empty
/// `dev.cosignproject.cosign/signature` and, when `log` is given, the SET of
/// its `dsse` entry in `dev.sigstore.cosign/bundle` (without one, as
/// `--tlog-upload=false` writes it).
///
/// # Errors
/// A push is refused.
pub async fn push_att_manifest(
    host: &str,
    repo: &str,
    subject_digest: &str,
    key: &CosignKey,
    log: Option<&TestLog>,
    statements: &[(&[u8], &str)],
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    let mut layers = Vec::with_capacity(statements.len());
    let mut diff_ids = Vec::with_capacity(statements.len());
    for (statement, predicate_type) in statements {
        let (envelope, sig) = dsse_envelope(key, statement);
        let blob = serde_json::to_vec(&envelope)?;
        registry.push_blob(repo, &blob).await?;
        let mut d = Descriptor::of(DSSE_ENVELOPE, &blob).to_json();
        d["annotations"] = json!({ "predicateType": predicate_type, SIGNATURE_ANNOTATION: "" });
        if let Some(log) = log {
            let body = dsse_entry_body(key, statement, &envelope, &sig)?;
            d["annotations"]["dev.sigstore.cosign/bundle"] = json!(log.set_annotation(&body));
        }
        layers.push(d);
        diff_ids.push(sha256_digest(&blob));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    registry.push_blob(repo, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": layers,
    }))?;
    let tag = format!("{}.att", subject_digest.replacen(':', "-", 1));
    let put = registry
        .put_manifest(repo, &tag, OCI_MANIFEST, &manifest)
        .await?;
    Ok(PushedImage {
        digest: put.digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
    })
}

/// How a bundle referrer is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleListing {
    /// The registry's referrers API.
    Api,
    /// The referrers tag schema, its entry with the `artifactType`.
    TagSchema,
    /// The referrers tag schema, its entry without an `artifactType` (as
    /// some clients write it): the reader must fetch the manifest to see
    /// what it is.
    TagSchemaUntyped,
}

/// Attaches `bundle` to `subject` in `host/repo` as cosign does: the bundle
/// blob, the empty config, a manifest of artifact type [`BUNDLE_V03`] with
/// the bundle as its one layer and `subject`, listed per `listing`.
///
/// # Errors
/// A push is refused, or the registry does not list it as asked.
pub async fn attach_bundle(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    bundle: &[u8],
    listing: BundleListing,
) -> Result<PushedImage> {
    attach_bundle_of(host, repo, subject, bundle, listing, None).await
}

/// Attaches an attestation `bundle` of `predicate_type` to `subject` as
/// `cosign attest --new-bundle-format` does: as [`attach_bundle`] through
/// the referrers API, the manifest annotated with the predicate type.
///
/// # Errors
/// A push is refused, or the registry does not list it.
pub async fn attach_attestation(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    bundle: &[u8],
    predicate_type: &str,
) -> Result<PushedImage> {
    attach_bundle_of(
        host,
        repo,
        subject,
        bundle,
        BundleListing::Api,
        Some(predicate_type),
    )
    .await
}

async fn attach_bundle_of(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    bundle: &[u8],
    listing: BundleListing,
    predicate_type: Option<&str>,
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    registry.push_blob(repo, bundle).await?;
    let empty = b"{}";
    registry.push_blob(repo, empty).await?;
    let layer = Descriptor::of(BUNDLE_V03, bundle);
    let mut layer_json = layer.to_json();
    layer_json["annotations"] = json!({
        "org.opencontainers.image.title": format!("{}.sigstore.json", layer.digest.replacen(':', "-", 1)),
    });
    let mut annotations = json!({ "dev.sigstore.bundle.content": "dsse-envelope" });
    if let Some(t) = predicate_type {
        annotations[PREDICATE_TYPE_ANNOTATION] = json!(t);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": Descriptor::of(OCI_EMPTY, empty).to_json(),
        "layers": [layer_json],
        "subject": subject.descriptor().to_json(),
        "annotations": annotations,
    }))?;
    let desc = Descriptor::of(OCI_MANIFEST, &manifest);
    let put = registry
        .put_manifest(repo, &desc.digest, OCI_MANIFEST, &manifest)
        .await?;
    let mode = match listing {
        BundleListing::Api => ReferrersMode::Api,
        BundleListing::TagSchema | BundleListing::TagSchemaUntyped => ReferrersMode::TagSchema,
    };
    if mode == ReferrersMode::Api && put.oci_subject.as_deref() != Some(subject.digest.as_str()) {
        anyhow::bail!(
            "registry {host} did not acknowledge the subject of {repo}@{}",
            desc.digest
        );
    }
    if mode == ReferrersMode::TagSchema {
        let mut entry = desc.to_json();
        if listing == BundleListing::TagSchema {
            entry["artifactType"] = json!(BUNDLE_V03);
        }
        add_to_referrers_index(&registry, repo, &subject.digest, &entry).await?;
    }
    Ok(PushedImage {
        digest: put.digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
    })
}
