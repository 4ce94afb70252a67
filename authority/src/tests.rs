use super::rewriter::{needs_rewrite, Rewriter, OUT_HIGH_WATER, PREFACE};
use super::*;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod e2e;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

const HEADERS: u8 = 0x1;
const PRIORITY_FRAME: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const DATA: u8 = 0x0;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

pub(super) fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub(super) fn request(authority: Option<&[u8]>, extra: &[(&[u8], &[u8])]) -> Fields {
    let mut fields: Fields = vec![
        (b":method".to_vec(), b"POST".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (
            b":path".to_vec(),
            b"/runtime.v1.ImageService/PullImage".to_vec(),
        ),
    ];
    if let Some(a) = authority {
        fields.push((b":authority".to_vec(), a.to_vec()));
    }
    fields.push((b"content-type".to_vec(), b"application/grpc".to_vec()));
    fields.push((b"te".to_vec(), b"trailers".to_vec()));
    for (n, v) in extra {
        fields.push((n.to_vec(), v.to_vec()));
    }
    fields
}

fn encode(encoder: &mut loona_hpack::Encoder<'_>, fields: &Fields) -> Vec<u8> {
    encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])))
}

fn with_authority(fields: &Fields, authority: &[u8]) -> Fields {
    fields
        .iter()
        .map(|(n, v)| {
            if n == b":authority" {
                (n.clone(), authority.to_vec())
            } else {
                (n.clone(), v.clone())
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct Frame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let len = (bytes[0] as usize) << 16 | (bytes[1] as usize) << 8 | bytes[2] as usize;
        frames.push(Frame {
            ty: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
            payload: bytes[9..9 + len].to_vec(),
        });
        bytes = &bytes[9 + len..];
    }
    frames
}

/// What the server receives after the preface, as frames.
fn server_frames(output: &[u8]) -> Vec<Frame> {
    assert_eq!(&output[..24], PREFACE);
    parse_frames(&output[24..])
}

/// Decodes every header block of `frames`, each with a *fresh* decoder: this
/// proves our output never depends on (or feeds) the server's dynamic table.
fn blocks(frames: &[Frame]) -> Vec<(u32, Fields)> {
    let mut out = Vec::new();
    let mut block = Vec::new();
    let mut stream = 0;
    for f in frames {
        match f.ty {
            HEADERS => {
                assert_eq!(f.flags & PADDED, 0, "padding is dropped");
                stream = f.stream;
                let start = if f.flags & PRIORITY != 0 { 5 } else { 0 };
                block = f.payload[start..].to_vec();
            }
            CONTINUATION => {
                assert_eq!(f.stream, stream);
                block.extend_from_slice(&f.payload);
            }
            _ => continue,
        }
        if f.flags & END_HEADERS != 0 {
            let fields = loona_hpack::Decoder::new().decode(&block).unwrap();
            out.push((stream, fields));
        }
    }
    out
}

/// Feeds all of `input` as `AuthorityRewrite` does: drain the output
/// between calls, re-feed what was not consumed. Checks the output bound.
fn feed_into(
    rewriter: &mut Rewriter,
    mut input: &[u8],
    total: &mut Vec<u8>,
) -> Result<(), AuthorityError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        out.clear();
        let consumed = rewriter.feed(input, &mut out)?;
        assert!(out.len() <= OUT_HIGH_WATER + input.len() + 2 * 64 * 1024);
        assert!(consumed > 0);
        input = &input[consumed..];
        total.extend_from_slice(&out);
    }
    Ok(())
}

fn feed_all(rewriter: &mut Rewriter, input: &[u8]) -> Result<Vec<u8>, AuthorityError> {
    let mut out = Vec::new();
    feed_into(rewriter, input, &mut out)?;
    Ok(out)
}

fn connection_start() -> Vec<u8> {
    let mut input = PREFACE.to_vec();
    input.extend(frame(SETTINGS, 0, 0, &[]));
    input
}

#[test]
fn authority_forms() {
    for path in [
        &b"/run/x.sock"[..],
        b"%2Frun%2Fx.sock",
        b"%2frun%2fx.sock",
        b"",
        b"a b",
    ] {
        assert!(needs_rewrite(path), "{}", String::from_utf8_lossy(path));
    }
    for ok in [
        &b"localhost"[..],
        b"localhost:1234",
        b"example.com",
        b"[::1]:80",
    ] {
        assert!(!needs_rewrite(ok), "{}", String::from_utf8_lossy(ok));
    }
}

