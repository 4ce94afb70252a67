//! RFC 3161 timestamp tokens: CMS SignedData over a TSTInfo, assembled as
//! DER by hand so that a test can also make them wrong in one place.

use anyhow::{Context as _, Result};
use der::{Decode as _, Encode as _};
use sha2::{Digest as _, Sha256};
use signature::Signer as _;

use crate::asn1::{oid, seq, tlv};
use crate::cert::Issued;

const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
/// `id-ct-TSTInfo`, the content type a token's signed content must have.
pub const OID_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";

/// What to put in (or get wrong in) a minted timestamp token.
#[derive(Debug)]
pub struct TokenSpec<'a> {
    /// The TSA leaf (a P-256 key; see [`crate::tsa_params`]).
    pub tsa: &'a Issued,
    /// The certificates the token carries (DER).
    pub certificates: Vec<Vec<u8>>,
    /// The bytes timestamped (the envelope signature).
    pub stamped: &'a [u8],
    /// `YYYYMMDDHHMMSSZ`
    pub gen_time: &'a str,
    /// TSTInfo `accuracy.seconds`; `None` leaves `accuracy` out.
    pub accuracy_seconds: Option<u8>,
    /// `eContentType` and the `contentType` signed attribute (dotted OID).
    pub content_type: &'a str,
    /// Flips a bit of the `messageDigest` signed attribute.
    pub corrupt_message_digest: bool,
    /// Flips a bit of the `signingCertificateV2` hash.
    pub corrupt_cert_hash: bool,
    /// Flips a bit of the signature.
    pub corrupt_signature: bool,
}

impl<'a> TokenSpec<'a> {
    /// A well-formed token by `tsa` over `stamped` at `gen_time`, carrying the
    /// TSA's certificate, accuracy one second.
    pub fn new(tsa: &'a Issued, stamped: &'a [u8], gen_time: &'a str) -> Self {
        Self {
            tsa,
            certificates: vec![tsa.der()],
            stamped,
            gen_time,
            accuracy_seconds: Some(1),
            content_type: OID_TST_INFO,
            corrupt_message_digest: false,
            corrupt_cert_hash: false,
            corrupt_signature: false,
        }
    }
}

/// A DER `TimeStampToken` signed by `spec.tsa` (ECDSA P-256 / SHA-256).
///
/// # Errors
/// The TSA's key is not P-256, or its certificate does not re-encode.
pub fn timestamp_token(spec: &TokenSpec<'_>) -> Result<Vec<u8>> {
    let sha256 = seq(&[&oid(OID_SHA256)]);
    let accuracy = spec
        .accuracy_seconds
        .map(|s| seq(&[&tlv(0x02, &[&[s]])]))
        .unwrap_or_default();
    let tst = seq(&[
        &tlv(0x02, &[&[1]]),
        &oid("1.2.3.4.1"),
        &seq(&[&sha256, &tlv(0x04, &[&Sha256::digest(spec.stamped)])]),
        &tlv(0x02, &[&[0x2a]]),
        &tlv(0x18, &[spec.gen_time.as_bytes()]),
        &accuracy,
    ]);
    let mut digest = Sha256::digest(&tst).to_vec();
    if spec.corrupt_message_digest {
        digest[0] ^= 1;
    }
    let mut cert_hash = Sha256::digest(spec.tsa.der()).to_vec();
    if spec.corrupt_cert_hash {
        cert_hash[0] ^= 1;
    }
    let attrs = [
        seq(&[
            &oid("1.2.840.113549.1.9.3"),
            &tlv(0x31, &[&oid(spec.content_type)]),
        ]),
        seq(&[
            &oid("1.2.840.113549.1.9.4"),
            &tlv(0x31, &[&tlv(0x04, &[&digest])]),
        ]),
        seq(&[
            &oid("1.2.840.113549.1.9.16.2.47"),
            &tlv(
                0x31,
                &[&seq(&[&seq(&[&seq(&[&tlv(0x04, &[&cert_hash])])])])],
            ),
        ]),
    ];
    let attr_refs: Vec<&[u8]> = attrs.iter().map(Vec::as_slice).collect();
    let signed_set = tlv(0x31, &attr_refs);
    let key = spec
        .tsa
        .key
        .p256_signing_key()
        .context("minted TSAs use P-256 keys")?;
    let sig: p256::ecdsa::Signature = key.sign(&signed_set);
    let mut sig = sig.to_der().as_bytes().to_vec();
    if spec.corrupt_signature {
        if let Some(last) = sig.last_mut() {
            *last ^= 1;
        }
    }
    let tsa_cert = x509_cert::Certificate::from_der(spec.tsa.cert.der())?;
    let issuer = tsa_cert.tbs_certificate.issuer.to_der()?;
    let serial = tsa_cert.tbs_certificate.serial_number.to_der()?;
    let signer_info = seq(&[
        &tlv(0x02, &[&[1]]),
        &seq(&[&issuer, &serial]),
        &sha256,
        &tlv(0xa0, &attr_refs),
        &seq(&[&oid("1.2.840.10045.4.3.2")]),
        &tlv(0x04, &[&sig]),
    ]);
    let certs: Vec<&[u8]> = spec.certificates.iter().map(Vec::as_slice).collect();
    let signed_data = seq(&[
        &tlv(0x02, &[&[3]]),
        &tlv(0x31, &[&sha256]),
        &seq(&[&oid(spec.content_type), &tlv(0xa0, &[&tlv(0x04, &[&tst])])]),
        &tlv(0xa0, &certs),
        &tlv(0x31, &[&signer_info]),
    ]);
    Ok(seq(&[
        &oid("1.2.840.113549.1.7.2"),
        &tlv(0xa0, &[&signed_data]),
    ]))
}
