//! Revocation data for tests: a root → intermediate → leaf PKI whose
//! certificates name OCSP responders (AIA) and CRLs (CDP) under one base
//! URL, OCSP responses whose every field the test sets, and CRLs.
//!
//! "Now" is fixed ([`now`]); responses and CRLs are dated around it.

use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Result};
use const_oid::db::{rfc5280, rfc5912};
use der::asn1::{BitString, GeneralizedTime, Ia5String, Null, OctetString};
use der::{Decode, Encode};
use rcgen::{CrlDistributionPoint, CustomExtension, ExtendedKeyUsagePurpose, KeyUsagePurpose};
use sha2::Digest as _;
use signature::Signer as _;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, CrlReason};
use x509_cert::ext::Extension;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse,
};

use crate::cert::{ca_params, issue, leaf_params, self_signed, Issued};
use crate::key::Key;

/// 2026-01-01T00:00:00Z: "now" for revocation data.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// One hour.
pub const HOUR: Duration = Duration::from_secs(3600);
/// One day.
pub const DAY: Duration = Duration::from_secs(86_400);

/// Which endpoints a minted certificate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// An OCSP responder and a CRL.
    Both,
    /// An OCSP responder only.
    OcspOnly,
    /// A CRL only.
    CrlOnly,
    /// Neither.
    None,
}

/// `{base}/ocsp/{ca}`: where the certificates `ca` issued name its OCSP responder.
pub fn ocsp_url(base: &str, ca: &str) -> String {
    format!("{base}/ocsp/{ca}")
}

/// `{base}/crl/{ca}.crl`: where the certificates `ca` issued name its CRL.
pub fn crl_url(base: &str, ca: &str) -> String {
    format!("{base}/crl/{ca}.crl")
}

fn aia(url: &str) -> Result<CustomExtension> {
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(Ia5String::new(url)?),
    }]);
    Ok(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        aia.to_der()?,
    ))
}

fn with_endpoints(
    mut params: rcgen::CertificateParams,
    base: &str,
    ca: &str,
    which: Endpoints,
) -> Result<rcgen::CertificateParams> {
    if matches!(which, Endpoints::Both | Endpoints::OcspOnly) {
        params.custom_extensions.push(aia(&ocsp_url(base, ca))?);
    }
    if matches!(which, Endpoints::Both | Endpoints::CrlOnly) {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![crl_url(base, ca)],
        }];
    }
    Ok(params)
}

/// Root (serial 1) → intermediate (serial 2) → leaf (serial 3). The
/// intermediate and the leaf name [`ocsp_url`] and [`crl_url`] of their
/// issuer (`root`, `intermediate`) under one base URL.
#[derive(Debug)]
pub struct Pki {
    /// The self-signed root.
    pub root: Issued,
    /// The intermediate CA (path length 0).
    pub intermediate: Issued,
    /// The code-signing leaf.
    pub leaf: Issued,
}

impl Pki {
    /// A P-256 PKI whose intermediate and leaf name `which` endpoints under `base`.
    ///
    /// # Errors
    /// Minting a key or a certificate failed.
    pub fn new(base: &str, which: Endpoints) -> Result<Self> {
        Self::with_ca_keys(base, which, Key::p256()?, Key::p256()?)
    }

    /// Like [`Pki::new`], with the root's and the intermediate's keys given.
    ///
    /// # Errors
    /// Minting a key or a certificate failed.
    pub fn with_ca_keys(base: &str, which: Endpoints, root_key: Key, int_key: Key) -> Result<Self> {
        let mut root_params = ca_params("Revocation Test Root", None);
        root_params.serial_number = Some(1u64.into());
        let root = self_signed(root_params, root_key)?;
        let mut int_params = with_endpoints(
            ca_params("Revocation Test Intermediate", Some(0)),
            base,
            "root",
            which,
        )?;
        int_params.serial_number = Some(2u64.into());
        let intermediate = issue(int_params, int_key, &root)?;
        let mut leaf_params = with_endpoints(
            leaf_params("Revocation Test Leaf"),
            base,
            "intermediate",
            which,
        )?;
        leaf_params.serial_number = Some(3u64.into());
        let leaf = issue(leaf_params, Key::p256()?, &intermediate)?;
        Ok(Self {
            root,
            intermediate,
            leaf,
        })
    }

