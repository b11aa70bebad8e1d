//! The raw line decoder on arbitrary streams, fed in arbitrary pieces.
//!
//! Invariants: no panic; no frame contains a line feed or exceeds the
//! maximum; no frame is blank; the buffer stays bounded.
#![no_main]

use beehive_codec::RawCodec;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], input)) = data.split_first_chunk::<2>().map(|(h, t)| (h, t)) else {
        return;
    };
    let max = 1 + (usize::from(a) << 2);
    let piece = 1 + usize::from(b);
    let mut codec = RawCodec::with_max_line_len(max).expect("max is positive");
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let check = |f: &bytes::Bytes| {
        assert!(!f.contains(&b'\n'));
        assert!(f.len() <= max);
        assert!(f.iter().any(|c| !matches!(c, b' ' | b'\t' | b'\r')));
    };
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(f)) => check(&f),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= max + piece);
        assert!(
            buf.capacity() <= 2 * (fed + max) + 64,
            "capacity {} fed {fed} max {max} len {}",
            buf.capacity(),
            buf.len()
        );
    }
    while let Ok(Some(f)) = codec.decode_frame_eof(&mut buf) {
        check(&f);
    }
});
