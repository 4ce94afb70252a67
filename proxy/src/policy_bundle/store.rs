//! The last good policy bundle on disk, under `<[cache] state_dir>/policy-source/`.
//!
//! Layout: `bundles/<hex>/manifest.json` (the verified manifest, whose
//! SHA-256 is `<hex>`), `bundles/<hex>/tree/` (its files, laid out as
//! `[trust]` names them: see `Layout::trust`) and `last-good.json`
//! (`{"source", "digest"}`: the source it came from and the verified
//! manifest digest). A bundle is written to a temporary directory and
//! renamed into place; `last-good.json` is written beside and renamed
//! over the old one only once the gate accepted the bundle, so a crash
//! leaves the previous good bundle in force.
//!
//! Loading checks everything against the recorded digest: the manifest
//! hashes to it and parses as a bundle, each file hashes to its layer's
//! digest, and the tree holds no other file (a certificate dropped into
//! the tree would otherwise be trusted). Anything else is a typed
//! `StoreError`, and the caller fails closed. A record of another source
//! than the configured one is not used.
//!
//! Blocking (file I/O): called at startup and from the poll on the blocking pool.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use pullgate_policy::config::{Config, TrustConfig};
use pullgate_policy::Digest;
use serde::{Deserialize, Serialize};

use super::layout::{BundleError, BundleFile, Layout, TRUST_STORE};

/// The store's directory under `[cache] state_dir`.
pub(crate) const DIR: &str = "policy-source";

const LAST_GOOD: &str = "last-good.json";
const MANIFEST: &str = "manifest.json";
const TREE: &str = "tree";
const BUNDLES: &str = "bundles";

/// Largest `last-good.json` read.
const MAX_RECORD_BYTES: u64 = 4096;

/// Largest stored manifest read (the registry client's default manifest cap).
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Deepest directory walked in a stored tree (`truststore/x509/<type>/<name>`).
const MAX_TREE_DEPTH: usize = 5;

/// Why the last good bundle cannot be read, or a bundle not written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// A file or directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `last-good.json` does not parse, or names no valid digest.
    #[error("{0}: not a last-good record")]
    Record(PathBuf),
    /// A stored file is over its cap.
    #[error("{path}: over {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its cap.
        limit: u64,
    },
    /// A stored file does not hash to the digest recorded for it.
    #[error("{path}: does not match {expected}")]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// The digest it should have.
        expected: Digest,
    },
    /// The stored manifest is not a bundle.
    #[error("stored manifest: {0}")]
    Bundle(#[from] BundleError),
    /// A file in the tree that the manifest does not list.
    #[error("{0}: not in the bundle")]
    Extra(PathBuf),
}

/// `last-good.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    source: String,
    digest: String,
}

/// A verified bundle on disk.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// Its manifest digest.
    pub(crate) digest: Digest,
    /// Its trust files.
    pub(crate) trust: TrustConfig,
}

/// The store under `<state_dir>/policy-source`.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// The trust the gate starts with.
#[derive(Debug)]
pub(crate) enum StartupTrust {
    /// No `[trust] source`: the `[trust]` files.
    Local,
    /// The source's last good bundle, checked.
    LastGood(Box<Stored>),
    /// A source without a usable last good bundle: deny every pull until
    /// the source gives a verified one (fail closed).
    NoneYet,
}

/// What the gate enforces at startup, given `config` (logged).
pub(crate) fn startup_trust(config: &Config) -> StartupTrust {
    let source = match config.trust.source_reference() {
        Ok(None) => return StartupTrust::Local,
        Ok(Some(_)) => config.trust.source.clone().unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "denying every pull: the policy source is invalid");
            return StartupTrust::NoneYet;
        }
    };
    let Some(state_dir) = &config.cache.state_dir else {
        tracing::error!(
            source,
            "denying every pull: [trust] source needs [cache] state_dir for its last good bundle"
        );
        return StartupTrust::NoneYet;
    };
    let store = Store::new(state_dir);
    match store.load(&source) {
        Ok(Some(stored)) => {
            tracing::info!(source, digest = %stored.digest, dir = %stored.trust.store.display(),
                "enforcing the last good policy bundle from disk until the source is checked");
            StartupTrust::LastGood(Box::new(stored))
        }
        Ok(None) => {
            tracing::warn!(source,
                "no last good policy bundle on disk: denying every pull until the source gives a verified one");
            StartupTrust::NoneYet
        }
        Err(e) => {
            tracing::error!(source, error = %e,
                "last good policy bundle refused: denying every pull until the source gives a verified one");
            StartupTrust::NoneYet
        }
    }
}

