//! Manifests and referrers indexes as a registry sends them: the manifest
//! parser (with the response's `Content-Type` as fallback media type) and
//! the referrers index parser never panic, and what they return holds
//! together (see `pullgate::fuzz_bridge::registry_manifest`).
//!
//! Input layout: one byte choosing the `Content-Type`, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.oci.artifact.manifest.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
    Some("text/html"),
];

fuzz_target!(|data: &[u8]| {
    let [selector, body @ ..] = data else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(*selector) % CONTENT_TYPES.len()];
    pullgate::fuzz_bridge::registry_manifest(body, content_type);
});
