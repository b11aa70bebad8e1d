//! The Package framing codec: a head/data state machine over `BytesMut`.

use beehive_model::Message;
use bytes::{BufMut, Bytes, BytesMut};

use super::header::{check_prefix, PackageHeader, HEADER_LEN};
use crate::CodecError;

/// Default maximum frame size, header included: 1 MiB, the buffer size Go's
/// `PackageReader` is given in beehive's benchmarks. A Go reader with buffer
/// size `b` accepts exactly the frames of at most `b` bytes; configure the
/// same value here to match a Go peer's limit.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete header.
    Head,
    /// Header read; waiting for a payload of this many bytes.
    Data(usize),
}

/// Package framing (`beeh` `v1` `rv` + big-endian `i32` length + payload).
///
/// Decoding returns the payloads in order, exactly the frames Go's
/// `PackageReader` returns, with these differences (each a Go defect):
///
/// * a bad magic or version is an error as soon as the offending byte
///   arrives (Go waits for more data forever);
/// * a negative length is an error (Go panics);
/// * a frame over [`max_frame_len`](Self::max_frame_len) is an error before
///   any of its payload is buffered (Go's "token too long");
/// * data left at the end of the stream is a [`CodecError::Truncated`] error
///   (Go drops it silently);
/// * an empty frame (length 0) is returned as an empty payload wherever it
///   is, including last in the stream (Go drops an empty frame that ends the
///   stream, because its splitter needs more than 12 bytes buffered).
///
/// Encoding writes exactly Go's bytes (header, then payload), as one
/// contiguous buffer rather than Go's two writes.
///
/// ```
/// use beehive_codec::PackageCodec;
/// use bytes::BytesMut;
///
/// let mut codec = PackageCodec::new();
/// let mut buf = BytesMut::new();
/// codec.encode_frame(b"hello", &mut buf).unwrap();
/// assert_eq!(&buf[..], b"beehv1rv\x00\x00\x00\x05hello");
/// assert_eq!(codec.decode_frame(&mut buf).unwrap().unwrap(), "hello");
/// ```
#[derive(Debug, Clone)]
pub struct PackageCodec {
    max_frame_len: usize,
    state: State,
    /// Stream offset of the first byte in the source buffer.
    offset: u64,
    /// Stream offset of the last frame returned.
    frame_offset: u64,
    scratch: Vec<u8>,
}

impl Default for PackageCodec {
    fn default() -> Self {
        PackageCodec::new()
    }
}

impl PackageCodec {
    /// A codec with the default maximum frame size.
    pub fn new() -> Self {
        PackageCodec {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            state: State::Head,
            offset: 0,
            frame_offset: 0,
            scratch: Vec::new(),
        }
    }

    /// A codec accepting frames of at most `max_frame_len` bytes, header
    /// included (Go's `buffSize`). Must be at least the header size.
    pub fn with_max_frame_len(max_frame_len: usize) -> Result<Self, CodecError> {
        if max_frame_len < HEADER_LEN {
            return Err(CodecError::InvalidConfig(format!(
                "max_frame_len {max_frame_len} is smaller than the {HEADER_LEN}-byte header"
            )));
        }
        Ok(PackageCodec { max_frame_len, ..PackageCodec::new() })
    }

