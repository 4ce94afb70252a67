//! Test-only cosign signatures and what makes them checkable, as bytes:
//!
//! - key-pair signatures as cosign 2.x writes them without the new bundle
//!   format: simple-signing payloads
//!   (`application/vnd.dev.cosign.simplesigning.v1+json`), each with its
//!   base64 DER ECDSA P-256 / SHA-256 signature for the annotation
//!   `dev.cosignproject.cosign/signature` (sigstore/cosign
//!   `specs/SIGNATURE_SPEC.md`);
//! - Sigstore bundles v0.3 as `cosign sign --key --new-bundle-format`
//!   writes them: a DSSE envelope over an in-toto statement of predicate
//!   type `https://sigstore.dev/cosign/sign/v1` whose subject is the image
//!   digest (sigstore/cosign `specs/BUNDLE_SPEC.md`);
//! - attestations: the same bundle over an in-toto statement of another
//!   predicate type (an SLSA provenance v1, [`slsa_provenance_statement`]),
//!   and cosign v2's `.att` layers, a [`dsse_envelope`] each.
//!
//! A bundle must carry a transparency-log entry (pullgate, like cosign,
//! requires one when a trusted root is configured, and bundles are only
//! verified against one). No public Rekor is reachable from a test, so
//! [`TestLog`] stands in for one: a P-256 log key named in a test
//! `trusted_root.json`, which signs a one-entry log (the inclusion proof of
//! a tree of size 1, a signed checkpoint) and the entry's inclusion promise
//! (SET). pullgate's verifier checks all of it as it checks Rekor's; only
//! the key is the test's own.
//!
//! Attaching them to an image in a registry is the end-to-end harness's
//! (`pullgate_tests::cosign`).

use std::path::Path;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::key::{Key, RSA_2048_PEM, RSA_4096_PEM};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `type` of a cosign container image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Artifact type of a bundle referrer, and media type of its layer.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// In-toto predicate type of a cosign image signature bundle.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// In-toto predicate type of an SLSA provenance v1 attestation.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Media type of a cosign v2 `.att` layer: one DSSE envelope.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// A cosign ECDSA P-256 key pair.
#[derive(Debug)]
pub struct CosignKey {
    signing: p256::ecdsa::SigningKey,
    public_pem: String,
}

impl CosignKey {
    /// A fresh key pair.
    ///
    /// # Errors
    /// Key generation failed.
    pub fn generate() -> Result<Self> {
        let key = Key::p256()?;
        let signing = key
            .p256_signing_key()
            .context("Key::p256 holds a P-256 key")?
            .clone();
        Ok(Self {
            signing,
            public_pem: key.rcgen.public_key_pem(),
        })
    }

    /// The public key, PEM (`-----BEGIN PUBLIC KEY-----`), as `cosign.pub`.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Writes the public key to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_public_key(&self, path: &Path) -> Result<()> {
        std::fs::write(path, &self.public_pem)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// DER ECDSA signature over SHA-256 of `message`, base64 (standard).
    pub fn sign_b64(&self, message: &[u8]) -> String {
        STANDARD.encode(self.sign_der(message))
    }

    /// DER ECDSA signature over SHA-256 of `message`.
    pub fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = self.signing.sign(message);
        sig.to_der().as_bytes().to_vec()
    }

    /// The public key as SubjectPublicKeyInfo DER.
    ///
    /// # Errors
    /// Encoding failed.
    pub fn spki_der(&self) -> Result<Vec<u8>> {
        use p256::pkcs8::EncodePublicKey as _;
        let der = self
            .signing
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
        Ok(der.as_bytes().to_vec())
    }

    /// A signature layer for `docker_reference` (`host/repo`) at `digest`.
    pub fn sign_image(&self, docker_reference: &str, digest: &str) -> SigLayer {
        let payload = simple_signing_payload(docker_reference, digest);
        SigLayer {
            signature: self.sign_b64(&payload),
            payload,
        }
    }
}

/// One layer of a `.sig` manifest: a simple-signing payload and the base64
/// signature in its annotation. Fields are public so a test can tamper.
#[derive(Debug, Clone)]
pub struct SigLayer {
    /// The payload (the layer blob).
    pub payload: Vec<u8>,
    /// The base64 signature (`dev.cosignproject.cosign/signature`).
    pub signature: String,
}

