//! The signature over an OCSP response or a CRL, by the issuer's (or the
//! delegated responder's) key: RSA PKCS#1 v1.5 and PSS, ECDSA.

use const_oid::db::rfc5912;
use der::{Decode, Encode};
use rsa::pkcs1::RsaPssParams;
use rsa::{Pkcs1v15Sign, Pss};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use signature::hazmat::PrehashVerifier;
use spki::AlgorithmIdentifierOwned;

use crate::verify::x509::PublicKey;

use super::{RevocationError, ECDSA_WITH_SHA_1};

/// Verifies a signature made by `key` over `msg` with algorithm `alg`.
///
/// RSA PKCS#1 v1.5, RSASSA-PSS (MGF1 with the same hash) and ECDSA, with
/// SHA-256/384/512 or SHA-1: these are a responder's or CRL issuer's
/// signatures, not certificate signatures, and notation-core-go accepts
/// SHA-1 for them (Go's `CheckSignature`).
pub(super) fn verify_signed(
    what: &'static str,
    alg: &AlgorithmIdentifierOwned,
    key: &PublicKey,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), RevocationError> {
    let unsupported = || RevocationError::UnsupportedSignatureAlgorithm { what, oid: alg.oid };
    let ok = match alg.oid {
        rfc5912::SHA_1_WITH_RSA_ENCRYPTION => rsa_pkcs1::<Sha1>(key, msg, sig),
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => rsa_pkcs1::<Sha256>(key, msg, sig),
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION => rsa_pkcs1::<Sha384>(key, msg, sig),
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION => rsa_pkcs1::<Sha512>(key, msg, sig),
        ECDSA_WITH_SHA_1 => ecdsa(key, &Sha1::digest(msg), sig),
        rfc5912::ECDSA_WITH_SHA_256 => ecdsa(key, &Sha256::digest(msg), sig),
        rfc5912::ECDSA_WITH_SHA_384 => ecdsa(key, &Sha384::digest(msg), sig),
        rfc5912::ECDSA_WITH_SHA_512 => ecdsa(key, &Sha512::digest(msg), sig),
        rfc5912::ID_RSASSA_PSS => {
            let der = alg
                .parameters
                .as_ref()
                .and_then(|p| p.to_der().ok())
                .ok_or_else(unsupported)?;
            let params = RsaPssParams::from_der(&der).map_err(|_| unsupported())?;
            let mgf_hash = params
                .mask_gen
                .parameters
                .as_ref()
                .map(|p| p.oid)
                .ok_or_else(unsupported)?;
            if params.mask_gen.oid != rfc5912::ID_MGF_1 || mgf_hash != params.hash.oid {
                return Err(unsupported());
            }
            let salt = usize::from(params.salt_len);
            let PublicKey::Rsa(k) = key else {
                return Err(RevocationError::BadSignature { what });
            };
            match params.hash.oid {
                rfc5912::ID_SHA_256 => k
                    .verify(
                        Pss::new_with_salt::<Sha256>(salt),
                        &Sha256::digest(msg),
                        sig,
                    )
                    .is_ok(),
                rfc5912::ID_SHA_384 => k
                    .verify(
                        Pss::new_with_salt::<Sha384>(salt),
                        &Sha384::digest(msg),
                        sig,
                    )
                    .is_ok(),
                rfc5912::ID_SHA_512 => k
                    .verify(
                        Pss::new_with_salt::<Sha512>(salt),
                        &Sha512::digest(msg),
                        sig,
                    )
                    .is_ok(),
                _ => return Err(unsupported()),
            }
        }
        _ => return Err(unsupported()),
    };
    if ok {
        Ok(())
    } else {
        Err(RevocationError::BadSignature { what })
    }
}

fn rsa_pkcs1<D>(key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + const_oid::AssociatedOid,
{
    let PublicKey::Rsa(k) = key else {
        return false;
    };
    k.verify(Pkcs1v15Sign::new::<D>(), &D::digest(msg), sig)
        .is_ok()
}

pub(super) fn ecdsa(key: &PublicKey, prehash: &[u8], sig: &[u8]) -> bool {
    match key {
        PublicKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(prehash, &s).is_ok()),
        PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(prehash, &s).is_ok()),
        PublicKey::P521(k) => p521::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(prehash, &s).is_ok()),
        PublicKey::Rsa(_) => false,
    }
}
