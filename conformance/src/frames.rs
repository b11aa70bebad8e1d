//! The `frames` category: the byte streams of Go's package and raw writers
//! (`frames/index.jsonl` and the `.bin` files), and what Go's package reader
//! returned for them.

use std::path::Path;

use base64::Engine as _;
use beehive_codec::{CodecError, PackageCodec, RawCodec};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::report::{CategoryReport, Failure};
use crate::{read_jsonl, LoadError};

/// One line of `frames/index.jsonl`.
#[derive(Debug, Deserialize)]
pub struct FrameFile {
    /// The stream file, relative to `frames/`.
    pub file: String,
    /// `package` or `raw`.
    pub framing: String,
    /// `WriteJSON` or `Write`.
    pub via: String,
    /// File size.
    pub bytes: usize,
    /// Payloads as text.
    #[serde(default)]
    pub payloads: Option<Vec<String>>,
    /// Payloads as base64.
    #[serde(default)]
    pub payloads_b64: Option<Vec<String>>,
    /// Buffer size given to Go's reader.
    #[serde(default)]
    pub go_reader_buffer_size: Option<usize>,
    /// Tokens Go's reader returned.
    #[serde(default)]
    pub go_reader_tokens: Option<usize>,
    /// Whether those tokens are the first payloads.
    #[serde(default)]
    pub go_reader_tokens_are_payload_prefix: Option<bool>,
    /// Go's final reader error text.
    #[serde(default)]
    pub go_reader_end: Option<String>,
}

impl FrameFile {
    /// The payloads as bytes.
    pub fn payloads(&self) -> Result<Vec<Vec<u8>>, LoadError> {
        if let Some(p) = &self.payloads {
            return Ok(p.iter().map(|s| s.as_bytes().to_vec()).collect());
        }
        let b64 = self.payloads_b64.as_ref().ok_or_else(|| LoadError::Format(format!("{}: no payloads", self.file)))?;
        b64.iter()
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| LoadError::Format(e.to_string())))
            .collect()
    }
}

/// How a decoding run ended.
#[derive(Debug)]
pub enum End {
    /// All input consumed, end of stream reached cleanly.
    Clean,
    /// Input consumed, more bytes needed (stream still open).
    Pending,
    /// An error.
    Error(CodecError),
}

/// Feeds `chunks` to a package decoder, then signals end of stream when
/// `eof`; returns the frames and how it ended.
pub fn run_package(codec: &mut PackageCodec, chunks: &[&[u8]], eof: bool) -> (Vec<Bytes>, End) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, End::Error(e)),
            }
        }
    }
    if !eof {
        return (frames, End::Pending);
    }
    loop {
        match codec.decode_frame_eof(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, End::Clean),
            Err(e) => return (frames, End::Error(e)),
        }
    }
}

/// Go's reader never returns a final empty frame at end of stream; we do.
/// True when `ours` is `go` plus exactly that frame.
pub fn go_dropped_final_empty_frame(input: &[u8], go: &[Vec<u8>], ours: &[Bytes]) -> bool {
    ours.len() == go.len() + 1
        && ours.last().is_some_and(|f| f.is_empty())
        && ours.iter().zip(go).all(|(a, b)| a.as_ref() == b.as_slice())
        && input.len() >= 12
        && input[input.len() - 12..].starts_with(b"beehv1")
        && input[input.len() - 4..] == [0, 0, 0, 0]
}

fn same_frames(ours: &[Bytes], want: &[Vec<u8>]) -> bool {
    ours.len() == want.len() && ours.iter().zip(want).all(|(a, b)| a.as_ref() == b.as_slice())
}

fn show(frames: &[Bytes], end: &End) -> Vec<u8> {
    let mut s = format!("{} frames {:?} then ", frames.len(), frames.iter().map(|f| f.len()).collect::<Vec<_>>());
    s.push_str(&match end {
        End::Clean => "clean end".to_owned(),
        End::Pending => "pending".to_owned(),
        End::Error(e) => format!("error: {e}"),
    });
    s.into_bytes()
}

fn show_want(frames: &[Vec<u8>], end: &str) -> Vec<u8> {
    format!("{} frames {:?} then {end}", frames.len(), frames.iter().map(Vec::len).collect::<Vec<_>>()).into_bytes()
}

fn fail(case: &str, check: &str, expected: impl Into<Vec<u8>>, actual: impl Into<Vec<u8>>) -> Failure {
    Failure { case: case.to_owned(), check: check.to_owned(), expected: expected.into(), actual: actual.into() }
}

