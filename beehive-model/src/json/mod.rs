//! JSON encoding and decoding with Go's `encoding/json` behaviour.
//!
//! * [`to_vec`] / [`encode_into`] write exactly the bytes of Go's
//!   `json.Marshal(&msg)`; [`to_vec_line`] adds the line feed that Go's
//!   `json.Encoder` (the socket Raw writer) appends.
//! * [`from_slice`] / [`decode_into`] read exactly what Go's
//!   `json.Unmarshal(data, &msg)` accepts, with the same result.

pub(crate) mod canonical;
pub(crate) mod fold;
pub(crate) mod read;
pub(crate) mod scan;
pub(crate) mod write;

use crate::content::Content;
use crate::error::{DecodeError, EncodeError};
use crate::message::Message;
use crate::value::Value;

pub use read::MAX_DEPTH;

/// True when a JSON object key matches a lower-case ASCII field name the
/// way Go's `encoding/json` matches keys to struct fields (case-insensitive,
/// with Go's Unicode folding).
pub fn key_matches(key: &str, field: &str) -> bool {
    fold::key_matches(key, field)
}

/// Appends the Go JSON encoding of `msg` to `out`. On error `out` is left
/// as it was.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let len = out.len();
    let r = write::message(out, msg);
    if r.is_err() {
        out.truncate(len);
    }
    r
}

/// The Go JSON encoding of `msg` (`json.Marshal`).
pub fn to_vec(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    write::message(&mut out, msg)?;
    Ok(out)
}

/// The Go JSON encoding of `msg` followed by `\n` (`json.Encoder.Encode`,
/// what the socket Raw writer puts on the wire).
pub fn to_vec_line(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = to_vec(msg)?;
    out.push(b'\n');
    Ok(out)
}

/// The Go JSON encoding of a content value alone (`json.Marshal(content)`).
pub fn content_to_vec(content: &Content) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    write::content(&mut out, content)?;
    Ok(out)
}

/// The Go JSON encoding of a dynamic value.
pub fn value_to_vec(value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    write::value(&mut out, value)?;
    Ok(out)
}

/// Decodes a message as Go's `json.Unmarshal` into a zero `model.Message`.
///
/// Content is decoded into a [`Value`] the way Go fills an `interface{}`
/// (numbers become `f64`, a string becomes [`Content::String`]).
pub fn from_slice(input: &[u8]) -> Result<Message, DecodeError> {
    let mut parts = crate::message::Parts::default();
    read::Parser::new(input).message(&mut parts)?;
    Ok(Message::from_inner(parts))
}

/// Decodes a message like [`from_slice`], but keeps object and array
/// content that is already in Go's canonical form (what Go and this crate
/// write) as [`Content::Raw`] sharing `input`'s buffer, without building a
/// [`Value`]. Writing such a message copies the content bytes and is still
/// byte-exact with Go; call [`crate::RawJson::parse`] to look inside. Other
/// content is decoded as by `from_slice`. Errors are the same as `from_slice`'s.
pub fn from_bytes_lazy(input: &bytes::Bytes) -> Result<Message, DecodeError> {
    let mut parts = crate::message::Parts::default();
    read::Parser::lazy(input).message(&mut parts)?;
    Ok(Message::from_inner(parts))
}

/// Decodes into an existing message with Go's exact semantics: fields present
/// in the input are overwritten, objects for `header` and `route` are merged
/// into the existing ones, `null` leaves a field unchanged (but sets the
/// content to nil). On a syntax error `target` is unchanged; on a type error
/// every other field is still stored and the first type error is returned,
/// as in Go.
pub fn decode_into(target: &mut Message, input: &[u8]) -> Result<(), DecodeError> {
    let mut parts = target.parts().clone();
    let r = read::Parser::new(input).message(&mut parts);
    match &r {
        Err(e) if e.is_syntax() => {}
        _ => *target = Message::from_inner(parts),
    }
    r
}

/// Decodes one JSON document into a dynamic value (Go `json.Unmarshal` into
/// `interface{}`).
pub fn decode_value(input: &[u8]) -> Result<Value, DecodeError> {
    read::Parser::new(input).whole_value()
}

/// Checks that `input` is one valid JSON document under Go's rules
/// (`json.Valid`, with Go's nesting limit).
pub fn validate(input: &[u8]) -> Result<(), DecodeError> {
    read::validate(input)
}
