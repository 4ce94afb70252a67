//! `Link` headers of referrers pages (RFC 8288) never panic the parser; the
//! `rel="next"` target it finds is part of the header, and resolving it
//! against a registry endpoint yields only absolute http(s) URIs.
//!
//! Input layout: the header value (invalid UTF-8 replaced).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pullgate::fuzz_bridge::link(&String::from_utf8_lossy(data));
});
