//! cosign trust material: public key files and a Sigstore `trusted_root.json`,
//! parsed once into [`CosignTrust`].
//!
//! Input: the paths of a scope's `[scope.cosign]` table (read here, at
//! startup or reload, never per pull) or, for tests and benches, the bytes.
//! Output: named keys and a ready `sigstore_verify::Verifier`. Every error
//! names the file.
//!
//! Keys: PEM `PUBLIC KEY` (SubjectPublicKeyInfo) for ECDSA P-256 and P-384,
//! Ed25519, RSA (`rsaEncryption`, or `id-RSASSA-PSS` for a PSS-only key),
//! or PEM `RSA PUBLIC KEY` (PKCS#1). RSA keys verify PKCS#1 v1.5 and PSS
//! signatures with SHA-256 (cosign signs RSA with PKCS#1 v1.5 by default);
//! a key marked `id-RSASSA-PSS` verifies PSS only. RSA keys outside 2048 to
//! 8192 bits are refused. A key is named by its file name.
//!
//! Limits: a key file over [`MAX_KEY_FILE_BYTES`] or a trusted root over
//! [`MAX_TRUSTED_ROOT_BYTES`] is refused.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use const_oid::ObjectIdentifier;
use sigstore_verify::crypto::SigningScheme;
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::DerPublicKey;
use sigstore_verify::Verifier;

use super::provider;

/// Key files larger than this are refused.
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// `trusted_root.json` files larger than this are refused.
pub(crate) const MAX_TRUSTED_ROOT_BYTES: u64 = 4 * 1024 * 1024;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// The algorithm of a cosign key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    P256,
    P384,
    Ed25519,
    Rsa { bits: usize, pss_only: bool },
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P256 => f.write_str("ECDSA P-256"),
            Self::P384 => f.write_str("ECDSA P-384"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Rsa { bits, pss_only } => {
                write!(f, "RSA {bits}{}", if *pss_only { " (PSS)" } else { "" })
            }
        }
    }
}

/// One configured public key.
#[derive(Debug, Clone)]
pub(crate) struct CosignKey {
    name: String,
    kind: KeyKind,
    /// SubjectPublicKeyInfo DER; RSA keys are re-encoded as `rsaEncryption`.
    spki: DerPublicKey,
}

impl CosignKey {
    /// Parses a PEM public key; `name` is the signer name (its file name).
    ///
    /// # Errors
    /// [`KeyProblem`].
    pub(crate) fn from_pem(name: &str, pem: &[u8]) -> Result<Self, KeyProblem> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::pkcs8::EncodePublicKey;
        use rsa::traits::PublicKeyParts;
        let text = std::str::from_utf8(pem).map_err(|_| KeyProblem::Pem)?;
        let start = text.find("-----BEGIN ").ok_or(KeyProblem::Pem)?;
        let (label, der) = der::pem::decode_vec(text[start..].trim_end().as_bytes())
            .map_err(|_| KeyProblem::Pem)?;
        let rsa_key = |key: rsa::RsaPublicKey, pss_only: bool| -> Result<Self, KeyProblem> {
            let bits = key.n().bits();
            if !(2048..=8192).contains(&bits) {
                return Err(KeyProblem::RsaSize { bits });
            }
            let spki = key.to_public_key_der().map_err(|_| KeyProblem::Malformed)?;
            Ok(Self {
                name: name.to_owned(),
                kind: KeyKind::Rsa { bits, pss_only },
                spki: DerPublicKey::new(spki.as_bytes().to_vec()),
            })
        };
        match label {
            "RSA PUBLIC KEY" => {
                let key =
                    rsa::RsaPublicKey::from_pkcs1_der(&der).map_err(|_| KeyProblem::Malformed)?;
                rsa_key(key, false)
            }
            "PUBLIC KEY" => {
                let spki = spki::SubjectPublicKeyInfoRef::try_from(der.as_slice())
                    .map_err(|_| KeyProblem::Malformed)?;
                let raw = spki.subject_public_key.raw_bytes();
                let kind = match spki.algorithm.oid {
                    OID_EC_PUBLIC_KEY => {
                        let curve = spki
                            .algorithm
                            .parameters_oid()
                            .map_err(|_| KeyProblem::Malformed)?;
                        match curve {
                            OID_P256 => {
                                p256::PublicKey::from_sec1_bytes(raw)
                                    .map_err(|_| KeyProblem::Malformed)?;
                                KeyKind::P256
                            }
                            OID_P384 => {
                                p384::PublicKey::from_sec1_bytes(raw)
                                    .map_err(|_| KeyProblem::Malformed)?;
                                KeyKind::P384
                            }
                            other => return Err(KeyProblem::Unsupported { oid: other }),
                        }
                    }
                    OID_ED25519 => {
                        let bytes: [u8; 32] = raw.try_into().map_err(|_| KeyProblem::Malformed)?;
                        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                            .map_err(|_| KeyProblem::Malformed)?;
                        KeyKind::Ed25519
                    }
                    OID_RSA | OID_RSA_PSS => {
                        let key = rsa::RsaPublicKey::from_pkcs1_der(raw)
                            .map_err(|_| KeyProblem::Malformed)?;
                        return rsa_key(key, spki.algorithm.oid == OID_RSA_PSS);
                    }
                    other => return Err(KeyProblem::Unsupported { oid: other }),
                };
                Ok(Self {
                    name: name.to_owned(),
                    kind,
                    spki: DerPublicKey::new(der),
                })
            }
            other => Err(KeyProblem::PemLabel {
                label: other.chars().take(64).collect(),
            }),
        }
    }

    /// The signer name: the key file's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn spki(&self) -> &DerPublicKey {
        &self.spki
    }

    /// The signature schemes a signature by this key may use, over the raw
    /// payload: cosign signs ECDSA P-256 with SHA-256, P-384 with SHA-384,
    /// Ed25519 pure, RSA PKCS#1 v1.5 (or PSS) with SHA-256.
    pub(crate) fn schemes(&self) -> &'static [SigningScheme] {
        match self.kind {
            KeyKind::P256 => &[SigningScheme::EcdsaP256Sha256],
            KeyKind::P384 => &[SigningScheme::EcdsaP384Sha384],
            KeyKind::Ed25519 => &[SigningScheme::Ed25519],
            KeyKind::Rsa {
                pss_only: false, ..
            } => &[SigningScheme::RsaPkcs1Sha256, SigningScheme::RsaPssSha256],
            KeyKind::Rsa { pss_only: true, .. } => &[SigningScheme::RsaPssSha256],
        }
    }
}

