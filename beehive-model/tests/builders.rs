//! Go's constructors and setters, checked against the Go captures, plus the
//! sharing guarantees of `Message`.

use beehive_model::{constants, Content, Message, ModuleExchange};

/// The `go_json` of the first encode capture built by the Go function `func`.
fn go_json_built_by(func: &str) -> (serde_json::Value, String) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/captures/encode.jsonl");
    let text = std::fs::read_to_string(path).expect("vendored captures");
    for line in text.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        if case["builder"]["func"].as_str() == Some(func) {
            let json = case["go_json"].as_str().unwrap().to_owned();
            return (case, json);
        }
    }
    panic!("no capture built by {func}");
}

/// Copies the fields the capture patched (random uuid / time) from Go's message.
fn patch(mut msg: Message, case: &serde_json::Value) -> Message {
    for field in case["builder"]["patched"].as_array().unwrap() {
        let h = &case["message"]["header"];
        match field.as_str().unwrap() {
            "msg_id" => msg.header_mut().id = h["msg_id"].as_str().unwrap().to_owned(),
            "timestamp" => msg.header_mut().timestamp = h["timestamp"].as_i64().unwrap(),
            other => panic!("unexpected patched field {other}"),
        }
    }
    msg
}

#[test]
fn new_message_build_router_fill_body_matches_go() {
    let (case, go) = go_json_built_by("model.NewMessage+BuildRouter+FillBody");
    // model.NewMessage("parent-123").BuildRouter("src","grp","res","insert").FillBody("<a&b>")
    let msg =
        Message::new("parent-123").build_router("src", "grp", "res", constants::INSERT_OPERATION).fill_body("<a&b>");
    let msg = patch(msg, &case);
    assert_eq!(String::from_utf8(beehive_model::to_vec(&msg).unwrap()).unwrap(), go);
}

#[test]
fn raw_message_and_setters_match_go() {
    let (case, go) = go_json_built_by("model.NewRawMessage+setters");
    let msg = Message::raw()
        .build_header("id-1", "", 42)
        .set_route("a", "b")
        .set_resource_operation("r", "o")
        .set_destination("d")
        .set_type(constants::MSG_CTX_TYPE_CHANNEL)
        .set_resource_version("7");
    let msg = patch(msg, &case);
    assert_eq!(String::from_utf8(beehive_model::to_vec(&msg).unwrap()).unwrap(), go);
}

#[test]
fn socket_handshake_request_matches_go() {
    let (case, go) = go_json_built_by(
        "model.NewMessage(\"\").BuildRouter(module,\"\",\"module\",\"add\").SetType(\"unixpacket\").FillBody(\"\")",
    );
    let msg = Message::new("")
        .build_router("edgeclient", "", constants::RESOURCE_TYPE_MODULE, constants::OPERATION_TYPE_MODULE)
        .set_type(constants::MSG_CTX_TYPE_US)
        .fill_body("");
    let msg = patch(msg, &case);
    assert_eq!(String::from_utf8(beehive_model::to_vec(&msg).unwrap()).unwrap(), go);
}

#[test]
fn new_message_has_a_v4_uuid_and_a_millisecond_timestamp() {
    let before = beehive_model::now_millis();
    let msg = Message::new("p");
    let after = beehive_model::now_millis();
    let id = uuid::Uuid::parse_str(msg.id()).expect("uuid");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(msg.id(), msg.id().to_lowercase());
    assert!((before..=after).contains(&msg.timestamp()));
    assert_eq!(msg.parent_id(), "p");
    assert_ne!(Message::new("").id(), Message::new("").id());
}

#[test]
fn response_and_error_builders_follow_go() {
    let req = Message::new("")
        .build_router("edged", "meta", "default/pod/a", constants::UPDATE_OPERATION)
        .set_destination("metamanager")
        .set_type(constants::MSG_CTX_TYPE_US)
        .set_resource_version("9")
        .set_sync(true);
    let resp = req.new_response("ok");
    assert_eq!(resp.parent_id(), req.id());
    assert_ne!(resp.id(), req.id());
    assert_eq!((resp.source(), resp.group(), resp.resource()), ("edged", "meta", "default/pod/a"));
    assert_eq!(resp.operation(), constants::RESPONSE_OPERATION);
    assert_eq!(resp.message_type(), constants::MSG_CTX_TYPE_US);
    assert_eq!((resp.destination(), resp.resource_version(), resp.is_sync()), ("", "", false));

    let err = req.new_error("boom");
    assert_eq!(err.parent_id(), req.id());
    assert_eq!(err.operation(), constants::RESPONSE_ERROR_OPERATION);
    assert_eq!((err.source(), err.group(), err.message_type()), ("", "", ""));
    assert_eq!(err.content().as_str(), Some("boom"));
}

