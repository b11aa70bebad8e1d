//! # beehive-model
//!
//! The message type of KubeEdge's beehive bus, with a JSON encoding that is
//! byte-for-byte what Go's `encoding/json` writes for `model.Message`, and a
//! decoder that accepts exactly what Go accepts and yields what Go yields.
//!
//! ```
//! use beehive_model::{Message, Content};
//!
//! let bytes = br#"{"header":{"msg_id":"a","timestamp":5},"route":{"SOURCE":"edged"},"content":{"b":1,"a":[true]}}"#;
//! let msg = beehive_model::from_slice(bytes).unwrap();
//! assert_eq!(msg.source(), "edged"); // keys match case-insensitively, as in Go
//! assert_eq!(
//!     beehive_model::to_vec(&msg).unwrap(),
//!     br#"{"header":{"msg_id":"a","timestamp":5},"route":{"source":"edged"},"content":{"a":[true],"b":1}}"#
//! );
//! ```
//!
//! [`Message`] is a cheap-to-clone shared handle; [`Content`] holds whatever a
//! Go module can put in a message (string, bytes, dynamic JSON, raw JSON, the
//! socket module exchange). With the `serde` traits, a `Message` can also be
//! embedded in other serde types; the Go-exact functions work on bytes.
#![deny(missing_docs)]

pub mod constants;
mod container;
mod content;
mod error;
pub mod json;
mod message;
mod serde_impl;
mod value;

pub use content::{Content, ModuleExchange, RawJson};
pub use error::{DecodeError, EncodeError, JsonKind, SyntaxContext};
pub use json::{decode_into, decode_value, encode_into, from_slice, to_vec, to_vec_line};
pub use message::{new_uuid, now_millis, Message, MessageHeader, MessageRoute};
pub use value::{Array, Map, Number, Value};

pub use bytes::Bytes;

/// The crate README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
