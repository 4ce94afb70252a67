//! Persisted verdicts: a restarted pullgate does not re-verify every image on the node.
//!
//! Input: the gate's allow verdicts under the policy in force, and
//! `[cache] state_dir`. Output: `<state_dir>/verdicts.json`, written every
//! [`SAVE_INTERVAL`] when it changed and at shutdown, read once at startup.
//!
//! Integrity: the file is a JSON body line followed by a line holding the
//! hex HMAC-SHA256 of that body under a 32-byte key in
//! `<state_dir>/verdicts.key`, created from `/dev/urandom` at first start
//! with mode 0600 (the state dir should be root-only; the systemd unit's
//! `StateDirectory=` makes it 0700). A file whose MAC does not verify, that
//! does not parse, or that was made under other trust files (the body
//! carries the SHA-256 fingerprint of the trust policy, requirements and
//! trust store it was made under) is ignored with a log line, and pullgate
//! verifies afresh. Only allow verdicts are kept, each with its expiry, so a
//! restored verdict never outlives the one it copies (certificate expiry
//! included). Denials are not persisted: they are short-lived anyway.
//!
//! Everything here is blocking file I/O: call it on the blocking pool or
//! before the runtime serves.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::gate::{Gate, PersistedVerdict};

/// How often a changed set of verdicts is written.
pub(crate) const SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// Format version of `verdicts.json`.
const VERSION: u32 = 1;

const KEY_FILE: &str = "verdicts.key";
const VERDICTS_FILE: &str = "verdicts.json";
const KEY_LEN: usize = 32;
/// A verdict file larger than this is refused unread (100 000 verdicts are ~20 MiB).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why persisted verdicts could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a verdict file (no MAC line)", .0.display())]
    NoMac(PathBuf),
    #[error("{}: MAC does not verify; the file was altered or made with another key", .0.display())]
    BadMac(PathBuf),
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: version {found}, expected {VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("{} is larger than {MAX_FILE_BYTES} bytes", .0.display())]
    TooLarge(PathBuf),
}

#[derive(Serialize, Deserialize)]
struct Body {
    version: u32,
    /// Hex SHA-256 of the trust files the verdicts were made under.
    policy: String,
    verdicts: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    digest: String,
    signers: Vec<String>,
    until_unix_ms: u64,
}

/// The fingerprint of the trust files and the allow verdicts made under them.
pub(crate) type Snapshot = ([u8; 32], Vec<PersistedVerdict>);

/// The state directory's key and verdict file.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    key: [u8; KEY_LEN],
}

impl Store {
    /// Opens `dir` (created 0700 if missing), creating the key at first start.
    ///
    /// # Errors
    /// The directory or key cannot be created or read.
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let key_path = dir.join(KEY_FILE);
        let mut key = [0u8; KEY_LEN];
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
        {
            Ok(mut f) => {
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut key))
                    .map_err(io(Path::new("/dev/urandom")))?;
                f.write_all(&key).map_err(io(&key_path))?;
                f.sync_all().map_err(io(&key_path))?;
                tracing::info!(path = %key_path.display(), "created the verdict file key");
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::File::open(&key_path)
                    .and_then(|mut f| f.read_exact(&mut key))
                    .map_err(io(&key_path))?;
            }
            Err(e) => return Err(io(&key_path)(e)),
        }
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_mac(),
        }
    }

    /// Writes `verdicts` made under `fingerprint` (atomically: temp file, then rename).
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn save(
        &self,
        fingerprint: &[u8; 32],
        verdicts: &[PersistedVerdict],
    ) -> Result<(), Error> {
        let body = Body {
            version: VERSION,
            policy: hex::encode(fingerprint),
            verdicts: verdicts
                .iter()
                .map(|v| Entry {
                    digest: v.digest.to_string(),
                    signers: v.signers.clone(),
                    until_unix_ms: v
                        .until
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                })
                .collect(),
        };
        let path = self.dir.join(VERDICTS_FILE);
        let mut bytes = serde_json::to_vec(&body).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        let mut mac = self.mac();
        mac.update(&bytes);
        let tag = hex::encode(mac.finalize().into_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(tag.as_bytes());
        bytes.push(b'\n');
        let tmp = self.dir.join(format!("{VERDICTS_FILE}.tmp"));
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| Error::Io { path: p, source }
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }

    /// Reads the verdict file: `None` when there is none.
    ///
    /// # Errors
    /// The file is unreadable, altered, or malformed.
    pub(crate) fn load(&self) -> Result<Option<Snapshot>, Error> {
        let path = self.dir.join(VERDICTS_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(Error::TooLarge(path));
        }
        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let Some(split) = text.iter().rposition(|&b| b == b'\n') else {
            return Err(Error::NoMac(path));
        };
        let (body, tag) = (&text[..split], &text[split + 1..]);
        let tag = hex::decode(tag).map_err(|_| Error::BadMac(path.clone()))?;
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&tag)
            .map_err(|_| Error::BadMac(path.clone()))?;
        let body: Body = serde_json::from_slice(body).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        if body.version != VERSION {
            return Err(Error::Version {
                path,
                found: body.version,
            });
        }
        let mut fingerprint = [0u8; 32];
        if hex::decode_to_slice(&body.policy, &mut fingerprint).is_err() {
            return Err(Error::BadMac(path));
        }
        let verdicts = body
            .verdicts
            .into_iter()
            .filter_map(|e| {
                Some(PersistedVerdict {
                    digest: e.digest.parse().ok()?,
                    signers: e.signers,
                    until: UNIX_EPOCH + Duration::from_millis(e.until_unix_ms),
                })
            })
            .collect();
        Ok(Some((fingerprint, verdicts)))
    }
}

