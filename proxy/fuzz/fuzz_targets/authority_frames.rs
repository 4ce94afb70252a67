//! The client → server frame and HPACK path of `pullgate-authority` never
//! panics, and never buffers more than its limits, on any byte stream
//! (`pullgate_authority::fuzz_bridge::frames`; input layout there).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pullgate_authority::fuzz_bridge::frames(data);
});
