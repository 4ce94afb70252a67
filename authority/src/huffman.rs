//! HPACK Huffman decoding (RFC 7541 §5.2, code of Appendix B) with a
//! transition table computed at compile time.
//!
//! Input: the octets of one Huffman-coded string literal. Output: the decoded
//! octets, appended to a caller's buffer (at most 8/5 of the input length,
//! since the shortest code is 5 bits), or [`HuffmanError`]. No allocation
//! other than the output's growth, no panic on any input.
//!
//! # Why hand-written
//! `loona-hpack`, which decodes the rest of HPACK for us, rebuilds its
//! Huffman table (nested `HashMap`s) for every Huffman-coded string and then
//! decodes bit by bit through hash lookups: 97% of the instructions the
//! rewrite step added per request, since h2 and grpc-go send `:path`
//! Huffman-coded in every request. h2 has a table-driven decoder but does
//! not export it; the crate that publishes one (`httlib-huffman`) is
//! unmaintained since 2021 and allocates for every padding check. So this
//! module decodes Huffman strings itself, and `hpack::scan` hands
//! `loona-hpack` blocks whose strings are already raw.
//!
//! # How
//! The code's binary tree has 257 leaves (the octets and EOS), so 256 inner
//! nodes; a node id fits a `u8`. [`DECODE`] has, for every inner node and
//! every 4-bit input, the node reached after those 4 bits, the symbol
//! completed on the way (at most one: the shortest code has 5 bits), and
//! whether the bits since the last symbol are a valid end of string (padding
//! of at most 7 one-bits). It is computed by a `const fn` from [`CODES`], the
//! RFC's table, so a malformed table fails the build, not a request.

/// RFC 7541 Appendix B: `(code, length in bits)` of octets 0 to 255, then of
/// EOS (256), the code right-aligned as in the RFC's hex column.
#[rustfmt::skip]
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28),
    (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28),
    (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11),
    (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6),
    (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7),
    (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7),
    (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13),
    (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5),
    (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15),
    (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23),
    (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19),
    (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25),
    (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26),
    (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    (0x3fffffff, 30),
];

const EOS: u16 = 256;

/// A Huffman-coded string that RFC 7541 §5.2 says to reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// > A Huffman-encoded string literal containing the EOS symbol MUST be
    /// > treated as a decoding error.
    #[error("Huffman-coded string contains EOS")]
    Eos,
    /// > A padding strictly longer than 7 bits MUST be treated as a decoding
    /// > error. A padding not corresponding to the most significant bits of
    /// > the code for the EOS symbol MUST be treated as a decoding error.
    #[error("Huffman-coded string ends with invalid padding")]
    Padding,
}

/// One entry of [`DECODE`]: where 4 more bits lead from an inner node.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Inner node reached (0 is the root: a symbol just ended there).
    next: u8,
    /// Symbol completed within these 4 bits, if [`EMIT`] is set.
    symbol: u8,
    flags: u8,
}

/// A symbol was completed within the 4 bits.
const EMIT: u8 = 1;
/// The 4 bits complete EOS: the string is invalid.
const FAIL: u8 = 2;
/// Ending the string at `next` is valid: `next` is the root, or lies on
/// EOS's all-ones path at depth 1 to 7 (that is, valid padding).
const ACCEPT: u8 = 4;

/// Inner-node child reference in [`build`]: a leaf is `LEAF | symbol`, an
/// inner node its id (never 0, the root), and 0 means "no child yet".
const LEAF: u16 = 0x8000;

/// The transition table: `DECODE[node][4 bits]`.
static DECODE: [[Step; 16]; 256] = build();

/// Builds [`DECODE`] from [`CODES`]. Runs at compile time only: any
/// inconsistency in the table (a code that is a prefix of another, a tree
/// that is not full) panics the build.
const fn build() -> [[Step; 16]; 256] {
    // children[node][bit]; depth of each inner node along EOS's all-ones path
    // (u8::MAX when the node is off that path).
    let mut children = [[0u16; 2]; 256];
    let mut ones_depth = [u8::MAX; 256];
    ones_depth[0] = 0;
    let mut inner = 1usize;
    let mut symbol = 0usize;
    while symbol < CODES.len() {
        let (code, len) = CODES[symbol];
        assert!(len >= 5 && len <= 30);
        let mut node = 0usize;
        let mut bit = len;
        while bit > 0 {
            bit -= 1;
            let b = ((code >> bit) & 1) as usize;
            let child = children[node][b];
            assert!(child & LEAF == 0, "a code is a prefix of another");
            if bit == 0 {
                assert!(child == 0, "a code is a prefix of another");
                children[node][b] = LEAF | symbol as u16;
            } else if child == 0 {
                assert!(inner < 256, "more inner nodes than a full tree has");
                children[node][b] = inner as u16;
                ones_depth[inner] = if b == 1 && ones_depth[node] != u8::MAX {
                    ones_depth[node] + 1
                } else {
                    u8::MAX
                };
                node = inner;
                inner += 1;
            } else {
                node = child as usize;
            }
        }
        symbol += 1;
    }
    assert!(inner == 256, "the code tree is not full");

    let mut table = [[Step {
        next: 0,
        symbol: 0,
        flags: 0,
    }; 16]; 256];
    let mut start = 0usize;
    while start < 256 {
        let mut nibble = 0usize;
        while nibble < 16 {
            let mut node = start;
            let mut step = Step {
                next: 0,
                symbol: 0,
                flags: 0,
            };
            let mut bit = 4;
            while bit > 0 {
                bit -= 1;
                let child = children[node][(nibble >> bit) & 1];
                assert!(child != 0, "the code tree is not full");
                if child & LEAF == 0 {
                    node = child as usize;
                    continue;
                }
                let leaf = child & !LEAF;
                if leaf == EOS {
                    step.flags |= FAIL;
                } else {
                    assert!(step.flags & EMIT == 0, "two symbols in 4 bits");
                    step.flags |= EMIT;
                    step.symbol = leaf as u8;
                }
                node = 0;
            }
            step.next = node as u8;
            if ones_depth[node] <= 7 {
                step.flags |= ACCEPT;
            }
            table[start][nibble] = step;
            nibble += 1;
        }
        start += 1;
    }
    table
}

