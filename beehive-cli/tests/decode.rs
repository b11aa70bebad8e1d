//! `beehive decode` on the Go captures and on damaged streams. Every
//! expected value comes from the captures (Go's payloads, Go's `String()`)
//! or from how the test built its input.

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;

use base64::Engine as _;
use common::{beehive, captures, escape_controls, package_frame, records};
use serde::Deserialize;
use serde_json::value::RawValue;
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
    beehive().args(["decode", "--framing", "packet"]).assert().code(2);
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

#[test]
fn the_summary_is_dim_when_clean_and_red_when_errors_were_found() {
    let summary_of = |input: Vec<u8>, code: i32| {
        let out = beehive().args(["--color", "always", "decode"]).write_stdin(input).assert().code(code);
        String::from_utf8(out.get_output().stderr.clone()).unwrap()
    };
    let clean = summary_of(capture("package-001.bin"), 0);
    assert!(clean.starts_with("\x1b[2mbeehive: stdin: package, 1 frame, 1 message, 0 errors"), "{clean:?}");
    let mut broken = capture("package-001.bin");
    broken.extend_from_slice(b"BEEH");
    let red = summary_of(broken, 1);
    assert!(red.starts_with("\x1b[1m\x1b[31mbeehive: stdin: package, 1 frame, 1 message, 1 error"), "{red:?}");
}

#[test]
fn a_truncated_last_frame_is_where_decoding_stopped() {
    // The whole input has been read; the truncated frame is left over.
    let mut input = capture("package-002.bin");
    input.truncate(735 - 10);
    let out = beehive().arg("decode").write_stdin(input).assert().code(1);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.ends_with(": package, 3 frames, 3 messages, 1 error, stopped at byte 562\n"), "{stderr}");
}

/// One record of `decode --framing packets --json`; `message` is kept as
/// the exact bytes printed.
#[derive(Debug, Deserialize)]
struct PacketRecord<'a> {
    line: u64,
    conn: Option<u64>,
    seq: Option<u64>,
    dir: Option<String>,
    offset: Option<u64>,
    length: Option<u64>,
    framing: String,
    #[serde(default)]
    stream: Option<String>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<Value>,
}

impl PacketRecord<'_> {
    fn message(&self) -> &str {
        self.message.unwrap_or_else(|| panic!("not a message: {self:?}")).get()
    }

    fn error_kind(&self) -> &str {
        self.error.as_ref().and_then(|e| e["kind"].as_str()).unwrap_or("")
    }
}

fn packet_records(out: &str) -> Vec<PacketRecord<'_>> {
    out.lines()
        .map(|l| {
            let r: PacketRecord<'_> = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(r.framing, "packets", "{l}");
            r
        })
        .collect()
}

/// `decode ARGS FILE`: stdout, stderr and the exit code.
fn decode_file(args: &[&str], file: &Path) -> (String, String, i32) {
    let out = beehive().arg("decode").args(args).arg(file).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (text(out.stdout), text(out.stderr), out.status.code().unwrap())
}

/// Go's `String()` of the message a JSON text holds.
fn go_string(json: &str) -> String {
    let v: Value = serde_json::from_str(json).unwrap();
    let s = |o: &str, k: &str| v[o][k].as_str().unwrap_or("").to_owned();
    format!(
        "MessageID: {} ParentID: {} Group: {} Source: {} Destination: {} Resource: {} Operation: {}",
        s("header", "msg_id"),
        s("header", "parent_msg_id"),
        s("route", "group"),
        s("route", "source"),
        s("route", "destination"),
        s("route", "resource"),
        s("route", "operation"),
    )
}

