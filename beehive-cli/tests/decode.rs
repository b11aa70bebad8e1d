//! `beehive decode` on the Go captures and on damaged streams. Every
//! expected value comes from the captures (Go's payloads, Go's `String()`)
//! or from how the test built its input.

mod common;

use std::io::Write as _;

use base64::Engine as _;
use common::{beehive, captures, escape_controls, package_frame, records};
use serde_json::Value;

/// One line of `frames/index.jsonl`.
struct FrameFile {
    file: String,
    framing: String,
    via: String,
    frames: usize,
    payloads: Vec<Vec<u8>>,
    go_reader_buffer_size: Option<u64>,
    go_reader_tokens: Option<usize>,
    go_reader_end: Option<String>,
}

fn frame_files() -> Vec<FrameFile> {
    let text = std::fs::read_to_string(captures().join("frames/index.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let payloads = match v.get("payloads") {
                Some(p) => p.as_array().unwrap().iter().map(|s| s.as_str().unwrap().as_bytes().to_vec()).collect(),
                None => v["payloads_b64"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap()).unwrap())
                    .collect(),
            };
            FrameFile {
                file: v["file"].as_str().unwrap().to_owned(),
                framing: v["framing"].as_str().unwrap().to_owned(),
                via: v["via"].as_str().unwrap().to_owned(),
                frames: v["frames"].as_u64().unwrap() as usize,
                payloads,
                go_reader_buffer_size: v.get("go_reader_buffer_size").and_then(Value::as_u64),
                go_reader_tokens: v.get("go_reader_tokens").and_then(|t| t.as_u64()).map(|t| t as usize),
                go_reader_end: v.get("go_reader_end").and_then(|t| t.as_str()).map(str::to_owned),
            }
        })
        .collect()
}

/// The frames a stream holds, from Go's payloads: (offset, length, payload
/// as a message when it was written by `WriteJSON`).
fn expected_frames(f: &FrameFile) -> Vec<(u64, u64, Option<Vec<u8>>)> {
    let json = f.via == "WriteJSON";
    let mut out = Vec::new();
    let mut at = 0u64;
    if f.framing == "package" {
        for p in &f.payloads {
            out.push((at, 12 + p.len() as u64, json.then(|| p.clone())));
            at += 12 + p.len() as u64;
        }
        return out;
    }
    // Raw: the stream is the payloads back to back, one frame per line
    // that is not blank (only spaces, tabs, CRs); a last line without a
    // line feed counts too.
    let stream: Vec<u8> = f.payloads.concat();
    for line in stream.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if !body.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r')) {
            out.push((at, body.len() as u64, json.then(|| body.to_vec())));
        }
        at += line.len() as u64;
    }
    out
}

