//! Notary Project signature verification.
//!
//! Input: the envelope bytes and media type of one signature layer, the trust
//! anchors selected by the policy ([`Anchors`]), and `now`. Output: a
//! [`Report`] with the signed target descriptor, the signer, the signed
//! expiry, and one [`CheckReport`] per validation run, in this order:
//!
//! | validation | what is checked |
//! |---|---|
//! | Integrity | media type, size, envelope structure, protected header rules, `alg` against the leaf key, the signature, the payload |
//! | Authenticity | x5c is a valid code-signing chain (RFC 5280 issuance + spec certificate requirements) containing an anchor of the store type the signing scheme needs |
//! | AuthenticTimestamp | every certificate is valid at `now` (`notary.x509`) or at the signed authentic signing time (`notary.x509.signingAuthority`) |
//! | Expiry | the signed `io.cncf.notary.expiry`, if any, is after `now` |
//!
//! When Integrity fails nothing else is run (no other result would mean
//! anything). Revocation is not checked yet and not reported. An RFC 3161
//! countersignature is not verified yet: it is recorded as
//! [`Countersignature::NotVerified`] and certificate validity is checked at
//! `now`, as if it were absent.
//!
//! This module knows nothing of registries, gRPC or verification levels.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use pullgate_policy::Digest;
use serde::Deserialize;

use super::x509::{self, Certificate};
use super::{Error, Validation};

pub(crate) mod jws;

#[cfg(test)]
mod tests;

/// `artifactType` / config media type of a Notary Project signature manifest.
// Used by signature discovery, which the integrator wires to this module.
#[allow(dead_code)]
pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS signature envelope layer.
pub(crate) const MEDIA_TYPE_JWS: &str = "application/jose+json";
/// The only payload content type (`cty`) defined.
pub(crate) const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

/// Signed attribute: the signing scheme (critical, required).
pub(crate) const HEADER_SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
/// Signed attribute: unauthenticated signing time (`notary.x509`).
pub(crate) const HEADER_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
/// Signed attribute: authentic signing time (critical, `notary.x509.signingAuthority`).
pub(crate) const HEADER_AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
/// Signed attribute: expiry (critical, optional).
pub(crate) const HEADER_EXPIRY: &str = "io.cncf.notary.expiry";
/// Extended signed attribute: notation verification plugin (critical).
pub(crate) const HEADER_VERIFICATION_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
/// Extended signed attribute: minimum plugin version (critical).
pub(crate) const HEADER_VERIFICATION_PLUGIN_MIN_VERSION: &str =
    "io.cncf.notary.verificationPluginMinVersion";

/// Envelopes larger than this are refused before parsing.
pub(crate) const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// Chains with more certificates than this are refused before parsing them.
pub(crate) const MAX_CHAIN_CERTIFICATES: usize = 10;

/// A Notary Project signing scheme.
///
/// [Signing scheme](https://github.com/notaryproject/specifications/blob/main/specs/signing-scheme.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SigningScheme {
    /// `notary.x509`: chain to a `ca` trust store.
    X509,
    /// `notary.x509.signingAuthority`: chain to a `signingAuthority` trust store.
    X509SigningAuthority,
}

impl SigningScheme {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "notary.x509" => Some(Self::X509),
            "notary.x509.signingAuthority" => Some(Self::X509SigningAuthority),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::X509 => "notary.x509",
            Self::X509SigningAuthority => "notary.x509.signingAuthority",
        }
    }
}

impl fmt::Display for SigningScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Trust anchors from the named stores the policy lists, by store type.
#[derive(Debug, Clone, Default)]
pub(crate) struct Anchors<'a> {
    pub(crate) ca: Vec<&'a Certificate>,
    pub(crate) signing_authority: Vec<&'a Certificate>,
    /// Not read until RFC 3161 countersignatures are verified.
    #[allow(dead_code)]
    pub(crate) tsa: Vec<&'a Certificate>,
}

/// The signed `targetArtifact` descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetDescriptor {
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) artifact_type: Option<String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// Who signed, from the leaf certificate and the protected header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signer {
    /// Leaf subject, RFC 4514 (`CN=e2e,O=Notary,L=Seattle,ST=WA,C=US`), as
    /// trusted identities (`x509.subject:`) are matched against.
    pub(crate) subject: String,
    pub(crate) not_after: SystemTime,
    pub(crate) signing_scheme: SigningScheme,
    /// `io.cncf.notary.signingTime` or `io.cncf.notary.authenticSigningTime`.
    pub(crate) signing_time: Option<SystemTime>,
}

/// What became of a timestamp countersignature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Countersignature {
    #[default]
    Absent,
    /// Present but not verified (RFC 3161 verification is not implemented
    /// yet); certificate validity was checked at `now` instead.
    NotVerified,
}

/// The result of one validation.
#[derive(Debug)]
pub(crate) struct CheckReport {
    pub(crate) validation: Validation,
    pub(crate) result: Result<(), Error>,
}

/// Everything learnt from one signature.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// The signed target; `None` if integrity failed.
    pub(crate) target: Option<TargetDescriptor>,
    /// `None` if integrity failed.
    pub(crate) signer: Option<Signer>,
    /// One per validation run, in order.
    pub(crate) checks: Vec<CheckReport>,
    /// The signed `io.cncf.notary.expiry`.
    pub(crate) expiry: Option<SystemTime>,
    pub(crate) countersignature: Countersignature,
}

