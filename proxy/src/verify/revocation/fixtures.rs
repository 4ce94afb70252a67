//! Test-only PKI for revocation: a root, an intermediate and a leaf whose
//! certificates name OCSP responders and CRLs under one base URL, plus
//! minted OCSP responses (x509-ocsp types, signed with p256) and CRLs (rcgen).

use std::time::{Duration, SystemTime};

use const_oid::db::{rfc5280, rfc5912};
use der::asn1::{BitString, GeneralizedTime, Ia5String, Null, OctetString};
use der::{Decode, Encode};
use p256::pkcs8::DecodePrivateKey as _;
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

use crate::verify::mint::AsCertificate as _;
use crate::verify::x509::Certificate;
use pullgate_testkit::{self as mint, Issued, Key};

/// 2026-01-01T00:00:00Z: "now" in these tests.
pub(crate) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(86_400);

/// Root → intermediate → leaf. The intermediate and the leaf name
/// `{base}/ocsp/<ca>` and `{base}/crl/<ca>.crl` of their issuer.
pub(crate) struct Pki {
    pub(crate) root: Issued,
    pub(crate) intermediate: Issued,
    pub(crate) leaf: Issued,
}

/// Which endpoints a minted certificate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoints {
    Both,
    OcspOnly,
    CrlOnly,
    None,
}

pub(crate) fn ocsp_url(base: &str, ca: &str) -> String {
    format!("{base}/ocsp/{ca}")
}

pub(crate) fn crl_url(base: &str, ca: &str) -> String {
    format!("{base}/crl/{ca}.crl")
}

fn aia(url: &str) -> CustomExtension {
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(Ia5String::new(url).unwrap()),
    }]);
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia.to_der().unwrap())
}

fn with_endpoints(
    mut params: rcgen::CertificateParams,
    base: &str,
    ca: &str,
    which: Endpoints,
) -> rcgen::CertificateParams {
    if matches!(which, Endpoints::Both | Endpoints::OcspOnly) {
        params.custom_extensions.push(aia(&ocsp_url(base, ca)));
    }
    if matches!(which, Endpoints::Both | Endpoints::CrlOnly) {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![crl_url(base, ca)],
        }];
    }
    params
}

impl Pki {
    /// A PKI whose intermediate and leaf name endpoints under `base`.
    pub(crate) fn new(base: &str, which: Endpoints) -> Self {
        Self::with_ca_keys(base, which, Key::p256().unwrap(), Key::p256().unwrap())
    }

    /// Like [`Pki::new`], with the root's and the intermediate's keys given.
    pub(crate) fn with_ca_keys(base: &str, which: Endpoints, root_key: Key, int_key: Key) -> Self {
        let mut root_params = mint::ca_params("Revocation Test Root", None);
        root_params.serial_number = Some(1u64.into());
        let root = mint::self_signed(root_params, root_key).unwrap();
        let mut int_params = with_endpoints(
            mint::ca_params("Revocation Test Intermediate", Some(0)),
            base,
            "root",
            which,
        );
        int_params.serial_number = Some(2u64.into());
        let intermediate = mint::issue(int_params, int_key, &root).unwrap();
        let mut leaf_params = with_endpoints(
            mint::leaf_params("Revocation Test Leaf"),
            base,
            "intermediate",
            which,
        );
        leaf_params.serial_number = Some(3u64.into());
        let leaf = mint::issue(leaf_params, Key::p256().unwrap(), &intermediate).unwrap();
        Self {
            root,
            intermediate,
            leaf,
        }
    }

    /// Leaf first.
    pub(crate) fn chain(&self) -> Vec<Certificate> {
        vec![
            self.leaf.certificate(),
            self.intermediate.certificate(),
            self.root.certificate(),
        ]
    }

    /// A delegated OCSP responder certificate issued by `issuer`.
    pub(crate) fn responder(issuer: &Issued, ocsp_signing: bool) -> Issued {
        let mut p = mint::leaf_params("Revocation Test OCSP Responder");
        p.extended_key_usages = if ocsp_signing {
            vec![ExtendedKeyUsagePurpose::OcspSigning]
        } else {
            vec![ExtendedKeyUsagePurpose::CodeSigning]
        };
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.serial_number = Some(99u64.into());
        mint::issue(p, Key::p256().unwrap(), issuer).unwrap()
    }
}

fn x509(issued: &Issued) -> x509_cert::Certificate {
    x509_cert::Certificate::from_der(issued.cert.der()).unwrap()
}

/// Which hash a minted CertID uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdHash {
    Sha1,
    Sha256,
}

pub(crate) fn cert_id(cert: &Issued, issuer: &Issued, hash: IdHash) -> CertId {
    let issuer = x509(issuer);
    let name = issuer.tbs_certificate.subject.to_der().unwrap();
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
    CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(h(&name)).unwrap(),
        issuer_key_hash: OctetString::new(h(&key)).unwrap(),
        serial_number: x509(cert).tbs_certificate.serial_number,
    }
}

/// The status a minted OCSP response gives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Status {
    Good,
    Revoked {
        at: SystemTime,
        invalidity: Option<SystemTime>,
    },
    Unknown,
}

