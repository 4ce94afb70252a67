//! A TLS CA and a server certificate it issued, for a test server behind
//! TLS whose clients are given the CA.

use anyhow::Result;
use rcgen::CertificateParams;

use crate::cert::{ca_params, issue, self_signed, Issued};
use crate::key::Key;

/// A fresh CA and a server certificate from it.
#[derive(Debug)]
pub struct TlsServer {
    /// The CA (P-256), to give clients.
    pub ca: Issued,
    /// The server's certificate (P-256), for the names it was minted for.
    pub server: Issued,
}

impl TlsServer {
    /// A fresh CA and a server certificate issued by it whose subject
    /// alternative names are `sans` (an IP address becomes an IP SAN, any
    /// other string a DNS name).
    ///
    /// # Errors
    /// A name is not a valid SAN, or minting a key or certificate failed.
    pub fn new(sans: &[&str]) -> Result<Self> {
        let ca = self_signed(ca_params("pullgate test TLS CA", None), Key::p256()?)?;
        let params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        let server = issue(params, Key::p256()?, &ca)?;
        Ok(Self { ca, server })
    }

    /// The server's private key, PKCS#8 DER.
    pub fn server_key_der(&self) -> Vec<u8> {
        self.server.key.rcgen.serialize_der()
    }

    /// The server's private key, PKCS#8 PEM.
    pub fn server_key_pem(&self) -> String {
        self.server.key.rcgen.serialize_pem()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode as _;

    #[test]
    fn the_server_certificate_names_the_sans_and_is_issued_by_the_ca() {
        let tls = TlsServer::new(&["localhost", "127.0.0.1"]).unwrap();
        let server = x509_cert::Certificate::from_der(&tls.server.der()).unwrap();
        let ca = x509_cert::Certificate::from_der(&tls.ca.der()).unwrap();
        assert_eq!(server.tbs_certificate.issuer, ca.tbs_certificate.subject);
        assert_ne!(server.tbs_certificate.subject, ca.tbs_certificate.subject);
        let der = tls.server.der();
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"localhost"));
        assert!(has(&[127, 0, 0, 1]));
        assert!(tls.ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(tls
            .server_key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
