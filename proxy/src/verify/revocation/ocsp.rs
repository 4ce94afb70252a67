//! OCSP (RFC 6960): a response checked against the certificate and its
//! issuer at `now` — the responder (the issuer or a delegate it authorised),
//! the signature, the CertID, `thisUpdate`/`nextUpdate`, and the status.

use std::time::SystemTime;

use const_oid::db::{rfc5280, rfc5912, rfc6960};
use const_oid::ObjectIdentifier;
use der::asn1::GeneralizedTime;
use der::{Decode, Encode};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage};
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspResponseStatus, ResponderId, SingleResponse,
};

use crate::verify::x509::{Certificate, PublicKey};

use super::cert_fields::{first_inner_tlv, parse};
use super::signed::verify_signed;
use super::{Method, RevocationError, RevocationStatus, CLOCK_SKEW};

/// A parsed OCSP response (`successful`, `id-pkix-ocsp-basic`), not yet
/// checked against any certificate.
#[derive(Debug, Clone)]
pub(crate) struct OcspResponse {
    basic: BasicOcspResponse,
    tbs: Vec<u8>,
}

impl OcspResponse {
    /// Parses a DER `OCSPResponse`.
    ///
    /// # Errors
    /// `Malformed`, `ResponderStatus` for a non-successful answer, or
    /// `UnsupportedResponseType`.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, RevocationError> {
        let malformed = RevocationError::Malformed {
            what: "OCSP response",
        };
        let outer = x509_ocsp::OcspResponse::from_der(der).map_err(|_| malformed.clone())?;
        if outer.response_status != OcspResponseStatus::Successful {
            return Err(RevocationError::ResponderStatus {
                status: outer.response_status,
            });
        }
        let bytes = outer.response_bytes.ok_or_else(|| malformed.clone())?;
        // RFC 6960 §4.2.1: "OCSP responders SHALL be capable of producing
        // responses of the id-pkix-ocsp-basic response type."
        if bytes.response_type != rfc6960::ID_PKIX_OCSP_BASIC {
            return Err(RevocationError::UnsupportedResponseType {
                oid: bytes.response_type,
            });
        }
        let basic_der = bytes.response.as_bytes();
        let basic = BasicOcspResponse::from_der(basic_der).map_err(|_| malformed.clone())?;
        let tbs = first_inner_tlv(basic_der).ok_or(malformed)?;
        Ok(Self { basic, tbs })
    }

    /// The `nextUpdate` of the response about `cert`, if it has one.
    pub(crate) fn next_update_for(
        &self,
        cert: &Certificate,
        issuer: &Certificate,
    ) -> Option<SystemTime> {
        let cert = parse(cert).ok()?;
        let issuer = parse(issuer).ok()?;
        self.single_for(&cert, &issuer)?
            .next_update
            .map(|t| t.0.to_system_time())
    }

    fn single_for(
        &self,
        cert: &x509_cert::Certificate,
        issuer: &x509_cert::Certificate,
    ) -> Option<&SingleResponse> {
        self.basic
            .tbs_response_data
            .responses
            .iter()
            .find(|r| cert_id_matches(&r.cert_id, cert, issuer))
    }
}

/// Whether `id` names `cert` as issued by `issuer` (RFC 6960 §4.1.1: hashes
/// of the issuer's DN and of its public key's BIT STRING value, and the serial).
fn cert_id_matches(
    id: &CertId,
    cert: &x509_cert::Certificate,
    issuer: &x509_cert::Certificate,
) -> bool {
    if id.serial_number.as_bytes() != cert.tbs_certificate.serial_number.as_bytes() {
        return false;
    }
    let Ok(name) = issuer.tbs_certificate.subject.to_der() else {
        return false;
    };
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let hash = |data: &[u8]| -> Option<Vec<u8>> {
        Some(match id.hash_algorithm.oid {
            rfc5912::ID_SHA_1 => Sha1::digest(data).to_vec(),
            rfc5912::ID_SHA_256 => Sha256::digest(data).to_vec(),
            rfc5912::ID_SHA_384 => Sha384::digest(data).to_vec(),
            rfc5912::ID_SHA_512 => Sha512::digest(data).to_vec(),
            _ => return None,
        })
    };
    hash(&name).is_some_and(|h| h == id.issuer_name_hash.as_bytes())
        && hash(key).is_some_and(|h| h == id.issuer_key_hash.as_bytes())
}

