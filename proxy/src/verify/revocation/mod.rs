//! Certificate revocation: OCSP responses and CRLs, checked as bytes at `now`.
//!
//! Input: a certificate chain (leaf first, root last, already validated by
//! Authenticity), the revocation data at hand ([`RevocationData`]: OCSP
//! responses by certificate, CRLs by URL or issuer), the authentic signing
//! time when there is one, and `now`. Output: `Ok(())` or a
//! [`RevocationFailure`] naming the certificate and why (revoked, or status
//! unknown with the reason per method).
//!
//! What to fetch is computed here too ([`needed`]: the DER OCSP request and
//! the URLs for each certificate) so the fetcher (`crate::revocation_fetch`) knows
//! nothing of X.509; fetching, timeouts, size caps and caching live there.
//!
//! The rules, from [Certificate Revocation Evaluation]:
//! - every certificate except the root is checked (the root is a trust
//!   anchor: nothing signs a statement about it); a certificate that names no
//!   OCSP responder and no CRL distribution point is not revocable and passes;
//! - OCSP first; when OCSP cannot say good or revoked, the CRL;
//! - revoked or unknown fails the check (the policy decides enforce or log).
//!
//! Nothing here reads the clock, the file system or the network, and no
//! input, however malformed, panics it.
//!
//! Files: `request.rs` (what to fetch per certificate, and checking one
//! certificate: OCSP first, then CRLs), `ocsp.rs`, `crl.rs`, `signed.rs`
//! (the signature over a response or CRL), `cert_fields.rs` (what is read
//! from a certificate); this file holds the shared types and the chain check.
//!
//! [Certificate Revocation Evaluation]: https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#certificate-revocation-evaluation

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use const_oid::ObjectIdentifier;
use sha2::{Digest as _, Sha256};
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::OcspResponseStatus;

use super::rfc3339::Rfc3339;
use super::x509::Certificate;

mod cert_fields;
mod crl;
mod ocsp;
mod request;
mod signed;

use cert_fields::parse;
pub(crate) use crl::{check_crl, subject_name_der, Crl};
pub(crate) use ocsp::{check_ocsp, OcspResponse};
pub(crate) use request::{needed, RevocationRequest};

/// `Content-Type` of an OCSP request sent by POST (RFC 6960 Appendix A.1).
pub(crate) const MEDIA_TYPE_OCSP_REQUEST: &str = "application/ocsp-request";
/// `Content-Type` of an OCSP response (RFC 6960 Appendix A.1).
pub(crate) const MEDIA_TYPE_OCSP_RESPONSE: &str = "application/ocsp-response";

