//! The layout of a policy bundle: what its manifest may hold, checked
//! before anything of it is fetched or written.
//!
//! A bundle is an OCI image manifest (what `oras push --artifact-type
//! application/vnd.pullgate.policy.bundle.v1` makes) whose layers are
//! single files, each named by its `org.opencontainers.image.title`
//! annotation (a relative path, as `oras push` records it):
//!
//! - `trustpolicy.json` or `trustpolicy.oci.json` (exactly one);
//! - `requirements.toml` (optional);
//! - `truststore/x509/{ca,signingAuthority,tsa}/<name>/<file>` (any number).
//!
//! Nothing else: an unknown path, a directory pushed as one tar layer
//! (oras's `io.deis.oras.content.unpack`), a path with `..`, a hidden or
//! odd name, a duplicate, more than `MAX_FILES` files, a file over
//! `MAX_FILE_BYTES` or a bundle over `MAX_BUNDLE_BYTES` is refused with
//! a typed `BundleError`. The manifest itself is capped by the registry
//! client (`[registry.limits] manifest_bytes`) or by the store's read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pullgate_policy::config::TrustConfig;
use pullgate_policy::Digest;
use serde::Deserialize;

/// The `artifactType` of a policy bundle.
pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.pullgate.policy.bundle.v1";

/// The OCI image manifest media type (image-spec `manifest.md`).
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// image-spec `annotations.md`: "`org.opencontainers.image.title` human-readable title of the image";
/// oras records each pushed file's path there.
pub(crate) const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// oras marks a directory pushed as one tar layer with this annotation.
pub(crate) const ORAS_UNPACK_ANNOTATION: &str = "io.deis.oras.content.unpack";

/// The requirements file's path in a bundle.
pub(crate) const REQUIREMENTS: &str = "requirements.toml";

/// The trust store's directory in a bundle.
pub(crate) const TRUST_STORE: &str = "truststore";

/// Most files in a bundle.
pub(crate) const MAX_FILES: usize = 256;

/// Largest file in a bundle (a trust policy, a requirements file, a certificate).
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// Largest bundle, all files together.
pub(crate) const MAX_BUNDLE_BYTES: u64 = 8 << 20;

/// Longest path component.
const MAX_COMPONENT: usize = 128;

/// The trust store types notation lays out under `x509/`.
const STORE_TYPES: [&str; 3] = ["ca", "signingAuthority", "tsa"];

/// Why a manifest is not a policy bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON of a manifest's shape.
    #[error("the bundle manifest is not an OCI manifest: {0}")]
    Json(String),
    /// Another media type than the OCI image manifest.
    #[error("the bundle manifest has media type {0:?}, not {OCI_MANIFEST}")]
    MediaType(String),
    /// Another artifact type than `ARTIFACT_TYPE`.
    #[error("the bundle's artifactType is {0:?}, not {ARTIFACT_TYPE}")]
    ArtifactType(Option<String>),
    /// A layer without a file name.
    #[error("layer {0} has no {TITLE_ANNOTATION} annotation")]
    Untitled(Digest),
    /// A directory pushed as one tar layer.
    #[error("{0:?} is a directory pushed as one layer: push its files one by one")]
    Directory(String),
    /// A path the layout does not allow.
    #[error("{path:?} is not a bundle path: {problem}")]
    Path {
        /// The title, as written (truncated).
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two layers with the same path.
    #[error("{0:?} appears twice")]
    Duplicate(String),
    /// More than `MAX_FILES` layers.
    #[error("{0} files: at most {MAX_FILES}")]
    TooManyFiles(usize),
    /// A layer over `MAX_FILE_BYTES`.
    #[error("{path:?} is {size} bytes: at most {MAX_FILE_BYTES}")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its declared size.
        size: u64,
    },
    /// All layers together over `MAX_BUNDLE_BYTES`.
    #[error("the bundle is {0} bytes: at most {MAX_BUNDLE_BYTES}")]
    TooLarge(u64),
    /// Neither `trustpolicy.json` nor `trustpolicy.oci.json`, or both.
    #[error("a bundle holds exactly one of trustpolicy.json and trustpolicy.oci.json (found {0})")]
    TrustPolicyCount(usize),
}

/// One file of a bundle: where it goes and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BundleFile {
    /// Relative path, checked: only the components the layout allows.
    pub(crate) path: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

/// The files of a bundle, in manifest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) files: Vec<BundleFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    layers: Vec<RawLayer>,
}

