//! The HPACK jobs the decoding crate does not do well enough for us: walking
//! a header block to learn each field's representation (and where the
//! leading dynamic table size updates end) while replacing each Huffman-coded
//! string by its raw octets, and encoding fields without the dynamic table.
//!
//! Decoding proper (table lookups, insertion, eviction) stays in
//! `loona-hpack`; it is handed [`Scan::plain`], the block's field
//! representations with every string literal raw, so its own Huffman
//! decoder (which rebuilds its table for every string, see [`super::huffman`])
//! never runs. Both parse the same representations: the walker copies every
//! integer as it was sent and only re-writes string literals, so the two
//! cannot disagree about fields without one of them reporting an error.

use super::huffman;
use super::AuthorityError;

/// What [`scan`] learned about a header block.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Dynamic table size updates at the start of the block, in order.
    pub(crate) size_updates: Vec<usize>,
    /// One entry per field: `true` when it was sent "never indexed".
    pub(crate) never_indexed: Vec<bool>,
    /// The field representations (everything after the size updates), each
    /// as the client sent it except that Huffman-coded string literals are
    /// raw. At most 8/5 of the block's length (the shortest Huffman code
    /// has 5 bits), plus one octet per string for a longer length prefix.
    pub(crate) plain: Vec<u8>,
    /// Scratch space for one decoded Huffman string.
    huffman: Vec<u8>,
}

impl Scan {
    fn clear(&mut self) {
        self.size_updates.clear();
        self.never_indexed.clear();
        self.plain.clear();
    }
}

/// Walks `block`, recording each field's representation into `scan` and
/// writing the fields with raw strings into [`Scan::plain`].
///
/// > A change in the maximum size of the dynamic table is signaled via a
/// > dynamic table size update. This dynamic table size update MUST occur at
/// > the beginning of the first header block following the change to the
/// > dynamic table size.
/// > ([RFC 7541 §4.2](https://www.rfc-editor.org/rfc/rfc7541#section-4.2))
///
/// h2 rejects a size update after the first field, and so do we.
///
/// > The new maximum size MUST be lower than or equal to the limit determined
/// > by the protocol using HPACK.
/// > ([RFC 7541 §6.3](https://www.rfc-editor.org/rfc/rfc7541#section-6.3))
///
/// # Errors
/// A truncated or overlong representation, an invalid Huffman-coded string,
/// a size update after a field, or a size update above `max_table_size`.
pub(crate) fn scan(
    block: &[u8],
    max_table_size: usize,
    scan: &mut Scan,
) -> Result<(), AuthorityError> {
    scan.clear();
    let mut at = 0;
    let mut seen_field = false;
    while let Some(&first) = block.get(at) {
        let rest = block.get(at..).unwrap_or_default();
        let used = if first & 0x80 != 0 {
            // Indexed field: 1xxxxxxx
            scan.never_indexed.push(false);
            let used = decode_int(rest, 7)?.1;
            scan.plain
                .extend_from_slice(rest.get(..used).unwrap_or_default());
            used
        } else if first & 0x40 != 0 {
            // Literal with incremental indexing: 01xxxxxx
            scan.never_indexed.push(false);
            plain_literal(rest, 6, scan)?
        } else if first & 0x20 != 0 {
            // Dynamic table size update: 001xxxxx
            if seen_field {
                return Err(AuthorityError::TableSizeUpdateNotAtStart);
            }
            let (size, used) = decode_int(rest, 5)?;
            if size > max_table_size {
                return Err(AuthorityError::TableSizeTooLarge {
                    requested: size,
                    max: max_table_size,
                });
            }
            scan.size_updates.push(size);
            at += used;
            continue;
        } else {
            // Literal without indexing (0000xxxx) or never indexed (0001xxxx).
            scan.never_indexed.push(first & 0x10 != 0);
            plain_literal(rest, 4, scan)?
        };
        seen_field = true;
        at += used;
    }
    Ok(())
}

/// Copies the literal representation at the start of `buf`, whose name
/// index has `prefix` bits, to [`Scan::plain`] with raw strings; returns its
/// length in `buf`.
fn plain_literal(buf: &[u8], prefix: u8, scan: &mut Scan) -> Result<usize, AuthorityError> {
    let (name_index, mut used) = decode_int(buf, prefix)?;
    scan.plain
        .extend_from_slice(buf.get(..used).unwrap_or_default());
    if name_index == 0 {
        used += plain_string(buf.get(used..).unwrap_or_default(), scan)?;
    }
    used += plain_string(buf.get(used..).unwrap_or_default(), scan)?;
    Ok(used)
}

