//! Package framing: a 12-byte header, then the payload.

mod codec;
mod header;

pub use codec::{PackageCodec, DEFAULT_MAX_FRAME_LEN};
pub use header::{PackageHeader, HEADER_LEN, MAGIC, RESERVED, VERSION};
