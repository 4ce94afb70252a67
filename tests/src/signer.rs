//! Test-only Notary Project signing: a PKI (root CA and code-signing leaf), a
//! JWS envelope signer, the push of a signature next to its image (referrers
//! API or referrers tag schema), and notation trust-store and trust-policy
//! files. pullgate itself never signs; this exists so tests can mint
//! signatures whose every field they control.
//!
//! Specs followed:
//! - envelope: notaryproject/specifications `specs/signature-envelope-jws.md`;
//! - signature manifest: as notation (notation-go `registry/repository.go`)
//!   pushes it: an OCI image manifest whose config is the 2-byte `{}` blob
//!   with media type `application/vnd.cncf.notary.signature`, one
//!   `application/jose+json` layer, a `subject`, and the
//!   `io.cncf.notary.x509chain.thumbprint#S256` annotation;
//! - referrers tag schema: OCI distribution-spec, "Pushing Manifests with Subject".

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::distribution::{sha256_digest, Registry};
use crate::image::{Descriptor, PushedImage, OCI_INDEX, OCI_MANIFEST};

/// Artifact type (and notation's config media type) of a Notary Project signature.
pub const NOTARY_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS envelope.
pub const JWS_ENVELOPE: &str = "application/jose+json";
/// `cty` of the JWS payload.
pub const NOTARY_PAYLOAD: &str = "application/vnd.cncf.notary.payload.v1+json";
/// Annotation listing the SHA-256 thumbprints of the `x5c` certificates.
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
/// OCI empty descriptor media type (`{}`), for artifact-type-style manifests.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Signing time written by [`TestPki::sign_jws`]: inside the test
/// certificates' validity, fixed so envelopes are reproducible.
pub const DEFAULT_SIGNING_TIME: &str = "2025-06-01T00:00:00Z";

/// Key type of both the test root and its leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256; the envelope is `ES256`.
    EcdsaP256,
    /// RSA-3072; the envelope is `PS256` (RSASSA-PSS, SHA-256, salt 32).
    /// Keys come from a fixed pool of pre-generated keys, in rotation.
    Rsa3072,
}

enum SigningKey {
    Ec(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ec(_) => "SigningKey::Ec(..)",
            Self::Rsa(_) => "SigningKey::Rsa(..)",
        })
    }
}

/// A key pair in both forms: rcgen's (to issue certificates) and the signing
/// crate's (to sign envelopes).
fn generate_key(key_type: KeyType) -> Result<(KeyPair, SigningKey)> {
    match key_type {
        KeyType::EcdsaP256 => {
            use p256::pkcs8::DecodePrivateKey as _;
            let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let sk = p256::ecdsa::SigningKey::from_pkcs8_der(kp.serialized_der())
                .map_err(|e| anyhow::anyhow!("re-reading generated P-256 key: {e}"))?;
            Ok((kp, SigningKey::Ec(sk)))
        }
        KeyType::Rsa3072 => {
            use rsa::pkcs8::DecodePrivateKey as _;
            let n = RSA_POOL_NEXT.fetch_add(1, Ordering::Relaxed);
            let pem = RSA3072_POOL[n % RSA3072_POOL.len()];
            let sk = rsa::RsaPrivateKey::from_pkcs8_pem(pem)?;
            let kp = KeyPair::from_pkcs8_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256)?;
            Ok((kp, SigningKey::Rsa(Box::new(sk))))
        }
    }
}

/// Pre-generated RSA-3072 keys (see `fixtures/rsa3072/README.md`): the `rsa`
/// crate needs ~25 s per 3072-bit key in a debug build.
const RSA3072_POOL: [&str; 6] = [
    include_str!("../fixtures/rsa3072/key1.pem"),
    include_str!("../fixtures/rsa3072/key2.pem"),
    include_str!("../fixtures/rsa3072/key3.pem"),
    include_str!("../fixtures/rsa3072/key4.pem"),
    include_str!("../fixtures/rsa3072/key5.pem"),
    include_str!("../fixtures/rsa3072/key6.pem"),
];

/// Next key of [`RSA3072_POOL`] to hand out.
static RSA_POOL_NEXT: AtomicUsize = AtomicUsize::new(0);

/// A positive random 16-byte serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from(bytes.to_vec())
}

