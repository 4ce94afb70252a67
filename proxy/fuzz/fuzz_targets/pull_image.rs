//! The body of a CRI `PullImage` call: unframing and decoding never panic,
//! and a request that decodes, once pinned by appending
//! `image { image: "name@digest" }`, decodes to that digest in the same
//! repository with the same credentials (so the forwarded request is the
//! verified one, whatever else the kubelet's bytes hold).
//!
//! Input layout: the gRPC-framed message (5-byte prefix, then the message).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pullgate::fuzz_bridge::pull_image(data);
});