/// The simple-signing payload for `docker_reference` (`host/repo`) at
/// `digest`.
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    let payload = json!({
        "critical": {
            "identity": { "docker-reference": docker_reference },
            "image": { "docker-manifest-digest": digest },
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    });
    // serde_json of a json! value cannot fail.
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// `sha256-<hex>.sig`: the tag cosign stores signatures of `digest` under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// A test-only transparency log standing in for Rekor: a P-256 log key,
/// the `trusted_root.json` that names it, and a one-entry log per signature.
#[derive(Debug)]
pub struct TestLog {
    key: CosignKey,
    spki: Vec<u8>,
    /// SHA-256 of the key's SubjectPublicKeyInfo: the log ID.
    log_id: [u8; 32],
}

/// The log's checkpoint origin line.
const LOG_ORIGIN: &str = "pullgate-test-log";
/// When the test log's key starts being valid.
const LOG_VALID_FROM: &str = "2020-01-01T00:00:00Z";
/// The integrated time of every entry: a fixed instant in the past (2024-01-01),
/// after the key's start; verifiers refuse one in their future.
pub const INTEGRATED_TIME: i64 = 1_704_067_200;

impl TestLog {
    /// A fresh log key.
    ///
    /// # Errors
    /// Key generation failed.
    pub fn generate() -> Result<Self> {
        let key = CosignKey::generate()?;
        let spki = key.spki_der()?;
        let log_id: [u8; 32] = Sha256::digest(&spki).into();
        Ok(Self { key, spki, log_id })
    }

    /// A Sigstore `trusted_root.json` whose only authority is this log.
    pub fn trusted_root_json(&self) -> String {
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://test-log.invalid",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": STANDARD.encode(&self.spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": { "start": LOG_VALID_FROM },
                },
                "logId": { "keyId": STANDARD.encode(self.log_id) },
            }],
            "certificateAuthorities": [],
            "ctlogs": [],
            "timestampAuthorities": [],
        })
        .to_string()
    }

    /// Writes [`TestLog::trusted_root_json`] to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_trusted_root(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.trusted_root_json())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The SET of the entry with `body` (index 0, [`INTEGRATED_TIME`]):
    /// the log key's signature over the RFC 8785 canonical JSON (keys
    /// sorted, no spaces) of `{body, integratedTime, logID, logIndex}`.
    fn set(&self, body: &[u8]) -> String {
        let set_payload = format!(
            r#"{{"body":"{}","integratedTime":{INTEGRATED_TIME},"logID":"{}","logIndex":0}}"#,
            STANDARD.encode(body),
            hex::encode(self.log_id)
        );
        self.key.sign_b64(set_payload.as_bytes())
    }

    /// The `dev.sigstore.cosign/bundle` annotation cosign v2 puts on a layer
    /// logged as the entry with `body`: the SET and what it signs.
    pub fn set_annotation(&self, body: &[u8]) -> String {
        json!({
            "SignedEntryTimestamp": self.set(body),
            "Payload": {
                "body": STANDARD.encode(body),
                "integratedTime": INTEGRATED_TIME,
                "logIndex": 0,
                "logID": hex::encode(self.log_id),
            },
        })
        .to_string()
    }

    /// The `tlogEntries[0]` of a bundle for an entry with `body`: index 0 of
    /// a tree of size 1 (its root is the leaf hash, RFC 6962 §2.1:
    /// `MTH({d(0)}) = SHA-256(0x00 || d(0))`), a checkpoint signed by the
    /// log key (C2SP signed note: body lines, a blank line, `— <origin>
    /// base64(key hint || signature)`, the hint being the first four bytes
    /// of the log ID), and the SET over the canonical JSON of
    /// `{body, integratedTime, logID, logIndex}`.
    fn entry(&self, kind: &str, body: &[u8]) -> serde_json::Value {
        let mut leaf = Sha256::new();
        leaf.update([0u8]);
        leaf.update(body);
        let root: [u8; 32] = leaf.finalize().into();
        let note = format!("{LOG_ORIGIN}\n1\n{}\n", STANDARD.encode(root));
        let mut hint_sig = self.log_id[..4].to_vec();
        hint_sig.extend(self.key.sign_der(note.as_bytes()));
        let checkpoint = format!(
            "{note}\n\u{2014} {LOG_ORIGIN} {}\n",
            STANDARD.encode(hint_sig)
        );
        json!({
            "logIndex": "0",
            "logId": { "keyId": STANDARD.encode(self.log_id) },
            "kindVersion": { "kind": kind, "version": "0.0.1" },
            "integratedTime": INTEGRATED_TIME.to_string(),
            "inclusionPromise": {
                "signedEntryTimestamp": self.set(body),
            },
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": STANDARD.encode(root),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": { "envelope": checkpoint },
            },
            "canonicalizedBody": STANDARD.encode(body),
        })
    }
}