fn check_package(f: &FrameFile, input: &[u8], payloads: &[Vec<u8>], failures: &mut Vec<Failure>) {
    // Encoding: Go's package writer bytes.
    let mut codec = PackageCodec::new();
    let mut out = BytesMut::new();
    for p in payloads {
        if let Err(e) = codec.encode_frame(p, &mut out) {
            failures.push(fail(&f.file, "encode", "ok", e.to_string()));
            return;
        }
    }
    if out.as_ref() != input {
        failures.push(fail(&f.file, "encode (Go package writer bytes)", input, out.to_vec()));
    }
    // Decoding without a size limit that matters: every payload, whole input.
    let big = PackageCodec::with_max_frame_len(input.len().max(beehive_codec::DEFAULT_MAX_FRAME_LEN));
    let Ok(mut big) = big else { return };
    let (frames, end) = run_package(&mut big.clone(), &[input], true);
    if !same_frames(&frames, payloads) || !matches!(end, End::Clean) {
        failures.push(fail(&f.file, "decode all payloads", show_want(payloads, "clean end"), show(&frames, &end)));
    }
    // Split at every eighth byte and at single bytes: the same frames.
    let chunks: Vec<&[u8]> = input.chunks(if input.len() < 4096 { 1 } else { 997 }).collect();
    let (split_frames, split_end) = run_package(&mut big, &chunks, true);
    if !same_frames(&split_frames, payloads) || !matches!(split_end, End::Clean) {
        failures.push(fail(
            &f.file,
            "decode split input",
            show_want(payloads, "clean end"),
            show(&split_frames, &split_end),
        ));
    }
    // Decoding with Go's reader buffer size: Go's tokens, then Go's outcome.
    let (Some(size), Some(n), Some(true)) =
        (f.go_reader_buffer_size, f.go_reader_tokens, f.go_reader_tokens_are_payload_prefix)
    else {
        return;
    };
    let Ok(mut limited) = PackageCodec::with_max_frame_len(size) else {
        failures.push(fail(&f.file, "go buffer size", "accepted", "rejected"));
        return;
    };
    let go_tokens = &payloads[..n.min(payloads.len())];
    let (frames, end) = run_package(&mut limited, &[input], true);
    let go_end = f.go_reader_end.as_deref().unwrap_or("");
    let too_long = go_end.contains("token too long");
    let frames_ok = same_frames(&frames, go_tokens) || go_dropped_final_empty_frame(input, go_tokens, &frames);
    let end_ok =
        if too_long { matches!(end, End::Error(CodecError::FrameTooLarge { .. })) } else { matches!(end, End::Clean) };
    if !frames_ok || !end_ok {
        failures.push(fail(&f.file, "decode with Go's buffer size", show_want(go_tokens, go_end), show(&frames, &end)));
    }
}

fn check_raw(f: &FrameFile, input: &[u8], payloads: &[Vec<u8>], failures: &mut Vec<Failure>) {
    let mut codec = RawCodec::new();
    let mut out = BytesMut::new();
    for p in payloads {
        let _ = codec.encode_frame(p, &mut out);
    }
    if out.as_ref() != input {
        failures.push(fail(&f.file, "encode (Go raw writer bytes)", input, out.to_vec()));
    }
    if f.via != "WriteJSON" {
        // Go's raw reader has no defined result on streams, and arbitrary
        // Write payloads carry no delimiter: nothing more to compare.
        return;
    }
    // Each WriteJSON payload is one line: the line decoder must find them.
    let want: Vec<Vec<u8>> = payloads.iter().map(|p| p.strip_suffix(b"\n").unwrap_or(p).to_vec()).collect();
    let mut codec = RawCodec::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in input.chunks(7) {
        buf.extend_from_slice(chunk);
        while let Ok(Some(line)) = codec.decode_frame(&mut buf) {
            frames.push(line);
        }
    }
    while let Ok(Some(line)) = codec.decode_frame_eof(&mut buf) {
        frames.push(line);
    }
    if !same_frames(&frames, &want) {
        failures.push(fail(&f.file, "decode lines", show_want(&want, "end"), show(&frames, &End::Clean)));
    }
}

/// The message a WriteJSON payload encodes, with its content kept as the
/// raw JSON text of the payload's `content` member.
fn message_with_raw_content(payload: &[u8]) -> Result<beehive_model::Message, String> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        content: &'a serde_json::value::RawValue,
    }
    let msg = beehive_model::from_slice(payload).map_err(|e| e.to_string())?;
    let body: Body<'_> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let raw = beehive_model::RawJson::new(body.content.get().as_bytes().to_vec());
    Ok(msg.fill_body(beehive_model::Content::Raw(raw)))
}

/// Checks one stream file.
pub fn check_file(dir: &Path, f: &FrameFile) -> Vec<Failure> {
    let mut failures = Vec::new();
    let input = match std::fs::read(dir.join(&f.file)) {
        Ok(b) => b,
        Err(e) => return vec![fail(&f.file, "load", "file", e.to_string())],
    };
    if input.len() != f.bytes {
        return vec![fail(&f.file, "load", format!("{} bytes", f.bytes), format!("{} bytes", input.len()))];
    }
    let payloads = match f.payloads() {
        Ok(p) => p,
        Err(e) => return vec![fail(&f.file, "load", "payloads", e.to_string())],
    };
    // WriteJSON payloads are Go's json.Marshal / json.Encoder output of a
    // message: the same header and route with the same content (held as raw
    // JSON, since Go's int64 content would not survive a decode) must give
    // the same bytes through our writer.
    if f.via == "WriteJSON" {
        for p in &payloads {
            let mut out = BytesMut::new();
            let r = message_with_raw_content(p).and_then(|m| {
                if f.framing == "raw" {
                    RawCodec::new().encode_message(&m, &mut out).map_err(|e| e.to_string())
                } else {
                    PackageCodec::new()
                        .encode_message(&m, &mut out)
                        .map(|()| drop(out.split_to(beehive_codec::HEADER_LEN)))
                        .map_err(|e| e.to_string())
                }
            });
            if r.is_err() || out.as_ref() != p.as_slice() {
                failures.push(fail(
                    &f.file,
                    "WriteJSON payload",
                    p.clone(),
                    r.err().map_or(out.to_vec(), String::into_bytes),
                ));
            }
        }
    }
    match f.framing.as_str() {
        "package" => check_package(f, &input, &payloads, &mut failures),
        "raw" => check_raw(f, &input, &payloads, &mut failures),
        other => failures.push(fail(&f.file, "load", "package or raw", other.as_bytes())),
    }
    failures
}

/// Runs the category over `frames/index.jsonl`.
pub fn run(dir: &Path) -> Result<CategoryReport, LoadError> {
    let files: Vec<FrameFile> = read_jsonl(&dir.join("index.jsonl"))?;
    let mut report = CategoryReport::new("frames");
    for f in &files {
        report.record(check_file(dir, f));
    }
    Ok(report)
}
