//! Tiny unique test images and their push to any registry over plain HTTP.
//!
//! Each image is an OCI image manifest with one gzip tar layer holding a small
//! random file, and a config (`application/vnd.oci.image.config.v1+json`)
//! whose `rootfs.diff_ids` names that layer, for linux on the host's
//! architecture, so containerd pulls and unpacks it like any image.

use anyhow::{Context, Result};
use flate2::{write::GzEncoder, Compression};
use rand::RngCore as _;
use serde_json::json;

use crate::distribution::{sha256_digest, Registry};

/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What a signature signs and a manifest points at: media type, digest,
/// size (the test PKI's, which signs it).
pub use pullgate_testkit::Descriptor;

/// An image built in memory, not yet pushed.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Config blob.
    pub config: Vec<u8>,
    /// The one layer (gzip tar).
    pub layer: Vec<u8>,
    /// The manifest, as it will be stored.
    pub manifest: Vec<u8>,
}

impl BuiltImage {
    /// The manifest's descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::of(OCI_MANIFEST, &self.manifest)
    }
}

/// An image pushed to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// Manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// Manifest size in bytes.
    pub size: u64,
    /// Manifest media type.
    pub media_type: String,
    /// Manifest bytes, as pushed.
    pub manifest: Vec<u8>,
}

impl PushedImage {
    /// The manifest's descriptor (what a signature's payload names).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }

    /// `host/repo@digest`.
    pub fn pinned_ref(&self, host: &str, repo: &str) -> String {
        format!("{host}/{repo}@{}", self.digest)
    }
}

/// GOARCH of this machine, for the image config.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Builds a unique tiny image: one layer holding `pullgate-test/<random>.txt`
/// with random content, so two calls never give the same digest.
///
/// # Errors
/// Only if tar or gzip encoding into memory fails.
pub fn build_random_image() -> Result<BuiltImage> {
    let mut rng = rand::thread_rng();
    let mut content = [0u8; 64];
    rng.fill_bytes(&mut content);
    let name = format!("pullgate-test/{}.txt", hex::encode(&content[..8]));
    let text = format!("{}\n", hex::encode(content));

    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, &name, text.as_bytes())
        .context("writing layer tar")?;
    let tar = tar.into_inner().context("finishing layer tar")?;
    let diff_id = sha256_digest(&tar);

    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).context("gzip layer")?;
    let layer = gz.finish().context("gzip layer")?;

    let config = serde_json::to_vec(&json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [ { "created_by": "pullgate-tests", "comment": name } ],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": [ Descriptor::of(OCI_LAYER_GZIP, &layer).to_json() ],
    }))?;
    Ok(BuiltImage {
        config,
        layer,
        manifest,
    })
}

/// An image of several layers built in memory, not yet pushed.
#[derive(Debug, Clone)]
pub struct LayeredImage {
    /// Config blob.
    pub config: Vec<u8>,
    /// The layers (gzip tar), in manifest order.
    pub layers: Vec<Vec<u8>>,
    /// The manifest, as it will be stored.
    pub manifest: Vec<u8>,
}

impl LayeredImage {
    /// `sha256:<hex>` of each layer, in manifest order.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| sha256_digest(l)).collect()
    }

    /// `sha256:<hex>` of the config.
    pub fn config_digest(&self) -> String {
        sha256_digest(&self.config)
    }
}

/// Builds a unique image with one layer per entry of `file_bytes`, each a
/// gzip tar (stored, not compressed) of one file of that many random bytes,
/// so the layers are about that size and do not compress.
///
/// # Errors
/// Only if tar or gzip encoding into memory fails.
pub fn build_layered_image(file_bytes: &[usize]) -> Result<LayeredImage> {
    let mut rng = rand::thread_rng();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, &n) in file_bytes.iter().enumerate() {
        let mut content = vec![0u8; n];
        rng.fill_bytes(&mut content);
        let name = format!(
            "pullgate-test/layer-{i}-{}.bin",
            hex::encode(&content[..n.min(8)])
        );
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(n as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &name, content.as_slice())
            .context("writing layer tar")?;
        let tar = tar.into_inner().context("finishing layer tar")?;
        diff_ids.push(sha256_digest(&tar));
        let mut gz = GzEncoder::new(Vec::new(), Compression::none());
        std::io::Write::write_all(&mut gz, &tar).context("gzip layer")?;
        layers.push(gz.finish().context("gzip layer")?);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    let layer_descriptors: Vec<_> = layers
        .iter()
        .map(|l| Descriptor::of(OCI_LAYER_GZIP, l).to_json())
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": layer_descriptors,
    }))?;
    Ok(LayeredImage {
        config,
        layers,
        manifest,
    })
}

/// Pushes `image` as `host/repo:tag` (blobs, then the manifest).
///
/// # Errors
/// The registry refuses a blob or the manifest.
pub async fn push_layered_image(
    host: &str,
    repo: &str,
    tag: &str,
    image: &LayeredImage,
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    registry.push_blob(repo, &image.config).await?;
    for layer in &image.layers {
        registry.push_blob(repo, layer).await?;
    }
    let digest = registry
        .put_manifest(repo, tag, OCI_MANIFEST, &image.manifest)
        .await?
        .digest;
    Ok(PushedImage {
        digest,
        size: image.manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest: image.manifest.clone(),
    })
}

/// The annotation containerd (checkpointctl) marks a checkpoint image's manifest with.
pub const CHECKPOINT_ANNOTATION: &str = "org.criu.checkpoint.container.name";