/// ecdsa-with-SHA1 (RFC 5758 §3.2 lists the SHA-2 ones; this is X9.62's).
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// How far a responder's or CRL issuer's clock may run ahead of ours before
/// `thisUpdate` counts as "in the future".
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why one revocation source (an OCSP response, a CRL) could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RevocationError {
    #[error("the {what} is malformed")]
    Malformed { what: &'static str },
    #[error("the OCSP responder answered {}", ResponderStatusName(*.status))]
    ResponderStatus { status: OcspResponseStatus },
    #[error("the OCSP response type {oid} is not supported (only id-pkix-ocsp-basic)")]
    UnsupportedResponseType { oid: ObjectIdentifier },
    #[error("the OCSP response says nothing about this certificate")]
    NoMatchingResponse,
    #[error("the OCSP response is signed neither by the issuing CA nor by a responder certificate the CA issued for OCSP signing")]
    UnauthorizedSigner,
    #[error("the {what} signature does not verify with the issuer's key")]
    BadSignature { what: &'static str },
    #[error("the {what} is signed with algorithm {oid}, which is not supported")]
    UnsupportedSignatureAlgorithm {
        what: &'static str,
        oid: ObjectIdentifier,
    },
    #[error("the {what} is not valid before {} (checked at {})", Rfc3339(*.this_update), Rfc3339(*.at))]
    NotYetValid {
        what: &'static str,
        this_update: SystemTime,
        at: SystemTime,
    },
    #[error("the {what} expired at {} (checked at {})", Rfc3339(*.next_update), Rfc3339(*.at))]
    Expired {
        what: &'static str,
        next_update: SystemTime,
        at: SystemTime,
    },
    #[error("the OCSP response has no nextUpdate, so it cannot be known to be current")]
    NoNextUpdate,
    #[error("the OCSP responder does not know the certificate (status unknown)")]
    CertStatusUnknown,
    #[error("the CRL was issued by another CA than the certificate's issuer")]
    CrlIssuerMismatch,
    #[error(
        "the certificate's issuer is not allowed to sign CRLs (needs cA and the cRLSign key usage)"
    )]
    IssuerCannotSignCrl,
    #[error("the CRL is a delta CRL or points to one; delta CRLs are not supported")]
    DeltaCrlUnsupported,
    #[error("the CRL is an indirect or partial (some reasons only) CRL, which is not supported")]
    UnsupportedCrlScope,
    #[error("the CRL does not cover this certificate (its issuing distribution point scope excludes it)")]
    CrlScopeMismatch,
    #[error("the {what} has critical extension {oid}, which pullgate does not process")]
    UnsupportedCriticalExtension {
        what: &'static str,
        oid: ObjectIdentifier,
    },
    #[error("the URL {url:?} is not a plain http URL (only http is supported for OCSP and CRLs)")]
    UnsupportedUrl { url: String },
    #[error("{url}: {why}")]
    Unavailable { url: String, why: FetchFailure },
    #[error("no response is available (not fetched)")]
    NotFetched,
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Why fetching revocation data from one URL failed, as the fetcher reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchFailure {
    #[error("no answer within {}ms", .timeout.as_millis())]
    Timeout { timeout: Duration },
    #[error("the server answered HTTP {status}")]
    Status { status: u16 },
    #[error("the response is over the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the connection failed")]
    Transport,
    #[error("too many redirects")]
    Redirects,
    #[error("offline mode: nothing is fetched")]
    Offline,
    #[error("the pull's deadline passed first")]
    Deadline,
    #[error("{0}")]
    Unusable(Box<RevocationError>),
}

struct ResponderStatusName(OcspResponseStatus);

impl fmt::Display for ResponderStatusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            OcspResponseStatus::Successful => "successful",
            OcspResponseStatus::MalformedRequest => "malformedRequest",
            OcspResponseStatus::InternalError => "internalError",
            OcspResponseStatus::TryLater => "tryLater",
            OcspResponseStatus::SigRequired => "sigRequired",
            OcspResponseStatus::Unauthorized => "unauthorized",
        })
    }
}

/// Displays a CRL reason code by its RFC 5280 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReasonName(pub(crate) CrlReason);

impl fmt::Display for ReasonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            CrlReason::Unspecified => "unspecified",
            CrlReason::KeyCompromise => "keyCompromise",
            CrlReason::CaCompromise => "cACompromise",
            CrlReason::AffiliationChanged => "affiliationChanged",
            CrlReason::Superseded => "superseded",
            CrlReason::CessationOfOperation => "cessationOfOperation",
            CrlReason::CertificateHold => "certificateHold",
            CrlReason::RemoveFromCRL => "removeFromCRL",
            CrlReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            CrlReason::AaCompromise => "aACompromise",
        })
    }
}

/// Which mechanism gave an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Ocsp,
    Crl,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Ocsp => "OCSP",
            Method::Crl => "CRL",
        })
    }
}

/// The revocation status of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RevocationStatus {
    /// A current, authentic response says it is not revoked.
    Good { method: Method },
    /// A current (or, for a CRL, authentic but expired) response says it is revoked.
    Revoked {
        at: SystemTime,
        reason: Option<CrlReason>,
        method: Method,
    },
    /// Neither OCSP nor CRL could say; each names why (absent when the
    /// certificate does not name that mechanism).
    Unknown {
        ocsp: Option<RevocationError>,
        crl: Option<RevocationError>,
    },
    /// The certificate names no OCSP responder and no CRL: nothing can revoke it.
    NonRevokable,
}

/// Why the chain failed the revocation check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevocationFailure {
    /// Position in the chain, leaf = 0.
    pub(crate) index: usize,
    pub(crate) subject: String,
    /// `Revoked` or `Unknown` (boxed: a failure travels in `Result`s).
    pub(crate) status: Box<RevocationStatus>,
}

impl std::error::Error for RevocationFailure {}

impl fmt::Display for RevocationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.status {
            RevocationStatus::Revoked { at, reason, method } => {
                write!(
                    f,
                    "certificate {:?} was revoked at {}",
                    self.subject,
                    Rfc3339(*at)
                )?;
                if let Some(r) = reason {
                    write!(f, " ({})", ReasonName(*r))?;
                }
                write!(f, " according to its {method}")
            }
            RevocationStatus::Unknown { ocsp, crl } => {
                write!(
                    f,
                    "the revocation status of certificate {:?} cannot be determined",
                    self.subject
                )?;
                if let Some(e) = ocsp {
                    write!(f, "; OCSP: {e}")?;
                }
                if let Some(e) = crl {
                    write!(f, "; CRL: {e}")?;
                }
                Ok(())
            }
            RevocationStatus::Good { .. } | RevocationStatus::NonRevokable => {
                write!(f, "certificate {:?} is not revoked", self.subject)
            }
        }
    }
}