fn notary_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::OrganizationName, "Notary");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Options of one JWS envelope, for tests that need unusual ones.
#[derive(Debug, Clone)]
pub struct JwsOptions {
    /// `io.cncf.notary.signingTime` (RFC 3339, no fractional seconds).
    pub signing_time: String,
    /// `io.cncf.notary.expiry`, added to `crit` when set.
    pub expiry: Option<String>,
    /// `io.cncf.notary.signingAgent` (unprotected).
    pub signing_agent: String,
}

impl Default for JwsOptions {
    fn default() -> Self {
        Self {
            signing_time: DEFAULT_SIGNING_TIME.to_owned(),
            expiry: None,
            signing_agent: "pullgate-tests".to_owned(),
        }
    }
}

/// A root CA and a code-signing leaf it issued, both valid 2020–2120.
#[derive(Debug)]
pub struct TestPki {
    key_type: KeyType,
    common_name: String,
    root_der: Vec<u8>,
    root_pem: String,
    leaf_der: Vec<u8>,
    leaf_spki: Vec<u8>,
    leaf_key: SigningKey,
    leaf_serial: SerialNumber,
    /// The root's parameters and key, to sign CRLs ([`TestPki::crl`]).
    root_params: CertificateParams,
    root_key: KeyPair,
}

impl TestPki {
    /// An ECDSA P-256 PKI whose leaf is `CN=<common_name>,O=Notary,ST=WA,C=US`.
    ///
    /// # Errors
    /// Key generation or certificate encoding failed.
    pub fn new(common_name: &str) -> Result<Self> {
        Self::with_key_type(common_name, KeyType::EcdsaP256)
    }

    /// A PKI of `key_type`: root `CN=<common_name> Root,O=Notary,ST=WA,C=US`
    /// (CA:true, keyCertSign), leaf `CN=<common_name>,O=Notary,ST=WA,C=US`
    /// (CA:false, digitalSignature, EKU codeSigning).
    ///
    /// # Errors
    /// Key generation or certificate encoding failed.
    pub fn with_key_type(common_name: &str, key_type: KeyType) -> Result<Self> {
        Self::build(common_name, key_type, None)
    }

    /// As [`TestPki::new`] (ECDSA P-256), with a CRL distribution point
    /// extension naming `crl_url` in the leaf, so verifiers check the leaf
    /// against the CRL served there ([`TestPki::crl`]).
    ///
    /// # Errors
    /// Key generation or certificate encoding failed.
    pub fn with_crl_url(common_name: &str, crl_url: &str) -> Result<Self> {
        Self::build(common_name, KeyType::EcdsaP256, Some(crl_url))
    }

