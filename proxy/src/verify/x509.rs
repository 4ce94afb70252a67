//! X.509 certificates shared by the verifiers: parsing, public keys,
//! certificate signatures, and the Notary Project code-signing chain rules.
//!
//! Contract:
//! - [`Certificate::from_der`] and [`parse_certificate_file`] parse untrusted
//!   bytes into certificates whose honoured extensions (basic constraints, key
//!   usage, extended key usage) are already decoded; they never panic.
//! - [`validate_code_signing_chain`] checks an ordered chain (leaf first) against
//!   the [certificate requirements] of the signature specification and RFC 5280
//!   issuance (signature *and* name chaining). It does not look at time or trust.
//! - [`check_validity`] checks every certificate at one instant, passed in.
//! - [`trusted_index`] finds the first certificate of a chain that is a trust
//!   anchor (byte-equal DER).
//!
//! Nothing here reads the clock, the file system or the network.
//!
//! [certificate requirements]: https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#certificate-requirements

use std::fmt;
use std::ops::Range;
use std::time::SystemTime;

use const_oid::db::{rfc5280, rfc5912};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Reader, SliceReader};
use rsa::pkcs1::RsaPssParams;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use signature::hazmat::PrehashVerifier;
use signature::Verifier;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

use super::notary::NotaryError;

/// Smallest RSA modulus accepted anywhere in a chain.
///
/// [Signature spec, Certificate Requirements](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#leaf-certificates):
/// "For RSA public key, the key length MUST be 2048 bits or higher."
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus we agree to compute with (bounds verification cost).
const MAX_RSA_BITS: usize = 16_384;

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

/// The key kinds a Notary Project signing certificate may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa { bits: usize },
    P256,
    P384,
    P521,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::P256 => f.write_str("ECDSA P-256"),
            KeyKind::P384 => f.write_str("ECDSA P-384"),
            KeyKind::P521 => f.write_str("ECDSA P-521"),
        }
    }
}

/// SHA-2 hash functions used by the supported signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(crate) fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(msg).to_vec(),
            Hash::Sha384 => Sha384::digest(msg).to_vec(),
            Hash::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }

    pub(crate) fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        match oid {
            rfc5912::ID_SHA_256 => Some(Hash::Sha256),
            rfc5912::ID_SHA_384 => Some(Hash::Sha384),
            rfc5912::ID_SHA_512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// Output length in bytes.
    pub(crate) fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// A parsed public key.
#[derive(Clone)]
pub(crate) enum PublicKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.kind())
    }
}

impl PublicKey {
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Rsa(k) => KeyKind::Rsa { bits: k.n().bits() },
            PublicKey::P256(_) => KeyKind::P256,
            PublicKey::P384(_) => KeyKind::P384,
            PublicKey::P521(_) => KeyKind::P521,
        }
    }

    fn from_spki(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<Self, CertificateError> {
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CertificateError::InvalidPublicKey)?;
        match spki.algorithm.oid {
            rfc5912::RSA_ENCRYPTION => {
                let pk = rsa::pkcs1::RsaPublicKey::from_der(key_bytes)
                    .map_err(|_| CertificateError::InvalidPublicKey)?;
                let n = BigUint::from_bytes_be(pk.modulus.as_bytes());
                let e = BigUint::from_bytes_be(pk.public_exponent.as_bytes());
                let bits = n.bits();
                if bits < MIN_RSA_BITS {
                    return Err(CertificateError::RsaKeyTooSmall { bits });
                }
                if bits > MAX_RSA_BITS {
                    return Err(CertificateError::RsaKeyTooLarge { bits });
                }
                RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                    .map(PublicKey::Rsa)
                    .map_err(|_| CertificateError::InvalidPublicKey)
            }
            rfc5912::ID_EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as().ok())
                    .ok_or(CertificateError::InvalidPublicKey)?;
                match curve {
                    rfc5912::SECP_256_R_1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P256)
                        .map_err(|_| CertificateError::InvalidPublicKey),
                    rfc5912::SECP_384_R_1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P384)
                        .map_err(|_| CertificateError::InvalidPublicKey),
                    rfc5912::SECP_521_R_1 => p521::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P521)
                        .map_err(|_| CertificateError::InvalidPublicKey),
                    oid => Err(CertificateError::UnsupportedPublicKey { oid }),
                }
            }
            oid => Err(CertificateError::UnsupportedPublicKey { oid }),
        }
    }

    /// RSASSA-PSS with MGF1 over the same hash and the given salt length.
    pub(crate) fn verify_pss(&self, hash: Hash, salt_len: usize, msg: &[u8], sig: &[u8]) -> bool {
        let PublicKey::Rsa(key) = self else {
            return false;
        };
        let hashed = hash.digest(msg);
        let scheme = match hash {
            Hash::Sha256 => Pss::new_with_salt::<Sha256>(salt_len),
            Hash::Sha384 => Pss::new_with_salt::<Sha384>(salt_len),
            Hash::Sha512 => Pss::new_with_salt::<Sha512>(salt_len),
        };
        key.verify(scheme, &hashed, sig).is_ok()
    }

    fn verify_pkcs1v15(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let PublicKey::Rsa(key) = self else {
            return false;
        };
        let hashed = hash.digest(msg);
        let scheme = match hash {
            Hash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Hash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Hash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        };
        key.verify(scheme, &hashed, sig).is_ok()
    }

    /// ECDSA with the curve's own hash (P-256/SHA-256, P-384/SHA-384,
    /// P-521/SHA-512) and the fixed-width `r || s` signature of JWS.
    pub(crate) fn verify_ecdsa_fixed(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::P256(k) => {
                p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::P384(k) => {
                p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::P521(k) => {
                p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok())
            }
            PublicKey::Rsa(_) => false,
        }
    }

    /// ECDSA over `hash(msg)` with a DER-encoded signature (as in certificates).
    fn verify_ecdsa_der(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let prehash = hash.digest(msg);
        match self {
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            PublicKey::P521(k) => p521::ecdsa::Signature::from_der(sig)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            PublicKey::Rsa(_) => false,
        }
    }
}