#[test]
fn cloning_a_message_shares_it_and_mutation_copies_only_the_header() {
    let big = Content::from("x".repeat(1 << 20));
    let msg = Message::new("").fill_body(big);
    let copy = msg.clone();
    assert!(Message::ptr_eq(&msg, &copy));
    let mut changed = copy.clone();
    changed.header_mut().sync = true;
    assert!(!Message::ptr_eq(&msg, &changed));
    assert!(std::sync::Arc::ptr_eq(&msg.shared_content(), &changed.shared_content()));
    assert!(!msg.is_sync());
}

#[test]
fn filling_the_body_never_changes_another_holder_of_the_content() {
    let msg = Message::new("").fill_body("first");
    // A clone shares the message: filling the clone leaves the original.
    let refilled = msg.clone().fill_body("second");
    assert_eq!((msg.content().as_str(), refilled.content().as_str()), (Some("first"), Some("second")));
    // A content handle held elsewhere keeps its value too.
    let held = msg.shared_content();
    let unique = Message::from_parts(msg.header().clone(), msg.route().clone(), Content::Null)
        .fill_shared_body(std::sync::Arc::clone(&held))
        .fill_body("third");
    assert_eq!((held.as_str(), unique.content().as_str()), (Some("first"), Some("third")));
    // A message that alone holds its content is refilled in place.
    let own = Message::new("").fill_body("a");
    let before = std::sync::Arc::as_ptr(&own.shared_content());
    let own = own.fill_body("b");
    assert_eq!(own.content().as_str(), Some("b"));
    assert_eq!(std::sync::Arc::as_ptr(&own.shared_content()), before);
}

#[test]
fn go_clone_keeps_the_content_and_drops_what_go_drops() {
    let orig = Message::new("parent")
        .build_router("s", "g", "r", "o")
        .set_destination("d")
        .set_type("unixpacket")
        .set_resource_version("1")
        .set_sync(true)
        .fill_body("c");
    let c = orig.clone_with_new_id();
    assert_ne!(c.id(), orig.id());
    assert_eq!((c.parent_id(), c.timestamp()), (orig.parent_id(), orig.timestamp()));
    assert_eq!((c.source(), c.group(), c.resource(), c.operation()), ("s", "g", "r", "o"));
    assert_eq!((c.destination(), c.message_type(), c.resource_version(), c.is_sync()), ("", "", "", false));
    assert!(std::sync::Arc::ptr_eq(&orig.shared_content(), &c.shared_content()));
}

#[test]
fn is_empty_only_for_the_zero_message() {
    assert!(Message::raw().is_empty());
    assert!(!Message::raw().fill_body("").is_empty());
    assert!(!Message::raw().set_type("channel").is_empty());
}

#[test]
fn content_data_is_go_get_content_data() {
    assert_eq!(Message::raw().fill_body("a<b").content_data().unwrap().as_ref(), b"a<b");
    assert_eq!(Message::raw().fill_body(vec![1u8, 2]).content_data().unwrap().as_ref(), &[1, 2]);
    assert_eq!(Message::raw().content_data().unwrap().as_ref(), b"null");
    let ex = ModuleExchange { modules: Some(vec!["m".into()]), groups: None };
    assert_eq!(Message::raw().fill_body(ex).content_data().unwrap().as_ref(), br#"{"modules":["m"],"groups":null}"#);
}

#[test]
fn module_exchange_reads_back_from_decoded_content() {
    let text =
        br#"{"header":{"msg_id":"x","timestamp":1},"route":{},"content":{"Modules":["a","b"],"groups":{"g":["a"]}}}"#;
    let msg = beehive_model::from_slice(text).unwrap();
    let ex = ModuleExchange::from_value(msg.content().as_value().unwrap()).unwrap();
    assert_eq!(ex.modules, Some(vec!["a".to_owned(), "b".to_owned()]));
    assert_eq!(ex.groups.unwrap()["g"], vec!["a".to_owned()]);
}
