//! Go's behaviour on U+2028/U+2029 and on Unicode case folding of field
//! names, checked through the public encode and decode functions.
//!
//! Every expected byte string below is copied from the Go captures vendored
//! in `conformance/captures` (`encode.jsonl` field `go_json`, `decode.jsonl`
//! field `go_reencoded`); the case id is given with each one. Inputs are the
//! capture's message (encode) or its decoded `input_b64` (decode).

use beehive_model::{Content, Map, Message, MessageHeader, MessageRoute, RawJson, Value};

/// The separators as Go writes them inside a JSON string.
const LS_PS: &str = "line\u{2028}sep\u{2029}para";

fn header(id: &str, parent: &str, rv: &str, sync: bool, ty: &str) -> MessageHeader {
    MessageHeader {
        id: id.into(),
        parent_id: parent.into(),
        timestamp: 1700000000123,
        resource_version: rv.into(),
        sync,
        message_type: ty.into(),
    }
}

fn route(source: &str, destination: &str, group: &str, operation: &str, resource: &str) -> MessageRoute {
    MessageRoute {
        source: source.into(),
        destination: destination.into(),
        group: group.into(),
        operation: operation.into(),
        resource: resource.into(),
    }
}

fn sample_header() -> MessageHeader {
    header("9b2f8a3c-5d1e-4f60-a7b8-c9d0e1f2a3b4", "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "12345", true, "unixpacket")
}

fn sample_route() -> MessageRoute {
    route("edged", "metamanager", "meta", "update", "default/pod/nginx")
}

fn encoded(msg: &Message) -> String {
    String::from_utf8(beehive_model::to_vec(msg).unwrap()).unwrap()
}

fn decoded_and_reencoded(input: &[u8]) -> String {
    encoded(&beehive_model::from_slice(input).unwrap())
}

// enc-0044: U+2028 and U+2029 in every string field and in string content.
const GO_ENC_0044: &str = r#"{"header":{"msg_id":"line\u2028sep\u2029para-msg_id","parent_msg_id":"line\u2028sep\u2029para-parent_msg_id","timestamp":1700000000123,"resourceversion":"line\u2028sep\u2029para-resourceversion","sync":true,"type":"line\u2028sep\u2029para-type"},"route":{"source":"line\u2028sep\u2029para-source","destination":"line\u2028sep\u2029para-destination","group":"line\u2028sep\u2029para-group","operation":"line\u2028sep\u2029para-operation","resource":"line\u2028sep\u2029para-resource"},"content":"line\u2028sep\u2029para"}"#;

// enc-0045: U+2028 and U+2029 in a key and values of JSON content.
const GO_ENC_0045: &str = r#"{"header":{"msg_id":"9b2f8a3c-5d1e-4f60-a7b8-c9d0e1f2a3b4","parent_msg_id":"1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f","timestamp":1700000000123,"resourceversion":"12345","sync":true,"type":"unixpacket"},"route":{"source":"edged","destination":"metamanager","group":"meta","operation":"update","resource":"default/pod/nginx"},"content":{"k":["line\u2028sep\u2029para"],"line\u2028sep\u2029para":"line\u2028sep\u2029para"}}"#;

// enc-0257: json.RawMessage content "\"\u2028\u2029\"" (the separators raw).
const GO_ENC_0257: &str = r#"{"header":{"msg_id":"2a4f8c1e-0000-4000-8000-000000000010","timestamp":1700000000123},"route":{},"content":"\u2028\u2029"}"#;

fn enc_0045_content() -> Value {
    let mut map = Map::new();
    map.insert("k".to_owned(), Value::from(vec![Value::from(LS_PS)]));
    map.insert(LS_PS.to_owned(), Value::from(LS_PS));
    Value::from(map)
}

#[test]
fn separators_in_every_string_field_are_escaped_like_go() {
    let f = |name: &str| format!("{LS_PS}-{name}");
    let msg = Message::from_parts(
        header(&f("msg_id"), &f("parent_msg_id"), &f("resourceversion"), true, &f("type")),
        route(&f("source"), &f("destination"), &f("group"), &f("operation"), &f("resource")),
        Content::from(LS_PS),
    );
    assert_eq!(encoded(&msg), GO_ENC_0044);
    assert_eq!(beehive_model::to_vec_line(&msg).unwrap(), format!("{GO_ENC_0044}\n").into_bytes());
    // Each separator on its own, so a writer escaping only one of them fails.
    for (sep, escaped) in [('\u{2028}', r"\u2028"), ('\u{2029}', r"\u2029")] {
        let msg = Message::raw().build_header(format!("a{sep}b"), "", 0);
        assert_eq!(
            encoded(&msg),
            format!(r#"{{"header":{{"msg_id":"a{escaped}b","timestamp":0}},"route":{{}},"content":null}}"#)
        );
    }
}

#[test]
fn separators_in_json_content_are_escaped_like_go() {
    let msg = Message::from_parts(sample_header(), sample_route(), Content::from(enc_0045_content()));
    assert_eq!(encoded(&msg), GO_ENC_0045);
}

#[test]
fn separators_in_raw_json_content_are_escaped_like_go() {
    let msg = Message::from_parts(
        header("2a4f8c1e-0000-4000-8000-000000000010", "", "", false, ""),
        MessageRoute::default(),
        Content::from(RawJson::new("\"\u{2028}\u{2029}\"")),
    );
    assert_eq!(encoded(&msg), GO_ENC_0257);
}

#[test]
fn raw_separators_in_input_are_escaped_on_reencoding() {
    // dec-0094: the separators unescaped in msg_id.
    let input = b"{\"header\":{\"msg_id\":\"a\xe2\x80\xa8b\xe2\x80\xa9c\"},\"route\":{\"source\":\"s\",\"operation\":\"o\",\"resource\":\"r\"},\"content\":\"c\"}";
    assert_eq!(
        decoded_and_reencoded(input),
        r#"{"header":{"msg_id":"a\u2028b\u2029c","timestamp":0},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#
    );
    // enc-0045's document with its separators written raw decodes to the
    // same map, which Go writes as enc-0045; the lazy decoder must not copy
    // such content through verbatim.
    // The same without the escaped key, so that the content has nothing but
    // the separators that Go would rewrite: Go writes the map {"k": [...]}
    // as enc-0045 without its second member.
    let go_k_only = GO_ENC_0045.replace(r#","line\u2028sep\u2029para":"line\u2028sep\u2029para""#, "");
    assert!(go_k_only.ends_with(r#""content":{"k":["line\u2028sep\u2029para"]}}"#), "{go_k_only}");
    for go in [GO_ENC_0045.to_owned(), go_k_only] {
        // Each separator raw on its own, then both.
        let only_ls = go.replace(r"\u2028", "\u{2028}");
        let only_ps = go.replace(r"\u2029", "\u{2029}");
        let both = only_ls.replace(r"\u2029", "\u{2029}");
        for raw_input in [only_ls, only_ps, both] {
            assert_ne!(raw_input, go);
            assert_eq!(decoded_and_reencoded(raw_input.as_bytes()), go, "{raw_input}");
            let lazy = beehive_model::json::from_bytes_lazy(&beehive_model::Bytes::from(raw_input.clone())).unwrap();
            assert_eq!(encoded(&lazy), go, "lazy {raw_input}");
        }
    }
}

#[test]
fn long_s_folds_to_s_in_field_names_like_go() {
    let cases: [(&str, &[u8], &str); 6] = [
        (
            "dec-0036",
            "{\"header\":{\"m\u{017F}g_id\":\"F\"},\"route\":{\"source\":\"s\",\"operation\":\"o\",\"resource\":\"r\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"F","timestamp":0},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
        ),
        (
            "dec-0037",
            "{\"header\":{\"msg_id\":\"id\",\"timestamp\":1},\"route\":{\"\u{017F}ource\":\"F\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"id","timestamp":1},"route":{"source":"F"},"content":"c"}"#,
        ),
        (
            "dec-0038",
            "{\"header\":{\"\u{017F}ync\":true},\"route\":{\"source\":\"s\",\"operation\":\"o\",\"resource\":\"r\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"","timestamp":0,"sync":true},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
        ),
        (
            "dec-0039",
            "{\"header\":{\"time\u{017F}tamp\":77},\"route\":{\"source\":\"s\",\"operation\":\"o\",\"resource\":\"r\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"","timestamp":77},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
        ),
        (
            "dec-0040",
            "{\"header\":{\"re\u{017F}ourceversion\":\"F\"},\"route\":{\"source\":\"s\",\"operation\":\"o\",\"resource\":\"r\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"","timestamp":0,"resourceversion":"F"},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
        ),
        (
            "dec-0047",
            br#"{"header":{"m\u017fg_id":"F"},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
            r#"{"header":{"msg_id":"F","timestamp":0},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
        ),
    ];
    for (case, input, go) in cases {
        assert_eq!(decoded_and_reencoded(input), go, "{case}");
        // decode_into and the lazy decoder match keys the same way.
        let mut msg = Message::raw();
        beehive_model::decode_into(&mut msg, input).unwrap();
        assert_eq!(encoded(&msg), go, "{case} decode_into");
        let lazy = beehive_model::json::from_bytes_lazy(&beehive_model::Bytes::copy_from_slice(input)).unwrap();
        assert_eq!(encoded(&lazy), go, "{case} lazy");
    }
    // dec-0037 seen through the accessors.
    let msg = beehive_model::from_slice(cases[1].1).unwrap();
    assert_eq!(msg.source(), "F");
}

#[test]
fn lookalikes_that_go_does_not_fold_match_nothing() {
    let cases: [(&str, &[u8], &str); 4] = [
        (
            // Kelvin sign where no field has a k.
            "dec-0041",
            "{\"header\":{\"\u{212A}ey\":\"F\"},\"route\":{\"source\":\"s\",\"operation\":\"o\",\"resource\":\"r\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"","timestamp":0},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
        ),
        (
            // Kelvin sign in place of the s of msg_id.
            "dec-0042",
            "{\"header\":{\"m\u{212A}g_id\":\"F\"},\"route\":{\"source\":\"s\",\"operation\":\"o\",\"resource\":\"r\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"","timestamp":0},"route":{"source":"s","operation":"o","resource":"r"},"content":"c"}"#,
        ),
        (
            // Long s in place of the o of content.
            "dec-0054",
            br#"{"header":{"msg_id":"a"},"c\u017fntent":1}"#,
            r#"{"header":{"msg_id":"a","timestamp":0},"route":{},"content":null}"#,
        ),
        (
            // Sharp s is not "s".
            "dec-0052",
            "{\"header\":{\"msg_id\":\"id\",\"timestamp\":1},\"route\":{\"\u{00DF}ource\":\"F\"},\"content\":\"c\"}".as_bytes(),
            r#"{"header":{"msg_id":"id","timestamp":1},"route":{},"content":"c"}"#,
        ),
    ];
    for (case, input, go) in cases {
        assert_eq!(decoded_and_reencoded(input), go, "{case}");
    }
}

#[test]
fn content_keys_are_not_folded() {
    // dec-0056: map keys in content are kept verbatim, and sorted by bytes.
    let input = br#"{"header":{"msg_id":"id","timestamp":1},"route":{"source":"s"},"content":{"\u212A":1,"K":2,"k":3,"\u017f":4,"s":5}}"#;
    assert_eq!(
        decoded_and_reencoded(input),
        "{\"header\":{\"msg_id\":\"id\",\"timestamp\":1},\"route\":{\"source\":\"s\"},\"content\":{\"K\":2,\"k\":3,\"s\":5,\"\u{017F}\":4,\"\u{212A}\":1}}"
    );
}

#[test]
fn public_key_matching_folds_kelvin_and_long_s() {
    // Go's encoding/json folds each rune to the smallest of its simple
    // case-folding orbit: K (U+212A) is k, ſ (U+017F) is s (dec-0036). The
    // socket configuration reader matches field names such as "key" with it.
    assert!(beehive_model::json::key_matches("\u{212A}ey", "key"));
    assert!(beehive_model::json::key_matches("\u{212A}EY", "key"));
    assert!(beehive_model::json::key_matches("m\u{017F}g_id", "msg_id"));
    assert!(beehive_model::json::key_matches("\u{017F}ocket\u{017F}erver", "socketserver"));
    // Orbits do not cross: K is not s, ſ is not k (dec-0042).
    assert!(!beehive_model::json::key_matches("m\u{212A}g_id", "msg_id"));
    assert!(!beehive_model::json::key_matches("\u{017F}ey", "key"));
}