#[test]
fn every_vendored_stream_decodes_to_gos_frames_and_messages() {
    let files = frame_files();
    assert!(files.len() >= 40, "index lists {} files", files.len());
    let mut reencoded = 0;
    for f in &files {
        let path = captures().join("frames").join(&f.file);
        let expected = expected_frames(f);
        if f.framing == "package" || f.via == "WriteJSON" {
            assert_eq!(expected.len(), f.frames, "{}: one frame per writer call", f.file);
        }
        let mut framings = vec![f.framing.as_str()];
        // `auto` must pick the framing on its own for every stream it can
        // recognise: package streams and raw WriteJSON streams.
        if f.framing == "package" || f.via == "WriteJSON" {
            framings.push("auto");
        }
        for framing in framings {
            let assert = beehive().args(["decode", "--json", "--framing", framing]).arg(&path).assert();
            let out = assert.get_output();
            let stdout = String::from_utf8(out.stdout.clone()).unwrap();
            let recs = records(&stdout);
            assert_eq!(recs.len(), expected.len(), "{} ({framing}): {stdout}", f.file);
            let mut all_messages = true;
            for (r, (offset, length, msg)) in recs.iter().zip(&expected) {
                assert_eq!((r.offset, r.length), (*offset, Some(*length)), "{}: {r:?}", f.file);
                assert_eq!(r.framing, f.framing, "{}", f.file);
                match msg {
                    Some(p) => {
                        if r.message().as_bytes() != &p[..] {
                            reencoded += 1;
                            assert_eq!(as_go_values(r.message().as_bytes()), as_go_values(p), "{}", f.file);
                        }
                    }
                    None => all_messages &= r.message.is_some(),
                }
                if r.message.is_none() {
                    assert_eq!(r.error_kind(), "invalid_message", "{}: {r:?}", f.file);
                    let e = r.error.as_ref().unwrap();
                    let payload_offset = offset + if f.framing == "package" { 12 } else { 0 };
                    assert_eq!(e["offset"], payload_offset, "{}", f.file);
                    assert_eq!(
                        e["cause"]["stream_offset"].as_u64().unwrap(),
                        payload_offset + e["cause"]["offset"].as_u64().unwrap()
                    );
                }
            }
            let code = out.status.code().unwrap();
            assert_eq!(code, if all_messages { 0 } else { 1 }, "{} ({framing}): exit code", f.file);
        }
    }
    // Only the few payloads with integer content beyond float64 precision.
    assert!(reencoded <= 10, "{reencoded} payloads re-encoded differently");
}

/// A JSON document as Go's `json.Unmarshal` into `interface{}` sees it:
/// every number a float64. `--json` prints the message as Go re-encodes it
/// once decoded, so a payload Go wrote from an int64 content (exact digits)
/// comes back as the float64 nearest to it, and nothing else changes.
fn as_go_values(json: &[u8]) -> Value {
    fn norm(v: Value) -> Value {
        match v {
            Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
            Value::Array(a) => Value::Array(a.into_iter().map(norm).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, norm(v))).collect()),
            v => v,
        }
    }
    norm(serde_json::from_slice(json).unwrap())
}

#[test]
fn gos_reader_limit_gives_a_frame_too_large_where_go_said_token_too_long() {
    let mut seen = 0;
    for f in frame_files() {
        let Some(end) = &f.go_reader_end else { continue };
        if !end.contains("token too long") {
            continue;
        }
        seen += 1;
        let tokens = f.go_reader_tokens.unwrap();
        let max = f.go_reader_buffer_size.unwrap().to_string();
        let path = captures().join("frames").join(&f.file);
        let out = beehive().args(["decode", "--json", "--max-frame-len", &max]).arg(&path).assert().code(1);
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        let recs = records(&stdout);
        assert_eq!(recs.len(), tokens + 1, "{stdout}");
        let at: u64 = f.payloads[..tokens].iter().map(|p| 12 + p.len() as u64).sum();
        let last = &recs[tokens];
        assert_eq!((last.offset, last.error_kind()), (at, "frame_too_large"), "{stdout}");
        assert_eq!(last.error.as_ref().unwrap()["frame_len"], 12 + f.payloads[tokens].len() as u64);
    }
    assert!(seen > 0, "the captures have a token-too-long case");
}

