//! The Notary Project X.509 trust store, read once at startup.
//!
//! Input: a directory `<root>` laid out as notation lays it out,
//! `<root>/x509/{ca,signingAuthority,tsa}/<named-store>/<files>`; every file
//! holds one or more PEM or DER certificates. Output: an immutable
//! [`TrustStore`] the verifiers borrow anchors from. Loading is synchronous
//! (call it before the runtime serves, or on `spawn_blocking`) and
//! all-or-nothing: the first problem is an [`Error`] naming the path.
//!
//! Stricter than the spec on purpose (an operator should hear about a
//! misconfigured store at startup, not at the first pull): directories inside
//! a named store, unknown entries under `x509/` and files that are not
//! certificates are errors. Symlinks anywhere below `<root>` are refused, as
//! the spec requires for stores and files.
//!
//! An empty named store loads, holding no certificates: emptying a store is
//! how an operator distrusts its CA, and a load that failed for it would
//! keep the old certificates trusted on reload. The gate logs it and denies
//! under a statement left without trust anchors.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::x509::{parse_certificate_file, Certificate, CertificateFileError};
use super::StoreType;

/// Largest certificate file read (a bundle of a few hundred roots fits).
pub(crate) const MAX_CERTIFICATE_FILE_BYTES: u64 = 1024 * 1024;

/// Why the trust store could not be loaded. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot read trust store path {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trust store path {} is a symlink; symlinks are not supported in a trust store", path.display())]
    Symlink { path: PathBuf },
    #[error("trust store path {} is a directory inside a named store; named stores must contain only certificate files", path.display())]
    NestedDirectory { path: PathBuf },
    #[error("trust store path {} is neither a regular file nor a directory", path.display())]
    NotRegular { path: PathBuf },
    #[error("trust store path {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("trust store path {} is not a known trust store type (expected ca, signingAuthority or tsa)", path.display())]
    UnknownStoreType { path: PathBuf },
    #[error("trust store path {} has an invalid named store name (allowed: letters, digits, '_', '.', '-')", path.display())]
    InvalidStoreName { path: PathBuf },
    #[error("trust store file {} is larger than {MAX_CERTIFICATE_FILE_BYTES} bytes", path.display())]
    FileTooLarge { path: PathBuf },
    #[error("trust store file {} is not a certificate file: {reason}", path.display())]
    InvalidCertificateFile {
        path: PathBuf,
        reason: CertificateFileError,
    },
    #[error("certificate {subject:?} in trust store file {} is neither a CA certificate nor a self-signed certificate", path.display())]
    NotCaOrSelfSigned { path: PathBuf, subject: String },
    #[error("certificate {subject:?} in TSA trust store file {} is not a self-signed root CA certificate", path.display())]
    TsaNotRoot { path: PathBuf, subject: String },
}

/// Every named store of every type, keyed by (type, name).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustStore {
    stores: BTreeMap<StoreType, BTreeMap<String, Vec<Certificate>>>,
}

impl TrustStore {
    /// Loads every named store under `<root>/x509/`.
    ///
    /// # Errors
    /// The first [`Error`] met; nothing is loaded partially.
    pub(crate) fn load(root: &Path) -> Result<Self, Error> {
        let x509 = root.join("x509");
        require_dir(&x509)?;
        let mut stores: BTreeMap<StoreType, BTreeMap<String, Vec<Certificate>>> = BTreeMap::new();
        for entry in read_dir(&x509)? {
            let path = entry?;
            let Some(kind) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<StoreType>().ok())
            else {
                return Err(Error::UnknownStoreType { path });
            };
            require_dir(&path)?;
            for named in read_dir(&path)? {
                let named = named?;
                let name = named
                    .file_name()
                    .and_then(|n| n.to_str())
                    .filter(|n| is_valid_store_name(n))
                    .map(str::to_owned)
                    .ok_or_else(|| Error::InvalidStoreName {
                        path: named.clone(),
                    })?;
                require_dir(&named)?;
                let certs = load_named_store(kind, &named)?;
                stores.entry(kind).or_default().insert(name, certs);
            }
        }
        Ok(Self { stores })
    }

    /// The certificates of one named store (empty for an empty store), or
    /// `None` if it does not exist.
    pub(crate) fn get(&self, kind: StoreType, name: &str) -> Option<&[Certificate]> {
        self.stores.get(&kind)?.get(name).map(Vec::as_slice)
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, kind: StoreType, name: &str) -> bool {
        self.get(kind, name).is_some()
    }
}