/// Every packet of every Go session decodes, and re-encodes to exactly the
/// bytes Go sent (its JSON; the packet adds a line feed), the handshake
/// answer written from Go's struct included.
#[test]
fn every_capture_session_decodes_as_packets_to_gos_exact_bytes() {
    let mut files: Vec<_> = std::fs::read_dir(captures().join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl") && !p.ends_with("index.jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    let (mut packets, mut exchanges) = (0, 0);
    for file in &files {
        let lines: Vec<Value> =
            std::fs::read_to_string(file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for framing in ["packets", "auto"] {
            let (stdout, stderr, code) = decode_file(&["--json", "--framing", framing], file);
            assert_eq!(code, 0, "{}: {stdout}{stderr}", file.display());
            let recs = packet_records(&stdout);
            assert_eq!(recs.len(), lines.len(), "{}: {stdout}", file.display());
            let mut carried: HashMap<String, u64> = HashMap::new();
            for (i, (r, l)) in recs.iter().zip(&lines).enumerate() {
                let text = l["text"].as_str().unwrap();
                let dir = l["dir"].as_str().unwrap();
                let at = carried.entry(dir.to_owned()).or_default();
                assert_eq!(
                    (r.line, r.conn, r.seq, r.dir.as_deref(), r.offset, r.length, r.stream.as_deref()),
                    (i as u64 + 1, None, l["seq"].as_u64(), Some(dir), Some(*at), l["bytes"].as_u64(), None),
                    "{}",
                    file.display()
                );
                *at += text.len() as u64;
                assert_eq!(Some(r.message()), text.strip_suffix('\n'), "{} line {}", file.display(), i + 1);
                packets += 1;
                exchanges += usize::from(r.message().contains(r#""content":{"modules":"#));
            }
        }
        // Text: the line, seq, direction, length and Go's String().
        let (stdout, stderr, _) = decode_file(&[], file);
        let expected: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let text = l["text"].as_str().unwrap();
                format!(
                    "line {} #{} {} {} {}\n",
                    i + 1,
                    l["seq"],
                    l["dir"].as_str().unwrap(),
                    text.len(),
                    escape_controls(&go_string(text))
                )
            })
            .collect();
        assert_eq!(stdout, expected);
        let n = lines.len();
        let summary = format!("packets, {n} frames, {n} messages, 0 errors, {n} lines, ");
        assert!(stderr.contains(&summary), "{stderr}");
    }
    assert!(packets >= 2 * 24, "{packets}");
    // Each session starts with the handshake, whose answer Go writes from
    // its ModuleExchange struct: `modules` before `groups`.
    assert_eq!(exchanges, 2 * files.len());
}

/// A line of `beehive record`'s transcript.
fn record_line(conn: u64, seq: u64, dir: &str, transport: &str, data: &[u8]) -> String {
    format!(
        r#"{{"conn":{conn},"seq":{seq},"dir":"{dir}","t_ns":{},"transport":"{transport}","len":{},"data_b64":"{}"}}"#,
        seq * 1000,
        data.len(),
        base64::engine::general_purpose::STANDARD.encode(data)
    )
}

/// `beehive encode` of a message with fixed id and timestamp.
fn encoded(id: &str, framing: &str, content: &str) -> Vec<u8> {
    let out = beehive()
        .args(["encode", "--source", "edged", "--group", "meta", "--resource", "default/pod/x", "--operation"])
        .args(["update", "--msg-id", id, "--timestamp", "1700000000000", "--content", content, "--framing", framing])
        .assert()
        .success();
    out.get_output().stdout.clone()
}

fn write_log(lines: &[String]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(file, "{l}").unwrap();
    }
    file
}

/// Stream transports: the reads of each connection and direction are
/// joined and split as Raw or Package, frames are placed by their offset
/// in that stream and by the line of the read where they start.
#[test]
fn stream_reads_of_a_record_log_are_joined_per_connection_and_direction() {
    let (a, b) = (encoded("a", "raw", r#"{"n":1}"#), encoded("b", "raw", r#""two""#));
    let c = encoded("c", "package", "[3]");
    let (c2, c5) = ("client_to_server", "server_to_client");
    // Blank lines (consumed with the frame after them) before b and the
    // repeat of a; b starts in one read and ends in another.
    let mut raw_stream = a.clone();
    raw_stream.extend_from_slice(b"\r\n \n");
    let b_at = raw_stream.len();
    raw_stream.extend_from_slice(&b);
    let a2_at = raw_stream.len() + 1;
    let log = write_log(&[
        record_line(7, 1, c2, "unix", &raw_stream[..10]),
        record_line(7, 2, c5, "unix", &c[..5]),
        record_line(7, 3, c2, "unix", &raw_stream[10..b_at + 3]),
        record_line(7, 4, c5, "unix", &c[5..]),
        record_line(7, 5, c2, "unix", &[&raw_stream[b_at + 3..], b"\n", &a].concat()),
        record_line(8, 1, c2, "tcp", &c),
        record_line(8, 2, c2, "tcp", &c[..20]),
    ]);
    let (stdout, stderr, code) = decode_file(&["--json"], log.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    let recs = packet_records(&stdout);
    let got: Vec<_> = recs
        .iter()
        .map(|r| (r.line, r.conn, r.seq, r.dir.as_deref(), r.stream.as_deref(), r.offset, r.length))
        .collect();
    let (a_len, b_len, c_len) = (a.len() as u64 - 1, b.len() as u64 - 1, c.len() as u64);
    assert_eq!(
        got,
        [
            (1, Some(7), Some(1), Some(c2), Some("raw"), Some(0), Some(a_len)),
            (2, Some(7), Some(2), Some(c5), Some("package"), Some(0), Some(c_len)),
            (3, Some(7), Some(3), Some(c2), Some("raw"), Some(b_at as u64), Some(b_len)),
            (5, Some(7), Some(5), Some(c2), Some("raw"), Some(a2_at as u64), Some(a_len)),
            (6, Some(8), Some(1), Some(c2), Some("package"), Some(0), Some(c_len)),
            // The end of the input: conn 8's second frame is cut short.
            (7, Some(8), Some(2), Some(c2), Some("package"), Some(c_len), None),
        ],
        "{stdout}"
    );
    assert_eq!(recs[0].message().as_bytes(), &a[..a.len() - 1]);
    assert_eq!(recs[1].message().as_bytes(), &c[12..]);
    assert_eq!(recs[2].message().as_bytes(), &b[..b.len() - 1]);
    assert_eq!(recs[3].message(), recs[0].message());
    assert_eq!(recs[4].message().as_bytes(), &c[12..]);
    assert_eq!(recs[5].error_kind(), "truncated");
    assert_eq!(recs[5].error.as_ref().unwrap()["available"], 20);

    let (stdout, _, _) = decode_file(&[], log.path());
    let first = stdout.lines().next().unwrap();
    assert_eq!(first, format!("line 1 conn 7 #1 {c2} @0 {a_len} {}", go_string(std::str::from_utf8(&a).unwrap())));
    assert!(stdout.contains(&format!("\nline 3 conn 7 #3 {c2} @{b_at} {b_len} MessageID: b ")), "{stdout}");
    assert!(stdout.ends_with(&format!("line 7 conn 8 #2 {c2} @{c_len} error: stream ended inside a frame at byte {c_len}: 20 of {c_len} bytes present\n")), "{stdout}");
}

/// A line without a packet is reported with its line number, and the
/// lines after it still decode.
#[test]
fn broken_lines_are_reported_with_their_line_number_and_decoding_goes_on() {
    let a = encoded("a", "raw", "1");
    let big = encoded("big", "raw", &format!("\"{}\"", "x".repeat(300)));
    let c2 = "client_to_server";
    let log = write_log(&[
        record_line(1, 1, c2, "unixpacket", &a),
        "{\"conn\":1,\"seq\":2,\"dir\":\"client_to_server\",\"transport\":\"unixpacket\",\"len\":3,\"data_b64\":\"YWJj"
            .to_owned(),
        String::new(),
        r#"{"conn":1,"seq":3,"dir":"client_to_server","transport":"unixpacket","len":3}"#.to_owned(),
        r#"{"seq":4,"dir":"client_to_server","text":"{}\n","bytes":5}"#.to_owned(),
        r#"{"seq":5,"dir":"client_to_server","data_b64":"not base64!"}"#.to_owned(),
        record_line(1, 6, c2, "sctp", &a),
        "[1,2,3]".to_owned(),
        record_line(1, 7, c2, "unixpacket", b"{\"header\":{\"timestamp\":\"x\"}}\n"),
        record_line(1, 8, c2, "unixpacket", &big),
        // Over the line limit for 300-byte packets (6 × 300 + 4096).
        "x".repeat(6000),
        record_line(1, 9, c2, "unixpacket", &a),
    ]);
    let (stdout, stderr, code) = decode_file(&["--json", "--framing", "packets", "--max-frame-len", "300"], log.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    let recs = packet_records(&stdout);
    let kinds: Vec<_> =
        recs.iter().map(|r| (r.line, if r.message.is_some() { "message" } else { r.error_kind() })).collect();
    assert_eq!(
        kinds,
        [
            (1, "message"),
            (2, "bad_line"),
            (4, "bad_line"),
            (5, "bad_line"),
            (6, "bad_line"),
            (7, "bad_line"),
            (8, "bad_line"),
            (9, "invalid_message"),
            (10, "packet_too_large"),
            (11, "line_too_long"),
            (12, "message"),
        ],
        "{stdout}"
    );
    let a_len = a.len() as u64;
    // Packets that were decoded count towards their direction's offsets.
    assert_eq!((recs[7].offset, recs[7].length), (Some(a_len), Some(29)));
    let cause = &recs[7].error.as_ref().unwrap()["cause"];
    assert_eq!(
        (cause["field"].as_str(), cause["stream_offset"].as_u64()),
        (Some("header.timestamp"), Some(a_len + 23))
    );
    assert_eq!((recs[9].length, recs[9].error.as_ref().unwrap()["max"].as_u64()), (Some(6000), Some(5896)));
    assert_eq!(recs[10].offset, Some(a_len + 29 + big.len() as u64));
    assert_eq!(recs[10].message(), recs[0].message());
    // What is known of a bad line is shown; its length is the line's.
    assert_eq!((recs[2].conn, recs[2].seq, recs[2].dir.as_deref(), recs[2].offset), (Some(1), Some(3), Some(c2), None));
    assert_eq!(recs[1].error.as_ref().unwrap()["input_offset"], record_line(1, 1, c2, "unixpacket", &a).len() + 1);
    assert!(recs[1].length.is_some_and(|l| l > 90));
    let message = |i: usize| recs[i].error.as_ref().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(message(1).starts_with("not a packet log line: EOF while parsing"), "{}", message(1));
    assert_eq!(message(2), "no packet bytes (data_b64, text_b64 or text)");
    assert_eq!(message(3), "bytes is 5 but the line holds 3 bytes");
    assert!(message(4).starts_with("data_b64 is not base64"), "{}", message(4));
    assert_eq!(message(5), "unknown transport \"sctp\" (unixpacket, unix or tcp)");
    assert_eq!(message(6), "not a JSON object");

    let (stdout, stderr, code) = decode_file(&["--framing", "packets", "--max-frame-len", "300"], log.path());
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 11, "{stdout}");
    assert!(
        lines[1].starts_with("line 2 error: not a packet log line: EOF while parsing a string at column "),
        "{stdout}"
    );
    assert_eq!(lines[2], format!("line 4 conn 1 #3 {c2} error: no packet bytes (data_b64, text_b64 or text)"));
    assert_eq!(lines[6], "line 8 error: not a JSON object");
    assert_eq!(
        lines[8],
        format!("line 10 conn 1 #8 {c2} {} error: packet larger than the maximum of 300 bytes", big.len())
    );
    assert!(lines[9].starts_with("line 11 error: line of 6000 bytes at byte "), "{stdout}");
    assert!(lines[10].starts_with(&format!("line 12 conn 1 #9 {c2} {a_len} MessageID: a ")), "{stdout}");
    assert!(stderr.contains("packets, 4 frames, 2 messages, 9 errors, 12 lines, "), "{stderr}");
}

/// `auto` takes a packet log for one only by its first line's keys: a Raw
/// stream, whose lines are messages, stays Raw.
#[test]
fn auto_picks_packets_for_a_packet_log_and_raw_for_a_raw_stream() {
    let a = encoded("a", "raw", r#"{"dir":"client_to_server","text":"x","data_b64":""}"#);
    let log = write_log(&[record_line(1, 1, "client_to_server", "unixpacket", &a)]);
    let mut input = b"\n\n".to_vec();
    input.extend_from_slice(&std::fs::read(log.path()).unwrap());
    let out = beehive().args(["decode", "--json", "-"]).write_stdin(input).assert().success();
    let recs_out = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let recs = packet_records(&recs_out);
    assert_eq!((recs.len(), recs[0].line, recs[0].offset), (1, 3, Some(0)));
    assert_eq!(recs[0].message().as_bytes(), &a[..a.len() - 1]);

    // The same message as a Raw stream: its keys are a message's.
    let recs_out = decode_json(&[], a.clone(), 0);
    let recs = records(&recs_out);
    assert_eq!((recs.len(), recs[0].framing.as_str()), (1, "raw"));
    // And a Raw line that is not a message is still Raw (an invalid message).
    let recs_out = decode_json(&[], b"{\"dir\":\"x\"}\n".to_vec(), 0);
    assert_eq!(records(&recs_out)[0].framing, "raw");
    // A packet log given as Raw is what the user asked for.
    let recs_out = decode_json(&["--framing", "raw"], std::fs::read(log.path()).unwrap(), 0);
    assert_eq!(records(&recs_out)[0].framing, "raw");
}

/// A live recording: `beehive record` between a seqpacket client and
/// server, then `decode` of its transcript.
#[test]
fn a_transcript_of_beehive_record_decodes_with_conn_seq_and_dir() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let step = common::STEP;
    let dir = tempfile::tempdir().unwrap();
    let (up, relay, out) = (dir.path().join("up.sock"), dir.path().join("relay.sock"), dir.path().join("rec"));
    let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    listener.bind(&SockAddr::unix(&up).unwrap()).unwrap();
    listener.listen(1).unwrap();
    listener.set_read_timeout(Some(step)).unwrap();
    // The server answers each packet with the packet of the next message.
    let answers = vec![encoded("answer-1", "raw", "1"), encoded("answer-2", "raw", r#"{"ok":true}"#)];
    let server = {
        let answers = answers.clone();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(step)).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            for answer in answers {
                let n = (&s).read(&mut buf).unwrap();
                assert!(n > 0);
                s.send(&answer).unwrap();
            }
            assert_eq!((&s).read(&mut buf).unwrap(), 0);
        })
    };
    let mut record = std::process::Command::new(env!("CARGO_BIN_EXE_beehive"))
        .args(["record", "--listen", relay.to_str().unwrap(), "--upstream", up.to_str().unwrap(), "--out"])
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(record.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.starts_with("beehive: recording "), "{first}");

    let requests = [encoded("request-1", "raw", r#""hello""#), encoded("request-2", "raw", "[1,2]")];
    let client = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    client.connect(&SockAddr::unix(&relay).unwrap()).unwrap();
    client.set_read_timeout(Some(step)).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    for (request, answer) in requests.iter().zip(&answers) {
        client.send(request).unwrap();
        let n = (&client).read(&mut buf).unwrap();
        assert_eq!(&buf[..n], &answer[..]);
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!((&client).read(&mut buf).unwrap(), 0);
    server.join().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(record.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(record.wait().unwrap().success(), "{rest}");

    let transcript = out.join("recorded/conn-000001.jsonl");
    let (stdout, stderr, code) = decode_file(&["--json"], &transcript);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let recs = packet_records(&stdout);
    assert_eq!(recs.len(), 4, "{stdout}");
    // The relay records each direction in order; the two directions may
    // interleave either way.
    let mut expected: HashMap<&str, (std::slice::Iter<'_, Vec<u8>>, u64)> =
        HashMap::from([("client_to_server", (requests.iter(), 0)), ("server_to_client", (answers.iter(), 0))]);
    for (i, r) in recs.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!((r.line, r.conn, r.seq), (seq, Some(1), Some(seq)));
        let (packets, carried) = expected.get_mut(r.dir.as_deref().unwrap()).unwrap();
        let packet = packets.next().unwrap();
        assert_eq!((r.offset, r.length), (Some(*carried), Some(packet.len() as u64)));
        assert_eq!(r.message().as_bytes(), &packet[..packet.len() - 1]);
        *carried += packet.len() as u64;
    }
    let (stdout, _, _) = decode_file(&[], &transcript);
    let line = recs.iter().find(|r| r.message().contains("answer-1")).unwrap().line;
    let want = format!(
        "line {line} conn 1 #{line} server_to_client {} MessageID: answer-1 ParentID:  Group: meta ",
        answers[0].len()
    );
    assert!(stdout.lines().any(|l| l.starts_with(&want)), "{stdout}");
}
