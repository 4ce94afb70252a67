//! Sigstore bundles (v0.1 to v0.3): the `sigstore-verify` call and what it
//! proves, reported as checks.
//!
//! Input: a parsed bundle (from a referrer, or built by `simple_signing`
//! from a `.sig` layer's annotations), the artifact it must bind to (the
//! image's manifest digest, or blob bytes), the scope's [`CosignTrust`] and
//! `now`. Output: Signature, Certificate (keyless) and TransparencyLog
//! checks in the [`Report`], the signer and the proven signing time; for an
//! image, also the Payload check ([`verify_image_bundle`]).
//!
//! A bundle carrying a public-key hint is tried with each configured key
//! (the hint is not trusted to pick one); a bundle carrying a certificate is
//! verified against the trusted root with any identity, the identity being
//! the policy's to judge (issuer and SAN come out in the report).

use std::time::SystemTime;

use sigstore_verify::types::bundle::VerificationMaterialContent;
use sigstore_verify::types::{Artifact, Bundle, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, VerificationResult};

use super::trust::{CosignKey, CosignTrust, SigstoreRoot};
use super::{
    system_time, CosignCheck, CosignFormat, CosignSigner, Error, ImageSubject, Report,
    IN_TOTO_PAYLOAD_TYPE, MAX_BUNDLE_BYTES, SIGN_PREDICATE_TYPE,
};
use crate::verify::intoto;
use pullgate_policy::Digest;
use std::sync::Arc;

/// Parses bundle JSON, refusing oversized input first.
///
/// # Errors
/// [`Error::TooLarge`] or [`Error::BundleMalformed`].
pub(crate) fn parse(bytes: &[u8]) -> Result<Bundle, Error> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(Error::TooLarge {
            what: "bundle",
            size: bytes.len(),
            limit: MAX_BUNDLE_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Error::BundleMalformed(Arc::new(sigstore_verify::types::Error::InvalidEncoding(
            "not UTF-8".to_owned(),
        )))
    })?;
    Bundle::from_json(text).map_err(|e| Error::BundleMalformed(Arc::new(e)))
}

/// Verifies a bundle attached to an image (OCI referrer): the
/// cryptographic checks against the digest, then the Payload check.
///
/// [cosign](https://github.com/sigstore/cosign/blob/main/cmd/cosign/cli/sign/sign.go)
/// `sign --new-bundle-format` signs an in-toto Statement whose subject is
/// `{digest: {<alg>: <hex of the manifest digest>}}` and whose predicate type
/// is `https://sigstore.dev/cosign/sign/v1`; `cosign verify` checks the
/// bundle with that digest as the artifact and then, with
/// `IntotoSubjectClaimVerifier`, that a subject's `sha256` equals the image
/// digest. pullgate also requires the predicate type, so an attestation (an
/// SBOM, a provenance) attached to the image does not count as a signature.
pub(crate) fn verify_image_bundle(
    bytes: &[u8],
    trust: &CosignTrust,
    subject: ImageSubject<'_>,
    now: SystemTime,
) -> Report {
    let mut report = Report::new(CosignFormat::Bundle);
    let bundle = match parse(bytes) {
        Ok(b) => b,
        Err(e) => {
            report.push(CosignCheck::Signature, Err(e));
            return report;
        }
    };
    match sha256_of(subject.digest) {
        Some(hash) => run(&bundle, Artifact::from(hash), trust, now, &mut report),
        None => report.push(
            CosignCheck::Payload,
            Err(Error::SubjectMismatch {
                expected: subject.digest.clone(),
            }),
        ),
    }
    payload_check(&bundle, subject, &mut report);
    report
}

