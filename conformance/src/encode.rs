//! The `encode` category: what Go writes (`encode.jsonl`).

use base64::Engine as _;
use beehive_model::Message;
use serde::Deserialize;

use crate::report::{CategoryReport, Failure};
use crate::spec::MessageSpec;
use crate::{read_jsonl, LoadError};

/// One line of `encode.jsonl`.
#[derive(Debug, Deserialize)]
pub struct EncodeCase {
    /// Case id.
    pub case: String,
    /// The message.
    pub message: MessageSpec,
    /// Present when a Go constructor built the message.
    pub builder: Option<BuilderSpec>,
    /// Whether `json.Marshal` succeeded.
    pub go_ok: bool,
    /// Its output.
    pub go_json: String,
    /// `String()`.
    pub go_string: String,
    /// `GetContentData()` bytes, base64.
    pub go_content_data_b64: Option<String>,
    /// `GetContentData()` error text.
    pub go_content_data_error: String,
}

/// The constructor that built a message.
#[derive(Debug, Deserialize)]
pub struct BuilderSpec {
    /// The Go function.
    pub func: String,
    /// The message it was given, when it takes one.
    pub input: Option<MessageSpec>,
    /// Fields whose random values were overwritten afterwards.
    #[serde(default)]
    pub patched: Vec<String>,
}

fn fail(case: &str, check: &str, expected: impl Into<Vec<u8>>, actual: impl Into<Vec<u8>>) -> Failure {
    Failure { case: case.to_owned(), check: check.to_owned(), expected: expected.into(), actual: actual.into() }
}

fn outcome(r: &Result<Vec<u8>, beehive_model::EncodeError>) -> Vec<u8> {
    match r {
        Ok(b) => b.clone(),
        Err(e) => format!("<error: {e}>").into_bytes(),
    }
}

/// Applies the Go constructor named by `builder` to its input, then copies
/// the patched random fields from the final message. `None` when the
/// constructor takes no message (its arguments are only in the note).
fn rebuild(builder: &BuilderSpec, expected: &Message) -> Result<Option<Message>, LoadError> {
    let Some(input) = &builder.input else {
        return Ok(None);
    };
    let input = input.message()?;
    let content = expected.content().clone();
    let built = match builder.func.as_str() {
        "(*Message).NewRespByMessage" => input.new_response(content),
        "model.NewErrorMessage" => {
            let text = content.as_str().unwrap_or_default().to_owned();
            input.new_error(text)
        }
        "(*Message).Clone" => input.clone_with_new_id(),
        other => return Err(LoadError::Format(format!("unknown builder {other:?}"))),
    };
    let mut built = built;
    for field in &builder.patched {
        match field.as_str() {
            "msg_id" => built.header_mut().id = expected.id().to_owned(),
            "timestamp" => built.header_mut().timestamp = expected.timestamp(),
            other => return Err(LoadError::Format(format!("unknown patched field {other:?}"))),
        }
    }
    Ok(Some(built))
}

/// Checks one case; returns its failures.
pub fn check_case(c: &EncodeCase) -> Vec<Failure> {
    let mut failures = Vec::new();
    let msg = match c.message.message() {
        Ok(m) => m,
        Err(e) => return vec![fail(&c.case, "load", "a message", e.to_string())],
    };
    let encoded = beehive_model::to_vec(&msg);
    if encoded.is_ok() != c.go_ok {
        failures.push(fail(&c.case, "go_ok", format!("go_ok={}", c.go_ok), outcome(&encoded)));
    } else if let Ok(bytes) = &encoded {
        if bytes != c.go_json.as_bytes() {
            failures.push(fail(&c.case, "go_json", c.go_json.as_bytes(), bytes.clone()));
        }
        let line = beehive_model::to_vec_line(&msg).unwrap_or_default();
        let mut want = c.go_json.as_bytes().to_vec();
        want.push(b'\n');
        if line != want {
            failures.push(fail(&c.case, "raw frame (go_json + LF)", want, line));
        }
    }
    let shown = msg.to_string();
    if shown != c.go_string {
        failures.push(fail(&c.case, "go_string", c.go_string.as_bytes(), shown.into_bytes()));
    }
    let data = msg.content_data();
    match (&c.go_content_data_b64, c.go_content_data_error.is_empty(), &data) {
        (Some(b64), true, Ok(bytes)) => {
            let want = base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default();
            if want != bytes.as_ref() {
                failures.push(fail(&c.case, "go_content_data", want, bytes.to_vec()));
            }
        }
        (_, false, Err(_)) => {}
        _ => failures.push(fail(
            &c.case,
            "go_content_data (ok/error)",
            format!("error={:?}", c.go_content_data_error),
            match &data {
                Ok(b) => b.to_vec(),
                Err(e) => format!("<error: {e}>").into_bytes(),
            },
        )),
    }
    if let Some(builder) = &c.builder {
        match rebuild(builder, &msg) {
            Ok(None) => {}
            Ok(Some(built)) => {
                let got = beehive_model::to_vec(&built);
                if outcome(&got) != c.go_json.as_bytes() || got.is_ok() != c.go_ok {
                    failures.push(fail(
                        &c.case,
                        &format!("builder {}", builder.func),
                        c.go_json.as_bytes(),
                        outcome(&got),
                    ));
                }
            }
            Err(e) => failures.push(fail(&c.case, "builder", builder.func.as_bytes(), e.to_string())),
        }
    }
    failures
}

/// Runs the category over `encode.jsonl`.
pub fn run(path: &std::path::Path) -> Result<CategoryReport, LoadError> {
    let cases: Vec<EncodeCase> = read_jsonl(path)?;
    let mut report = CategoryReport::new("encode");
    for c in &cases {
        report.record(check_case(c));
    }
    Ok(report)
}
