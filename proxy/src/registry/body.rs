//! The registry's view of the one capped reader (`crate::capped_body`) every
//! response body goes through, and the digest check of what was read. A leaf
//! of `registry`: no requests here.

use pullgate_policy::Digest;

use super::error::Kind;

pub(super) use crate::capped_body::{content_length, read_capped, ReadError};

/// The registry error for a failed capped read.
pub(super) fn read_error_kind(e: ReadError) -> Kind {
    match e {
        ReadError::TooLarge { limit } => Kind::TooLarge { limit },
        ReadError::Body(e) => Kind::Body(e),
    }
}

/// Checks that `bytes` are exactly what `expected` names.
pub(super) fn verify_digest(expected: &Digest, bytes: &[u8]) -> Result<(), Kind> {
    if expected.matches(bytes) {
        Ok(())
    } else {
        Err(Kind::DigestMismatch {
            expected: expected.clone(),
            got: Digest::sha256_of(bytes),
        })
    }
}
