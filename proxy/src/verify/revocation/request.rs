//! What to fetch for a chain: per certificate, its OCSP responder URLs
//! (with the DER OCSP request) and CRL distribution points ([`needed`]),
//! read from its extensions; and checking one certificate against the data
//! at hand (OCSP first, then CRLs). No I/O: `crate::revocation_fetch` fetches.

use std::time::SystemTime;

use const_oid::db::rfc5912;
use der::asn1::{Null, OctetString};
use der::Encode;
use sha1::Sha1;
use sha2::Digest as _;
use spki::AlgorithmIdentifierOwned;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest};

use crate::verify::x509::Certificate;

use super::cert_fields::{endpoints, parse, Endpoints};
use super::crl::check_crl;
use super::ocsp::check_ocsp;
use super::{missing, CertKey, RevocationData, RevocationError, RevocationStatus};

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