/// Verifies a bundle attached to an image as an attestation of
/// `predicate_type`: the cryptographic checks against the digest, then the
/// Payload check (the DSSE envelope holds an in-toto statement of exactly
/// that predicate type whose subject is the image, see `verify::intoto`)
/// and the SignedIdentity check (a subject for the image names its
/// repository), as for an image signature bundle. The statement comes back
/// when the Payload check passed.
///
/// cosign `attest --new-bundle-format` writes such a bundle: a DSSE
/// envelope of payload type `application/vnd.in-toto+json` over a statement
/// whose subject is the image digest.
pub(crate) fn verify_attestation_bundle(
    bytes: &[u8],
    trust: &CosignTrust,
    subject: ImageSubject<'_>,
    predicate_type: &str,
    now: SystemTime,
) -> (Report, Option<intoto::Statement>) {
    let mut report = Report::new(CosignFormat::Bundle);
    let bundle = match parse(bytes) {
        Ok(b) => b,
        Err(e) => {
            report.push(CosignCheck::Signature, Err(e));
            return (report, None);
        }
    };
    match sha256_of(subject.digest) {
        Some(hash) => run(&bundle, Artifact::from(hash), trust, now, &mut report),
        None => report.push(
            CosignCheck::Payload,
            Err(Error::SubjectMismatch {
                expected: subject.digest.clone(),
            }),
        ),
    }
    let SignatureContent::DsseEnvelope(env) = &bundle.content else {
        report.push(
            CosignCheck::Payload,
            Err(Error::Attestation(intoto::Error::NotAStatement)),
        );
        return (report, None);
    };
    let statement = attestation_payload(
        &env.payload_type,
        env.payload.as_bytes(),
        subject,
        predicate_type,
        &mut report,
    );
    (report, statement)
}

/// The Payload and SignedIdentity checks of an attestation's DSSE
/// payload: an in-toto statement of exactly `predicate_type` naming the
/// image digest (`verify::intoto`), one of whose subjects for it names the
/// repository. The statement when the Payload check passed.
pub(super) fn attestation_payload(
    payload_type: &str,
    payload: &[u8],
    subject: ImageSubject<'_>,
    predicate_type: &str,
    report: &mut Report,
) -> Option<intoto::Statement> {
    match intoto::statement_for(payload_type, payload, subject.digest, predicate_type) {
        Ok(statement) => {
            report.push(
                CosignCheck::SignedIdentity,
                signed_repository_by_name(
                    statement.names_of_image.iter().map(String::as_str),
                    subject.repository,
                ),
            );
            report.target = Some(subject.digest.clone());
            report.push(CosignCheck::Payload, Ok(()));
            Some(statement)
        }
        Err(e) => {
            report.push(CosignCheck::Payload, Err(Error::Attestation(e)));
            None
        }
    }
}

/// Verifies a bundle over blob bytes (the sigstore-conformance case): the
/// cryptographic checks only.
pub(crate) fn verify_blob_bundle(
    bytes: &[u8],
    artifact: &[u8],
    trust: &CosignTrust,
    now: SystemTime,
) -> Report {
    let mut report = Report::new(CosignFormat::Bundle);
    match parse(bytes) {
        Ok(bundle) => run(&bundle, Artifact::from(artifact), trust, now, &mut report),
        Err(e) => report.push(CosignCheck::Signature, Err(e)),
    }
    report
}

fn sha256_of(digest: &Digest) -> Option<sigstore_verify::types::Sha256Hash> {
    if digest.algorithm() != pullgate_policy::reference::DigestAlgorithm::Sha256 {
        return None;
    }
    sigstore_verify::types::Sha256Hash::from_hex(digest.hex()).ok()
}

/// Runs `sigstore-verify` on `bundle` and reports Signature, Certificate
/// (keyless) and TransparencyLog.
pub(crate) fn run(
    bundle: &Bundle,
    artifact: Artifact<'_>,
    trust: &CosignTrust,
    now: SystemTime,
    report: &mut Report,
) {
    let Some(root) = trust.root.as_deref() else {
        report.push(CosignCheck::Signature, Err(Error::NoTrustedRoot));
        return;
    };
    // A root was parsed, so the provider is installed; check anyway: the
    // crate panics without one.
    if !super::provider::install() {
        report.push(
            CosignCheck::Signature,
            Err(Error::Internal("no Sigstore crypto provider")),
        );
        return;
    }
    let keyed = matches!(
        bundle.verification_material.content,
        VerificationMaterialContent::PublicKey(_)
    );
    if keyed {
        run_keyed(bundle, artifact, &trust.keys, root, now, report);
    } else {
        run_keyless(bundle, artifact, root, now, report);
    }
}

