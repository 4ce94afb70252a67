//! Test-only minting of keys, certificates and Notary Project JWS envelopes.
//!
//! Certificates come from rcgen; JWS signatures are made here with p256 and
//! rsa (RSASSA-PSS, salt = hash length). The RSA key is a fixed test-only key
//! (`testdata/rsa2048-test-only.pk8.pem`), because generating one in a debug
//! build is slow.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::pkcs8::DecodePrivateKey as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rsa::rand_core::{CryptoRng, Error as RandError, RngCore};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256, Sha512};
use signature::Signer as _;

use super::notary::{HEADER_SIGNING_SCHEME, HEADER_SIGNING_TIME, PAYLOAD_CONTENT_TYPE};

const RSA_2048_TEST_KEY: &str = include_str!("testdata/rsa2048-test-only.pk8.pem");
const RSA_4096_TEST_KEY: &str = include_str!("testdata/rsa4096-test-only.pk8.pem");

/// A signing key usable both by rcgen (certificates) and for JWS.
pub(crate) struct Key {
    pub(crate) rcgen: KeyPair,
    jws: JwsKey,
}

enum JwsKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl Key {
    pub(crate) fn p256() -> Self {
        let rcgen = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let jws =
            JwsKey::P256(p256::ecdsa::SigningKey::from_pkcs8_der(rcgen.serialized_der()).unwrap());
        Self { rcgen, jws }
    }

    pub(crate) fn p384() -> Self {
        let rcgen = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let jws =
            JwsKey::P384(p384::ecdsa::SigningKey::from_pkcs8_der(rcgen.serialized_der()).unwrap());
        Self { rcgen, jws }
    }

    pub(crate) fn rsa2048() -> Self {
        Self::rsa(RSA_2048_TEST_KEY)
    }

    pub(crate) fn rsa4096() -> Self {
        Self::rsa(RSA_4096_TEST_KEY)
    }

    fn rsa(pem: &str) -> Self {
        let rcgen = KeyPair::from_pkcs8_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let jws = JwsKey::Rsa(Box::new(
            <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(pem).unwrap(),
        ));
        Self { rcgen, jws }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.jws {
            JwsKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            JwsKey::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            // PS512 for RSA-4096, PS256 for RSA-2048 (the spec's key-size mapping).
            JwsKey::Rsa(k) if k.size() >= 512 => {
                let hashed = Sha512::digest(msg);
                let pss = rsa::Pss::new_with_salt::<Sha512>(64);
                k.sign_with_rng(&mut CountingRng(7), pss, &hashed).unwrap()
            }
            JwsKey::Rsa(k) => {
                let hashed = Sha256::digest(msg);
                let pss = rsa::Pss::new_with_salt::<Sha256>(32);
                k.sign_with_rng(&mut CountingRng(7), pss, &hashed).unwrap()
            }
        }
    }
}

/// Deterministic RNG for PSS salts in tests (salts need not be secret).
struct CountingRng(u64);

impl RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u64().to_be_bytes()[0];
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for CountingRng {}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::LocalityName, "Seattle");
    dn.push(DnType::OrganizationName, "Notary");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Params of a CA (root or intermediate), valid 2020 → 2040.
pub(crate) fn ca_params(cn: &str, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    p
}

/// Params of a code-signing leaf, valid 2020 → 2040.
pub(crate) fn leaf_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    p
}

/// A key with its certificate.
pub(crate) struct Issued {
    pub(crate) cert: rcgen::Certificate,
    pub(crate) key: Key,
}

impl Issued {
    pub(crate) fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    pub(crate) fn certificate(&self) -> crate::verify::x509::Certificate {
        crate::verify::x509::Certificate::from_der(self.cert.der()).unwrap()
    }
}

pub(crate) fn self_signed(params: CertificateParams, key: Key) -> Issued {
    let cert = params.self_signed(&key.rcgen).unwrap();
    Issued { cert, key }
}

pub(crate) fn issue(params: CertificateParams, key: Key, issuer: &Issued) -> Issued {
    let cert = params
        .signed_by(&key.rcgen, &issuer.cert, &issuer.key.rcgen)
        .unwrap();
    Issued { cert, key }
}

/// A notary.x509 protected header for `alg`, signed 2021-01-01.
pub(crate) fn header(alg: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "alg": alg,
        "cty": PAYLOAD_CONTENT_TYPE,
        "crit": [HEADER_SIGNING_SCHEME],
        HEADER_SIGNING_SCHEME: "notary.x509",
        HEADER_SIGNING_TIME: "2021-01-01T00:00:00Z",
    }) else {
        unreachable!()
    };
    map
}

