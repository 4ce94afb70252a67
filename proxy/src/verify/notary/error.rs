//! Why one check of a Notary Project signature failed (envelope, chain,
//! expiry, revocation, timestamp, AWS Signer): the error every Notary check
//! reports, shown in a kubelet event.

use std::fmt;
use std::time::SystemTime;

use const_oid::db::rfc5280;
use const_oid::ObjectIdentifier;

use super::cose::CoseError;
use super::jws::EnvelopeError;
use super::{Algorithm, SigningScheme};
use crate::verify::notary;
use crate::verify::revocation;
use crate::verify::rfc3339::Rfc3339;
use crate::verify::x509::{CertificateError, KeyKind};

/// Why one check failed. Messages end up in a kubelet event: lowercase, no
/// trailing period, saying what to fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotaryError {
    #[error("the signature envelope is malformed: {0}")]
    Malformed(#[from] EnvelopeError),
    #[error("the COSE signature envelope is malformed: {0}")]
    MalformedCose(#[from] CoseError),
    #[error(
        "signature envelope media type {media_type:?} is not supported (supported: {}, {})",
        notary::MEDIA_TYPE_JWS,
        notary::MEDIA_TYPE_COSE
    )]
    UnsupportedMediaType { media_type: String },
    #[error("the signature envelope is {size} bytes, over the {limit}-byte limit")]
    EnvelopeTooLarge { size: usize, limit: usize },
    #[error("the signature carries {count} certificates, over the limit of {limit}")]
    TooManyCertificates { count: usize, limit: usize },
    #[error("signature algorithm {alg:?} is not allowed (use PS256, PS384, PS512, ES256, ES384 or ES512)")]
    UnsupportedAlgorithm { alg: String },
    #[error("the signature claims algorithm {alg} but the signing certificate's key is {key}")]
    AlgorithmKeyMismatch { alg: Algorithm, key: KeyKind },
    #[error(
        "payload content type {cty:?} is not supported (expected {})",
        notary::PAYLOAD_CONTENT_TYPE
    )]
    UnsupportedContentType { cty: String },
    #[error("the signature does not verify with the signing certificate's key: the signed content or the signature was altered")]
    SignatureInvalid,
    #[error("the signature marks header {name:?} as critical, but it is not defined by the Notary Project signature specification")]
    UnknownCriticalHeader { name: String },
    #[error("the signature requires {name:?}, which this verifier does not support (of the notation verification plugins, only AWS Signer's is implemented, for JWS envelopes)")]
    UnsupportedCriticalHeader { name: String },
    #[error("header {name:?} must be listed as critical in \"crit\"")]
    MissingCriticalHeader { name: String },
    #[error("\"crit\" lists {name:?}, which is a registered JWS header or not present in the protected header")]
    InvalidCriticalHeader { name: String },
    #[error("required protected header {name:?} is missing")]
    MissingHeader { name: &'static str },
    #[error("protected header {name:?} is not allowed with signing scheme {scheme}")]
    HeaderNotAllowed {
        name: &'static str,
        scheme: SigningScheme,
    },
    #[error("signing scheme {scheme:?} is not supported (use notary.x509 or notary.x509.signingAuthority)")]
    UnsupportedSigningScheme { scheme: String },
    #[error("certificate #{index} in the signature is unusable: {reason}")]
    Certificate {
        index: usize,
        reason: CertificateError,
    },
    #[error("the signature's certificate chain does not contain any certificate of the trust stores named by the policy")]
    UntrustedChain,
    #[error("the certificate chain must end with a self-signed root certificate, but {subject:?} is not self-signed")]
    RootNotSelfSigned { subject: String },
    #[error("certificate #{index} ({subject:?}) is self-signed but is not the last certificate of the chain")]
    UnexpectedSelfSigned { index: usize, subject: String },
    #[error("certificate #{index} ({subject:?}) was not issued by the next certificate in the chain ({issuer:?})")]
    NotIssuedBy {
        index: usize,
        subject: String,
        issuer: String,
    },
    #[error("certificate {subject:?} expired at {} (checked at {})", Rfc3339(*.not_after), Rfc3339(*.at))]
    CertificateExpired {
        subject: String,
        not_after: SystemTime,
        at: SystemTime,
    },
    #[error("certificate {subject:?} is not valid before {} (checked at {})", Rfc3339(*.not_before), Rfc3339(*.at))]
    CertificateNotYetValid {
        subject: String,
        not_before: SystemTime,
        at: SystemTime,
    },
    #[error("signing certificate {subject:?} has extended key usage {}, which a code-signing certificate must not have", EkuName(*.eku))]
    ForbiddenExtendedKeyUsage {
        subject: String,
        eku: ObjectIdentifier,
    },
    #[error("certificate {subject:?} {problem}")]
    KeyUsage {
        subject: String,
        problem: KeyUsageProblem,
    },
    #[error("timestamping certificate {subject:?} must have exactly one extended key usage, timeStamping, marked critical (RFC 3161 section 2.3)")]
    NotTimestamping { subject: String },
    #[error("signing certificate {subject:?} is a CA certificate; the signing certificate must not be a CA")]
    LeafIsCa { subject: String },
    #[error("certificate {subject:?} issues other certificates but is not a CA (basic constraints must be critical with cA true)")]
    NotCa { subject: String },
    #[error("certificate {subject:?} allows a path length of {path_len} but has {depth} intermediate certificates below it")]
    PathLenExceeded {
        subject: String,
        path_len: u8,
        depth: usize,
    },
    #[error("the signature expired at {} (checked at {})", Rfc3339(*.expiry), Rfc3339(*.at))]
    SignatureExpired { expiry: SystemTime, at: SystemTime },
    #[error("{0}")]
    Revocation(#[from] revocation::RevocationFailure),
    #[error("revocation was not checked because the certificate chain is not trusted")]
    RevocationSkippedUntrustedChain,
    #[error("{0}")]
    Timestamp(#[from] TimestampError),
    #[error("{0}")]
    AwsSigner(#[from] notary::aws_signer::AwsSignerError),
    #[error("internal error in the verifier: {0}")]
    Internal(&'static str),
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

/// id-ct-TSTInfo (RFC 3161 §2.4.2).
pub(crate) const ID_CT_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

/// Why a timestamp countersignature is not an authentic time.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TimestampError {
    #[error("no timestamp countersignature was found in the signature envelope")]
    Missing,
    #[error("the timestamp countersignature is not a CMS SignedData structure")]
    NotSignedData,
    #[error("the timestamp countersignature has content type {oid}, not id-ct-TSTInfo ({ID_CT_TST_INFO})")]
    ContentType { oid: ObjectIdentifier },
    #[error("the timestamp countersignature's TSTInfo cannot be decoded")]
    TstInfo,
    #[error("the timestamp countersignature uses hash algorithm {oid}; only SHA-256, SHA-384 and SHA-512 are supported")]
    UnsupportedHash { oid: ObjectIdentifier },
    #[error("the timestamp countersignature timestamps other data than this signature (message imprint mismatch)")]
    ImprintMismatch,
    #[error("the timestamp countersignature has no signer information")]
    NoSigner,
    #[error("the signing certificate was not found in the timestamp token")]
    SigningCertificateNotFound,
    #[error("the timestamp countersignature's signer lacks the signed attributes content type, message digest and signingCertificateV2")]
    SignedAttributes,
    #[error("the timestamp countersignature's signed content type does not match its content")]
    ContentTypeAttribute,
    #[error("the timestamp countersignature's signed message digest does not match its TSTInfo")]
    MessageDigestMismatch,
    #[error("the timestamp countersignature's signingCertificateV2 attribute does not name its signing certificate")]
    SigningCertificateMismatch,
    #[error("the timestamp countersignature's signature algorithm is unusable: {0}")]
    SignatureAlgorithm(CertificateError),
    #[error("the TSA's signature on the timestamp countersignature does not verify")]
    SignatureInvalid,
    #[error("certificate #{index} in the timestamp countersignature is unusable: {reason}")]
    Certificate {
        index: usize,
        reason: CertificateError,
    },
    #[error("the TSA certificate {subject:?} does not chain to a certificate of the tsa trust stores named by the policy")]
    UntrustedTsa { subject: String },
    #[error("the TSA's certificate chain is invalid at the time of the timestamp: {0}")]
    TsaChain(Box<NotaryError>),
    #[error("the timestamp ({}) can be before certificate {subject:?} validity period, which starts at {}", Rfc3339(*.earliest), Rfc3339(*.not_before))]
    BeforeCertificateValidity {
        subject: String,
        not_before: SystemTime,
        earliest: SystemTime,
    },
    #[error("the timestamp ({}) can be after certificate {subject:?} validity period, which ended at {}", Rfc3339(*.latest), Rfc3339(*.not_after))]
    AfterCertificateValidity {
        subject: String,
        not_after: SystemTime,
        latest: SystemTime,
    },
}