/// Copies the string literal (RFC 7541 §5.2) at the start of `buf` to
/// [`Scan::plain`], decoding it if it is Huffman-coded; returns its length
/// in `buf`.
fn plain_string(buf: &[u8], scan: &mut Scan) -> Result<usize, AuthorityError> {
    let (len, used) = decode_int(buf, 7)?;
    let total = used
        .checked_add(len)
        .ok_or(AuthorityError::HpackMalformed)?;
    let whole = buf.get(..total).ok_or(AuthorityError::HpackMalformed)?;
    let huffman_coded = whole.first().is_some_and(|&b| b & 0x80 != 0);
    if huffman_coded {
        let coded = whole.get(used..).unwrap_or_default();
        scan.huffman.clear();
        huffman::decode(coded, &mut scan.huffman).map_err(AuthorityError::Huffman)?;
        encode_string(&mut scan.plain, &scan.huffman);
    } else {
        scan.plain.extend_from_slice(whole);
    }
    Ok(total)
}

/// Most continuation octets accepted in an integer: 4 gives values up to
/// 2^28, far beyond any limit we enforce.
const MAX_INT_CONTINUATIONS: usize = 4;

/// Decodes an HPACK integer with an N-bit prefix (RFC 7541 §5.1).
/// Returns (value, octets used).
///
/// > Integer encodings that exceed implementation limits -- in value or
/// > octet length -- MUST be treated as decoding errors.
fn decode_int(buf: &[u8], prefix: u8) -> Result<(usize, usize), AuthorityError> {
    let first = *buf.first().ok_or(AuthorityError::HpackMalformed)?;
    let mask = u8::MAX >> (8 - prefix);
    let mut value = usize::from(first & mask);
    if value < usize::from(mask) {
        return Ok((value, 1));
    }
    for (i, &octet) in buf.iter().enumerate().skip(1).take(MAX_INT_CONTINUATIONS) {
        value += usize::from(octet & 0x7f) << (7 * (i - 1));
        if octet & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(AuthorityError::HpackMalformed)
}

/// Encodes an HPACK integer with an N-bit prefix and the given high bits.
fn encode_int(out: &mut Vec<u8>, mut value: usize, prefix: u8, high_bits: u8) {
    let mask = u8::MAX >> (8 - prefix);
    let max = usize::from(mask);
    if value < max {
        // value < mask <= 255, so the cast is exact.
        out.push(high_bits | value as u8);
        return;
    }
    out.push(high_bits | mask);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// Encodes one field without touching any dynamic table.
///
/// - A field that is in the static table, name and value, and was not sent
///   "never indexed" becomes an indexed field (`1xxxxxxx`) referring to it:
///   one octet, for `:method: POST` or `:scheme: http` in every request.
/// - Any other field becomes a literal "without indexing" (`0000`), or
///   "never indexed" (`0001`) when the client sent it so:
///
/// > Intermediaries MUST use the same representation for encoding this header
/// > field.
/// > ([RFC 7541 §6.2.3](https://www.rfc-editor.org/rfc/rfc7541#section-6.2.3))
///
/// The literal's name refers to the static table when it is there (never to
/// the dynamic table); strings are sent raw, without Huffman coding.
pub(crate) fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], never_indexed: bool) {
    let found = static_lookup(name, value);
    if let (Some((_, Some(index))), false) = (found, never_indexed) {
        encode_int(out, index, 7, 0x80);
        return;
    }
    let high_bits = if never_indexed { 0x10 } else { 0x00 };
    match found {
        Some((index, _)) => encode_int(out, index, 4, high_bits),
        None => {
            out.push(high_bits);
            encode_string(out, name);
        }
    }
    encode_string(out, value);
}

/// The HPACK static table (RFC 7541 Appendix A); entry `i` is index `i + 1`.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Longest name in [`STATIC_TABLE`] plus one.
const NAME_LEN_LIMIT: usize = 28;

/// For each name length, the entries of [`STATIC_TABLE`] that are the first
/// with their name (bit `i`: entry `i`). Computed at compile time.
static FIRST_NAMES_BY_LEN: [u64; NAME_LEN_LIMIT] = first_names_by_len();