    /// A delegated OCSP responder certificate (serial 99) issued by
    /// `issuer`: EKU OCSPSigning, or codeSigning if not `ocsp_signing`.
    ///
    /// # Errors
    /// Minting the key or the certificate failed.
    pub fn responder(issuer: &Issued, ocsp_signing: bool) -> Result<Issued> {
        let mut p = leaf_params("Revocation Test OCSP Responder");
        p.extended_key_usages = if ocsp_signing {
            vec![ExtendedKeyUsagePurpose::OcspSigning]
        } else {
            vec![ExtendedKeyUsagePurpose::CodeSigning]
        };
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.serial_number = Some(99u64.into());
        issue(p, Key::p256()?, issuer)
    }
}

fn x509(issued: &Issued) -> Result<x509_cert::Certificate> {
    Ok(x509_cert::Certificate::from_der(issued.cert.der())?)
}

/// The P-256 key of `issued`: OCSP responses and re-signed CRLs are ECDSA P-256.
fn p256_key(issued: &Issued) -> Result<&p256::ecdsa::SigningKey> {
    issued
        .key
        .p256_signing_key()
        .ok_or_else(|| anyhow!("OCSP responses and re-signed CRLs are minted with P-256 keys"))
}

/// Which hash a minted CertID uses.
#[derive(Debug, Clone, Copy)]
pub enum IdHash {
    /// SHA-1, what most responders use.
    Sha1,
    /// SHA-256.
    Sha256,
}

/// The OCSP CertID of `cert` issued by `issuer`, hashed with `hash`.
///
/// # Errors
/// A certificate does not parse back or a field does not encode.
pub fn cert_id(cert: &Issued, issuer: &Issued, hash: IdHash) -> Result<CertId> {
    let issuer = x509(issuer)?;
    let name = issuer.tbs_certificate.subject.to_der()?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let h = |d: &[u8]| match hash {
        IdHash::Sha1 => sha1::Sha1::digest(d).to_vec(),
        IdHash::Sha256 => sha2::Sha256::digest(d).to_vec(),
    };
    let oid = match hash {
        IdHash::Sha1 => rfc5912::ID_SHA_1,
        IdHash::Sha256 => rfc5912::ID_SHA_256,
    };
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(h(&name))?,
        issuer_key_hash: OctetString::new(h(&key))?,
        serial_number: x509(cert)?.tbs_certificate.serial_number,
    })
}

/// The status a minted OCSP response gives.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    /// good.
    Good,
    /// revoked at `at` (reason keyCompromise), with an invalidity date if given.
    Revoked {
        /// revocationTime.
        at: SystemTime,
        /// The invalidityDate extension of the single response.
        invalidity: Option<SystemTime>,
    },
    /// unknown.
    Unknown,
}

/// Everything a minted OCSP response says.
#[derive(Debug)]
pub struct OcspSpec<'a> {
    /// The certificate the response is about.
    pub about: &'a Issued,
    /// Its issuer (CertID hashes its name and key).
    pub issuer: &'a Issued,
    /// Signs the response (a P-256 key); named by name in responderID.
    pub signer: &'a Issued,
    /// Certificates carried in the response (delegated responders).
    pub certs: Vec<&'a Issued>,
    /// The certificate's status.
    pub status: Status,
    /// thisUpdate, and producedAt.
    pub this_update: SystemTime,
    /// nextUpdate.
    pub next_update: Option<SystemTime>,
    /// The CertID's hash.
    pub hash: IdHash,
    /// Identify the responder by key hash instead of by name.
    pub by_key: bool,
}

impl<'a> OcspSpec<'a> {
    /// Good, signed by the issuer, valid from an hour before [`now`] to a day after.
    pub fn good(about: &'a Issued, issuer: &'a Issued) -> Self {
        Self {
            about,
            issuer,
            signer: issuer,
            certs: Vec::new(),
            status: Status::Good,
            this_update: now() - HOUR,
            next_update: Some(now() + DAY),
            hash: IdHash::Sha1,
            by_key: false,
        }
    }

