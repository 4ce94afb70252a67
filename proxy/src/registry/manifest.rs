//! Manifests, indexes and descriptors: registry JSON parsed once, at the
//! boundary, into typed values.
//!
//! Input: bytes already capped and digest-checked by the caller. Output:
//! [`Manifest`] or a list of [`Descriptor`]s. Malformed JSON, a bad digest
//! string or a negative size is a typed `Malformed` error, never a panic
//! (serde_json also bounds nesting at 128 levels).
//!
//! A referrers index is read one entry at a time ([`parse_referrers_index`]):
//! a 4 MiB page holds some 18,000 descriptors, and those of other artifact
//! types are checked and dropped, never held all at once (as typed values
//! they would cost about three times the page, per discovery). Entries
//! without an `artifactType` are kept, for the caller to identify by the
//! manifest they name.

use std::borrow::Cow;
use std::collections::BTreeMap;

use pullgate_policy::Digest;
use serde::Deserialize;

use super::error::Kind;
use super::media_type;

/// An OCI content descriptor (image-spec `descriptor.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// Media type of the referenced content.
    pub(crate) media_type: String,
    /// Digest of the referenced content.
    pub(crate) digest: Digest,
    /// Size of the referenced content in bytes.
    pub(crate) size: u64,
    /// Artifact type, on descriptors in a referrers list and on artifact manifests.
    pub(crate) artifact_type: Option<String>,
    /// Annotations.
    pub(crate) annotations: BTreeMap<String, String>,
}

/// A manifest or index as pullgate reads it.
///
/// One shape for the OCI image manifest, the OCI artifact manifest (whose
/// `blobs` land in `layers`), the Docker v2 manifest, and the two index kinds
/// (whose entries land in `manifests`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The manifest's media type (its `mediaType`, else the response's `Content-Type`).
    pub(crate) media_type: String,
    /// `artifactType`, or else the config's media type (see [`parse_manifest`]).
    pub(crate) artifact_type: Option<String>,
    /// The config descriptor (image manifests only).
    pub(crate) config: Option<Descriptor>,
    /// `layers` of an image manifest, or `blobs` of an artifact manifest.
    pub(crate) layers: Vec<Descriptor>,
    /// `manifests` of an index.
    pub(crate) manifests: Vec<Descriptor>,
    /// The manifest this one refers to (signatures have one).
    pub(crate) subject: Option<Descriptor>,
    /// Annotations.
    pub(crate) annotations: BTreeMap<String, String>,
}

/// Why a document did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ParseError {
    /// Not JSON of the expected shape.
    Json(String),
    /// A descriptor digest that is not `<alg>:<hex>`.
    Digest(String),
    /// A media type pullgate does not read.
    UnsupportedMediaType(String),
    /// A required field is missing.
    Missing(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(e) => write!(f, "{e}"),
            Self::Digest(d) => write!(f, "bad digest {d:?}"),
            Self::UnsupportedMediaType(m) => write!(f, "unsupported media type {m:?}"),
            Self::Missing(what) => write!(f, "missing {what}"),
        }
    }
}

