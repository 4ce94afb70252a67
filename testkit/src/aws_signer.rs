//! A test PKI shaped like AWS Signer's and the JWS envelopes AWS Signer
//! makes: ES384, `notary.x509.signingAuthority`, the
//! `com.amazonaws.signer.notation.plugin` verification plugin and its two
//! extended attributes, all critical. No real AWS Signer signature is public.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rcgen::{DistinguishedName, DnType};
use serde_json::{json, Map, Value};

use crate::cert::{ca_params, issue, leaf_params, random_serial, self_signed, Issued};
use crate::descriptor::Descriptor;
use crate::jws::{envelope_with_agent, HEADER_SIGNING_SCHEME, PAYLOAD_CONTENT_TYPE};
use crate::key::Key;

/// The `io.cncf.notary.signingAgent` of [`AwsSignerPki::sign_jws`].
const AGENT: &str = "notation-go/1.0.0 aws-signer-notation-plugin (pullgate-tests)";

/// Root, intermediate, regional CA and leaf, all P-384 (the leaf signs
/// ES384), with AWS Signer's subjects; the leaf is
/// `C=US, ST=WA, L=Seattle, O=AWS, OU=AWS Cryptography, CN=AWS Signer`.
#[derive(Debug)]
pub struct AwsSignerPki {
    /// `CN=Test AWS Signer Code Signing Root CA G1`.
    pub root: Issued,
    /// `CN=Test AWS Signer Code Signing Int CA G1` (path length 1).
    pub intermediate: Issued,
    /// `CN=Test AWS Signer us-west-2 Code Signing CA G1` (path length 0).
    pub regional: Issued,
    /// `CN=AWS Signer`.
    pub leaf: Issued,
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

/// An AWS Signer-shaped PKI whose leaf is valid from `leaf_from` to
/// `leaf_until` (`(year, month, day)`); the CAs are valid 2020 → 2040.
///
/// # Errors
/// Key generation or certificate encoding failed.
pub fn aws_signer_pki(leaf_from: (i32, u8, u8), leaf_until: (i32, u8, u8)) -> Result<AwsSignerPki> {
    AwsSignerPki::build(2040, leaf_from, leaf_until)
}

impl AwsSignerPki {
    /// A PKI whose CAs and leaf are all valid 2020 → 2120 (for tests that run
    /// at the wall clock's time).
    ///
    /// # Errors
    /// Key generation or certificate encoding failed.
    pub fn new() -> Result<Self> {
        Self::build(2120, (2020, 1, 1), (2120, 1, 1))
    }

    fn build(ca_until: i32, leaf_from: (i32, u8, u8), leaf_until: (i32, u8, u8)) -> Result<Self> {
        let ca = |cn: &str, path_len: Option<u8>| {
            let mut p = ca_params("x", path_len);
            p.distinguished_name = aws_dn(cn, "Cryptography", false);
            p.serial_number = Some(random_serial());
            p.not_after = rcgen::date_time_ymd(ca_until, 1, 1);
            p
        };
        let root = self_signed(
            ca("Test AWS Signer Code Signing Root CA G1", None),
            Key::p384()?,
        )?;
        let intermediate = issue(
            ca("Test AWS Signer Code Signing Int CA G1", Some(1)),
            Key::p384()?,
            &root,
        )?;
        let regional = issue(
            ca("Test AWS Signer us-west-2 Code Signing CA G1", Some(0)),
            Key::p384()?,
            &intermediate,
        )?;
        let mut leaf = leaf_params("x");
        leaf.distinguished_name = aws_dn("AWS Signer", "AWS Cryptography", true);
        leaf.serial_number = Some(random_serial());
        leaf.not_before = rcgen::date_time_ymd(leaf_from.0, leaf_from.1, leaf_from.2);
        leaf.not_after = rcgen::date_time_ymd(leaf_until.0, leaf_until.1, leaf_until.2);
        let leaf = issue(leaf, Key::p384()?, &regional)?;
        Ok(Self {
            root,
            intermediate,
            regional,
            leaf,
        })
    }

    /// The chain as `x5c` carries it, leaf first (DER).
    pub fn x5c(&self) -> Vec<Vec<u8>> {
        vec![
            self.leaf.der(),
            self.regional.der(),
            self.intermediate.der(),
            self.root.der(),
        ]
    }

    /// Writes the root as `<root>/x509/signingAuthority/<store_name>/root.crt`.
    ///
    /// # Errors
    /// The directory or file cannot be written.
    pub fn write_trust_store(&self, root: &Path, store_name: &str) -> Result<PathBuf> {
        let dir = root.join("x509").join("signingAuthority").join(store_name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("root.crt");
        std::fs::write(&path, self.root.pem())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// An AWS Signer-style JWS envelope signing `target`, made by signing job
    /// `job` of profile version `profile_version` at `signed_at` (RFC 3339),
    /// expiring 2100-01-01.
    pub fn sign_jws(
        &self,
        target: &Descriptor,
        profile_version: &str,
        job: &str,
        signed_at: &str,
    ) -> Vec<u8> {
        let header = aws_signer_header(profile_version, job, signed_at, "2100-01-01T00:00:00Z");
        let payload = json!({ "targetArtifact": target.to_json() }).to_string();
        envelope_with_agent(
            &header,
            payload.as_bytes(),
            &|msg| self.leaf.key.sign(msg),
            &self.x5c(),
            AGENT,
        )
    }
}

/// The signed-attribute set an AWS Signer signature carries: ES384,
/// `notary.x509.signingAuthority` with `authenticSigningTime` and `expiry`,
/// the verification plugin and its minimum version, and the plugin's two
/// extended attributes, every one but `alg`/`cty`/`crit` listed in `crit`.
pub fn aws_signer_header(
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
        return Map::new();
    };
    map
}
