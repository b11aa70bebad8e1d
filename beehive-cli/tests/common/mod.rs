//! Helpers shared by the integration tests: the binary, the vendored Go
//! captures, and the records of `decode --json`.
#![allow(dead_code)]

use std::path::PathBuf;

use assert_cmd::Command;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The `beehive` binary, with the colour environment cleared.
pub fn beehive() -> Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("beehive");
    for var in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "CI"] {
        cmd.env_remove(var);
    }
    cmd
}

/// The vendored Go capture set.
pub fn captures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/captures")
}

/// One line of `decode --json`; `message` is kept as the exact bytes printed.
#[derive(Debug, Deserialize)]
pub struct Record<'a> {
    pub offset: u64,
    pub length: Option<u64>,
    pub framing: String,
    #[serde(borrow, default)]
    pub message: Option<&'a RawValue>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    #[serde(default)]
    pub skipped: Option<u64>,
    #[serde(default)]
    pub resumed_at: Option<u64>,
}

impl Record<'_> {
    /// The message's JSON bytes, panicking when the record is not a message.
    pub fn message(&self) -> &str {
        self.message.unwrap_or_else(|| panic!("not a message: {self:?}")).get()
    }

    /// The error's `kind`, or `""`.
    pub fn error_kind(&self) -> &str {
        self.error.as_ref().and_then(|e| e["kind"].as_str()).unwrap_or("")
    }
}

/// Parses every line of `decode --json` output.
pub fn records(out: &str) -> Vec<Record<'_>> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A Package frame: `beehv1rv`, the big-endian length, the payload.
pub fn package_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = b"beehv1rv".to_vec();
    v.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Go's `String()` of a message as `decode` prints it: control characters escaped.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
