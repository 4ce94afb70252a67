//! Test-only cosign signatures, in the two ways cosign attaches them:
//!
//! - key-pair signatures as cosign 2.x writes them without the new bundle
//!   format: a manifest at tag `sha256-<hex>.sig` whose layers are
//!   simple-signing payloads
//!   (`application/vnd.dev.cosign.simplesigning.v1+json`), each carrying its
//!   base64 DER ECDSA P-256 / SHA-256 signature in the annotation
//!   `dev.cosignproject.cosign/signature` (sigstore/cosign
//!   `specs/SIGNATURE_SPEC.md`);
//! - Sigstore bundles v0.3 as `cosign sign --key --new-bundle-format`
//!   writes them: a DSSE envelope over an in-toto statement of predicate
//!   type `https://sigstore.dev/cosign/sign/v1` whose subject is the image
//!   digest, attached as an OCI referrer (sigstore/cosign
//!   `specs/BUNDLE_SPEC.md`).
//!
//! - attestations as `cosign attest --key --new-bundle-format` writes
//!   them: the same bundle over an in-toto statement of another predicate
//!   type (an SLSA provenance v1, [`slsa_provenance_statement`]), attached
//!   as a referrer annotated with its predicate type ([`attach_attestation`]);
//!   and as cosign v2 wrote them, DSSE envelopes as the layers of the
//!   `sha256-<hex>.att` manifest ([`push_att_manifest`]).
//!
//! A bundle must carry a transparency-log entry (pullgate, like cosign,
//! requires one when a trusted root is configured, and bundles are only
//! verified against one). No public Rekor is reachable from a test, so
//! [`TestLog`] stands in for one: a P-256 log key named in a test
//! `trusted_root.json`, which signs a one-entry log (the inclusion proof of
//! a tree of size 1, a signed checkpoint) and the entry's inclusion promise
//! (SET). pullgate's verifier checks all of it as it checks Rekor's; only
//! the key is the test's own.

use std::path::Path;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::distribution::{sha256_digest, Registry};
use crate::image::{Descriptor, PushedImage, OCI_CONFIG, OCI_MANIFEST};
use crate::signer::{add_to_referrers_index, ReferrersMode, OCI_EMPTY};

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
/// The annotation cosign puts on an attestation referrer manifest.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

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
    let layer = key.sign_image(&format!("{host}/{repo}"), &subject.digest);
    push_sig_manifest(host, repo, &subject.digest, &[layer]).await
}

