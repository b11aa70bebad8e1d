//! Property tests: round trips, split points, hostile input.

use beehive_codec::{CodecError, MessageCodec, PackageCodec, RawCodec, HEADER_LEN};
use beehive_model::{Content, Message, MessageHeader, MessageRoute};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

/// Decodes `stream` fed in pieces cut at `cuts` (fractions of the length).
fn decode_split<D>(codec: &mut D, stream: &[u8], cuts: &[f64]) -> Result<Vec<D::Item>, D::Error>
where
    D: Decoder,
{
    let mut points: Vec<usize> = cuts.iter().map(|c| (c * stream.len() as f64) as usize).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        buf.extend_from_slice(&stream[last..p]);
        last = p;
        while let Some(item) = codec.decode(&mut buf)? {
            out.push(item);
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf)? {
        out.push(item);
    }
    Ok(out)
}

/// A line without its line feed: text (possibly with blanks around it or a
/// CR before the line feed), or a blank line of spaces, tabs and CRs.
fn any_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ \t\r]{0,2}[^\n\r\t ][^\n]{0,60}\r?",
        2 => "[ \t\r]{0,4}",
        1 => Just(String::new()),
        1 => Just("\r".to_owned()),
        1 => Just("\t".to_owned()),
    ]
}

fn any_message() -> impl Strategy<Value = Message> {
    (".{0,20}", ".{0,20}", any::<i64>(), any::<bool>(), ".{0,20}", ".{0,60}").prop_map(
        |(id, src, ts, sync, res, body)| {
            Message::from_parts(
                MessageHeader { id, timestamp: ts, sync, ..MessageHeader::default() },
                MessageRoute { source: src, resource: res, ..MessageRoute::default() },
                Content::String(body),
            )
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn package_payloads_round_trip_at_any_split(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..6),
    ) {
        let mut codec = PackageCodec::new();
        let mut stream = BytesMut::new();
        for p in &payloads {
            codec.encode_frame(p, &mut stream).unwrap();
        }
        let frames = decode_split(&mut PackageCodec::new(), &stream, &cuts).unwrap();
        prop_assert_eq!(frames, payloads.iter().map(|p| Bytes::from(p.clone())).collect::<Vec<_>>());
    }

    #[test]
    fn raw_lines_round_trip_at_any_split(
        lines in proptest::collection::vec(any_line(), 0..10),
        final_line_feed in any::<bool>(),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..6),
    ) {
        let mut stream = lines.join("\n");
        if final_line_feed {
            stream.push('\n');
        }
        let frames = decode_split(&mut RawCodec::new(), stream.as_bytes(), &cuts).unwrap();
        // The oracle: every line that is not all blanks (space, tab, CR), in
        // order; an empty last line (after the final line feed) is no line.
        let blank = |l: &String| l.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r'));
        let want: Vec<Bytes> = lines.iter().filter(|l| !blank(l)).map(|l| Bytes::from(l.clone())).collect();
        prop_assert_eq!(frames, want);
    }

    #[test]
    fn messages_round_trip_through_both_framings(
        msgs in proptest::collection::vec(any_message(), 0..6),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..6),
    ) {
        let mut pkg = MessageCodec::new(PackageCodec::new());
        let mut raw = MessageCodec::new(RawCodec::new());
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        for m in &msgs {
            pkg.encode(m, &mut a).unwrap();
            raw.encode(m, &mut b).unwrap();
        }
        prop_assert_eq!(&decode_split(&mut MessageCodec::new(PackageCodec::new()), &a, &cuts).unwrap(), &msgs);
        prop_assert_eq!(&decode_split(&mut MessageCodec::new(RawCodec::new()), &b, &cuts).unwrap(), &msgs);
    }

    /// Arbitrary bytes: no panic, and the buffer never grows beyond what was
    /// fed plus one maximum-size frame, whatever the length fields say.
    #[test]
    fn arbitrary_streams_never_panic_or_overallocate(
        stream in proptest::collection::vec(any::<u8>(), 0..512),
        prefix_valid_header in any::<bool>(),
        len_field in any::<i32>(),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..6),
    ) {
        const MAX: usize = 4096;
        let mut input = Vec::new();
        if prefix_valid_header {
            input.extend_from_slice(b"beehv1rv");
            input.extend_from_slice(&len_field.to_be_bytes());
        }
        input.extend_from_slice(&stream);
        let mut codec = PackageCodec::with_max_frame_len(MAX).unwrap();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        for chunk in input.chunks(1 + (cuts.first().copied().unwrap_or(0.5) * 64.0) as usize) {
            buf.extend_from_slice(chunk);
            fed += chunk.len();
            match codec.decode(&mut buf) {
                Ok(_) => prop_assert!(buf.capacity() <= 2 * (fed + MAX) + 64, "capacity {}", buf.capacity()),
                Err(e) => {
                    prop_assert!(e.is_protocol_error());
                    break;
                }
            }
        }
        let mut raw = RawCodec::with_max_line_len(MAX).unwrap();
        let _ = decode_split(&mut raw, &input, &cuts);
    }

    /// Any frame with a length over the maximum is refused from its header alone.
    #[test]
    fn oversized_lengths_are_refused_from_the_header(len in (4096 - HEADER_LEN as i32 + 1)..=i32::MAX) {
        let mut codec = PackageCodec::with_max_frame_len(4096).unwrap();
        let mut buf = BytesMut::from(&b"beehv1rv"[..]);
        buf.extend_from_slice(&len.to_be_bytes());
        let refused = matches!(codec.decode(&mut buf), Err(CodecError::FrameTooLarge { .. }));
        prop_assert!(refused);
    }
}