/// A parsed `trusted_root.json` and the verifier built from it.
pub(crate) struct SigstoreRoot {
    source: String,
    root: TrustedRoot,
    verifier: Verifier,
}

impl fmt::Debug for SigstoreRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigstoreRoot")
            .field("source", &self.source)
            .field(
                "certificate_authorities",
                &self.root.certificate_authorities.len(),
            )
            .field("tlogs", &self.root.tlogs.len())
            .field("ctlogs", &self.root.ctlogs.len())
            .field(
                "timestamp_authorities",
                &self.root.timestamp_authorities.len(),
            )
            .finish()
    }
}

impl SigstoreRoot {
    /// Parses a trusted root; `source` names it in errors and logs.
    ///
    /// # Errors
    /// [`RootProblem`] when it is not a trusted root, or its keys and
    /// certificates are malformed, duplicated or have an inverted window.
    pub(crate) fn from_json(source: &str, json: &[u8]) -> Result<Self, RootProblem> {
        if !provider::install() {
            return Err(RootProblem::Provider);
        }
        let text = std::str::from_utf8(json).map_err(|_| RootProblem::Utf8)?;
        let root = TrustedRoot::from_json(text).map_err(|e| RootProblem::Parse(Arc::new(e)))?;
        let verifier = Verifier::new(&root).map_err(|e| RootProblem::Material(Arc::new(e)))?;
        Ok(Self {
            source: source.to_owned(),
            root,
            verifier,
        })
    }

    pub(crate) fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

/// The cosign trust material of one scope.
#[derive(Debug, Clone, Default)]
pub(crate) struct CosignTrust {
    pub(crate) keys: Vec<CosignKey>,
    pub(crate) root: Option<Arc<SigstoreRoot>>,
}

impl CosignTrust {
    /// Reads and parses the files a `[scope.cosign]` table names.
    ///
    /// Blocking (file reads): call at startup or reload, or on `spawn_blocking`.
    ///
    /// # Errors
    /// [`TrustError`], naming the file.
    pub(crate) fn load(keys: &[PathBuf], trusted_root: Option<&Path>) -> Result<Self, TrustError> {
        let mut out = Self::default();
        for path in keys {
            let bytes = read_capped(path, MAX_KEY_FILE_BYTES)?;
            let name = pullgate_policy::requirements::cosign::key_name(path);
            let key = CosignKey::from_pem(&name, &bytes).map_err(|problem| TrustError::Key {
                path: path.clone(),
                problem,
            })?;
            out.keys.push(key);
        }
        if let Some(path) = trusted_root {
            let bytes = read_capped(path, MAX_TRUSTED_ROOT_BYTES)?;
            let root = SigstoreRoot::from_json(&path.display().to_string(), &bytes).map_err(
                |problem| TrustError::TrustedRoot {
                    path: path.to_path_buf(),
                    problem,
                },
            )?;
            out.root = Some(Arc::new(root));
        }
        Ok(out)
    }
}

fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, TrustError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| TrustError::Read {
        path: path.to_path_buf(),
        source: Arc::new(e),
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TrustError::Read {
            path: path.to_path_buf(),
            source: Arc::new(e),
        })?;
    if bytes.len() as u64 > limit {
        return Err(TrustError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(bytes)
}

/// Why a cosign trust file cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TrustError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("{} is over the {limit}-byte limit", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("cosign key {}: {problem}", path.display())]
    Key { path: PathBuf, problem: KeyProblem },
    #[error("sigstore trusted root {}: {problem}", path.display())]
    TrustedRoot { path: PathBuf, problem: RootProblem },
}

/// What is wrong with a key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyProblem {
    #[error("it is not a PEM file")]
    Pem,
    #[error("it has a PEM block of type {label:?}; expected PUBLIC KEY or RSA PUBLIC KEY")]
    PemLabel { label: String },
    #[error("the key does not parse")]
    Malformed,
    #[error("key algorithm or curve {oid} is not supported (ECDSA P-256/P-384, Ed25519, RSA)")]
    Unsupported { oid: ObjectIdentifier },
    #[error("RSA keys must have 2048 to 8192 bits, this one has {bits}")]
    RsaSize { bits: usize },
}

/// What is wrong with a trusted root.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RootProblem {
    #[error("it is not UTF-8")]
    Utf8,
    #[error("it is not a trusted root: {0}")]
    Parse(Arc<sigstore_verify::trust_root::Error>),
    #[error("its trust material is unusable: {0}")]
    Material(Arc<sigstore_verify::Error>),
    #[error("another Sigstore crypto provider is installed in this process")]
    Provider,
}