fn run_keyless(
    bundle: &Bundle,
    artifact: Artifact<'_>,
    root: &SigstoreRoot,
    now: SystemTime,
    report: &mut Report,
) {
    let policy = VerificationPolicy::any_identity();
    match root.verifier().verify(artifact, bundle, &policy) {
        Ok(result) => {
            let subject = result
                .identity()
                .map(|s| s.as_str().to_owned())
                .or_else(|| {
                    bundle
                        .signing_certificate()
                        .and_then(|c| other_name_san(c.as_bytes()))
                });
            let issuer = result.issuer().map(str::to_owned).unwrap_or_default();
            match subject {
                Some(subject) => report.signer = Some(CosignSigner::Keyless { issuer, subject }),
                None => {
                    report.push(
                        CosignCheck::Certificate,
                        Err(Error::Internal("verified certificate without a subject")),
                    );
                    return;
                }
            }
            report.not_after = result.certificate().map(|c| system_time(c.not_after));
            report.push(CosignCheck::Signature, Ok(()));
            report.push(CosignCheck::Certificate, Ok(()));
            proven_time(bundle, &result, now, report);
        }
        Err(e) => failed(e, report),
    }
}

fn run_keyed(
    bundle: &Bundle,
    artifact: Artifact<'_>,
    keys: &[CosignKey],
    root: &SigstoreRoot,
    now: SystemTime,
    report: &mut Report,
) {
    if keys.is_empty() {
        report.push(CosignCheck::Signature, Err(Error::NoKeys));
        return;
    }
    let mut other_failure = None;
    for key in keys {
        let policy = PublicKeyVerificationPolicy::new(key.spki().clone());
        match root.verifier().verify(artifact.clone(), bundle, &policy) {
            Ok(result) => {
                report.signer = Some(CosignSigner::Key {
                    name: key.name().to_owned(),
                });
                report.push(CosignCheck::Signature, Ok(()));
                proven_time(bundle, &result, now, report);
                return;
            }
            Err(e) => {
                // A wrong key fails the signature; anything else (structure,
                // the log, the timestamp) fails for every key alike: report that.
                let wrong_key = matches!(
                    e,
                    sigstore_verify::Error::SignatureInvalid(_) | sigstore_verify::Error::Crypto(_)
                );
                if !wrong_key && other_failure.is_none() {
                    other_failure = Some(e);
                }
            }
        }
    }
    match other_failure {
        Some(e) => failed(e, report),
        None => report.push(
            CosignCheck::Signature,
            Err(Error::NoMatchingKey {
                configured: keys.len(),
            }),
        ),
    }
}

/// Reports a `sigstore-verify` failure under its check; the checks it
/// would have run after that one are not reported.
fn failed(e: sigstore_verify::Error, report: &mut Report) {
    let check = Error::sigstore_check(&e);
    report.push(check, Err(Error::Sigstore(Arc::new(e))));
}

/// The TransparencyLog check after a successful `sigstore-verify` call: an
/// entry or timestamp was verified, and no proven time is after `now`.
fn proven_time(bundle: &Bundle, result: &VerificationResult, now: SystemTime, report: &mut Report) {
    let times: Vec<SystemTime> = result
        .verified_timestamps()
        .iter()
        .copied()
        .map(system_time)
        .collect();
    if bundle.verification_material.tlog_entries.is_empty() && times.is_empty() {
        report.push(CosignCheck::TransparencyLog, Err(Error::NoLogEntry));
        return;
    }
    report.signed_at = times.iter().min().copied();
    if let Some(latest) = times.iter().max().copied() {
        if latest > now {
            report.push(
                CosignCheck::TransparencyLog,
                Err(Error::SignedInFuture {
                    signed_at: latest,
                    now,
                }),
            );
            return;
        }
    }
    report.push(CosignCheck::TransparencyLog, Ok(()));
}

/// The Payload check of an image bundle: a cosign image-signature statement
/// whose subject is the image, or a message signature over the manifest;
/// and the SignedIdentity check: the statement's subject for the image
/// names its repository (a message signature names none).
fn payload_check(bundle: &Bundle, subject: ImageSubject<'_>, report: &mut Report) {
    let expected = subject.digest;
    let result = match &bundle.content {
        SignatureContent::DsseEnvelope(env) => statement_check(env, subject, report),
        SignatureContent::MessageSignature(ms) => {
            report.push(
                CosignCheck::SignedIdentity,
                Err(Error::BundleNamesNoRepository {
                    expected: subject.repository.clone(),
                }),
            );
            match &ms.message_digest {
                Some(d) if d.algorithm == sigstore_verify::types::HashAlgorithm::Sha2256 => {
                    let signed: Option<Digest> =
                        format!("sha256:{}", hex::encode(d.digest.as_bytes()))
                            .parse()
                            .ok();
                    report.target = signed.clone();
                    match signed {
                        Some(s) if &s == expected => Ok(()),
                        Some(s) => Err(Error::DigestMismatch {
                            expected: expected.clone(),
                            signed: s,
                        }),
                        None => Err(Error::SubjectMismatch {
                            expected: expected.clone(),
                        }),
                    }
                }
                _ => Err(Error::SubjectMismatch {
                    expected: expected.clone(),
                }),
            }
        }
        _ => Err(Error::SubjectMismatch {
            expected: expected.clone(),
        }),
    };
    report.push(CosignCheck::Payload, result);
}