impl ParseError {
    pub(super) fn into_kind(self, what: &'static str) -> Kind {
        match self {
            Self::UnsupportedMediaType(media_type) => Kind::UnsupportedMediaType { media_type },
            other => Kind::Malformed {
                what,
                detail: other.to_string(),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    // u64: a negative size is a parse error, as it should be.
    size: u64,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    blobs: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    subject: Option<RawDescriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

impl TryFrom<RawDescriptor> for Descriptor {
    type Error = ParseError;

    fn try_from(raw: RawDescriptor) -> Result<Self, ParseError> {
        let digest = raw
            .digest
            .parse::<Digest>()
            .map_err(|_| ParseError::Digest(raw.digest.chars().take(80).collect()))?;
        Ok(Self {
            media_type: raw.media_type,
            digest,
            size: raw.size,
            artifact_type: raw.artifact_type.filter(|t| !t.is_empty()),
            annotations: raw.annotations.unwrap_or_default(),
        })
    }
}

fn descriptors(raw: Option<Vec<RawDescriptor>>) -> Result<Vec<Descriptor>, ParseError> {
    raw.unwrap_or_default()
        .into_iter()
        .map(Descriptor::try_from)
        .collect()
}

/// Parses a manifest or an index.
///
/// `content_type` is the response's `Content-Type`, used when the document has
/// no `mediaType` (Docker and OCI allow leaving it out).
///
/// The artifact type follows distribution-spec 1.1, "Listing Referrers"
/// (<https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#listing-referrers>):
/// > If the `artifactType` is empty or missing in the image manifest, the
/// > value of `artifactType` MUST be set to the config descriptor `mediaType`
/// > value.
pub(super) fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<Manifest, ParseError> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    let media_type = raw
        .media_type
        .filter(|m| !m.is_empty())
        .or_else(|| content_type.map(media_type_essence).map(str::to_owned))
        .ok_or(ParseError::Missing("mediaType"))?;
    let config = raw.config.map(Descriptor::try_from).transpose()?;
    let subject = raw.subject.map(Descriptor::try_from).transpose()?;
    let artifact_type = raw.artifact_type.filter(|t| !t.is_empty());
    match media_type.as_str() {
        media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => {
            let config = config.ok_or(ParseError::Missing("config"))?;
            let artifact_type = artifact_type.or_else(|| Some(config.media_type.clone()));
            Ok(Manifest {
                media_type,
                artifact_type,
                config: Some(config),
                layers: descriptors(raw.layers)?,
                manifests: Vec::new(),
                subject,
                annotations: raw.annotations.unwrap_or_default(),
            })
        }
        // image-spec v1.1.0-rc2, artifact.md
        // (https://github.com/opencontainers/image-spec/blob/v1.1.0-rc2/artifact.md):
        // "`artifactType` ... This property SHOULD be used and contain the
        // mediaType of the referenced artifact." SHOULD: absent is allowed,
        // and such a manifest simply matches no artifact-type filter.
        media_type::OCI_ARTIFACT_MANIFEST => Ok(Manifest {
            media_type,
            artifact_type,
            config: None,
            layers: descriptors(raw.blobs)?,
            manifests: Vec::new(),
            subject,
            annotations: raw.annotations.unwrap_or_default(),
        }),
        media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST => Ok(Manifest {
            media_type,
            artifact_type,
            config: None,
            layers: Vec::new(),
            manifests: descriptors(raw.manifests)?,
            subject,
            annotations: raw.annotations.unwrap_or_default(),
        }),
        _ => Err(ParseError::UnsupportedMediaType(
            media_type.chars().take(120).collect(),
        )),
    }
}

/// A descriptor of a referrers index, its strings borrowed from the page
/// (copied only when they hold JSON escapes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    #[serde(borrow)]
    media_type: Cow<'a, str>,
    #[serde(borrow)]
    digest: Cow<'a, str>,
    // u64: a negative size is a parse error, as it should be.
    size: u64,
    #[serde(borrow, default)]
    artifact_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    annotations: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

/// An image index with its entries left unparsed (each a slice of the page).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    #[serde(borrow, default)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    manifests: Option<Vec<&'a serde_json::value::RawValue>>,
}

/// Parses a referrers response or a referrers tag-schema index (an OCI
/// image index whose `manifests` are the referrers) and returns the
/// descriptors whose artifact type is one of `artifact_types`, and those
/// without one (some clients write tag-schema entries without it; the
/// caller identifies them by their manifest). Every descriptor is checked
/// (a bad digest anywhere makes the page malformed); only those returned
/// are copied out of `bytes`.
pub(super) fn parse_referrers_index(
    bytes: &[u8],
    artifact_types: &[&str],
) -> Result<Vec<Descriptor>, ParseError> {
    let index: Index<'_> =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    if let Some(m) = index.media_type.as_deref() {
        if m != media_type::OCI_INDEX {
            return Err(ParseError::UnsupportedMediaType(
                m.chars().take(120).collect(),
            ));
        }
    }
    let mut out = Vec::new();
    for raw in index.manifests.unwrap_or_default() {
        let entry: IndexEntry<'_> =
            serde_json::from_str(raw.get()).map_err(|e| ParseError::Json(e.to_string()))?;
        let digest = entry
            .digest
            .parse::<Digest>()
            .map_err(|_| ParseError::Digest(entry.digest.chars().take(80).collect()))?;
        let wanted = entry
            .artifact_type
            .as_deref()
            .is_none_or(|t| artifact_types.contains(&t));
        if !wanted {
            continue;
        }
        out.push(Descriptor {
            media_type: entry.media_type.into_owned(),
            digest,
            size: entry.size,
            artifact_type: entry.artifact_type.map(Cow::into_owned),
            annotations: entry
                .annotations
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        });
    }
    Ok(out)
}

/// `type/subtype` without parameters: `application/json; charset=utf-8` → `application/json`.
pub(super) fn media_type_essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e";