#[test]
fn path_and_percent_encoded_authority_become_localhost() {
    for authority in [&b"/run/pullgate.sock"[..], b"%2Frun%2Fpullgate.sock"] {
        let fields = request(Some(authority), &[]);
        let mut input = connection_start();
        let block = encode(&mut loona_hpack::Encoder::new(), &fields);
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let out = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();
        let frames = server_frames(&out);
        assert_eq!(frames[0], parse_frames(&frame(SETTINGS, 0, 0, &[]))[0]);
        assert_eq!(frames[1].flags, END_HEADERS | END_STREAM);
        assert_eq!(
            blocks(&frames),
            vec![(1, with_authority(&fields, b"localhost"))]
        );
    }
}

#[test]
fn valid_and_absent_authority_are_unchanged() {
    for authority in [Some(&b"localhost"[..]), Some(b"localhost:10010"), None] {
        let fields = request(authority, &[]);
        let mut input = connection_start();
        let block = encode(&mut loona_hpack::Encoder::new(), &fields);
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let out = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();
        assert_eq!(blocks(&server_frames(&out)), vec![(1, fields)]);
    }
}

#[test]
fn header_block_split_across_continuation_frames() {
    let big = vec![b'v'; 3000];
    let fields = request(Some(b"/run/x.sock"), &[(b"x-big", &big)]);
    let block = encode(&mut loona_hpack::Encoder::new(), &fields);
    let (a, rest) = block.split_at(10);
    let (b, c) = rest.split_at(1500);
    let mut input = connection_start();
    input.extend(frame(HEADERS, END_STREAM, 1, a));
    input.extend(frame(CONTINUATION, 0, 1, b));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, c));
    // Byte by byte: every partial-read boundary is exercised.
    let mut rewriter = Rewriter::new(AuthorityLimits::default());
    let mut out = Vec::new();
    for byte in &input {
        feed_into(&mut rewriter, std::slice::from_ref(byte), &mut out).unwrap();
    }
    let frames = server_frames(&out);
    // Re-framed as one HEADERS: the block fits in 16 KiB.
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].flags, END_STREAM | END_HEADERS);
    assert_eq!(
        blocks(&frames),
        vec![(1, with_authority(&fields, b"localhost"))]
    );
}

#[test]
fn large_block_is_reframed_within_the_server_max_frame_size() {
    let big = vec![b'v'; 40_000];
    let fields = request(Some(b"/run/x.sock"), &[(b"x-big", &big)]);
    let block = encode(&mut loona_hpack::Encoder::new(), &fields);
    let mut input = connection_start();
    for (i, chunk) in block.chunks(16_384).enumerate() {
        let last = (i + 1) * 16_384 >= block.len();
        let ty = if i == 0 { HEADERS } else { CONTINUATION };
        input.extend(frame(ty, if last { END_HEADERS } else { 0 }, 1, chunk));
    }
    let out = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();
    let frames = server_frames(&out);
    assert_eq!(frames[1].ty, HEADERS);
    assert!(frames[1..].iter().all(|f| f.payload.len() <= 16_384));
    assert_eq!(
        frames[1..]
            .iter()
            .filter(|f| f.flags & END_HEADERS != 0)
            .count(),
        1
    );
    assert_eq!(
        blocks(&frames),
        vec![(1, with_authority(&fields, b"localhost"))]
    );
}

#[test]
fn server_max_frame_size_applies_after_the_client_ack() {
    let mut rewriter = Rewriter::new(AuthorityLimits::default());
    // Server SETTINGS: MAX_FRAME_SIZE = 65536, observed on the write path.
    let mut settings = vec![0, 5];
    settings.extend(65_536u32.to_be_bytes());
    rewriter.observe_server(&frame(SETTINGS, 0, 0, &settings));
    assert!(rewriter.server_at_frame_boundary());

    let big = vec![b'v'; 30_000];
    let fields = request(Some(b"/run/x.sock"), &[(b"x-big", &big)]);
    let block = encode(&mut loona_hpack::Encoder::new(), &fields);
    let mut input = connection_start();
    // The client may already send a 30 KB frame (the setting is pending)...
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    let frames = server_frames(&feed_all(&mut rewriter, &input).unwrap());
    // ... but h2 enforces 16 KiB until the ack: our output stays within it.
    assert!(frames.iter().all(|f| f.payload.len() <= 16_384));

    let mut input = frame(SETTINGS, 0x1, 0, &[]);
    input.extend(frame(HEADERS, END_HEADERS, 3, &block));
    let frames = parse_frames(&feed_all(&mut rewriter, &input).unwrap());
    assert_eq!(frames.len(), 2, "the ack, then one HEADERS frame");
    assert_eq!(frames[1].flags, END_HEADERS);

    // Above what the server accepts: a connection error, FRAME_SIZE_ERROR.
    let head = &frame(DATA, 0, 1, &vec![0; 65_537])[..9];
    let err = feed_into(&mut rewriter, head, &mut Vec::new()).unwrap_err();
    assert_eq!(
        err,
        AuthorityError::FrameTooLarge {
            len: 65_537,
            max: 65_536
        }
    );
    assert_eq!(err.h2_error_code(), 0x6);
}