/// A certificate signature algorithm we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertSignatureAlgorithm {
    RsaPkcs1(Hash),
    RsaPss { hash: Hash, salt_len: usize },
    Ecdsa(Hash),
}

impl CertSignatureAlgorithm {
    /// [Signature spec, Other requirements](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#other-requirements):
    /// "Any certificate in the certificate chain MUST NOT use SHA1WithRSA and
    /// ECDSAWithSHA1 signatures." We accept only the SHA-2 family.
    fn from_algorithm(alg: &AlgorithmIdentifierOwned) -> Result<Self, CertificateError> {
        let unsupported = || CertificateError::UnsupportedSignatureAlgorithm { oid: alg.oid };
        match alg.oid {
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Ok(Self::RsaPkcs1(Hash::Sha256)),
            rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Ok(Self::RsaPkcs1(Hash::Sha384)),
            rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Ok(Self::RsaPkcs1(Hash::Sha512)),
            rfc5912::ECDSA_WITH_SHA_256 => Ok(Self::Ecdsa(Hash::Sha256)),
            rfc5912::ECDSA_WITH_SHA_384 => Ok(Self::Ecdsa(Hash::Sha384)),
            rfc5912::ECDSA_WITH_SHA_512 => Ok(Self::Ecdsa(Hash::Sha512)),
            rfc5912::ID_RSASSA_PSS => {
                let params = alg.parameters.as_ref().ok_or_else(unsupported)?;
                let der = params.to_der().map_err(|_| unsupported())?;
                let params = RsaPssParams::from_der(&der).map_err(|_| unsupported())?;
                let hash = Hash::from_oid(params.hash.oid).ok_or_else(unsupported)?;
                // The rsa crate runs MGF1 with the message hash, so only that
                // combination (the one every CA uses) is accepted.
                let mgf_hash = params
                    .mask_gen
                    .parameters
                    .as_ref()
                    .and_then(|p| Hash::from_oid(p.oid));
                if params.mask_gen.oid != rfc5912::ID_MGF_1 || mgf_hash != Some(hash) {
                    return Err(unsupported());
                }
                Ok(Self::RsaPss {
                    hash,
                    salt_len: usize::from(params.salt_len),
                })
            }
            _ => Err(unsupported()),
        }
    }

    fn verify(self, key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::RsaPkcs1(h) => key.verify_pkcs1v15(h, msg, sig),
            Self::RsaPss { hash, salt_len } => key.verify_pss(hash, salt_len, msg, sig),
            Self::Ecdsa(h) => key.verify_ecdsa_der(h, msg, sig),
        }
    }
}

