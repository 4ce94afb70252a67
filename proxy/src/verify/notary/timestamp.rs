//! RFC 3161 timestamp countersignatures: a `TimeStampToken` over the
//! envelope's signature bytes, verified against the `tsa` trust anchors.
//!
//! Contract: [`verify`] takes the token bytes (the
//! `io.cncf.notary.timestampSignature` unprotected header of either
//! envelope), the envelope's signature bytes and the `tsa` anchors, and
//! returns the authentic [`Timestamp`] (genTime ± accuracy and the TSA's
//! subject), or a typed [`TimestampError`]. [`check_signing_chain`] then
//! checks that the whole interval lies inside every signing certificate's
//! validity. Nothing here reads the clock: the TSA chain is checked at the
//! token's own time.
//!
//! What is verified, in order (as notation-go and tspclient-go do):
//! 1. The token is a CMS `ContentInfo` of type signedData whose
//!    `eContentType` is id-ct-TSTInfo, and the TSTInfo decodes (version 1).
//! 2. The message imprint equals the hash, with the imprint's own SHA-2
//!    algorithm, of the envelope's signature bytes.
//! 3. A `SignerInfo` names a certificate carried in the token, its signed
//!    attributes hold the right content type, the digest of the TSTInfo and
//!    an ESS `signingCertificateV2` matching that certificate, and its
//!    signature over the DER of the signed attributes verifies.
//! 4. The TSA certificate chains (through the token's certificates) to a
//!    `tsa` anchor, meets the timestamping certificate requirements, and
//!    every certificate of that chain is valid at genTime.
//!
//! The CMS structure is walked with `der`'s reader over the bytes as
//! received instead of being decoded into `cms::signed_data::SignedData`:
//! the signature covers the signed attributes exactly as the TSA encoded
//! them, and `der` sorts SET OF elements when decoding, so a re-encoding is
//! not guaranteed to reproduce them. `cms` decodes each `SignerInfo`. The
//! TSTInfo is read by hand too: `der`'s `GeneralizedTime` (and so
//! `x509-tsp`) refuses fractional seconds, which RFC 3161 allows in genTime
//! and real TSAs (Microsoft's) send.
//!
//! Not checked: revocation of the TSA chain (reported with the rest of
//! revocation, TODO(#3)); the ESS v1 (`signingCertificate`, SHA-1) attribute.

use std::fmt;
use std::time::{Duration, SystemTime};

pub(crate) use super::error::{TimestampError, ID_CT_TST_INFO};
use crate::verify::rfc3339::{self, Rfc3339};
use crate::verify::x509::{self, Certificate, Hash};
use cms::signed_data::{SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode, Reader, SliceReader, Tag};
use spki::AlgorithmIdentifierOwned;

/// id-signedData (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-contentType signed attribute (RFC 5652 §11.1).
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest signed attribute (RFC 5652 §11.2).
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-aa-signingCertificateV2 (RFC 5035 §3, required by RFC 5816).
const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// ETSI baseline time-stamp policy (RFC 3628 §5.2), whose accuracy is 1 s.
const BASELINE_TIMESTAMP_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.4.0.2023.1.1");
/// Tokens and chains longer than this are refused.
const MAX_TSA_CHAIN: usize = 10;

/// An authentic time from a verified countersignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timestamp {
    /// TSTInfo `genTime`.
    pub(crate) gen_time: SystemTime,
    /// TSTInfo `accuracy` (1 s for the baseline policy when absent, else 0).
    pub(crate) accuracy: Duration,
    /// Subject of the TSA certificate, RFC 4514.
    pub(crate) tsa: String,
}

impl Timestamp {
    /// The earliest instant the token may have been made at.
    pub(crate) fn earliest(&self) -> SystemTime {
        self.gen_time
            .checked_sub(self.accuracy)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The latest instant the token may have been made at.
    pub(crate) fn latest(&self) -> SystemTime {
        self.gen_time
            .checked_add(self.accuracy)
            .unwrap_or(self.gen_time)
    }
}

/// The children of one constructed TLV, as raw TLVs.
fn children(tlv: &[u8]) -> Result<(Tag, Vec<&[u8]>), TimestampError> {
    let bad = |_| TimestampError::NotSignedData;
    let mut outer = SliceReader::new(tlv).map_err(bad)?;
    let header = der::Header::decode(&mut outer).map_err(bad)?;
    let body = outer.read_slice(header.length).map_err(bad)?;
    if !outer.is_finished() || !header.tag.is_constructed() {
        return Err(TimestampError::NotSignedData);
    }
    let mut inner = SliceReader::new(body).map_err(bad)?;
    let mut out = Vec::new();
    while !inner.is_finished() {
        out.push(inner.tlv_bytes().map_err(bad)?);
    }
    Ok((header.tag, out))
}

fn tag_of(tlv: &[u8]) -> Option<Tag> {
    tlv.first().and_then(|b| Tag::try_from(*b).ok())
}

/// The parts of a `SignedData` this verifier reads, borrowed from the token.
struct SignedData<'a> {
    econtent_type: ObjectIdentifier,
    /// The eContent octets (the DER TSTInfo).
    econtent: Vec<u8>,
    certificates: Vec<&'a [u8]>,
    signer_infos: Vec<&'a [u8]>,
}

/// ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
/// SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo,
///   certificates [0] IMPLICIT OPTIONAL, crls [1] IMPLICIT OPTIONAL,
///   signerInfos SET } (RFC 5652 §3 and §5.1)
fn signed_data(token: &[u8]) -> Result<SignedData<'_>, TimestampError> {
    let bad = TimestampError::NotSignedData;
    let (_, ci) = children(token)?;
    let [content_type, content] = ci.as_slice() else {
        return Err(bad);
    };
    if ObjectIdentifier::from_der(content_type).ok() != Some(ID_SIGNED_DATA) {
        return Err(bad);
    }
    let (_, explicit) = children(content)?;
    let [sd] = explicit.as_slice() else {
        return Err(bad);
    };
    let (_, fields) = children(sd)?;
    let (Some(encap), Some(signer_infos)) = (fields.get(2), fields.last()) else {
        return Err(bad);
    };
    let mut certificates = Vec::new();
    for field in fields.get(3..fields.len() - 1).unwrap_or_default() {
        if tag_of(field)
            == Some(Tag::ContextSpecific {
                constructed: true,
                number: der::TagNumber::N0,
            })
        {
            certificates = children(field)?.1;
        }
    }
    let (_, signer_infos) = children(signer_infos)?;

    // EncapsulatedContentInfo ::= SEQUENCE { eContentType,
    //   eContent [0] EXPLICIT OCTET STRING OPTIONAL }
    let (_, encap) = children(encap)?;
    let econtent_type = encap
        .first()
        .and_then(|t| ObjectIdentifier::from_der(t).ok())
        .ok_or(TimestampError::NotSignedData)?;
    let econtent = match encap.get(1) {
        Some(wrapper) => {
            let (_, inner) = children(wrapper)?;
            let [octets] = inner.as_slice() else {
                return Err(TimestampError::NotSignedData);
            };
            OctetString::from_der(octets)
                .map_err(|_| TimestampError::NotSignedData)?
                .into_bytes()
        }
        None => Vec::new(),
    };
    Ok(SignedData {
        econtent_type,
        econtent,
        certificates,
        signer_infos,
    })
}

/// The signed attributes of one raw `SignerInfo`, re-tagged as the
/// `SET OF Attribute` the signature covers.
///
/// RFC 5652 §5.4: "the DER encoding of the SignedAttrs value ... A separate
/// encoding of the signedAttrs field is performed for message digest
/// calculation. The IMPLICIT [0] tag in the signedAttrs is not used for the
/// DER encoding, rather an EXPLICIT SET OF tag is used."
fn signed_attrs_to_verify(signer_info: &[u8]) -> Result<Vec<u8>, TimestampError> {
    let (_, fields) = children(signer_info)?;
    let attrs = fields
        .iter()
        .find(|f| {
            tag_of(f)
                == Some(Tag::ContextSpecific {
                    constructed: true,
                    number: der::TagNumber::N0,
                })
        })
        .ok_or(TimestampError::SignedAttributes)?;
    let mut out = attrs.to_vec();
    if let Some(first) = out.first_mut() {
        *first = 0x31;
    }
    Ok(out)
}

fn single_value(signer: &SignerInfo, oid: ObjectIdentifier) -> Result<Vec<u8>, TimestampError> {
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or(TimestampError::SignedAttributes)?;
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let (Some(attr), None) = (found.next(), found.next()) else {
        return Err(TimestampError::SignedAttributes);
    };
    let mut values = attr.values.iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(TimestampError::SignedAttributes);
    };
    value.to_der().map_err(|_| TimestampError::SignedAttributes)
}

