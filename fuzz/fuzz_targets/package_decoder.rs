//! The package decoder on arbitrary streams, fed in arbitrary pieces.
//!
//! The first two bytes choose the maximum frame size and the piece size.
//! Invariants: no panic; the buffer never holds more than what was fed plus
//! one maximum-size frame; the frames returned, framed again, are exactly
//! the prefix of the input that was consumed.
#![no_main]

use beehive_codec::{PackageCodec, HEADER_LEN};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], input)) = data.split_first_chunk::<2>().map(|(h, t)| (h, t)) else {
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