impl Report {
    /// The result of `validation`, if it was run.
    pub(crate) fn check(&self, validation: Validation) -> Option<&Result<(), Error>> {
        self.checks
            .iter()
            .find(|c| c.validation == validation)
            .map(|c| &c.result)
    }

    fn push(&mut self, validation: Validation, result: Result<(), Error>) {
        self.checks.push(CheckReport { validation, result });
    }
}

#[derive(Deserialize)]
struct RawPayload {
    #[serde(rename = "targetArtifact")]
    target_artifact: RawDescriptor,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// [Payload](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#payload):
/// "targetArtifact : Required property whose value is the descriptor of the
/// target artifact manifest that is being signed ... Descriptor MUST contain
/// mediaType, digest, and size fields. Descriptor MAY contain annotations".
fn parse_payload(payload: &[u8]) -> Result<TargetDescriptor, Error> {
    let raw: RawPayload = serde_json::from_slice(payload).map_err(jws::EnvelopeError::Payload)?;
    let d = raw.target_artifact;
    let digest = d
        .digest
        .parse::<Digest>()
        .map_err(|_| jws::EnvelopeError::Digest {
            value: d.digest.chars().take(160).collect(),
        })?;
    Ok(TargetDescriptor {
        media_type: d.media_type,
        digest,
        size: d.size,
        artifact_type: d.artifact_type,
        annotations: d.annotations.unwrap_or_default(),
    })
}

/// What Integrity establishes, for the later checks.
struct Intact {
    header: jws::Header,
    chain: Vec<Certificate>,
    target: TargetDescriptor,
    has_countersignature: bool,
}

fn integrity(media_type: &str, bytes: &[u8]) -> Result<Intact, Error> {
    if media_type != MEDIA_TYPE_JWS {
        return Err(Error::UnsupportedMediaType {
            media_type: media_type.chars().take(128).collect(),
        });
    }
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(Error::EnvelopeTooLarge {
            size: bytes.len(),
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    let envelope = jws::parse(bytes)?;
    let header = jws::check_protected_header(&envelope.protected)?;
    jws::verify_signature(&envelope, header.alg)?;
    let target = parse_payload(&envelope.payload)?;
    Ok(Intact {
        has_countersignature: envelope.timestamp_signature.is_some(),
        header,
        chain: envelope.chain,
        target,
    })
}

/// Verifies one Notary Project signature envelope and reports every check.
///
/// Never panics, whatever the bytes.
pub(crate) fn verify(
    envelope_media_type: &str,
    envelope: &[u8],
    anchors: &Anchors<'_>,
    now: SystemTime,
) -> Report {
    let mut report = Report::default();
    let intact = match integrity(envelope_media_type, envelope) {
        Ok(intact) => intact,
        Err(e) => {
            report.push(Validation::Integrity, Err(e));
            return report;
        }
    };
    report.push(Validation::Integrity, Ok(()));
    let Intact {
        header,
        chain,
        target,
        has_countersignature,
    } = intact;
    report.target = Some(target);
    report.expiry = header.expiry;
    if has_countersignature {
        report.countersignature = Countersignature::NotVerified;
    }
    if let Some(leaf) = chain.first() {
        report.signer = Some(Signer {
            subject: leaf.subject().to_owned(),
            not_after: leaf.not_after(),
            signing_scheme: header.scheme,
            signing_time: header.signing_time.or(header.authentic_signing_time),
        });
    }

    // [Trust store spec](https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trust-store):
    // "The x509/ca trust store contains named stores that contain Certificate
    // Authority (CA) root certificates. The x509/signingAuthority trust store
    // contains named stores that contain Siging Authority's root
    // certificates." The signing scheme says which one applies.
    let scheme_anchors = match header.scheme {
        SigningScheme::X509 => &anchors.ca,
        SigningScheme::X509SigningAuthority => &anchors.signing_authority,
    };
    let authenticity = x509::validate_code_signing_chain(&chain).and_then(|()| {
        x509::trusted_index(&chain, scheme_anchors)
            .map(|_| ())
            .ok_or(Error::UntrustedChain)
    });
    report.push(Validation::Authenticity, authenticity);

    // [Signing time](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#signing-time):
    // "In the absence of an authentic timestamp, signatures are considered
    // invalid after certificate expires". For notary.x509.signingAuthority the
    // signed authenticSigningTime is that authentic time.
    let at = match (header.scheme, header.authentic_signing_time) {
        (SigningScheme::X509SigningAuthority, Some(t)) => t,
        _ => now,
    };
    report.push(
        Validation::AuthenticTimestamp,
        x509::check_validity(&chain, at),
    );

    // [Expiry](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#expiry):
    // "The artifact is considered expired when the current time is greater
    // than or equal to expiry time".
    let expiry = match header.expiry {
        Some(expiry) if now >= expiry => Err(Error::SignatureExpired { expiry, at: now }),
        _ => Ok(()),
    };
    report.push(Validation::Expiry, expiry);

    // [Revocation](https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#certificate-revocation-evaluation):
    // a certificate that names no OCSP responder and no CRL distribution
    // point cannot be revoked, as notation-go treats it. Checking those that
    // do is not implemented yet (TODO(#3)): report it, so `strict` fails
    // closed and the other levels log it.
    let revocation = match chain.iter().find(|c| c.has_revocation_endpoints()) {
        None => Ok(()),
        Some(c) => Err(Error::RevocationNotChecked {
            subject: c.subject().to_owned(),
        }),
    };
    report.push(Validation::Revocation, revocation);
    report
}

/// Whether `media_type` is a signature envelope this verifier reads.
pub(crate) fn is_supported_envelope(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_JWS
}
