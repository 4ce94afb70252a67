//! What a direct pull of one image would fetch: the root manifest or
//! index, and for an index the one manifest of the node's platform
//! (`linux/<arch>`), then that manifest's config and layers.
//!
//! Input: a manifest or index's bytes (already capped and digest-checked)
//! and the media type the registry gave. Output: [`Root`]. Anything this
//! does not recognise yields fewer blobs, never more: an index with no or
//! several entries for the platform, a layer of a type containerd would not
//! fetch (foreign, non-distributable) or an unknown config type.

use pullgate_policy::Digest;
use serde::Deserialize;

/// OCI image manifest.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Config media types containerd fetches (`images.IsKnownConfig`).
const CONFIGS: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Layer media types containerd fetches from the registry (`images.IsLayerType`, less foreign layers).
const DOCKER_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
];

/// One blob to bring in: what containerd's content store calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

impl Blob {
    /// The ingest ref containerd's own fetch uses for this blob
    /// (`remotes.MakeRefKey`), so a pull that meets a prefetch still writing
    /// it waits for that write instead of fetching the blob again.
    pub(crate) fn ref_key(&self) -> String {
        let mt = self.media_type.as_str();
        let prefix = if is_manifest(mt) {
            "manifest"
        } else if is_index(mt) {
            "index"
        } else if is_layer(mt) {
            "layer"
        } else if CONFIGS.contains(&mt) {
            "config"
        } else {
            "unknown"
        };
        format!("{prefix}-{}", self.digest)
    }
}

/// A root document, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Root {
    /// An image manifest: its config, then its layers.
    Manifest(Vec<Blob>),
    /// An index: the node platform's manifest, if exactly one entry is for it.
    Index(Option<Blob>),
}

/// Why a document was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlatformError {
    /// Not JSON of a manifest's or index's shape.
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// A media type that is neither.
    #[error("not an image manifest or index: {0:?}")]
    NotAnImage(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPlatform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

fn is_manifest(mt: &str) -> bool {
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
}

fn is_layer(mt: &str) -> bool {
    let oci =
        mt.starts_with("application/vnd.oci.image.layer.") && !mt.contains("nondistributable");
    oci || DOCKER_LAYERS.contains(&mt)
}

fn blob(raw: RawDescriptor) -> Result<Blob, PlatformError> {
    let digest = raw
        .digest
        .parse::<Digest>()
        .map_err(|_| PlatformError::Malformed(format!("bad digest {:?}", raw.digest)))?;
    Ok(Blob {
        media_type: raw.media_type,
        digest,
        size: raw.size,
    })
}

/// The node's architecture as OCI platforms name it (Go's `GOARCH`).
pub(crate) fn node_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Reads the root document `bytes`, whose media type the registry said is
/// `media_type` (the document's own `mediaType` wins), for a node of `arch`.
///
/// # Errors
/// [`PlatformError`] for a document that is neither a manifest nor an index.
pub(crate) fn read_root(bytes: &[u8], media_type: &str, arch: &str) -> Result<Root, PlatformError> {
    let doc: RawDocument =
        serde_json::from_slice(bytes).map_err(|e| PlatformError::Malformed(e.to_string()))?;
    let mt = doc
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| media_type.to_owned());
    let is_index_doc = is_index(&mt) || (mt.is_empty() && doc.manifests.is_some());
    let is_manifest_doc = is_manifest(&mt) || (mt.is_empty() && doc.config.is_some());
    if is_index_doc {
        let mut matching = Vec::new();
        for entry in doc.manifests.unwrap_or_default() {
            let for_node = entry.platform.as_ref().is_some_and(|p| {
                p.os == "linux"
                    && p.architecture == arch
                    && variant_matches(arch, p.variant.as_deref())
            });
            if for_node && is_manifest(&entry.media_type) {
                matching.push(blob(entry)?);
            }
        }
        // Several entries for one platform (variants): containerd's choice
        // among them depends on its version; fetch none ahead.
        let chosen = (matching.len() == 1).then(|| matching.remove(0));
        return Ok(Root::Index(chosen));
    }
    if is_manifest_doc {
        let mut blobs = Vec::new();
        if let Some(config) = doc.config {
            if CONFIGS.contains(&config.media_type.as_str()) {
                blobs.push(blob(config)?);
            }
        }
        for layer in doc.layers.unwrap_or_default() {
            if is_layer(&layer.media_type) {
                blobs.push(blob(layer)?);
            }
        }
        return Ok(Root::Manifest(blobs));
    }
    Err(PlatformError::NotAnImage(mt.chars().take(120).collect()))
}

