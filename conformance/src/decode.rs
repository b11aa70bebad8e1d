//! The `decode` category: how Go reads (`decode.jsonl`).

use base64::Engine as _;
use beehive_model::Message;
use serde::Deserialize;

use crate::report::{CategoryReport, Failure};
use crate::{read_jsonl, LoadError};

/// One line of `decode.jsonl`.
#[derive(Debug, Deserialize)]
pub struct DecodeCase {
    /// Case id.
    pub case: String,
    /// Category of the case (`basic`, `mutation`, ...).
    pub category: String,
    /// The input bytes, base64.
    pub input_b64: String,
    /// Whether Go's Unmarshal returned no error.
    pub go_ok: bool,
    /// Re-encoding of the decoded message (when go_ok).
    #[serde(default)]
    pub go_reencoded: Option<String>,
    /// Go type of the decoded content (when go_ok).
    #[serde(default)]
    pub go_content_type: Option<String>,
    /// Re-encoding of what the message held after a failed Unmarshal.
    #[serde(default)]
    pub go_partial_reencoded: Option<String>,
}

fn fail(case: &str, check: &str, expected: impl Into<Vec<u8>>, actual: impl Into<Vec<u8>>) -> Failure {
    Failure { case: case.to_owned(), check: check.to_owned(), expected: expected.into(), actual: actual.into() }
}

/// Checks one case; returns its failures.
pub fn check_case(c: &DecodeCase) -> Vec<Failure> {
    let input = match base64::engine::general_purpose::STANDARD.decode(&c.input_b64) {
        Ok(b) => b,
        Err(e) => return vec![fail(&c.case, "load", "base64 input", e.to_string())],
    };
    let mut failures = Vec::new();
    // Go: json.Unmarshal(input, &m) into a zero Message.
    let mut msg = Message::default();
    let result = beehive_model::decode_into(&mut msg, &input);
    if result.is_ok() != c.go_ok {
        failures.push(fail(
            &c.case,
            "go_ok",
            format!("go_ok={}", c.go_ok),
            match &result {
                Ok(()) => "accepted".to_owned(),
                Err(e) => format!("rejected: {e}"),
            },
        ));
        return failures;
    }
    let reencoded = beehive_model::to_vec(&msg).unwrap_or_else(|e| format!("<error: {e}>").into_bytes());
    let expected = if c.go_ok { &c.go_reencoded } else { &c.go_partial_reencoded };
    let check = if c.go_ok { "go_reencoded" } else { "go_partial_reencoded" };
    if let Some(want) = expected {
        if reencoded != want.as_bytes() {
            failures.push(fail(&c.case, check, want.as_bytes(), reencoded));
        }
    }
    if c.go_ok {
        // The plain decoding function must agree with decode_into on a zero message.
        match beehive_model::from_slice(&input) {
            Ok(m) if m == msg => {}
            other => failures.push(fail(&c.case, "from_slice", "same as decode_into", format!("{other:?}"))),
        }
        // The lazy decoder keeps canonical content as bytes; writing it back
        // must still give Go's re-encoding.
        let lazy = beehive_model::json::from_bytes_lazy(&beehive_model::Bytes::from(input.clone()));
        match lazy.as_ref().map(beehive_model::to_vec) {
            Ok(Ok(bytes)) if Some(bytes.as_slice()) == c.go_reencoded.as_deref().map(str::as_bytes) => {}
            _ => failures.push(fail(
                &c.case,
                "lazy go_reencoded",
                c.go_reencoded.clone().unwrap_or_default(),
                format!("{lazy:?}"),
            )),
        }
        if let Some(want) = &c.go_content_type {
            let got = msg.content().go_type_name();
            if got != want {
                failures.push(fail(&c.case, "go_content_type", want.as_bytes(), got.as_bytes()));
            }
        }
    }
    failures
}

/// Runs the category over `decode.jsonl`.
pub fn run(path: &std::path::Path) -> Result<CategoryReport, LoadError> {
    let cases: Vec<DecodeCase> = read_jsonl(path)?;
    let mut report = CategoryReport::new("decode");
    for c in &cases {
        report.record(check_case(c));
    }
    Ok(report)
}