/// Decodes the Huffman-coded `input`, appending the octets to `out`.
///
/// # Errors
/// [`HuffmanError`] when `input` contains EOS or does not end in valid
/// padding; `out` then holds a partial result, for the caller to discard.
pub(crate) fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    out.reserve(input.len().saturating_mul(8) / 5);
    let mut node = 0u8;
    let mut accept = true;
    for &octet in input {
        for nibble in [octet >> 4, octet & 0x0f] {
            // node < 256 and nibble < 16: always in bounds.
            let step = DECODE[usize::from(node)][usize::from(nibble)];
            if step.flags & FAIL != 0 {
                return Err(HuffmanError::Eos);
            }
            if step.flags & EMIT != 0 {
                out.push(step.symbol);
            }
            node = step.next;
            accept = step.flags & ACCEPT != 0;
        }
    }
    if accept {
        Ok(())
    } else {
        Err(HuffmanError::Padding)
    }
}

/// Huffman-codes `octets` with [`CODES`], padding with one-bits. For tests
/// only: the rewrite never Huffman-codes what it sends.
#[cfg(test)]
pub(crate) fn encode(octets: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bits: u64 = 0;
    let mut len = 0;
    for &o in octets {
        let (code, code_len) = CODES[usize::from(o)];
        bits = bits << code_len | u64::from(code);
        len += code_len;
        while len >= 8 {
            len -= 8;
            out.push((bits >> len) as u8);
        }
    }
    if len > 0 {
        out.push((bits << (8 - len) | (0xff >> len)) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decoded(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, &mut out).map(|()| out)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The Huffman-coded strings of RFC 7541 C.4 (requests) and C.6
    /// (responses).
    #[test]
    fn rfc7541_appendix_c_strings() {
        let vectors = [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
            ("640e ff", "307"),
            ("d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("9bd9 ab", "gzip"),
            (
                "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ];
        for (coded, plain) in vectors {
            assert_eq!(decoded(&hex(coded)).unwrap(), plain.as_bytes(), "{plain}");
            assert_eq!(encode(plain.as_bytes()), hex(coded), "{plain}");
        }
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=u8::MAX).collect();
        assert_eq!(decoded(&encode(&all)).unwrap(), all);
        for o in 0..=u8::MAX {
            assert_eq!(decoded(&encode(&[o])).unwrap(), [o]);
        }
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn padding_rules() {
        // 'a' is 00011 (5 bits): three one-bits of padding are valid.
        assert_eq!(decoded(&[0b0001_1111]).unwrap(), b"a");
        // Padding that is not the start of EOS (all ones).
        assert_eq!(decoded(&[0b0001_1000]), Err(HuffmanError::Padding));
        assert_eq!(decoded(&[0b0001_1011]), Err(HuffmanError::Padding));
        // Eight or more bits of padding: a whole octet of ones after 'a'
        // padded to the octet, or a lone 0xff.
        assert_eq!(decoded(&[0b0001_1111, 0xff]), Err(HuffmanError::Padding));
        assert_eq!(decoded(&[0xff]), Err(HuffmanError::Padding));
        // Seven one-bits after a symbol ending on bit 1: valid.
        // '0' is 00000; "0" then "0" ends at bit 10, 6 bits of padding.
        assert_eq!(decoded(&[0x00, 0x3f]).unwrap(), b"00");
        // A truncated code: 13-bit code of octet 0 cut after 8 bits.
        assert_eq!(decoded(&[0xff]), Err(HuffmanError::Padding));
        assert_eq!(decoded(&[0xfe]), Err(HuffmanError::Padding));
    }

    #[test]
    fn eos_in_string_is_an_error() {
        // EOS: 30 one-bits, here followed by two padding bits.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        // After a symbol.
        assert_eq!(
            decoded(&[0x1f, 0xff, 0xff, 0xff, 0xfe]),
            Err(HuffmanError::Eos)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn round_trip(octets in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decoded(&encode(&octets)).unwrap(), octets);
        }

        /// On any input, accepts and decodes exactly what `loona-hpack`'s
        /// own (bit by bit) decoder does.
        #[test]
        fn agrees_with_loona_hpack(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let theirs = loona_hpack::huffman::HuffmanDecoder::new().decode(&input);
            prop_assert_eq!(decoded(&input).ok(), theirs.ok());
        }

        /// Same, on inputs that are mostly valid: a coded string with one
        /// octet changed, cut or extended.
        #[test]
        fn agrees_with_loona_hpack_near_valid(
            octets in proptest::collection::vec(any::<u8>(), 1..40),
            at in any::<usize>(),
            byte in any::<u8>(),
            edit in 0u8..3,
        ) {
            let mut input = encode(&octets);
            let at = at % input.len();
            match edit {
                0 => input[at] = byte,
                1 => input.truncate(at),
                _ => input.push(byte),
            }
            let theirs = loona_hpack::huffman::HuffmanDecoder::new().decode(&input);
            prop_assert_eq!(decoded(&input).ok(), theirs.ok());
        }
    }
}