/// Everything a minted OCSP response says.
pub(crate) struct OcspSpec<'a> {
    pub(crate) about: &'a Issued,
    pub(crate) issuer: &'a Issued,
    /// Signs the response; named by name in responderID.
    pub(crate) signer: &'a Issued,
    /// Certificates carried in the response (delegated responders).
    pub(crate) certs: Vec<&'a Issued>,
    pub(crate) status: Status,
    pub(crate) this_update: SystemTime,
    pub(crate) next_update: Option<SystemTime>,
    pub(crate) hash: IdHash,
    /// Identify the responder by key hash instead of by name.
    pub(crate) by_key: bool,
}

impl<'a> OcspSpec<'a> {
    /// Good, signed by the issuer, valid from an hour before `now()` to a day after.
    pub(crate) fn good(about: &'a Issued, issuer: &'a Issued) -> Self {
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

    pub(crate) fn der(&self) -> Vec<u8> {
        let cert_status = match self.status {
            Status::Good => CertStatus::good(),
            Status::Unknown => CertStatus::unknown(),
            Status::Revoked { at, .. } => CertStatus::Revoked(RevokedInfo {
                revocation_time: OcspGeneralizedTime::try_from(at).unwrap(),
                revocation_reason: Some(CrlReason::KeyCompromise),
            }),
        };
        let single_extensions = match self.status {
            Status::Revoked {
                invalidity: Some(t),
                ..
            } => Some(vec![Extension {
                extn_id: rfc5280::ID_CE_INVALIDITY_DATE,
                critical: false,
                extn_value: OctetString::new(
                    GeneralizedTime::from_system_time(t)
                        .unwrap()
                        .to_der()
                        .unwrap(),
                )
                .unwrap(),
            }]),
            _ => None,
        };
        let signer = x509(self.signer);
        let responder_id = if self.by_key {
            ResponderId::ByKey(
                OctetString::new(
                    sha1::Sha1::digest(
                        signer
                            .tbs_certificate
                            .subject_public_key_info
                            .subject_public_key
                            .raw_bytes(),
                    )
                    .to_vec(),
                )
                .unwrap(),
            )
        } else {
            ResponderId::ByName(signer.tbs_certificate.subject.clone())
        };
        let tbs = ResponseData {
            version: Default::default(),
            responder_id,
            produced_at: OcspGeneralizedTime::try_from(self.this_update).unwrap(),
            responses: vec![SingleResponse {
                cert_id: cert_id(self.about, self.issuer, self.hash),
                cert_status,
                this_update: OcspGeneralizedTime::try_from(self.this_update).unwrap(),
                next_update: self
                    .next_update
                    .map(|t| OcspGeneralizedTime::try_from(t).unwrap()),
                single_extensions,
            }],
            response_extensions: None,
        };
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(self.signer.key.rcgen.serialized_der())
            .unwrap();
        let sig: p256::ecdsa::Signature = key.sign(&tbs.to_der().unwrap());
        let certs = if self.certs.is_empty() {
            None
        } else {
            Some(self.certs.iter().map(|c| x509(c)).collect())
        };
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(sig.to_der().as_bytes()).unwrap(),
            certs,
        };
        OcspResponse::successful(basic).unwrap().to_der().unwrap()
    }
}

/// One revoked entry of a minted CRL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) serial: u64,
    pub(crate) at: SystemTime,
    pub(crate) reason: Option<rcgen::RevocationReason>,
    pub(crate) invalidity: Option<SystemTime>,
}

impl Entry {
    pub(crate) fn revoked(serial: u64) -> Self {
        Self {
            serial,
            at: now() - 10 * DAY,
            reason: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity: None,
        }
    }
}

/// A CRL signed by `issuer`, listing `entries`.
pub(crate) fn crl(
    issuer: &Issued,
    entries: &[Entry],
    this_update: SystemTime,
    next_update: SystemTime,
) -> Vec<u8> {
    let params = rcgen::CertificateRevocationListParams {
        this_update: this_update.into(),
        next_update: next_update.into(),
        crl_number: 1u64.into(),
        issuing_distribution_point: None,
        revoked_certs: entries
            .iter()
            .map(|e| rcgen::RevokedCertParams {
                serial_number: e.serial.into(),
                revocation_time: e.at.into(),
                reason_code: e.reason,
                invalidity_date: e.invalidity.map(Into::into),
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params
        .signed_by(&issuer.cert, &issuer.key.rcgen)
        .unwrap()
        .der()
        .to_vec()
}

/// A current CRL of `issuer` (a day old, valid for a week).
pub(crate) fn current_crl(issuer: &Issued, entries: &[Entry]) -> Vec<u8> {
    crl(issuer, entries, now() - DAY, now() + 7 * DAY)
}

/// Re-signs a CRL with `issuer`'s key after `edit` changed its signed part.
pub(crate) fn resign_crl(
    der: &[u8],
    issuer: &Issued,
    edit: impl FnOnce(&mut x509_cert::crl::TbsCertList),
) -> Vec<u8> {
    let mut list = x509_cert::crl::CertificateList::from_der(der).unwrap();
    edit(&mut list.tbs_cert_list);
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(issuer.key.rcgen.serialized_der()).unwrap();
    let sig: p256::ecdsa::Signature = key.sign(&list.tbs_cert_list.to_der().unwrap());
    list.signature = BitString::from_bytes(sig.to_der().as_bytes()).unwrap();
    list.to_der().unwrap()
}

/// An extension with a raw DER value.
pub(crate) fn extension(
    oid: const_oid::ObjectIdentifier,
    critical: bool,
    value: Vec<u8>,
) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).unwrap(),
    }
}
