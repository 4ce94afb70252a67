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
//! [Certificate Revocation Evaluation]: https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#certificate-revocation-evaluation

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use const_oid::db::{rfc5280, rfc5912, rfc6960};
use const_oid::ObjectIdentifier;
use der::asn1::{GeneralizedTime, Null, OctetString};
use der::{Decode, Encode, Reader, SliceReader};
use rsa::pkcs1::RsaPssParams;
use rsa::{Pkcs1v15Sign, Pss};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use signature::hazmat::PrehashVerifier;
use spki::AlgorithmIdentifierOwned;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::dp::IssuingDistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, CrlDistributionPoints, CrlReason, ExtendedKeyUsage, KeyUsage,
};
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponseStatus, Request, ResponderId,
    SingleResponse, TbsRequest,
};

use super::rfc3339::Rfc3339;
use super::x509::{Certificate, PublicKey};

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

/// One certificate of a chain (not the root) whose revocation status must
/// be checked: what it names, and what to send to its OCSP responders.
#[derive(Debug, Clone)]
pub(crate) struct RevocationRequest {
    /// Position in the chain, leaf = 0.
    pub(crate) index: usize,
    pub(crate) key: CertKey,
    pub(crate) cert: Certificate,
    pub(crate) issuer: Certificate,
    /// The endpoints the certificate names; an error when its extensions
    /// cannot be read (the status is then unknown).
    pub(crate) endpoints: Result<Endpoints, RevocationError>,
    /// DER `OCSPRequest` (SHA-1 CertID, no nonce); `None` when the
    /// certificate names no OCSP responder.
    pub(crate) ocsp_request: Option<Vec<u8>>,
}

impl RevocationRequest {
    /// The request for `cert`, issued by `issuer`, at `index` in its chain.
    pub(crate) fn new(index: usize, cert: &Certificate, issuer: &Certificate) -> Self {
        let endpoints = endpoints(cert);
        let ocsp_request = match &endpoints {
            Ok(e) if !e.ocsp.is_empty() => ocsp_request(cert, issuer),
            _ => None,
        };
        Self {
            index,
            key: CertKey::new(cert, issuer),
            cert: cert.clone(),
            issuer: issuer.clone(),
            endpoints,
            ocsp_request,
        }
    }

    /// OCSP responder URLs, in the certificate's order.
    pub(crate) fn ocsp_urls(&self) -> &[String] {
        self.endpoints.as_ref().map_or(&[], |e| e.ocsp.as_slice())
    }

    /// CRL distribution point URLs, in the certificate's order.
    pub(crate) fn crl_urls(&self) -> &[String] {
        self.endpoints.as_ref().map_or(&[], |e| e.crl.as_slice())
    }

    /// "If the certificate being validated doesn't include information
    /// OCSP or CRLs then no revocation check is performed and the
    /// certificate is considered valid(not revoked)."
    fn is_non_revokable(&self) -> bool {
        self.endpoints
            .as_ref()
            .is_ok_and(|e| e.ocsp.is_empty() && e.crl.is_empty())
    }

    /// The revocation status of this certificate from `data`.
    pub(crate) fn status(
        &self,
        data: &dyn RevocationData,
        authentic_signing_time: Option<SystemTime>,
        now: SystemTime,
    ) -> RevocationStatus {
        let endpoints = match &self.endpoints {
            Ok(e) => e,
            Err(e) => {
                return RevocationStatus::Unknown {
                    ocsp: Some(e.clone()),
                    crl: Some(e.clone()),
                }
            }
        };
        if self.is_non_revokable() {
            return RevocationStatus::NonRevokable;
        }
        let (cert, issuer) = (&self.cert, &self.issuer);
        // "If both OCSP URLs and CDP URLs are present, then OCSP is preferred
        // over CRLs. If revocation status cannot be determined using OCSP
        // because of any reason such as unavailability then fallback to
        // using CRLs".
        let ocsp = if endpoints.ocsp.is_empty() {
            None
        } else {
            let result = match data.ocsp(&self.key) {
                Some(resp) => check_ocsp(&resp, cert, issuer, authentic_signing_time, now),
                None => Err(missing(data, &endpoints.ocsp)),
            };
            match result {
                Ok(status) => return status,
                Err(e) => Some(e),
            }
        };
        if endpoints.crl.is_empty() {
            return RevocationStatus::Unknown { ocsp, crl: None };
        }
        // "If the certificate contains multiple CDP locations then each
        // location download is attempted in sequential order, until a 2xx
        // response is received for any of the location."
        let mut crl_error = None;
        for url in &endpoints.crl {
            let Some(crl) = data.crl(url, issuer) else {
                continue;
            };
            match check_crl(
                &crl,
                cert,
                issuer,
                &endpoints.crl,
                authentic_signing_time,
                now,
            ) {
                Ok(status) => return status,
                Err(e) => {
                    crl_error.get_or_insert(e);
                }
            }
        }
        RevocationStatus::Unknown {
            ocsp,
            crl: Some(crl_error.unwrap_or_else(|| missing(data, &endpoints.crl))),
        }
    }
}