    fn build(common_name: &str, key_type: KeyType, crl_url: Option<&str>) -> Result<Self> {
        let (root_kp, _) = generate_key(key_type)?;
        let mut root = CertificateParams::default();
        root.distinguished_name = notary_dn(&format!("{common_name} Root"));
        root.serial_number = Some(random_serial());
        root.not_before = rcgen::date_time_ymd(2020, 1, 1);
        root.not_after = rcgen::date_time_ymd(2120, 1, 1);
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let root_cert = root.clone().self_signed(&root_kp)?;

        let (leaf_kp, leaf_key) = generate_key(key_type)?;
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = notary_dn(common_name);
        let leaf_serial = random_serial();
        leaf.serial_number = Some(leaf_serial.clone());
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2120, 1, 1);
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        leaf.use_authority_key_identifier_extension = true;
        if let Some(url) = crl_url {
            leaf.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.to_owned()],
            }];
        }
        let leaf_cert = leaf.signed_by(&leaf_kp, &root_cert, &root_kp)?;

        Ok(Self {
            key_type,
            common_name: common_name.to_owned(),
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            leaf_der: leaf_cert.der().to_vec(),
            leaf_spki: leaf_kp.public_key_der(),
            leaf_key,
            leaf_serial,
            root_params: root,
            root_key: root_kp,
        })
    }

    /// A DER CRL signed by the root: thisUpdate 2025-01-01, nextUpdate
    /// 2100-01-01 (fixed, so a verifier may cache it), CRL number 1, no
    /// issuing distribution point. With `revoked`, it lists the leaf's
    /// serial (revoked 2025-01-01, reason keyCompromise); otherwise it lists
    /// nothing.
    ///
    /// # Errors
    /// Encoding or signing the CRL failed.
    pub fn crl(&self, revoked: bool) -> Result<Vec<u8>> {
        let revoked_certs = if revoked {
            vec![RevokedCertParams {
                serial_number: self.leaf_serial.clone(),
                revocation_time: rcgen::date_time_ymd(2025, 1, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }]
        } else {
            Vec::new()
        };
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        // rcgen signs with an issuer `Certificate`; re-issuing the root from
        // the same parameters and key gives the same name and key.
        let issuer = self.root_params.clone().self_signed(&self.root_key)?;
        Ok(params.signed_by(&issuer, &self.root_key)?.der().to_vec())
    }

    /// The key type of root and leaf.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// JWS `alg` of envelopes this PKI signs.
    pub fn alg(&self) -> &'static str {
        match self.key_type {
            KeyType::EcdsaP256 => "ES256",
            KeyType::Rsa3072 => "PS256",
        }
    }

    /// The leaf's subject as notation writes it: `CN=<cn>,O=Notary,ST=WA,C=US`.
    pub fn leaf_subject(&self) -> String {
        format!("CN={},O=Notary,ST=WA,C=US", self.common_name)
    }

    /// The trust-policy identity naming the leaf: `x509.subject:<subject>`.
    pub fn trusted_identity(&self) -> String {
        format!("x509.subject:{}", self.leaf_subject())
    }

    /// Root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Leaf certificate, DER.
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// The leaf's SubjectPublicKeyInfo, DER.
    pub fn leaf_public_key_der(&self) -> &[u8] {
        &self.leaf_spki
    }

    /// The `x5c` chain, leaf first: `[leaf, root]` (DER).
    pub fn chain(&self) -> Vec<&[u8]> {
        vec![&self.leaf_der, &self.root_der]
    }

    /// Lowercase hex SHA-256 of each `x5c` certificate, leaf first.
    pub fn thumbprints(&self) -> Vec<String> {
        self.chain()
            .iter()
            .map(|c| hex::encode(Sha256::digest(c)))
            .collect()
    }

    /// Writes the root as `<root>/x509/ca/<store_name>/root.crt` (PEM), the
    /// notation trust-store layout; returns the file's path.
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn write_trust_store(&self, root: &Path, store_name: &str) -> Result<PathBuf> {
        let dir = root.join("x509").join("ca").join(store_name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("root.crt");
        std::fs::write(&path, &self.root_pem)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A flattened JWS envelope signing `target`, with [`JwsOptions::default`].
    ///
    /// # Errors
    /// Signing failed.
    pub fn sign_jws(&self, target: &Descriptor) -> Result<Vec<u8>> {
        self.sign_jws_with(target, &JwsOptions::default())
    }

    /// A flattened JWS envelope (JWS JSON serialization) signing the Notary
    /// payload `{"targetArtifact": target}`.
    ///
    /// # Errors
    /// Signing failed.
    pub fn sign_jws_with(&self, target: &Descriptor, options: &JwsOptions) -> Result<Vec<u8>> {
        let payload = serde_json::to_vec(&json!({ "targetArtifact": target.to_json() }))?;
        self.sign_jws_payload(&payload, options)
    }

    /// A flattened JWS envelope over arbitrary `payload` bytes (for tests of
    /// malformed payloads).
    ///
    /// # Errors
    /// Signing failed.
    pub fn sign_jws_payload(&self, payload: &[u8], options: &JwsOptions) -> Result<Vec<u8>> {
        // signature-envelope-jws.md, "Protected Headers": `crit` "MUST contain
        // `io.cncf.notary.signingScheme` [...] and optionally contain [...]
        // `io.cncf.notary.expiry` if these critical headers are present".
        let mut protected = json!({
            "alg": self.alg(),
            "cty": NOTARY_PAYLOAD,
            "crit": ["io.cncf.notary.signingScheme"],
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": options.signing_time,
        });
        if let Some(expiry) = &options.expiry {
            protected["io.cncf.notary.expiry"] = json!(expiry);
            protected["crit"] = json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]);
        }
        let protected_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&protected)?);
        let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
        // "JWS Signing Input": ASCII(BASE64URL(UTF8(ProtectedHeaders)) '.' BASE64URL(JWSPayload))
        let signing_input = format!("{protected_b64}.{payload_b64}");
        let signature = self.sign_raw(signing_input.as_bytes())?;
        let envelope = json!({
            "payload": payload_b64,
            "protected": protected_b64,
            "header": {
                "x5c": self.chain().iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
                "io.cncf.notary.signingAgent": options.signing_agent,
            },
            "signature": URL_SAFE_NO_PAD.encode(signature),
        });
        Ok(serde_json::to_vec(&envelope)?)
    }

    /// Signs `message` with the leaf key: ES256 gives raw `r||s` (64 bytes),
    /// PS256 gives RSASSA-PSS with SHA-256 and a 32-byte salt.
    ///
    /// # Errors
    /// The RSA signer failed.
    pub fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.leaf_key {
            SigningKey::Ec(sk) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = sk.sign(message);
                Ok(sig.to_bytes().to_vec())
            }
            SigningKey::Rsa(sk) => {
                use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
                // BlindedSigningKey::new uses a salt as long as the digest (32).
                let signer = rsa::pss::BlindedSigningKey::<Sha256>::new((**sk).clone());
                let sig = signer.try_sign_with_rng(&mut rand::thread_rng(), message)?;
                Ok(sig.to_vec())
            }
        }
    }
}

