//! `WWW-Authenticate` values (RFC 9110 §11.6.1) never panic the challenge
//! parser, and the challenge picked among several values is one of them.
//!
//! Input layout: the header value (invalid UTF-8 replaced).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pullgate::fuzz_bridge::www_authenticate(&String::from_utf8_lossy(data));
});