fn responder_is(rid: &ResponderId, cert: &x509_cert::Certificate) -> bool {
    match rid {
        ResponderId::ByName(name) => {
            matches!((name.to_der(), cert.tbs_certificate.subject.to_der()), (Ok(a), Ok(b)) if a == b)
        }
        // RFC 6960 §4.2.1: "KeyHash ::= OCTET STRING -- SHA-1 hash of
        // responder's public key (excluding the tag and length fields)".
        ResponderId::ByKey(hash) => {
            Sha1::digest(
                cert.tbs_certificate
                    .subject_public_key_info
                    .subject_public_key
                    .raw_bytes(),
            )[..]
                == *hash.as_bytes()
        }
    }
}

fn has_eku(cert: &x509_cert::Certificate, eku: ObjectIdentifier) -> bool {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == rfc5280::ID_CE_EXT_KEY_USAGE)
        .any(|e| {
            ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).is_ok_and(|k| k.0.contains(&eku))
        })
}

pub(super) fn key_usage(cert: &x509_cert::Certificate) -> Option<KeyUsage> {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == rfc5280::ID_CE_KEY_USAGE)
        .and_then(|e| KeyUsage::from_der(e.extn_value.as_bytes()).ok())
}

fn valid_at(cert: &x509_cert::Certificate, at: SystemTime) -> bool {
    let v = &cert.tbs_certificate.validity;
    v.not_before.to_system_time() <= at && at <= v.not_after.to_system_time()
}

/// Finds the key that may sign OCSP responses about certificates of `issuer`.
///
/// RFC 6960 §4.2.2.2: the signer MUST be "1. the CA who issued the
/// certificate in question, or ... 3. a CA Designated Responder (Authorized
/// Responder, defined in Section 4.2.2.2) who holds a specially marked
/// certificate issued directly by the CA, indicating that the responder may
/// issue OCSP responses for that CA". The marking is id-kp-OCSPSigning.
/// The spec: "The OCSP signing certificate must be issued by the same CA as
/// the certificate being verified or the OCSP response must be signed by the
/// issuing CA." (Locally configured trusted responders, case 2, are not
/// supported.)
fn ocsp_signer_key(
    basic: &BasicOcspResponse,
    issuer: &Certificate,
    issuer_parsed: &x509_cert::Certificate,
    now: SystemTime,
) -> Option<PublicKey> {
    let rid = &basic.tbs_response_data.responder_id;
    if responder_is(rid, issuer_parsed) {
        return Some(issuer.public_key().clone());
    }
    for candidate in basic.certs.iter().flatten() {
        if !responder_is(rid, candidate) {
            continue;
        }
        let Ok(der) = candidate.to_der() else {
            continue;
        };
        let Ok(delegate) = Certificate::from_der(&der) else {
            continue;
        };
        if delegate.is_issued_by(issuer)
            && has_eku(candidate, rfc5280::ID_KP_OCSP_SIGNING)
            && valid_at(candidate, now)
        {
            // TODO(#3): "If id-pkix-ocsp-nocheck extension is not present on
            // the OCSP signing certificate then revocation checking must be
            // performed using CRLs for the OCSP signing certificate" — not
            // done, as notation-core-go does not do it either.
            return Some(delegate.public_key().clone());
        }
    }
    None
}