/// notation-go's rule for named store names: `^[a-zA-Z0-9_.-]+$`
/// (notaryproject/notation-go: verifier/truststore/truststore.go).
fn is_valid_store_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Lists a directory in name order (so errors are deterministic).
fn read_dir(dir: &Path) -> Result<impl Iterator<Item = Result<PathBuf, Error>>, Error> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        paths.push(entry.map_err(io(dir))?.path());
    }
    paths.sort();
    Ok(paths.into_iter().map(Ok))
}

/// [Trust store spec](https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trust-store):
/// "Symlinks are not supported for the named store directories or
/// certificate files. Implementation MUST validate that the named store
/// directory or certificate files are not symlinks, and fail if it does not
/// meet this condition."
fn require_dir(path: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(path).map_err(io(path))?;
    if meta.file_type().is_symlink() {
        return Err(Error::Symlink {
            path: path.to_owned(),
        });
    }
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: path.to_owned(),
        });
    }
    Ok(())
}

fn load_named_store(kind: StoreType, dir: &Path) -> Result<Vec<Certificate>, Error> {
    let mut certs = Vec::new();
    for path in read_dir(dir)? {
        let path = path?;
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            return Err(Error::Symlink { path });
        }
        if file_type.is_dir() {
            return Err(Error::NestedDirectory { path });
        }
        if !file_type.is_file() {
            return Err(Error::NotRegular { path });
        }
        if meta.len() > MAX_CERTIFICATE_FILE_BYTES {
            return Err(Error::FileTooLarge { path });
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        let parsed = match parse_certificate_file(&bytes) {
            Ok(parsed) => parsed,
            Err(reason) => return Err(Error::InvalidCertificateFile { path, reason }),
        };
        for cert in &parsed {
            check_anchor(kind, &path, cert)?;
        }
        certs.extend(parsed);
    }
    Ok(certs)
}

