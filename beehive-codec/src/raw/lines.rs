//! Newline-delimited raw framing for stream sockets.

use beehive_model::Message;
use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;

/// Default maximum line length (without the line feed): 1 MiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 1 << 20;

/// Raw framing on a stream: each frame is one line; the line feed is not
/// part of the payload. Lines holding only JSON whitespace are skipped (they
/// are not documents). At the end of the stream a last line without a line
/// feed is still returned.
///
/// Encoding: [`encode_message`](Self::encode_message) writes Go's raw
/// `WriteJSON` bytes (JSON plus `\n`); [`encode_frame`](Self::encode_frame)
/// writes the payload verbatim, as Go's raw `Write` does — give it payloads
/// that end with `\n` when the peer splits on lines.
///
/// ```
/// use beehive_codec::RawCodec;
/// use bytes::BytesMut;
///
/// let mut codec = RawCodec::new();
/// let mut buf = BytesMut::from(&b"{\"a\":1}\n\n{\"b\":2}\n"[..]);
/// assert_eq!(codec.decode_frame(&mut buf).unwrap().unwrap(), "{\"a\":1}");
/// assert_eq!(codec.decode_frame(&mut buf).unwrap().unwrap(), "{\"b\":2}");
/// ```
#[derive(Debug, Clone)]
pub struct RawCodec {
    max_line_len: usize,
    /// Bytes of the source buffer already searched for a line feed.
    searched: usize,
    offset: u64,
    frame_offset: u64,
    scratch: Vec<u8>,
}

impl Default for RawCodec {
    fn default() -> Self {
        RawCodec::new()
    }
}

fn is_blank(b: &[u8]) -> bool {
    // JSON documents start with a non-blank byte, so this returns at once.
    b.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
}

impl RawCodec {
    /// A codec with the default maximum line length.
    pub fn new() -> Self {
        RawCodec { max_line_len: DEFAULT_MAX_LINE_LEN, searched: 0, offset: 0, frame_offset: 0, scratch: Vec::new() }
    }

    /// A codec accepting lines of at most `max_line_len` bytes (line feed excluded).
    pub fn with_max_line_len(max_line_len: usize) -> Result<Self, CodecError> {
        if max_line_len == 0 {
            return Err(CodecError::InvalidConfig("max_line_len must be at least 1".to_owned()));
        }
        Ok(RawCodec { max_line_len, ..RawCodec::new() })
    }

    /// The maximum line length.
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    fn take(&mut self, src: &mut BytesMut, len: usize, consumed: usize) -> Bytes {
        let mut line = src.split_to(consumed);
        line.truncate(len);
        self.frame_offset = self.offset;
        self.offset += consumed as u64;
        self.searched = 0;
        line.freeze()
    }

    /// Decodes the next line; `Ok(None)` means more bytes are needed.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        loop {
            let start = self.searched.min(src.len());
            match memchr::memchr(b'\n', &src[start..]) {
                Some(i) => {
                    let len = start + i;
                    if len > self.max_line_len {
                        return Err(CodecError::LineTooLong { offset: self.offset, max: self.max_line_len });
                    }
                    let line = self.take(src, len, len + 1);
                    if !is_blank(&line) {
                        return Ok(Some(line));
                    }
                }
                None => {
                    if src.len() > self.max_line_len {
                        return Err(CodecError::LineTooLong { offset: self.offset, max: self.max_line_len });
                    }
                    self.searched = src.len();
                    return Ok(None);
                }
            }
        }
    }

    /// Like [`decode_frame`](Self::decode_frame) at the end of the stream: a
    /// last line without a line feed is returned as a frame.
    pub fn decode_frame_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        if let Some(line) = self.decode_frame(src)? {
            return Ok(Some(line));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let len = src.len();
        let line = self.take(src, len, len);
        Ok(if is_blank(&line) { None } else { Some(line) })
    }

    /// Appends `payload` verbatim (Go's raw `Write`).
    pub fn encode_frame(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_slice(payload);
        Ok(())
    }

    /// Appends the Go JSON encoding of `msg` and a line feed (Go's raw
    /// `WriteJSON`, i.e. `json.Encoder.Encode`).
    pub fn encode_message(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let r = beehive_model::encode_into(msg, &mut scratch);
        if r.is_ok() {
            dst.reserve(scratch.len() + 1);
            dst.put_slice(&scratch);
            dst.put_u8(b'\n');
        }
        self.scratch = scratch;
        Ok(r?)
    }
}

crate::framing::framing_codec!(RawCodec, |c| c.frame_offset);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_reads_and_blank_lines_are_skipped() {
        let mut codec = RawCodec::new();
        let mut buf = BytesMut::from(&b"{\"a\""[..]);
        assert!(codec.decode_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b":1}\n \r\n{}");
        assert_eq!(codec.decode_frame(&mut buf).unwrap().unwrap(), "{\"a\":1}");
        assert!(codec.decode_frame(&mut buf).unwrap().is_none());
        assert_eq!(codec.decode_frame_eof(&mut buf).unwrap().unwrap(), "{}");
        assert!(codec.decode_frame_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn an_overlong_line_is_an_error_without_a_line_feed_too() {
        let mut codec = RawCodec::with_max_line_len(4).unwrap();
        let mut buf = BytesMut::from(&b"12345"[..]);
        assert!(matches!(codec.decode_frame(&mut buf), Err(CodecError::LineTooLong { max: 4, .. })));
        let mut codec = RawCodec::with_max_line_len(4).unwrap();
        let mut buf = BytesMut::from(&b"1234\n"[..]);
        assert_eq!(codec.decode_frame(&mut buf).unwrap().unwrap(), "1234");
        // A line of the maximum still waiting for its line feed is not too long.
        let mut buf = BytesMut::from(&b"1234"[..]);
        assert!(codec.decode_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\n");
        assert_eq!(codec.decode_frame(&mut buf).unwrap().unwrap(), "1234");
    }

    #[test]
    fn each_line_knows_its_offset_in_the_stream() {
        use crate::framing::Framing;
        let mut codec = RawCodec::with_max_line_len(64).unwrap();
        assert_eq!(codec.max_line_len(), 64);
        // Lines end at the line feed only: a carriage return before it is the
        // JSON's trailing whitespace, left in the frame.
        let mut buf = BytesMut::from(&b"{}\n\n{\"a\":1}\r\n{}"[..]);
        let mut offsets = Vec::new();
        while let Some(line) = codec.decode_frame_eof(&mut buf).unwrap() {
            offsets.push((line, codec.last_frame_offset()));
        }
        assert_eq!(
            offsets,
            [(Bytes::from_static(b"{}"), 0), (Bytes::from_static(b"{\"a\":1}\r"), 4), (Bytes::from_static(b"{}"), 13)]
        );
    }

    #[test]
    fn message_encoding_is_go_write_json() {
        let msg = beehive_model::Message::raw().build_header("i", "", 1);
        let mut buf = BytesMut::new();
        RawCodec::new().encode_message(&msg, &mut buf).unwrap();
        assert_eq!(&buf[..], b"{\"header\":{\"msg_id\":\"i\",\"timestamp\":1},\"route\":{},\"content\":null}\n");
    }
}
