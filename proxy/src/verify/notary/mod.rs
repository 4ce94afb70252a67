//! Notary Project signature verification.
//!
//! Input: the envelope bytes and media type of one signature layer (JWS
//! `application/jose+json` or COSE_Sign1 `application/cose`), the trust
//! anchors selected by the policy ([`Anchors`]), the statement's
//! [`Options`], and `now`. Output: a [`Report`] with the signed target
//! descriptor, the signer, the signed expiry, what became of a timestamp
//! countersignature, and one [`CheckReport`] per validation run, in this
//! order:
//!
//! | validation | what is checked |
//! |---|---|
//! | Integrity | media type, size, envelope structure, protected header rules, `alg` against the leaf key, the signature, the payload |
//! | Authenticity | the chain is a valid code-signing chain (RFC 5280 issuance + spec certificate requirements) containing an anchor of the store type the signing scheme needs |
//! | AuthenticTimestamp | `notary.x509`: the RFC 3161 countersignature chains to a `tsa` anchor and its time lies inside every certificate's validity; without a `tsa` store (or with `afterCertExpiry` and an unexpired chain) every certificate is valid at `now`. `notary.x509.signingAuthority`: every certificate is valid at the signed authentic signing time |
//! | Expiry | the signed `io.cncf.notary.expiry`, if any, is after `now` |
//! | Revocation | OCSP, then CRL, for every certificate but the root, with the data at hand (the gate fetches what is missing); for an AWS Signer signature instead, the Signer `GetRevocationStatus` answer the gate obtains for [`Report::aws_signer`] |
//!
//! When Integrity fails nothing else is run (no other result would mean
//! anything). Both envelope formats are parsed into the same [`Header`],
//! chain, target and signature bytes, and one report builder runs the
//! remaining checks, so JWS and COSE cannot drift apart.
//!
//! This module knows nothing of registries, gRPC or verification levels.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use pullgate_policy::Digest;
use serde::Deserialize;

use super::revocation::{self, RevocationData, RevocationRequest};
use super::x509::{Certificate, Hash, KeyKind};
use super::{Validation, VerifyTimestamp};

pub(crate) mod aws_signer;
pub(crate) mod chain;
pub(crate) mod cose;
pub(crate) mod error;
pub(crate) mod jws;
pub(crate) mod timestamp;

pub(crate) use error::NotaryError;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod cose_tests;
#[cfg(test)]
mod tests;

/// `artifactType` / config media type of a Notary Project signature manifest.
pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS signature envelope layer.
pub(crate) const MEDIA_TYPE_JWS: &str = "application/jose+json";
/// Media type of a COSE_Sign1 signature envelope layer.
pub(crate) const MEDIA_TYPE_COSE: &str = "application/cose";
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

/// The JWS `alg` values the Notary Project allows.
///
/// [Supported alg header values](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-jws.md#supported-alg-header-values):
/// "`alg` header value MUST NOT be `none` or any symmetric-key algorithm such
/// as `HMAC`", and the allowed values are PS256/384/512 and ES256/384/512.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl Algorithm {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "PS256" => Some(Self::Ps256),
            "PS384" => Some(Self::Ps384),
            "PS512" => Some(Self::Ps512),
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "ES512" => Some(Self::Es512),
            _ => None,
        }
    }

    /// [COSE `alg` values](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-cose.md#supported-alg-header-values):
    /// PS256 −37, PS384 −38, PS512 −39, ES256 −7, ES384 −35, ES512 −36.
    fn from_cose(value: i128) -> Option<Self> {
        match value {
            -37 => Some(Self::Ps256),
            -38 => Some(Self::Ps384),
            -39 => Some(Self::Ps512),
            -7 => Some(Self::Es256),
            -35 => Some(Self::Es384),
            -36 => Some(Self::Es512),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
        }
    }

    /// [Algorithm Selection](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#algorithm-selection):
    /// "The signing certificate's public key algorithm and size MUST be used to
    /// determine the signature algorithm": RSA 2048/3072/4096 → PS256/384/512,
    /// EC 256/384/521 → ES256/384/512.
    pub(crate) fn for_key(key: KeyKind) -> Option<Self> {
        match key {
            KeyKind::Rsa { bits: 2048 } => Some(Self::Ps256),
            KeyKind::Rsa { bits: 3072 } => Some(Self::Ps384),
            KeyKind::Rsa { bits: 4096 } => Some(Self::Ps512),
            KeyKind::Rsa { .. } => None,
            KeyKind::P256 => Some(Self::Es256),
            KeyKind::P384 => Some(Self::Es384),
            KeyKind::P521 => Some(Self::Es512),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The signed attributes of an envelope, checked (same for JWS and COSE).
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) scheme: SigningScheme,
    /// `io.cncf.notary.signingTime` (unauthenticated; `notary.x509` only).
    pub(crate) signing_time: Option<SystemTime>,
    /// `io.cncf.notary.authenticSigningTime` (`notary.x509.signingAuthority` only).
    pub(crate) authentic_signing_time: Option<SystemTime>,
    pub(crate) expiry: Option<SystemTime>,
    /// The AWS Signer plugin's attributes, for a signature that names that
    /// plugin (JWS only).
    pub(crate) aws_signer: Option<aws_signer::Attributes>,
}

