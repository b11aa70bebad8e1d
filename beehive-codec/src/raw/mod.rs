//! Raw framing: one JSON document per write.
//!
//! Go's raw writer sends each message as `json.Encoder` output (the JSON and
//! a line feed) in one write. On a SOCK_SEQPACKET socket (Go's `unixpacket`,
//! the default of beehive's socket mode) a write is a packet, so one packet is
//! one message: see [`packet`]. On stream sockets the line feed is the only
//! delimiter: [`RawCodec`] splits the stream into lines. (Go's raw reader on
//! a stream returns whatever one read returns, so it can merge or split
//! messages; we do not.)

mod lines;
pub mod packet;

pub use lines::{RawCodec, DEFAULT_MAX_LINE_LEN};
