//! Entry point for the `authority_frames` fuzz target in `proxy/fuzz`,
//! compiled only with `--cfg fuzzing` (which `cargo fuzz` sets for every
//! crate it builds), so the target reaches the crate-private [`Rewriter`]
//! without making it public. Not part of this crate's API.

use crate::rewriter::{Rewriter, OUT_HIGH_WATER, PREFACE};
use crate::AuthorityLimits;

/// The client → server frame and HPACK path never panics, and never emits
/// more than its limits allow per call, on any byte stream.
///
/// `data` = `[mode, chunk, server_len, server bytes..., client bytes...]`.
pub fn frames(data: &[u8]) {
    let [mode, chunk, server_len, rest @ ..] = data else {
        return;
    };
    let (server, client) = rest.split_at(usize::from(*server_len).min(rest.len()));
    let mut rewriter = Rewriter::new(AuthorityLimits {
        max_header_block: 4096,
        max_header_list: 4096,
        max_table_size: 8192,
    });
    // What the server wrote: its SETTINGS change the frame and table limits.
    rewriter.observe_server(server);
    let mut out = Vec::new();
    // Most inputs start after a valid preface and SETTINGS, so that the
    // fuzzer spends its time in frames and HPACK, not in the preface check.
    if mode & 1 == 0 {
        let mut start = PREFACE.to_vec();
        start.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(rewriter.feed(&start, &mut out), Ok(start.len()));
    }
    for mut piece in client.chunks(usize::from(*chunk).max(1)) {
        // Fed as `AuthorityRewrite` does: drain, then re-feed the rest.
        while !piece.is_empty() {
            out.clear();
            match rewriter.feed(piece, &mut out) {
                Ok(consumed) => {
                    assert!(consumed > 0, "no progress");
                    // Output per call: the high-water mark, the input, and
                    // one re-encoded header block with its framing.
                    assert!(out.len() <= OUT_HIGH_WATER + piece.len() + 2 * 4096);
                    piece = &piece[consumed..];
                }
                Err(error) => {
                    let _ = rewriter.goaway(&error);
                    return;
                }
            }
        }
    }
}