pub(crate) const TARGET_DIGEST: &str =
    "sha256:73c803930ea3ba1e54bc25c2bdc53edd0284c62ed651fe7b00369da519a3c333";

pub(crate) fn payload() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "targetArtifact": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": TARGET_DIGEST,
            "size": 16724,
            "annotations": {"io.wabbit-networks.buildId": "123"}
        }
    }))
    .unwrap()
}

/// A flattened JWS envelope signed by `signer` with the given chain.
pub(crate) fn envelope(
    header: &Map<String, Value>,
    payload: &[u8],
    signer: &Key,
    x5c: &[Vec<u8>],
) -> Vec<u8> {
    envelope_signed_by(header, payload, &|msg| signer.sign(msg), x5c)
}

/// Like [`envelope`], with any signing function (for keys rcgen cannot hold).
pub(crate) fn envelope_signed_by(
    header: &Map<String, Value>,
    payload: &[u8],
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
    x5c: &[Vec<u8>],
) -> Vec<u8> {
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let signature = URL_SAFE_NO_PAD.encode(sign(format!("{protected}.{payload}").as_bytes()));
    serde_json::to_vec(&json!({
        "payload": payload,
        "protected": protected,
        "header": {
            "x5c": x5c.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
            "io.cncf.notary.signingAgent": "pullgate-tests/0"
        },
        "signature": signature,
    }))
    .unwrap()
}

/// A notary.x509 COSE protected header for COSE `alg`, signed 2021-01-01
/// (epoch 1609459200), as `(label, value)` pairs in the order written.
pub(crate) fn cose_header(alg: i64) -> Vec<(ciborium::Value, ciborium::Value)> {
    use ciborium::Value;
    vec![
        (Value::from(1), Value::from(alg)),
        (
            Value::from(2),
            Value::Array(vec![Value::from(HEADER_SIGNING_SCHEME)]),
        ),
        (Value::from(3), Value::from(PAYLOAD_CONTENT_TYPE)),
        (
            Value::from(HEADER_SIGNING_SCHEME),
            Value::from("notary.x509"),
        ),
        (
            Value::from(HEADER_SIGNING_TIME),
            Value::Tag(1, Box::new(Value::from(1_609_459_200_i64))),
        ),
    ]
}

/// Sets (or adds) one COSE header entry.
pub(crate) fn cose_set(
    header: &mut Vec<(ciborium::Value, ciborium::Value)>,
    label: ciborium::Value,
    value: ciborium::Value,
) {
    match header.iter_mut().find(|(l, _)| *l == label) {
        Some(entry) => entry.1 = value,
        None => header.push((label, value)),
    }
}

/// Removes one COSE header entry.
pub(crate) fn cose_remove(
    header: &mut Vec<(ciborium::Value, ciborium::Value)>,
    label: &ciborium::Value,
) {
    header.retain(|(l, _)| l != label);
}

pub(crate) fn cbor(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

/// A COSE_Sign1_Tagged envelope signed by `signer`, x5chain unprotected.
pub(crate) fn cose_envelope(
    protected: &[(ciborium::Value, ciborium::Value)],
    payload: &[u8],
    signer: &Key,
    x5chain: &[Vec<u8>],
) -> Vec<u8> {
    cose_envelope_with(
        protected,
        payload,
        &|msg| signer.sign(msg),
        x5chain,
        Vec::new(),
    )
}

/// Like [`cose_envelope`], with any signing function and extra unprotected
/// entries.
pub(crate) fn cose_envelope_with(
    protected: &[(ciborium::Value, ciborium::Value)],
    payload: &[u8],
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
    x5chain: &[Vec<u8>],
    extra_unprotected: Vec<(ciborium::Value, ciborium::Value)>,
) -> Vec<u8> {
    use ciborium::Value;
    let protected = cbor(&Value::Map(protected.to_vec()));
    let tbs = cbor(&Value::Array(vec![
        Value::from("Signature1"),
        Value::Bytes(protected.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]));
    let mut unprotected = vec![
        (
            Value::from(33),
            Value::Array(x5chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
        ),
        (
            Value::from("io.cncf.notary.signingAgent"),
            Value::from("pullgate-tests/0"),
        ),
    ];
    unprotected.extend(extra_unprotected);
    cbor(&Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(unprotected),
            Value::Bytes(payload.to_vec()),
            Value::Bytes(sign(&tbs)),
        ])),
    ))
}

// ---------------------------------------------------------------------------
// RFC 3161 timestamp tokens (CMS SignedData over a TSTInfo), assembled as
// DER by hand so that tests can also make them wrong in one place.

