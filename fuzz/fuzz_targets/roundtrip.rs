//! Encode → frame → decode round trip of arbitrary messages.
//!
//! Invariants: every message without NaN/infinite floats encodes; the
//! encoding decodes (whole, through both framings) to a message that
//! encodes to the same bytes; header and route survive unchanged.
#![no_main]

use arbitrary::Arbitrary;
use beehive_codec::{MessageCodec, PackageCodec, RawCodec};
use beehive_model::{Array, Content, Map, Message, MessageHeader, MessageRoute, Number, Value};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

#[derive(Debug, Arbitrary)]
enum V {
    Null,
    Bool(bool),
    Float(f64),
    Int(i64),
    Str(String),
    Arr(Vec<V>),
    Obj(Vec<(String, V)>),
}

fn value(v: V, depth: usize) -> Value {
    match v {
        V::Null => Value::Null,
        V::Bool(b) => Value::Bool(b),
        V::Float(f) if f.is_finite() => Value::Number(Number::Float(f)),
        V::Float(_) => Value::Null,
        V::Int(i) => Value::Number(Number::Float(i as f64)),
        V::Str(s) => Value::String(s),
        V::Arr(a) if depth < 64 => Value::Array(a.into_iter().map(|v| value(v, depth + 1)).collect::<Array>()),
        V::Obj(o) if depth < 64 => Value::Object(o.into_iter().map(|(k, v)| (k, value(v, depth + 1))).collect::<Map>()),
        _ => Value::Null,
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    id: String,
    parent: String,
    timestamp: i64,
    rv: String,
    sync: bool,
    ty: String,
    route: [String; 5],
    content: V,
}

fuzz_target!(|input: Input| {
    let [source, destination, group, operation, resource] = input.route;
    let msg = Message::from_parts(
        MessageHeader {
            id: input.id,
            parent_id: input.parent,
            timestamp: input.timestamp,
            resource_version: input.rv,
            sync: input.sync,
            message_type: input.ty,
        },
        MessageRoute { source, destination, group, operation, resource },
        Content::from(value(input.content, 0)),
    );
    let bytes = beehive_model::to_vec(&msg).expect("finite messages encode");
    let back = beehive_model::from_slice(&bytes).expect("our output decodes");
    assert_eq!(back.header(), msg.header());
    assert_eq!(back.route(), msg.route());
    assert_eq!(beehive_model::to_vec(&back).expect("encode"), bytes);

    let mut pkg = MessageCodec::new(PackageCodec::new());
    let mut raw = MessageCodec::new(RawCodec::new());
    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
    pkg.encode(&msg, &mut a).expect("package frame");
    raw.encode(&msg, &mut b).expect("raw line");
    let from_pkg = pkg.decode_eof(&mut a).expect("package decode").expect("one frame");
    let from_raw = raw.decode_eof(&mut b).expect("raw decode").expect("one line");
    assert_eq!(beehive_model::to_vec(&from_pkg).expect("encode"), bytes);
    assert_eq!(beehive_model::to_vec(&from_raw).expect("encode"), bytes);
});