    /// The response, DER: a successful OCSPResponse holding a
    /// BasicOCSPResponse signed with ECDSA-SHA256.
    ///
    /// # Errors
    /// The signer's key is not P-256, or a field does not encode.
    pub fn der(&self) -> Result<Vec<u8>> {
        let cert_status = match self.status {
            Status::Good => CertStatus::good(),
            Status::Unknown => CertStatus::unknown(),
            Status::Revoked { at, .. } => CertStatus::Revoked(RevokedInfo {
                revocation_time: OcspGeneralizedTime::try_from(at)?,
                revocation_reason: Some(CrlReason::KeyCompromise),
            }),
        };
        let single_extensions = match self.status {
            Status::Revoked {
                invalidity: Some(t),
                ..
            } => Some(vec![extension(
                rfc5280::ID_CE_INVALIDITY_DATE,
                false,
                GeneralizedTime::from_system_time(t)?.to_der()?,
            )?]),
            _ => None,
        };
        let signer = x509(self.signer)?;
        let responder_id = if self.by_key {
            ResponderId::ByKey(OctetString::new(
                sha1::Sha1::digest(
                    signer
                        .tbs_certificate
                        .subject_public_key_info
                        .subject_public_key
                        .raw_bytes(),
                )
                .to_vec(),
            )?)
        } else {
            ResponderId::ByName(signer.tbs_certificate.subject.clone())
        };
        let next_update = match self.next_update {
            Some(t) => Some(OcspGeneralizedTime::try_from(t)?),
            None => None,
        };
        let tbs = ResponseData {
            version: Default::default(),
            responder_id,
            produced_at: OcspGeneralizedTime::try_from(self.this_update)?,
            responses: vec![SingleResponse {
                cert_id: cert_id(self.about, self.issuer, self.hash)?,
                cert_status,
                this_update: OcspGeneralizedTime::try_from(self.this_update)?,
                next_update,
                single_extensions,
            }],
            response_extensions: None,
        };
        let sig: p256::ecdsa::Signature = p256_key(self.signer)?.sign(&tbs.to_der()?);
        let certs = if self.certs.is_empty() {
            None
        } else {
            Some(
                self.certs
                    .iter()
                    .map(|c| x509(c))
                    .collect::<Result<Vec<_>>>()?,
            )
        };
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(sig.to_der().as_bytes())?,
            certs,
        };
        Ok(OcspResponse::successful(basic)?.to_der()?)
    }
}

/// One revoked entry of a minted CRL.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The revoked certificate's serial number.
    pub serial: u64,
    /// revocationDate.
    pub at: SystemTime,
    /// The reasonCode extension.
    pub reason: Option<rcgen::RevocationReason>,
    /// The invalidityDate extension.
    pub invalidity: Option<SystemTime>,
}

impl Entry {
    /// `serial` revoked ten days before [`now`] for keyCompromise.
    pub fn revoked(serial: u64) -> Self {
        Self {
            serial,
            at: now() - 10 * DAY,
            reason: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity: None,
        }
    }
}

/// A CRL (DER, CRL number 1) signed by `issuer`, listing `entries`.
///
/// # Errors
/// rcgen cannot encode or sign the CRL.
pub fn crl(
    issuer: &Issued,
    entries: &[Entry],
    this_update: SystemTime,
    next_update: SystemTime,
) -> Result<Vec<u8>> {
    let revoked = entries
        .iter()
        .map(|e| rcgen::RevokedCertParams {
            serial_number: e.serial.into(),
            revocation_time: e.at.into(),
            reason_code: e.reason,
            invalidity_date: e.invalidity.map(Into::into),
        })
        .collect();
    signed_crl(issuer, revoked, this_update, next_update)
}