#[cold]
fn unreachable_mac() -> ! {
    // hmac's `new_from_slice` only fails for fixed-size-key MACs; HMAC is not one.
    #[allow(clippy::panic)]
    {
        panic!("HMAC-SHA256 refused a key")
    }
}

/// Restores persisted verdicts into `gate`; problems are logged and ignored.
pub(crate) fn restore(store: &Store, gate: &Gate) {
    match store.load() {
        Ok(None) => {}
        Ok(Some((fingerprint, verdicts))) => {
            let n = gate.restore(&fingerprint, verdicts);
            tracing::info!(restored = n, "persisted allow verdicts restored");
        }
        Err(e) => {
            tracing::warn!(error = %e, "persisted verdicts ignored; images will be verified afresh")
        }
    }
}

/// Saves `gate`'s allow verdicts; problems are logged.
pub(crate) fn save(store: &Store, gate: &Gate) {
    let (fingerprint, verdicts) = gate.allow_verdicts();
    // Only the gate reads the clock for decisions; an expired entry is harmless here
    // (restore skips it), so the file keeps whatever the cache holds.
    match store.save(&fingerprint, &verdicts) {
        Ok(()) => tracing::debug!(count = verdicts.len(), "persisted allow verdicts"),
        Err(e) => tracing::warn!(error = %e, "cannot persist verdicts"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn verdict(hexchar: char, until: SystemTime) -> PersistedVerdict {
        PersistedVerdict {
            digest: format!("sha256:{}", hexchar.to_string().repeat(64))
                .parse()
                .unwrap(),
            signers: vec!["CN=ci,O=Acme,ST=WA,C=US".to_owned()],
            until,
        }
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = Store::open(&state).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let key_mode = std::fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        assert!(store.load().unwrap().is_none());

        let until = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let saved = vec![verdict('a', until), verdict('b', until)];
        store.save(&[7; 32], &saved).unwrap();
        let (fp, loaded) = store.load().unwrap().unwrap();
        assert_eq!(fp, [7; 32]);
        assert_eq!(loaded, saved);

        // The same key survives a restart.
        let again = Store::open(&state).unwrap();
        assert!(again.load().unwrap().is_some());

        // One flipped byte in the body: refused.
        let path = state.join(VERDICTS_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let tampered = text.replacen("aaaa", "aaab", 1);
        std::fs::write(&path, tampered).unwrap();
        assert!(matches!(store.load(), Err(Error::BadMac(_))));

        // Another key: refused.
        store.save(&[7; 32], &saved).unwrap();
        std::fs::remove_file(state.join(KEY_FILE)).unwrap();
        let other = Store::open(&state).unwrap();
        assert!(matches!(other.load(), Err(Error::BadMac(_))));

        // Garbage: refused, not a panic.
        std::fs::write(&path, b"nonsense").unwrap();
        assert!(matches!(other.load(), Err(Error::NoMac(_))));
    }
}