/// Identifies a certificate for OCSP caching: (issuer, serial number).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CertKey {
    /// SHA-256 of the issuer certificate's DER.
    issuer: [u8; 32],
    serial: Box<[u8]>,
}

impl CertKey {
    /// The key of `cert` as issued by `issuer`.
    pub(crate) fn new(cert: &Certificate, issuer: &Certificate) -> Self {
        let serial = parse(cert)
            .map(|c| c.tbs_certificate.serial_number.as_bytes().into())
            .unwrap_or_default();
        Self {
            issuer: Sha256::digest(issuer.der()).into(),
            serial,
        }
    }
}

/// The revocation data the check reads: in memory, no I/O.
pub(crate) trait RevocationData {
    /// The OCSP response held for the certificate `key` names.
    fn ocsp(&self, key: &CertKey) -> Option<Arc<OcspResponse>>;
    /// The CRL held for distribution point `url`, or one from `issuer`
    /// loaded without a URL (the offline directory).
    fn crl(&self, url: &str, issuer: &Certificate) -> Option<Arc<Crl>>;
    /// Why the last fetch from `url` failed, to say why data is missing.
    fn fetch_failure(&self, _url: &str) -> Option<FetchFailure> {
        None
    }
}

/// No revocation data at all: every revokable certificate's status is unknown.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoRevocationData;

impl RevocationData for NoRevocationData {
    fn ocsp(&self, _key: &CertKey) -> Option<Arc<OcspResponse>> {
        None
    }

    fn crl(&self, _url: &str, _issuer: &Certificate) -> Option<Arc<Crl>> {
        None
    }
}

/// Checks every certificate of `chain` (leaf first) but the root:
/// [`check_requests`] over [`needed`].
///
/// # Errors
/// As [`check_requests`].
#[cfg(test)]
pub(crate) fn check_chain(
    chain: &[Certificate],
    data: &dyn RevocationData,
    authentic_signing_time: Option<SystemTime>,
    now: SystemTime,
) -> Result<(), RevocationFailure> {
    check_requests(&needed(chain), data, authentic_signing_time, now)
}

/// Checks the certificates `requests` name (from [`needed`]).
///
/// `authentic_signing_time` is the time from a verified timestamp
/// countersignature or the signed `authenticSigningTime`, never the
/// unauthenticated `signingTime`.
///
/// # Errors
/// A [`RevocationFailure`] for the certificate nearest the root that is
/// revoked or, when none is, nearest the root whose status is unknown.
pub(crate) fn check_requests(
    requests: &[RevocationRequest],
    data: &dyn RevocationData,
    authentic_signing_time: Option<SystemTime>,
    now: SystemTime,
) -> Result<(), RevocationFailure> {
    let mut order: Vec<&RevocationRequest> = requests.iter().collect();
    // "Starting from Root to leaf certificate, for each certificate in the
    // certificate chain, perform the following steps".
    order.sort_by_key(|r| std::cmp::Reverse(r.index));
    let mut unknown = None;
    for req in order {
        let status = req.status(data, authentic_signing_time, now);
        let failure = || RevocationFailure {
            index: req.index,
            subject: req.cert.subject().to_owned(),
            status: Box::new(status.clone()),
        };
        match &status {
            RevocationStatus::Revoked { .. } => return Err(failure()),
            RevocationStatus::Unknown { .. } => {
                unknown.get_or_insert_with(failure);
            }
            RevocationStatus::Good { .. } | RevocationStatus::NonRevokable => {}
        }
    }
    unknown.map_or(Ok(()), Err)
}

/// The revocation status of `cert`, issued by `issuer`.
#[cfg(test)]
pub(crate) fn status(
    cert: &Certificate,
    issuer: &Certificate,
    data: &dyn RevocationData,
    authentic_signing_time: Option<SystemTime>,
    now: SystemTime,
) -> RevocationStatus {
    RevocationRequest::new(0, cert, issuer).status(data, authentic_signing_time, now)
}

/// Why there is no data for any of `urls`.
fn missing(data: &dyn RevocationData, urls: &[String]) -> RevocationError {
    urls.iter()
        .find_map(|url| {
            data.fetch_failure(url)
                .map(|why| RevocationError::Unavailable {
                    url: url.clone(),
                    why,
                })
        })
        .unwrap_or(RevocationError::NotFetched)
}

#[cfg(test)]
mod tests;
