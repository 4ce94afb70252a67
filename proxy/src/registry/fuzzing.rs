//! The registry parsers the fuzz targets in `proxy/fuzz` drive, reached
//! through [`crate::fuzz_bridge`]. Compiled only with `--cfg fuzzing`
//! (which `cargo fuzz` sets), so nothing here is part of pullgate's API.
//!
//! Each function runs one parser of what a registry sends — manifests and
//! referrers indexes, token responses, `WWW-Authenticate` and `Link` headers —
//! on arbitrary input and checks what must hold of its output, so a fuzzer
//! finds panics and broken invariants alike. They panic (`assert!`) on a
//! broken invariant: that is how libFuzzer learns of it.

use std::collections::HashSet;

use http::{HeaderValue, Uri};
use pullgate_policy::Digest;

use super::auth::{parse_challenges, parse_token_response, Challenge, MAX_TOKEN_LIFETIME};
use super::hosts::Endpoint;
use super::manifest::{parse_manifest, parse_referrers_index, Descriptor};
use super::media_type;
use super::referrers::next_link;
use super::transport::resolve_reference;

/// The artifact type the referrers index is filtered for (as the gate asks).
const NOTARY: &str = "application/vnd.cncf.notary.signature";

/// A descriptor's digest prints as it parsed.
fn check_descriptor(d: &Descriptor) {
    let again: Result<Digest, _> = d.digest.to_string().parse();
    assert_eq!(again.ok().as_ref(), Some(&d.digest));
}

/// [`parse_manifest`] with the `Content-Type` `content_type`, and
/// [`parse_referrers_index`] for the Notary Project artifact type (and untyped entries), on `bytes`.
pub(crate) fn manifest_and_index(bytes: &[u8], content_type: Option<&str>) {
    if let Ok(m) = parse_manifest(bytes, content_type) {
        assert!(!m.media_type.is_empty());
        if m.media_type == media_type::OCI_MANIFEST || m.media_type == media_type::DOCKER_MANIFEST {
            // An image manifest has a config, and takes its artifact type from it.
            assert!(m.config.is_some() && m.artifact_type.is_some());
        }
        for d in m
            .layers
            .iter()
            .chain(&m.manifests)
            .chain(&m.config)
            .chain(&m.subject)
        {
            check_descriptor(d);
        }
    }
    if let Ok(list) = parse_referrers_index(bytes, &[NOTARY]) {
        // Every descriptor is at least `{"mediaType":"","digest":"a:b","size":0}`.
        assert!(list.len() <= bytes.len() / 30 + 1);
        for d in &list {
            check_descriptor(d);
            assert!(d.artifact_type.as_deref().is_none_or(|t| t == NOTARY));
        }
    }
}

/// [`parse_token_response`] on `bytes`.
pub(crate) fn token_response(bytes: &[u8]) {
    if let Ok((token, lifetime)) = parse_token_response(bytes) {
        assert!(!token.is_empty());
        assert!(lifetime <= MAX_TOKEN_LIFETIME);
    }
}

/// [`parse_challenges`] on `header`, and [`Challenge::pick`] over its
/// `;`-separated parts as separate header values.
pub(crate) fn www_authenticate(header: &str) {
    let all = parse_challenges(header);
    // Each challenge starts with a scheme of at least five bytes.
    assert!(all.len() <= header.len() / 5 + 1);
    for c in &all {
        for p in [&c.realm, &c.service, &c.scope].into_iter().flatten() {
            assert!(p.len() <= header.len());
        }
    }
    let values: Vec<HeaderValue> = header
        .split(';')
        .filter_map(|v| HeaderValue::from_str(v).ok())
        .collect();
    if let Some(c) = Challenge::pick(values.iter()) {
        let from_parts: Vec<Challenge> = header.split(';').flat_map(parse_challenges).collect();
        assert!(from_parts.contains(&c));
    }
}

/// [`next_link`] on `header`, and the target resolved against a registry
/// endpoint as the referrers walk resolves it.
pub(crate) fn link(header: &str) {
    let Some(target) = next_link(header) else {
        return;
    };
    assert!(!target.is_empty() && header.contains(target.as_str()));
    let plain: HashSet<String> = ["127.0.0.1:5000".to_owned()].into_iter().collect();
    for host in ["127.0.0.1:5000", "registry.example"] {
        let Ok(ep) = Endpoint::default_for(host, &plain) else {
            continue;
        };
        let Ok(base) = format!("{}{}", ep.origin(), ep.base_path).parse::<Uri>() else {
            continue;
        };
        if let Some(uri) = resolve_reference(&base, &target) {
            // Only absolute http(s) URIs come out.
            assert!(matches!(uri.scheme_str(), Some("http" | "https")));
            assert!(uri.authority().is_some());
        }
    }
}
