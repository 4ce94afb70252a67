//! Certificates: the parameters of a CA, a code-signing leaf and a
//! timestamping leaf (rcgen's, so a test can change any field before
//! issuing), and issuing them.

use anyhow::Result;
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SerialNumber,
};

use crate::asn1;
use crate::key::Key;

/// `C=US, ST=WA, L=Seattle, O=Notary, CN=<cn>`.
pub fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::LocalityName, "Seattle");
    dn.push(DnType::OrganizationName, "Notary");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A positive random 16-byte serial number.
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from(bytes.to_vec())
}

/// Params of a CA (root or intermediate) named [`dn`]`(cn)`: keyCertSign and
/// cRLSign, path length `path_len` (`None`: unconstrained), valid 2020 → 2040.
pub fn ca_params(cn: &str, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    p
}

/// Params of a code-signing leaf named [`dn`]`(cn)`: CA:false,
/// digitalSignature, EKU codeSigning, valid 2020 → 2040.
pub fn leaf_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    p
}

/// Params of a timestamping leaf: digitalSignature, and exactly one EKU,
/// timeStamping, critical (RFC 3161 §2.3), valid 2020 → 2040.
pub fn tsa_params(cn: &str) -> CertificateParams {
    let mut p = leaf_params(cn);
    p.extended_key_usages = Vec::new();
    // SEQUENCE { id-kp-timeStamping }
    let mut eku = rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 37],
        asn1::seq(&[&asn1::oid("1.3.6.1.5.5.7.3.8")]),
    );
    eku.set_criticality(true);
    p.custom_extensions = vec![eku];
    p
}

/// A key with its certificate.
pub struct Issued {
    /// The certificate (rcgen's, to issue others with it).
    pub cert: rcgen::Certificate,
    /// Its private key.
    pub key: Key,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert", &self.cert.der())
            .field("key", &self.key)
            .finish()
    }
}

impl Issued {
    /// The certificate, DER.
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// `params` self-signed with `key`.
///
/// # Errors
/// rcgen cannot encode or sign the certificate.
pub fn self_signed(params: CertificateParams, key: Key) -> Result<Issued> {
    let cert = params.self_signed(&key.rcgen)?;
    Ok(Issued { cert, key })
}

/// `params` for `key`, issued by `issuer`.
///
/// # Errors
/// rcgen cannot encode or sign the certificate.
pub fn issue(params: CertificateParams, key: Key, issuer: &Issued) -> Result<Issued> {
    let cert = params.signed_by(&key.rcgen, &issuer.cert, &issuer.key.rcgen)?;
    Ok(Issued { cert, key })
}
