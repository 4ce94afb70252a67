//! Entry points for the fuzz targets in `proxy/fuzz`, compiled only with
//! `--cfg fuzzing` (which `cargo fuzz` sets for every crate it builds), so
//! the targets can reach crate-private parsers without making them `pub`
//! (as h2's `fuzz_bridge`). Not part of pullgate's API.
//!
//! Each function feeds arbitrary bytes to one parser of what pullgate reads
//! from the network and checks what must hold of the result; a broken
//! invariant panics, which is how libFuzzer learns of it.

use bytes::Bytes;
use pullgate_policy::Digest;

use crate::cri::grpc::unframe;
use crate::cri::pull_image::{decode, with_image};

/// A registry manifest or index (`Content-Type` chosen by `content_type`)
/// and a referrers index, from the same bytes.
pub fn registry_manifest(bytes: &[u8], content_type: Option<&str>) {
    crate::registry::fuzzing::manifest_and_index(bytes, content_type);
}

/// A token endpoint's JSON answer.
pub fn token_response(bytes: &[u8]) {
    crate::registry::fuzzing::token_response(bytes);
}

/// A `WWW-Authenticate` header value.
pub fn www_authenticate(header: &str) {
    crate::registry::fuzzing::www_authenticate(header);
}

/// A `Link` header value of a referrers page.
pub fn link(header: &str) {
    crate::registry::fuzzing::link(header);
}

/// The body of a `PullImage` call as the kubelet sends it: one gRPC frame
/// holding a `PullImageRequest`. When it decodes, the request pullgate
/// forwards (the original bytes with `image { image: "name@digest" }`
/// appended) must decode to the pinned image with the same credentials.
pub fn pull_image(framed: &[u8]) {
    let Ok(message) = unframe(Bytes::copy_from_slice(framed)) else {
        return;
    };
    let Ok(decoded) = decode(&message) else {
        return;
    };
    let digest = Digest::sha256_of(framed);
    let pinned = decoded.image.pinned(digest.clone());
    let forwarded = with_image(&message, &pinned.to_string());
    let again = match decode(&forwarded) {
        Ok(d) => d,
        Err(e) => panic!("the pinned request does not decode: {e}"),
    };
    assert_eq!(again.image.digest(), Some(&digest));
    assert_eq!(again.image.repository(), decoded.image.repository());
    assert!(again.credentials == decoded.credentials);
}
