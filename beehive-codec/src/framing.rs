//! What the two stream framings have in common, and messages on top of them.

use beehive_model::Message;
use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::CodecError;

/// A stream framing: [`crate::PackageCodec`] or [`crate::RawCodec`].
pub trait Framing {
    /// Decodes the next frame payload; `Ok(None)` means more bytes are needed.
    fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError>;
    /// Decodes the next frame at the end of the stream.
    fn decode_frame_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError>;
    /// Stream offset of the payload of the last frame returned.
    fn last_frame_offset(&self) -> u64;
    /// Appends a frame carrying `payload`.
    fn encode_frame(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), CodecError>;
    /// Appends a frame carrying the Go JSON encoding of `msg`.
    fn encode_message(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError>;
}

/// Implements [`Framing`] (by delegating to the inherent methods of the same
/// names) and the `tokio_util` decoder and encoders for a framing codec.
/// `$offset` gives the stream offset of the last frame's payload.
macro_rules! framing_codec {
    ($codec:ty, |$c:ident| $offset:expr) => {
        impl $crate::framing::Framing for $codec {
            fn decode_frame(
                &mut self,
                src: &mut ::bytes::BytesMut,
            ) -> Result<Option<::bytes::Bytes>, $crate::CodecError> {
                <$codec>::decode_frame(self, src)
            }
            fn decode_frame_eof(
                &mut self,
                src: &mut ::bytes::BytesMut,
            ) -> Result<Option<::bytes::Bytes>, $crate::CodecError> {
                <$codec>::decode_frame_eof(self, src)
            }
            fn last_frame_offset(&self) -> u64 {
                let $c = self;
                $offset
            }
            fn encode_frame(&mut self, payload: &[u8], dst: &mut ::bytes::BytesMut) -> Result<(), $crate::CodecError> {
                <$codec>::encode_frame(self, payload, dst)
            }
            fn encode_message(
                &mut self,
                msg: &::beehive_model::Message,
                dst: &mut ::bytes::BytesMut,
            ) -> Result<(), $crate::CodecError> {
                <$codec>::encode_message(self, msg, dst)
            }
        }

        impl ::tokio_util::codec::Decoder for $codec {
            type Item = ::bytes::Bytes;
            type Error = $crate::CodecError;
            fn decode(&mut self, src: &mut ::bytes::BytesMut) -> Result<Option<::bytes::Bytes>, $crate::CodecError> {
                self.decode_frame(src)
            }
            fn decode_eof(
                &mut self,
                src: &mut ::bytes::BytesMut,
            ) -> Result<Option<::bytes::Bytes>, $crate::CodecError> {
                self.decode_frame_eof(src)
            }
        }

        impl ::tokio_util::codec::Encoder<::bytes::Bytes> for $codec {
            type Error = $crate::CodecError;
            fn encode(
                &mut self,
                payload: ::bytes::Bytes,
                dst: &mut ::bytes::BytesMut,
            ) -> Result<(), $crate::CodecError> {
                self.encode_frame(&payload, dst)
            }
        }

        impl ::tokio_util::codec::Encoder<&[u8]> for $codec {
            type Error = $crate::CodecError;
            fn encode(&mut self, payload: &[u8], dst: &mut ::bytes::BytesMut) -> Result<(), $crate::CodecError> {
                self.encode_frame(payload, dst)
            }
        }

        impl ::tokio_util::codec::Encoder<&::beehive_model::Message> for $codec {
            type Error = $crate::CodecError;
            fn encode(
                &mut self,
                msg: &::beehive_model::Message,
                dst: &mut ::bytes::BytesMut,
            ) -> Result<(), $crate::CodecError> {
                self.encode_message(msg, dst)
            }
        }

        impl ::tokio_util::codec::Encoder<::beehive_model::Message> for $codec {
            type Error = $crate::CodecError;
            fn encode(
                &mut self,
                msg: ::beehive_model::Message,
                dst: &mut ::bytes::BytesMut,
            ) -> Result<(), $crate::CodecError> {
                self.encode_message(&msg, dst)
            }
        }
    };
}
pub(crate) use framing_codec;

/// Messages over a framing: decodes each payload with Go's rules
/// ([`beehive_model::from_slice`], or the lazy decoder) and encodes messages
/// as Go's `WriteJSON` does.
///
/// ```
/// use beehive_codec::{MessageCodec, PackageCodec};
/// use beehive_model::Message;
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = MessageCodec::new(PackageCodec::new());
/// let mut buf = BytesMut::new();
/// codec.encode(&Message::raw().build_header("id", "", 1), &mut buf).unwrap();
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap().id(), "id");
/// ```
#[derive(Debug, Clone, Default)]
pub struct MessageCodec<F> {
    framing: F,
    lazy: bool,
}

impl<F: Framing> MessageCodec<F> {
    /// Messages over `framing`, content decoded into values.
    pub fn new(framing: F) -> Self {
        MessageCodec { framing, lazy: false }
    }

    /// Keep canonical content as shared bytes instead of decoding it (for
    /// modules that forward messages); see
    /// [`beehive_model::json::from_bytes_lazy`].
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// The framing codec.
    pub fn framing(&self) -> &F {
        &self.framing
    }

    fn message(&self, payload: Option<Bytes>) -> Result<Option<Message>, CodecError> {
        let Some(payload) = payload else {
            return Ok(None);
        };
        let r = if self.lazy {
            beehive_model::json::from_bytes_lazy(&payload)
        } else {
            beehive_model::from_slice(&payload)
        };
        r.map(Some).map_err(|source| CodecError::Json { offset: self.framing.last_frame_offset(), source })
    }
}

impl<F: Framing> Decoder for MessageCodec<F> {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        let payload = self.framing.decode_frame(src)?;
        self.message(payload)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        let payload = self.framing.decode_frame_eof(src)?;
        self.message(payload)
    }
}

impl<F: Framing> Encoder<&Message> for MessageCodec<F> {
    type Error = CodecError;
    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.framing.encode_message(msg, dst)
    }
}

impl<F: Framing> Encoder<Message> for MessageCodec<F> {
    type Error = CodecError;
    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.framing.encode_message(&msg, dst)
    }
}