/// Finds the certificate a `SignerInfo` names (RFC 5652 §5.3 `sid`).
fn signer_certificate<'c>(
    signer: &SignerInfo,
    certificates: &'c [Certificate],
) -> Option<&'c Certificate> {
    certificates.iter().find(|c| match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            let tbs = &c.inner().tbs_certificate;
            tbs.issuer == ias.issuer && tbs.serial_number == ias.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            c.subject_key_identifier() == Some(ski.0.as_bytes())
        }
    })
}

/// RFC 5035 §5.4.1: SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF
/// ESSCertIDv2, policies OPTIONAL }; ESSCertIDv2 ::= SEQUENCE {
/// hashAlgorithm AlgorithmIdentifier DEFAULT {algorithm id-sha256},
/// certHash OCTET STRING, issuerSerial OPTIONAL }. RFC 5816 §2.2.1: the
/// first ESSCertIDv2 identifies the signing certificate.
fn check_signing_certificate_v2(value: &[u8], cert: &Certificate) -> Result<(), TimestampError> {
    let bad = TimestampError::SignedAttributes;
    let (_, fields) = children(value).map_err(|_| TimestampError::SignedAttributes)?;
    let certs = fields.first().ok_or(TimestampError::SignedAttributes)?;
    let (_, ids) = children(certs).map_err(|_| TimestampError::SignedAttributes)?;
    let first = ids.first().ok_or(TimestampError::SignedAttributes)?;
    let (_, id) = children(first).map_err(|_| TimestampError::SignedAttributes)?;
    let (hash, cert_hash) = match id.as_slice() {
        [alg, hash, ..] if tag_of(alg) == Some(Tag::Sequence) => {
            let alg = AlgorithmIdentifierOwned::from_der(alg).map_err(|_| bad)?;
            let hash_fn =
                Hash::from_oid(alg.oid).ok_or(TimestampError::UnsupportedHash { oid: alg.oid })?;
            (hash_fn, *hash)
        }
        [hash, ..] => (Hash::Sha256, *hash),
        [] => return Err(TimestampError::SignedAttributes),
    };
    let expected =
        OctetString::from_der(cert_hash).map_err(|_| TimestampError::SignedAttributes)?;
    if hash.digest(cert.der()) == expected.as_bytes() {
        Ok(())
    } else {
        Err(TimestampError::SigningCertificateMismatch)
    }
}

/// Builds the TSA chain, leaf first, from the token's certificates and the
/// anchors, following issuance (name and signature). As Go's
/// `x509.Verify` does, the chain ends at the first anchor reached, and an
/// anchor is preferred over a token certificate as the issuer: tokens may
/// carry a cross-certificate of the very root the trust store holds.
fn build_chain(
    leaf: &Certificate,
    pool: &[Certificate],
    anchors: &[&Certificate],
) -> Vec<Certificate> {
    let mut chain = vec![leaf.clone()];
    while chain.len() < MAX_TSA_CHAIN {
        let Some(last) = chain.last() else {
            break;
        };
        if anchors.contains(&last) || last.is_self_signed() {
            break;
        }
        let parent = anchors
            .iter()
            .copied()
            .chain(pool.iter())
            .find(|c| !chain.contains(c) && last.is_issued_by(c))
            .cloned();
        match parent {
            Some(p) => chain.push(p),
            None => break,
        }
    }
    chain
}

