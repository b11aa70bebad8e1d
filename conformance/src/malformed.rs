//! The `malformed` category: Go's package reader on bad streams
//! (`frames/malformed.jsonl`).
//!
//! Where Go returns frames we must return the same frames (plus a final
//! empty frame Go drops at end of stream). Where Go panics, reports "token
//! too long", or silently drops bytes left at the end of the stream, we must
//! end with a typed error. Where Go blocks on an open connection we may wait
//! for more bytes or fail at once, but never invent frames.

use std::path::Path;

use base64::Engine as _;
use beehive_codec::{CodecError, PackageCodec, PackageHeader, HEADER_LEN};
use serde::Deserialize;

use crate::frames::{go_dropped_final_empty_frame, run_package, End};
use crate::report::{CategoryReport, Failure};
use crate::{read_jsonl, LoadError};

/// Go's `packer.Read` over the input.
#[derive(Debug, Deserialize)]
pub struct PackerRead {
    magic_b64: String,
    version_b64: String,
    reserved_b64: String,
    length: i32,
    error: String,
}

/// One line of `frames/malformed.jsonl`.
#[derive(Debug, Deserialize)]
pub struct MalformedCase {
    /// Case id.
    pub case: String,
    /// The stream.
    pub input_b64: String,
    /// Go's reader buffer size.
    pub buffer_size: i64,
    /// `single write` or one byte per write.
    pub delivery: String,
    /// Whether the writer closed the stream after the data.
    pub eof: bool,
    /// Tokens Go's reader returned.
    pub go_tokens_b64: Vec<String>,
    /// `error`, `panic` or `blocked`.
    pub go_end: String,
    /// Go's error or panic text.
    pub go_error: String,
    /// Go's packer.Read result.
    pub go_packer_read: PackerRead,
    /// Go's packer.Validate on the whole input.
    pub go_packer_validate: bool,
    /// Go's packer.GetMessageLen on the whole input.
    pub go_packer_get_message_len: i32,
}

fn fail(case: &str, check: &str, expected: impl Into<Vec<u8>>, actual: impl Into<Vec<u8>>) -> Failure {
    Failure { case: case.to_owned(), check: check.to_owned(), expected: expected.into(), actual: actual.into() }
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

fn describe(frames: &[bytes::Bytes], end: &End) -> String {
    let end = match end {
        End::Clean => "clean end".to_owned(),
        End::Pending => "pending".to_owned(),
        End::Error(e) => format!("error: {e}"),
    };
    format!("frames {:?} then {end}", frames.iter().map(|f| f.len()).collect::<Vec<_>>())
}

/// Checks the header parsing against Go's packer on a full header.
fn check_header(c: &MalformedCase, input: &[u8], failures: &mut Vec<Failure>) {
    if input.len() < HEADER_LEN {
        return;
    }
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&input[..HEADER_LEN]);
    let h = PackageHeader::parse(&head);
    let p = &c.go_packer_read;
    if p.error.is_empty()
        && (h.magic.to_vec() != b64(&p.magic_b64)
            || h.version.to_vec() != b64(&p.version_b64)
            || h.reserved.to_vec() != b64(&p.reserved_b64)
            || h.length != p.length)
    {
        failures.push(fail(&c.case, "header fields (packer.Read)", format!("{p:?}"), format!("{h:?}")));
    }
    if h.length != c.go_packer_get_message_len {
        failures.push(fail(
            &c.case,
            "length field (GetMessageLen)",
            c.go_packer_get_message_len.to_string(),
            h.length.to_string(),
        ));
    }
    // Go's Validate: more than 12 bytes, magic and version right (length unchecked).
    let ours = input.len() > HEADER_LEN
        && !matches!(
            h.validate(0, usize::MAX),
            Err(CodecError::BadMagic { .. } | CodecError::UnsupportedVersion { .. })
        );
    if ours != c.go_packer_validate {
        failures.push(fail(&c.case, "header validity (Validate)", c.go_packer_validate.to_string(), ours.to_string()));
    }
}

/// Checks one case; returns its failures.
pub fn check_case(c: &MalformedCase) -> Vec<Failure> {
    let mut failures = Vec::new();
    let input = b64(&c.input_b64);
    let go_tokens: Vec<Vec<u8>> = c.go_tokens_b64.iter().map(|t| b64(t)).collect();
    check_header(c, &input, &mut failures);

    let codec = usize::try_from(c.buffer_size)
        .map_err(|_| ())
        .and_then(|n| PackageCodec::with_max_frame_len(n).map_err(|_| ()));
    let Ok(mut codec) = codec else {
        // We refuse the configuration. Acceptable only where Go returned an
        // error or panicked before delivering any frame.
        if !go_tokens.is_empty()
            || c.go_end == "blocked"
            || (c.go_end == "error" && !c.go_error.contains("token too long"))
        {
            failures.push(fail(&c.case, "configuration", c.go_error.as_bytes(), b"rejected buffer size".to_vec()));
        }
        return failures;
    };
    let chunks: Vec<&[u8]> =
        if c.delivery.starts_with("one byte") { input.chunks(1).collect() } else { vec![input.as_slice()] };
    let (frames, end) = run_package(&mut codec, &chunks, c.eof);

    let same =
        frames.len() == go_tokens.len() && frames.iter().zip(&go_tokens).all(|(a, b)| a.as_ref() == b.as_slice());
    let frames_ok = same || go_dropped_final_empty_frame(&input, &go_tokens, &frames);
    // Bytes Go's frames account for (plus the final empty frame it drops).
    let consumed: usize = frames.iter().map(|t| t.len() + HEADER_LEN).sum();
    let end_ok = match c.go_end.as_str() {
        // Go reports a plain error at end of stream: a clean end for us only
        // if the frames cover every byte; otherwise Go dropped data silently
        // and we must fail.
        "error" if !c.go_error.contains("token too long") && consumed == input.len() => {
            matches!(end, End::Clean)
        }
        "error" | "panic" => matches!(end, End::Error(_)),
        // Go hangs: waiting or failing are both fine.
        "blocked" => matches!(end, End::Pending | End::Error(_)),
        _ => false,
    };
    if !frames_ok || !end_ok {
        failures.push(fail(
            &c.case,
            "frames and outcome",
            format!(
                "frames {:?} then Go {}: {}",
                go_tokens.iter().map(Vec::len).collect::<Vec<_>>(),
                c.go_end,
                c.go_error
            ),
            describe(&frames, &end),
        ));
    }
    failures
}

/// Runs the category over `frames/malformed.jsonl`.
pub fn run(dir: &Path) -> Result<CategoryReport, LoadError> {
    let cases: Vec<MalformedCase> = read_jsonl(&dir.join("malformed.jsonl"))?;
    let mut report = CategoryReport::new("malformed");
    for c in &cases {
        report.record(check_case(c));
    }
    Ok(report)
}
