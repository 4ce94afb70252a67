//! Public keys of certificates and the signatures they verify: RSA
//! (PKCS#1 v1.5 and PSS) and ECDSA (P-256, P-384, P-521), with the hash each
//! signature algorithm names.

use std::fmt;

use const_oid::db::rfc5912;
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use rsa::pkcs1::RsaPssParams;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use signature::hazmat::PrehashVerifier;
use signature::Verifier;
use spki::AlgorithmIdentifierOwned;

use super::{CertificateError, MAX_RSA_BITS, MIN_RSA_BITS};

/// The key kinds a Notary Project signing certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa { bits: usize },
    P256,
    P384,
    P521,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::P256 => f.write_str("ECDSA P-256"),
            KeyKind::P384 => f.write_str("ECDSA P-384"),
            KeyKind::P521 => f.write_str("ECDSA P-521"),
        }
    }
}

/// SHA-2 hash functions used by the supported signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(crate) fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(msg).to_vec(),
            Hash::Sha384 => Sha384::digest(msg).to_vec(),
            Hash::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }

    pub(crate) fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        match oid {
            rfc5912::ID_SHA_256 => Some(Hash::Sha256),
            rfc5912::ID_SHA_384 => Some(Hash::Sha384),
            rfc5912::ID_SHA_512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// Output length in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// A parsed public key.
#[derive(Clone)]
pub(crate) enum PublicKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.kind())
    }
}

impl PublicKey {
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Rsa(k) => KeyKind::Rsa { bits: k.n().bits() },
            PublicKey::P256(_) => KeyKind::P256,
            PublicKey::P384(_) => KeyKind::P384,
            PublicKey::P521(_) => KeyKind::P521,
        }
    }

    pub(super) fn from_spki(
        spki: &spki::SubjectPublicKeyInfoOwned,
    ) -> Result<Self, CertificateError> {
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CertificateError::InvalidPublicKey)?;
        match spki.algorithm.oid {
            rfc5912::RSA_ENCRYPTION => {
                let pk = rsa::pkcs1::RsaPublicKey::from_der(key_bytes)
                    .map_err(|_| CertificateError::InvalidPublicKey)?;
                let n = BigUint::from_bytes_be(pk.modulus.as_bytes());
                let e = BigUint::from_bytes_be(pk.public_exponent.as_bytes());
                let bits = n.bits();
                if bits < MIN_RSA_BITS {
                    return Err(CertificateError::RsaKeyTooSmall { bits });
                }
                if bits > MAX_RSA_BITS {
                    return Err(CertificateError::RsaKeyTooLarge { bits });
                }
                RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                    .map(PublicKey::Rsa)
                    .map_err(|_| CertificateError::InvalidPublicKey)
            }
            rfc5912::ID_EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as().ok())
                    .ok_or(CertificateError::InvalidPublicKey)?;
                match curve {
                    rfc5912::SECP_256_R_1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P256)
                        .map_err(|_| CertificateError::InvalidPublicKey),
                    rfc5912::SECP_384_R_1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P384)
                        .map_err(|_| CertificateError::InvalidPublicKey),
                    rfc5912::SECP_521_R_1 => p521::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P521)
                        .map_err(|_| CertificateError::InvalidPublicKey),
                    oid => Err(CertificateError::UnsupportedPublicKey { oid }),
                }
            }
            oid => Err(CertificateError::UnsupportedPublicKey { oid }),
        }
    }

    /// RSASSA-PSS with MGF1 over the same hash and the given salt length.
    pub(crate) fn verify_pss(&self, hash: Hash, salt_len: usize, msg: &[u8], sig: &[u8]) -> bool {
        let PublicKey::Rsa(key) = self else {
            return false;
        };
        let hashed = hash.digest(msg);
        let scheme = match hash {
            Hash::Sha256 => Pss::new_with_salt::<Sha256>(salt_len),
            Hash::Sha384 => Pss::new_with_salt::<Sha384>(salt_len),
            Hash::Sha512 => Pss::new_with_salt::<Sha512>(salt_len),
        };
        key.verify(scheme, &hashed, sig).is_ok()
    }

    fn verify_pkcs1v15(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let PublicKey::Rsa(key) = self else {
            return false;
        };
        let hashed = hash.digest(msg);
        let scheme = match hash {
            Hash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Hash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Hash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        };
        key.verify(scheme, &hashed, sig).is_ok()
    }

    /// ECDSA with the curve's own hash (P-256/SHA-256, P-384/SHA-384,
    /// P-521/SHA-512) and the fixed-width `r || s` signature of JWS.
    pub(crate) fn verify_ecdsa_fixed(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::P256(k) => {
                p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::P384(k) => {
                p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::P521(k) => {
                p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::Rsa(_) => false,
        }
    }

    /// ECDSA over `hash(msg)` with a DER-encoded signature (as in certificates).
    fn verify_ecdsa_der(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let prehash = hash.digest(msg);
        match self {
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            PublicKey::P521(k) => p521::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            PublicKey::Rsa(_) => false,
        }
    }
}

/// A certificate signature algorithm we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertSignatureAlgorithm {
    RsaPkcs1(Hash),
    RsaPss { hash: Hash, salt_len: usize },
    Ecdsa(Hash),
}