/// A test PKI shaped like AWS Signer's (root, intermediate, regional CA,
/// leaf `CN=AWS Signer,OU=AWS Cryptography,O=AWS,L=Seattle,ST=WA,C=US`; all
/// P-384, valid 2020–2120) and the JWS envelopes AWS Signer makes: ES384,
/// `notary.x509.signingAuthority`, the `com.amazonaws.signer.notation.plugin`
/// verification plugin and its two extended attributes, all critical.
#[derive(Debug)]
pub struct AwsSignerPki {
    chain: Vec<Vec<u8>>,
    root_pem: String,
    leaf_key: p384::ecdsa::SigningKey,
}

fn aws_dn(cn: &str, ou: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::OrganizationName, "AWS");
    dn.push(DnType::OrganizationalUnitName, ou);
    dn.push(DnType::CommonName, cn);
    dn
}

impl AwsSignerPki {
    /// A fresh PKI.
    ///
    /// # Errors
    /// Key generation or certificate encoding failed.
    pub fn new() -> Result<Self> {
        use p384::pkcs8::DecodePrivateKey as _;
        let key = || KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384);
        let ca = |cn: &str, path_len: Option<u8>| {
            let mut p = CertificateParams::default();
            p.distinguished_name = aws_dn(cn, "Cryptography");
            p.serial_number = Some(random_serial());
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2120, 1, 1);
            p.is_ca = IsCa::Ca(match path_len {
                Some(n) => BasicConstraints::Constrained(n),
                None => BasicConstraints::Unconstrained,
            });
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let root_key = key()?;
        let root = ca("Test AWS Signer Code Signing Root CA G1", None).self_signed(&root_key)?;
        let int_key = key()?;
        let int = ca("Test AWS Signer Code Signing Int CA G1", Some(1))
            .signed_by(&int_key, &root, &root_key)?;
        let reg_key = key()?;
        let reg = ca("Test AWS Signer us-west-2 Code Signing CA G1", Some(0))
            .signed_by(&reg_key, &int, &int_key)?;
        let leaf_key = key()?;
        let mut leaf = CertificateParams::default();
        let mut dn = aws_dn("AWS Signer", "AWS Cryptography");
        dn.push(DnType::LocalityName, "Seattle");
        leaf.distinguished_name = dn;
        leaf.serial_number = Some(random_serial());
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2120, 1, 1);
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let leaf_cert = leaf.signed_by(&leaf_key, &reg, &reg_key)?;
        let signing = p384::ecdsa::SigningKey::from_pkcs8_der(leaf_key.serialized_der())
            .map_err(|e| anyhow::anyhow!("re-reading generated P-384 key: {e}"))?;
        Ok(Self {
            chain: vec![
                leaf_cert.der().to_vec(),
                reg.der().to_vec(),
                int.der().to_vec(),
                root.der().to_vec(),
            ],
            root_pem: root.pem(),
            leaf_key: signing,
        })
    }

    /// Writes the root as `<root>/x509/signingAuthority/<store_name>/root.crt`.
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn write_trust_store(&self, root: &Path, store_name: &str) -> Result<PathBuf> {
        let dir = root.join("x509").join("signingAuthority").join(store_name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("root.crt");
        std::fs::write(&path, &self.root_pem)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// An AWS Signer-style JWS envelope signing `target`, made by signing job
    /// `job` of profile version `profile_version` at `signed_at` (RFC 3339),
    /// expiring 2100-01-01.
    ///
    /// # Errors
    /// Encoding failed.
    pub fn sign_jws(
        &self,
        target: &Descriptor,
        profile_version: &str,
        job: &str,
        signed_at: &str,
    ) -> Result<Vec<u8>> {
        use p384::ecdsa::signature::Signer as _;
        let payload = serde_json::to_vec(&json!({ "targetArtifact": target.to_json() }))?;
        let protected = json!({
            "alg": "ES384",
            "cty": NOTARY_PAYLOAD,
            "crit": [
                "io.cncf.notary.signingScheme",
                "io.cncf.notary.authenticSigningTime",
                "io.cncf.notary.expiry",
                "io.cncf.notary.verificationPlugin",
                "io.cncf.notary.verificationPluginMinVersion",
                "com.amazonaws.signer.signingProfileVersion",
                "com.amazonaws.signer.signingJob",
            ],
            "io.cncf.notary.signingScheme": "notary.x509.signingAuthority",
            "io.cncf.notary.authenticSigningTime": signed_at,
            "io.cncf.notary.expiry": "2100-01-01T00:00:00Z",
            "io.cncf.notary.verificationPlugin": "com.amazonaws.signer.notation.plugin",
            "io.cncf.notary.verificationPluginMinVersion": "1.0.298",
            "com.amazonaws.signer.signingProfileVersion": profile_version,
            "com.amazonaws.signer.signingJob": job,
        });
        let protected_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&protected)?);
        let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
        let sig: p384::ecdsa::Signature = self
            .leaf_key
            .sign(format!("{protected_b64}.{payload_b64}").as_bytes());
        Ok(serde_json::to_vec(&json!({
            "payload": payload_b64,
            "protected": protected_b64,
            "header": {
                "x5c": self.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
                "io.cncf.notary.signingAgent": "notation-go/1.0.0 aws-signer-notation-plugin (pullgate-tests)",
            },
            "signature": URL_SAFE_NO_PAD.encode(sig.to_bytes()),
        }))?)
    }
}

