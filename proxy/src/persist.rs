//! Persisted verdicts: a restarted pullgate does not re-verify every image on the node.
//!
//! Input: the gate's allow verdicts under the policy in force, and
//! `[cache] state_dir`. Output: `<state_dir>/verdicts.json`, written every
//! [`SAVE_INTERVAL`] when it changed and at shutdown, read once at startup.
//!
//! Integrity: the file is a JSON body line followed by a line holding the
//! hex HMAC-SHA256 of that body under a 32-byte key in
//! `<state_dir>/verdicts.key`, created from `/dev/urandom` at first start.
//! A file whose MAC does not verify, that does not parse, of another format
//! version, or that was made under other trust files (the body carries the
//! SHA-256 fingerprint of the trust policy, requirements, trust store and
//! `crl_dir` it was made under) is ignored with a log line, and pullgate
//! verifies afresh. Only allow verdicts are kept, each with its expiry and
//! with the trust policy statement, requirements scope and repository it was
//! made under (the gate's `VerdictKey`), so a restored verdict never outlives
//! the one it copies and is never served under another statement or for
//! another repository. Denials are not
//! persisted: they are short-lived anyway.
//!
//! Ownership: a MAC proves nothing if someone else can write the key. The
//! state directory must be a directory (not a symlink) owned by the
//! process's effective user with no access for group or others (0700; the
//! systemd unit's `StateDirectory=` makes it so, and a missing directory is
//! created so); the key and verdict files must be regular files (not
//! symlinks) owned likewise with no access for group or others (0600).
//! Otherwise [`Store::open`] or [`Store::load`] refuses with an error naming
//! the path, and pullgate serves without persisted verdicts. Every file is
//! opened with `O_NOFOLLOW`; the verdict file is written to a temp file
//! created with `O_EXCL` and renamed over the old one (atomic within the
//! directory). Only the directory itself is checked, not its ancestors.
//!
//! Everything here is blocking file I/O: call it on the blocking pool or
//! before the runtime serves.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rustix::fs::OFlags;
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::gate::{Gate, PersistedVerdict};

/// How often a changed set of verdicts is written.
pub(crate) const SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// Format version of `verdicts.json`. 2: each verdict names the trust
/// policy statement and requirements scope it was made under (version 1
/// files, keyed by digest alone, are ignored). 3: and the repository
/// (version 2 files, whose verdicts could stand for any repository of a
/// statement, are ignored).
const VERSION: u32 = 3;

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
    #[error("{} is not safe to trust: {problem}; persisted verdicts are off until it is fixed", path.display())]
    Unsafe { path: PathBuf, problem: Unsafe },
}

/// Why a state directory or file is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unsafe {
    #[error("it is a symlink")]
    Symlink,
    #[error("it is not a directory")]
    NotADirectory,
    #[error("it is not a regular file")]
    NotAFile,
    #[error("it is owned by uid {owner}, not by uid {euid} that pullgate runs as")]
    Owner { owner: u32, euid: u32 },
    #[error("its mode is {mode:04o}; group and others must have no access (0700 for the directory, 0600 for files)")]
    Mode { mode: u32 },
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
    /// The trust policy statement the verdict was made under; absent for a
    /// requirements scope decided without one (cosign).
    statement: Option<String>,
    /// The requirements scope; absent for the built-in default.
    requirement: Option<String>,
    /// The repository whose signatures were verified (`host/path`).
    repository: String,
    /// The scope's `signature_repository` the signatures were found in;
    /// absent when they were found next to the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature_repository: Option<String>,
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
    /// Opens `dir` (created 0700 if missing), creating the key at first
    /// start; refuses a directory or key that someone else could have
    /// written (see the module docs).
    ///
    /// # Errors
    /// The directory or key cannot be created or read, or is [`Error::Unsafe`].
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
        let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
        check_owned(dir, &meta, Kind::Dir)?;
        let key_path = dir.join(KEY_FILE);
        let mut key = [0u8; KEY_LEN];
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlags::NOFOLLOW.bits().cast_signed())
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
                let mut f = open_owned(&key_path)?;
                f.read_exact(&mut key).map_err(io(&key_path))?;
            }
            Err(e) => return Err(io(&key_path)(e)),
        }
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    /// Opens `dir` and its key as [`Store::open`] does, creating nothing:
    /// `None` when the directory or its key does not exist yet. For
    /// `pullgate doctor`, which reads the daemon's verdicts.
    ///
    /// # Errors
    /// The directory or key cannot be read, or is [`Error::Unsafe`].
    pub(crate) fn open_existing(dir: &Path) -> Result<Option<Self>, Error> {
        if !check_dir(dir)? {
            return Ok(None);
        }
        let key_path = dir.join(KEY_FILE);
        let mut f = match open_owned(&key_path) {
            Ok(f) => f,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut key = [0u8; KEY_LEN];
        f.read_exact(&mut key).map_err(|source| Error::Io {
            path: key_path,
            source,
        })?;
        Ok(Some(Self {
            dir: dir.to_owned(),
            key,
        }))
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
                    statement: v.statement.clone(),
                    requirement: v.requirement.clone(),
                    repository: v.repository.to_string(),
                    signature_repository: v.signature_repository.as_ref().map(ToString::to_string),
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
        // A temp file left by a crash (or planted) is removed, not reused:
        // removing a symlink removes the link, never its target.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&tmp)(e)),
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlags::NOFOLLOW.bits().cast_signed())
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename itself reaches the disk with the directory.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    /// Reads the verdict file: `None` when there is none.
    ///
    /// # Errors
    /// The file is unreadable, altered, or malformed.
    pub(crate) fn load(&self) -> Result<Option<Snapshot>, Error> {
        let path = self.dir.join(VERDICTS_FILE);
        let file = match open_owned(&path) {
            Ok(f) => f,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
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
                    statement: e.statement,
                    requirement: e.requirement,
                    repository: e.repository.parse().ok()?,
                    signature_repository: match e.signature_repository {
                        None => None,
                        Some(r) => Some(r.parse().ok()?),
                    },
                    digest: e.digest.parse().ok()?,
                    signers: e.signers,
                    until: UNIX_EPOCH + Duration::from_millis(e.until_unix_ms),
                })
            })
            .collect();
        Ok(Some((fingerprint, verdicts)))
    }
}