impl CertSignatureAlgorithm {
    /// [Signature spec, Other requirements](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#other-requirements):
    /// "Any certificate in the certificate chain MUST NOT use SHA1WithRSA and
    /// ECDSAWithSHA1 signatures." We accept only the SHA-2 family.
    pub(super) fn from_algorithm(alg: &AlgorithmIdentifierOwned) -> Result<Self, CertificateError> {
        let unsupported = || CertificateError::UnsupportedSignatureAlgorithm { oid: alg.oid };
        match alg.oid {
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Ok(Self::RsaPkcs1(Hash::Sha256)),
            rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Ok(Self::RsaPkcs1(Hash::Sha384)),
            rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Ok(Self::RsaPkcs1(Hash::Sha512)),
            rfc5912::ECDSA_WITH_SHA_256 => Ok(Self::Ecdsa(Hash::Sha256)),
            rfc5912::ECDSA_WITH_SHA_384 => Ok(Self::Ecdsa(Hash::Sha384)),
            rfc5912::ECDSA_WITH_SHA_512 => Ok(Self::Ecdsa(Hash::Sha512)),
            rfc5912::ID_RSASSA_PSS => {
                let params = alg.parameters.as_ref().ok_or_else(unsupported)?;
                let der = params.to_der().map_err(|_| unsupported())?;
                let params = RsaPssParams::from_der(&der).map_err(|_| unsupported())?;
                let hash = Hash::from_oid(params.hash.oid).ok_or_else(unsupported)?;
                // The rsa crate runs MGF1 with the message hash, so only that
                // combination (the one every CA uses) is accepted.
                let mgf_hash = params
                    .mask_gen
                    .parameters
                    .as_ref()
                    .and_then(|p| Hash::from_oid(p.oid));
                if params.mask_gen.oid != rfc5912::ID_MGF_1 || mgf_hash != Some(hash) {
                    return Err(unsupported());
                }
                Ok(Self::RsaPss {
                    hash,
                    salt_len: usize::from(params.salt_len),
                })
            }
            _ => Err(unsupported()),
        }
    }

    pub(super) fn verify(self, key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::RsaPkcs1(h) => key.verify_pkcs1v15(h, msg, sig),
            Self::RsaPss { hash, salt_len } => key.verify_pss(hash, salt_len, msg, sig),
            Self::Ecdsa(h) => key.verify_ecdsa_der(h, msg, sig),
        }
    }
}

/// Verifies a CMS `SignerInfo` signature (RFC 5652 §5.6) made with `key`:
/// `signature_algorithm` as in certificates, or plain `rsaEncryption`, which
/// CMS uses to mean PKCS#1 v1.5 with the SignerInfo's `digest`.
///
/// # Errors
/// [`CertificateError::UnsupportedSignatureAlgorithm`] for SHA-1 and
/// anything outside the SHA-2 RSA/ECDSA family; `Ok(false)` when the
/// signature does not verify.
pub(crate) fn verify_cms_signature(
    key: &PublicKey,
    signature_algorithm: &AlgorithmIdentifierOwned,
    digest: Hash,
    msg: &[u8],
    sig: &[u8],
) -> Result<bool, CertificateError> {
    if signature_algorithm.oid == rfc5912::RSA_ENCRYPTION {
        return Ok(key.verify_pkcs1v15(digest, msg, sig));
    }
    Ok(CertSignatureAlgorithm::from_algorithm(signature_algorithm)?.verify(key, msg, sig))
}