/// Verifies a CMS `SignerInfo` signature (RFC 5652 §5.6) made with `key`:
/// `signature_algorithm` as in certificates, or plain `rsaEncryption`, which
/// CMS uses to mean PKCS#1 v1.5 with the SignerInfo's `digest`.
///
/// # Errors
/// [`CertificateError::UnsupportedSignatureAlgorithm`] for SHA-1 and
/// anything outside the SHA-2 RSA/ECDSA family; `Ok(false)` when the
/// signature does not verify.
pub(crate) fn verify_cms_signature(
    key: &PublicKey,
    signature_algorithm: &AlgorithmIdentifierOwned,
    digest: Hash,
    msg: &[u8],
    sig: &[u8],
) -> Result<bool, CertificateError> {
    if signature_algorithm.oid == rfc5912::RSA_ENCRYPTION {
        return Ok(key.verify_pkcs1v15(digest, msg, sig));
    }
    Ok(CertSignatureAlgorithm::from_algorithm(signature_algorithm)?.verify(key, msg, sig))
}

/// The extensions the Notary Project honours.
///
/// [Signature spec, Other requirements](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#other-requirements):
/// "Only Basic Constraints, Key Usage, and Extended Key Usage extensions of
/// X.509 certificates are honored. For rest of the extensions, implementations
/// ... MUST fail open i.e. rest of the extensions MUST NOT be evaluated or
/// honored." So unknown critical extensions are not rejected here.
#[derive(Debug, Clone, Default)]
struct Honoured {
    basic_constraints: Option<(bool, BasicConstraints)>,
    key_usage: Option<(bool, KeyUsage)>,
    /// (critical, purposes)
    extended_key_usage: Option<(bool, Vec<ObjectIdentifier>)>,
    subject_key_identifier: Option<Vec<u8>>,
}

/// One parsed X.509 certificate with its original DER.
#[derive(Clone)]
pub(crate) struct Certificate {
    der: Vec<u8>,
    tbs: Range<usize>,
    cert: x509_cert::Certificate,
    subject: String,
    key: PublicKey,
    // Kept as a result so that a trust-store root whose own self-signature
    // uses SHA-1 still loads; it fails only if it must be verified.
    signature_algorithm: Result<CertSignatureAlgorithm, CertificateError>,
    ext: Honoured,
    not_before: SystemTime,
    not_after: SystemTime,
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

/// Checks an ordered chain (leaf first) against RFC 5280 issuance and the
/// Notary Project code-signing certificate requirements.
///
/// # Errors
/// The first rule broken, as a [`NotaryError`] naming the certificate.
pub(crate) fn validate_code_signing_chain(chain: &[Certificate]) -> Result<(), NotaryError> {
    validate_chain(chain, Purpose::CodeSigning)
}

/// Like [`validate_code_signing_chain`], for the chain of an RFC 3161
/// timestamp signer: the leaf must be a timestamping certificate.
///
/// # Errors
/// The first rule broken, as a [`NotaryError`] naming the certificate.
pub(crate) fn validate_timestamping_chain(chain: &[Certificate]) -> Result<(), NotaryError> {
    validate_chain(chain, Purpose::TimeStamping)
}

/// What the leaf of a chain is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    CodeSigning,
    TimeStamping,
}

fn validate_chain(chain: &[Certificate], purpose: Purpose) -> Result<(), NotaryError> {
    let Some((leaf, _)) = chain.split_first() else {
        return Err(NotaryError::Internal("empty certificate chain"));
    };
    // [Signature spec, Other requirements]: "Valid certificate chain MUST
    // contain a root certificate. If the certificate chain contains only a
    // root certificate then the root certificate MUST meet Leaf Certificates
    // requirements and ignore Root and Intermediate CA Certificates
    // requirements."
    // https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#other-requirements
    let last = chain.len() - 1;
    for (index, cert) in chain.iter().enumerate() {
        if let Err(reason) = &cert.signature_algorithm {
            return Err(NotaryError::Certificate {
                index,
                reason: reason.clone(),
            });
        }
        if index == last {
            if !cert.is_self_signed() {
                return Err(NotaryError::RootNotSelfSigned {
                    subject: cert.subject.clone(),
                });
            }
        } else {
            // "The certificate MUST NOT chain to multiple parents/roots" and
            // "MUST NOT contain a certificate that is unrelated to the
            // certificate chain": each certificate is issued by the next one,
            // checked by signature as well as by name (leaf and root may
            // share a DN).
            if cert.is_self_signed() {
                return Err(NotaryError::UnexpectedSelfSigned {
                    index,
                    subject: cert.subject.clone(),
                });
            }
            if let Some(parent) = chain.get(index + 1) {
                if !cert.is_issued_by(parent) {
                    return Err(NotaryError::NotIssuedBy {
                        index,
                        subject: cert.subject.clone(),
                        issuer: parent.subject.clone(),
                    });
                }
            }
        }
        if index == 0 {
            validate_leaf(leaf, purpose)?;
        } else {
            validate_ca(cert, index - 1)?;
        }
    }
    Ok(())
}

