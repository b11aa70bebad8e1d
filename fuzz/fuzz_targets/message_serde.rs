//! serde deserialisation of `Message` (through `serde_json::from_slice`)
//! against the Go-exact decoder `beehive_model::from_slice`.
//!
//! Invariants: no panic; wherever both accept the input they yield the same
//! message, compared by the Go-exact encoding (`to_vec`) after turning the
//! integers serde keeps into the `float64` Go holds (the one documented
//! difference); and serde's own output reads back through serde as the
//! same message.
//!
//! Inputs only one side accepts are expected: serde_json refuses invalid
//! UTF-8, lone surrogate escapes and nesting beyond 128 levels, which Go
//! takes.
#![no_main]

use beehive_model::{Array, Content, Map, Message, Number, Value};
use libfuzzer_sys::fuzz_target;

/// The value Go would hold: every number a `float64`.
fn as_go(v: &Value) -> Value {
    match v {
        Value::Number(Number::Int(i)) => Value::Number(Number::Float(*i as f64)),
        Value::Number(Number::Uint(u)) => Value::Number(Number::Float(*u as f64)),
        Value::Array(items) => Value::Array(items.iter().map(as_go).collect::<Array>()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), as_go(v))).collect::<Map>()),
        other => other.clone(),
    }
}

fn go_view(msg: &Message) -> Message {
    let content = match msg.content() {
        Content::Value(v) => Content::from(as_go(v)),
        other => other.clone(),
    };
    Message::from_parts(msg.header().clone(), msg.route().clone(), content)
}

fuzz_target!(|data: &[u8]| {
    let serde = serde_json::from_slice::<Message>(data);
    let go = beehive_model::from_slice(data);
    if let (Ok(s), Ok(g)) = (&serde, &go) {
        let ours = beehive_model::to_vec(&go_view(s)).expect("decoded messages encode");
        let theirs = beehive_model::to_vec(g).expect("decoded messages encode");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "serde and the Go-exact decoder disagree"
        );
    }
    if let Ok(s) = serde {
        let text = serde_json::to_vec(&s).expect("serde encodes what it decoded");
        let back: Message = serde_json::from_slice(&text).expect("serde reads its own output");
        assert_eq!(
            beehive_model::to_vec(&back).expect("encode"),
            beehive_model::to_vec(&s).expect("encode"),
            "serde round trip of {}",
            String::from_utf8_lossy(&text)
        );
    }
});