/// The signing-scheme rules on the signed attributes, once the envelope
/// format has decoded them.
///
/// [Signed attributes](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#standard-attributes):
/// "Signing Time ... This claim is REQUIRED and only valid when signing
/// scheme is `notary.x509`." / "Authentic Signing Time ... This claim is
/// REQUIRED and only valid when signing scheme is
/// `notary.x509.signingAuthority`."
///
/// # Errors
/// [`NotaryError::UnsupportedSigningScheme`], [`NotaryError::MissingHeader`] or
/// [`NotaryError::HeaderNotAllowed`].
fn signed_attributes(
    alg: Algorithm,
    scheme_name: &str,
    signing_time: Option<SystemTime>,
    authentic_signing_time: Option<SystemTime>,
    expiry: Option<SystemTime>,
) -> Result<Header, NotaryError> {
    let scheme = SigningScheme::from_name(scheme_name).ok_or_else(|| {
        NotaryError::UnsupportedSigningScheme {
            scheme: scheme_name.chars().take(128).collect(),
        }
    })?;
    match scheme {
        SigningScheme::X509 => {
            if signing_time.is_none() {
                return Err(NotaryError::MissingHeader {
                    name: HEADER_SIGNING_TIME,
                });
            }
            if authentic_signing_time.is_some() {
                return Err(NotaryError::HeaderNotAllowed {
                    name: HEADER_AUTHENTIC_SIGNING_TIME,
                    scheme,
                });
            }
        }
        SigningScheme::X509SigningAuthority => {
            if authentic_signing_time.is_none() {
                return Err(NotaryError::MissingHeader {
                    name: HEADER_AUTHENTIC_SIGNING_TIME,
                });
            }
            if signing_time.is_some() {
                return Err(NotaryError::HeaderNotAllowed {
                    name: HEADER_SIGNING_TIME,
                    scheme,
                });
            }
        }
    }
    Ok(Header {
        alg,
        scheme,
        signing_time,
        authentic_signing_time,
        expiry,
        aws_signer: None,
    })
}

/// Checks `alg` against the signing key (the first certificate), then the
/// signature over `msg`.
///
/// [JWS](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-jws.md#protected-headers)
/// and [COSE](https://github.com/notaryproject/specifications/blob/main/specs/signature-envelope-cose.md#protected-header):
/// "verifier of the signature MUST match alg with signature algorithm of the
/// signing key to mitigate algorithm substitution attacks."
/// RFC 7518 §3.5 and RFC 8230 §2 fix the PSS salt length to the hash output
/// length; RFC 7518 §3.4 and RFC 9053 §2.1 fix the ECDSA signature to the
/// fixed-width `R || S` octet sequence.
///
/// # Errors
/// [`NotaryError::AlgorithmKeyMismatch`] or [`NotaryError::SignatureInvalid`].
fn verify_leaf_signature(
    alg: Algorithm,
    chain: &[Certificate],
    msg: &[u8],
    sig: &[u8],
) -> Result<(), NotaryError> {
    let leaf = chain.first().ok_or(NotaryError::Internal(
        "parsed envelope without a certificate",
    ))?;
    let key = leaf.public_key();
    if Algorithm::for_key(key.kind()) != Some(alg) {
        return Err(NotaryError::AlgorithmKeyMismatch {
            alg,
            key: key.kind(),
        });
    }
    let ok = match alg {
        Algorithm::Ps256 => key.verify_pss(Hash::Sha256, Hash::Sha256.len(), msg, sig),
        Algorithm::Ps384 => key.verify_pss(Hash::Sha384, Hash::Sha384.len(), msg, sig),
        Algorithm::Ps512 => key.verify_pss(Hash::Sha512, Hash::Sha512.len(), msg, sig),
        Algorithm::Es256 | Algorithm::Es384 | Algorithm::Es512 => key.verify_ecdsa_fixed(msg, sig),
    };
    if ok {
        Ok(())
    } else {
        Err(NotaryError::SignatureInvalid)
    }
}

