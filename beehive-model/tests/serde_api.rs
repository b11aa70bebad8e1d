//! The `serde` side of the model: `Value`, `MessageHeader`, `MessageRoute`
//! and `Message` deserialized from what serde formats offer, and `Value`'s
//! conversions to and from Rust and `serde_json` values.

use serde::de::{self, Deserialize as _, Deserializer, Visitor};
use serde::forward_to_deserialize_any;

use beehive_model::{Array, Map, Message, MessageHeader, MessageRoute, Number, Value};

/// A deserializer that offers one thing through `deserialize_any`, for the
/// visitor calls serde_json never makes there (`visit_none`, `visit_some`,
/// `visit_string`).
enum Offer {
    None,
    Some(Box<Offer>),
    String(String),
    Bool(bool),
}

impl<'de> Deserializer<'de> for Offer {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self {
            Offer::None => v.visit_none(),
            Offer::Some(inner) => v.visit_some(*inner),
            Offer::String(s) => v.visit_string(s),
            Offer::Bool(b) => v.visit_bool(b),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

fn value(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn every_json_kind_deserializes_to_its_value() {
    assert_eq!(value("null"), Value::Null);
    assert_eq!(value("true"), Value::Bool(true));
    assert_eq!(value("false"), Value::Bool(false));
    assert_eq!(value("-5"), Value::Number(Number::Int(-5)));
    assert_eq!(value("18446744073709551615"), Value::Number(Number::Uint(u64::MAX)));
    assert_eq!(value("1.5"), Value::Number(Number::Float(1.5)));
    assert_eq!(value(r#""a\"b""#), Value::String("a\"b".to_owned()));
    assert_eq!(value("[1,[]]"), Value::from(vec![Value::from(1u64), Value::from(Vec::new())]));
    let mut m = Map::new();
    m.insert("k".to_owned(), Value::from("v"));
    assert_eq!(value(r#"{"k":"v"}"#), Value::from(m));
}

#[test]
fn options_and_owned_strings_deserialize_to_their_value() {
    assert_eq!(Value::deserialize(Offer::None).unwrap(), Value::Null);
    assert_eq!(Value::deserialize(Offer::Some(Box::new(Offer::Bool(true)))).unwrap(), Value::Bool(true));
    assert_eq!(
        Value::deserialize(Offer::Some(Box::new(Offer::String("s".to_owned())))).unwrap(),
        Value::String("s".to_owned())
    );
    // A serde_json::Value hands over its strings owned.
    let owned = serde_json::Value::String("owned".to_owned());
    assert_eq!(Value::deserialize(owned).unwrap(), Value::String("owned".to_owned()));
}

#[test]
fn a_header_and_a_route_deserialize_on_their_own_with_gos_key_matching() {
    let h: MessageHeader = serde_json::from_str(
        r#"{"MSG_ID":"i","parent_msg_id":"p","Timestamp":42,"resourceversion":"7","sync":true,"type":"t","x":0}"#,
    )
    .unwrap();
    assert_eq!(
        h,
        MessageHeader {
            id: "i".into(),
            parent_id: "p".into(),
            timestamp: 42,
            resource_version: "7".into(),
            sync: true,
            message_type: "t".into(),
        }
    );
    let r: MessageRoute = serde_json::from_str(
        r#"{"source":"s","Destination":"d","group":"g","operation":"o","RESOURCE":"r","extra":[1]}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        MessageRoute {
            source: "s".into(),
            destination: "d".into(),
            group: "g".into(),
            operation: "o".into(),
            resource: "r".into(),
        }
    );
    // `null` leaves them as they are: empty.
    assert_eq!(serde_json::from_str::<MessageHeader>("null").unwrap(), MessageHeader::default());
    assert_eq!(serde_json::from_str::<MessageRoute>("null").unwrap(), MessageRoute::default());
}

#[test]
fn what_is_not_an_object_is_refused_with_what_was_expected() {
    for (json, expected) in [("5", "expected a beehive message object"), ("[]", "expected a beehive message object")] {
        let e = serde_json::from_str::<Message>(json).expect_err(json);
        assert!(e.to_string().contains(expected), "{json}: {e}");
    }
    let e = serde_json::from_str::<MessageHeader>(r#""h""#).expect_err("a string header");
    assert!(e.to_string().contains("expected a message header object"), "{e}");
    let e = serde_json::from_str::<MessageRoute>("true").expect_err("a bool route");
    assert!(e.to_string().contains("expected a message route object"), "{e}");
}

#[test]
fn values_come_from_rust_values() {
    assert_eq!(Value::from(true), Value::Bool(true));
    assert_eq!(Value::from(false), Value::Bool(false));
    assert_eq!(Value::from(7u64), Value::Number(Number::Uint(7)));
    assert_eq!(Value::from(-7i64), Value::Number(Number::Int(-7)));
    assert_eq!(Value::from(0.5f64), Value::Number(Number::Float(0.5)));
    assert_eq!(Value::from("s".to_owned()), Value::String("s".to_owned()));
    assert_eq!(Value::from("s"), Value::String("s".to_owned()));
    let a = Array::from(vec![Value::Null, Value::from(1i64)]);
    assert_eq!(Value::from(a.clone()), Value::Array(a.clone()));
    assert_eq!(Value::from(a.clone()).as_array(), Some(&a));
    assert_eq!(Value::from(Map::new()).as_array(), None);
    assert_eq!(Value::from("[]").as_array(), None);
}

#[test]
fn values_convert_to_serde_json_and_back() {
    let text = r#"{"a":[null,true,-1,18446744073709551615,0.25,"s"],"b":{}}"#;
    let v = value(text);
    let json = serde_json::Value::try_from(v.clone()).unwrap();
    assert_eq!(json, serde_json::from_str::<serde_json::Value>(text).unwrap());
    assert_eq!(Value::from(json), v);

    let nan = Value::from(vec![Value::from(f64::NAN)]);
    let e = serde_json::Value::try_from(nan).expect_err("NaN has no JSON form");
    assert!(e.to_string().contains("NaN"), "{e}");
}
