//! Codec errors: what is wrong with a stream, and at which byte.

use std::io;

/// Why a frame or packet could not be read or written.
///
/// Offsets count bytes from the start of the stream the decoder has seen
/// (for packets: from the start of the packet).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A package header that does not start with `beeh`. Go's reader waits
    /// for more data forever here; we stop.
    #[error("bad package magic {found:?} at byte {offset} (expected \"beeh\")")]
    BadMagic {
        /// Offset of the frame header.
        offset: u64,
        /// The bytes found (up to four).
        found: Vec<u8>,
    },
    /// A package header whose version is not `v1`.
    #[error("unsupported package version {found:?} at byte {offset} (expected \"v1\")")]
    UnsupportedVersion {
        /// Offset of the frame header.
        offset: u64,
        /// The bytes found (up to two).
        found: Vec<u8>,
    },
    /// A negative length field (Go's reader panics on these).
    #[error("negative package length {length} at byte {offset}")]
    NegativeLength {
        /// Offset of the frame header.
        offset: u64,
        /// The signed length field.
        length: i32,
    },
    /// A frame larger than the configured maximum (header included), rejected
    /// before anything is buffered for it.
    #[error("frame of {frame_len} bytes at byte {offset} exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Offset of the frame.
        offset: u64,
        /// Header plus payload length.
        frame_len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended inside a frame (Go silently drops these bytes).
    #[error("stream ended inside a frame at byte {offset}: {available} of {needed} bytes present")]
    Truncated {
        /// Offset of the incomplete frame.
        offset: u64,
        /// Bytes the frame needs (header, or header plus payload).
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// A raw line longer than the configured maximum without a line feed.
    #[error("raw line at byte {offset} exceeds the maximum of {max} bytes")]
    LineTooLong {
        /// Offset of the line.
        offset: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A packet larger than the configured maximum (it would be truncated by
    /// a read of that size, as Go's 4096-byte read buffer truncates).
    #[error("packet larger than the maximum of {max} bytes")]
    PacketTooLarge {
        /// The configured maximum.
        max: usize,
    },
    /// A frame payload that is not a valid message.
    #[error("frame at byte {offset} is not a valid message: {source}")]
    Json {
        /// Offset of the frame (its payload for raw framing).
        offset: u64,
        /// The decoding error; its offset is within the payload.
        source: beehive_model::DecodeError,
    },
    /// A message that cannot be encoded (Go's `json.Marshal` fails too).
    #[error("message cannot be encoded: {0}")]
    Encode(#[from] beehive_model::EncodeError),
    /// A write that did not take the whole packet.
    #[error("short write: {written} of {len} bytes")]
    ShortWrite {
        /// Bytes written.
        written: usize,
        /// Bytes that had to be written.
        len: usize,
    },
    /// A configuration value out of range.
    #[error("invalid codec configuration: {0}")]
    InvalidConfig(String),
    /// The underlying reader or writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl CodecError {
    /// True for errors caused by the bytes received (as opposed to I/O or
    /// configuration): the connection that sent them should be closed.
    pub fn is_protocol_error(&self) -> bool {
        !matches!(self, CodecError::Io(_) | CodecError::InvalidConfig(_) | CodecError::Encode(_))
    }
}