/// How the statement asks for verification beyond the trust stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// `signatureVerification.verifyTimestamp`: with
    /// [`VerifyTimestamp::AfterCertExpiry`] the countersignature is verified
    /// only once the signing chain has expired.
    pub(crate) verify_timestamp: VerifyTimestamp,
}

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
    /// Roots (or pinned intermediates) of the TSAs whose RFC 3161
    /// countersignatures are trusted.
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
    /// For an AWS Signer signature, its signed signing-profile-version ARN:
    /// the identity trusted identities are matched against (the subject is
    /// AWS Signer's own, the same for every AWS customer).
    pub(crate) aws_signing_profile_version: Option<String>,
}

/// What became of a timestamp countersignature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Countersignature {
    #[default]
    Absent,
    /// Present but not used: the signing scheme is
    /// `notary.x509.signingAuthority`, the policy names no `tsa` trust store,
    /// or `verifyTimestamp` is `afterCertExpiry` and the chain is still
    /// valid. Certificate validity was checked at `now` (or at the
    /// authentic signing time) instead.
    NotVerified,
    /// Verified against a `tsa` anchor; validity was checked against it.
    Verified(timestamp::Timestamp),
    /// Present, and verification failed: the AuthenticTimestamp check says why.
    Invalid,
}

/// The result of one validation.
#[derive(Debug)]
pub(crate) struct CheckReport {
    pub(crate) validation: Validation,
    pub(crate) result: Result<(), NotaryError>,
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
    /// The authentic signing time: `authenticSigningTime` under
    /// `notary.x509.signingAuthority`, the latest instant of a verified
    /// timestamp under `notary.x509`; never the plain `signingTime`.
    pub(crate) authentic_signing_time: Option<SystemTime>,
    /// What revocation data the chain needs (every certificate but the root
    /// that names an OCSP responder or a CRL), for the gate to fetch when missing.
    pub(crate) revocation_requests: Vec<RevocationRequest>,
    /// For an AWS Signer signature whose chain is trusted: what to ask the
    /// Signer `GetRevocationStatus` API. The Revocation check stays failed
    /// ([`aws_signer::AwsSignerError::NotChecked`]) until the gate reports
    /// the answer with [`Report::set_aws_signer_revocation`].
    pub(crate) aws_signer: Option<aws_signer::RevocationQuery>,
}

impl Report {
    /// The result of `validation`, if it was run.
    pub(crate) fn check(&self, validation: Validation) -> Option<&Result<(), NotaryError>> {
        self.checks
            .iter()
            .find(|c| c.validation == validation)
            .map(|c| &c.result)
    }

