//! The message API apart from JSON: Go's getters, builders and `String()`,
//! the content helpers, and the errors' wording.
//!
//! Where Go's behaviour is the reference, the expected text is copied from
//! the Go captures vendored in `conformance/captures` (the case id is given
//! with each).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use beehive_model::{
    Bytes, Content, DecodeError, EncodeError, JsonKind, Message, MessageHeader, MessageRoute, ModuleExchange, Number,
    RawJson, SyntaxContext, Value,
};

fn sample() -> Message {
    Message::from_parts(
        MessageHeader {
            id: "9b2f8a3c-5d1e-4f60-a7b8-c9d0e1f2a3b4".into(),
            parent_id: "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f".into(),
            timestamp: 1700000000123,
            resource_version: "12345".into(),
            sync: true,
            message_type: "unixpacket".into(),
        },
        MessageRoute {
            source: "edged".into(),
            destination: "metamanager".into(),
            group: "meta".into(),
            operation: "update".into(),
            resource: "default/pod/nginx".into(),
        },
        Content::from("hello"),
    )
}

fn is_v4_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            14 => c == '4',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

// enc-0002: every field set, string content; `go_string` is Go's String().
#[test]
fn display_is_gos_string() {
    const GO_ENC_0002: &str = "MessageID: 9b2f8a3c-5d1e-4f60-a7b8-c9d0e1f2a3b4 ParentID: \
        1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f Group: meta Source: edged Destination: metamanager \
        Resource: default/pod/nginx Operation: update";
    assert_eq!(sample().to_string(), GO_ENC_0002);
    // enc-0001: all fields zero.
    assert_eq!(
        Message::raw().to_string(),
        "MessageID:  ParentID:  Group:  Source:  Destination:  Resource:  Operation: "
    );
}

#[test]
fn getters_return_their_own_field() {
    let m = sample();
    assert_eq!(
        (m.id(), m.parent_id(), m.timestamp(), m.resource_version(), m.is_sync(), m.message_type()),
        (
            "9b2f8a3c-5d1e-4f60-a7b8-c9d0e1f2a3b4",
            "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            1700000000123,
            "12345",
            true,
            "unixpacket"
        )
    );
    assert_eq!(
        (m.source(), m.destination(), m.group(), m.operation(), m.resource()),
        ("edged", "metamanager", "meta", "update", "default/pod/nginx")
    );
    assert_eq!(m.content().as_str(), Some("hello"));
}

#[test]
fn debug_shows_every_part() {
    let text = format!("{:?}", sample());
    for part in ["header", "route", "content", "metamanager", "12345", "hello"] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
}

#[test]
fn into_parts_gives_back_what_from_parts_took() {
    let m = sample();
    let shared = m.clone();
    let (header, route, content) = m.into_parts();
    assert_eq!(&header, shared.header());
    assert_eq!(&route, shared.route());
    assert_eq!(&content, shared.content());
    assert_eq!(content, Content::from("hello"));
}

#[test]
fn content_mut_changes_this_message_only() {
    let original = sample();
    let mut changed = original.clone();
    *changed.content_mut() = Content::from("changed");
    assert_eq!(changed.content().as_str(), Some("changed"));
    assert_eq!(original.content().as_str(), Some("hello"));
    assert_eq!(changed.id(), original.id());
}

#[test]
fn update_id_gives_a_fresh_uuid_and_keeps_the_rest() {
    let m = sample();
    let updated = m.clone().update_id();
    assert_ne!(updated.id(), m.id());
    assert!(is_v4_uuid(updated.id()), "{}", updated.id());
    assert_eq!((updated.parent_id(), updated.resource()), (m.parent_id(), m.resource()));
    assert_eq!(updated.content(), m.content());
}

#[test]
fn fill_shared_body_shares_the_content() {
    let content = Arc::new(Content::from("shared"));
    let m = sample().fill_shared_body(Arc::clone(&content));
    assert!(Arc::ptr_eq(&m.shared_content(), &content));
    assert_eq!(m.content().as_str(), Some("shared"));
    assert_eq!(m.id(), sample().id());
}

#[test]
fn clone_with_new_id_keeps_what_go_keeps() {
    let m = sample();
    let c = m.clone_with_new_id();
    assert!(is_v4_uuid(c.id()), "{:?}", c.id());
    assert_ne!(c.id(), m.id());
    assert_eq!((c.parent_id(), c.timestamp()), (m.parent_id(), m.timestamp()));
    assert_eq!(
        (c.source(), c.group(), c.resource(), c.operation()),
        (m.source(), m.group(), m.resource(), m.operation())
    );
    assert_eq!((c.destination(), c.resource_version(), c.is_sync(), c.message_type()), ("", "", false, ""));
    assert!(Arc::ptr_eq(&c.shared_content(), &m.shared_content()));
}