const fn first_names_by_len() -> [u64; NAME_LEN_LIMIT] {
    let mut by_len = [0u64; NAME_LEN_LIMIT];
    let mut i = 0;
    while i < STATIC_TABLE.len() {
        let name = STATIC_TABLE[i].0;
        // Entries with the same name are adjacent in the table.
        if i == 0 || !const_eq(STATIC_TABLE[i - 1].0, name) {
            by_len[name.len()] |= 1 << i;
        }
        i += 1;
    }
    by_len
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Where `name` is in the static table: the index of its first entry, and
/// the index of the entry with both `name` and `value`, if any.
fn static_lookup(name: &[u8], value: &[u8]) -> Option<(usize, Option<usize>)> {
    let mut candidates = FIRST_NAMES_BY_LEN.get(name.len()).copied().unwrap_or(0);
    while candidates != 0 {
        let first = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        if STATIC_TABLE.get(first).is_some_and(|&(n, _)| n == name) {
            let full = STATIC_TABLE
                .iter()
                .enumerate()
                .skip(first)
                .take_while(|&(_, &(n, _))| n == name)
                .find(|&(_, &(_, v))| v == value)
                .map(|(entry, _)| entry + 1);
            return Some((first + 1, full));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_table_matches_the_decoder() {
        // Each entry decodes, in a fresh decoder, to what our table says:
        // this checks the table against loona-hpack's.
        for (entry, &(name, value)) in STATIC_TABLE.iter().enumerate() {
            let index = entry + 1;
            let mut out = Vec::new();
            encode_int(&mut out, index, 7, 0x80);
            let decoded = loona_hpack::Decoder::new().decode(&out).unwrap();
            assert_eq!(decoded, vec![(name.to_vec(), value.to_vec())], "{index}");
            assert_eq!(
                static_lookup(name, value).map(|(_, full)| full),
                Some(Some(index))
            );
        }
        assert_eq!(
            STATIC_TABLE.iter().map(|(n, _)| n.len()).max(),
            Some(NAME_LEN_LIMIT - 1)
        );
        assert!(static_lookup(b"te", b"trailers").is_none());
        assert!(static_lookup(b"x-path", b"/").is_none());
        assert_eq!(static_lookup(b":path", b"/v1/x"), Some((4, None)));
        assert_eq!(static_lookup(b":status", b"500"), Some((8, Some(14))));
    }

    #[test]
    fn fields_round_trip_through_the_decoder() {
        // Static names with their static value, another value, never
        // indexed or not; and names outside the table.
        let mut fields: Vec<(&[u8], &[u8])> = STATIC_TABLE.to_vec();
        fields.extend(STATIC_TABLE.iter().map(|&(n, _)| (n, &b"v"[..])));
        fields.extend([(&b"te"[..], &b"trailers"[..]), (b"grpc-timeout", b"")]);
        for (name, value) in fields {
            for never in [false, true] {
                let mut out = Vec::new();
                encode_field(&mut out, name, value, never);
                let decoded = loona_hpack::Decoder::new().decode(&out).unwrap();
                assert_eq!(decoded, vec![(name.to_vec(), value.to_vec())]);
                let indexed = out[0] & 0x80 != 0;
                let in_table = STATIC_TABLE.contains(&(name, value));
                assert_eq!(indexed, in_table && !never, "{name:?} {value:?} {never}");
                if !indexed {
                    assert_eq!(out[0] & 0xf0, if never { 0x10 } else { 0x00 });
                }
            }
        }
    }

    #[test]
    fn integers_round_trip() {
        for prefix in 1..=8 {
            for value in [
                0,
                1,
                14,
                15,
                16,
                30,
                31,
                126,
                127,
                128,
                255,
                300,
                16_383,
                1 << 20,
            ] {
                let mut out = Vec::new();
                encode_int(&mut out, value, prefix, 0);
                assert_eq!(decode_int(&out, prefix).unwrap(), (value, out.len()));
            }
        }
    }

    #[test]
    fn overlong_integer_is_an_error() {
        assert!(decode_int(&[0x7f, 0x80, 0x80, 0x80, 0x80, 0x01], 7).is_err());
        assert!(decode_int(&[0x7f, 0x80], 7).is_err());
        assert!(decode_int(&[], 7).is_err());
    }
}
