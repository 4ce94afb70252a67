//! `notary::verify` never panics on any envelope, JWS or COSE, with or
//! without `tsa` anchors (so RFC 3161 tokens are parsed and checked too).
//!
//! `proxy/src/verify` is compiled in place (`#[path]`): its items are
//! crate-private to pullgate, and it depends only on `pullgate-policy` and
//! the crates listed in this crate's Cargo.toml. Input layout: one mode byte,
//! then the envelope. Mode bit 0: COSE (else JWS); bit 1: GlobalSign TSA
//! root as `tsa` anchor; bit 2: `afterCertExpiry`; bit 3: the envelope's own
//! chain (as parsed) is the `ca` anchor, so the fuzzer reaches the chain,
//! validity and timestamp checks.
#![no_main]

#[path = "../../src/verify/mod.rs"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod verify;

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use verify::notary::{self, Anchors, Options, MEDIA_TYPE_COSE, MEDIA_TYPE_JWS};
use verify::x509::parse_certificate_file;
use verify::VerifyTimestamp;

const GLOBALSIGN_R6: &[u8] = include_bytes!(
    "../../../tests/vectors/notation-go/truststore/x509/tsa/test-timestamp/globalsignRoot.cer"
);

fuzz_target!(|data: &[u8]| {
    let [mode, envelope @ ..] = data else {
        return;
    };
    let media_type = if mode & 1 == 1 {
        MEDIA_TYPE_COSE
    } else {
        MEDIA_TYPE_JWS
    };
    let tsa = if mode & 2 == 2 {
        parse_certificate_file(GLOBALSIGN_R6).unwrap_or_default()
    } else {
        Vec::new()
    };
    let own = if mode & 8 == 8 {
        if media_type == MEDIA_TYPE_COSE {
            notary::cose::parse(envelope).map(|e| e.chain).unwrap_or_default()
        } else {
            notary::jws::parse(envelope).map(|e| e.chain).unwrap_or_default()
        }
    } else {
        Vec::new()
    };
    let anchors = Anchors {
        ca: own.iter().collect(),
        signing_authority: own.iter().collect(),
        tsa: tsa.iter().collect(),
    };
    let options = Options {
        verify_timestamp: if mode & 4 == 4 {
            VerifyTimestamp::AfterCertExpiry
        } else {
            VerifyTimestamp::Always
        },
    };
    // 2025-01-01: most vector certificates are valid then.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    let report = notary::verify(media_type, envelope, &anchors, options, &crate::verify::revocation::NoRevocationData, now);
    assert!(!report.checks.is_empty());
});