/// How a signature is made discoverable from its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersMode {
    /// The registry has the referrers API: push the manifest only, and fail if
    /// the registry does not answer with `OCI-Subject`.
    Api,
    /// Also maintain the `sha256-<hex>` index (registries without the
    /// referrers API, such as docker-registry 2.8).
    TagSchema,
    /// As a client following the spec: tag schema only when the registry did
    /// not answer `OCI-Subject`.
    Auto,
}

/// How the signature manifest declares its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestStyle {
    /// As notation pushes it: config media type
    /// `application/vnd.cncf.notary.signature`, no `artifactType`.
    Notation,
    /// OCI 1.1 guidance: the empty config `application/vnd.oci.empty.v1+json`
    /// and `artifactType: application/vnd.cncf.notary.signature`.
    ArtifactType,
}

/// A signature manifest pushed next to its subject.
#[derive(Debug, Clone)]
pub struct PushedSignature {
    /// The signature manifest's descriptor.
    pub manifest: Descriptor,
    /// The signature manifest, as pushed.
    pub manifest_bytes: Vec<u8>,
    /// The envelope blob's descriptor.
    pub envelope: Descriptor,
    /// The descriptor as listed in a referrers index (with `artifactType`
    /// and the manifest's annotations).
    pub referrer_entry: Value,
}

/// `sha256-<hex>`: the referrers tag schema tag for `digest`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Thumbprints of the `x5c` certificates of a JWS `envelope`, leaf first.
fn envelope_thumbprints(envelope: &[u8]) -> Result<Vec<String>> {
    let v: Value = serde_json::from_slice(envelope).context("envelope is not JSON")?;
    let x5c = v["header"]["x5c"]
        .as_array()
        .context("envelope has no header.x5c")?;
    x5c.iter()
        .map(|c| {
            let der = STANDARD.decode(c.as_str().context("x5c entry is not a string")?)?;
            Ok(hex::encode(Sha256::digest(der)))
        })
        .collect()
}

/// Signs `subject` once per signer, in order, and attaches each JWS
/// envelope through the referrers API (which lists them in push order).
/// ECDSA signing here is deterministic (RFC 6979): each envelope gets its
/// own signing time, so equal signers' envelopes (and manifests) stay apart.
///
/// # Errors
/// As [`TestPki::sign_jws_with`] and [`attach_signature`].
pub async fn attach_signatures_by(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    signers: &[&TestPki],
) -> Result<()> {
    for (k, pki) in signers.iter().enumerate() {
        let options = JwsOptions {
            signing_time: format!("2025-06-01T00:{:02}:{:02}Z", k / 60 % 60, k % 60),
            ..JwsOptions::default()
        };
        let envelope = pki.sign_jws_with(&subject.descriptor(), &options)?;
        attach_signature(host, repo, subject, &envelope, ReferrersMode::Api).await?;
    }
    Ok(())
}