#[test]
fn dynamic_table_used_across_many_requests() {
    // One encoder for the whole connection, as a real client: repeated
    // fields become one-byte indexed references, new names are inserted and
    // older ones evicted (4096-byte table).
    let mut encoder = loona_hpack::Encoder::new();
    let mut input = connection_start();
    let mut expected = Vec::new();
    let forms: [Option<&[u8]>; 4] = [
        Some(b"/run/containerd/pullgate.sock"),
        Some(b"%2Frun%2Fcontainerd%2Fpullgate.sock"),
        Some(b"localhost"),
        None,
    ];
    for i in 0..200u32 {
        let stream = 2 * i + 1;
        let per_request = format!("value-{i}-{}", "x".repeat((i % 7) as usize * 40));
        let name = format!("x-name-{}", i % 13);
        let fields = request(
            forms[(i % 4) as usize],
            &[
                (b"user-agent", b"grpc-go/1.60.1"),
                (name.as_bytes(), per_request.as_bytes()),
                (b"grpc-timeout", b"119999m"),
            ],
        );
        let block = encode(&mut encoder, &fields);
        input.extend(frame(HEADERS, END_HEADERS, stream, &block));
        input.extend(frame(DATA, END_STREAM, stream, b"\0\0\0\0\x02ab"));
        let want = match forms[(i % 4) as usize] {
            Some(a) if needs_rewrite(a) => with_authority(&fields, b"localhost"),
            _ => fields,
        };
        expected.push((stream, want));
    }
    // Feed in uneven chunks.
    let mut rewriter = Rewriter::new(AuthorityLimits::default());
    let mut out = Vec::new();
    for chunk in input.chunks(977) {
        feed_into(&mut rewriter, chunk, &mut out).unwrap();
    }
    let frames = server_frames(&out);
    assert_eq!(blocks(&frames), expected);
    let data: Vec<_> = frames.iter().filter(|f| f.ty == DATA).collect();
    assert_eq!(data.len(), 200);
    assert!(data
        .iter()
        .all(|f| f.payload == b"\0\0\0\0\x02ab" && f.flags == END_STREAM));
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// RFC 7541 C.4: three requests Huffman-coded by an encoder that indexes,
/// the later ones referring to dynamic entries made by the earlier ones.
#[test]
fn rfc7541_huffman_requests_with_dynamic_table() {
    let c41 = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
    let c42 = hex("8286 84be 5886 a8eb 1064 9cbf");
    let c43 = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
    let mut input = connection_start();
    input.extend(frame(HEADERS, END_HEADERS, 1, &c41));
    input.extend(frame(HEADERS, END_HEADERS, 3, &c42));
    input.extend(frame(HEADERS, END_HEADERS, 5, &c43));
    let out = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    assert_eq!(
        blocks(&server_frames(&out)),
        vec![
            (1, fields(&base)),
            (
                3,
                fields(&[&base[..], &[("cache-control", "no-cache")]].concat())
            ),
            (
                5,
                fields(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value"),
                ])
            ),
        ]
    );
}

/// A Huffman-coded string literal (RFC 7541 §5.2) of fewer than 127 octets.
fn huffman_string(octets: &[u8]) -> Vec<u8> {
    let coded = huffman::encode(octets);
    assert!(coded.len() < 127);
    let mut out = vec![0x80 | coded.len() as u8];
    out.extend(coded);
    out
}