    /// The maximum frame size, header included.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Decodes the next frame from `src`; `Ok(None)` means more bytes are
    /// needed. Consumed bytes are removed from `src`.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        let len = match self.state {
            State::Head => {
                if src.len() < HEADER_LEN {
                    check_prefix(src, self.offset)?;
                    return Ok(None);
                }
                let mut head = [0u8; HEADER_LEN];
                head.copy_from_slice(&src[..HEADER_LEN]);
                let len = PackageHeader::parse(&head).validate(self.offset, self.max_frame_len)?;
                self.state = State::Data(len);
                len
            }
            State::Data(len) => len,
        };
        if src.len() < HEADER_LEN + len {
            // Room for the rest of this frame only: the length was checked
            // against the maximum, so a hostile length cannot inflate this.
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(HEADER_LEN + len);
        let payload = frame.split_off(HEADER_LEN).freeze();
        self.frame_offset = self.offset;
        self.offset += (HEADER_LEN + len) as u64;
        self.state = State::Head;
        Ok(Some(payload))
    }

    /// Like [`decode_frame`](Self::decode_frame) at the end of the stream:
    /// bytes that do not form a whole frame are a [`CodecError::Truncated`].
    pub fn decode_frame_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        if let Some(frame) = self.decode_frame(src)? {
            return Ok(Some(frame));
        }
        if src.is_empty() {
            return Ok(None);
        }
        let needed = match self.state {
            State::Head => HEADER_LEN,
            State::Data(len) => HEADER_LEN + len,
        };
        Err(CodecError::Truncated { offset: self.offset, needed: needed as u64, available: src.len() as u64 })
    }

    /// Appends a frame carrying `payload` to `dst`.
    pub fn encode_frame(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        self.check_len(payload.len())?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_slice(&PackageHeader::for_payload(payload.len() as i32).encode());
        dst.put_slice(payload);
        Ok(())
    }

    /// Appends a frame carrying the Go JSON encoding of `msg` to `dst`
    /// (Go's `PackageWriter.WriteJSON`).
    pub fn encode_message(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let r = beehive_model::encode_into(msg, &mut scratch).map_err(CodecError::from);
        let r = r.and_then(|()| self.encode_frame(&scratch, dst));
        self.scratch = scratch;
        r
    }

    fn check_len(&self, len: usize) -> Result<(), CodecError> {
        if len > self.max_frame_len - HEADER_LEN || len > i32::MAX as usize {
            return Err(CodecError::FrameTooLarge {
                offset: 0,
                frame_len: (len + HEADER_LEN) as u64,
                max: self.max_frame_len,
            });
        }
        Ok(())
    }
}

crate::framing::framing_codec!(PackageCodec, |c| c.frame_offset + HEADER_LEN as u64);

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], max: usize) -> (Vec<Bytes>, Result<(), CodecError>) {
        let mut codec = PackageCodec::with_max_frame_len(max).unwrap();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match codec.decode_frame_eof(&mut buf) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => return (out, Ok(())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    #[test]
    fn read_incomplete_head_waits() {
        let mut codec = PackageCodec::new();
        let mut buf = BytesMut::from(&b"beehv1rv\x00\x00"[..]);
        assert!(codec.decode_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\x00\x02ok");
        assert_eq!(codec.decode_frame(&mut buf).unwrap().unwrap(), "ok");
        assert!(buf.is_empty());
    }

    #[test]
    fn read_empty_frames_everywhere() {
        let (f, end) = frames(b"beehv1rv\x00\x00\x00\x00beehv1rv\x00\x00\x00\x00", 1024);
        assert_eq!(f, vec![Bytes::new(), Bytes::new()]);
        assert!(end.is_ok());
    }

    #[test]
    fn read_truncated_body_at_eof_is_an_error_with_offset() {
        let (f, end) = frames(b"beehv1rv\x00\x00\x00\x02okbeehv1rv\x00\x00\x00\x05hel", 1024);
        assert_eq!(f, vec![Bytes::from_static(b"ok")]);
        match end {
            Err(CodecError::Truncated { offset: 14, needed: 17, available: 15 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_max_frame_len_is_checked_before_buffering() {
        let mut codec = PackageCodec::with_max_frame_len(64).unwrap();
        let mut buf = BytesMut::from(&b"beehv1rv\x7f\xff\xff\xff"[..]);
        let cap = buf.capacity();
        assert!(matches!(codec.decode_frame(&mut buf), Err(CodecError::FrameTooLarge { max: 64, .. })));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn read_negative_length_is_an_error() {
        let (_, end) = frames(b"beehv1rv\xff\xff\xff\xffhello", 1024);
        assert!(matches!(end, Err(CodecError::NegativeLength { length: -1, offset: 0 })));
    }

    #[test]
    fn read_bad_magic_fails_on_the_first_bad_byte() {
        let mut codec = PackageCodec::new();
        let mut buf = BytesMut::from(&b"bX"[..]);
        assert!(matches!(codec.decode_frame(&mut buf), Err(CodecError::BadMagic { .. })));
    }

    #[test]
    fn config_rejects_a_maximum_below_the_header() {
        assert!(matches!(PackageCodec::with_max_frame_len(11), Err(CodecError::InvalidConfig(_))));
        assert!(PackageCodec::with_max_frame_len(12).is_ok());
    }

    #[test]
    fn write_respects_the_maximum() {
        let mut codec = PackageCodec::with_max_frame_len(16).unwrap();
        assert_eq!(codec.max_frame_len(), 16);
        let mut buf = BytesMut::new();
        assert!(codec.encode_frame(b"1234", &mut buf).is_ok());
        assert!(matches!(
            codec.encode_frame(b"12345", &mut buf),
            Err(CodecError::FrameTooLarge { frame_len: 17, max: 16, .. })
        ));
        assert_eq!(buf.len(), 16);
    }
}