/// [`attach_signature_with`] in notation's [`ManifestStyle::Notation`].
///
/// # Errors
/// As [`attach_signature_with`].
pub async fn attach_signature(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    envelope: &[u8],
    mode: ReferrersMode,
) -> Result<PushedSignature> {
    attach_signature_with(host, repo, subject, envelope, mode, ManifestStyle::Notation).await
}

/// Pushes JWS `envelope` as a signature of `subject` in `host/repo`: the
/// envelope blob, the config blob `{}`, the signature manifest (by digest),
/// and, per `mode`, the referrers tag-schema index.
///
/// # Errors
/// A push is refused; in [`ReferrersMode::Api`], the registry did not
/// acknowledge the subject; in tag-schema mode, the `sha256-<hex>` tag names
/// something other than an image index.
pub async fn attach_signature_with(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    envelope: &[u8],
    mode: ReferrersMode,
    style: ManifestStyle,
) -> Result<PushedSignature> {
    let registry = Registry::new(host);
    registry.push_blob(repo, envelope).await?;
    let config_bytes = b"{}";
    registry.push_blob(repo, config_bytes).await?;
    let envelope_desc = Descriptor::of(JWS_ENVELOPE, envelope);

    let thumbprints = envelope_thumbprints(envelope)?;
    let annotations = json!({
        THUMBPRINT_ANNOTATION: serde_json::to_string(&thumbprints)?,
    });
    let (config_media_type, artifact_type) = match style {
        ManifestStyle::Notation => (NOTARY_SIGNATURE, None),
        ManifestStyle::ArtifactType => (OCI_EMPTY, Some(NOTARY_SIGNATURE)),
    };
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(config_media_type, config_bytes).to_json(),
        "layers": [envelope_desc.to_json()],
        "subject": subject.descriptor().to_json(),
        "annotations": annotations,
    });
    if let Some(at) = artifact_type {
        manifest["artifactType"] = json!(at);
    }
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_desc = Descriptor::of(OCI_MANIFEST, &manifest_bytes);
    let put = registry
        .put_manifest(repo, &manifest_desc.digest, OCI_MANIFEST, &manifest_bytes)
        .await?;

    // "The value of the `artifactType` MUST be set to the `artifactType` value
    // in the pushed manifest, if present. If the `artifactType` is empty or
    // missing in a pushed image manifest, the value of `artifactType` MUST be
    // set to the config descriptor `mediaType` value. All annotations from the
    // pushed manifest MUST be copied to this descriptor."
    let mut entry = manifest_desc.to_json();
    entry["artifactType"] = json!(artifact_type.unwrap_or(config_media_type));
    entry["annotations"] = manifest["annotations"].clone();

    let use_tag_schema = match mode {
        ReferrersMode::TagSchema => true,
        ReferrersMode::Auto => put.oci_subject.is_none(),
        ReferrersMode::Api => {
            if put.oci_subject.as_deref() != Some(subject.digest.as_str()) {
                bail!(
                    "registry {host} did not acknowledge the subject of {repo}@{} \
                     (OCI-Subject: {:?}); it has no referrers API",
                    manifest_desc.digest,
                    put.oci_subject
                );
            }
            false
        }
    };
    if use_tag_schema {
        add_to_referrers_index(&registry, repo, &subject.digest, &entry).await?;
    }
    Ok(PushedSignature {
        manifest: manifest_desc,
        manifest_bytes,
        envelope: envelope_desc,
        referrer_entry: entry,
    })
}