/// Builds a checkpoint image as containerd 2.x reads one for a restore: a
/// manifest annotated [`CHECKPOINT_ANNOTATION`], one gzip tar layer holding
/// `spec.dump`, `filler` bytes of memory pages (`checkpoint/pages-1.img`),
/// then `config.dump` holding `config_dump`, then `status.dump`.
///
/// # Errors
/// Only if tar or gzip encoding into memory fails.
pub fn build_checkpoint_image(config_dump: &[u8], filler: usize) -> Result<BuiltImage> {
    let pages = vec![0u8; filler];
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("spec.dump", &b"{}"[..]),
        ("checkpoint/pages-1.img", &pages),
        ("config.dump", config_dump),
        ("status.dump", &b"{}"[..]),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data)
            .context("writing layer tar")?;
    }
    let tar = tar.into_inner().context("finishing layer tar")?;
    let diff_id = sha256_digest(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).context("gzip layer")?;
    let layer = gz.finish().context("gzip layer")?;
    let config = serde_json::to_vec(&json!({
        "architecture": go_arch(),
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [ { "created_by": "pullgate-tests checkpoint", "comment": sha256_digest(config_dump) } ],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": [ Descriptor::of(OCI_LAYER_GZIP, &layer).to_json() ],
        "annotations": { CHECKPOINT_ANNOTATION: "web" },
    }))?;
    Ok(BuiltImage {
        config,
        layer,
        manifest,
    })
}

/// A `config.dump` as containerd writes it when checkpointing a container
/// of `base` (`host/repository@digest`), tagged `base_name`.
pub fn config_dump(base: &str, base_name: &str) -> Vec<u8> {
    json!({
        "id": "0123456789abcdef",
        "name": "web",
        "rootfsImage": base_name,
        "rootfsImageRef": base,
        "rootfsImageName": base_name,
        "runtime": "io.containerd.runc.v2",
        "createdTime": "2026-01-01T00:00:00Z",
        "checkpointedTime": "2026-01-01T00:01:00Z",
        "restoredTime": "0001-01-01T00:00:00Z",
        "restored": false,
    })
    .to_string()
    .into_bytes()
}

/// Pushes `image`'s blobs to `host/repo`, then its manifest under `tag`.
///
/// # Errors
/// The registry refuses a blob or the manifest.
pub async fn push_image(
    host: &str,
    repo: &str,
    tag: &str,
    image: &BuiltImage,
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    registry.push_blob(repo, &image.config).await?;
    registry.push_blob(repo, &image.layer).await?;
    let digest = registry
        .put_manifest(repo, tag, OCI_MANIFEST, &image.manifest)
        .await?
        .digest;
    Ok(PushedImage {
        digest,
        size: image.manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest: image.manifest.clone(),
    })
}

/// Builds a unique tiny image and pushes it as `host/repo:tag`.
///
/// # Errors
/// As [`build_random_image`] and [`push_image`].
pub async fn push_random_image(host: &str, repo: &str, tag: &str) -> Result<PushedImage> {
    let image = build_random_image()?;
    push_image(host, repo, tag, &image).await
}

/// Points `host/repo:tag` at `image` by re-putting its manifest under `tag`
/// (moves the tag if it named another image).
///
/// # Errors
/// The registry refuses the manifest (for example, its blobs are not in `repo`).
pub async fn tag_manifest(host: &str, repo: &str, tag: &str, image: &PushedImage) -> Result<()> {
    Registry::new(host)
        .put_manifest(repo, tag, &image.media_type, &image.manifest)
        .await?;
    Ok(())
}

/// An image index pushed with the one image it lists.
#[derive(Debug, Clone)]
pub struct PushedIndex {
    /// The index (`application/vnd.oci.image.index.v1+json`).
    pub index: PushedImage,
    /// The image it lists, for linux on this machine's architecture.
    pub child: PushedImage,
}

/// Builds a unique tiny image, pushes it by digest, and pushes an image
/// index listing it (platform `linux/<this arch>`) as `host/repo:tag`.
///
/// # Errors
/// The registry refuses a blob or a manifest.
pub async fn push_random_index(host: &str, repo: &str, tag: &str) -> Result<PushedIndex> {
    let image = build_random_image()?;
    let digest = image.descriptor().digest;
    let child = push_image(host, repo, &digest, &image).await?;
    let mut entry = child.descriptor().to_json();
    entry["platform"] = json!({ "architecture": go_arch(), "os": "linux" });
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry],
    }))?;
    let put = Registry::new(host)
        .put_manifest(repo, tag, OCI_INDEX, &index)
        .await?;
    Ok(PushedIndex {
        index: PushedImage {
            digest: put.digest,
            size: index.len() as u64,
            media_type: OCI_INDEX.to_owned(),
            manifest: index,
        },
        child,
    })
}

/// Media type of the OCI empty descriptor's blob (`{}`), the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Builds a unique OCI artifact, as image volumes (KEP-4639) carry data:
/// `artifactType` set, the empty config, one random gzip tar layer; pushes
/// it as `host/repo:tag`.
///
/// # Errors
/// As [`build_random_image`], or the registry refuses a blob or the manifest.
pub async fn push_random_artifact(
    host: &str,
    repo: &str,
    tag: &str,
    artifact_type: &str,
) -> Result<PushedImage> {
    let image = build_random_image()?;
    let config = b"{}".to_vec();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": Descriptor::of(OCI_EMPTY, &config).to_json(),
        "layers": [ Descriptor::of(OCI_LAYER_GZIP, &image.layer).to_json() ],
    }))?;
    let registry = Registry::new(host);
    registry.push_blob(repo, &config).await?;
    registry.push_blob(repo, &image.layer).await?;
    let digest = registry
        .put_manifest(repo, tag, OCI_MANIFEST, &manifest)
        .await?
        .digest;
    Ok(PushedImage {
        digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
    })
}