fn verify_signer(
    raw: &[u8],
    data: &SignedData<'_>,
    certificates: &[Certificate],
    anchors: &[&Certificate],
    gen_time: SystemTime,
) -> Result<String, TimestampError> {
    let signer = SignerInfo::from_der(raw).map_err(|_| TimestampError::NotSignedData)?;
    let cert = signer_certificate(&signer, certificates)
        .ok_or(TimestampError::SigningCertificateNotFound)?;

    // RFC 5652 §5.3: with signed attributes, "content-type ... MUST be
    // present ... message-digest ... MUST be present"; §11.1: the content
    // type attribute's value matches eContentType.
    let content_type = single_value(&signer, ID_CONTENT_TYPE)?;
    if ObjectIdentifier::from_der(&content_type).ok() != Some(data.econtent_type) {
        return Err(TimestampError::ContentTypeAttribute);
    }
    let digest = Hash::from_oid(signer.digest_alg.oid).ok_or(TimestampError::UnsupportedHash {
        oid: signer.digest_alg.oid,
    })?;
    let message_digest = single_value(&signer, ID_MESSAGE_DIGEST)?;
    let message_digest =
        OctetString::from_der(&message_digest).map_err(|_| TimestampError::SignedAttributes)?;
    if message_digest.as_bytes() != digest.digest(&data.econtent) {
        return Err(TimestampError::MessageDigestMismatch);
    }
    // RFC 3161 §2.4.1 (as updated by RFC 5816): "The ESSCertID [or
    // ESSCertIDv2] ... identifying the certificate of the TSA MUST be
    // included as a signerInfo attribute inside a SigningCertificate [or
    // SigningCertificateV2] attribute."
    check_signing_certificate_v2(&single_value(&signer, ID_AA_SIGNING_CERTIFICATE_V2)?, cert)?;

    let to_verify = signed_attrs_to_verify(raw)?;
    let ok = x509::verify_cms_signature(
        cert.public_key(),
        &signer.signature_algorithm,
        digest,
        &to_verify,
        signer.signature.as_bytes(),
    )
    .map_err(TimestampError::SignatureAlgorithm)?;
    if !ok {
        return Err(TimestampError::SignatureInvalid);
    }

    // [Trust policy, timestamp](https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#steps):
    // the TSA certificate chain must be valid and chain to a certificate of
    // a `tsa` trust store; as notation-go, at the time of the timestamp.
    let chain = build_chain(cert, certificates, anchors);
    if super::chain::trusted_index(&chain, anchors).is_none() {
        return Err(TimestampError::UntrustedTsa {
            subject: cert.subject().to_owned(),
        });
    }
    super::chain::validate_timestamping_chain(&chain)
        .and_then(|()| super::chain::check_validity(&chain, gen_time))
        .map_err(|e| TimestampError::TsaChain(Box::new(e)))?;
    Ok(cert.subject().to_owned())
}

/// Verifies a `TimeStampToken` over `signature` against `anchors`.
///
/// [Signature spec, unsigned attributes](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#unsigned-attributes):
/// "Timestamp signature: An OPTIONAL counter signature which provides
/// authentic timestamp ... Only RFC3161 compliant TimeStampToken are
/// currently supported." RFC 3161 §2.4.2: "messageImprint ... MUST have the
/// same value as the similar field in TimeStampReq", which the signer
/// computed over the envelope's signature value.
///
/// # Errors
/// The first [`TimestampError`] met, in the order of the module docs.
pub(crate) fn verify(
    token: &[u8],
    signature: &[u8],
    anchors: &[&Certificate],
) -> Result<Timestamp, TimestampError> {
    let token = Token::parse(token)?;
    token.check_imprint(signature)?;
    token.authenticate(anchors)
}

/// The TSTInfo fields this verifier reads (RFC 3161 §2.4.2).
struct TstInfo {
    policy: ObjectIdentifier,
    hash_algorithm: ObjectIdentifier,
    hashed_message: Vec<u8>,
    gen_time: SystemTime,
    accuracy: Duration,
}

/// TSTInfo ::= SEQUENCE { version INTEGER { v1(1) }, policy, messageImprint
/// SEQUENCE { hashAlgorithm, hashedMessage OCTET STRING }, serialNumber
/// INTEGER, genTime GeneralizedTime, accuracy Accuracy OPTIONAL, ordering
/// BOOLEAN DEFAULT FALSE, nonce INTEGER OPTIONAL, tsa [0] OPTIONAL,
/// extensions [1] OPTIONAL }
fn tst_info(der: &[u8]) -> Result<TstInfo, TimestampError> {
    let bad = |_| TimestampError::TstInfo;
    let (tag, fields) = children(der).map_err(|_| TimestampError::TstInfo)?;
    let [version, policy, imprint, serial, gen_time, rest @ ..] = fields.as_slice() else {
        return Err(TimestampError::TstInfo);
    };
    if tag != Tag::Sequence
        || *version != [0x02, 0x01, 0x01]
        || tag_of(serial) != Some(Tag::Integer)
    {
        return Err(TimestampError::TstInfo);
    }
    let policy = ObjectIdentifier::from_der(policy).map_err(bad)?;
    let (_, imprint) = children(imprint).map_err(|_| TimestampError::TstInfo)?;
    let [algorithm, hashed] = imprint.as_slice() else {
        return Err(TimestampError::TstInfo);
    };
    let hash_algorithm = AlgorithmIdentifierOwned::from_der(algorithm)
        .map_err(bad)?
        .oid;
    let hashed_message = OctetString::from_der(hashed).map_err(bad)?.into_bytes();
    let gen_time = generalized_time(gen_time).ok_or(TimestampError::TstInfo)?;
    let accuracy = match rest.first() {
        Some(acc) if tag_of(acc) == Some(Tag::Sequence) => accuracy(acc)?,
        _ => Duration::ZERO,
    };
    Ok(TstInfo {
        policy,
        hash_algorithm,
        hashed_message,
        gen_time,
        accuracy,
    })
}