/// Huffman-coded names and values, literal and inserted into the dynamic
/// table, are decoded (the mirror table holds the decoded value) and sent
/// raw, with the authority rewritten.
#[test]
fn huffman_coded_fields_are_decoded_and_sent_raw() {
    let path = b"/runtime.v1.ImageService/PullImage";
    // :method POST, :scheme http, :path (static name 4) without indexing.
    let mut first = vec![0x83, 0x86, 0x04];
    first.extend(huffman_string(path));
    // :authority with incremental indexing, literal name, both Huffman-coded.
    first.push(0x40);
    first.extend(huffman_string(b":authority"));
    first.extend(huffman_string(b"/run/containerd/pullgate.sock"));
    // A never-indexed field with a Huffman-coded literal name.
    first.push(0x10);
    first.extend(huffman_string(b"x-token"));
    first.extend(huffman_string(b"s3cr3t"));
    // The second request refers to the authority by its dynamic index (62).
    let mut second = vec![0x83, 0x86, 0x04];
    second.extend(huffman_string(path));
    second.push(0x80 | 62);

    let mut input = connection_start();
    input.extend(frame(HEADERS, END_HEADERS, 1, &first));
    input.extend(frame(HEADERS, END_HEADERS, 3, &second));
    let out = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();
    let frames = server_frames(&out);
    let base = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/runtime.v1.ImageService/PullImage"),
        (":authority", "localhost"),
    ];
    assert_eq!(
        blocks(&frames),
        vec![
            (1, fields(&[&base[..], &[("x-token", "s3cr3t")]].concat())),
            (3, fields(&base)),
        ]
    );
    // Raw: the path's octets appear as they are, after a plain length.
    let mut raw_path = vec![0x04, path.len() as u8];
    raw_path.extend(path);
    let headers: Vec<_> = frames.iter().filter(|f| f.ty == HEADERS).collect();
    for f in &headers {
        assert!(
            f.payload.windows(raw_path.len()).any(|w| w == raw_path),
            "{:x?}",
            f.payload
        );
    }
    // The never-indexed representation is kept, with raw strings.
    let tail = [&[0x10, 7][..], b"x-token", &[6], b"s3cr3t"].concat();
    assert!(
        headers[0].payload.ends_with(&tail),
        "{:x?}",
        headers[0].payload
    );
}

/// RFC 7541 §5.2: EOS inside a string, or padding that is not a prefix of
/// EOS, is a decoding error: a COMPRESSION_ERROR for the connection.
#[test]
fn invalid_huffman_is_a_compression_error() {
    use huffman::HuffmanError;
    let cases = [
        // 'a' (00011) then 000: padding of zero bits.
        (vec![0x81, 0b0001_1000], HuffmanError::Padding),
        // 'a' then eleven one-bits: padding longer than 7 bits.
        (vec![0x82, 0b0001_1111, 0xff], HuffmanError::Padding),
        // EOS (thirty one-bits).
        (vec![0x84, 0xff, 0xff, 0xff, 0xff], HuffmanError::Eos),
    ];
    for (value, want) in cases {
        // :method GET, then a literal without indexing of "x-a".
        let mut block = vec![0x82, 0x00, 3];
        block.extend(b"x-a");
        block.extend(&value);
        let mut input = connection_start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let err = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
        assert_eq!(err, AuthorityError::Huffman(want));
        assert_eq!(err.h2_error_code(), 0x9);
        // A Huffman-coded name is checked the same way.
        let mut block = vec![0x82, 0x00];
        block.extend(&value);
        block.extend([1, b'v']);
        let mut input = connection_start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let err = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
        assert_eq!(err, AuthorityError::Huffman(want));
    }
}

#[test]
fn padded_and_priority_headers() {
    let fields = request(Some(b"/run/x.sock"), &[]);
    let block = encode(&mut loona_hpack::Encoder::new(), &fields);
    let priority = [0x80, 0, 0, 0x03, 0x0f]; // exclusive, depends on 3, weight 16
    let mut payload = vec![10];
    payload.extend(priority);
    payload.extend(&block);
    payload.extend([0; 10]);
    let mut input = connection_start();
    input.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM | PADDED | PRIORITY,
        5,
        &payload,
    ));
    // Padded only, split over a CONTINUATION.
    let mut payload = vec![3];
    payload.extend(&block[..4]);
    payload.extend([0; 3]);
    input.extend(frame(HEADERS, PADDED, 7, &payload));
    input.extend(frame(CONTINUATION, END_HEADERS, 7, &block[4..]));
    // Priority only.
    let mut payload = priority.to_vec();
    payload.extend(&block);
    input.extend(frame(HEADERS, END_HEADERS | PRIORITY, 9, &payload));

    let out = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();
    let frames = server_frames(&out);
    let headers: Vec<_> = frames.iter().filter(|f| f.ty == HEADERS).collect();
    assert_eq!(headers[0].flags, END_HEADERS | END_STREAM | PRIORITY);
    assert_eq!(headers[0].payload[..5], priority);
    assert_eq!(headers[1].flags, END_HEADERS);
    assert_eq!(headers[2].flags, END_HEADERS | PRIORITY);
    assert_eq!(headers[2].payload[..5], priority);
    let want = with_authority(&fields, b"localhost");
    assert_eq!(
        blocks(&frames),
        vec![(5, want.clone()), (7, want.clone()), (9, want)]
    );
}

