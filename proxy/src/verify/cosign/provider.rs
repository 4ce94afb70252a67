//! The cryptography behind `sigstore-verify`: a `CryptoProvider` on the
//! RustCrypto crates pullgate already uses for Notary signatures.
//!
//! Hand-written because `sigstore-crypto` 0.15.1 ships only an `aws-lc-rs`
//! backend (a C library pullgate does not link); with its default feature off
//! it asks the embedder for a provider through
//! `sigstore_crypto::install_default_provider`. This one verifies only: it
//! signs nothing and generates no keys (the trait's defaults refuse both).
//!
//! Input: a signing scheme, the raw `subjectPublicKey` bytes the crate has
//! already extracted and size-checked (uncompressed SEC1 point for ECDSA, 32
//! bytes for Ed25519, PKCS#1 `RSAPublicKey` DER of 2048 to 8192 bits for RSA),
//! the message or its digest, and the signature. Output: `Ok(())` or a
//! `sigstore_crypto::Error`. Signature encodings are the ones Sigstore uses
//! (and `aws-lc-rs`'s `*_ASN1` / `RSA_*_2048_8192_*` algorithms accept):
//! ECDSA as an ASN.1 DER `Ecdsa-Sig-Value`, RSA-PSS with MGF1 on the same
//! hash and a salt as long as the hash. ML-DSA is refused (no RustCrypto
//! implementation is in pullgate's tree).
//!
//! Never panics: the one-shot hash methods are overridden, so the trait's
//! `expect`-based defaults are never reached.

use std::sync::OnceLock;

use sha2::{Digest as _, Sha256, Sha384, Sha512};
use signature::hazmat::PrehashVerifier;
use sigstore_verify::crypto::provider::{CryptoProvider, HashContext};
use sigstore_verify::crypto::{Error as CryptoError, SigningScheme};
use sigstore_verify::types::HashAlgorithm;

/// The provider pullgate installs.
#[derive(Debug)]
pub(crate) struct RustCrypto;

static PROVIDER: RustCrypto = RustCrypto;
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs [`RustCrypto`] as `sigstore-crypto`'s process-wide provider, once.
///
/// Returns whether the active provider is this one. It is `false` only if
/// something else in the process installed another provider first; the
/// verifier then refuses to run (fail closed) rather than trust unknown code.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        // An `Err` means a provider is already installed: check it is ours.
        let _ = sigstore_verify::crypto::install_default_provider(&PROVIDER);
        sigstore_verify::crypto::try_default_provider().is_some_and(|p| {
            std::ptr::addr_eq(
                p as *const dyn CryptoProvider,
                &PROVIDER as &dyn CryptoProvider as *const dyn CryptoProvider,
            )
        })
    })
}

enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl HashContext for Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn finalize(self: Box<Self>) -> Vec<u8> {
        match *self {
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha384(h) => h.finalize().to_vec(),
            Self::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

fn digest(alg: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match alg {
        HashAlgorithm::Sha2256 => Ok(Sha256::digest(data).to_vec()),
        HashAlgorithm::Sha2384 => Ok(Sha384::digest(data).to_vec()),
        HashAlgorithm::Sha2512 => Ok(Sha512::digest(data).to_vec()),
        other => Err(unsupported_hash(other)),
    }
}

fn unsupported_hash(alg: HashAlgorithm) -> CryptoError {
    CryptoError::UnsupportedAlgorithm(format!("cannot compute {alg} digests"))
}

fn invalid(scheme: SigningScheme) -> CryptoError {
    CryptoError::Verification(format!("{} signature invalid", scheme.name()))
}

fn bad_key(scheme: SigningScheme) -> CryptoError {
    CryptoError::InvalidKey(format!("public key unusable for {}", scheme.name()))
}

/// Verifies `sig` over a digest already computed with the scheme's hash.
fn verify_digest(
    scheme: SigningScheme,
    key: &[u8],
    digest: &[u8],
    sig: &[u8],
) -> Result<(), CryptoError> {
    use SigningScheme as S;
    match scheme {
        S::EcdsaP256Sha256 | S::EcdsaP256Sha384 => {
            let vk =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| bad_key(scheme))?;
            let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| invalid(scheme))?;
            vk.verify_prehash(digest, &sig).map_err(|_| invalid(scheme))
        }
        S::EcdsaP384Sha256 | S::EcdsaP384Sha384 => {
            let vk =
                p384::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| bad_key(scheme))?;
            let sig = p384::ecdsa::Signature::from_der(sig).map_err(|_| invalid(scheme))?;
            vk.verify_prehash(digest, &sig).map_err(|_| invalid(scheme))
        }
        S::RsaPkcs1Sha256 | S::RsaPkcs1Sha384 | S::RsaPkcs1Sha512 => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let key = rsa::RsaPublicKey::from_pkcs1_der(key).map_err(|_| bad_key(scheme))?;
            let padding = match scheme {
                S::RsaPkcs1Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                S::RsaPkcs1Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                _ => rsa::Pkcs1v15Sign::new::<Sha512>(),
            };
            key.verify(padding, digest, sig)
                .map_err(|_| invalid(scheme))
        }
        S::RsaPssSha256 | S::RsaPssSha384 | S::RsaPssSha512 => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let key = rsa::RsaPublicKey::from_pkcs1_der(key).map_err(|_| bad_key(scheme))?;
            // Salt length = hash length, as `RSA_PSS_2048_8192_SHA*` require.
            let padding = match scheme {
                S::RsaPssSha256 => rsa::Pss::new::<Sha256>(),
                S::RsaPssSha384 => rsa::Pss::new::<Sha384>(),
                _ => rsa::Pss::new::<Sha512>(),
            };
            key.verify(padding, digest, sig)
                .map_err(|_| invalid(scheme))
        }
        _ => Err(CryptoError::UnsupportedAlgorithm(format!(
            "{} is not supported by pullgate",
            scheme.name()
        ))),
    }
}

impl CryptoProvider for RustCrypto {
    fn hash(
        &self,
        algorithm: HashAlgorithm,
    ) -> sigstore_verify::crypto::Result<Box<dyn HashContext>> {
        Ok(Box::new(match algorithm {
            HashAlgorithm::Sha2256 => Hasher::Sha256(Sha256::new()),
            HashAlgorithm::Sha2384 => Hasher::Sha384(Sha384::new()),
            HashAlgorithm::Sha2512 => Hasher::Sha512(Sha512::new()),
            other => return Err(unsupported_hash(other)),
        }))
    }

    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn sha384(&self, data: &[u8]) -> [u8; 48] {
        Sha384::digest(data).into()
    }

    fn sha512(&self, data: &[u8]) -> [u8; 64] {
        Sha512::digest(data).into()
    }

    fn verify_raw(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> sigstore_verify::crypto::Result<()> {
        if scheme == SigningScheme::Ed25519 {
            let key: [u8; 32] = spki_pubkey_bytes.try_into().map_err(|_| bad_key(scheme))?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| bad_key(scheme))?;
            let sig =
                ed25519_dalek::Signature::from_slice(signature).map_err(|_| invalid(scheme))?;
            // Strict: no small-order keys or non-canonical signatures.
            return vk.verify_strict(data, &sig).map_err(|_| invalid(scheme));
        }
        let Some(alg) = scheme.hash_algorithm() else {
            return Err(CryptoError::UnsupportedAlgorithm(format!(
                "{} is not supported by pullgate",
                scheme.name()
            )));
        };
        verify_digest(scheme, spki_pubkey_bytes, &digest(alg, data)?, signature)
    }

    fn verify_prehashed(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        digest: &[u8],
        signature: &[u8],
    ) -> sigstore_verify::crypto::Result<()> {
        // The crate passes only prehash-capable schemes with a digest of the
        // scheme's hash length; check anyway, a wrong length is no signature.
        match scheme.hash_algorithm() {
            Some(alg) if alg.digest_size() == digest.len() => {
                verify_digest(scheme, spki_pubkey_bytes, digest, signature)
            }
            _ => Err(invalid(scheme)),
        }
    }
}
