//! `pullgate policy push DIR oci://REGISTRY/REPO:TAG`: a directory laid
//! out as a bundle (see `policy_bundle::layout`), pushed as `oras push
//! --artifact-type application/vnd.pullgate.policy.bundle.v1` would push
//! it. The manifest is checked with the nodes' own `Layout::parse` before
//! anything is pushed, so what is pushed is what nodes accept. Signing is
//! the operator's (`notation sign` on the digest returned).
//!
//! Limits: the layout's (`MAX_FILES`, `MAX_FILE_BYTES` per file);
//! files are read before the push (`read_dir`, blocking).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use pullgate_policy::config::{parse_source, Config, ConfigError};
use pullgate_policy::Digest;
use serde_json::json;

use crate::deadline::Deadline;
use crate::policy_bundle::layout::{
    BundleError, Layout, ARTIFACT_TYPE, MAX_FILES, MAX_FILE_BYTES, OCI_MANIFEST, REQUIREMENTS,
    TITLE_ANNOTATION, TRUST_STORE,
};
use crate::registry::{self, RegistryClient};

/// The media type given to each file (what `oras push` gives a file).
const FILE_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// The empty config of an artifact (image-spec `manifest.md`, "Guidance for an Empty Descriptor").
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The whole push's budget.
const PUSH_BUDGET: Duration = Duration::from_secs(300);

/// Why a bundle was not pushed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The target is not `oci://REGISTRY/REPO:TAG`.
    #[error(transparent)]
    Target(#[from] ConfigError),
    /// The target names a digest: a push needs a tag.
    #[error("the target must name a tag, not a digest")]
    NoTag,
    /// A file cannot be read, or is over the cap.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// The directory is not a bundle.
    #[error("not a policy bundle: {0}")]
    Bundle(#[from] BundleError),
    /// The registry client cannot be built, or refused.
    #[error("registry: {0}")]
    Registry(String),
}

impl From<registry::Error> for PushError {
    fn from(e: registry::Error) -> Self {
        Self::Registry(e.to_string())
    }
}

/// The files of the bundle in `dir` (relative path, content): the trust
/// policy, the requirements file and every file under `truststore/`.
/// Blocking.
///
/// # Errors
/// `PushError::File`.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, PushError> {
    let mut files = Vec::new();
    for name in [
        pullgate_policy::trust_policy::TRUST_POLICY,
        pullgate_policy::trust_policy::OCI_TRUST_POLICY,
        REQUIREMENTS,
    ] {
        let path = dir.join(name);
        if path.is_file() {
            files.push((name.to_owned(), read(&path)?));
        }
    }
    let mut found = Vec::new();
    walk(&dir.join(TRUST_STORE), TRUST_STORE, &mut found, 0)?;
    found.sort();
    for (rel, path) in found {
        files.push((rel, read(&path)?));
    }
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, PushError> {
    let file_error = |problem: String| PushError::File {
        path: path.to_path_buf(),
        problem,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| file_error(e.to_string()))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(file_error(format!("over {MAX_FILE_BYTES} bytes")));
    }
    std::fs::read(path).map_err(|e| file_error(e.to_string()))
}

/// Trust store files under `dir` as `(relative path, path)`; depth and count bounded.
fn walk(
    dir: &Path,
    rel: &str,
    out: &mut Vec<(String, PathBuf)>,
    depth: usize,
) -> Result<(), PushError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => return Ok(()),
        Err(e) => {
            return Err(PushError::File {
                path: dir.to_path_buf(),
                problem: e.to_string(),
            })
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        if path.is_dir() && depth < 4 {
            walk(&path, &child, out, depth + 1)?;
        } else {
            out.push((child, path));
        }
        if out.len() > MAX_FILES {
            return Err(BundleError::TooManyFiles(out.len()).into());
        }
    }
    Ok(())
}

/// The manifest of a bundle of `files`: the empty config, one layer per file.
///
/// # Errors
/// `PushError::Bundle` when the files are not a bundle.
pub(crate) fn manifest(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, PushError> {
    let layers: Vec<_> = files
        .iter()
        .map(|(path, bytes)| {
            json!({
                "mediaType": FILE_MEDIA_TYPE,
                "digest": Digest::sha256_of(bytes).to_string(),
                "size": bytes.len(),
                "annotations": { TITLE_ANNOTATION: path },
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": Digest::sha256_of(b"{}").to_string(),
            "size": 2,
        },
        "layers": layers,
    }))
    .map_err(|e| BundleError::Json(e.to_string()))?;
    Layout::parse(&manifest)?;
    Ok(manifest)
}

/// Pushes the bundle of `files` to `target` (`oci://REGISTRY/REPO:TAG`)
/// through the registry client `config` describes; returns the manifest's digest.
///
/// # Errors
/// `PushError`.
pub async fn push(
    config: &Config,
    files: Vec<(String, Vec<u8>)>,
    target: &str,
) -> Result<Digest, PushError> {
    let image = parse_source(target)?;
    let Some(tag) = image.tag().filter(|_| image.digest().is_none()) else {
        return Err(PushError::NoTag);
    };
    let manifest = manifest(&files)?;
    let client = RegistryClient::new(&config.registry)?;
    let repo = image.repository();
    let deadline = Deadline::after(PUSH_BUDGET);
    client
        .push_blob(repo, Bytes::from_static(b"{}"), deadline)
        .await?;
    for (_, bytes) in files {
        client.push_blob(repo, Bytes::from(bytes), deadline).await?;
    }
    Ok(client
        .push_manifest(repo, tag, OCI_MANIFEST, Bytes::from(manifest), deadline)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_read_as_the_bundle_the_nodes_accept() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("truststore/x509/ca/acme");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(dir.path().join("trustpolicy.json"), b"{}").unwrap();
        std::fs::write(store.join("root.crt"), b"PEM").unwrap();
        let files = read_dir(dir.path()).unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["trustpolicy.json", "truststore/x509/ca/acme/root.crt"]
        );
        let layout = Layout::parse(&manifest(&files).unwrap()).unwrap();
        assert_eq!(layout.files.len(), 2);
        // A stray file is refused before anything is pushed.
        std::fs::write(store.join(".hidden"), b"x").unwrap();
        let files = read_dir(dir.path()).unwrap();
        assert!(matches!(
            manifest(&files),
            Err(PushError::Bundle(BundleError::Path { .. }))
        ));
    }
}