/// RFC 3161 §2.4.2: "genTime ... GeneralizedTime ... MUST be expressed as
/// UTC time (Zulu) ... The syntax is: YYYYMMDDhhmmss[.s...]Z ... the
/// fraction-of-second element MUST NOT end with a trailing zero".
fn generalized_time(tlv: &[u8]) -> Option<SystemTime> {
    let text = match tlv {
        [0x18, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => return None,
    };
    let text = std::str::from_utf8(text).ok()?;
    let body = text.strip_suffix('Z')?;
    let (whole, fraction) = match body.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &whole[0..4],
        &whole[4..6],
        &whole[6..8],
        &whole[8..10],
        &whole[10..12],
        &whole[12..14]
    );
    let seconds = rfc3339::parse(&rfc3339).ok()?;
    let nanos = match fraction {
        None => 0,
        Some(f)
            if !f.is_empty()
                && f.len() <= 9
                && !f.ends_with('0')
                && f.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{f:0<9}").parse::<u32>().ok()?
        }
        Some(_) => return None,
    };
    seconds.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER
/// (1..999) OPTIONAL, micros [1] INTEGER (1..999) OPTIONAL }
fn accuracy(tlv: &[u8]) -> Result<Duration, TimestampError> {
    let (_, parts) = children(tlv).map_err(|_| TimestampError::TstInfo)?;
    let mut total = Duration::ZERO;
    for part in parts {
        // A small non-negative INTEGER: tag, length, big-endian content.
        let [tag, len, value @ ..] = part else {
            return Err(TimestampError::TstInfo);
        };
        if usize::from(*len) != value.len() || value.is_empty() || value.len() > 4 {
            return Err(TimestampError::TstInfo);
        }
        if value[0] & 0x80 != 0 {
            return Err(TimestampError::TstInfo);
        }
        let n = value.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        total += match tag {
            0x02 => Duration::from_secs(n),
            0x80 if (1..=999).contains(&n) => Duration::from_millis(n),
            0x81 if (1..=999).contains(&n) => Duration::from_micros(n),
            _ => return Err(TimestampError::TstInfo),
        };
    }
    Ok(total)
}

/// A decoded, not yet authenticated `TimeStampToken`.
pub(crate) struct Token<'a> {
    data: SignedData<'a>,
    info: TstInfo,
}

impl<'a> Token<'a> {
    /// Decodes the CMS structure and its TSTInfo.
    ///
    /// # Errors
    /// [`TimestampError::NotSignedData`], [`TimestampError::ContentType`] or
    /// [`TimestampError::TstInfo`].
    pub(crate) fn parse(token: &'a [u8]) -> Result<Self, TimestampError> {
        let data = signed_data(token)?;
        if data.econtent_type != ID_CT_TST_INFO {
            return Err(TimestampError::ContentType {
                oid: data.econtent_type,
            });
        }
        let info = tst_info(&data.econtent)?;
        Ok(Self { data, info })
    }

    /// The token's genTime and accuracy as written (not yet authentic).
    #[cfg(test)]
    pub(crate) fn claimed_time(&self) -> (SystemTime, Duration) {
        (self.info.gen_time, self.info.accuracy)
    }

    /// Checks that the token timestamps `signature`.
    ///
    /// # Errors
    /// [`TimestampError::UnsupportedHash`] or [`TimestampError::ImprintMismatch`].
    pub(crate) fn check_imprint(&self, signature: &[u8]) -> Result<(), TimestampError> {
        let hash_oid = self.info.hash_algorithm;
        let hash =
            Hash::from_oid(hash_oid).ok_or(TimestampError::UnsupportedHash { oid: hash_oid })?;
        if self.info.hashed_message != hash.digest(signature) {
            return Err(TimestampError::ImprintMismatch);
        }
        Ok(())
    }

