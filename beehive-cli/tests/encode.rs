//! `beehive encode`: Go's bytes for the messages of `encode.jsonl`, built
//! from flags alone, and encode → decode round trips.

mod common;

use std::io::Write as _;

use common::{beehive, captures, package_frame, records};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The content of a case exactly as written in the capture line.
#[derive(Deserialize)]
struct CaseText<'a> {
    #[serde(borrow)]
    message: SpecText<'a>,
}

#[derive(Deserialize)]
struct SpecText<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// The flags that describe a message spec of `encode.jsonl`, or `None` when
/// the message cannot be given on a command line (a NUL in a string, or a
/// content kind other than nil, string, bool, float and decoded JSON).
fn flags_for(spec: &Value, content_text: Option<&str>) -> Option<Vec<String>> {
    let h = &spec["header"];
    let r = &spec["route"];
    let mut args = vec!["encode".to_owned()];
    for (flag, v) in [
        ("--source", &r["source"]),
        ("--group", &r["group"]),
        ("--resource", &r["resource"]),
        ("--operation", &r["operation"]),
        ("--destination", &r["destination"]),
        ("--parent", &h["parent_msg_id"]),
        ("--msg-id", &h["msg_id"]),
        ("--type", &h["type"]),
        ("--resource-version", &h["resourceversion"]),
    ] {
        let s = v.as_str().unwrap();
        if s.contains('\0') {
            return None;
        }
        args.push(format!("{flag}={s}"));
    }
    args.push(format!("--timestamp={}", h["timestamp"].as_i64().unwrap()));
    if h["sync"] == true {
        args.push("--sync".to_owned());
    }
    let content = &spec["content"];
    match spec["content_kind"].as_str().unwrap() {
        "null" => {}
        "string" => {
            let s = content.as_str().unwrap();
            if s.contains('\0') {
                return None;
            }
            args.push(format!("--content-string={s}"));
        }
        // The JSON text Go unmarshalled into its interface{}, verbatim (a
        // float's shortest decimal is such a text too).
        "json" | "float" | "bool" => {
            // A JSON `null` text reads as no RawValue.
            let s = content_text.unwrap_or("null");
            if s.starts_with('"') && spec["content_kind"] == "float" {
                return None;
            }
            args.push(format!("--content={s}"));
        }
        _ => return None,
    }
    Some(args)
}

#[test]
fn messages_built_from_flags_are_gos_bytes() {
    let text = std::fs::read_to_string(captures().join("encode.jsonl")).unwrap();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        let case: Value = serde_json::from_str(line).unwrap();
        if case.get("builder").is_some() || case["go_ok"] != true {
            continue;
        }
        let raw: CaseText<'_> = serde_json::from_str(line).unwrap();
        let Some(args) = flags_for(&case["message"], raw.message.content.map(RawValue::get)) else { continue };
        let go_json = case["go_json"].as_str().unwrap();
        // Raw framing: json.Encoder's bytes (the JSON and a line feed);
        // every fourth case also in Package framing.
        let out = beehive().args(&args).assert().success();
        assert_eq!(String::from_utf8_lossy(&out.get_output().stdout), format!("{go_json}\n"), "{}", case["case"]);
        if i % 4 == 0 {
            let out = beehive().args(&args).args(["--framing", "package"]).assert().success();
            assert_eq!(out.get_output().stdout, package_frame(go_json.as_bytes()), "{}", case["case"]);
        }
        checked += 1;
    }
    assert!(checked >= 250, "only {checked} cases could be given as flags");
}

fn encode(args: &[&str]) -> Vec<u8> {
    let base = ["encode", "--source", "edged", "--group", "meta", "--resource", "default/pod/nginx"];
    let out = beehive().args(base).args(["--operation", "update"]).args(args).assert().success();
    out.get_output().stdout.clone()
}