/// What a checked path must be.
/// Checks `dir` and the files in it as [`Store::open`] and [`Store::load`]
/// would, without creating anything: `Ok(false)` when `dir` does not exist
/// yet (`serve` creates it 0700). For `pullgate doctor`.
///
/// # Errors
/// [`Error::Unsafe`] or [`Error::Io`] naming the path.
pub(crate) fn check_dir(dir: &Path) -> Result<bool, Error> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    check_owned(dir, &meta, Kind::Dir)?;
    for name in [KEY_FILE, VERDICTS_FILE] {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => check_owned(&path, &meta, Kind::File)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path, source }),
        }
    }
    Ok(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Refuses `meta` (of `path`, not followed) unless it is a `kind` owned by
/// the effective user with no access for group or others.
fn check_owned(path: &Path, meta: &std::fs::Metadata, kind: Kind) -> Result<(), Error> {
    let refuse = |problem| Error::Unsafe {
        path: path.to_owned(),
        problem,
    };
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return Err(refuse(Unsafe::Symlink));
    }
    match kind {
        Kind::Dir if !file_type.is_dir() => return Err(refuse(Unsafe::NotADirectory)),
        Kind::File if !file_type.is_file() => return Err(refuse(Unsafe::NotAFile)),
        Kind::Dir | Kind::File => {}
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(refuse(Unsafe::Owner {
            owner: meta.uid(),
            euid,
        }));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refuse(Unsafe::Mode { mode }));
    }
    Ok(())
}