#[test]
fn bad_padding_is_a_protocol_error() {
    for (flags, payload) in [
        (PADDED, vec![5, 1, 2]),
        (PADDED, vec![]),
        (PRIORITY, vec![1, 2, 3]),
        (PADDED | PRIORITY, vec![2, 0, 0, 0, 3, 1]),
    ] {
        let mut input = connection_start();
        input.extend(frame(HEADERS, END_HEADERS | flags, 1, &payload));
        let err = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
        assert_eq!(err, AuthorityError::BadPadding { stream: 1 });
        assert_eq!(err.h2_error_code(), 0x1);
    }
}

#[test]
fn continuation_flood_is_refused_before_buffering() {
    let limits = AuthorityLimits {
        max_header_block: 8 * 1024,
        ..AuthorityLimits::default()
    };
    let mut rewriter = Rewriter::new(limits);
    let mut out = Vec::new();
    feed_into(&mut rewriter, &connection_start(), &mut out).unwrap();
    rewriter
        .feed(&frame(HEADERS, 0, 1, &[0x82]), &mut out)
        .unwrap();
    let chunk = frame(CONTINUATION, 0, 1, &[0x82; 1000]);
    let mut result = Ok(());
    for _ in 0..1000 {
        result = feed_into(&mut rewriter, &chunk, &mut out);
        if result.is_err() {
            break;
        }
        assert!(rewriter.buffered() <= 8 * 1024);
    }
    let err = result.unwrap_err();
    assert_eq!(err, AuthorityError::HeaderBlockTooLarge { max: 8 * 1024 });
    assert_eq!(err.h2_error_code(), 0xb);
    assert!(rewriter.buffered() <= 8 * 1024);
    // Nothing of the unfinished block reached the server.
    assert_eq!(server_frames(&out).len(), 1);

    // A single frame header claiming more than the limit is refused at once.
    let mut rewriter = Rewriter::new(limits);
    feed_into(&mut rewriter, &connection_start(), &mut Vec::new()).unwrap();
    let head = &frame(HEADERS, END_HEADERS, 1, &[0; 9000])[..9];
    let err = feed_into(&mut rewriter, head, &mut Vec::new()).unwrap_err();
    assert_eq!(err, AuthorityError::HeaderBlockTooLarge { max: 8 * 1024 });
    assert_eq!(rewriter.buffered(), 0);
}

#[test]
fn decoded_header_list_over_the_limit() {
    // HPACK bomb: one 4000-byte entry in the dynamic table, then referenced
    // by a one-byte index many times. The encoded block is tiny.
    let mut encoder = loona_hpack::Encoder::new();
    let big = vec![b'v'; 4000];
    let first = encode(&mut encoder, &vec![(b"x-big".to_vec(), big.clone())]);
    let mut input = connection_start();
    input.extend(frame(HEADERS, END_HEADERS, 1, &first));
    let mut bomb = Vec::new();
    for _ in 0..100 {
        bomb.push(0x80 | 62);
    }
    input.extend(frame(HEADERS, END_HEADERS, 3, &bomb));
    let err = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
    assert_eq!(err, AuthorityError::HeaderListTooLarge { max: 64 * 1024 });
}

#[test]
fn hpack_amplification_is_paced() {
    // One 4000-byte dynamic entry, then 2000 ten-byte HEADERS frames that
    // each expand to it: 20 KB of input standing for 8 MB of fields.
    let mut encoder = loona_hpack::Encoder::new();
    let big = vec![b'v'; 4000];
    let mut input = connection_start();
    let first = encode(&mut encoder, &vec![(b"x-big".to_vec(), big)]);
    input.extend(frame(HEADERS, END_HEADERS, 1, &first));
    for i in 1..2000u32 {
        input.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &[0x80 | 62]));
    }
    let mut rewriter = Rewriter::new(AuthorityLimits::default());
    let mut out = Vec::new();
    let consumed = rewriter.feed(&input, &mut out).unwrap();
    assert!(consumed < input.len() / 2, "stops early: {consumed}");
    assert!(out.len() < OUT_HIGH_WATER + 4100, "{}", out.len());
    // Fed the way AuthorityRewrite does, everything arrives.
    let rest = feed_all(&mut rewriter, &input[consumed..]).unwrap();
    // The SETTINGS frame and 2000 HEADERS frames.
    assert_eq!(
        parse_frames(&out[24..]).len() + parse_frames(&rest).len(),
        2001
    );
}

