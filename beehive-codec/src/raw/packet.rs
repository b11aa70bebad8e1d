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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_is_go_write_json_and_decodes_back_eagerly_or_lazily() {
        let msg = Message::raw()
            .build_header("i", "", 1)
            .fill_body(beehive_model::Value::from(vec![beehive_model::Value::from("a")]));
        let mut buf = BytesMut::from(&b"before"[..]);
        encode(&msg, &mut buf).unwrap();
        assert_eq!(
            &buf[..],
            &b"before{\"header\":{\"msg_id\":\"i\",\"timestamp\":1},\"route\":{},\"content\":[\"a\"]}\n"[..]
        );
        let packet = buf.split_off(6).freeze();
        assert_eq!(decode(&packet).unwrap(), msg);
        let lazy = decode_lazy(&packet).unwrap();
        assert_eq!(lazy.id(), "i");
        assert_eq!(beehive_model::to_vec(&lazy).unwrap(), beehive_model::to_vec(&msg).unwrap());
        assert!(matches!(decode_lazy(&Bytes::from_static(b"{\"header\"")), Err(CodecError::Json { offset: 0, .. })));
    }
}