    fn push(&mut self, validation: Validation, result: Result<(), NotaryError>) {
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
///
/// The payload is the same JSON document in both envelope formats, so its
/// errors are the format-neutral `EnvelopeError::Payload` and
/// `EnvelopeError::Digest` for COSE too.
fn parse_payload(payload: &[u8]) -> Result<TargetDescriptor, NotaryError> {
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

/// What Integrity establishes, for the later checks: the same for both
/// envelope formats.
struct Intact {
    header: Header,
    chain: Vec<Certificate>,
    target: TargetDescriptor,
    /// The envelope's signature bytes, which a countersignature timestamps.
    signature: Vec<u8>,
    /// The RFC 3161 `TimeStampToken`, not yet verified.
    timestamp_token: Option<Vec<u8>>,
}

fn integrity(media_type: &str, bytes: &[u8]) -> Result<Intact, NotaryError> {
    if !is_supported_envelope(media_type) {
        return Err(NotaryError::UnsupportedMediaType {
            media_type: media_type.chars().take(128).collect(),
        });
    }
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(NotaryError::EnvelopeTooLarge {
            size: bytes.len(),
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    if media_type == MEDIA_TYPE_COSE {
        let envelope = cose::parse(bytes)?;
        let header = cose::check_protected_header(&envelope.protected)?;
        cose::verify_signature(&envelope, header.alg)?;
        let target = parse_payload(&envelope.payload)?;
        return Ok(Intact {
            header,
            chain: envelope.chain,
            target,
            signature: envelope.signature,
            timestamp_token: envelope.timestamp_signature,
        });
    }
    let envelope = jws::parse(bytes)?;
    let header = jws::check_protected_header(&envelope.protected)?;
    jws::verify_signature(&envelope, header.alg)?;
    let target = parse_payload(&envelope.payload)?;
    Ok(Intact {
        header,
        chain: envelope.chain,
        target,
        signature: envelope.signature,
        timestamp_token: envelope.timestamp_signature,
    })
}

/// Verifies one Notary Project signature envelope and reports every check.
///
/// Never panics, whatever the bytes.
pub(crate) fn verify(
    envelope_media_type: &str,
    envelope: &[u8],
    anchors: &Anchors<'_>,
    options: Options,
    revocation: &dyn RevocationData,
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
        signature,
        timestamp_token,
    } = intact;
    report.target = Some(target);
    report.expiry = header.expiry;
    if let Some(leaf) = chain.first() {
        report.signer = Some(Signer {
            subject: leaf.subject().to_owned(),
            not_after: leaf.not_after(),
            signing_scheme: header.scheme,
            signing_time: header.signing_time.or(header.authentic_signing_time),
            aws_signing_profile_version: header
                .aws_signer
                .as_ref()
                .map(|a| a.profile_version.clone()),
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
    let authenticity = chain::validate_code_signing_chain(&chain).and_then(|()| {
        chain::trusted_index(&chain, scheme_anchors)
            .map(|_| ())
            .ok_or(NotaryError::UntrustedChain)
    });
    let chain_trusted = authenticity.is_ok();
    report.push(Validation::Authenticity, authenticity);

    let (authentic_timestamp, countersignature) = authentic_timestamp(
        &header,
        &chain,
        &signature,
        timestamp_token.as_deref(),
        &anchors.tsa,
        options,
        now,
    );
    report.countersignature = countersignature;
    report.push(Validation::AuthenticTimestamp, authentic_timestamp);

    // [Expiry](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#expiry):
    // "The artifact is considered expired when the current time is greater
    // than or equal to expiry time".
    let expiry = match header.expiry {
        Some(expiry) if now >= expiry => Err(NotaryError::SignatureExpired { expiry, at: now }),
        _ => Ok(()),
    };
    report.push(Validation::Expiry, expiry);

    report.authentic_signing_time = match (header.scheme, &report.countersignature) {
        (SigningScheme::X509SigningAuthority, _) => header.authentic_signing_time,
        (SigningScheme::X509, Countersignature::Verified(ts)) => Some(ts.latest()),
        (SigningScheme::X509, _) => None,
    };

    // [Revocation](https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#certificate-revocation-evaluation):
    // OCSP first, then CRL, for every certificate but the root; one with
    // neither cannot be revoked. Only data already at hand is used here (the
    // gate fetches what is missing and runs this again), and none is ever
    // fetched for a chain that is not trusted: its URLs are the signer's choice.
    if let (Some(attributes), Some(signed_at)) = (&header.aws_signer, header.authentic_signing_time)
    {
        // A plugin with the revocation-check capability replaces notation's
        // own OCSP/CRL check (notation-go `verifier.go`: notation checks
        // revocation itself only when the plugin lacks
        // `SIGNATURE_VERIFIER.REVOCATION_CHECK`); AWS Signer's has it.
        let result = if chain_trusted {
            report.aws_signer = Some(aws_signer::RevocationQuery::new(
                &chain, attributes, signed_at,
            ));
            Err(aws_signer::AwsSignerError::NotChecked.into())
        } else {
            Err(NotaryError::RevocationSkippedUntrustedChain)
        };
        report.push(Validation::Revocation, result);
        return report;
    }
    report.revocation_requests = revocation::needed(&chain);
    let revocation_result = if report.revocation_requests.is_empty() {
        Ok(())
    } else if !chain_trusted {
        Err(NotaryError::RevocationSkippedUntrustedChain)
    } else {
        revocation::check_requests(
            &report.revocation_requests,
            revocation,
            report.authentic_signing_time,
            now,
        )
        .map_err(NotaryError::Revocation)
    };
    report.push(Validation::Revocation, revocation_result);
    report
}

impl Report {
    /// Runs the revocation check again over this report's requests, with `data`
    /// (after the gate fetched what was missing), replacing the earlier result.
    pub(crate) fn recheck_revocation(&mut self, data: &dyn RevocationData, now: SystemTime) {
        let trusted = matches!(self.check(Validation::Authenticity), Some(Ok(())));
        if self.revocation_requests.is_empty() || !trusted {
            return;
        }
        let result = revocation::check_requests(
            &self.revocation_requests,
            data,
            self.authentic_signing_time,
            now,
        )
        .map_err(NotaryError::Revocation);
        if let Some(c) = self
            .checks
            .iter_mut()
            .find(|c| c.validation == Validation::Revocation)
        {
            c.result = result;
        }
    }

    /// Records the AWS Signer `GetRevocationStatus` outcome as the
    /// Revocation check (for a report with [`Report::aws_signer`]).
    pub(crate) fn set_aws_signer_revocation(
        &mut self,
        result: Result<(), aws_signer::AwsSignerError>,
    ) {
        if self.aws_signer.is_none() {
            return;
        }
        if let Some(c) = self
            .checks
            .iter_mut()
            .find(|c| c.validation == Validation::Revocation)
        {
            c.result = result.map_err(NotaryError::AwsSigner);
        }
    }

    /// Whether the revocation check failed only for want of data that could be fetched.
    pub(crate) fn revocation_needs_data(&self) -> bool {
        matches!(self.check(Validation::Authenticity), Some(Ok(())))
            && matches!(
                self.check(Validation::Revocation),
                Some(Err(NotaryError::Revocation(_)))
            )
    }
}

/// The AuthenticTimestamp check and what became of the countersignature.
///
/// [Trust policy, authentic timestamp](https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#steps):
/// under `notary.x509` the authentic time comes from a timestamp
/// countersignature verified against the `tsa` trust stores; [signing
/// time](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#signing-time):
/// "In the absence of an authentic timestamp, signatures are considered
/// invalid after certificate expires". Under
/// `notary.x509.signingAuthority` the signed authenticSigningTime is that
/// authentic time, and the COSE spec says a countersignature "is validated
/// and used solely under the `notary.x509` signing scheme".
///
/// As notation-go does: without a `tsa` trust store the countersignature is
/// not verified and every certificate must be valid at `now`; with
/// `verifyTimestamp: afterCertExpiry` the same holds while no certificate of
/// the chain has expired; otherwise the countersignature is required.
fn authentic_timestamp(
    header: &Header,
    chain: &[Certificate],
    signature: &[u8],
    token: Option<&[u8]>,
    tsa_anchors: &[&Certificate],
    options: Options,
    now: SystemTime,
) -> (Result<(), NotaryError>, Countersignature) {
    let unused = if token.is_some() {
        Countersignature::NotVerified
    } else {
        Countersignature::Absent
    };
    let at = match (header.scheme, header.authentic_signing_time) {
        (SigningScheme::X509SigningAuthority, Some(t)) => {
            return (chain::check_validity(chain, t), unused)
        }
        (SigningScheme::X509SigningAuthority, None) => {
            return (
                Err(NotaryError::Internal(
                    "signingAuthority without authenticSigningTime",
                )),
                unused,
            )
        }
        (SigningScheme::X509, _) => now,
    };
    let chain_unexpired = chain.iter().all(|c| at <= c.not_after());
    let skip = tsa_anchors.is_empty()
        || (options.verify_timestamp == VerifyTimestamp::AfterCertExpiry && chain_unexpired);
    if skip {
        return (chain::check_validity(chain, at), unused);
    }
    let Some(token) = token else {
        return (
            Err(timestamp::TimestampError::Missing.into()),
            Countersignature::Absent,
        );
    };
    match timestamp::verify(token, signature, tsa_anchors)
        .and_then(|ts| timestamp::check_signing_chain(&ts, chain).map(|()| ts))
    {
        Ok(ts) => (Ok(()), Countersignature::Verified(ts)),
        Err(e) => (Err(e.into()), Countersignature::Invalid),
    }
}

/// Whether `media_type` is a signature envelope this verifier reads.
pub(crate) fn is_supported_envelope(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_JWS || media_type == MEDIA_TYPE_COSE
}