#[test]
fn now_millis_is_the_wall_clock_in_milliseconds() {
    let ms = |t: SystemTime| i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let before = ms(SystemTime::now());
    let now = beehive_model::now_millis();
    let after = ms(SystemTime::now());
    assert!(before <= now && now <= after, "{before} <= {now} <= {after}");
    let m = Message::new("p");
    assert!(m.timestamp() >= now && m.timestamp() <= ms(SystemTime::now()));
}

#[test]
fn raw_json_equality_is_by_bytes() {
    assert_eq!(RawJson::new(&b"{\"a\":1}"[..]), RawJson::new(b"{\"a\":1}".to_vec()));
    assert_ne!(RawJson::new(&b"{\"a\":1}"[..]), RawJson::new(&b"{\"a\": 1}"[..]));
    // Whether the decoder found it canonical does not matter.
    let lazy =
        beehive_model::json::from_bytes_lazy(&Bytes::from_static(br#"{"header":{},"route":{},"content":{"a":1}}"#))
            .unwrap();
    let Content::Raw(canonical) = lazy.content() else { panic!("{:?}", lazy.content()) };
    assert!(canonical.is_canonical());
    assert_eq!(canonical, &RawJson::new(&b"{\"a\":1}"[..]));
}

#[test]
fn raw_json_gives_its_bytes_and_its_value() {
    let raw = RawJson::new(&b"[1,\"x\",null]"[..]);
    assert_eq!(raw.to_bytes(), Bytes::from_static(b"[1,\"x\",null]"));
    assert_eq!(raw.as_bytes(), b"[1,\"x\",null]");
    assert_eq!(
        raw.parse().unwrap(),
        Value::Array(vec![Value::Number(Number::Float(1.0)), Value::String("x".into()), Value::Null].into())
    );
    assert!(RawJson::new(&b"{"[..]).parse().is_err());
}

#[test]
fn a_null_module_exchange_is_an_empty_one() {
    // Go unmarshals `null` into the struct by leaving it as it is.
    assert_eq!(ModuleExchange::from_value(&Value::Null), Some(ModuleExchange::default()));
    assert_eq!(ModuleExchange::from_value(&Value::Bool(true)), None);
    let groups = BTreeMap::from([("g".to_owned(), vec!["m".to_owned()])]);
    let value = beehive_model::decode_value(br#"{"modules":["m"],"groups":{"g":["m"]}}"#).unwrap();
    assert_eq!(
        ModuleExchange::from_value(&value),
        Some(ModuleExchange { modules: Some(vec!["m".into()]), groups: Some(groups) })
    );
}

#[test]
fn content_helpers() {
    assert!(Content::Null.is_null());
    assert!(Content::Value(Value::Null).is_null());
    assert!(!Content::from("").is_null());
    assert!(!Content::Value(Value::Bool(false)).is_null());
    assert_eq!(Content::Value(Value::String("v".into())).as_str(), Some("v"));
    assert_eq!(Content::from("s").as_str(), Some("s"));
    assert_eq!(Content::Value(Value::Bool(true)).as_str(), None);
}

#[test]
fn content_names_its_go_type() {
    let cases = [
        (Content::Null, "nil"),
        (Content::from("s"), "string"),
        (Content::from(vec![1u8]), "[]uint8"),
        (Content::Bytes(None), "[]uint8"),
        (Content::Value(Value::Bool(true)), "bool"),
        (Content::Value(Value::Number(Number::Float(1.5))), "float64"),
        (Content::Value(Value::Object(Default::default())), "map"),
        (Content::Value(Value::Array(Default::default())), "slice"),
        (Content::Raw(RawJson::new(&b"1"[..])), "json.RawMessage"),
        (Content::ModuleExchange(ModuleExchange::default()), "*socket.ModuleExchange"),
    ];
    for (content, name) in cases {
        assert_eq!(content.go_type_name(), name, "{content:?}");
    }
}

#[test]
fn content_conversions() {
    assert_eq!(Content::from(String::from("s")), Content::String("s".into()));
    assert_eq!(Content::from(Bytes::from_static(b"ab")), Content::Bytes(Some(Bytes::from_static(b"ab"))));
    assert_eq!(Content::from(serde_json::json!("s")), Content::String("s".into()));
    assert_eq!(Content::from(serde_json::json!(null)), Content::Null);
    assert_eq!(Content::from(serde_json::json!([true])), Content::Value(Value::Array(vec![Value::Bool(true)].into())));
}

// enc-0195, enc-0196, enc-0197: float64 content NaN, +Inf, -Inf.
#[test]
fn non_finite_floats_fail_with_gos_wording() {
    let cases = [
        (f64::NAN, "json: unsupported value: NaN"),
        (f64::INFINITY, "json: unsupported value: +Inf"),
        (f64::NEG_INFINITY, "json: unsupported value: -Inf"),
    ];
    for (f, go_error) in cases {
        let m = Message::raw().fill_body(Value::Number(Number::Float(f)));
        let err = beehive_model::to_vec(&m).unwrap_err();
        assert!(matches!(err, EncodeError::UnsupportedFloat { .. }), "{err:?}");
        let ours = err.to_string();
        assert!(go_error.ends_with(&ours), "{ours:?} against Go's {go_error:?}");
    }
}

// enc-0272: json.RawMessage content "'x'"; dec-0091: a quote inside \u.
#[test]
fn quotes_are_named_as_go_names_them() {
    let err = beehive_model::decode_value(b"'x'").unwrap_err();
    assert_eq!(err.to_string(), "invalid character '\\'' looking for beginning of value at byte 0");
    assert!(matches!(err, DecodeError::InvalidCharacter { byte: b'\'', context: SyntaxContext::ValueStart, .. }));
    let input = br#"{"header":{"msg_id":"\u12"},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#;
    let err = beehive_model::from_slice(input).unwrap_err();
    let go = "invalid character '\"' in \\u hexadecimal character escape";
    assert_eq!(err.to_string(), format!("{go} at byte 25"));
    assert_eq!(err.offset(), 25);
    assert_eq!(input[25], b'"');
}

#[test]
fn errors_say_where() {
    let input = br#"{"header":{"msg_id":"a","timestamp":"5"},"route":{},"content":null}"#;
    let err = beehive_model::from_slice(input).unwrap_err();
    let at = input.windows(3).position(|w| w == b"\"5\"").unwrap();
    assert_eq!(err.offset(), at);
    assert!(matches!(err, DecodeError::WrongType { found: JsonKind::String, .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot decode a JSON string into header.timestamp (int64) at byte {at}"));
    let err = beehive_model::from_slice(br#"{"header":{"timestamp":true}}"#).unwrap_err();
    assert!(err.to_string().starts_with("cannot decode a JSON bool into header.timestamp"), "{err}");
    let err = beehive_model::from_slice(b"{\"header\":").unwrap_err();
    assert_eq!((err.offset(), err.to_string()), (10, "unexpected end of JSON input at byte 10".to_owned()));
}

#[test]
fn numbers_convert_only_when_they_fit() {
    assert_eq!(Number::Float(2.5).as_f64(), 2.5);
    assert_eq!(Number::Int(-3).as_f64(), -3.0);
    assert_eq!(Number::Uint(7).as_f64(), 7.0);
    assert_eq!(Number::Float(-42.0).as_i64(), Some(-42));
    assert_eq!(Number::Float(42.5).as_i64(), None);
    assert_eq!(Number::Float(9_223_372_036_854_775_808.0).as_i64(), None);
    assert_eq!(Number::Float(-9_223_372_036_854_775_808.0).as_i64(), Some(i64::MIN));
    assert_eq!(Number::Float(f64::NAN).as_i64(), None);
    assert_eq!(Number::Uint(u64::MAX).as_i64(), None);
    assert_eq!(Number::Int(5).as_i64(), Some(5));
    assert_eq!(Number::Float(3.0).as_u64(), Some(3));
    assert_eq!(Number::Float(-1.0).as_u64(), None);
    assert_eq!(Number::Float(0.5).as_u64(), None);
    assert_eq!(Number::Float(18_446_744_073_709_551_616.0).as_u64(), None);
    assert_eq!(Number::Int(-1).as_u64(), None);
    assert_eq!(Number::Uint(u64::MAX).as_u64(), Some(u64::MAX));
}

#[test]
fn value_accessors_answer_for_their_own_kind_only() {
    let s = Value::String("s".into());
    let b = Value::Bool(false);
    let n = Value::Number(Number::Float(1.5));
    let a = Value::Array(Default::default());
    let o = Value::Object(Default::default());
    assert_eq!((s.as_str(), b.as_str()), (Some("s"), None));
    assert_eq!((b.as_bool(), Value::Bool(true).as_bool(), s.as_bool()), (Some(false), Some(true), None));
    assert_eq!((n.as_f64(), Value::Number(Number::Int(-2)).as_f64(), b.as_f64()), (Some(1.5), Some(-2.0), None));
    assert!(Value::Null.is_null() && !b.is_null() && !a.is_null());
    assert!(a.is_container() && o.is_container());
    assert!(!s.is_container() && !n.is_container() && !Value::Null.is_container());
}

#[test]
fn numbers_display_as_go_writes_them() {
    assert_eq!(Number::Float(1.5).to_string(), "1.5");
    assert_eq!(Number::Float(1e21).to_string(), "1e+21");
    assert_eq!(Number::Int(-7).to_string(), "-7");
    assert_eq!(Number::Uint(u64::MAX).to_string(), "18446744073709551615");
    assert_eq!(Number::Float(f64::NAN).to_string(), "NaN");
}
