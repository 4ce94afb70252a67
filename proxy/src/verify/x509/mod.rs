//! X.509 certificates shared by the verifiers: parsing, public keys
//! (`key.rs`), certificate signatures. The Notary Project's chain rules
//! (code-signing and timestamping chains, validity, trust anchors) are
//! `verify::notary::chain`'s.
//!
//! Contract: [`Certificate::from_der`] and [`parse_certificate_file`] parse
//! untrusted bytes into certificates whose honoured extensions (basic
//! constraints, key usage, extended key usage) are already decoded; they
//! never panic. [`Certificate`] checks its own issuance by another
//! (signature and names).
//!
//! Nothing here reads the clock, the file system or the network.
//!

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use const_oid::db::rfc5280;
use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Reader, SliceReader};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

mod key;

pub(crate) use key::CertSignatureAlgorithm;
pub(crate) use key::{verify_cms_signature, Hash, KeyKind, PublicKey};

/// Smallest RSA modulus accepted anywhere in a chain.
///
/// [Signature spec, Certificate Requirements](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#leaf-certificates):
/// "For RSA public key, the key length MUST be 2048 bits or higher."
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus we agree to compute with (bounds verification cost).
pub(crate) const MAX_RSA_BITS: usize = 16_384;

/// Why one certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertificateError {
    #[error("it is not a DER-encoded X.509 certificate")]
    NotDer,
    #[error("its signature algorithm does not match the one inside the signed part")]
    SignatureAlgorithmMismatch,
    #[error("its signature algorithm {oid} is not supported (use RSA PKCS#1 v1.5 or RSASSA-PSS with SHA-2, or ECDSA with SHA-2)")]
    UnsupportedSignatureAlgorithm { oid: ObjectIdentifier },
    #[error(
        "its public key algorithm {oid} is not supported (use RSA or ECDSA P-256/P-384/P-521)"
    )]
    UnsupportedPublicKey { oid: ObjectIdentifier },
    #[error("its RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")]
    RsaKeyTooSmall { bits: usize },
    #[error("its RSA key has {bits} bits, more than the {MAX_RSA_BITS} supported")]
    RsaKeyTooLarge { bits: usize },
    #[error("its public key is malformed")]
    InvalidPublicKey,
    #[error("it contains extension {oid} more than once")]
    DuplicateExtension { oid: ObjectIdentifier },
    #[error("its extension {oid} is malformed")]
    InvalidExtension { oid: ObjectIdentifier },
    #[error("it has critical extension {oid}, which pullgate does not process")]
    UnknownCriticalExtension { oid: ObjectIdentifier },
}
/// The extensions the Notary Project honours.
///
/// [Signature spec, Other requirements](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#other-requirements):
/// "Only Basic Constraints, Key Usage, and Extended Key Usage extensions of
/// X.509 certificates are honored. For rest of the extensions, implementations
/// ... MUST fail open i.e. rest of the extensions MUST NOT be evaluated or
/// honored." So unknown critical extensions are not rejected here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Honoured {
    pub(crate) basic_constraints: Option<(bool, BasicConstraints)>,
    pub(crate) key_usage: Option<(bool, KeyUsage)>,
    /// (critical, purposes)
    pub(crate) extended_key_usage: Option<(bool, Vec<ObjectIdentifier>)>,
    pub(crate) subject_key_identifier: Option<Vec<u8>>,
}

/// One parsed X.509 certificate with its original DER.
#[derive(Clone)]
pub(crate) struct Certificate {
    der: Vec<u8>,
    tbs: Range<usize>,
    cert: x509_cert::Certificate,
    pub(crate) subject: String,
    key: PublicKey,
    // Kept as a result so that a trust-store root whose own self-signature
    // uses SHA-1 still loads; it fails only if it must be verified.
    pub(crate) signature_algorithm: Result<CertSignatureAlgorithm, CertificateError>,
    /// The extensions the chain rules read (`verify::notary::chain`).
    pub(crate) ext: Honoured,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

impl Certificate {
    /// Parses one DER certificate (no trailing bytes).
    ///
    /// # Errors
    /// A [`CertificateError`] saying what is wrong or unsupported.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|_| CertificateError::NotDer)?;
        let tbs = tbs_range(der).ok_or(CertificateError::NotDer)?;
        // RFC 5280 §4.1.1.2: signatureAlgorithm "MUST contain the same
        // algorithm identifier as the signature field in the sequence
        // tbsCertificate".
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(CertificateError::SignatureAlgorithmMismatch);
        }
        let signature_algorithm = CertSignatureAlgorithm::from_algorithm(&cert.signature_algorithm);
        let key = PublicKey::from_spki(&cert.tbs_certificate.subject_public_key_info)?;
        let ext = honoured_extensions(&cert)?;
        let subject = cert.tbs_certificate.subject.to_string();
        let not_before = cert.tbs_certificate.validity.not_before.to_system_time();
        let not_after = cert.tbs_certificate.validity.not_after.to_system_time();
        Ok(Self {
            der: der.to_vec(),
            tbs,
            cert,
            subject,
            key,
            signature_algorithm,
            ext,
            not_before,
            not_after,
        })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER `tbsCertificate`, exactly as received.
    pub(crate) fn tbs_der(&self) -> &[u8] {
        self.der.get(self.tbs.clone()).unwrap_or_default()
    }