    #[test]
    fn image_manifest_takes_artifact_type_from_config() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.cncf.notary.signature","digest":"{D}","size":2}},"layers":[{{"mediaType":"application/jose+json","digest":"{D}","size":9}}],"subject":{{"mediaType":"{}","digest":"{D}","size":3}}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_MANIFEST
        );
        let m = parse_manifest(m.as_bytes(), None).unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.cncf.notary.signature")
        );
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.subject.unwrap().size, 3);
    }

    #[test]
    fn artifact_manifest_reads_blobs_and_may_lack_artifact_type() {
        let ok = format!(
            r#"{{"mediaType":"{}","artifactType":"t","blobs":[{{"mediaType":"application/cose","digest":"{D}","size":1}}]}}"#,
            media_type::OCI_ARTIFACT_MANIFEST
        );
        let m = parse_manifest(ok.as_bytes(), None).unwrap();
        assert_eq!(m.layers[0].media_type, "application/cose");
        let missing = format!(
            r#"{{"mediaType":"{}","blobs":[]}}"#,
            media_type::OCI_ARTIFACT_MANIFEST
        );
        let m = parse_manifest(missing.as_bytes(), None).unwrap();
        assert_eq!(m.artifact_type, None);
    }

    #[test]
    fn rejects_bad_digest_negative_size_and_unknown_type() {
        let bad = format!(
            r#"{{"mediaType":"{}","manifests":[{{"mediaType":"x","digest":"sha256:zz","size":1}}]}}"#,
            media_type::OCI_INDEX
        );
        assert!(matches!(
            parse_referrers_index(bad.as_bytes(), &["t"]),
            Err(ParseError::Digest(_))
        ));
        let neg = format!(r#"{{"manifests":[{{"mediaType":"x","digest":"{D}","size":-1}}]}}"#);
        assert!(matches!(
            parse_referrers_index(neg.as_bytes(), &["t"]),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_manifest(b"{}", Some("text/html")),
            Err(ParseError::UnsupportedMediaType(_))
        ));
        assert_eq!(
            parse_manifest(b"{}", None),
            Err(ParseError::Missing("mediaType"))
        );
    }

    #[test]
    fn referrers_index_keeps_the_wanted_types_and_untyped_entries_with_escapes_and_annotations() {
        let doc = format!(
            r#"{{"mediaType":"{}","manifests":[
                {{"mediaType":"m","digest":"{D}","size":1,"artifactType":"other"}},
                {{"mediaType":"m\u0031","digest":"{D}","size":2,"artifactType":"want","annotations":{{"k\"":"v\n"}}}},
                {{"mediaType":"m","digest":"{D}","size":3}}
            ]}}"#,
            media_type::OCI_INDEX
        );
        let got = parse_referrers_index(doc.as_bytes(), &["want"]).unwrap();
        // The wanted type, and the entry without a type (identified later).
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].media_type, "m1");
        assert_eq!(got[0].size, 2);
        assert_eq!(got[0].artifact_type.as_deref(), Some("want"));
        assert_eq!(
            got[0].annotations.get("k\"").map(String::as_str),
            Some("v\n")
        );
        assert_eq!((got[1].size, got[1].artifact_type.as_deref()), (3, None));
        let untyped_only = parse_referrers_index(doc.as_bytes(), &[]).unwrap();
        assert_eq!(untyped_only.len(), 1);
        assert_eq!(untyped_only[0].size, 3);
        // A bad digest in an entry of another type still makes the page malformed.
        let bad = doc.replacen(D, "sha256:zz", 1);
        assert!(matches!(
            parse_referrers_index(bad.as_bytes(), &["want"]),
            Err(ParseError::Digest(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,400}") {
            let _ = parse_manifest(s.as_bytes(), Some(media_type::OCI_MANIFEST));
            let _ = parse_referrers_index(s.as_bytes(), &["t"]);
        }

        #[test]
        fn parsing_json_shaped_input_never_panics(
            mt in proptest::sample::select(vec![
                media_type::OCI_MANIFEST, media_type::OCI_INDEX,
                media_type::OCI_ARTIFACT_MANIFEST, media_type::DOCKER_MANIFEST, "x"]),
            field in "[a-zA-Z]{0,12}",
            value in proptest::prelude::prop_oneof![
                proptest::prelude::Just("null".to_owned()),
                "-?[0-9]{1,25}",
                "\"[^\"\\\\]{0,20}\"",
                proptest::prelude::Just("[]".to_owned()),
                proptest::prelude::Just("{}".to_owned()),
            ],
        ) {
            let doc = format!(r#"{{"mediaType":"{mt}","{field}":{value},"config":{{"mediaType":"a","digest":"{D}","size":{value}}}}}"#);
            let _ = parse_manifest(doc.as_bytes(), None);
            let _ = parse_referrers_index(doc.as_bytes(), &["a"]);
        }
    }
}