fn statement_check(
    env: &sigstore_verify::types::DsseEnvelope,
    subject: ImageSubject<'_>,
    report: &mut Report,
) -> Result<(), Error> {
    let expected = subject.digest;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Error::PayloadType {
            found: env.payload_type.chars().take(128).collect(),
        });
    }
    let statement: sigstore_verify::types::Statement =
        serde_json::from_slice(env.payload.as_bytes())
            .map_err(|e| Error::Statement(Arc::new(e)))?;
    if statement.predicate_type != SIGN_PREDICATE_TYPE {
        return Err(Error::PredicateType {
            found: statement.predicate_type.chars().take(128).collect(),
        });
    }
    let matching: Vec<&sigstore_verify::types::Subject> = statement
        .subject
        .iter()
        .filter(|s| {
            s.digest.sha256.as_ref().is_some_and(|h| {
                expected.algorithm() == pullgate_policy::reference::DigestAlgorithm::Sha256
                    && h.to_hex() == expected.hex()
            })
        })
        .collect();
    if !matching.is_empty() {
        report.push(
            CosignCheck::SignedIdentity,
            signed_repository_by_name(matching.iter().map(|s| s.name.as_str()), subject.repository),
        );
        report.target = Some(expected.clone());
        Ok(())
    } else {
        Err(Error::SubjectMismatch {
            expected: expected.clone(),
        })
    }
}

/// The SignedIdentity check of a statement: one of its subjects for the
/// image names the image's repository (`host/path`, as a `.sig` payload's
/// `docker-reference` does, a tag or digest allowed). In-toto Statement v1:
/// a subject's `name` is optional, and cosign v3's `sign` leaves it out.
fn signed_repository_by_name<'a>(
    names: impl Iterator<Item = &'a str>,
    expected: &pullgate_policy::Repository,
) -> Result<(), Error> {
    let mut first = None;
    for name in names.filter(|n| !n.is_empty()) {
        match name.parse::<pullgate_policy::ImageRef>() {
            Ok(r) if r.repository() == expected => return Ok(()),
            Ok(r) => {
                first.get_or_insert(Error::RepositoryMismatch {
                    expected: expected.clone(),
                    signed: r.repository().clone(),
                });
            }
            Err(_) => {
                first.get_or_insert(Error::InvalidSubjectName {
                    signed: name.chars().take(256).collect(),
                });
            }
        }
    }
    Err(first.unwrap_or_else(|| Error::BundleNamesNoRepository {
        expected: expected.clone(),
    }))
}

/// Fulcio's `OtherName` SAN for a username identity.
///
/// [Fulcio certificate specification](https://github.com/sigstore/fulcio/blob/main/docs/certificate-specification.md):
/// "1.3.6.1.4.1.57264.1.7 | OtherName SAN ... value is a UTF-8 string"
/// (identities of the form `user!domain`). Hand-written because
/// `sigstore-verify` 0.15.1 reports only email and URI SANs; it is read only
/// from a certificate `sigstore-verify` has already verified.
fn other_name_san(cert_der: &[u8]) -> Option<String> {
    use der::Decode as _;
    const FULCIO_USERNAME: const_oid::ObjectIdentifier =
        const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.7");
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let (_, san) = cert
        .tbs_certificate
        .get::<x509_cert::ext::pkix::SubjectAltName>()
        .ok()??;
    san.0.iter().find_map(|name| match name {
        x509_cert::ext::pkix::name::GeneralName::OtherName(other)
            if other.type_id == FULCIO_USERNAME =>
        {
            other
                .value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .ok()
                .map(|s| s.as_str().to_owned())
        }
        _ => None,
    })
}