#[test]
fn other_frames_pass_byte_for_byte() {
    let mut input = connection_start();
    let mut settings = vec![0, 4];
    settings.extend(1_048_576u32.to_be_bytes());
    input.extend(frame(SETTINGS, 0, 0, &settings));
    input.extend(frame(SETTINGS, 0x1, 0, &[]));
    input.extend(frame(WINDOW_UPDATE, 0, 0, &983_041u32.to_be_bytes()));
    input.extend(frame(PING, 0, 0, b"12345678"));
    input.extend(frame(PRIORITY_FRAME, 0, 3, &[0, 0, 0, 1, 200]));
    input.extend(frame(DATA, PADDED | END_STREAM, 1, b"\x02abc\0\0"));
    input.extend(frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    input.extend(frame(0xfa, 0xff, 0x7fff_ffff, b"unknown extension frame"));
    input.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]));
    let mut rewriter = Rewriter::new(AuthorityLimits::default());
    let mut out = Vec::new();
    for byte in &input {
        feed_into(&mut rewriter, std::slice::from_ref(byte), &mut out).unwrap();
    }
    assert_eq!(out, input);
}

#[test]
fn never_indexed_fields_keep_their_representation() {
    // 0x10: literal never indexed, new name "authorization"-like secret.
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 11];
    block.extend(b"/run/x.sock");
    block.push(0x10);
    block.push(6);
    block.extend(b"secret");
    block.push(2);
    block.extend(b"s3");
    let mut input = connection_start();
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    let out = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();
    let frames = server_frames(&out);
    // The last field is "never indexed" (0001 pattern) with a literal name.
    let payload = &frames[1].payload;
    let tail = [0x10, 6, b's', b'e', b'c', b'r', b'e', b't', 2, b's', b'3'];
    assert!(payload.ends_with(&tail), "{payload:x?}");
    let fields = &blocks(&frames)[0].1;
    assert_eq!(fields[3], (b":authority".to_vec(), b"localhost".to_vec()));
}

#[test]
fn table_size_updates_are_bounded_by_the_server_setting() {
    let request_block = {
        let mut b = vec![0x82, 0x86, 0x84];
        b.extend([0x41, 9]);
        b.extend(b"localhost");
        b
    };
    // 0x3f e1 3f = size update to 8192: above the server's default 4096.
    let mut block = vec![0x3f, 0xe1, 0x3f];
    block.extend(&request_block);
    let mut input = connection_start();
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    let err = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
    assert_eq!(
        err,
        AuthorityError::TableSizeTooLarge {
            requested: 8192,
            max: 4096
        }
    );
    assert_eq!(err.h2_error_code(), 0x9);

    // Once the server advertises 8192, the same block is fine.
    let mut rewriter = Rewriter::new(AuthorityLimits::default());
    let mut settings = vec![0, 1];
    settings.extend(8192u32.to_be_bytes());
    rewriter.observe_server(&frame(SETTINGS, 0, 0, &settings));
    let out = feed_all(&mut rewriter, &input).unwrap();
    assert_eq!(blocks(&server_frames(&out))[0].1.len(), 4);

    // Our own cap wins over the server's.
    let mut rewriter = Rewriter::new(AuthorityLimits {
        max_table_size: 4096,
        ..AuthorityLimits::default()
    });
    rewriter.observe_server(&frame(SETTINGS, 0, 0, &settings));
    assert!(feed_all(&mut rewriter, &input).is_err());

    // A size update after a field: COMPRESSION_ERROR, as h2 does.
    let mut block = request_block.clone();
    block.push(0x20);
    block.push(0x82);
    let mut input = connection_start();
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    let err = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
    assert_eq!(err, AuthorityError::TableSizeUpdateNotAtStart);

    // A size update to 0 at the start empties the mirror table: a later
    // reference to a dynamic entry fails, as in the server's decoder.
    let mut encoder = loona_hpack::Encoder::new();
    let mut input = connection_start();
    let fields = request(Some(b"localhost"), &[(b"x-a", b"1")]);
    input.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &encode(&mut encoder, &fields),
    ));
    input.extend(frame(HEADERS, END_HEADERS, 3, &[0x20, 0x80 | 62]));
    let err = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
    assert!(matches!(err, AuthorityError::Hpack(_)), "{err:?}");
}

