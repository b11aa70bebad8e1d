//! The raw line decoder on arbitrary streams, fed in arbitrary pieces.
//!
//! The first two bytes choose the maximum line length and the piece size.
//! Invariants: no panic; the buffer stays bounded; and the frames are
//! exactly the input's non-blank lines, in order: the stream split at each
//! line feed (the line feed dropped, a carriage return kept), a last line
//! without a line feed included at the end of the stream, lines of only
//! spaces, tabs and carriage returns skipped; decoding stops with
//! `LineTooLong` at the offset of the first line longer than the maximum
//! (blank or not), after every frame before it.
#![no_main]

use beehive_codec::{CodecError, RawCodec};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

/// The frames the decoder must return, and the offset of the overlong line
/// it must stop at.
fn model(input: &[u8], max: usize) -> (Vec<&[u8]>, Option<u64>) {
    let mut frames = Vec::new();
    let mut offset = 0;
    for segment in input.split_inclusive(|&b| b == b'\n') {
        let line = segment.strip_suffix(b"\n").unwrap_or(segment);
        if line.len() > max {
            return (frames, Some(offset as u64));
        }
        if line.iter().any(|c| !matches!(c, b' ' | b'\t' | b'\r')) {
            frames.push(line);
        }
        offset += segment.len();
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = 1 + (usize::from(a) << 2);
    let piece = 1 + usize::from(b);
    let mut codec = RawCodec::with_max_line_len(max).expect("max is positive");
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut frames: Vec<Bytes> = Vec::new();
    let mut error = None;
    'feed: for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
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
    if error.is_none() {
        loop {
            match codec.decode_frame_eof(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
    }
    let (expected, too_long) = model(input, max);
    let got: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    assert_eq!(got, expected, "frames");
    match (error, too_long) {
        (None, None) => assert!(buf.is_empty(), "everything consumed at the end"),
        (Some(CodecError::LineTooLong { offset, max: m }), Some(at)) => assert_eq!((offset, m), (at, max)),
        (e, at) => panic!("decoder error {e:?}, expected an overlong line at {at:?}"),
    }
});
