//! Entry points for the `authority_frames` and `relay_frames` fuzz targets
//! in `proxy/fuzz`, compiled only with `--cfg fuzzing` (which `cargo fuzz`
//! sets for every crate it builds) and for this crate's tests, so the
//! targets reach the crate-private [`Rewriter`] and relay core without
//! making them public. Not part of this crate's API.

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

/// The frame relay's core never panics and keeps its output bounded, on
/// any client and server byte streams.
///
/// `data` = `[chunk, client_len_hi, client_len_lo, flags, client bytes..., server bytes...]`;
/// the client's bytes follow a valid preface and SETTINGS unless `flags & 1`;
/// the server's connection closes at the end if `flags & 2`.
pub fn relay_frames(data: &[u8]) {
    let [chunk, hi, lo, flags, rest @ ..] = data else {
        return;
    };
    let split = (usize::from(*hi) << 8 | usize::from(*lo)).min(rest.len());
    let (client, server) = rest.split_at(split);
    let mut input = Vec::new();
    if flags & 1 == 0 {
        input.extend_from_slice(PREFACE);
        input.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    }
    input.extend_from_slice(client);
    crate::relay::exercise(&input, server, usize::from(*chunk).max(1), flags & 2 != 0);
}