#[test]
fn framing_errors() {
    let start = connection_start();
    let cases: Vec<(Vec<u8>, AuthorityError)> = vec![
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            AuthorityError::BadPreface,
        ),
        (
            [start.clone(), frame(CONTINUATION, END_HEADERS, 1, &[0x82])].concat(),
            AuthorityError::UnexpectedContinuation { stream: 1 },
        ),
        (
            [
                start.clone(),
                frame(HEADERS, 0, 1, &[0x82]),
                frame(DATA, 0, 1, b"x"),
            ]
            .concat(),
            AuthorityError::ExpectedContinuation {
                stream: 1,
                frame_type: DATA,
            },
        ),
        (
            [
                start.clone(),
                frame(HEADERS, 0, 1, &[0x82]),
                frame(CONTINUATION, END_HEADERS, 3, &[0x84]),
            ]
            .concat(),
            AuthorityError::ExpectedContinuation {
                stream: 1,
                frame_type: CONTINUATION,
            },
        ),
        (
            [start.clone(), frame(HEADERS, END_HEADERS, 1, &[0x82, 0x41])].concat(),
            AuthorityError::HpackMalformed,
        ),
        (
            [
                start,
                frame(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                ),
            ]
            .concat(),
            AuthorityError::HpackMalformed,
        ),
    ];
    for (input, want) in cases {
        let got = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap_err();
        assert_eq!(got, want);
    }
}

/// Reads everything the server side sees through the step, with small reads.
async fn read_through<IO>(rewrite: &mut AuthorityRewrite<IO>) -> io::Result<Vec<u8>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut seen = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = rewrite.read(&mut buf).await?;
        if n == 0 {
            return Ok(seen);
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn async_read_small_buffers_match_the_state_machine() {
    let mut encoder = loona_hpack::Encoder::new();
    let mut input = connection_start();
    for i in 0..20u32 {
        let fields = request(Some(b"/run/x.sock"), &[(b"x-i", i.to_string().as_bytes())]);
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            2 * i + 1,
            &encode(&mut encoder, &fields),
        ));
        input.extend(frame(DATA, END_STREAM, 2 * i + 1, &[7; 3000]));
    }
    let want = feed_all(&mut Rewriter::new(AuthorityLimits::default()), &input).unwrap();

    // A small duplex buffer: the client's writes block until we read.
    let (mut client, server) = tokio::io::duplex(64);
    let mut rewrite = AuthorityRewrite::new(server, AuthorityLimits::default());
    let writer = tokio::spawn(async move {
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        client
    });
    let seen = read_through(&mut rewrite).await.unwrap();
    assert_eq!(seen, want);
    writer.await.unwrap();
}

#[tokio::test]
async fn connection_error_sends_goaway_and_fails_the_read() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let mut rewrite = AuthorityRewrite::new(server, AuthorityLimits::default());
    let mut input = connection_start();
    let fields = request(Some(b"/run/x.sock"), &[]);
    input.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &encode(&mut loona_hpack::Encoder::new(), &fields),
    ));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
    client.write_all(&input).await.unwrap();

    // The server writes its SETTINGS through the step in two pieces.
    let server_settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    rewrite.write_all(&server_settings[..4]).await.unwrap();
    rewrite.write_all(&server_settings[4..]).await.unwrap();

    let err = read_through(&mut rewrite).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<AuthorityError>());
    assert_eq!(
        inner,
        Some(&AuthorityError::UnexpectedContinuation { stream: 1 })
    );

    let mut got = vec![0; server_settings.len() + 17];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got[..server_settings.len()], server_settings[..]);
    let goaway = parse_frames(&got[server_settings.len()..]);
    assert_eq!(goaway[0].ty, GOAWAY);
    // Last stream id 1 (its headers were forwarded), PROTOCOL_ERROR.
    assert_eq!(goaway[0].payload, [0, 0, 0, 1, 0, 0, 0, 1]);
}

#[tokio::test]
async fn server_settings_are_read_from_vectored_writes() {
    let (mut client, server) = tokio::net::UnixStream::pair().unwrap();
    let mut rewrite = AuthorityRewrite::new(server, AuthorityLimits::default());
    assert!(rewrite.is_write_vectored());
    // The server's SETTINGS (MAX_FRAME_SIZE = 65536) cut across slices.
    let settings = frame(SETTINGS, 0, 0, &[0, 5, 0, 1, 0, 0]);
    let ping = frame(PING, 0, 0, b"abcdefgh");
    let slices = [
        io::IoSlice::new(&settings[..5]),
        io::IoSlice::new(&settings[5..]),
        io::IoSlice::new(&ping),
    ];
    let n = rewrite.write_vectored(&slices).await.unwrap();
    assert_eq!(n, settings.len() + ping.len());
    rewrite.flush().await.unwrap();
    let mut got = vec![0; n];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(
        got,
        [settings.clone(), ping].concat(),
        "passed through unchanged"
    );

    // After the client's ack, a 30 KB header block goes out in one frame.
    let big = vec![b'v'; 30_000];
    let fields = request(Some(b"/run/x.sock"), &[(b"x-big", &big)]);
    let block = encode(&mut loona_hpack::Encoder::new(), &fields);
    let mut input = connection_start();
    input.extend(frame(SETTINGS, 0x1, 0, &[]));
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    client.write_all(&input).await.unwrap();
    client.shutdown().await.unwrap();
    let frames = server_frames(&read_through(&mut rewrite).await.unwrap());
    assert_eq!(frames.len(), 3);
    assert_eq!((frames[2].ty, frames[2].flags), (HEADERS, END_HEADERS));
    assert_eq!(
        blocks(&frames),
        vec![(1, with_authority(&fields, b"localhost"))]
    );
}