fn validate_leaf(cert: &Certificate, purpose: Purpose) -> Result<(), NotaryError> {
    // [Leaf Certificates](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#leaf-certificates):
    // "The basicConstraints extension is OPTIONAL ... If present, the cA
    // field MUST be set to false."
    if cert.is_ca() {
        return Err(NotaryError::LeafIsCa {
            subject: cert.subject.clone(),
        });
    }
    // "The keyUsage extension MUST be present and MUST be marked critical.
    // Bit positions for digitalSignature MUST be set. The Bit positions for
    // keyEncipherment, dataEncipherment, keyAgreement, keyCertSign,
    // encipherOnly, decipherOnly and cRLSign MUST NOT be set."
    let subject = || cert.subject.clone();
    let (critical, ku) = cert
        .ext
        .key_usage
        .as_ref()
        .ok_or_else(|| NotaryError::KeyUsage {
            subject: subject(),
            problem: KeyUsageProblem::Missing,
        })?;
    if !critical {
        return Err(NotaryError::KeyUsage {
            subject: subject(),
            problem: KeyUsageProblem::NotCritical,
        });
    }
    if !ku.digital_signature() {
        return Err(NotaryError::KeyUsage {
            subject: subject(),
            problem: KeyUsageProblem::MissingDigitalSignature,
        });
    }
    if ku.key_encipherment()
        || ku.data_encipherment()
        || ku.key_agreement()
        || ku.key_cert_sign()
        || ku.crl_sign()
        || ku.encipher_only()
        || ku.decipher_only()
    {
        return Err(NotaryError::KeyUsage {
            subject: subject(),
            problem: KeyUsageProblem::NotOnlyDigitalSignature,
        });
    }
    // "The extendedKeyUsage extension is OPTIONAL ... For signing
    // certificate: If present, the value MAY contain id-kp-codeSigning and
    // MUST NOT contain anyExtendedKeyUsage, serverAuth, clientAuth,
    // emailProtection and timeStamping." (notation also refuses OCSPSigning.)
    // "For timestamping certificate: If present, the value MUST contain
    // id-kp-timeStamping and MUST NOT contain anyExtendedKeyUsage,
    // serverAuth, clientAuth, emailProtection and codeSigning."
    let forbidden: [ObjectIdentifier; 6] = match purpose {
        Purpose::CodeSigning => [
            rfc5280::ANY_EXTENDED_KEY_USAGE,
            rfc5280::ID_KP_SERVER_AUTH,
            rfc5280::ID_KP_CLIENT_AUTH,
            rfc5280::ID_KP_EMAIL_PROTECTION,
            rfc5280::ID_KP_TIME_STAMPING,
            rfc5280::ID_KP_OCSP_SIGNING,
        ],
        Purpose::TimeStamping => [
            rfc5280::ANY_EXTENDED_KEY_USAGE,
            rfc5280::ID_KP_SERVER_AUTH,
            rfc5280::ID_KP_CLIENT_AUTH,
            rfc5280::ID_KP_EMAIL_PROTECTION,
            rfc5280::ID_KP_CODE_SIGNING,
            rfc5280::ID_KP_OCSP_SIGNING,
        ],
    };
    if let Some((_, ekus)) = &cert.ext.extended_key_usage {
        if let Some(eku) = ekus.iter().find(|e| forbidden.contains(e)) {
            return Err(NotaryError::ForbiddenExtendedKeyUsage {
                subject: subject(),
                eku: *eku,
            });
        }
    }
    // RFC 3161 §2.3: "The corresponding certificate MUST contain only one
    // instance of the extended key usage field extension as defined in
    // [RFC2459] Section 4.2.1.13 with KeyPurposeID having value:
    // id-kp-timeStamping. This extension MUST be critical."
    if purpose == Purpose::TimeStamping {
        match &cert.ext.extended_key_usage {
            Some((true, ekus)) if ekus.as_slice() == [rfc5280::ID_KP_TIME_STAMPING] => {}
            _ => return Err(NotaryError::NotTimestamping { subject: subject() }),
        }
    }
    Ok(())
}

