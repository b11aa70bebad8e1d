//! # beehive-conformance
//!
//! Checks beehive-rs against captures of the Go beehive (format
//! `beehive-captures/1`, described in the crate's `CAPTURES.md`). Each category
//! reads one capture file and compares our output with Go's byte for byte:
//!
//! | category | file | what is checked |
//! |---|---|---|
//! | `encode` | `encode.jsonl` | `json.Marshal` bytes, the Raw frame, `String()`, `GetContentData()`, Go's builders |
//! | `decode` | `decode.jsonl` | accept/reject as Go, the re-encoding (also of partial results), the content's Go type |
//! | `frames` | `frames/index.jsonl`, `frames/*.bin` | writer bytes, `WriteJSON` payloads, package decoding (whole, split, with Go's buffer size), raw line decoding |
//! | `malformed` | `frames/malformed.jsonl` | Go's frames on bad streams, and a typed error wherever Go panics, hangs or drops data |
//! | `sessions` | `sessions/*.jsonl` | our socket server answering the Go client's packets, and our client sending the Go client's packets, compared by shape |
//! | `floats` | `floats.jsonl` | Go's spelling of float64 values (shortest digits, Go's choice between equally near spellings), refusal of NaN/±Inf, reading Go's text back |
//! | `recorded` | `recorded/index.jsonl`, `recorded/*.jsonl` | live traffic recorded by `beehive record`: every message decodes and re-encodes to exactly the bytes sent, in its framing |
//!
//! The runner never depends on particular case ids or counts: any capture
//! directory of the same format (another seed) can be checked. A category
//! whose file is absent from the directory is reported as skipped, with
//! the file it looked for, and neither passes nor fails. `recorded` checks
//! a recording rather than the Go generator's output: it is listed in a
//! report only when the directory holds a recording (see
//! [`RECORDING_CATEGORIES`]).
#![deny(missing_docs)]

pub mod decode;
pub mod encode;
pub mod floats;
pub mod frames;
pub mod malformed;
pub mod recorded;
pub mod report;
pub mod sessions;
pub mod spec;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use report::{CategoryReport, Failure, Report};

/// Why a capture set could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A capture file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not valid JSON of the expected shape.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value inside a case is not in the documented format.
    #[error("bad capture format: {0}")]
    Format(String),
}

/// The vendored capture directory of this crate.
pub fn default_captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

/// Reads a `.jsonl` file, one `T` per line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| LoadError::Line {
                path: path.to_owned(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// The categories this runner knows, in run order.
pub const CATEGORIES: &[&str] = &["encode", "decode", "frames", "malformed", "sessions", "floats"];

/// Categories of recordings made by `beehive record`. [`run`] runs them
/// after [`CATEGORIES`] when their file is present and leaves them out of
/// the report otherwise, so that a Go capture set's report lists exactly
/// [`CATEGORIES`]; [`run_category`] reports them skipped when absent.
pub const RECORDING_CATEGORIES: &[&str] = &["recorded"];

/// The file (relative to the capture directory) whose presence decides
/// whether category `name` runs, or `None` for an unknown category.
pub fn category_file(name: &str) -> Option<&'static str> {
    Some(match name {
        "encode" => "encode.jsonl",
        "decode" => "decode.jsonl",
        "frames" => "frames/index.jsonl",
        "malformed" => "frames/malformed.jsonl",
        "sessions" => "sessions/index.jsonl",
        "floats" => "floats.jsonl",
        "recorded" => "recorded/index.jsonl",
        _ => return None,
    })
}

/// Runs one category over the capture directory `dir`. A category whose
/// file is absent comes back skipped (see [`CategoryReport::skipped`]).
pub fn run_category(dir: &Path, name: &str) -> Result<CategoryReport, LoadError> {
    let file = category_file(name).ok_or_else(|| LoadError::Format(format!("unknown category {name:?}")))?;
    if !dir.join(file).exists() {
        return Ok(CategoryReport::skipped(name, format!("no {file} in the capture directory")));
    }
    match name {
        "encode" => encode::run(&dir.join("encode.jsonl")),
        "decode" => decode::run(&dir.join("decode.jsonl")),
        "frames" => frames::run(&dir.join("frames")),
        "malformed" => malformed::run(&dir.join("frames")),
        "sessions" => sessions::run(&dir.join("sessions")),
        "floats" => floats::run(&dir.join("floats.jsonl")),
        "recorded" => recorded::run(&dir.join("recorded")),
        other => Err(LoadError::Format(format!("unknown category {other:?}"))),
    }
}

/// Runs every category over the capture directory `dir`.
pub fn run(dir: &Path) -> Result<Report, LoadError> {
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.json"))
        .map_err(|source| LoadError::Io { path: dir.join("MANIFEST.json"), source })?;
    let manifest: serde_json::Value =
        serde_json::from_str(&manifest).map_err(|e| LoadError::Format(format!("MANIFEST.json: {e}")))?;
    if manifest.get("format").and_then(|f| f.as_str()) != Some("beehive-captures/1") {
        return Err(LoadError::Format(format!("MANIFEST.json: unsupported format {:?}", manifest.get("format"))));
    }
    let mut report = Report {
        captures: dir.display().to_string(),
        seed: manifest.get("seed").and_then(|s| s.as_i64()),
        categories: Vec::new(),
    };
    for name in CATEGORIES {
        report.categories.push(run_category(dir, name)?);
    }
    for name in RECORDING_CATEGORIES {
        if category_file(name).is_some_and(|f| dir.join(f).exists()) {
            report.categories.push(run_category(dir, name)?);
        }
    }
    Ok(report)
}