/// Valid-looking client streams: preface, SETTINGS, then a mix of frames,
/// header blocks encoded by an indexing encoder, some split, padded or with
/// priority.
pub(super) fn valid_stream(seed: &[u8]) -> Vec<u8> {
    let mut encoder = loona_hpack::Encoder::new();
    let mut input = connection_start();
    let forms: [Option<&[u8]>; 4] = [
        Some(b"/run/x.sock"),
        Some(b"%2Frun%2Fx.sock"),
        Some(b"localhost"),
        None,
    ];
    for (i, &s) in seed.iter().enumerate() {
        let stream = 2 * i as u32 + 1;
        let fields = request(
            forms[usize::from(s % 4)],
            &[(b"x-s", &[b'a' + s % 26; 3][..])],
        );
        // Encode only what is sent: the encoder's table must match the wire.
        let block = if s % 5 < 3 {
            let mut block = encode(&mut encoder, &fields);
            if s % 2 == 0 {
                // A Huffman-coded literal without indexing (the encoder's
                // table is untouched), as h2 and grpc-go send `:path`.
                block.push(0x00);
                block.extend(huffman_string(b"x-huffman"));
                block.extend(huffman_string(&[b'0' + s % 10; 9]));
            }
            block
        } else {
            Vec::new()
        };
        match s % 5 {
            0 => input.extend(frame(HEADERS, END_HEADERS, stream, &block)),
            1 => {
                let cut = usize::from(s) % block.len();
                input.extend(frame(HEADERS, 0, stream, &block[..cut]));
                input.extend(frame(CONTINUATION, END_HEADERS, stream, &block[cut..]));
            }
            2 => {
                let mut p = vec![2, 0, 0, 0, 0, 16];
                p.extend(&block);
                p.extend([0, 0]);
                input.extend(frame(HEADERS, END_HEADERS | PADDED | PRIORITY, stream, &p));
            }
            3 => input.extend(frame(PING, 0, 0, &[s; 8])),
            _ => input.extend(frame(DATA, END_STREAM, stream, &[s; 5])),
        }
    }
    input
}

/// Runs `input` through a fresh step in `chunks`-sized feeds, also
/// observing `server` bytes on the write side. Must never panic.
pub(super) fn run_any(input: &[u8], server: &[u8], chunk: usize) {
    let mut rewriter = Rewriter::new(AuthorityLimits {
        max_header_block: 4096,
        max_header_list: 4096,
        max_table_size: 8192,
    });
    rewriter.observe_server(server);
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        out.clear();
        if feed_into(&mut rewriter, piece, &mut out).is_err() {
            let _ = rewriter.goaway(&AuthorityError::HpackMalformed);
            return;
        }
        assert!(rewriter.buffered() <= 4096 + 9);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        server in proptest::collection::vec(any::<u8>(), 0..256),
        chunk in 1usize..300,
    ) {
        let mut input = PREFACE.to_vec();
        input.extend(&body);
        run_any(&input, &server, chunk);
        run_any(&body, &server, chunk);
    }

    #[test]
    fn mutated_streams_never_panic(
        seed in proptest::collection::vec(any::<u8>(), 1..24),
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        chunk in 1usize..500,
    ) {
        let mut input = valid_stream(&seed);
        for (at, byte) in mutations {
            let at = 24 + at % (input.len() - 24);
            input[at] = byte;
        }
        run_any(&input, &frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x20, 0]), chunk);
    }

    #[test]
    fn valid_streams_are_accepted(seed in proptest::collection::vec(any::<u8>(), 1..24)) {
        let input = valid_stream(&seed);
        let mut rewriter = Rewriter::new(AuthorityLimits::default());
        let out = feed_all(&mut rewriter, &input).unwrap();
        for (_, fields) in blocks(&server_frames(&out)) {
            let authority = fields.iter().find(|(n, _)| n == b":authority");
            prop_assert!(authority.is_none_or(|(_, v)| v == b"localhost"));
        }
    }
}
