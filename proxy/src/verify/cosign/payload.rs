//! The two JSON documents of a cosign `.sig` layer: the simple-signing
//! payload (the layer blob) and the Rekor bundle annotation.
//!
//! Input: bytes as fetched. Output: typed values; the checks on them (type,
//! digest, repository) run in `simple_signing`. Never panics.
//!
//! [Simple signing](https://github.com/containers/image/blob/main/docs/containers-signature.5.md#json-data-format):
//! "`critical`: ... `type`, `image` and `identity` ... Consumers MUST reject
//! the signature if any of these members are missing." cosign writes
//! `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":…},"type":"cosign container image signature"},"optional":…}`.

use serde::Deserialize;

/// The `critical` section of a simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimpleSigning {
    /// `critical.type`.
    pub(crate) kind: String,
    /// `critical.image.docker-manifest-digest`, as written.
    pub(crate) manifest_digest: String,
    /// `critical.identity.docker-reference`, as written.
    pub(crate) docker_reference: String,
}

/// Why a simple-signing payload does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PayloadError {
    #[error("it is not JSON with critical.type, critical.image.docker-manifest-digest and critical.identity.docker-reference strings (at line {line}, column {column})")]
    Json { line: usize, column: usize },
}

#[derive(Deserialize)]
struct RawPayload {
    critical: RawCritical,
}

#[derive(Deserialize)]
struct RawCritical {
    #[serde(rename = "type")]
    kind: String,
    image: RawImage,
    identity: RawIdentity,
}

#[derive(Deserialize)]
struct RawImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

#[derive(Deserialize)]
struct RawIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

/// Parses a simple-signing payload. Duplicate keys are refused (serde's
/// derive rejects a field seen twice), so no two parsers can read
/// different digests out of one payload.
///
/// # Errors
/// [`PayloadError::Json`].
pub(crate) fn parse_simple_signing(bytes: &[u8]) -> Result<SimpleSigning, PayloadError> {
    let raw: RawPayload = serde_json::from_slice(bytes).map_err(|e| PayloadError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    Ok(SimpleSigning {
        kind: raw.critical.kind,
        manifest_digest: raw.critical.image.docker_manifest_digest,
        docker_reference: raw.critical.identity.docker_reference,
    })
}

/// The `dev.sigstore.cosign/bundle` annotation: a Rekor v1 entry's SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RekorBundle {
    /// `SignedEntryTimestamp`, base64 as written.
    pub(crate) signed_entry_timestamp: String,
    /// `Payload.body`: the base64 canonicalized entry body, as written.
    pub(crate) body: String,
    /// The entry body's `kind` (`hashedrekord`, …).
    pub(crate) kind: String,
    /// The entry body's `apiVersion`.
    pub(crate) api_version: String,
    pub(crate) integrated_time: i64,
    pub(crate) log_index: i64,
    /// `Payload.logID`: hex SHA-256 of the log's public key.
    pub(crate) log_id: [u8; 32],
}

/// Why the Rekor bundle annotation does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RekorBundleError {
    #[error("it is not JSON with SignedEntryTimestamp and Payload {{body, integratedTime, logIndex, logID}}")]
    Json,
    #[error("Payload.logID is not 64 hex digits")]
    LogId,
    #[error("Payload.body is not base64 of a JSON entry with kind and apiVersion")]
    Body,
}

#[derive(Deserialize)]
struct RawRekorBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: RawRekorPayload,
}

#[derive(Deserialize)]
struct RawRekorPayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logIndex")]
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct RawEntryBody {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
}

/// Parses the Rekor bundle annotation.
///
/// # Errors
/// [`RekorBundleError`].
pub(crate) fn parse_rekor_bundle(text: &str) -> Result<RekorBundle, RekorBundleError> {
    use base64::Engine as _;
    let raw: RawRekorBundle = serde_json::from_str(text).map_err(|_| RekorBundleError::Json)?;
    let mut log_id = [0u8; 32];
    hex::decode_to_slice(&raw.payload.log_id, &mut log_id).map_err(|_| RekorBundleError::LogId)?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(&raw.payload.body)
        .map_err(|_| RekorBundleError::Body)?;
    let entry: RawEntryBody = serde_json::from_slice(&body).map_err(|_| RekorBundleError::Body)?;
    Ok(RekorBundle {
        signed_entry_timestamp: raw.signed_entry_timestamp,
        body: raw.payload.body,
        kind: entry.kind,
        api_version: entry.api_version,
        integrated_time: raw.payload.integrated_time,
        log_index: raw.payload.log_index,
        log_id,
    })
}