/// Appends `entry` to the referrers tag-schema index of `subject_digest`.
///
/// OCI distribution-spec, "Pushing Manifests with Subject": when the
/// registry did not set `OCI-Subject`, the client MUST "Pull the current
/// referrers list using the referrers tag schema. If that pull returns a
/// manifest other than the expected image index, the client SHOULD report a
/// failure and skip the remaining steps. If the tag returns a 404, the client
/// MUST begin with an empty image index. Verify the descriptor for the
/// manifest is not already in the referrers list (duplicate entries SHOULD
/// NOT be created). Append a descriptor for the pushed manifest [...]. Push
/// the updated referrers list using the same referrers tag schema."
pub(crate) async fn add_to_referrers_index(
    registry: &Registry,
    repo: &str,
    subject_digest: &str,
    entry: &Value,
) -> Result<()> {
    let tag = referrers_tag(subject_digest);
    let mut index = match registry.get_manifest(repo, &tag).await? {
        None => json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] }),
        Some(found) => {
            let v: Value = serde_json::from_slice(&found.body)
                .with_context(|| format!("{repo}:{tag} is not JSON"))?;
            if v["mediaType"] != OCI_INDEX || !v["manifests"].is_array() {
                bail!(
                    "{repo}:{tag} is not an image index (Content-Type {}); not touching it",
                    found.media_type
                );
            }
            v
        }
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .context("index manifests is not an array")?;
    if !manifests.iter().any(|m| m["digest"] == entry["digest"]) {
        manifests.push(entry.clone());
    }
    let bytes = serde_json::to_vec(&index)?;
    registry.put_manifest(repo, &tag, OCI_INDEX, &bytes).await?;
    Ok(())
}

/// The descriptors listed in `host/repo:sha256-<hex>` for `subject_digest`
/// (empty when the tag does not exist).
///
/// # Errors
/// The registry fails, or the tag is not an image index.
pub async fn referrers_from_tag_schema(
    host: &str,
    repo: &str,
    subject_digest: &str,
) -> Result<Vec<Value>> {
    let registry = Registry::new(host);
    let tag = referrers_tag(subject_digest);
    let Some(found) = registry.get_manifest(repo, &tag).await? else {
        return Ok(Vec::new());
    };
    let v: Value = serde_json::from_slice(&found.body)?;
    Ok(v["manifests"]
        .as_array()
        .context("referrers index has no manifests")?
        .clone())
}

/// A notation `trustpolicy.json` document (version 1.0) with one statement
/// named `pullgate-test`: level `strict`, trust store `ca:<store_name>`.
pub fn trust_policy_json(scopes: &[&str], store_name: &str, identities: &[&str]) -> Value {
    json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "pullgate-test",
            "registryScopes": scopes,
            "signatureVerification": { "level": "strict" },
            "trustStores": [format!("ca:{store_name}")],
            "trustedIdentities": identities,
        }]
    })
}