fn der_tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn der_oid(oid: &str) -> Vec<u8> {
    use der::Encode as _;
    const_oid::ObjectIdentifier::new_unwrap(oid)
        .to_der()
        .unwrap()
}

fn der_seq(parts: &[&[u8]]) -> Vec<u8> {
    der_tlv(0x30, parts)
}

const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";

/// Params of a timestamping leaf: digitalSignature, and exactly one EKU,
/// timeStamping, critical (RFC 3161 §2.3), valid 2020 → 2040.
pub(crate) fn tsa_params(cn: &str) -> CertificateParams {
    let mut p = leaf_params(cn);
    p.extended_key_usages = Vec::new();
    // SEQUENCE { id-kp-timeStamping }
    let mut eku = rcgen::CustomExtension::from_oid_content(
        &[2, 5, 29, 37],
        der_seq(&[&der_oid("1.3.6.1.5.5.7.3.8")]),
    );
    eku.set_criticality(true);
    p.custom_extensions = vec![eku];
    p
}

/// What to put in (or get wrong in) a minted timestamp token.
pub(crate) struct TokenSpec<'a> {
    /// The TSA leaf (a P-256 key) and the certificates the token carries.
    pub(crate) tsa: &'a Issued,
    pub(crate) certificates: Vec<Vec<u8>>,
    /// The bytes timestamped (the envelope signature).
    pub(crate) stamped: &'a [u8],
    /// `YYYYMMDDHHMMSSZ`
    pub(crate) gen_time: &'a str,
    pub(crate) accuracy_seconds: Option<u8>,
    pub(crate) content_type: &'a str,
    pub(crate) corrupt_message_digest: bool,
    pub(crate) corrupt_cert_hash: bool,
    pub(crate) corrupt_signature: bool,
}

