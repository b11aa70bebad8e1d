//! The 12-byte package header.
//!
//! ```text
//!  0      4    6    8                12
//!  +------+----+----+-----------------+----------------------+
//!  | beeh | v1 | rv | length (i32 BE) | payload (length B)   |
//!  +------+----+----+-----------------+----------------------+
//!   magic  ver  reserved
//! ```
//!
//! Go writes `rv` into the reserved bytes and never checks them; neither do we.

use crate::CodecError;

/// Size of the package header.
pub const HEADER_LEN: usize = 12;
/// The magic bytes.
pub const MAGIC: [u8; 4] = *b"beeh";
/// The only version.
pub const VERSION: [u8; 2] = *b"v1";
/// What Go writes into the reserved bytes.
pub const RESERVED: [u8; 2] = *b"rv";

/// A header as read off the wire, fields unchecked (Go's `packer.Read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageHeader {
    /// Bytes 0–3, `beeh` when valid.
    pub magic: [u8; 4],
    /// Bytes 4–5, `v1` when valid.
    pub version: [u8; 2],
    /// Bytes 6–7, ignored.
    pub reserved: [u8; 2],
    /// Bytes 8–11: the payload length, a big-endian signed 32-bit integer.
    pub length: i32,
}

impl PackageHeader {
    /// The header Go writes for a payload of `length` bytes.
    pub fn for_payload(length: i32) -> Self {
        PackageHeader { magic: MAGIC, version: VERSION, reserved: RESERVED, length }
    }

    /// Reads the fields of a 12-byte header without checking them.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        PackageHeader {
            magic: [b[0], b[1], b[2], b[3]],
            version: [b[4], b[5]],
            reserved: [b[6], b[7]],
            length: i32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    /// The 12 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.length.to_be_bytes();
        let (m, v, r) = (self.magic, self.version, self.reserved);
        [m[0], m[1], m[2], m[3], v[0], v[1], r[0], r[1], l[0], l[1], l[2], l[3]]
    }

    /// Checks magic, version and length for a frame starting at stream
    /// offset `offset`; returns the payload length. `max_frame_len` bounds
    /// header plus payload.
    pub fn validate(&self, offset: u64, max_frame_len: usize) -> Result<usize, CodecError> {
        if self.magic != MAGIC {
            return Err(CodecError::BadMagic { offset, found: self.magic.to_vec() });
        }
        if self.version != VERSION {
            return Err(CodecError::UnsupportedVersion { offset, found: self.version.to_vec() });
        }
        let len =
            usize::try_from(self.length).map_err(|_| CodecError::NegativeLength { offset, length: self.length })?;
        if len > max_frame_len.saturating_sub(HEADER_LEN) {
            return Err(CodecError::FrameTooLarge { offset, frame_len: (len + HEADER_LEN) as u64, max: max_frame_len });
        }
        Ok(len)
    }
}

/// Checks the first bytes of a header before all 12 have arrived, so a
/// stream with a bad magic or version is rejected at once instead of waiting
/// (which is what Go's reader does, forever when the peer stays connected).
pub(crate) fn check_prefix(prefix: &[u8], offset: u64) -> Result<(), CodecError> {
    let magic_len = prefix.len().min(4);
    if prefix[..magic_len] != MAGIC[..magic_len] {
        return Err(CodecError::BadMagic { offset, found: prefix[..magic_len].to_vec() });
    }
    if prefix.len() > 4 {
        let v = &prefix[4..prefix.len().min(6)];
        if v != &VERSION[..v.len()] {
            return Err(CodecError::UnsupportedVersion { offset, found: v.to_vec() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_matches_go_layout() {
        let h = PackageHeader::for_payload(0x0102_0304);
        assert_eq!(&h.encode(), b"beehv1rv\x01\x02\x03\x04");
        assert_eq!(PackageHeader::parse(&h.encode()), h);
    }

    #[test]
    fn validation_names_each_cause() {
        let ok = PackageHeader::for_payload(5);
        assert_eq!(ok.validate(0, 1024).unwrap(), 5);
        let bad = PackageHeader { magic: *b"BEEH", ..ok };
        assert!(matches!(bad.validate(7, 1024), Err(CodecError::BadMagic { offset: 7, .. })));
        let bad = PackageHeader { version: *b"v2", ..ok };
        assert!(matches!(bad.validate(0, 1024), Err(CodecError::UnsupportedVersion { .. })));
        let bad = PackageHeader::for_payload(-1);
        assert!(matches!(bad.validate(0, 1024), Err(CodecError::NegativeLength { length: -1, .. })));
        let big = PackageHeader::for_payload(1013);
        assert!(matches!(big.validate(0, 1024), Err(CodecError::FrameTooLarge { frame_len: 1025, max: 1024, .. })));
        assert_eq!(PackageHeader::for_payload(1012).validate(0, 1024).unwrap(), 1012);
        let reserved = PackageHeader { reserved: *b"\xff\x00", ..ok };
        assert!(reserved.validate(0, 1024).is_ok());
    }

    #[test]
    fn prefixes_are_checked_byte_by_byte() {
        assert!(check_prefix(b"bee", 0).is_ok());
        assert!(check_prefix(b"beehv", 0).is_ok());
        assert!(matches!(check_prefix(b"bx", 0), Err(CodecError::BadMagic { .. })));
        assert!(matches!(check_prefix(b"beehV", 0), Err(CodecError::UnsupportedVersion { .. })));
        assert!(check_prefix(b"beehv1\xff\xff\xff", 0).is_ok());
    }
}