#[derive(Deserialize)]
struct RawLayer {
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl Layout {
    /// Checks that `manifest` is a policy bundle and lists its files.
    ///
    /// # Errors
    /// `BundleError` naming the first thing wrong.
    pub(crate) fn parse(manifest: &[u8]) -> Result<Self, BundleError> {
        let raw: RawManifest =
            serde_json::from_slice(manifest).map_err(|e| BundleError::Json(e.to_string()))?;
        let media_type = raw.media_type.unwrap_or_default();
        if media_type != OCI_MANIFEST {
            return Err(BundleError::MediaType(
                media_type.chars().take(100).collect(),
            ));
        }
        if raw.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
            return Err(BundleError::ArtifactType(
                raw.artifact_type.map(|t| t.chars().take(100).collect()),
            ));
        }
        if raw.layers.len() > MAX_FILES {
            return Err(BundleError::TooManyFiles(raw.layers.len()));
        }
        let mut seen = BTreeSet::new();
        let mut total: u64 = 0;
        let mut files = Vec::with_capacity(raw.layers.len());
        for layer in raw.layers {
            let digest: Digest = layer.digest.parse().map_err(|_| {
                BundleError::Json(format!(
                    "bad layer digest {:?}",
                    layer.digest.chars().take(80).collect::<String>()
                ))
            })?;
            let Some(title) = layer.annotations.get(TITLE_ANNOTATION) else {
                return Err(BundleError::Untitled(digest));
            };
            let path = truncate(title);
            if layer
                .annotations
                .get(ORAS_UNPACK_ANNOTATION)
                .is_some_and(|v| v == "true")
            {
                return Err(BundleError::Directory(path));
            }
            check_path(title)?;
            if !seen.insert(title.clone()) {
                return Err(BundleError::Duplicate(path));
            }
            if layer.size > MAX_FILE_BYTES {
                return Err(BundleError::FileTooLarge {
                    path,
                    size: layer.size,
                });
            }
            total = total.saturating_add(layer.size);
            if total > MAX_BUNDLE_BYTES {
                return Err(BundleError::TooLarge(total));
            }
            files.push(BundleFile {
                path: title.clone(),
                digest,
                size: layer.size,
            });
        }
        let policies = files.iter().filter(|f| is_trust_policy(&f.path)).count();
        if policies != 1 {
            return Err(BundleError::TrustPolicyCount(policies));
        }
        Ok(Self { files })
    }

    /// The trust files of this bundle laid out under `dir`, as `[trust]`
    /// would name them: the directory itself as the policy (notation's
    /// choice of file within it), `dir/truststore`, and
    /// `dir/requirements.toml` when the bundle has one.
    pub(crate) fn trust(&self, dir: &Path) -> TrustConfig {
        let requirements = self
            .files
            .iter()
            .any(|f| f.path == REQUIREMENTS)
            .then(|| dir.join(REQUIREMENTS));
        TrustConfig {
            policy: dir.to_path_buf(),
            store: dir.join(TRUST_STORE),
            requirements,
            ..TrustConfig::default()
        }
    }

    /// `dir` joined with `file`'s path (checked at parse: relative, no `..`).
    pub(crate) fn path_in(dir: &Path, file: &BundleFile) -> PathBuf {
        file.path
            .split('/')
            .fold(dir.to_path_buf(), |p, c| p.join(c))
    }
}

