//! A signing key in the two forms a test needs: rcgen's, to issue
//! certificates and CRLs, and the signing crate's, to sign envelopes.
//!
//! RSA keys are never generated (the `rsa` crate takes ~25 s for a 3072-bit
//! key in a debug build): they are fixed test-only keys (`keys/`).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, Result};
use p256::pkcs8::DecodePrivateKey as _;
use rcgen::KeyPair;
use rsa::traits::PublicKeyParts as _;
use sha2::{Sha256, Sha512};
use signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};

/// The fixed RSA-2048 test key of [`Key::rsa2048`], PKCS#8 PEM.
pub const RSA_2048_PEM: &str = include_str!("../keys/rsa2048-test-only.pk8.pem");
/// The fixed RSA-4096 test key of [`Key::rsa4096`], PKCS#8 PEM.
pub const RSA_4096_PEM: &str = include_str!("../keys/rsa4096-test-only.pk8.pem");

/// Pre-generated RSA-3072 keys (`keys/rsa3072/README.md`), handed out in rotation.
const RSA_3072_POOL: [&str; 6] = [
    include_str!("../keys/rsa3072/key1.pem"),
    include_str!("../keys/rsa3072/key2.pem"),
    include_str!("../keys/rsa3072/key3.pem"),
    include_str!("../keys/rsa3072/key4.pem"),
    include_str!("../keys/rsa3072/key5.pem"),
    include_str!("../keys/rsa3072/key6.pem"),
];

/// Next key of [`RSA_3072_POOL`] to hand out.
static RSA_3072_NEXT: AtomicUsize = AtomicUsize::new(0);

/// A private key usable by rcgen (certificates, CRLs) and for JWS / COSE signatures.
pub struct Key {
    /// The key as rcgen holds it (to issue certificates and sign CRLs).
    pub rcgen: KeyPair,
    signer: Signer,
}

enum Signer {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.signer {
            Signer::P256(_) => "Key::P256(..)",
            Signer::P384(_) => "Key::P384(..)",
            Signer::Rsa(_) => "Key::Rsa(..)",
        })
    }
}

impl Key {
    /// A fresh ECDSA P-256 key (ES256, COSE -7).
    ///
    /// # Errors
    /// Key generation failed.
    pub fn p256() -> Result<Self> {
        let rcgen = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let signer = p256::ecdsa::SigningKey::from_pkcs8_der(rcgen.serialized_der())
            .map_err(|e| anyhow!("re-reading a generated P-256 key: {e}"))?;
        Ok(Self {
            rcgen,
            signer: Signer::P256(signer),
        })
    }

    /// A fresh ECDSA P-384 key (ES384, COSE -35).
    ///
    /// # Errors
    /// Key generation failed.
    pub fn p384() -> Result<Self> {
        let rcgen = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
        let signer = p384::ecdsa::SigningKey::from_pkcs8_der(rcgen.serialized_der())
            .map_err(|e| anyhow!("re-reading a generated P-384 key: {e}"))?;
        Ok(Self {
            rcgen,
            signer: Signer::P384(signer),
        })
    }

    /// The fixed RSA-2048 test key (PS256).
    ///
    /// # Errors
    /// The key does not parse.
    pub fn rsa2048() -> Result<Self> {
        Self::rsa(RSA_2048_PEM)
    }

    /// The fixed RSA-4096 test key (PS512).
    ///
    /// # Errors
    /// The key does not parse.
    pub fn rsa4096() -> Result<Self> {
        Self::rsa(RSA_4096_PEM)
    }

    /// The next RSA-3072 key of the pool (PS256): keys taken in a row differ,
    /// six apart they repeat.
    ///
    /// # Errors
    /// The key does not parse.
    pub fn rsa3072() -> Result<Self> {
        let n = RSA_3072_NEXT.fetch_add(1, Ordering::Relaxed);
        Self::rsa(RSA_3072_POOL[n % RSA_3072_POOL.len()])
    }

    fn rsa(pem: &str) -> Result<Self> {
        let rcgen = KeyPair::from_pkcs8_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256)?;
        let key = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(pem)?;
        Ok(Self {
            rcgen,
            signer: Signer::Rsa(Box::new(key)),
        })
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.rcgen.public_key_der()
    }

    /// The ECDSA P-256 key, if this is one (timestamp tokens and cosign
    /// signatures are DER ECDSA, not JWS).
    pub fn p256_signing_key(&self) -> Option<&p256::ecdsa::SigningKey> {
        match &self.signer {
            Signer::P256(k) => Some(k),
            _ => None,
        }
    }

    /// A JWS / COSE signature over `msg`: raw `r||s` for ECDSA; RSASSA-PSS
    /// with a salt as long as the hash for RSA, SHA-512 for keys of 4096
    /// bits and more (PS512), SHA-256 below (PS256), the Notary Project's
    /// key-size mapping.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            Signer::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            Signer::Rsa(k) if k.size() >= 512 => {
                let signer = rsa::pss::BlindedSigningKey::<Sha512>::new((**k).clone());
                signer.sign_with_rng(&mut rand::thread_rng(), msg).to_vec()
            }
            Signer::Rsa(k) => {
                let signer = rsa::pss::BlindedSigningKey::<Sha256>::new((**k).clone());
                signer.sign_with_rng(&mut rand::thread_rng(), msg).to_vec()
            }
        }
    }
}