/// An index entry's variant for `arch`: none, or the only one a node of
/// that architecture runs without asking (arm64's `v8`).
fn variant_matches(arch: &str, variant: Option<&str>) -> bool {
    match variant {
        None | Some("") => true,
        Some("v8") => arch == "arm64",
        Some(_) => false,
    }
}

/// The media type of a root document: its own `mediaType`, else `given`
/// (the registry's `Content-Type`).
pub(crate) fn media_type_of(bytes: &[u8], given: &str) -> String {
    serde_json::from_slice::<RawDocument>(bytes)
        .ok()
        .and_then(|d| d.media_type)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| given.to_owned())
}

/// A blob of the root document itself.
pub(crate) fn root_blob(digest: &Digest, media_type: &str, size: u64) -> Blob {
    Blob {
        media_type: media_type.to_owned(),
        digest: digest.clone(),
        size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn index(entries: &[(&str, &str, Option<&str>, char)]) -> Vec<u8> {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(os, arch, variant, c)| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d(*c), "size": 10, "platform": platform})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).unwrap()
    }

    #[test]
    fn an_index_yields_the_one_manifest_of_the_node_platform() {
        let bytes = index(&[
            ("linux", "arm64", Some("v8"), 'a'),
            ("linux", "amd64", None, 'b'),
            ("windows", "amd64", None, 'c'),
            ("unknown", "unknown", None, 'e'),
        ]);
        let Root::Index(Some(chosen)) = read_root(&bytes, "", "amd64").unwrap() else {
            panic!("no manifest chosen");
        };
        assert_eq!(chosen.digest.to_string(), d('b'));
        let Root::Index(Some(chosen)) = read_root(&bytes, "", "arm64").unwrap() else {
            panic!("no manifest chosen");
        };
        assert_eq!(chosen.digest.to_string(), d('a'));
        assert_eq!(read_root(&bytes, "", "s390x").unwrap(), Root::Index(None));
    }

    #[test]
    fn an_index_with_several_entries_for_the_platform_yields_none() {
        let bytes = index(&[
            ("linux", "amd64", None, 'a'),
            ("linux", "amd64", Some("v3"), 'b'),
        ]);
        // v3 does not match a plain amd64 node, so one entry is left.
        let Root::Index(Some(chosen)) = read_root(&bytes, "", "amd64").unwrap() else {
            panic!("no manifest chosen");
        };
        assert_eq!(chosen.digest.to_string(), d('a'));
        let twice = index(&[("linux", "amd64", None, 'a'), ("linux", "amd64", None, 'b')]);
        assert_eq!(read_root(&twice, "", "amd64").unwrap(), Root::Index(None));
    }

    #[test]
    fn a_manifest_yields_config_then_fetchable_layers() {
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d('c'), "size": 3},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d('1'), "size": 5},
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": d('2'), "size": 5},
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": d('3'), "size": 5},
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d('4'), "size": 7},
            ]
        }))
        .unwrap();
        // Media type from the registry's Content-Type when the document has none.
        let Root::Manifest(blobs) = read_root(&bytes, OCI_MANIFEST, "amd64").unwrap() else {
            panic!("not read as a manifest");
        };
        let digests: Vec<String> = blobs.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(digests, [d('c'), d('1'), d('4')]);
        assert_eq!(blobs[0].ref_key(), format!("config-{}", d('c')));
        assert_eq!(blobs[1].ref_key(), format!("layer-{}", d('1')));
    }

    #[test]
    fn other_documents_are_refused() {
        let sig = serde_json::to_vec(&serde_json::json!({
            "mediaType": "application/vnd.oci.artifact.manifest.v1+json", "blobs": []
        }))
        .unwrap();
        assert!(matches!(
            read_root(&sig, "", "amd64"),
            Err(PlatformError::NotAnImage(_))
        ));
        assert!(matches!(
            read_root(b"{", OCI_MANIFEST, "amd64"),
            Err(PlatformError::Malformed(_))
        ));
        assert!(matches!(
            read_root(b"\"x\"", OCI_MANIFEST, "amd64"),
            Err(PlatformError::Malformed(_))
        ));
    }

    #[test]
    fn node_arch_is_an_oci_name() {
        assert!(!node_arch().contains('_'));
    }
}
