//! A token endpoint's answer (distribution `token.md`, OAuth `access_token`)
//! never panics the parser, and a token it accepts is non-empty with a
//! lifetime of at most an hour.
//!
//! Input layout: the response body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pullgate::fuzz_bridge::token_response(data);
});