impl<'a> TokenSpec<'a> {
    pub(crate) fn new(tsa: &'a Issued, stamped: &'a [u8], gen_time: &'a str) -> Self {
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
pub(crate) fn timestamp_token(spec: &TokenSpec<'_>) -> Vec<u8> {
    use der::{Decode as _, Encode as _};
    let sha256 = der_seq(&[&der_oid(OID_SHA256)]);
    let accuracy = spec
        .accuracy_seconds
        .map(|s| der_seq(&[&der_tlv(0x02, &[&[s]])]))
        .unwrap_or_default();
    let tst = der_seq(&[
        &der_tlv(0x02, &[&[1]]),
        &der_oid("1.2.3.4.1"),
        &der_seq(&[&sha256, &der_tlv(0x04, &[&Sha256::digest(spec.stamped)])]),
        &der_tlv(0x02, &[&[0x2a]]),
        &der_tlv(0x18, &[spec.gen_time.as_bytes()]),
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
        der_seq(&[
            &der_oid("1.2.840.113549.1.9.3"),
            &der_tlv(0x31, &[&der_oid(spec.content_type)]),
        ]),
        der_seq(&[
            &der_oid("1.2.840.113549.1.9.4"),
            &der_tlv(0x31, &[&der_tlv(0x04, &[&digest])]),
        ]),
        der_seq(&[
            &der_oid("1.2.840.113549.1.9.16.2.47"),
            &der_tlv(
                0x31,
                &[&der_seq(&[&der_seq(&[&der_seq(&[&der_tlv(
                    0x04,
                    &[&cert_hash],
                )])])])],
            ),
        ]),
    ];
    let attr_refs: Vec<&[u8]> = attrs.iter().map(Vec::as_slice).collect();
    let signed_set = der_tlv(0x31, &attr_refs);
    let JwsKey::P256(key) = &spec.tsa.key.jws else {
        panic!("minted TSAs use P-256 keys")
    };
    let sig: p256::ecdsa::Signature = key.sign(&signed_set);
    let mut sig = sig.to_der().as_bytes().to_vec();
    if spec.corrupt_signature {
        let last = sig.len() - 1;
        sig[last] ^= 1;
    }
    let tsa_cert = x509_cert::Certificate::from_der(spec.tsa.cert.der()).unwrap();
    let issuer = tsa_cert.tbs_certificate.issuer.to_der().unwrap();
    let serial = tsa_cert.tbs_certificate.serial_number.to_der().unwrap();
    let signer_info = der_seq(&[
        &der_tlv(0x02, &[&[1]]),
        &der_seq(&[&issuer, &serial]),
        &sha256,
        &der_tlv(0xa0, &attr_refs),
        &der_seq(&[&der_oid("1.2.840.10045.4.3.2")]),
        &der_tlv(0x04, &[&sig]),
    ]);
    let certs: Vec<&[u8]> = spec.certificates.iter().map(Vec::as_slice).collect();
    let signed_data = der_seq(&[
        &der_tlv(0x02, &[&[3]]),
        &der_tlv(0x31, &[&sha256]),
        &der_seq(&[
            &der_oid(spec.content_type),
            &der_tlv(0xa0, &[&der_tlv(0x04, &[&tst])]),
        ]),
        &der_tlv(0xa0, &certs),
        &der_tlv(0x31, &[&signer_info]),
    ]);
    der_seq(&[
        &der_oid("1.2.840.113549.1.7.2"),
        &der_tlv(0xa0, &[&signed_data]),
    ])
}

/// A test PKI shaped like AWS Signer's: root, intermediate, regional CA and
/// leaf, all P-384 (the leaf signs ES384), with AWS Signer's subjects.
pub(crate) struct AwsSignerPki {
    pub(crate) root: Issued,
    pub(crate) intermediate: Issued,
    pub(crate) regional: Issued,
    pub(crate) leaf: Issued,
}

impl AwsSignerPki {
    /// The chain as `x5c` carries it, leaf first.
    pub(crate) fn x5c(&self) -> Vec<Vec<u8>> {
        vec![
            self.leaf.der(),
            self.regional.der(),
            self.intermediate.der(),
            self.root.der(),
        ]
    }
}

fn aws_dn(cn: &str, ou: &str, locality: bool) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    if locality {
        dn.push(DnType::LocalityName, "Seattle");
    }
    dn.push(DnType::OrganizationName, "AWS");
    dn.push(DnType::OrganizationalUnitName, ou);
    dn.push(DnType::CommonName, cn);
    dn
}

/// An AWS Signer-shaped PKI whose leaf is valid from `leaf_from` to `leaf_until`
/// (`(year, month, day)`); the CAs are valid 2020 → 2040.
pub(crate) fn aws_signer_pki(leaf_from: (i32, u8, u8), leaf_until: (i32, u8, u8)) -> AwsSignerPki {
    let mut root_params = ca_params("x", None);
    root_params.distinguished_name = aws_dn(
        "Test AWS Signer Code Signing Root CA G1",
        "Cryptography",
        false,
    );
    let root = self_signed(root_params, Key::p384());
    let mut int_params = ca_params("x", Some(1));
    int_params.distinguished_name = aws_dn(
        "Test AWS Signer Code Signing Int CA G1",
        "Cryptography",
        false,
    );
    let intermediate = issue(int_params, Key::p384(), &root);
    let mut reg_params = ca_params("x", Some(0));
    reg_params.distinguished_name = aws_dn(
        "Test AWS Signer us-west-2 Code Signing CA G1",
        "Cryptography",
        false,
    );
    let regional = issue(reg_params, Key::p384(), &intermediate);
    let mut leaf = leaf_params("x");
    leaf.distinguished_name = aws_dn("AWS Signer", "AWS Cryptography", true);
    leaf.not_before = rcgen::date_time_ymd(leaf_from.0, leaf_from.1, leaf_from.2);
    leaf.not_after = rcgen::date_time_ymd(leaf_until.0, leaf_until.1, leaf_until.2);
    let leaf = issue(leaf, Key::p384(), &regional);
    AwsSignerPki {
        root,
        intermediate,
        regional,
        leaf,
    }
}

/// The signed-attribute set an AWS Signer signature carries: ES384,
/// `notary.x509.signingAuthority` with `authenticSigningTime` and `expiry`,
/// the verification plugin and its minimum version, and the plugin's two
/// extended attributes, every one but `alg`/`cty`/`crit` listed in `crit`.
pub(crate) fn aws_signer_header(
    profile_version: &str,
    job: &str,
    signed_at: &str,
    expiry: &str,
) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "alg": "ES384",
        "cty": PAYLOAD_CONTENT_TYPE,
        "crit": [
            HEADER_SIGNING_SCHEME,
            "io.cncf.notary.authenticSigningTime",
            "io.cncf.notary.expiry",
            "io.cncf.notary.verificationPlugin",
            "io.cncf.notary.verificationPluginMinVersion",
            "com.amazonaws.signer.signingProfileVersion",
            "com.amazonaws.signer.signingJob",
        ],
        HEADER_SIGNING_SCHEME: "notary.x509.signingAuthority",
        "io.cncf.notary.authenticSigningTime": signed_at,
        "io.cncf.notary.expiry": expiry,
        "io.cncf.notary.verificationPlugin": "com.amazonaws.signer.notation.plugin",
        "io.cncf.notary.verificationPluginMinVersion": "1.0.298",
        "com.amazonaws.signer.signingProfileVersion": profile_version,
        "com.amazonaws.signer.signingJob": job,
    }) else {
        unreachable!()
    };
    map
}
