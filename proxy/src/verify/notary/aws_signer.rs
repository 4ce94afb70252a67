//! AWS Signer signatures: the verification logic of the notation plugin
//! `com.amazonaws.signer.notation.plugin`, performed here instead of in a
//! plugin process.
//!
//! [Guidelines for implementations](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#guidelines-for-notary-project-signature-implementors):
//! an implementation that does not support the plugin protocol "MAY choose
//! to perform the equivalent verification logic directly, if the
//! verification logic is known and available", and "MUST fail signature
//! verification if it cannot perform the equivalent verification logic".
//! The logic followed is that of aws/aws-signer-notation-plugin
//! (`internal/verifier/verifier.go`) at version [`PLUGIN_VERSION`]:
//!
//! - the signing scheme is `notary.x509.signingAuthority` with an
//!   `authenticSigningTime` (the plugin's `validate`);
//! - the extended attributes [`ATTR_SIGNING_PROFILE_VERSION`] and
//!   [`ATTR_SIGNING_JOB`] are strings (`getValueAsString`); both are
//!   "processed" attributes, so their being critical does not fail;
//! - the trusted identity is a signing-profile ARN matched against the
//!   profile-version attribute, and `*` is refused: that is the policy's
//!   (`pullgate_policy::Statement::trusts_signing_profile`);
//! - revocation is the Signer `GetRevocationStatus` answer for this
//!   module's [`RevocationQuery`] (certificate hashes from
//!   `hashCertificates`, job ARN, platform id, profile-version ARN,
//!   signature timestamp): any revoked entity fails. The query is built
//!   here; the network call is `crate::revocation_fetch::aws_signer`'s.
//!
//! Input: the protected header values and the chain. Output: typed
//! attributes, a query, a check result. No I/O, no clock.

use std::fmt;
use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use sha2::{Digest as _, Sha384};

use crate::verify::rfc3339::Rfc3339;
use crate::verify::x509::Certificate;

/// The verification plugin named by AWS Signer signatures.
pub(crate) const PLUGIN_NAME: &str = "com.amazonaws.signer.notation.plugin";
/// The plugin version whose verification logic this module implements
/// (aws/aws-signer-notation-plugin `internal/version/version.go`).
pub(crate) const PLUGIN_VERSION: PluginVersion = PluginVersion {
    major: 1,
    minor: 0,
    patch: 350,
};
/// Extended signed attribute: the signing-profile-version ARN.
pub(crate) const ATTR_SIGNING_PROFILE_VERSION: &str = "com.amazonaws.signer.signingProfileVersion";
/// Extended signed attribute: the signing-job ARN.
pub(crate) const ATTR_SIGNING_JOB: &str = "com.amazonaws.signer.signingJob";
/// The platform id the plugin sends (`platformNotation`).
pub(crate) const PLATFORM_ID: &str = "Notation-OCI-SHA384-ECDSA";
/// The API path of `GetRevocationStatus` (`GET /revocations`).
pub(crate) const REVOCATIONS_PATH: &str = "/revocations";

/// The plugin's extended attributes, read from a verified envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attributes {
    /// `com.amazonaws.signer.signingProfileVersion`.
    pub(crate) profile_version: String,
    /// `com.amazonaws.signer.signingJob`.
    pub(crate) job: String,
}

/// A `MAJOR.MINOR.PATCH` version (no pre-release: the plugin's versions have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PluginVersion {
    major: u64,
    minor: u64,
    patch: u64,
}

impl fmt::Display for PluginVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl PluginVersion {
    /// Parses `MAJOR.MINOR.PATCH` (an optional leading `v`, as Go's semver
    /// package writes it). Anything else, a pre-release included, is `None`:
    /// a minimum version that cannot be compared cannot be met.
    fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts = s.split('.');
        let mut next = || -> Option<u64> {
            let p = parts.next()?;
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return None;
            }
            p.parse().ok()
        };
        let v = Self {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        parts.next().is_none().then_some(v)
    }
}

/// Why an AWS Signer signature fails.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AwsSignerError {
    /// A verification plugin other than AWS Signer's.
    #[error("the signature requires verification plugin {name:?}, whose verification logic pullgate does not implement (it implements {PLUGIN_NAME})")]
    UnsupportedPlugin { name: String },
    /// `io.cncf.notary.verificationPluginMinVersion` without a plugin name.
    #[error(
        "the signature names a minimum verification plugin version but no verification plugin"
    )]
    MinVersionWithoutPlugin,
    /// A minimum version above the implemented one, or one that is not a version.
    #[error("the signature requires {PLUGIN_NAME} version {required:?} or later; pullgate implements the verification logic of version {PLUGIN_VERSION}")]
    PluginVersion { required: String },
    /// Another signing scheme (the plugin's `validate`).
    #[error(
        "AWS Signer signatures must use signing scheme notary.x509.signingAuthority, not {scheme}"
    )]
    Scheme { scheme: super::SigningScheme },
    /// A required extended attribute is missing or not a string.
    #[error("extended attribute {name:?} is required and must be a string")]
    Attribute { name: &'static str },
    /// Not yet asked (the gate asks when the level does not skip revocation).
    #[error("the AWS Signer revocation status was not checked")]
    NotChecked,
    /// Signer reports revoked entities.
    #[error("AWS Signer reports {}", Revoked { resources, certificates: *certificates })]
    Revoked {
        /// The revoked resources (profile version, job) by ARN.
        resources: Vec<String>,
        /// How many revoked entities are certificates (given as hashes).
        certificates: usize,
    },
    /// Signer could not be asked, or gave no usable answer.
    #[error("the AWS Signer revocation status could not be obtained: {0}")]
    Unavailable(Unavailable),
}

