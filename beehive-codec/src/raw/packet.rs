//! Raw framing on SOCK_SEQPACKET: one message per packet.
//!
//! Packet boundaries come from the socket; these functions turn one packet
//! into a message and back. A read must use a buffer larger than the
//! largest accepted packet, so that an oversized packet is detected instead
//! of being cut (Go reads into a 4096-byte buffer and then fails to decode
//! the truncated JSON); [`crate::PacketReader`] does that.

use beehive_model::Message;
use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;

/// Default maximum packet size: 64 KiB.
pub const DEFAULT_MAX_PACKET_LEN: usize = 64 * 1024;

/// Decodes one packet (JSON, usually followed by `\n`).
pub fn decode(packet: &[u8]) -> Result<Message, CodecError> {
    beehive_model::from_slice(packet).map_err(|source| CodecError::Json { offset: 0, source })
}

/// Decodes one packet held in a shared buffer, keeping canonical content as
/// a slice of it (see [`beehive_model::json::from_bytes_lazy`]).
pub fn decode_lazy(packet: &Bytes) -> Result<Message, CodecError> {
    beehive_model::json::from_bytes_lazy(packet).map_err(|source| CodecError::Json { offset: 0, source })
}

/// Appends the packet for `msg` to `dst`: Go's JSON and a line feed.
pub fn encode(msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
    let mut out = Vec::with_capacity(256);
    beehive_model::encode_into(msg, &mut out)?;
    out.push(b'\n');
    dst.put_slice(&out);
    Ok(())
}
