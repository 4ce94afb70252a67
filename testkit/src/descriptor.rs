//! An OCI content descriptor: what a Notary payload's `targetArtifact` and
//! a signature manifest's `subject` name.

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Media type, digest and size of a piece of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// The descriptor of `data` as `media_type`.
    pub fn of(media_type: &str, data: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: sha256_digest(data),
            size: data.len() as u64,
        }
    }

    /// `{"mediaType":…,"digest":…,"size":…}`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}