    /// The decoded certificate.
    pub(crate) fn inner(&self) -> &x509_cert::Certificate {
        &self.cert
    }

    /// The subject key identifier extension's value, if present.
    pub(crate) fn subject_key_identifier(&self) -> Option<&[u8]> {
        self.ext.subject_key_identifier.as_deref()
    }

    /// The subject as an RFC 4514 string, e.g. `CN=e2e,O=Notary,L=Seattle,ST=WA,C=US`.
    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    pub(crate) fn not_before(&self) -> SystemTime {
        self.not_before
    }

    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.key
    }

    pub(crate) fn is_ca(&self) -> bool {
        self.ext
            .basic_constraints
            .as_ref()
            .is_some_and(|(_, bc)| bc.ca)
    }

    /// True when `issuer` issued this certificate: its subject is our issuer
    /// name (byte for byte) and its key verifies our signature.
    pub(crate) fn is_issued_by(&self, issuer: &Certificate) -> bool {
        let names_chain = match (
            self.cert.tbs_certificate.issuer.to_der(),
            issuer.cert.tbs_certificate.subject.to_der(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        names_chain && self.signature_verifies_with(&issuer.key)
    }

    pub(crate) fn is_self_signed(&self) -> bool {
        self.is_issued_by(self)
    }

    fn signature_verifies_with(&self, key: &PublicKey) -> bool {
        let Some(sig) = self.cert.signature.as_bytes() else {
            return false;
        };
        let Some(tbs) = self.der.get(self.tbs.clone()) else {
            return false;
        };
        let Ok(alg) = self.signature_algorithm else {
            return false;
        };
        alg.verify(key, tbs, sig)
    }
}

/// The byte range of `tbsCertificate` inside a DER certificate, so the
/// signature is checked over the bytes as received, not a re-encoding.
fn tbs_range(der: &[u8]) -> Option<Range<usize>> {
    let mut outer = SliceReader::new(der).ok()?;
    let header = der::Header::decode(&mut outer).ok()?;
    let header_len = usize::try_from(header.encoded_len().ok()?).ok()?;
    let mut inner = SliceReader::new(der.get(header_len..)?).ok()?;
    let tbs = inner.tlv_bytes().ok()?;
    Some(header_len..header_len + tbs.len())
}

/// Extensions that carry no constraint pullgate must enforce, so their
/// criticality does not matter: key identifiers and alternative names.
const PROCESSED_NON_CRITICAL: [ObjectIdentifier; 4] = [
    rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER,
    rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
    rfc5280::ID_CE_SUBJECT_ALT_NAME,
    rfc5280::ID_CE_ISSUER_ALT_NAME,
];

fn honoured_extensions(cert: &x509_cert::Certificate) -> Result<Honoured, CertificateError> {
    let mut out = Honoured::default();
    let mut seen: Vec<ObjectIdentifier> = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        let oid = ext.extn_id;
        // RFC 5280 §4.2: "A certificate MUST NOT include more than one
        // instance of a particular extension."
        if seen.contains(&oid) {
            return Err(CertificateError::DuplicateExtension { oid });
        }
        seen.push(oid);
        let value = ext.extn_value.as_bytes();
        let invalid = |_| CertificateError::InvalidExtension { oid };
        match oid {
            rfc5280::ID_CE_BASIC_CONSTRAINTS => {
                out.basic_constraints = Some((
                    ext.critical,
                    BasicConstraints::from_der(value).map_err(invalid)?,
                ));
            }
            rfc5280::ID_CE_KEY_USAGE => {
                out.key_usage = Some((ext.critical, KeyUsage::from_der(value).map_err(invalid)?));
            }
            rfc5280::ID_CE_EXT_KEY_USAGE => {
                out.extended_key_usage = Some((
                    ext.critical,
                    ExtendedKeyUsage::from_der(value).map_err(invalid)?.0,
                ));
            }
            rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER => {
                let ski =
                    x509_cert::ext::pkix::SubjectKeyIdentifier::from_der(value).map_err(invalid)?;
                out.subject_key_identifier = Some(ski.0.as_bytes().to_vec());
            }
            // Read by `verify::revocation` when it looks for OCSP and CRL endpoints.
            rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS | rfc5280::ID_PE_AUTHORITY_INFO_ACCESS => {}
            // RFC 5280 §4.2: "A certificate-using system MUST reject the
            // certificate if it encounters a critical extension it does not
            // recognize or a critical extension that contains information
            // that it cannot process."
            _ if ext.critical && !PROCESSED_NON_CRITICAL.contains(&oid) => {
                return Err(CertificateError::UnknownCriticalExtension { oid });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Reads every certificate of a trust-store file: PEM (one or more
/// `CERTIFICATE` blocks) or DER (one or more concatenated certificates).
///
/// [Trust store spec](https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trust-store):
/// "the files are expected to contain certificate(s) in DER (binary) format or
/// PEM format (base-64 encoded DER)."
///
/// # Errors
/// [`CertificateFileError`] when the file holds no certificate, a PEM block of
/// another type, or a certificate that does not parse.
pub(crate) fn parse_certificate_file(
    bytes: &[u8],
) -> Result<Vec<Certificate>, CertificateFileError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut certs = Vec::new();
    if let Some(first) = find(bytes, BEGIN) {
        let mut rest = &bytes[first..];
        while let Some(start) = find(rest, BEGIN) {
            rest = &rest[start..];
            let end_marker = find(rest, b"-----END ").ok_or(CertificateFileError::Pem)?;
            let after = &rest[end_marker + b"-----END ".len()..];
            let close = find(after, b"-----").ok_or(CertificateFileError::Pem)?;
            let block_len = end_marker + b"-----END ".len() + close + b"-----".len();
            let block = &rest[..block_len];
            let (label, der) =
                der::pem::decode_vec(block).map_err(|_| CertificateFileError::Pem)?;
            if label != "CERTIFICATE" {
                return Err(CertificateFileError::UnexpectedPemLabel {
                    label: label.chars().take(64).collect(),
                });
            }
            let index = certs.len();
            certs.push(
                Certificate::from_der(&der)
                    .map_err(|reason| CertificateFileError::Certificate { index, reason })?,
            );
            rest = &rest[block_len..];
        }
    } else {
        let mut reader = SliceReader::new(bytes).map_err(|_| CertificateFileError::Empty)?;
        while !reader.is_finished() {
            let index = certs.len();
            let tlv = reader
                .tlv_bytes()
                .map_err(|_| CertificateFileError::Certificate {
                    index,
                    reason: CertificateError::NotDer,
                })?;
            certs.push(
                Certificate::from_der(tlv)
                    .map_err(|reason| CertificateFileError::Certificate { index, reason })?,
            );
        }
    }
    if certs.is_empty() {
        return Err(CertificateFileError::Empty);
    }
    Ok(certs)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Why a certificate file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertificateFileError {
    #[error("it contains no certificate")]
    Empty,
    #[error("it has a malformed PEM block")]
    Pem,
    #[error("it has a PEM block of type {label:?}; only CERTIFICATE is allowed")]
    UnexpectedPemLabel { label: String },
    #[error("certificate #{index} in it is unusable: {reason}")]
    Certificate {
        index: usize,
        reason: CertificateError,
    },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::verify::notary::chain::validate_code_signing_chain;
    use crate::verify::notary::NotaryError;

    #[test]
    fn parses_vector_certificates_and_subjects() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/notation-go/truststore/x509/ca/valid-trust-store/NotationTestRoot.pem"
        );
        let certs = parse_certificate_file(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(certs.len(), 1);
        let root = &certs[0];
        assert_eq!(
            root.subject(),
            "CN=Notation Test Root,O=Notary,L=Seattle,ST=WA,C=US"
        );
        assert!(root.is_self_signed());
        assert!(root.is_ca());
        assert_eq!(root.public_key().kind(), KeyKind::Rsa { bits: 3072 });
        assert!(root.not_before() < root.not_after());

        let der = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/notation-go/truststore/x509/ca/valid-trust-store/GlobalSign.der"
        );
        let certs = parse_certificate_file(&std::fs::read(der).unwrap()).unwrap();
        assert_eq!(certs.len(), 1);
        assert!(certs[0].is_self_signed());
    }

    fn testdata(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/verify/testdata");
        std::fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn rsa_pss_and_p521_certificate_signatures_verify() {
        let pss = parse_certificate_file(&testdata("rsa-pss-self-signed-ca.crt")).unwrap();
        assert!(pss[0].is_self_signed());
        let p521 = parse_certificate_file(&testdata("p521-self-signed.crt")).unwrap();
        assert!(p521[0].is_self_signed());
        assert_eq!(p521[0].public_key().kind(), KeyKind::P521);
        assert!(validate_code_signing_chain(&p521).is_ok());
    }

    #[test]
    fn every_vector_certificate_parses() {
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
        let mut count = 0;
        for dir in ["notation-e2e/certs", "notation-e2e/tsa-roots"] {
            for entry in std::fs::read_dir(vectors.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let certs = parse_certificate_file(&std::fs::read(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(
                    certs.iter().all(Certificate::is_self_signed),
                    "{}",
                    path.display()
                );
                count += certs.len();
            }
        }
        assert_eq!(count, 5);
        let e2e = parse_certificate_file(
            &std::fs::read(vectors.join("notation-e2e/certs/e2e.crt")).unwrap(),
        )
        .unwrap();
        assert_eq!(e2e[0].subject(), "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US");
        assert!(validate_code_signing_chain(&e2e).is_ok());
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        assert_eq!(
            parse_certificate_file(&testdata("rsa1024-self-signed.crt")).unwrap_err(),
            CertificateFileError::Certificate {
                index: 0,
                reason: CertificateError::RsaKeyTooSmall { bits: 1024 }
            }
        );
    }

    #[test]
    fn sha1_signed_certificate_loads_but_fails_chain_validation() {
        // Loadable, so a SHA-1 self-signed root in a trust store does not
        // stop startup; unusable in a chain.
        let certs = parse_certificate_file(&testdata("sha1-self-signed.crt")).unwrap();
        assert!(!certs[0].is_self_signed());
        assert!(matches!(
            validate_code_signing_chain(&certs),
            Err(NotaryError::Certificate {
                index: 0,
                reason: CertificateError::UnsupportedSignatureAlgorithm { .. }
            })
        ));
    }

    #[test]
    fn multi_certificate_files() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/notation-go/truststore/x509/ca/trust-store-with-leaf-certs-in-single-file/RootAndLeafCerts.crt"
        ))
        .unwrap();
        assert_eq!(parse_certificate_file(&pem).unwrap().len(), 2);
        let der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/notation-go/truststore/x509/ca/valid-trust-store/GlobalSign.der"
        ))
        .unwrap();
        let twice = [der.clone(), der].concat();
        assert_eq!(parse_certificate_file(&twice).unwrap().len(), 2);
        let mut truncated = twice.clone();
        truncated.pop();
        assert!(matches!(
            parse_certificate_file(&truncated),
            Err(CertificateFileError::Certificate { index: 1, .. })
        ));
    }

    #[test]
    fn garbage_is_not_a_certificate_file() {
        assert_eq!(
            parse_certificate_file(b"invalid").unwrap_err(),
            CertificateFileError::Certificate {
                index: 0,
                reason: CertificateError::NotDer
            }
        );
        assert_eq!(
            parse_certificate_file(b"").unwrap_err(),
            CertificateFileError::Empty
        );
        assert!(matches!(
            parse_certificate_file(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(CertificateFileError::UnexpectedPemLabel { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn pem_like_input_never_panics(s in "(junk|-----BEGIN [A-Z ]{0,12}-----|\n|[A-Za-z0-9+/=]{0,70}|-----END [A-Z ]{0,12}-----|-----){0,12}") {
            let _ = parse_certificate_file(s.as_bytes());
        }

        #[test]
        fn certificate_parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = Certificate::from_der(&bytes);
            let _ = parse_certificate_file(&bytes);
        }
    }
}
