//! The frame relay's core (`pullgate-authority`) never panics and keeps
//! its output bounded, on any client and server byte streams
//! (`pullgate_authority::fuzz_bridge::relay_frames`; input layout there).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pullgate_authority::fuzz_bridge::relay_frames(data);
});
