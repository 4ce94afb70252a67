//! DER written by hand (tag, length, contents), so that a test can make a
//! structure wrong in exactly one place.

/// One TLV of `tag` whose contents are `parts`, concatenated.
pub(crate) fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// An OBJECT IDENTIFIER from its dotted form (a literal: panics if malformed).
pub(crate) fn oid(dotted: &str) -> Vec<u8> {
    tlv(
        0x06,
        &[const_oid::ObjectIdentifier::new_unwrap(dotted).as_bytes()],
    )
}

/// A SEQUENCE of `parts`.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, parts)
}
