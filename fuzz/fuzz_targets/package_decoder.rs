//! The package decoder, fed in arbitrary pieces, on two streams built from
//! each input.
//!
//! Hostile bytes: the first two bytes choose the maximum frame size and the
//! piece size, the rest is the stream. Invariants: no panic; the buffer
//! never holds more than what was fed plus one maximum-size frame; the
//! frames returned, framed again, are exactly the prefix of the input that
//! was consumed.
//!
//! Valid streams: the same bytes, read through `arbitrary`, give a list of
//! payloads, a maximum frame size that fits the largest, and the points
//! where the stream is split. Each payload is framed by hand (`beehv1rv`
//! and a big-endian `i32` length); the encoder must write exactly those
//! bytes, and the decoder must return every payload unchanged, in order,
//! reject nothing and leave nothing behind.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use beehive_codec::{PackageCodec, HEADER_LEN};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Valid {
    payloads: Vec<Vec<u8>>,
    /// How far the maximum frame size exceeds the largest frame.
    slack: u8,
    /// Piece sizes, used in turn (0 feeds nothing before decoding again).
    pieces: Vec<u16>,
}

fn valid_streams(data: &[u8]) {
    let Ok(valid) = Valid::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let largest = valid.payloads.iter().map(Vec::len).max().unwrap_or(0);
    let max = HEADER_LEN + largest + usize::from(valid.slack);
    let mut stream = Vec::new();
    for p in &valid.payloads {
        stream.extend_from_slice(b"beehv1rv");
        stream.extend_from_slice(&i32::try_from(p.len()).expect("small").to_be_bytes());
        stream.extend_from_slice(p);
    }
    let mut encoder = PackageCodec::with_max_frame_len(max).expect("max is at least the header");
    let mut encoded = BytesMut::new();
    for p in &valid.payloads {
        encoder.encode_frame(p, &mut encoded).expect("every payload fits");
    }
    assert_eq!(&encoded[..], &stream[..], "the encoder writes the Go header");

    let mut codec = PackageCodec::with_max_frame_len(max).expect("max is at least the header");
    let mut buf = BytesMut::new();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut rest = &stream[..];
    let mut turn = 0;
    let mut idle = 0;
    while !rest.is_empty() {
        let size = valid.pieces.get(turn % valid.pieces.len().max(1)).map_or(rest.len(), |&s| usize::from(s));
        turn += 1;
        // Empty pieces are fine, but not forever.
        idle = if size == 0 { idle + 1 } else { 0 };
        let size = if idle > valid.pieces.len() { rest.len() } else { size.min(rest.len()) };
        buf.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        while let Some(f) = codec.decode_frame(&mut buf).expect("a valid stream is accepted") {
            frames.push(f);
        }
    }
    assert!(codec.decode_frame_eof(&mut buf).expect("nothing left over").is_none());
    assert!(buf.is_empty());
    let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let want: Vec<&[u8]> = valid.payloads.iter().map(|p| &p[..]).collect();
    assert_eq!(got, want, "payloads");
}

fuzz_target!(|data: &[u8]| {
    valid_streams(data);
    let Some((&[a, b], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = HEADER_LEN + (usize::from(a) << 4);
    let piece = 1 + usize::from(b);
    let mut codec = PackageCodec::with_max_frame_len(max).expect("max is at least the header");
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    'feed: for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
        assert!(buf.capacity() <= 2 * (fed + max) + 64, "buffer grew to {}", buf.capacity());
    }
    if !failed {
        while let Ok(Some(f)) = codec.decode_frame_eof(&mut buf) {
            frames.push(f);
        }
    }
    let mut again = BytesMut::new();
    for f in &frames {
        assert!(f.len() + HEADER_LEN <= max);
        PackageCodec::new().encode_frame(f, &mut again).expect("re-encode");
    }
    // Only the reserved bytes may differ (Go accepts anything there).
    let consumed = &input[..again.len()];
    let mut pos = 0;
    for f in &frames {
        assert_eq!(&consumed[pos..pos + 6], b"beehv1");
        assert_eq!(&consumed[pos + 8..pos + HEADER_LEN + f.len()], &again[pos + 8..pos + HEADER_LEN + f.len()]);
        pos += HEADER_LEN + f.len();
    }
});