/// Pushes `layers` as the `.sig` manifest of `subject_digest` in
/// `host/repo` (one signature per layer, in order), replacing any there.
///
/// # Errors
/// A push is refused.
pub async fn push_sig_manifest(
    host: &str,
    repo: &str,
    subject_digest: &str,
    layers: &[SigLayer],
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    let mut descriptors = Vec::with_capacity(layers.len());
    let mut diff_ids = Vec::with_capacity(layers.len());
    let mut pushed = std::collections::HashSet::new();
    for l in layers {
        // A payload repeated across layers is one blob.
        if pushed.insert(sha256_digest(&l.payload)) {
            registry.push_blob(repo, &l.payload).await?;
        }
        let mut d = Descriptor::of(SIMPLE_SIGNING, &l.payload).to_json();
        d["annotations"] = json!({ SIGNATURE_ANNOTATION: l.signature });
        descriptors.push(d);
        diff_ids.push(sha256_digest(&l.payload));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    registry.push_blob(repo, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": descriptors,
    }))?;
    let put = registry
        .put_manifest(
            repo,
            &signature_tag(subject_digest),
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

/// Media type of a cosign v2 `.att` layer: one DSSE envelope.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// Pushes `statements` (each with its predicate type), signed with `key`
/// into DSSE envelopes, as the `sha256-<hex>.att` manifest of
/// `subject_digest` in `host/repo`, as cosign v2 `attest --key` writes it:
/// one layer per envelope, annotated with its `predicateType`, an empty
/// `dev.cosignproject.cosign/signature` and, when `log` is given, the SET of
/// its `dsse` entry in `dev.sigstore.cosign/bundle` (without one, as
/// `--tlog-upload=false` writes it).
///
/// # Errors
/// A push is refused.
pub async fn push_att_manifest(
    host: &str,
    repo: &str,
    subject_digest: &str,
    key: &CosignKey,
    log: Option<&TestLog>,
    statements: &[(&[u8], &str)],
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    let mut layers = Vec::with_capacity(statements.len());
    let mut diff_ids = Vec::with_capacity(statements.len());
    for (statement, predicate_type) in statements {
        let (envelope, sig) = dsse_envelope(key, statement);
        let blob = serde_json::to_vec(&envelope)?;
        registry.push_blob(repo, &blob).await?;
        let mut d = Descriptor::of(DSSE_ENVELOPE, &blob).to_json();
        d["annotations"] = json!({ "predicateType": predicate_type, SIGNATURE_ANNOTATION: "" });
        if let Some(log) = log {
            let body = dsse_entry_body(key, statement, &envelope, &sig)?;
            d["annotations"]["dev.sigstore.cosign/bundle"] = json!(log.set_annotation(&body));
        }
        layers.push(d);
        diff_ids.push(sha256_digest(&blob));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    registry.push_blob(repo, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::of(OCI_CONFIG, &config).to_json(),
        "layers": layers,
    }))?;
    let tag = format!("{}.att", subject_digest.replacen(':', "-", 1));
    let put = registry
        .put_manifest(repo, &tag, OCI_MANIFEST, &manifest)
        .await?;
    Ok(PushedImage {
        digest: put.digest,
        size: manifest.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        manifest,
    })
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

/// The Rekor `dsse` 0.0.1 entry body of `envelope` (over `statement`, signature `sig`) by `key`.
fn dsse_entry_body(
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

/// How a bundle referrer is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleListing {
    /// The registry's referrers API.
    Api,
    /// The referrers tag schema, its entry with the `artifactType`.
    TagSchema,
    /// The referrers tag schema, its entry without an `artifactType` (as
    /// some clients write it): the reader must fetch the manifest to see
    /// what it is.
    TagSchemaUntyped,
}

/// Attaches `bundle` to `subject` in `host/repo` as cosign does: the bundle
/// blob, the empty config, a manifest of artifact type [`BUNDLE_V03`] with
/// the bundle as its one layer and `subject`, listed per `listing`.
///
/// # Errors
/// A push is refused, or the registry does not list it as asked.
pub async fn attach_bundle(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    bundle: &[u8],
    listing: BundleListing,
) -> Result<PushedImage> {
    attach_bundle_of(host, repo, subject, bundle, listing, None).await
}

/// Attaches an attestation `bundle` of `predicate_type` to `subject` as
/// `cosign attest --new-bundle-format` does: as [`attach_bundle`] through
/// the referrers API, the manifest annotated with the predicate type.
///
/// # Errors
/// A push is refused, or the registry does not list it.
pub async fn attach_attestation(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    bundle: &[u8],
    predicate_type: &str,
) -> Result<PushedImage> {
    attach_bundle_of(
        host,
        repo,
        subject,
        bundle,
        BundleListing::Api,
        Some(predicate_type),
    )
    .await
}

async fn attach_bundle_of(
    host: &str,
    repo: &str,
    subject: &PushedImage,
    bundle: &[u8],
    listing: BundleListing,
    predicate_type: Option<&str>,
) -> Result<PushedImage> {
    let registry = Registry::new(host);
    registry.push_blob(repo, bundle).await?;
    let empty = b"{}";
    registry.push_blob(repo, empty).await?;
    let layer = Descriptor::of(BUNDLE_V03, bundle);
    let mut layer_json = layer.to_json();
    layer_json["annotations"] = json!({
        "org.opencontainers.image.title": format!("{}.sigstore.json", layer.digest.replacen(':', "-", 1)),
    });
    let mut annotations = json!({ "dev.sigstore.bundle.content": "dsse-envelope" });
    if let Some(t) = predicate_type {
        annotations[PREDICATE_TYPE_ANNOTATION] = json!(t);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": Descriptor::of(OCI_EMPTY, empty).to_json(),
        "layers": [layer_json],
        "subject": subject.descriptor().to_json(),
        "annotations": annotations,
    }))?;
    let desc = Descriptor::of(OCI_MANIFEST, &manifest);
    let put = registry
        .put_manifest(repo, &desc.digest, OCI_MANIFEST, &manifest)
        .await?;
    let mode = match listing {
        BundleListing::Api => ReferrersMode::Api,
        BundleListing::TagSchema | BundleListing::TagSchemaUntyped => ReferrersMode::TagSchema,
    };
    if mode == ReferrersMode::Api && put.oci_subject.as_deref() != Some(subject.digest.as_str()) {
        anyhow::bail!(
            "registry {host} did not acknowledge the subject of {repo}@{}",
            desc.digest
        );
    }
    if mode == ReferrersMode::TagSchema {
        let mut entry = desc.to_json();
        if listing == BundleListing::TagSchema {
            entry["artifactType"] = json!(BUNDLE_V03);
        }
        add_to_referrers_index(&registry, repo, &subject.digest, &entry).await?;
    }
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