    /// Verifies the TSA's signature and certificate chain, and returns the
    /// authentic time.
    ///
    /// # Errors
    /// The first [`TimestampError`] met for the last signer tried.
    pub(crate) fn authenticate(
        &self,
        anchors: &[&Certificate],
    ) -> Result<Timestamp, TimestampError> {
        let (data, info) = (&self.data, &self.info);
        let gen_time = info.gen_time;
        // RFC 3161 §2.4.2: accuracy "represents the time deviation around the
        // UTC time contained in GeneralizedTime"; RFC 3628 §7.3.2 and
        // tspclient-go: the baseline policy's accuracy is one second.
        let accuracy = if info.accuracy.is_zero() && info.policy == BASELINE_TIMESTAMP_POLICY {
            Duration::from_secs(1)
        } else {
            info.accuracy
        };

        if data.certificates.len() > MAX_TSA_CHAIN || data.signer_infos.len() > MAX_TSA_CHAIN {
            return Err(TimestampError::NotSignedData);
        }
        let mut certificates = Vec::with_capacity(data.certificates.len());
        for (index, der) in data.certificates.iter().enumerate() {
            // Other CertificateChoices (attribute certificates) are not X.509
            // certificates; skip them.
            if tag_of(der) != Some(Tag::Sequence) {
                continue;
            }
            certificates.push(
                Certificate::from_der(der)
                    .map_err(|reason| TimestampError::Certificate { index, reason })?,
            );
        }
        // tspclient-go: "returns success when the first signer info
        // verification succeeds".
        let mut last = TimestampError::NoSigner;
        for raw in &data.signer_infos {
            match verify_signer(raw, data, &certificates, anchors, gen_time) {
                Ok(tsa) => {
                    return Ok(Timestamp {
                        gen_time,
                        accuracy,
                        tsa,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Checks that the timestamp interval lies inside the validity of every
/// certificate of the signing chain.
///
/// [Signing time](https://github.com/notaryproject/specifications/blob/main/specs/signature-specification.md#signing-time):
/// "An authentic timestamp, like TSA countersignature, allows a verifier to
/// determine if the signature was generated when the certificate was valid."
/// With accuracy, genTime − accuracy must not be before notBefore and
/// genTime + accuracy must not be after notAfter.
///
/// # Errors
/// [`TimestampError::BeforeCertificateValidity`] or
/// [`TimestampError::AfterCertificateValidity`] for the first certificate,
/// leaf first, that the interval leaves.
pub(crate) fn check_signing_chain(
    timestamp: &Timestamp,
    chain: &[Certificate],
) -> Result<(), TimestampError> {
    let (earliest, latest) = (timestamp.earliest(), timestamp.latest());
    for cert in chain {
        if earliest < cert.not_before() {
            return Err(TimestampError::BeforeCertificateValidity {
                subject: cert.subject().to_owned(),
                not_before: cert.not_before(),
                earliest,
            });
        }
        if latest > cert.not_after() {
            return Err(TimestampError::AfterCertificateValidity {
                subject: cert.subject().to_owned(),
                not_after: cert.not_after(),
                latest,
            });
        }
    }
    Ok(())
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ± {} ms by {:?}",
            Rfc3339(self.gen_time),
            self.accuracy.as_millis(),
            self.tsa
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Option<SystemTime> {
        let mut tlv = vec![0x18, u8::try_from(s.len()).unwrap()];
        tlv.extend_from_slice(s.as_bytes());
        generalized_time(&tlv)
    }

    #[test]
    fn generalized_time_with_and_without_fractions() {
        let base = rfc3339::parse("2024-12-31T08:05:30Z").unwrap();
        assert_eq!(time("20241231080530Z"), Some(base));
        assert_eq!(
            time("20241231080530.009Z"),
            Some(base + Duration::from_millis(9))
        );
        assert_eq!(
            time("20241231080530.123456789Z"),
            Some(base + Duration::from_nanos(123_456_789))
        );
        for bad in [
            "20241231080530.090Z",
            "20241231080530.Z",
            "20241231080530",
            "2024123108053Z",
            "20241331080530Z",
            "20241231080530+0100",
            "20241231080530.1234567891Z",
        ] {
            assert_eq!(time(bad), None, "{bad}");
        }
    }

    #[test]
    fn accuracy_parts_add_up() {
        // seconds 2, millis 5, micros 7
        let acc = [
            0x30, 0x09, 0x02, 0x01, 0x02, 0x80, 0x01, 0x05, 0x81, 0x01, 0x07,
        ];
        assert_eq!(
            accuracy(&acc).unwrap(),
            Duration::from_secs(2) + Duration::from_millis(5) + Duration::from_micros(7)
        );
        // millis out of 1..=999
        let acc = [0x30, 0x04, 0x80, 0x02, 0x03, 0xe8];
        assert!(accuracy(&acc).is_err());
    }
}