/// Opens `path` for reading without following a symlink, and refuses it
/// unless the opened file is a regular file owned as [`check_owned`] requires.
fn open_owned(path: &Path) -> Result<std::fs::File, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits().cast_signed())
        .open(path)
    {
        Ok(f) => f,
        // O_NOFOLLOW on a symlink: ELOOP.
        Err(e) if Errno::from_io_error(&e) == Some(Errno::LOOP) => {
            return Err(Error::Unsafe {
                path: path.to_owned(),
                problem: Unsafe::Symlink,
            })
        }
        Err(e) => return Err(io(e)),
    };
    // Checked on the open file, so nothing can be swapped in between.
    let meta = file.metadata().map_err(io)?;
    check_owned(path, &meta, Kind::File)?;
    Ok(file)
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
            statement: (hexchar != 'c').then(|| "prod".to_owned()),
            requirement: (hexchar == 'b').then(|| "two-signers".to_owned()),
            repository: "r.example/prod/app".parse().unwrap(),
            signature_repository: (hexchar == 'b').then(|| "r.example/sigs".parse().unwrap()),
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
        // Read-only: creates nothing.
        assert!(Store::open_existing(&state).unwrap().is_none());
        assert!(!state.exists());
        let store = Store::open(&state).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let key_mode = std::fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        assert!(store.load().unwrap().is_none());

        let until = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        // 'c': a cosign scope's verdict, made without a trust policy statement.
        let saved = vec![
            verdict('a', until),
            verdict('b', until),
            verdict('c', until),
        ];
        store.save(&[7; 32], &saved).unwrap();
        let (fp, loaded) = store.load().unwrap().unwrap();
        assert_eq!(fp, [7; 32]);
        assert_eq!(loaded, saved);

        // The same key survives a restart, and a reader sees the same verdicts.
        let again = Store::open(&state).unwrap();
        assert!(again.load().unwrap().is_some());
        let reader = Store::open_existing(&state).unwrap().unwrap();
        assert_eq!(reader.load().unwrap().unwrap().1, saved);

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

    fn mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn refused(r: Result<impl std::fmt::Debug, Error>) -> Unsafe {
        match r {
            Err(Error::Unsafe { problem, .. }) => problem,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_state_dir_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let until = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        Store::open(&state)
            .unwrap()
            .save(&[7; 32], &[verdict('a', until)])
            .unwrap();

        mode(&state, 0o777);
        assert_eq!(refused(Store::open(&state)), Unsafe::Mode { mode: 0o777 });
        mode(&state, 0o750);
        assert_eq!(refused(Store::open(&state)), Unsafe::Mode { mode: 0o750 });
        mode(&state, 0o700);
        let store = Store::open(&state).unwrap();

        // A key others could have read or written: refused.
        mode(&state.join(KEY_FILE), 0o644);
        assert_eq!(refused(Store::open(&state)), Unsafe::Mode { mode: 0o644 });
        mode(&state.join(KEY_FILE), 0o600);

        // A verdict file others could have written: refused, not restored.
        mode(&state.join(VERDICTS_FILE), 0o666);
        assert_eq!(refused(store.load()), Unsafe::Mode { mode: 0o666 });
        // Saving replaces it with one of our own.
        store.save(&[7; 32], &[verdict('a', until)]).unwrap();
        assert!(store.load().unwrap().is_some());

        // Owned by someone else (tests run as root; chown to nobody).
        let euid = rustix::process::geteuid().as_raw();
        if euid == 0 {
            std::os::unix::fs::chown(state.join(VERDICTS_FILE), Some(65534), None).unwrap();
            assert_eq!(
                refused(store.load()),
                Unsafe::Owner {
                    owner: 65534,
                    euid: 0
                }
            );
            std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
            assert_eq!(
                refused(Store::open(&state)),
                Unsafe::Owner {
                    owner: 65534,
                    euid: 0
                }
            );
        }
    }

    #[test]
    fn symlinks_in_the_state_dir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        Store::open(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(refused(Store::open(&link)), Unsafe::Symlink);

        // A planted key elsewhere, linked in: refused, never read.
        let planted = dir.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        mode(&planted, 0o700);
        let outside = dir.path().join("outside.key");
        std::fs::write(&outside, [0u8; KEY_LEN]).unwrap();
        mode(&outside, 0o600);
        std::os::unix::fs::symlink(&outside, planted.join(KEY_FILE)).unwrap();
        assert_eq!(refused(Store::open(&planted)), Unsafe::Symlink);

        // A verdict file linked in: refused.
        let store = Store::open(&real).unwrap();
        let verdicts = dir.path().join("verdicts.json");
        std::fs::write(&verdicts, b"x\ny\n").unwrap();
        mode(&verdicts, 0o600);
        std::os::unix::fs::symlink(&verdicts, real.join(VERDICTS_FILE)).unwrap();
        assert_eq!(refused(store.load()), Unsafe::Symlink);

        // A temp file linked to somewhere else: the save replaces the link,
        // never writes through it.
        std::fs::remove_file(real.join(VERDICTS_FILE)).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"untouched").unwrap();
        std::os::unix::fs::symlink(&target, real.join(format!("{VERDICTS_FILE}.tmp"))).unwrap();
        let until = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        store.save(&[7; 32], &[verdict('a', until)]).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        assert!(store.load().unwrap().is_some());
    }

    #[test]
    fn a_version_1_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let body = br#"{"version":1,"policy":"00","verdicts":[]}"#;
        let mut mac = store.mac();
        mac.update(body);
        let mut bytes = body.to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(hex::encode(mac.finalize().into_bytes()).as_bytes());
        let path = dir.path().join("state").join(VERDICTS_FILE);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        assert!(matches!(store.load(), Err(Error::Version { found: 1, .. })));
    }
}
