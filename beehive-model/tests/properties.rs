//! Property tests: encoding is stable under decoding, the decoder never
//! panics, and float formatting round-trips.

use beehive_model::{Array, Content, DecodeError, Map, Message, MessageHeader, MessageRoute, Number, Value};
use proptest::prelude::*;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/_.-]{0,12}",
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('<'),
                Just('>'),
                Just('&'),
                Just('\u{2028}'),
                Just('\u{2029}'),
                Just('"'),
                Just('\\'),
                Just('\u{0}'),
                Just('\u{1f}'),
                Just('\u{7f}'),
                Just('é'),
                Just('😀'),
                Just('\u{FFFD}')
            ],
            0..8
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        Just(1e21),
        Just(1e-6),
        Just(1e-7),
        Just(-0.0),
        Just(9_007_199_254_740_993.0),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any_float().prop_map(|f| Value::Number(Number::Float(f))),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| Value::Array(Array::from(v))),
            proptest::collection::btree_map(any_text(), inner, 0..6).prop_map(|m| Value::Object(Map::from(m))),
        ]
    })
}

fn any_message() -> impl Strategy<Value = Message> {
    let header = (any_text(), any_text(), any::<i64>(), any_text(), any::<bool>(), any_text()).prop_map(
        |(id, parent_id, timestamp, resource_version, sync, message_type)| MessageHeader {
            id,
            parent_id,
            timestamp,
            resource_version,
            sync,
            message_type,
        },
    );
    let route = (any_text(), any_text(), any_text(), any_text(), any_text()).prop_map(
        |(source, destination, group, operation, resource)| MessageRoute {
            source,
            destination,
            group,
            operation,
            resource,
        },
    );
    (header, route, any_value()).prop_map(|(h, r, v)| Message::from_parts(h, r, Content::from(v)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Decoding our output gives the same message, and encoding it again the
    /// same bytes (everything we write, Go — and we — read back unchanged).
    #[test]
    fn encode_decode_encode_is_stable(msg in any_message()) {
        let first = beehive_model::to_vec(&msg).unwrap();
        let back = beehive_model::from_slice(&first).unwrap();
        prop_assert_eq!(back.header(), msg.header());
        prop_assert_eq!(back.route(), msg.route());
        prop_assert_eq!(beehive_model::to_vec(&back).unwrap(), first);
    }

    /// Arbitrary bytes never panic; an error names an offset inside the input.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        match beehive_model::from_slice(&bytes) {
            Ok(m) => {
                let again = beehive_model::to_vec(&m).unwrap();
                prop_assert_eq!(beehive_model::to_vec(&beehive_model::from_slice(&again).unwrap()).unwrap(), again);
            }
            Err(e) => prop_assert!(e.offset() <= bytes.len()),
        }
    }

    /// Every proper prefix of a valid encoding is rejected as truncated,
    /// or at a byte inside it; never accepted as something else.
    #[test]
    fn truncated_encodings_are_errors(msg in any_message(), cut in 0.0f64..1.0) {
        let bytes = beehive_model::to_vec(&msg).unwrap();
        let n = ((bytes.len() as f64) * cut) as usize;
        match beehive_model::from_slice(&bytes[..n]) {
            Err(DecodeError::UnexpectedEnd { offset }) => prop_assert_eq!(offset, n),
            Err(e) => prop_assert!(e.offset() <= n, "{e}"),
            Ok(_) => prop_assert!(false, "accepted a truncated document"),
        }
    }

    /// Floats are written with shortest round-trip digits, in Go's two styles.
    #[test]
    fn floats_round_trip_in_go_style(f in any_float()) {
        let text = beehive_model::json::value_to_vec(&Value::from(f)).unwrap();
        let text = String::from_utf8(text).unwrap();
        let back: f64 = text.parse().unwrap();
        prop_assert_eq!(back.to_bits(), f.to_bits(), "{}", text);
        let exp = f != 0.0 && (f.abs() < 1e-6 || f.abs() >= 1e21);
        prop_assert_eq!(text.contains('e'), exp, "{}", text);
        if exp {
            prop_assert!(text.contains("e-") || text.contains("e+"), "{}", text);
            prop_assert!(!text.contains("e-0") && !text.contains("e+0"), "{}", text);
        }
    }
}