fn validate_ca(cert: &Certificate, certs_below: usize) -> Result<(), NotaryError> {
    let subject = || cert.subject.clone();
    // [Root and Intermediate CA Certificates](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#root-and-intermediate-ca-certificates):
    // "The basicConstraints extension MUST be present and MUST be marked as
    // critical. The cA field MUST be set true. The pathLenConstraint field is
    // OPTIONAL. If present, it MUST be verified against the depth of the chain
    // below that CA certificate."
    match &cert.ext.basic_constraints {
        Some((true, bc)) if bc.ca => {
            if let Some(path_len) = bc.path_len_constraint {
                if usize::from(path_len) < certs_below {
                    return Err(NotaryError::PathLenExceeded {
                        subject: subject(),
                        path_len,
                        depth: certs_below,
                    });
                }
            }
        }
        _ => return Err(NotaryError::NotCa { subject: subject() }),
    }
    // "The keyUsage extension MUST be present and MUST be marked critical.
    // Bit positions for keyCertSign MUST be set."
    match &cert.ext.key_usage {
        None => Err(NotaryError::KeyUsage {
            subject: subject(),
            problem: KeyUsageProblem::Missing,
        }),
        Some((false, _)) => Err(NotaryError::KeyUsage {
            subject: subject(),
            problem: KeyUsageProblem::NotCritical,
        }),
        Some((true, ku)) if !ku.key_cert_sign() => Err(NotaryError::KeyUsage {
            subject: subject(),
            problem: KeyUsageProblem::MissingKeyCertSign,
        }),
        Some(_) => Ok(()),
    }
}

/// Displays an extended key usage OID with its RFC 5280 name when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EkuName(pub(crate) ObjectIdentifier);

impl fmt::Display for EkuName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            rfc5280::ANY_EXTENDED_KEY_USAGE => "anyExtendedKeyUsage",
            rfc5280::ID_KP_SERVER_AUTH => "serverAuth",
            rfc5280::ID_KP_CLIENT_AUTH => "clientAuth",
            rfc5280::ID_KP_CODE_SIGNING => "codeSigning",
            rfc5280::ID_KP_EMAIL_PROTECTION => "emailProtection",
            rfc5280::ID_KP_TIME_STAMPING => "timeStamping",
            rfc5280::ID_KP_OCSP_SIGNING => "OCSPSigning",
            oid => return write!(f, "{oid}"),
        };
        write!(f, "{name} ({})", self.0)
    }
}

/// What is wrong with a key usage extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyUsageProblem {
    Missing,
    NotCritical,
    MissingDigitalSignature,
    NotOnlyDigitalSignature,
    MissingKeyCertSign,
}

impl fmt::Display for KeyUsageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "has no key usage extension",
            Self::NotCritical => "has a key usage extension that is not marked critical",
            Self::MissingDigitalSignature => "lacks the digitalSignature key usage",
            Self::NotOnlyDigitalSignature => {
                "has key usages other than digitalSignature (a signing certificate may only sign)"
            }
            Self::MissingKeyCertSign => "lacks the keyCertSign key usage a CA needs",
        })
    }
}

/// Checks that every certificate of the chain is valid at `at`.
///
/// [Signature spec, Other requirements](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#other-requirements):
/// "The certificates in the certificate chain MUST be valid at signing time.
/// Implementations ... MUST NOT enforce validity period nesting" and "In the
/// absence of an Authentic Timestamp, each and every certificate in the
/// certificate chain ... must be valid i.e. not expired at the time of
/// signature verification." RFC 5280 §4.1.2.5: the validity period includes
/// both bounds.
///
/// # Errors
/// [`NotaryError::CertificateNotYetValid`] or [`NotaryError::CertificateExpired`] for the
/// first certificate, leaf first, that is outside its validity at `at`.
pub(crate) fn check_validity(chain: &[Certificate], at: SystemTime) -> Result<(), NotaryError> {
    for cert in chain {
        if at < cert.not_before {
            return Err(NotaryError::CertificateNotYetValid {
                subject: cert.subject.clone(),
                not_before: cert.not_before,
                at,
            });
        }
        if at > cert.not_after {
            return Err(NotaryError::CertificateExpired {
                subject: cert.subject.clone(),
                not_after: cert.not_after,
                at,
            });
        }
    }
    Ok(())
}

/// Index of the first certificate of `chain` that is one of `anchors`
/// (compared as DER bytes).
pub(crate) fn trusted_index(chain: &[Certificate], anchors: &[&Certificate]) -> Option<usize> {
    chain
        .iter()
        .position(|c| anchors.iter().any(|a| a.der() == c.der()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

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