fn decode_json(input: Vec<u8>) -> String {
    let out = beehive().args(["decode", "--json"]).write_stdin(input).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn encode_then_decode_shows_the_same_message() {
    let mut pod = tempfile::NamedTempFile::new().unwrap();
    let pod_json =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../beehive-bench/data/pod_message.json")).unwrap();
    pod.write_all(&pod_json).unwrap();
    let content_file = format!("@{}", pod.path().display());
    let variants: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--content", r#"{"z":[1,2.5e3,"<&>"],"a":null,"m":{"k":true}}"#],
        vec!["--content-string", "hello\nworld"],
        vec!["--content", "\"a string\"", "--sync", "--parent", "p-1", "--destination", "meta"],
        vec!["--content", &content_file, "--type", "unixpacket", "--resource-version", "42"],
        vec!["--msg-id", "id-1", "--timestamp", "-1", "--content", "123456789012345678901234567890"],
    ];
    for v in variants {
        for framing in ["raw", "package"] {
            let bytes = encode(&[v.as_slice(), &["--framing", framing]].concat());
            let json = if framing == "raw" {
                assert_eq!(bytes.last(), Some(&b'\n'));
                bytes[..bytes.len() - 1].to_vec()
            } else {
                assert_eq!(&bytes[..8], b"beehv1rv");
                assert_eq!(u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize, bytes.len() - 12);
                bytes[12..].to_vec()
            };
            let out = decode_json(bytes);
            let recs = records(&out);
            assert_eq!(recs.len(), 1, "{out}");
            assert_eq!((recs[0].offset, recs[0].framing.as_str()), (0, framing));
            assert_eq!(recs[0].message().as_bytes(), &json[..], "{v:?} {framing}");
        }
    }
}

#[test]
fn content_is_decoded_as_go_decodes_into_an_interface() {
    let out = encode(&["--msg-id", "1", "--timestamp", "2", "--content", " {\"b\":1.0,\"a\":[1E2,\"\\u00e9\"]} "]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"header\":{\"msg_id\":\"1\",\"timestamp\":2},\"route\":{\"source\":\"edged\",\"group\":\"meta\",\
         \"operation\":\"update\",\"resource\":\"default/pod/nginx\"},\"content\":{\"a\":[100,\"é\"],\"b\":1}}\n"
    );
    let from_stdin = beehive()
        .args(["encode", "--source=a", "--group=b", "--resource=c", "--operation=d", "--msg-id=1", "--timestamp=2"])
        .args(["--content", "@-"])
        .write_stdin("null")
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&from_stdin.get_output().stdout).ends_with(",\"content\":null}\n"));
}

#[test]
fn id_and_timestamp_default_to_a_fresh_uuid_and_now() {
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let out = decode_json(encode(&[]));
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let rec: Value = serde_json::from_str(out.trim_end()).unwrap();
    let header = &rec["message"]["header"];
    let id = header["msg_id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a version 4 UUID: {id}");
    let ts = header["timestamp"].as_i64().unwrap();
    assert!((before..=after).contains(&ts), "{before} <= {ts} <= {after}");
    assert!(header.get("sync").is_none() && header.get("parent_msg_id").is_none());
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let base = ["encode", "--source=a", "--group=b", "--resource=c", "--operation=d"];
    let out = beehive().args(base).args(["--content", "{\"a\":tru}"]).assert().code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(
        stderr,
        "beehive: error: --content text is not valid JSON: invalid character '}' in literal true (expecting 'e') \
         at byte 8\n"
    );
    let out = beehive().args(base).args(["--content", "@/nonexistent.json"]).assert().code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.starts_with("beehive: error: cannot read --content file /nonexistent.json:"), "{stderr}");
    beehive().args(base).args(["--content", "1", "--content-string", "x"]).assert().code(2);
    beehive().args(["encode", "--group=b", "--resource=c", "--operation=d"]).assert().code(2);
    beehive().args(base).args(["--framing", "packets"]).assert().code(2);
}