/// The in-toto statement a cosign image signature bundle signs: subject
/// `name` at `digest` (`sha256:<hex>`), predicate type `predicate_type`.
pub fn sign_statement(name: &str, digest: &str, predicate_type: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": name, "digest": { "sha256": hex } }],
        "predicateType": predicate_type,
        "predicate": {},
    }))
    .unwrap_or_default()
}

/// An in-toto Statement v1 with an SLSA provenance v1 predicate, as a
/// GitHub Actions build writes it (slsa.dev/spec/v1.0/provenance): subject
/// `name` at `digest`, built by workflow `.github/workflows/release.yml` of
/// `workflow_repository` (`buildDefinition.externalParameters.workflow`).
pub fn slsa_provenance_statement(name: &str, digest: &str, workflow_repository: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": name, "digest": { "sha256": hex } }],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {
                    "workflow": {
                        "ref": "refs/heads/main",
                        "repository": workflow_repository,
                        "path": ".github/workflows/release.yml",
                    },
                },
                "internalParameters": { "github": { "event_name": "push" } },
                "resolvedDependencies": [],
            },
            "runDetails": {
                "builder": { "id": "https://github.com/actions/runner/github-hosted" },
                "metadata": { "invocationId": "1", "startedOn": "2024-01-01T00:00:00Z" },
            },
        },
    }))
    .unwrap_or_default()
}

/// A DSSE envelope (JSON) of payload type in-toto over `statement`,
/// signed with `key`, and the raw signature.
///
/// DSSE v1 signs `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP
/// LEN(body) SP body` (secure-systems-lab/dsse `protocol.md`).
pub fn dsse_envelope(key: &CosignKey, statement: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let mut pae = format!("DSSEv1 {} {IN_TOTO} {} ", IN_TOTO.len(), statement.len()).into_bytes();
    pae.extend_from_slice(statement);
    let sig = key.sign_der(&pae);
    let envelope = json!({
        "payload": STANDARD.encode(statement),
        "payloadType": IN_TOTO,
        "signatures": [{ "sig": STANDARD.encode(&sig), "keyid": "" }],
    });
    (envelope, sig)
}

/// A Sigstore bundle v0.3 signed with `key` over `statement` (DSSE,
/// in-toto payload, [`dsse_envelope`]), logged in `log` as a `dsse` 0.0.1 entry.
///
/// # Errors
/// Encoding failed.
pub fn key_signed_bundle(key: &CosignKey, log: &TestLog, statement: &[u8]) -> Result<Vec<u8>> {
    let (envelope, sig) = dsse_envelope(key, statement);
    let body = dsse_entry_body(key, statement, &envelope, &sig)?;
    let bundle = json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {
            "publicKey": { "hint": STANDARD.encode(Sha256::digest(key.spki_der()?)) },
            "tlogEntries": [log.entry("dsse", &body)],
        },
        "dsseEnvelope": envelope,
    });
    Ok(serde_json::to_vec(&bundle)?)
}

/// The Rekor `dsse` 0.0.1 entry body of `envelope` (over `statement`,
/// signature `sig`) by `key`.
///
/// # Errors
/// Encoding failed.
pub fn dsse_entry_body(
    key: &CosignKey,
    statement: &[u8],
    envelope: &serde_json::Value,
    sig: &[u8],
) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {
                "algorithm": "sha256",
                "value": hex::encode(Sha256::digest(serde_json::to_vec(envelope)?)),
            },
            "payloadHash": { "algorithm": "sha256", "value": hex::encode(Sha256::digest(statement)) },
            "signatures": [{
                "signature": STANDARD.encode(sig),
                "verifier": STANDARD.encode(key.public_key_pem()),
            }],
        },
    }))?)
}

