//! CRLs (RFC 5280 §5): a CRL checked against the certificate's issuer at
//! `now` — signature, scope (no delta, indirect or partial CRLs), freshness —
//! and the certificate looked up in it.

use std::time::SystemTime;

use const_oid::db::rfc5280;
use der::{Decode, Encode};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::dp::IssuingDistributionPoint;
use x509_cert::ext::pkix::name::DistributionPointName;
use x509_cert::ext::pkix::CrlReason;

use crate::verify::x509::Certificate;

use super::cert_fields::{first_inner_tlv, parse, uris};
use super::ocsp::{invalidity_date, key_usage, revoked_after_signing};
use super::signed::verify_signed;
use super::{Method, RevocationError, RevocationStatus, CLOCK_SKEW};

/// A parsed CRL, not yet checked against any issuer.
#[derive(Debug, Clone)]
pub(crate) struct Crl {
    list: CertificateList,
    tbs: Vec<u8>,
    issuer_name: Vec<u8>,
}

impl Crl {
    /// Parses a DER `CertificateList`.
    ///
    /// # Errors
    /// `Malformed`.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, RevocationError> {
        let malformed = RevocationError::Malformed { what: "CRL" };
        let list = CertificateList::from_der(der).map_err(|_| malformed.clone())?;
        let tbs = first_inner_tlv(der).ok_or_else(|| malformed.clone())?;
        let issuer_name = list.tbs_cert_list.issuer.to_der().map_err(|_| malformed)?;
        Ok(Self {
            list,
            tbs,
            issuer_name,
        })
    }

    /// Parses a CRL file: DER, or PEM with the `X509 CRL` label (RFC 7468 §5).
    ///
    /// # Errors
    /// `Malformed`.
    pub(crate) fn from_file_bytes(bytes: &[u8]) -> Result<Self, RevocationError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN ") {
            match der::pem::decode_vec(trimmed) {
                Ok(("X509 CRL", der)) => Self::from_der(&der),
                _ => Err(RevocationError::Malformed { what: "CRL file" }),
            }
        } else {
            Self::from_der(bytes)
        }
    }

    /// DER of the issuer's name, for indexing CRLs by issuer.
    pub(crate) fn issuer_name_der(&self) -> &[u8] {
        &self.issuer_name
    }

    pub(crate) fn this_update(&self) -> SystemTime {
        self.list.tbs_cert_list.this_update.to_system_time()
    }

    pub(crate) fn next_update(&self) -> Option<SystemTime> {
        self.list
            .tbs_cert_list
            .next_update
            .map(|t| t.to_system_time())
    }
}

/// DER of the subject name of `cert`, to look up CRLs it issued.
pub(crate) fn subject_name_der(cert: &Certificate) -> Option<Vec<u8>> {
    parse(cert).ok()?.tbs_certificate.subject.to_der().ok()
}