/// What must be checked (and may have to be fetched) for `chain` (leaf
/// first): every certificate but the root, except those that name no OCSP
/// responder and no CRL.
pub(crate) fn needed(chain: &[Certificate]) -> Vec<RevocationRequest> {
    chain
        .windows(2)
        .enumerate()
        .filter_map(|(index, pair)| {
            let [cert, issuer] = pair else { return None };
            let req = RevocationRequest::new(index, cert, issuer);
            (!req.is_non_revokable()).then_some(req)
        })
        .collect()
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

/// The OCSP responders and CRL distribution points a certificate names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Endpoints {
    pub(crate) ocsp: Vec<String>,
    pub(crate) crl: Vec<String>,
}

fn parse(cert: &Certificate) -> Result<x509_cert::Certificate, RevocationError> {
    x509_cert::Certificate::from_der(cert.der()).map_err(|_| RevocationError::Malformed {
        what: "certificate",
    })
}

/// The URIs of the certificate's AIA `id-ad-ocsp` entries and of its CRL
/// distribution points' full names, in the certificate's order.
pub(crate) fn endpoints(cert: &Certificate) -> Result<Endpoints, RevocationError> {
    let parsed = parse(cert)?;
    let malformed = |_| RevocationError::Malformed {
        what: "certificate's revocation extension",
    };
    let mut out = Endpoints::default();
    for ext in parsed.tbs_certificate.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        match ext.extn_id {
            rfc5280::ID_PE_AUTHORITY_INFO_ACCESS => {
                let aia = AuthorityInfoAccessSyntax::from_der(value).map_err(malformed)?;
                for ad in aia.0 {
                    if ad.access_method == rfc5280::ID_AD_OCSP {
                        if let GeneralName::UniformResourceIdentifier(uri) = ad.access_location {
                            out.ocsp.push(uri.to_string());
                        }
                    }
                }
            }
            rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS => {
                let dps = CrlDistributionPoints::from_der(value).map_err(malformed)?;
                for dp in dps.0 {
                    if let Some(DistributionPointName::FullName(names)) = dp.distribution_point {
                        out.crl.extend(uris(&names));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn uris(names: &[GeneralName]) -> impl Iterator<Item = String> + '_ {
    names.iter().filter_map(|n| match n {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    })
}

/// A DER `OCSPRequest` for `cert`: one SHA-1 CertID, unsigned, no nonce.
///
/// SHA-1 because it is the CertID hash every responder answers for
/// (notation-core-go makes the same choice); it names the certificate, it
/// does not protect anything. No nonce ([RFC 8954] makes it optional) so the
/// response can be cached until its nextUpdate.
///
/// [RFC 8954]: https://www.rfc-editor.org/rfc/rfc8954#section-2.1
fn ocsp_request(cert: &Certificate, issuer: &Certificate) -> Option<Vec<u8>> {
    let cert = parse(cert).ok()?;
    let issuer = parse(issuer).ok()?;
    let cert_id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::ID_SHA_1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(
            Sha1::digest(issuer.tbs_certificate.subject.to_der().ok()?).to_vec(),
        )
        .ok()?,
        issuer_key_hash: OctetString::new(
            Sha1::digest(
                issuer
                    .tbs_certificate
                    .subject_public_key_info
                    .subject_public_key
                    .raw_bytes(),
            )
            .to_vec(),
        )
        .ok()?,
        serial_number: cert.tbs_certificate.serial_number,
    };
    OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .ok()
}

/// The first TLV inside the outer SEQUENCE of `der`: the signed part of a
/// signed structure, as received (signatures are checked over these bytes,
/// not over a re-encoding).
fn first_inner_tlv(der: &[u8]) -> Option<Vec<u8>> {
    let mut outer = SliceReader::new(der).ok()?;
    let header = der::Header::decode(&mut outer).ok()?;
    let header_len = usize::try_from(header.encoded_len().ok()?).ok()?;
    let mut inner = SliceReader::new(der.get(header_len..)?).ok()?;
    Some(inner.tlv_bytes().ok()?.to_vec())
}

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

fn key_usage(cert: &x509_cert::Certificate) -> Option<KeyUsage> {
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
fn revoked_after_signing(
    invalidity: Option<SystemTime>,
    authentic_signing_time: Option<SystemTime>,
) -> bool {
    matches!((invalidity, authentic_signing_time), (Some(inv), Some(signed)) if signed < inv)
}

/// The `invalidityDate` entry extension (RFC 5280 §5.3.2), if present.
fn invalidity_date(exts: Option<&[x509_cert::ext::Extension]>) -> Result<Option<SystemTime>, ()> {
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

/// Verifies a signature made by `key` over `msg` with algorithm `alg`.
///
/// RSA PKCS#1 v1.5, RSASSA-PSS (MGF1 with the same hash) and ECDSA, with
/// SHA-256/384/512 or SHA-1: these are a responder's or CRL issuer's
/// signatures, not certificate signatures, and notation-core-go accepts
/// SHA-1 for them (Go's `CheckSignature`).
fn verify_signed(
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

fn ecdsa(key: &PublicKey, prehash: &[u8], sig: &[u8]) -> bool {
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

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;
