//! Raw framing on streams: blank lines (space, tab, CR only) are not
//! frames, wherever they are — mid-stream, last before the end of the
//! stream, with or without a final line feed — and CRLF line ends keep the
//! CR in the frame (it is JSON whitespace to the message decoder).

use beehive_codec::{MessageCodec, RawCodec};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Frames from `input` fed whole: `decode` until it wants more bytes, then
/// `decode_eof` until it has nothing more.
fn frames_at_eof(input: &[u8]) -> Vec<Bytes> {
    let mut codec = RawCodec::new();
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(f) = codec.decode(&mut buf).unwrap() {
        out.push(f);
    }
    while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty(), "decode_eof left {buf:?}");
    out
}

/// Frames from `input` fed one byte at a time, without ending the stream.
fn frames_mid_stream(input: &[u8]) -> Vec<Bytes> {
    let mut codec = RawCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in input {
        buf.extend_from_slice(&[b]);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    out
}

const BLANKS: [&str; 7] = ["", " ", "\t", "\r", "  \t \r", "\r\r", "\t\t"];

#[test]
fn blank_lines_between_documents_are_skipped() {
    for blank in BLANKS {
        let input = format!("{{\"a\":1}}\n{blank}\n{{\"b\":2}}\n");
        let want = [Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"b\":2}")];
        assert_eq!(frames_mid_stream(input.as_bytes()), want, "{blank:?}");
        assert_eq!(frames_at_eof(input.as_bytes()), want, "{blank:?}");
    }
}

#[test]
fn blank_lines_before_the_first_document_are_skipped() {
    for blank in BLANKS {
        let input = format!("{blank}\n{blank}\n{{}}\n");
        assert_eq!(frames_mid_stream(input.as_bytes()), [Bytes::from_static(b"{}")], "{blank:?}");
        assert_eq!(frames_at_eof(input.as_bytes()), [Bytes::from_static(b"{}")], "{blank:?}");
    }
}

#[test]
fn a_trailing_blank_line_with_a_line_feed_is_not_a_frame() {
    for blank in BLANKS {
        let input = format!("{{}}\n{blank}\n");
        assert_eq!(frames_mid_stream(input.as_bytes()), [Bytes::from_static(b"{}")], "{blank:?}");
        assert_eq!(frames_at_eof(input.as_bytes()), [Bytes::from_static(b"{}")], "{blank:?}");
    }
}

#[test]
fn a_trailing_blank_line_without_a_line_feed_is_not_a_frame_at_eof() {
    for blank in BLANKS.iter().filter(|b| !b.is_empty()) {
        let input = format!("{{}}\n{blank}");
        assert_eq!(frames_mid_stream(input.as_bytes()), [Bytes::from_static(b"{}")], "{blank:?}");
        assert_eq!(frames_at_eof(input.as_bytes()), [Bytes::from_static(b"{}")], "{blank:?}");
        // Alone in the stream, too.
        assert_eq!(frames_at_eof(blank.as_bytes()), Vec::<Bytes>::new(), "{blank:?}");
    }
}

#[test]
fn decode_eof_on_a_blank_remainder_returns_none_and_consumes_it() {
    for blank in BLANKS.iter().filter(|b| !b.is_empty()) {
        let mut codec = RawCodec::new();
        let mut buf = BytesMut::from(blank.as_bytes());
        assert_eq!(codec.decode_frame(&mut buf).unwrap(), None, "{blank:?}");
        assert_eq!(codec.decode_frame_eof(&mut buf).unwrap(), None, "{blank:?}");
        assert!(buf.is_empty(), "{blank:?}");
        assert_eq!(codec.decode_frame_eof(&mut buf).unwrap(), None, "{blank:?}");
    }
}

#[test]
fn a_last_document_without_a_line_feed_is_a_frame_at_eof_only() {
    let input = b"{\"a\":1}\n \n{\"b\":2}";
    assert_eq!(frames_mid_stream(input), [Bytes::from_static(b"{\"a\":1}")]);
    assert_eq!(frames_at_eof(input), [Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"b\":2}")]);
}

#[test]
fn lines_with_blanks_around_text_are_frames_verbatim() {
    // Only whole-blank lines are skipped; a line with any other byte is
    // returned as it is, its spaces, tabs and CRs included.
    let input = b" {}\n\t1\t\n\rx\n";
    let want = [Bytes::from_static(b" {}"), Bytes::from_static(b"\t1\t"), Bytes::from_static(b"\rx")];
    assert_eq!(frames_mid_stream(input), want);
    assert_eq!(frames_at_eof(input), want);
    // And at the end of the stream without a line feed.
    assert_eq!(frames_at_eof(b"\t1\t"), [Bytes::from_static(b"\t1\t")]);
    assert_eq!(frames_at_eof(b" \r\n\r"), Vec::<Bytes>::new());
}

#[test]
fn crlf_line_ends_keep_the_cr_and_blank_crlf_lines_are_skipped() {
    let input = b"{\"a\":1}\r\n\r\n{\"b\":2}\r\n\r\n";
    let want = [Bytes::from_static(b"{\"a\":1}\r"), Bytes::from_static(b"{\"b\":2}\r")];
    assert_eq!(frames_mid_stream(input), want);
    assert_eq!(frames_at_eof(input), want);
    // The final CRLF blank line without its LF.
    assert_eq!(frames_at_eof(b"{\"a\":1}\r\n\r"), [Bytes::from_static(b"{\"a\":1}\r")]);
}

#[test]
fn messages_on_crlf_lines_with_blank_lines_decode() {
    let a = beehive_model::Message::raw().build_header("a", "", 1);
    let b = beehive_model::Message::raw().build_header("b", "", 2);
    let mut input = Vec::new();
    input.extend_from_slice(b"\r\n \t\r\n");
    input.extend_from_slice(&beehive_model::to_vec(&a).unwrap());
    input.extend_from_slice(b"\r\n\t\r\n");
    input.extend_from_slice(&beehive_model::to_vec(&b).unwrap());
    input.extend_from_slice(b"\r\n \r");
    let mut codec = MessageCodec::new(RawCodec::new());
    let mut buf = BytesMut::from(&input[..]);
    let mut got = Vec::new();
    while let Some(m) = codec.decode(&mut buf).unwrap() {
        got.push(m);
    }
    while let Some(m) = codec.decode_eof(&mut buf).unwrap() {
        got.push(m);
    }
    assert_eq!(got, [a, b]);
}