/// The key types a cosign public key may be, for tests across all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 / SHA-256 (DER signatures).
    P256,
    /// ECDSA P-384 / SHA-384 (DER signatures).
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA PKCS#1 v1.5 / SHA-256, the key as `RSA PUBLIC KEY`.
    RsaPkcs1,
    /// RSASSA-PSS / SHA-256 (salt 32), the key as SubjectPublicKeyInfo.
    RsaPss,
}

/// Signs a message as cosign carries the signature.
pub type SignFn = Box<dyn Fn(&[u8]) -> Vec<u8>>;

fn pem(label: &str, der: &[u8]) -> Result<Vec<u8>> {
    Ok(
        der::pem::encode_string(label, der::pem::LineEnding::LF, der)
            .map_err(|e| anyhow::anyhow!("PEM-encoding a {label}: {e}"))?
            .into_bytes(),
    )
}

/// (public key PEM, signer) of a key of `alg` that `seed` fixes: the same
/// seed gives the same key. For RSA, seed 1 is the fixed RSA-2048 test key
/// and any other the RSA-4096 one.
///
/// # Errors
/// The seed is not a valid key of `alg`, or encoding failed.
pub fn seeded_key(alg: KeyAlg, seed: u8) -> Result<(Vec<u8>, SignFn)> {
    use p256::pkcs8::EncodePublicKey as _;
    use signature::Signer as _;
    Ok(match alg {
        KeyAlg::P256 => {
            let sk = p256::ecdsa::SigningKey::from_bytes(&[seed; 32].into())?;
            let pk = sk.verifying_key().to_public_key_der()?;
            (
                pem("PUBLIC KEY", pk.as_bytes())?,
                Box::new(move |m| {
                    let s: p256::ecdsa::Signature = sk.sign(m);
                    s.to_der().as_bytes().to_vec()
                }),
            )
        }
        KeyAlg::P384 => {
            let sk = p384::ecdsa::SigningKey::from_bytes(&[seed; 48].into())?;
            let pk = sk.verifying_key().to_public_key_der()?;
            (
                pem("PUBLIC KEY", pk.as_bytes())?,
                Box::new(move |m| {
                    let s: p384::ecdsa::Signature = sk.sign(m);
                    s.to_der().as_bytes().to_vec()
                }),
            )
        }
        KeyAlg::Ed25519 => {
            let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
            // SubjectPublicKeyInfo { id-Ed25519 } prefix, then the 32-byte key.
            let mut spki = hex::decode("302a300506032b6570032100")?;
            spki.extend_from_slice(sk.verifying_key().as_bytes());
            (
                pem("PUBLIC KEY", &spki)?,
                Box::new(move |m| sk.sign(m).to_bytes().to_vec()),
            )
        }
        KeyAlg::RsaPkcs1 | KeyAlg::RsaPss => {
            use rsa::pkcs1::EncodeRsaPublicKey as _;
            use rsa::pkcs8::DecodePrivateKey as _;
            use signature::{RandomizedSigner as _, SignatureEncoding as _};
            let text = if seed == 1 {
                RSA_2048_PEM
            } else {
                RSA_4096_PEM
            };
            let sk = rsa::RsaPrivateKey::from_pkcs8_pem(text)?;
            let public = sk.to_public_key();
            if alg == KeyAlg::RsaPkcs1 {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(sk);
                (
                    pem("RSA PUBLIC KEY", public.to_pkcs1_der()?.as_bytes())?,
                    Box::new(move |m| signer.sign(m).to_vec()),
                )
            } else {
                let signer = rsa::pss::BlindedSigningKey::<Sha256>::new(sk);
                (
                    pem("PUBLIC KEY", public.to_public_key_der()?.as_bytes())?,
                    Box::new(move |m| signer.sign_with_rng(&mut rand::thread_rng(), m).to_vec()),
                )
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_with_the_public_key() {
        use p256::ecdsa::signature::Verifier as _;
        use p256::pkcs8::DecodePublicKey as _;
        let key = CosignKey::generate().unwrap();
        let payload = simple_signing_payload("127.0.0.1:5000/app", "sha256:abcd");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["critical"]["type"], PAYLOAD_TYPE);
        let sig = STANDARD.decode(key.sign_b64(&payload)).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(key.public_key_pem()).unwrap();
        vk.verify(&payload, &sig).unwrap();
        assert_eq!(signature_tag("sha256:abcd"), "sha256-abcd.sig");
    }
}