/// The revoked entities, worded as the plugin words them
/// (`getRevocationResultReason`): ARNs listed, certificates counted.
struct Revoked<'a> {
    resources: &'a [String],
    certificates: usize,
}

impl fmt::Display for Revoked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if !self.resources.is_empty() {
            write!(f, "revoked resource(s) {}", self.resources.join(", "))?;
            sep = " and ";
        }
        if self.certificates > 0 {
            write!(
                f,
                "{sep}{} revoked certificate(s) in the chain",
                self.certificates
            )?;
        }
        Ok(())
    }
}

/// Why the revocation status could not be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unavailable {
    #[error("no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_FULL_URI, or run where the instance metadata service answers)")]
    NoCredentials,
    #[error("{from} credentials: {failure}")]
    Credentials {
        from: CredentialSource,
        failure: Box<Unavailable>,
    },
    #[error("no usable AWS region: set [aws_signer] region or AWS_REGION")]
    NoRegion,
    #[error("the endpoint URL {url:?} is not an http(s) URL")]
    BadEndpoint { url: String },
    #[error("the endpoint URL {url:?} is plain http to a host that is neither loopback nor the ECS or EKS agent")]
    PlainHttpEndpoint { url: String },
    #[error("the request could not be signed")]
    Signing,
    #[error("the connection failed")]
    Transport,
    #[error("no answer within {} ms", .timeout.as_millis())]
    Timeout { timeout: Duration },
    #[error("the pull's deadline passed")]
    Deadline,
    #[error("the answer was HTTP {status}")]
    Status { status: u16 },
    #[error("the answer is over the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the answer is not the expected JSON")]
    Malformed,
}

/// Where credentials were being fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialSource {
    /// `AssumeRoleWithWebIdentity` with the token file (IRSA).
    WebIdentity,
    /// The EC2 instance metadata service (IMDSv2).
    InstanceMetadata,
    /// The container credentials endpoint (ECS task role, EKS Pod Identity).
    Container,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WebIdentity => "web identity (STS AssumeRoleWithWebIdentity)",
            Self::InstanceMetadata => "instance metadata (IMDSv2)",
            Self::Container => "container (AWS_CONTAINER_CREDENTIALS_*)",
        })
    }
}

/// Checks `io.cncf.notary.verificationPlugin` and
/// `io.cncf.notary.verificationPluginMinVersion`: `Ok(true)` for an AWS
/// Signer signature, `Ok(false)` for one that names no plugin.
///
/// [Signature specification, extended attributes](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#extended-attributes):
/// "Verification Plugin Minimum Version: ... the minimum version of the
/// verification plugin that should be used to verify the signature."
///
/// # Errors
/// [`AwsSignerError::UnsupportedPlugin`], [`AwsSignerError::MinVersionWithoutPlugin`]
/// or [`AwsSignerError::PluginVersion`].
pub(crate) fn check_plugin(
    plugin: Option<&str>,
    min_version: Option<&str>,
) -> Result<bool, AwsSignerError> {
    match (plugin, min_version) {
        (None, None) => Ok(false),
        (None, Some(_)) => Err(AwsSignerError::MinVersionWithoutPlugin),
        (Some(name), _) if name != PLUGIN_NAME => Err(AwsSignerError::UnsupportedPlugin {
            name: name.chars().take(128).collect(),
        }),
        (Some(_), None) => Ok(true),
        (Some(_), Some(min)) => match PluginVersion::parse(min) {
            Some(v) if v <= PLUGIN_VERSION => Ok(true),
            _ => Err(AwsSignerError::PluginVersion {
                required: min.chars().take(64).collect(),
            }),
        },
    }
}