/// Writes [`trust_policy_json`] for one registry `scope` to `path`.
///
/// # Errors
/// The file cannot be written.
pub fn write_trust_policy(
    path: &Path,
    scope: &str,
    store_name: &str,
    identities: &[&str],
) -> Result<()> {
    let doc = trust_policy_json(&[scope], store_name, identities);
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// `sha256:<hex>` of `data` (re-exported for tests that build envelopes by hand).
pub fn digest_of(data: &[u8]) -> String {
    sha256_digest(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: sha256_digest(b"manifest"),
            size: 8,
        }
    }

    fn decode(envelope: &[u8]) -> (Value, Value, Vec<u8>, String) {
        let v: Value = serde_json::from_slice(envelope).unwrap();
        let protected_b64 = v["protected"].as_str().unwrap();
        let payload_b64 = v["payload"].as_str().unwrap();
        let protected: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected_b64).unwrap()).unwrap();
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_b64).unwrap()).unwrap();
        let sig = URL_SAFE_NO_PAD
            .decode(v["signature"].as_str().unwrap())
            .unwrap();
        (
            v.clone(),
            json!({ "protected": protected, "payload": payload }),
            sig,
            format!("{protected_b64}.{payload_b64}"),
        )
    }

    fn check_common(pki: &TestPki, envelope: &[u8]) -> (Vec<u8>, String) {
        let (raw, decoded, sig, input) = decode(envelope);
        let protected = &decoded["protected"];
        assert_eq!(protected["alg"], pki.alg());
        assert_eq!(protected["cty"], NOTARY_PAYLOAD);
        assert_eq!(protected["crit"], json!(["io.cncf.notary.signingScheme"]));
        assert_eq!(protected["io.cncf.notary.signingScheme"], "notary.x509");
        assert_eq!(
            protected["io.cncf.notary.signingTime"],
            DEFAULT_SIGNING_TIME
        );
        assert_eq!(decoded["payload"]["targetArtifact"], target().to_json());
        let x5c: Vec<Vec<u8>> = raw["header"]["x5c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| STANDARD.decode(c.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(x5c, vec![pki.leaf_der().to_vec(), pki.root_der().to_vec()]);
        assert_eq!(
            raw["header"]["io.cncf.notary.signingAgent"],
            "pullgate-tests"
        );
        assert_eq!(envelope_thumbprints(envelope).unwrap(), pki.thumbprints());
        (sig, input)
    }

    #[test]
    fn es256_envelope_verifies_with_the_leaf_key() {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let pki = TestPki::new("unit").unwrap();
        let envelope = pki.sign_jws(&target()).unwrap();
        let (sig, input) = check_common(&pki, &envelope);
        assert_eq!(sig.len(), 64, "ES256 is raw r||s");
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(pki.leaf_public_key_der()).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        vk.verify(input.as_bytes(), &sig).unwrap();
    }

    #[test]
    fn ps256_envelope_verifies_with_the_leaf_key() {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::signature::Verifier as _;
        let pki = TestPki::with_key_type("unit", KeyType::Rsa3072).unwrap();
        let envelope = pki.sign_jws(&target()).unwrap();
        let (sig, input) = check_common(&pki, &envelope);
        assert_eq!(sig.len(), 384);
        let pk = rsa::RsaPublicKey::from_public_key_der(pki.leaf_public_key_der()).unwrap();
        let vk = rsa::pss::VerifyingKey::<Sha256>::new(pk);
        let sig = rsa::pss::Signature::try_from(sig.as_slice()).unwrap();
        vk.verify(input.as_bytes(), &sig).unwrap();
    }

    #[test]
    fn expiry_is_critical() {
        let pki = TestPki::new("unit").unwrap();
        let options = JwsOptions {
            expiry: Some("2030-01-01T00:00:00Z".to_owned()),
            ..JwsOptions::default()
        };
        let envelope = pki.sign_jws_with(&target(), &options).unwrap();
        let (_, decoded, _, _) = decode(&envelope);
        assert_eq!(
            decoded["protected"]["crit"],
            json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"])
        );
        assert_eq!(
            decoded["protected"]["io.cncf.notary.expiry"],
            "2030-01-01T00:00:00Z"
        );
    }

    #[test]
    fn rsa_pkis_in_a_row_use_different_keys() {
        let a = TestPki::with_key_type("a", KeyType::Rsa3072).unwrap();
        let b = TestPki::with_key_type("b", KeyType::Rsa3072).unwrap();
        assert_ne!(a.leaf_public_key_der(), b.leaf_public_key_der());
    }

    #[test]
    fn trust_files_have_the_notation_layout() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new("unit").unwrap();
        let path = pki
            .write_trust_store(&dir.path().join("truststore"), "demo")
            .unwrap();
        assert!(path.ends_with("truststore/x509/ca/demo/root.crt"));
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let policy = dir.path().join("trustpolicy.json");
        let identity = pki.trusted_identity();
        write_trust_policy(&policy, "127.0.0.1:5000/demo/app", "demo", &[&identity]).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&policy).unwrap()).unwrap();
        assert_eq!(v["version"], "1.0");
        let statement = &v["trustPolicies"][0];
        assert_eq!(
            statement["registryScopes"],
            json!(["127.0.0.1:5000/demo/app"])
        );
        assert_eq!(statement["signatureVerification"]["level"], "strict");
        assert_eq!(statement["trustStores"], json!(["ca:demo"]));
        assert_eq!(
            statement["trustedIdentities"],
            json!(["x509.subject:CN=unit,O=Notary,ST=WA,C=US"])
        );
    }

    #[test]
    fn crl_lists_the_leaf_serial_only_when_revoked() {
        let url = "http://127.0.0.1:9/root.crl";
        let pki = TestPki::with_crl_url("unit", url).unwrap();
        let leaf = pki.leaf_der();
        assert!(leaf.windows(url.len()).any(|w| w == url.as_bytes()));
        assert!(!TestPki::new("unit")
            .unwrap()
            .leaf_der()
            .windows(url.len())
            .any(|w| w == url.as_bytes()));
        let serial = pki.leaf_serial.to_bytes();
        let has_serial = |crl: &[u8]| crl.windows(serial.len()).any(|w| w == serial.as_slice());
        let revoked = pki.crl(true).unwrap();
        let good = pki.crl(false).unwrap();
        assert_eq!(revoked[0], 0x30, "a DER SEQUENCE");
        assert!(has_serial(&revoked));
        assert!(!has_serial(&good));
    }

    #[test]
    fn referrers_tag_replaces_the_colon() {
        assert_eq!(referrers_tag("sha256:abcd"), "sha256-abcd");
    }
}