/// Checks an OCSP response about `cert` (issued by `issuer`) at `now`.
///
/// [Revocation Checking with OCSP]: verify the signature and the signer,
/// that the response is not expired, then read `certStatus`; a revoked
/// certificate whose `invalidityDate` is after the authentic signing time
/// was still good when it signed.
///
/// # Errors
/// Why the response cannot say good or revoked.
///
/// [Revocation Checking with OCSP]: https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#revocation-checking-with-ocsp
pub(crate) fn check_ocsp(
    resp: &OcspResponse,
    cert: &Certificate,
    issuer: &Certificate,
    authentic_signing_time: Option<SystemTime>,
    now: SystemTime,
) -> Result<RevocationStatus, RevocationError> {
    const WHAT: &str = "OCSP response";
    let cert_parsed = parse(cert)?;
    let issuer_parsed = parse(issuer)?;
    let single = resp
        .single_for(&cert_parsed, &issuer_parsed)
        .ok_or(RevocationError::NoMatchingResponse)?;
    // "Verify the signature of the OCSP response. This step also includes
    // verifying the OSCP response signing certificate is valid and trusted."
    let key = ocsp_signer_key(&resp.basic, issuer, &issuer_parsed, now)
        .ok_or(RevocationError::UnauthorizedSigner)?;
    let sig = resp
        .basic
        .signature
        .as_bytes()
        .ok_or(RevocationError::Malformed { what: WHAT })?;
    verify_signed(WHAT, &resp.basic.signature_algorithm, &key, &resp.tbs, sig)?;
    // RFC 6960 §3.2 (5): "The time at which the status being indicated is
    // known to be correct (thisUpdate) is sufficiently recent".
    let this_update = single.this_update.0.to_system_time();
    if this_update > now + CLOCK_SKEW {
        return Err(RevocationError::NotYetValid {
            what: WHAT,
            this_update,
            at: now,
        });
    }
    // "Response is considered expired if the current date is after the
    // NextUpdate field in the response." A response without one is treated
    // as expired, as notation-core-go does (its zero NextUpdate is in the past).
    let next_update = single
        .next_update
        .map(|t| t.0.to_system_time())
        .ok_or(RevocationError::NoNextUpdate)?;
    if now > next_update {
        return Err(RevocationError::Expired {
            what: WHAT,
            next_update,
            at: now,
        });
    }
    match &single.cert_status {
        CertStatus::Good(_) => Ok(RevocationStatus::Good {
            method: Method::Ocsp,
        }),
        // "If the certificate status is unknown, the revocation status is
        // considered revocation unavailable."
        CertStatus::Unknown(_) => Err(RevocationError::CertStatusUnknown),
        CertStatus::Revoked(info) => {
            let invalidity = invalidity_date(single.single_extensions.as_deref())
                .map_err(|()| RevocationError::Malformed { what: WHAT })?;
            if revoked_after_signing(invalidity, authentic_signing_time) {
                return Ok(RevocationStatus::Good {
                    method: Method::Ocsp,
                });
            }
            Ok(RevocationStatus::Revoked {
                at: info.revocation_time.0.to_system_time(),
                reason: info.revocation_reason,
                method: Method::Ocsp,
            })
        }
    }
}

/// [Spec]: "If the invalidity date is present and timestamp signature is
/// also present then if the invalidity date is before the timestamping date,
/// the certificate is considered revoked. If the invalidity date is not
/// present ..., the certificate is considered revoked." So a signature made
/// (authentically) before the key became invalid still stands.
///
/// [Spec]: https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#revocation-checking-with-ocsp
pub(super) fn revoked_after_signing(
    invalidity: Option<SystemTime>,
    authentic_signing_time: Option<SystemTime>,
) -> bool {
    matches!((invalidity, authentic_signing_time), (Some(inv), Some(signed)) if signed < inv)
}

/// The `invalidityDate` entry extension (RFC 5280 §5.3.2), if present.
pub(super) fn invalidity_date(
    exts: Option<&[x509_cert::ext::Extension]>,
) -> Result<Option<SystemTime>, ()> {
    match exts
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == rfc5280::ID_CE_INVALIDITY_DATE)
    {
        None => Ok(None),
        Some(e) => GeneralizedTime::from_der(e.extn_value.as_bytes())
            .map(|t| Some(t.to_system_time()))
            .map_err(|_| ()),
    }
}