/// Go's `json.Marshal` output of every encode case, one per line (a Raw
/// stream written by Go), with Go's `String()` of each.
fn go_messages() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(captures().join("encode.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["go_ok"] == true)
        .map(|v| (v["go_json"].as_str().unwrap().to_owned(), v["go_string"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn summaries_are_gos_string_with_offsets_and_lengths() {
    let msgs = go_messages();
    let mut stream = Vec::new();
    let mut expected = String::new();
    for (json, string) in &msgs {
        expected.push_str(&format!("{} {} {}\n", stream.len(), json.len(), escape_controls(string)));
        stream.extend_from_slice(json.as_bytes());
        stream.push(b'\n');
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&stream).unwrap();
    let out = beehive().arg("decode").arg(file.path()).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(stdout, expected);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let size = stream.len();
    let summary = format!("raw, {} frames, {} messages, 0 errors, {size} bytes\n", msgs.len(), msgs.len());
    assert!(stderr.ends_with(&summary), "{stderr}");
}

/// Every input of `decode.jsonl`, as Package frames: what Go's
/// `json.Unmarshal` accepted comes back as Go's re-encoding of it, what it
/// refused is an invalid message.
#[test]
fn gos_decoder_verdicts_and_reencodings_from_stdin() {
    let text = std::fs::read_to_string(captures().join("decode.jsonl")).unwrap();
    let cases: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut stream = Vec::new();
    let mut offsets = Vec::new();
    for case in &cases {
        let input = base64::engine::general_purpose::STANDARD.decode(case["input_b64"].as_str().unwrap()).unwrap();
        offsets.push(stream.len() as u64);
        stream.extend_from_slice(&package_frame(&input));
    }
    let out = beehive().args(["decode", "--json", "-"]).write_stdin(stream).assert().code(1);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let recs = records(&stdout);
    assert_eq!(recs.len(), cases.len());
    let mut refused = 0;
    for ((r, case), at) in recs.iter().zip(&cases).zip(offsets) {
        assert_eq!((r.offset, r.framing.as_str()), (at, "package"), "{}", case["case"]);
        if case["go_ok"] == true {
            assert_eq!(r.message(), case["go_reencoded"].as_str().unwrap(), "{}", case["case"]);
        } else {
            refused += 1;
            assert_eq!(r.error_kind(), "invalid_message", "{}", case["case"]);
        }
    }
    assert!(refused > 0);
}

fn decode_json(args: &[&str], input: Vec<u8>, code: i32) -> String {
    let out = beehive().arg("decode").arg("--json").args(args).write_stdin(input).assert().code(code);
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(captures().join("frames").join(name)).unwrap()
}

#[test]
fn a_bad_magic_stops_package_decoding_at_its_offset() {
    // package-002.bin: Go wrote four frames of 197, 179, 186 and 173 bytes.
    let mut input = capture("package-002.bin");
    input.splice(376..380, b"BEEH".iter().copied());
    let out = decode_json(&[], input.clone(), 1);
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{out}");
    assert_eq!((recs[2].offset, recs[2].length, recs[2].error_kind()), (376, None, "bad_magic"));
    assert_eq!(recs[2].error.as_ref().unwrap()["found"], serde_json::json!([66, 69, 69, 72]));

    let out = beehive().arg("decode").write_stdin(input).assert().code(1);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let last = stdout.lines().last().unwrap();
    assert_eq!(last, "376 - error: bad package magic [66, 69, 69, 72] at byte 376 (expected \"beeh\")");
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.ends_with(": package, 2 frames, 2 messages, 1 error, stopped at byte 376\n"), "{stderr}");
}

#[test]
fn a_truncated_stream_says_how_much_is_missing() {
    let mut input = capture("package-002.bin");
    input.truncate(735 - 10);
    let out = decode_json(&[], input, 1);
    let recs = records(&out);
    assert_eq!(recs.len(), 4, "{out}");
    let e = recs[3].error.as_ref().unwrap();
    assert_eq!((recs[3].offset, e["kind"].as_str()), (562, Some("truncated")));
    assert_eq!((e["needed"].as_u64(), e["available"].as_u64()), (Some(173), Some(163)));
}

#[test]
fn negative_and_oversized_lengths_are_typed() {
    let mut input = capture("package-001.bin");
    input.extend_from_slice(b"beehv1rv\xff\xff\xff\xfe");
    let recs_out = decode_json(&[], input, 1);
    let recs = records(&recs_out);
    assert_eq!((recs[1].offset, recs[1].error_kind()), (176, "negative_length"));
    assert_eq!(recs[1].error.as_ref().unwrap()["length_field"], -2);

    let input = package_frame(&[b' '; 100]);
    let out = decode_json(&["--max-frame-len", "100"], input, 1);
    let recs = records(&out);
    assert_eq!(recs[0].error_kind(), "frame_too_large");
    assert_eq!(recs[0].error.as_ref().unwrap()["frame_len"], 112);
}

#[test]
fn an_invalid_message_in_a_package_frame_is_reported_and_decoding_goes_on() {
    let mut input = capture("package-001.bin");
    input.extend_from_slice(&package_frame(br#"{"header":{"timestamp":"x"}}"#));
    input.extend_from_slice(&capture("package-001.bin"));
    let out = decode_json(&[], input, 1);
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{out}");
    assert!(recs[0].message.is_some() && recs[2].message.is_some());
    assert_eq!((recs[1].offset, recs[1].length), (176, Some(40)));
    let cause = &recs[1].error.as_ref().unwrap()["cause"];
    // `"x"` is at byte 23 of the payload, which starts at 176 + 12.
    assert_eq!(cause["kind"], "wrong_type");
    assert_eq!(cause["field"], "header.timestamp");
    assert_eq!((cause["offset"].as_u64(), cause["stream_offset"].as_u64()), (Some(23), Some(211)));
    assert_eq!(recs[2].offset, 216);
}

#[test]
fn raw_decoding_goes_on_at_the_next_line() {
    let good = capture("raw-001.bin"); // one message and a line feed, 165 bytes
    let mut input = good.clone();
    input.extend_from_slice(b"{\"header\":\n");
    input.extend_from_slice(&good);
    let out = decode_json(&["--framing", "raw"], input, 1);
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{out}");
    assert_eq!((recs[1].offset, recs[1].length, recs[1].error_kind()), (165, Some(10), "invalid_message"));
    let cause = &recs[1].error.as_ref().unwrap()["cause"];
    assert_eq!((cause["kind"].as_str(), cause["stream_offset"].as_u64()), (Some("unexpected_end"), Some(175)));
    assert_eq!(recs[2].offset, 176);
    assert_eq!(recs[2].message(), recs[0].message());
}

#[test]
fn a_raw_line_over_the_limit_is_skipped_to_the_next_line() {
    let good = capture("raw-001.bin");
    let mut input = vec![b'x'; 300];
    input.push(b'\n');
    input.extend_from_slice(&good);
    let out = decode_json(&["--framing", "raw", "--max-frame-len", "200"], input, 1);
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{out}");
    assert_eq!((recs[0].offset, recs[0].error_kind()), (0, "line_too_long"));
    assert_eq!((recs[1].skipped, recs[1].resumed_at), (Some(301), Some(301)));
    assert_eq!((recs[2].offset, recs[2].length), (301, Some(164)));
}

#[test]
fn resync_skips_and_counts_exactly() {
    // Frames of package-002.bin: 0..197, 197..376, 376..562, 562..735.
    let stream = capture("package-002.bin");
    // 40 bytes of garbage holding a header with a negative length, and the
    // first bytes of a header, between the second and third frames.
    let garbage: &[u8] = b"junk beehv1rv\xff\xff\xff\xff more junk beeh!!!!!!!!";
    assert_eq!(garbage.len(), 40);
    let mut input = stream[..376].to_vec();
    input.extend_from_slice(garbage);
    input.extend_from_slice(&stream[376..]);
    input.extend_from_slice(b"trailing bytes");

    // Without --resync, decoding stops at the garbage.
    let recs_out = decode_json(&[], input.clone(), 1);
    let recs = records(&recs_out);
    assert_eq!(recs.len(), 3);
    assert_eq!((recs[2].offset, recs[2].error_kind()), (376, "bad_magic"));

    let out = decode_json(&["--resync"], input.clone(), 1);
    let recs = records(&out);
    let kinds: Vec<_> = recs
        .iter()
        .map(|r| match (&r.message, r.skipped) {
            (Some(_), _) => "message".to_owned(),
            (None, Some(n)) => format!("skipped {n}"),
            _ => r.error_kind().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["message", "message", "bad_magic", "skipped 40", "message", "message", "bad_magic", "skipped 14"],
        "{out}"
    );
    assert_eq!((recs[3].offset, recs[3].resumed_at), (376, Some(416)));
    assert_eq!((recs[4].offset, recs[5].offset), (416, 602));
    assert_eq!(recs[4].message().as_bytes(), &stream[376 + 12..562]);
    assert_eq!((recs[6].offset, recs[7].offset, recs[7].resumed_at), (775, 775, None));
    assert!(out.lines().last().unwrap().ends_with(r#""skipped":14,"resumed_at":null}"#));

    let out = beehive().args(["decode", "--resync"]).write_stdin(input).assert().code(1);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("\n376 40 skipped 40 bytes, resumed at byte 416 (valid package header)\n"), "{stdout}");
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("4 frames, 4 messages, 2 errors, 54 bytes skipped, 789 bytes"), "{stderr}");
}

#[test]
fn resync_after_a_truncated_frame_finds_a_header_inside_it() {
    // A frame claiming 1000 bytes that holds a whole frame, then ends.
    let inner = capture("package-001.bin");
    let mut input = b"beehv1rv\x00\x00\x03\xe8".to_vec();
    input.extend_from_slice(b"xyz");
    input.extend_from_slice(&inner);
    let out = decode_json(&["--resync"], input, 1);
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{out}");
    assert_eq!((recs[0].offset, recs[0].error_kind()), (0, "truncated"));
    assert_eq!((recs[1].skipped, recs[1].resumed_at), (Some(15), Some(15)));
    assert_eq!(recs[2].offset, 15);
    assert_eq!(recs[2].message().as_bytes(), &inner[12..]);
}

#[test]
fn auto_recognises_each_framing_and_refuses_anything_else() {
    let recs_out = decode_json(&[], capture("package-015.bin"), 0);
    let recs = records(&recs_out);
    assert_eq!(recs.len(), 1000);
    assert!(recs.iter().all(|r| r.framing == "package"));

    let mut raw = b" \r\n\t\n".to_vec();
    raw.extend_from_slice(&capture("raw-015.bin"));
    let recs_out = decode_json(&[], raw, 0);
    let recs = records(&recs_out);
    assert_eq!(recs.len(), 1000);
    assert_eq!((recs[0].offset, recs[0].framing.as_str()), (5, "raw"));

    assert_eq!(decode_json(&[], Vec::new(), 0), "");

    let out = decode_json(&[], b"[1,2]\n".to_vec(), 1);
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].error_kind(), "unrecognised_framing");
    assert_eq!(recs[0].error.as_ref().unwrap()["found"], serde_json::json!([91, 49, 44, 50, 93, 10]));

    // A forced framing is used as given.
    let recs_out = decode_json(&["--framing", "raw"], capture("package-001.bin"), 1);
    assert_eq!(records(&recs_out)[0].error_kind(), "invalid_message");
}

#[test]
fn missing_files_and_bad_flags_exit_2() {
    let out = beehive().args(["decode", "/nonexistent/capture.bin"]).assert().code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.starts_with("beehive: error: cannot open /nonexistent/capture.bin:"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    beehive().args(["decode", "--framing", "packets"]).assert().code(2);
    beehive().args(["decode", "--max-frame-len", "5", "-"]).write_stdin(capture("package-001.bin")).assert().code(2);
    beehive().arg("decode").arg(captures()).assert().code(2);
}

#[test]
fn colour_only_when_asked_or_forced_and_never_with_no_color() {
    let input = {
        let mut v = capture("package-001.bin");
        v.extend_from_slice(b"BEEH");
        v
    };
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = beehive();
        cmd.args(args).arg("decode").write_stdin(input.clone());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.assert().code(1);
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    };
    assert!(!run(&[], &[]).contains('\x1b'), "not a terminal: no colour");
    assert!(run(&["--color", "always"], &[]).contains("\x1b["));
    assert!(run(&[], &[("CLICOLOR_FORCE", "1")]).contains("\x1b["));
    assert!(!run(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains('\x1b'));
    assert!(!run(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]).contains('\x1b'));
}