fn is_trust_policy(path: &str) -> bool {
    path == pullgate_policy::trust_policy::TRUST_POLICY
        || path == pullgate_policy::trust_policy::OCI_TRUST_POLICY
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Whether `path` is one the layout allows (see the module docs).
fn check_path(path: &str) -> Result<(), BundleError> {
    let bad = |problem| BundleError::Path {
        path: truncate(path),
        problem,
    };
    let parts: Vec<&str> = path.split('/').collect();
    for c in &parts {
        if c.is_empty() || c.len() > MAX_COMPONENT {
            return Err(bad("an empty or over-long component"));
        }
        if c.starts_with('.') {
            return Err(bad("a component starts with '.'"));
        }
        if !c
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad(
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            ));
        }
    }
    match parts.as_slice() {
        [one] if is_trust_policy(one) || *one == REQUIREMENTS => Ok(()),
        [TRUST_STORE, "x509", kind, _name, _file] if STORE_TYPES.contains(kind) => Ok(()),
        [TRUST_STORE, ..] => Err(bad(
            "trust store files are truststore/x509/{ca,signingAuthority,tsa}/<name>/<file>",
        )),
        _ => Err(bad(
            "a bundle holds trustpolicy.json or trustpolicy.oci.json, requirements.toml and truststore/",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn layer(title: &str, size: u64) -> serde_json::Value {
        json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "size": size,
            "annotations": { TITLE_ANNOTATION: title },
        })
    }

    fn manifest(layers: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2
            },
            "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn an_oras_pushed_bundle_lists_its_files_and_trust_paths() {
        let m = manifest(vec![
            layer("trustpolicy.json", 300),
            layer("requirements.toml", 100),
            layer("truststore/x509/ca/acme/root.crt", 600),
            layer("truststore/x509/tsa/ts/tsa.pem", 600),
        ]);
        let layout = Layout::parse(&m).unwrap();
        assert_eq!(layout.files.len(), 4);
        let trust = layout.trust(Path::new("/s/b"));
        assert_eq!(trust.policy, Path::new("/s/b"));
        assert_eq!(trust.store, Path::new("/s/b/truststore"));
        assert_eq!(
            trust.requirements.as_deref(),
            Some(Path::new("/s/b/requirements.toml"))
        );
        assert_eq!(
            Layout::path_in(Path::new("/s/b"), &layout.files[2]),
            Path::new("/s/b/truststore/x509/ca/acme/root.crt")
        );
        let only_policy = Layout::parse(&manifest(vec![layer("trustpolicy.oci.json", 3)])).unwrap();
        assert_eq!(only_policy.trust(Path::new("/d")).requirements, None);
    }

    #[test]
    fn paths_outside_the_layout_are_refused() {
        for title in [
            "../trustpolicy.json",
            "/trustpolicy.json",
            "truststore/x509/ca/../../../etc/passwd",
            "truststore/x509/ca/acme/.hidden",
            "truststore/x509/root/acme/a.crt",
            "truststore/x509/ca/acme/sub/a.crt",
            "truststore/x509/ca/acme",
            "config.toml",
            "trustpolicy.json/x",
            "requirements.toml ",
            "truststore//x509/ca/a/b",
        ] {
            let m = manifest(vec![layer("trustpolicy.json", 1), layer(title, 1)]);
            assert!(
                matches!(Layout::parse(&m), Err(BundleError::Path { .. })),
                "{title}: {:?}",
                Layout::parse(&m)
            );
        }
    }

    /// A manifest, and what its refusal must be.
    type Case = (Vec<u8>, fn(&BundleError) -> bool);

    #[test]
    fn a_bundle_that_is_not_one_is_refused_by_kind() {
        let mut untitled = layer("x", 1);
        untitled["annotations"] = json!({});
        let mut dir = layer("truststore", 1);
        dir["annotations"][ORAS_UNPACK_ANNOTATION] = json!("true");
        let cases: Vec<Case> = vec![
            (b"not json".to_vec(), |e| matches!(e, BundleError::Json(_))),
            (manifest(vec![untitled]), |e| {
                matches!(e, BundleError::Untitled(_))
            }),
            (manifest(vec![layer("trustpolicy.json", 1), dir]), |e| {
                matches!(e, BundleError::Directory(_))
            }),
            (
                manifest(vec![
                    layer("trustpolicy.json", 1),
                    layer("trustpolicy.json", 1),
                ]),
                |e| matches!(e, BundleError::Duplicate(_)),
            ),
            (
                manifest(vec![
                    layer("trustpolicy.json", 1),
                    layer("trustpolicy.oci.json", 1),
                ]),
                |e| matches!(e, BundleError::TrustPolicyCount(2)),
            ),
            (manifest(vec![layer("requirements.toml", 1)]), |e| {
                matches!(e, BundleError::TrustPolicyCount(0))
            }),
            (
                manifest(vec![layer("trustpolicy.json", MAX_FILE_BYTES + 1)]),
                |e| matches!(e, BundleError::FileTooLarge { .. }),
            ),
            (
                manifest(
                    (0..9)
                        .map(|i| layer(&format!("truststore/x509/ca/a/{i}.crt"), MAX_FILE_BYTES))
                        .collect(),
                ),
                |e| matches!(e, BundleError::TooLarge(_)),
            ),
            (
                manifest(
                    (0..=MAX_FILES)
                        .map(|i| layer(&format!("truststore/x509/ca/a/{i}.crt"), 1))
                        .collect(),
                ),
                |e| matches!(e, BundleError::TooManyFiles(_)),
            ),
        ];
        for (bytes, want) in cases {
            let got = Layout::parse(&bytes).unwrap_err();
            assert!(want(&got), "{got:?}");
        }
        let mut other = serde_json::from_slice::<serde_json::Value>(&manifest(vec![layer(
            "trustpolicy.json",
            1,
        )]))
        .unwrap();
        other["artifactType"] = json!("application/vnd.example.other");
        assert!(matches!(
            Layout::parse(&serde_json::to_vec(&other).unwrap()),
            Err(BundleError::ArtifactType(_))
        ));
        other["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
        assert!(matches!(
            Layout::parse(&serde_json::to_vec(&other).unwrap()),
            Err(BundleError::MediaType(_))
        ));
    }
}
