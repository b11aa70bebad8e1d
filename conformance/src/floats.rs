//! The `floats` category: how Go spells a float64 (`floats.jsonl`).
//!
//! Every number in a message's content is a float64 once Go has decoded
//! it, so the spelling of each one decides whether a re-encoded message is
//! byte-identical. Each line gives a float64 by its bits and either the
//! exact text `json.Marshal` writes for it or the fact that Go refuses it
//! (NaN, ±Inf). Each case checks three things:
//!
//! - `go`: our encoding of the value is Go's text, byte for byte;
//! - `go_error`: we refuse exactly the values Go refuses, with a typed error;
//! - `read_back`: our decoder reads Go's text back to the same bits.

use beehive_model::{Number, Value};
use serde::Deserialize;

use crate::report::{CategoryReport, Failure};
use crate::{read_jsonl, LoadError};

/// One line of `floats.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct FloatCase {
    /// The IEEE-754 bits, 16 hex digits.
    pub bits: String,
    /// Go's spelling, absent when Go refuses the value.
    #[serde(default)]
    pub go: Option<String>,
    /// True when `json.Marshal` fails on the value.
    #[serde(default)]
    pub go_error: bool,
}

impl FloatCase {
    /// The float64 the case is about.
    pub fn value(&self) -> Result<f64, LoadError> {
        u64::from_str_radix(&self.bits, 16)
            .map(f64::from_bits)
            .map_err(|e| LoadError::Format(format!("floats.jsonl: bits {:?}: {e}", self.bits)))
    }
}

/// The case id used in reports: the bits, which identify a line uniquely
/// up to repeated values.
fn case_id(case: &FloatCase) -> String {
    format!("float-{}", case.bits)
}

fn fail(case: &FloatCase, check: &str, expected: impl Into<Vec<u8>>, actual: impl Into<Vec<u8>>) -> Failure {
    Failure { case: case_id(case), check: check.to_owned(), expected: expected.into(), actual: actual.into() }
}

/// Checks one case; an empty result means it passed.
pub fn check_case(case: &FloatCase) -> Result<Vec<Failure>, LoadError> {
    let f = case.value()?;
    let ours = beehive_model::json::value_to_vec(&Value::Number(Number::Float(f)));
    let mut failures = Vec::new();
    match (&case.go, case.go_error, ours) {
        (Some(go), false, Ok(ours)) => {
            if ours != go.as_bytes() {
                failures.push(fail(case, "go", go.as_bytes(), ours));
            }
            match beehive_model::decode_value(go.as_bytes()) {
                Ok(Value::Number(n)) if n.as_f64().to_bits() == f.to_bits() => {}
                other => failures.push(fail(case, "read_back", case.bits.as_bytes(), format!("{other:?}"))),
            }
        }
        (Some(go), false, Err(e)) => failures.push(fail(case, "go", go.as_bytes(), format!("<error: {e}>"))),
        (_, true, Ok(ours)) => failures.push(fail(case, "go_error", "<error>", ours)),
        (_, true, Err(_)) => {}
        (None, false, _) => {
            return Err(LoadError::Format(format!("floats.jsonl: {} has neither `go` nor `go_error`", case.bits)))
        }
    }
    Ok(failures)
}

/// Runs the category over `floats.jsonl`.
pub fn run(path: &std::path::Path) -> Result<CategoryReport, LoadError> {
    let cases: Vec<FloatCase> = read_jsonl(path)?;
    let mut report = CategoryReport::new("floats");
    for case in &cases {
        report.record(check_case(case)?);
    }
    Ok(report)
}
