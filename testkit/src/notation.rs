//! The signer the end-to-end tests and the bench sign images with, as
//! notation does: a root CA and a code-signing leaf (`notary.x509`), JWS
//! envelopes over a target descriptor, a CRL of the root, and notation's
//! trust-store and trust-policy files.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rcgen::{
    CrlDistributionPoint, DistinguishedName, DnType, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::cert::{ca_params, issue, leaf_params, random_serial, self_signed, Issued};
use crate::descriptor::Descriptor;
use crate::jws::{
    envelope_with_agent, HEADER_SIGNING_SCHEME, HEADER_SIGNING_TIME, PAYLOAD_CONTENT_TYPE,
};
use crate::key::Key;

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

impl KeyType {
    fn key(self) -> Result<Key> {
        match self {
            Self::EcdsaP256 => Key::p256(),
            Self::Rsa3072 => Key::rsa3072(),
        }
    }
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

/// `C=US, ST=WA, O=Notary, CN=<cn>`: notation's subject of the leaf.
fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::OrganizationName, "Notary");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A root CA and a code-signing leaf it issued, both valid 2020–2120, with
/// random serials.
#[derive(Debug)]
pub struct TestPki {
    key_type: KeyType,
    common_name: String,
    root: Issued,
    root_pem: String,
    leaf: Issued,
    leaf_spki: Vec<u8>,
    leaf_serial: SerialNumber,
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
    /// (CA:true, keyCertSign, cRLSign, digitalSignature), leaf
    /// `CN=<common_name>,O=Notary,ST=WA,C=US` (CA:false, digitalSignature,
    /// EKU codeSigning, authority key identifier).
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
        let mut root = ca_params("x", None);
        root.distinguished_name = subject(&format!("{common_name} Root"));
        root.serial_number = Some(random_serial());
        root.not_after = rcgen::date_time_ymd(2120, 1, 1);
        root.key_usages.push(KeyUsagePurpose::DigitalSignature);
        let root = self_signed(root, key_type.key()?)?;

        let mut leaf = leaf_params("x");
        leaf.distinguished_name = subject(common_name);
        let leaf_serial = random_serial();
        leaf.serial_number = Some(leaf_serial.clone());
        leaf.not_after = rcgen::date_time_ymd(2120, 1, 1);
        leaf.use_authority_key_identifier_extension = true;
        if let Some(url) = crl_url {
            leaf.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.to_owned()],
            }];
        }
        let leaf = issue(leaf, key_type.key()?, &root)?;
        Ok(Self {
            key_type,
            common_name: common_name.to_owned(),
            root_pem: root.pem(),
            root,
            leaf_spki: leaf.key.public_key_der(),
            leaf,
            leaf_serial,
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
        crate::revocation::signed_crl(
            &self.root,
            revoked_certs,
            rcgen::date_time_ymd(2025, 1, 1).into(),
            rcgen::date_time_ymd(2100, 1, 1).into(),
        )
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
        self.root.cert.der()
    }

    /// Root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Leaf certificate, DER.
    pub fn leaf_der(&self) -> &[u8] {
        self.leaf.cert.der()
    }

    /// The leaf's serial number.
    pub fn leaf_serial(&self) -> &SerialNumber {
        &self.leaf_serial
    }

    /// The leaf's SubjectPublicKeyInfo, DER.
    pub fn leaf_public_key_der(&self) -> &[u8] {
        &self.leaf_spki
    }

    /// The `x5c` chain, leaf first: `[leaf, root]` (DER).
    pub fn chain(&self) -> Vec<&[u8]> {
        vec![self.leaf_der(), self.root_der()]
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
    pub fn sign_jws(&self, target: &Descriptor) -> Vec<u8> {
        self.sign_jws_with(target, &JwsOptions::default())
    }

    /// A flattened JWS envelope (JWS JSON serialization) signing the Notary
    /// payload `{"targetArtifact": target}`.
    pub fn sign_jws_with(&self, target: &Descriptor, options: &JwsOptions) -> Vec<u8> {
        let payload = json!({ "targetArtifact": target.to_json() }).to_string();
        self.sign_jws_payload(payload.as_bytes(), options)
    }

    /// A flattened JWS envelope over arbitrary `payload` bytes (for tests of
    /// malformed payloads).
    pub fn sign_jws_payload(&self, payload: &[u8], options: &JwsOptions) -> Vec<u8> {
        // signature-envelope-jws.md, "Protected Headers": `crit` "MUST contain
        // `io.cncf.notary.signingScheme` [...] and optionally contain [...]
        // `io.cncf.notary.expiry` if these critical headers are present".
        let mut protected = json!({
            "alg": self.alg(),
            "cty": PAYLOAD_CONTENT_TYPE,
            "crit": [HEADER_SIGNING_SCHEME],
            HEADER_SIGNING_SCHEME: "notary.x509",
            HEADER_SIGNING_TIME: options.signing_time,
        });
        if let Some(expiry) = &options.expiry {
            protected["io.cncf.notary.expiry"] = json!(expiry);
            protected["crit"] = json!([HEADER_SIGNING_SCHEME, "io.cncf.notary.expiry"]);
        }
        let Value::Object(header) = protected else {
            return Vec::new();
        };
        let x5c: Vec<Vec<u8>> = self.chain().iter().map(|c| c.to_vec()).collect();
        envelope_with_agent(
            &header,
            payload,
            &|msg| self.sign_raw(msg),
            &x5c,
            &options.signing_agent,
        )
    }

    /// Signs `message` with the leaf key: ES256 gives raw `r||s` (64 bytes),
    /// PS256 gives RSASSA-PSS with SHA-256 and a 32-byte salt.
    pub fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        self.leaf.key.sign(message)
    }
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

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;

    use super::*;
    use crate::descriptor::sha256_digest;

    fn target() -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
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
        assert_eq!(protected["cty"], PAYLOAD_CONTENT_TYPE);
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
        let thumbprints: Vec<String> = x5c.iter().map(|c| hex::encode(Sha256::digest(c))).collect();
        assert_eq!(thumbprints, pki.thumbprints());
        (sig, input)
    }

    #[test]
    fn es256_envelope_verifies_with_the_leaf_key() {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let pki = TestPki::new("unit").unwrap();
        let envelope = pki.sign_jws(&target());
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
        let envelope = pki.sign_jws(&target());
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
        let envelope = pki.sign_jws_with(&target(), &options);
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
        let serial = pki.leaf_serial().to_bytes();
        let has_serial = |crl: &[u8]| crl.windows(serial.len()).any(|w| w == serial.as_slice());
        let revoked = pki.crl(true).unwrap();
        let good = pki.crl(false).unwrap();
        assert_eq!(revoked[0], 0x30, "a DER SEQUENCE");
        assert!(has_serial(&revoked));
        assert!(!has_serial(&good));
    }
}