/// The certificate identifiers `GetRevocationStatus` takes, in chain order.
///
/// As the plugin computes them (`hashCertificates`): each certificate's
/// SHA-384 over its DER `tbsCertificate`, in lower-case hex, followed by its
/// issuer's (the next certificate's); the last certificate (the root) is
/// "its own CA", so its hash is doubled. The API reference says the same:
/// "A certificate identifier consists of a subject certificate TBS hash
/// (signed by the parent CA) combined with a parent CA TBS hash (signed by
/// the parent CA's CA). Root certificates are defined as their own CA."
pub(crate) fn certificate_hashes(chain: &[Certificate]) -> Vec<String> {
    let tbs: Vec<Vec<u8>> = chain.iter().map(|c| c.tbs_der().to_vec()).collect();
    certificate_hashes_of_tbs(&tbs)
}

fn certificate_hashes_of_tbs(tbs: &[Vec<u8>]) -> Vec<String> {
    let own: Vec<String> = tbs.iter().map(|t| hex::encode(Sha384::digest(t))).collect();
    own.iter()
        .enumerate()
        .map(|(i, h)| {
            let parent = own.get(i + 1).unwrap_or(h);
            format!("{h}{parent}")
        })
        .collect()
}

/// What `GetRevocationStatus` is asked about one signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RevocationQuery {
    pub(crate) certificate_hashes: Vec<String>,
    pub(crate) job_arn: String,
    pub(crate) profile_version_arn: String,
    /// The signed `io.cncf.notary.authenticSigningTime`.
    pub(crate) signature_timestamp: SystemTime,
}

/// What the API percent-encodes in a query value: everything but the
/// unreserved characters (SigV4 canonical form, RFC 3986 §2.3).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl RevocationQuery {
    pub(crate) fn new(
        chain: &[Certificate],
        attributes: &Attributes,
        signature_timestamp: SystemTime,
    ) -> Self {
        Self {
            certificate_hashes: certificate_hashes(chain),
            job_arn: attributes.job.clone(),
            profile_version_arn: attributes.profile_version.clone(),
            signature_timestamp,
        }
    }

    /// `/revocations?…`: the request target, parameters sorted by name (the
    /// SigV4 canonical order, so the URL is already canonical), the
    /// certificate hashes as a repeated `certificateHashes` parameter, and
    /// the timestamp as an ISO 8601 date-time (the REST-JSON protocol's
    /// default for query parameters).
    pub(crate) fn path_and_query(&self) -> String {
        let enc = |v: &str| utf8_percent_encode(v, QUERY_VALUE).to_string();
        let mut q = String::from(REVOCATIONS_PATH);
        let mut sep = '?';
        for h in &self.certificate_hashes {
            q.push(sep);
            q.push_str("certificateHashes=");
            q.push_str(&enc(h));
            sep = '&';
        }
        for (name, value) in [
            ("jobArn", self.job_arn.as_str()),
            ("platformId", PLATFORM_ID),
            ("profileVersionArn", self.profile_version_arn.as_str()),
            ("signatureTimestamp", &date_time(self.signature_timestamp)),
        ] {
            q.push(sep);
            q.push_str(name);
            q.push('=');
            q.push_str(&enc(value));
            sep = '&';
        }
        q
    }

    /// The region of the signing profile (the ARN's fourth section).
    pub(crate) fn profile_region(&self) -> Option<&str> {
        self.profile_version_arn
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
    }
}

/// Smithy's `date-time` format as the Go SDK writes it
/// (`2006-01-02T15:04:05.999Z`): whole seconds, then milliseconds only when
/// there are any, without trailing zeros.
fn date_time(t: SystemTime) -> String {
    let whole = Rfc3339(t).to_string();
    let millis = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    if millis == 0 {
        return whole;
    }
    let frac = format!("{millis:03}");
    let frac = frac.trim_end_matches('0');
    match whole.strip_suffix('Z') {
        Some(base) => format!("{base}.{frac}Z"),
        None => whole,
    }
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(rename = "revokedEntities", default)]
    revoked_entities: Option<Vec<String>>,
}

/// Reads a `GetRevocationStatus` answer and applies the plugin's rule:
/// "if len(output.RevokedEntities) > 0" the signature fails.
///
/// # Errors
/// [`AwsSignerError::Revoked`], or [`AwsSignerError::Unavailable`] with
/// [`Unavailable::Malformed`] for a body that is not the API's JSON.
pub(crate) fn check_status(body: &[u8]) -> Result<(), AwsSignerError> {
    let raw: RawStatus = serde_json::from_slice(body)
        .map_err(|_| AwsSignerError::Unavailable(Unavailable::Malformed))?;
    let entities = raw.revoked_entities.unwrap_or_default();
    if entities.is_empty() {
        return Ok(());
    }
    // The plugin tells ARNs (resources) from certificate hashes by the "arn" prefix.
    let (resources, certificates): (Vec<String>, Vec<String>) =
        entities.into_iter().partition(|e| e.starts_with("arn"));
    Err(AwsSignerError::Revoked {
        resources: resources
            .into_iter()
            .take(8)
            .map(|r| r.chars().take(256).collect())
            .collect(),
        certificates: certificates.len(),
    })
}

#[cfg(test)]
mod tests;