/// The trust files a gate would start with under `config`: `[trust]`'s
/// without a source, the last good bundle's with one; `None` when a source
/// has no usable bundle (every pull is denied). For the commands that
/// explain the policy in force (`doctor`, `policy check`).
pub(crate) fn effective_trust(config: &Config) -> Option<TrustConfig> {
    match startup_trust(config) {
        StartupTrust::Local => Some(config.trust.clone()),
        StartupTrust::LastGood(stored) => Some(stored.trust),
        StartupTrust::NoneYet => None,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `path`, refusing more than `limit` bytes.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > limit {
        return Err(StoreError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Flushes a directory's entries (a rename into it) to disk.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

impl Store {
    /// The store under `<state_dir>/policy-source` (created on first save).
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join(DIR),
        }
    }

    fn bundle_dir(&self, digest: &Digest) -> PathBuf {
        self.dir.join(BUNDLES).join(digest.hex())
    }

    /// Writes a verified bundle: its manifest and files (each already
    /// checked against its digest), under a temporary name renamed into
    /// place. Returns the trust files it lays out; `Self::commit` makes
    /// it the last good one.
    ///
    /// # Errors
    /// `StoreError::Io`.
    pub(crate) fn save(
        &self,
        digest: &Digest,
        manifest: &[u8],
        layout: &Layout,
        files: &[(BundleFile, bytes::Bytes)],
    ) -> Result<TrustConfig, StoreError> {
        let bundles = self.dir.join(BUNDLES);
        std::fs::create_dir_all(&bundles).map_err(io(&bundles))?;
        let tmp = bundles.join(format!(".tmp-{}-{}", digest.hex(), std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        let tree = tmp.join(TREE);
        let store = tree.join(TRUST_STORE);
        std::fs::create_dir_all(&store).map_err(io(&store))?;
        write_synced(&tmp.join(MANIFEST), manifest)?;
        for (file, bytes) in files {
            let path = Layout::path_in(&tree, file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_synced(&path, bytes)?;
        }
        let dir = self.bundle_dir(digest);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        sync_dir(&bundles)?;
        Ok(layout.trust(&dir.join(TREE)))
    }

    /// Records the bundle `digest` of `source` as the last good one
    /// (written beside, then renamed over), and removes every other stored bundle.
    ///
    /// # Errors
    /// `StoreError::Io`; the previous record stays.
    pub(crate) fn commit(&self, source: &str, digest: &Digest) -> Result<(), StoreError> {
        let record = Record {
            source: source.to_owned(),
            digest: digest.to_string(),
        };
        let bytes =
            serde_json::to_vec(&record).map_err(|_| StoreError::Record(self.dir.clone()))?;
        let tmp = self.dir.join(format!(".{LAST_GOOD}.tmp"));
        write_synced(&tmp, &bytes)?;
        let path = self.dir.join(LAST_GOOD);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        self.prune(digest);
        Ok(())
    }

    /// Removes the stored bundles other than `keep` (best effort, logged).
    pub(crate) fn prune(&self, keep: &Digest) {
        let bundles = self.dir.join(BUNDLES);
        let Ok(entries) = std::fs::read_dir(&bundles) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str() == Some(keep.hex()) {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove an old policy bundle");
            }
        }
    }

    /// The last good bundle of `source`, checked (see the module docs);
    /// `None` when there is none (or it came from another source).
    ///
    /// # Errors
    /// `StoreError` when the record, the manifest or a file is unreadable,
    /// over its cap, or does not match its digest, or the tree holds a file
    /// the bundle does not list.
    pub(crate) fn load(&self, source: &str) -> Result<Option<Stored>, StoreError> {
        let path = self.dir.join(LAST_GOOD);
        let bytes = match read_capped(&path, MAX_RECORD_BYTES) {
            Ok(b) => b,
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let record: Record =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::Record(path.clone()))?;
        let digest: Digest = record
            .digest
            .parse()
            .map_err(|_| StoreError::Record(path.clone()))?;
        if record.source != source {
            tracing::warn!(
                recorded = record.source,
                configured = source,
                "the last good policy bundle came from another source: not used"
            );
            return Ok(None);
        }
        let dir = self.bundle_dir(&digest);
        let manifest_path = dir.join(MANIFEST);
        let manifest = read_capped(&manifest_path, MAX_MANIFEST_BYTES)?;
        if !digest.matches(&manifest) {
            return Err(StoreError::DigestMismatch {
                path: manifest_path,
                expected: digest,
            });
        }
        let layout = Layout::parse(&manifest)?;
        let tree = dir.join(TREE);
        let mut listed = Vec::with_capacity(layout.files.len());
        for file in &layout.files {
            let path = Layout::path_in(&tree, file);
            let bytes = read_capped(&path, file.size)?;
            if bytes.len() as u64 != file.size || !file.digest.matches(&bytes) {
                return Err(StoreError::DigestMismatch {
                    path,
                    expected: file.digest.clone(),
                });
            }
            listed.push(path);
        }
        let mut found = Vec::new();
        walk(&tree, &mut found, 0)?;
        if let Some(extra) = found.into_iter().find(|p| !listed.contains(p)) {
            return Err(StoreError::Extra(extra));
        }
        Ok(Some(Stored {
            trust: layout.trust(&tree),
            digest,
        }))
    }
}

/// Every non-directory entry under `dir` (symlinks included, as entries
/// to refuse), at most `MAX_TREE_DEPTH` deep; deeper entries count as files.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() && depth < MAX_TREE_DEPTH {
            walk(&path, out, depth + 1)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