/// A CRL (DER) signed by `issuer` listing `revoked`: CRL number 1, no
/// issuing distribution point, authority key identifier by SHA-256.
///
/// # Errors
/// rcgen cannot encode or sign the CRL.
pub fn signed_crl(
    issuer: &Issued,
    revoked: Vec<rcgen::RevokedCertParams>,
    this_update: SystemTime,
    next_update: SystemTime,
) -> Result<Vec<u8>> {
    let params = rcgen::CertificateRevocationListParams {
        this_update: this_update.into(),
        next_update: next_update.into(),
        crl_number: 1u64.into(),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    Ok(params
        .signed_by(&issuer.cert, &issuer.key.rcgen)?
        .der()
        .to_vec())
}

/// A current CRL of `issuer`: a day old, valid for a week.
///
/// # Errors
/// rcgen cannot encode or sign the CRL.
pub fn current_crl(issuer: &Issued, entries: &[Entry]) -> Result<Vec<u8>> {
    crl(issuer, entries, now() - DAY, now() + 7 * DAY)
}

/// The CRL `der` with its signed part changed by `edit`, re-signed with
/// `issuer`'s P-256 key.
///
/// # Errors
/// `der` is not a CRL, the key is not P-256, or the CRL does not encode.
pub fn resign_crl(
    der: &[u8],
    issuer: &Issued,
    edit: impl FnOnce(&mut x509_cert::crl::TbsCertList),
) -> Result<Vec<u8>> {
    let mut list = x509_cert::crl::CertificateList::from_der(der)?;
    edit(&mut list.tbs_cert_list);
    let sig: p256::ecdsa::Signature = p256_key(issuer)?.sign(&list.tbs_cert_list.to_der()?);
    list.signature = BitString::from_bytes(sig.to_der().as_bytes())?;
    Ok(list.to_der()?)
}

/// An extension with a raw DER value.
///
/// # Errors
/// The value is too long for an OCTET STRING.
pub fn extension(
    oid: const_oid::ObjectIdentifier,
    critical: bool,
    value: Vec<u8>,
) -> Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_names_its_issuers_endpoints_and_only_those_asked_for() {
        let base = "http://revocation.test";
        let pki = Pki::new(base, Endpoints::Both).unwrap();
        let leaf = pki.leaf.der();
        let has = |der: &[u8], s: &str| der.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(has(&leaf, &ocsp_url(base, "intermediate")));
        assert!(has(&leaf, &crl_url(base, "intermediate")));
        assert!(has(&pki.intermediate.der(), &crl_url(base, "root")));
        let crl_only = Pki::new(base, Endpoints::CrlOnly).unwrap();
        assert!(!has(&crl_only.leaf.der(), &ocsp_url(base, "intermediate")));
        assert!(has(&crl_only.leaf.der(), &crl_url(base, "intermediate")));
    }

    #[test]
    fn an_ocsp_response_says_what_its_spec_says() {
        let pki = Pki::new("http://revocation.test", Endpoints::Both).unwrap();
        let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
        spec.status = Status::Revoked {
            at: now() - DAY,
            invalidity: None,
        };
        let response = OcspResponse::from_der(&spec.der().unwrap()).unwrap();
        let bytes = response.response_bytes.unwrap();
        let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap();
        let single = &basic.tbs_response_data.responses[0];
        assert!(matches!(single.cert_status, CertStatus::Revoked(_)));
        assert_eq!(
            single.cert_id,
            cert_id(&pki.leaf, &pki.intermediate, IdHash::Sha1).unwrap()
        );
    }

    #[test]
    fn a_crl_lists_its_entries() {
        let pki = Pki::new("http://revocation.test", Endpoints::Both).unwrap();
        let der = current_crl(&pki.intermediate, &[Entry::revoked(3), Entry::revoked(77)]).unwrap();
        let list = x509_cert::crl::CertificateList::from_der(&der).unwrap();
        let serials: Vec<_> = list
            .tbs_cert_list
            .revoked_certificates
            .unwrap()
            .iter()
            .map(|r| r.serial_number.as_bytes().to_vec())
            .collect();
        assert_eq!(serials, [vec![3], vec![77]]);
        let empty = current_crl(&pki.intermediate, &[]).unwrap();
        let list = x509_cert::crl::CertificateList::from_der(&empty).unwrap();
        assert!(list.tbs_cert_list.revoked_certificates.is_none());
    }
}