/// Checks `crl` for `cert` (issued by `issuer`, naming `cert_crl_urls`) at `now`.
///
/// [Revocation Checking with CRL]: verify the CRL signature, that it is not
/// expired, then look up the serial number; an entry whose `invalidityDate`
/// is after the authentic signing time does not count. Delta CRLs are not
/// supported (as in notation-core-go): a CRL that is one or points to one
/// cannot decide.
///
/// # Errors
/// Why this CRL cannot say good or revoked.
///
/// [Revocation Checking with CRL]: https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#revocation-checking-with-crl
pub(crate) fn check_crl(
    crl: &Crl,
    cert: &Certificate,
    issuer: &Certificate,
    cert_crl_urls: &[String],
    authentic_signing_time: Option<SystemTime>,
    now: SystemTime,
) -> Result<RevocationStatus, RevocationError> {
    const WHAT: &str = "CRL";
    let cert_parsed = parse(cert)?;
    let issuer_parsed = parse(issuer)?;
    let tbs = &crl.list.tbs_cert_list;
    // RFC 5280 §6.3.3 (b)/(f): the CRL issuer is the certificate's issuer
    // (indirect CRLs are not supported), and its key signed the CRL.
    if Some(crl.issuer_name.as_slice())
        != issuer_parsed
            .tbs_certificate
            .subject
            .to_der()
            .ok()
            .as_deref()
    {
        return Err(RevocationError::CrlIssuerMismatch);
    }
    // RFC 5280 §4.2.1.3: "The cRLSign bit is asserted when the subject
    // public key is used for verifying signatures on certificate revocation
    // lists".
    if !issuer.is_ca() || key_usage(&issuer_parsed).is_some_and(|ku| !ku.crl_sign()) {
        return Err(RevocationError::IssuerCannotSignCrl);
    }
    // RFC 5280 §5.1.1.2: signatureAlgorithm "MUST contain the same algorithm
    // identifier as the signature field in the sequence tbsCertList".
    if crl.list.signature_algorithm != tbs.signature {
        return Err(RevocationError::BadSignature { what: WHAT });
    }
    let sig = crl
        .list
        .signature
        .as_bytes()
        .ok_or(RevocationError::Malformed { what: WHAT })?;
    verify_signed(
        WHAT,
        &crl.list.signature_algorithm,
        issuer.public_key(),
        &crl.tbs,
        sig,
    )?;
    let this_update = crl.this_update();
    if this_update > now + CLOCK_SKEW {
        return Err(RevocationError::NotYetValid {
            what: WHAT,
            this_update,
            at: now,
        });
    }
    check_crl_extensions(crl, cert.is_ca(), cert_crl_urls)?;
    // "A CRL is considered expired if the current date is after the
    // NextUpdate field in the CRL."
    let expired = crl.next_update().filter(|&next| now > next);
    let serial = cert_parsed.tbs_certificate.serial_number.as_bytes();
    for entry in tbs.revoked_certificates.iter().flatten() {
        if entry.serial_number.as_bytes() != serial {
            continue;
        }
        let mut reason = None;
        for ext in entry.crl_entry_extensions.iter().flatten() {
            match ext.extn_id {
                rfc5280::ID_CE_CRL_REASONS => {
                    reason = CrlReason::from_der(ext.extn_value.as_bytes()).ok();
                }
                rfc5280::ID_CE_INVALIDITY_DATE => {}
                // RFC 5280 §5.3: unrecognised critical entry extensions
                // (certificateIssuer among them: indirect CRLs) fail.
                oid if ext.critical => {
                    return Err(RevocationError::UnsupportedCriticalExtension { what: WHAT, oid })
                }
                _ => {}
            }
        }
        let invalidity = invalidity_date(entry.crl_entry_extensions.as_deref())
            .map_err(|()| RevocationError::Malformed { what: WHAT })?;
        if revoked_after_signing(invalidity, authentic_signing_time) {
            break;
        }
        // "If the CRL is expired and the certificate is listed in the CRL for
        // any reason other than certificate hold, the certificate is
        // considered revoked."
        if expired.is_some() && reason == Some(CrlReason::CertificateHold) {
            break;
        }
        return Ok(RevocationStatus::Revoked {
            at: entry.revocation_date.to_system_time(),
            reason,
            method: Method::Crl,
        });
    }
    if let Some(next_update) = expired {
        return Err(RevocationError::Expired {
            what: WHAT,
            next_update,
            at: now,
        });
    }
    Ok(RevocationStatus::Good {
        method: Method::Crl,
    })
}

/// CRL extensions: refuse delta CRLs, indirect and partial CRLs, CRLs whose
/// scope excludes the certificate, and unknown critical extensions.
fn check_crl_extensions(
    crl: &Crl,
    cert_is_ca: bool,
    cert_crl_urls: &[String],
) -> Result<(), RevocationError> {
    const WHAT: &str = "CRL";
    for ext in crl.list.tbs_cert_list.crl_extensions.iter().flatten() {
        match ext.extn_id {
            // [Spec]: "If the delta CRL cannot be retrieved for some reason,
            // the revocation result will be revocation unavailable." Delta
            // CRLs are not implemented, so a base CRL pointing to one (or a
            // delta CRL itself) cannot decide.
            rfc5280::ID_CE_FRESHEST_CRL | rfc5280::ID_CE_DELTA_CRL_INDICATOR => {
                return Err(RevocationError::DeltaCrlUnsupported)
            }
            rfc5280::ID_CE_ISSUING_DISTRIBUTION_POINT => {
                let idp = IssuingDistributionPoint::from_der(ext.extn_value.as_bytes())
                    .map_err(|_| RevocationError::Malformed { what: WHAT })?;
                // RFC 5280 §6.3.3 (b)(2).
                if idp.indirect_crl
                    || idp.only_some_reasons.is_some()
                    || idp.only_contains_attribute_certs
                {
                    return Err(RevocationError::UnsupportedCrlScope);
                }
                if (idp.only_contains_user_certs && cert_is_ca)
                    || (idp.only_contains_ca_certs && !cert_is_ca)
                {
                    return Err(RevocationError::CrlScopeMismatch);
                }
                if let Some(DistributionPointName::FullName(names)) = &idp.distribution_point {
                    let mut idp_uris = uris(names).peekable();
                    if idp_uris.peek().is_some() && !idp_uris.any(|u| cert_crl_urls.contains(&u)) {
                        return Err(RevocationError::CrlScopeMismatch);
                    }
                }
            }
            rfc5280::ID_CE_CRL_NUMBER | rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER => {}
            // RFC 5280 §5.2: "If a CRL contains a critical extension that the
            // application cannot process, then the application MUST NOT use
            // that CRL to determine the status of certificates."
            oid if ext.critical => {
                return Err(RevocationError::UnsupportedCriticalExtension { what: WHAT, oid })
            }
            _ => {}
        }
    }
    Ok(())
}