/// Certificates in a trust store are roots (or, discouraged, pinned
/// intermediates); a non-CA certificate is accepted only when self-signed
/// (a self-signed signing certificate), as notation-go does. TSA stores hold
/// TSA roots only.
fn check_anchor(kind: StoreType, path: &Path, cert: &Certificate) -> Result<(), Error> {
    match kind {
        StoreType::Ca | StoreType::SigningAuthority => {
            if cert.is_ca() || cert.is_self_signed() {
                Ok(())
            } else {
                Err(Error::NotCaOrSelfSigned {
                    path: path.to_owned(),
                    subject: cert.subject().to_owned(),
                })
            }
        }
        StoreType::Tsa => {
            if cert.is_ca() && cert.is_self_signed() {
                Ok(())
            } else {
                Err(Error::TsaNotRoot {
                    path: path.to_owned(),
                    subject: cert.subject().to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/notation-go/truststore/x509"
    );

    /// Copies `<vectors>/<kind>/<store>` into `<tmp>/x509/<kind>/<store>`.
    fn with_stores(stores: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (kind, store) in stores {
            let src = Path::new(VECTORS).join(kind).join(store);
            let dst = tmp.path().join("x509").join(kind).join(store);
            fs::create_dir_all(&dst).unwrap();
            for entry in fs::read_dir(&src).unwrap() {
                let entry = entry.unwrap();
                fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
            }
        }
        tmp
    }

    #[test]
    fn loads_valid_stores() {
        let tmp = with_stores(&[
            ("ca", "valid-trust-store"),
            ("ca", "valid-trust-store-2"),
            ("signingAuthority", "valid-trust-store"),
            ("tsa", "test-timestamp"),
        ]);
        let store = TrustStore::load(tmp.path()).unwrap();
        assert!(store.contains(StoreType::Ca, "valid-trust-store"));
        assert!(!store.contains(StoreType::Tsa, "valid-trust-store"));
        assert_eq!(
            store.get(StoreType::Ca, "valid-trust-store").unwrap().len(),
            6
        );
        assert_eq!(
            store
                .get(StoreType::Ca, "valid-trust-store-2")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .get(StoreType::SigningAuthority, "valid-trust-store")
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            store.get(StoreType::Tsa, "test-timestamp").unwrap().len(),
            1
        );
        assert!(store.get(StoreType::Ca, "missing").is_none());
    }

    #[test]
    fn self_signed_leaf_store_loads() {
        let tmp = with_stores(&[("ca", "valid-trust-store-self-signed")]);
        assert!(TrustStore::load(tmp.path()).is_ok());
    }

    #[test]
    fn garbage_file_is_an_error_naming_it() {
        let tmp = with_stores(&[("ca", "trust-store-with-invalid-certs")]);
        match TrustStore::load(tmp.path()) {
            Err(Error::InvalidCertificateFile { path, .. }) => {
                assert!(path.ends_with("trust-store-with-invalid-certs/invalid"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_ca_leaf_in_store_is_refused() {
        let tmp = with_stores(&[("ca", "trust-store-with-leaf-certs")]);
        assert!(matches!(
            TrustStore::load(tmp.path()),
            Err(Error::NotCaOrSelfSigned { .. })
        ));
        let tmp = with_stores(&[("ca", "trust-store-with-leaf-certs-in-single-file")]);
        assert!(matches!(
            TrustStore::load(tmp.path()),
            Err(Error::NotCaOrSelfSigned { .. })
        ));
    }

    #[test]
    fn tsa_store_needs_root_ca() {
        let tmp = with_stores(&[("tsa", "test-nonCA")]);
        assert!(matches!(
            TrustStore::load(tmp.path()),
            Err(Error::TsaNotRoot { .. })
        ));
        let tmp = with_stores(&[("tsa", "test-nonSelfIssued")]);
        assert!(matches!(
            TrustStore::load(tmp.path()),
            Err(Error::TsaNotRoot { .. })
        ));
    }

    #[test]
    fn nested_directory_is_refused() {
        let tmp = with_stores(&[("ca", "valid-trust-store-2")]);
        let nested = tmp.path().join("x509/ca/valid-trust-store-2/sub");
        fs::create_dir(&nested).unwrap();
        match TrustStore::load(tmp.path()) {
            Err(Error::NestedDirectory { path }) => assert_eq!(path, nested),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused() {
        let tmp = with_stores(&[("ca", "valid-trust-store-2")]);
        let store = tmp.path().join("x509/ca/valid-trust-store-2");
        let link = store.join("link.crt");
        std::os::unix::fs::symlink(store.join("GlobalSign.der"), &link).unwrap();
        match TrustStore::load(tmp.path()) {
            Err(Error::Symlink { path }) => assert_eq!(path, link),
            other => panic!("unexpected {other:?}"),
        }
        fs::remove_file(&link).unwrap();

        let other = tempfile::tempdir().unwrap();
        let x509_link = other.path().join("x509");
        std::os::unix::fs::symlink(tmp.path().join("x509"), &x509_link).unwrap();
        match TrustStore::load(other.path()) {
            Err(Error::Symlink { path }) => assert_eq!(path, x509_link),
            other => panic!("unexpected {other:?}"),
        }

        let dir_link = tmp.path().join("x509/ca/linked-store");
        std::os::unix::fs::symlink(&store, &dir_link).unwrap();
        match TrustStore::load(tmp.path()) {
            Err(Error::Symlink { path }) => assert_eq!(path, dir_link),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn layout_errors() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            TrustStore::load(tmp.path()),
            Err(Error::Io { .. })
        ));

        fs::create_dir_all(tmp.path().join("x509/CA")).unwrap();
        assert!(matches!(
            TrustStore::load(tmp.path()),
            Err(Error::UnknownStoreType { .. })
        ));
        fs::remove_dir(tmp.path().join("x509/CA")).unwrap();

        fs::create_dir_all(tmp.path().join("x509/ca/bad name")).unwrap();
        assert!(matches!(
            TrustStore::load(tmp.path()),
            Err(Error::InvalidStoreName { .. })
        ));
        fs::remove_dir(tmp.path().join("x509/ca/bad name")).unwrap();

        // An emptied named store loads, with no certificates (distrusted, not refused).
        fs::create_dir_all(tmp.path().join("x509/ca/empty")).unwrap();
        let store = TrustStore::load(tmp.path()).unwrap();
        assert_eq!(store.get(StoreType::Ca, "empty").map(<[_]>::len), Some(0));
        fs::remove_dir(tmp.path().join("x509/ca/empty")).unwrap();

        // An x509 directory with no stores at all is a valid, empty store.
        let store = TrustStore::load(tmp.path()).unwrap();
        assert!(!store.contains(StoreType::Ca, "empty"));
    }
}
