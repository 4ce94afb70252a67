//! The JSON shape of `trustpolicy.json`, before validation.
//!
//! Every field is optional here so that a missing field becomes a typed
//! validation error, not a serde message; unknown keys are collected, not
//! ignored, so a misspelt setting is refused instead of silently dropped.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Keys nobody defined, kept only by name.
pub(super) type Unknown = BTreeMap<String, IgnoredAny>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Document {
    pub(super) version: Option<String>,
    pub(super) trust_policies: Option<Vec<Statement>>,
    #[serde(flatten)]
    pub(super) unknown: Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Statement {
    pub(super) name: Option<String>,
    pub(super) registry_scopes: Option<Vec<String>>,
    pub(super) signature_verification: Option<SignatureVerification>,
    pub(super) trust_stores: Option<Vec<String>>,
    pub(super) trusted_identities: Option<Vec<String>>,
    #[serde(flatten)]
    pub(super) unknown: Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SignatureVerification {
    pub(super) level: Option<String>,
    #[serde(rename = "override")]
    pub(super) overrides: Option<Pairs>,
    pub(super) verify_timestamp: Option<String>,
    pub(super) skip_timestamp_revocation_check: Option<bool>,
    #[serde(flatten)]
    pub(super) unknown: Unknown,
}

/// A JSON object of strings, in document order, duplicates kept (a map would hide them).
#[derive(Debug, Default)]
pub(super) struct Pairs(pub(super) Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;

        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    out.push(entry);
                }
                Ok(Pairs(out))
            }
        }

        d.deserialize_map(PairsVisitor)
    }
}
