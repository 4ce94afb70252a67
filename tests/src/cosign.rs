//! Test-only cosign key-pair signatures, attached the way cosign 2.x does
//! without the new bundle format: a manifest at tag `sha256-<hex>.sig` whose
//! layers are simple-signing payloads
//! (`application/vnd.dev.cosign.simplesigning.v1+json`), each carrying its
//! base64 DER ECDSA P-256 / SHA-256 signature in the annotation
//! `dev.cosignproject.cosign/signature`.
//!
//! Spec: sigstore/cosign `specs/SIGNATURE_SPEC.md`.

use std::path::Path;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use crate::distribution::{sha256_digest, Registry};
use crate::image::{Descriptor, PushedImage, OCI_CONFIG, OCI_MANIFEST};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `type` of a cosign container image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

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
        use p256::pkcs8::DecodePrivateKey as _;
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let signing = p256::ecdsa::SigningKey::from_pkcs8_der(kp.serialized_der())
            .map_err(|e| anyhow::anyhow!("re-reading generated P-256 key: {e}"))?;
        Ok(Self {
            signing,
            public_pem: kp.public_key_pem(),
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
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = self.signing.sign(message);
        STANDARD.encode(sig.to_der().as_bytes())
    }
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

/// Signs `subject` in `host/repo` with `key` and pushes the signature as
/// `repo:sha256-<hex>.sig` (replacing any signature manifest there).
///
/// # Errors
/// A push is refused.
pub async fn attach_cosign_signature(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    key: &CosignKey,
) -> Result<PushedImage> {
    let payload = simple_signing_payload(&format!("{host}/{repo}"), &subject.digest);
    let signature = key.sign_b64(&payload);
    let registry = Registry::new(host);
    registry.push_blob(repo, &payload).await?;
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&payload)] },
    }))?;
    registry.push_blob(repo, &config).await?;
    let mut layer = Descriptor::of(SIMPLE_SIGNING, &payload).to_json();
    layer["annotations"] = json!({ SIGNATURE_ANNOTATION: signature });
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": [layer],
    }))?;
    let put = registry
        .put_manifest(
            repo,
            &signature_tag(&subject.digest),
            OCI_MANIFEST,
            &manifest,
        )
        .await?;
    Ok(PushedImage {
        digest: put.digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
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
