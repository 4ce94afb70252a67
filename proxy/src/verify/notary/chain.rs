//! The Notary Project's certificate chain rules, over parsed
//! [`Certificate`]s: an ordered chain (leaf first) checked against RFC 5280
//! issuance (signature *and* name chaining) and the [certificate
//! requirements] of the signature specification; validity at one instant,
//! passed in; the first certificate of a chain that is a trust anchor.
//!
//! Nothing here reads the clock, the file system or the network.
//!
//! [certificate requirements]: https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#certificate-requirements

use std::time::SystemTime;

use const_oid::db::rfc5280;
use const_oid::ObjectIdentifier;

use super::error::KeyUsageProblem;
use super::NotaryError;
use crate::verify::x509::Certificate;

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