#[test]
fn non_finite_floats_fail_to_encode_like_go() {
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let msg = Message::raw().fill_body(Value::from(f));
        assert!(matches!(beehive_model::to_vec(&msg), Err(beehive_model::EncodeError::UnsupportedFloat { .. })));
    }
}

#[test]
fn decoding_into_keeps_fields_on_type_errors_and_nothing_on_syntax_errors() {
    let mut msg = Message::raw().build_header("keep", "", 1);
    let err = beehive_model::decode_into(&mut msg, br#"{"header":{"timestamp":"x","parent_msg_id":"p"}}"#).unwrap_err();
    assert!(matches!(err, DecodeError::WrongType { field: "header.timestamp", .. }), "{err}");
    assert_eq!((msg.id(), msg.parent_id(), msg.timestamp()), ("keep", "p", 1));
    let err = beehive_model::decode_into(&mut msg, br#"{"header":{"msg_id":"new"}"#).unwrap_err();
    assert!(err.is_syntax());
    assert_eq!(msg.id(), "keep");
}

#[test]
fn a_key_names_a_field_only_when_it_spells_the_name() {
    // Same length and first byte as a field, yet other keys: ignored.
    let m = beehive_model::from_slice(
        br#"{"route":{"source":"s","sorcer":"x","rasource":"y"},"header":{"type":"t","tipe":"x","msg_id":"m","mxg_id":"z"}}"#,
    )
    .unwrap();
    assert_eq!((m.source(), m.resource(), m.message_type(), m.id()), ("s", "", "t", "m"));
    // Escapes are decoded before matching: `msg\u005fid` is msg_id, while a
    // field's name followed by an escape is another key.
    let m = beehive_model::from_slice(br#"{"header":{"msg\u005fid":"m","msg_id\u0041":"x"},"route":{"source\n":"x"}}"#)
        .unwrap();
    assert_eq!((m.id(), m.source()), ("m", ""));
}

#[test]
fn lazy_decoding_keeps_canonical_content_as_the_input_bytes() {
    let input = beehive_model::Bytes::from_static(br#"{"header":{"msg_id":"m"},"content":{"a":[1,"x"]}}"#);
    let msg = beehive_model::json::from_bytes_lazy(&input).unwrap();
    match msg.content() {
        Content::Raw(raw) => {
            assert_eq!(raw.as_bytes(), br#"{"a":[1,"x"]}"#);
            assert!(raw.is_canonical());
        }
        other => panic!("content decoded to {other:?}"),
    }
    assert_eq!(msg.id(), "m");
}

#[test]
fn null_leaves_a_string_field_as_it_was() {
    let mut msg = Message::raw().build_header("keep", "parent", 1).build_router("src", "grp", "res", "op");
    beehive_model::decode_into(&mut msg, br#"{"header":{"msg_id":null,"parent_msg_id":"p"},"route":{"source":null}}"#)
        .unwrap();
    assert_eq!((msg.id(), msg.parent_id(), msg.source(), msg.group()), ("keep", "p", "src", "grp"));
}

#[test]
fn syntax_errors_say_what_and_where() {
    let err = beehive_model::from_slice(br#"{"header":{"msg_id":"a"}}x"#).unwrap_err();
    assert_eq!(err.to_string(), "invalid character 'x' after top-level value at byte 25");
    let err = beehive_model::from_slice(b"{\"a\":nul }").unwrap_err();
    assert_eq!(err.to_string(), "invalid character ' ' in literal null (expecting 'l') at byte 8");
}
