//! Results per category, the printed table and the JSON summary.

use std::fmt::Write as _;

use serde::Serialize;

/// One failed check of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The case id (`enc-0001`, `dec-0042`, ...).
    pub case: String,
    /// Which check failed (`go_json`, `go_ok`, `go_string`, ...).
    pub check: String,
    /// The bytes Go produced (or the expected fact).
    #[serde(serialize_with = "ser_escaped")]
    pub expected: Vec<u8>,
    /// The bytes we produced.
    #[serde(serialize_with = "ser_escaped")]
    pub actual: Vec<u8>,
}

fn ser_escaped<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escape(b))
}

/// Passed and failed counts of one category, with its failures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CategoryReport {
    /// Category name (`encode`, `decode`, ...).
    pub name: String,
    /// Cases whose every check passed.
    pub passed: usize,
    /// Cases with at least one failed check.
    pub failed: usize,
    /// Every failed check.
    pub failures: Vec<Failure>,
    /// Why the category did not run (its capture file is absent), or
    /// `None` when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl CategoryReport {
    /// An empty report for `name`.
    pub fn new(name: &str) -> Self {
        CategoryReport { name: name.to_owned(), ..Default::default() }
    }

    /// A report for a category that did not run, with the reason.
    pub fn skipped(name: &str, reason: impl Into<String>) -> Self {
        CategoryReport { name: name.to_owned(), skipped: Some(reason.into()), ..Default::default() }
    }

    /// Records one case with the failures of its checks.
    pub fn record(&mut self, failures: Vec<Failure>) {
        if failures.is_empty() {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures.extend(failures);
        }
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The capture directory checked.
    pub captures: String,
    /// The capture set's seed, from MANIFEST.json.
    pub seed: Option<i64>,
    /// The categories, in the order they ran.
    pub categories: Vec<CategoryReport>,
}

impl Report {
    /// Total passed cases.
    pub fn passed(&self) -> usize {
        self.categories.iter().map(|c| c.passed).sum()
    }

    /// Total failed cases.
    pub fn failed(&self) -> usize {
        self.categories.iter().map(|c| c.failed).sum()
    }

    /// True when no case failed.
    pub fn ok(&self) -> bool {
        self.failed() == 0
    }

    /// The per-category table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{:<12} {:>8} {:>8}", "category", "passed", "failed");
        for c in &self.categories {
            match &c.skipped {
                Some(reason) => {
                    let _ = writeln!(s, "{:<12} {:>8} {:>8}  skipped: {reason}", c.name, "-", "-");
                }
                None => {
                    let _ = writeln!(s, "{:<12} {:>8} {:>8}", c.name, c.passed, c.failed);
                }
            }
        }
        let _ = writeln!(s, "{:<12} {:>8} {:>8}", "total", self.passed(), self.failed());
        s
    }

    /// The first `limit` failures, each with an escaped diff.
    pub fn failure_details(&self, limit: usize) -> String {
        let mut s = String::new();
        for f in self.categories.iter().flat_map(|c| &c.failures).take(limit) {
            let _ = writeln!(s, "FAIL {} [{}]", f.case, f.check);
            let at = first_difference(&f.expected, &f.actual);
            let _ = writeln!(s, "  first difference at byte {at}");
            let _ = writeln!(s, "  expected: {}", excerpt(&f.expected, at));
            let _ = writeln!(s, "  actual:   {}", excerpt(&f.actual, at));
        }
        s
    }

    /// The summary as JSON (counts, and every failure escaped).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Offset of the first differing byte (the shorter length if one is a prefix).
pub fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}

/// Bytes as printable ASCII: `\n`, `\t`, `\\`, `\xNN` for the rest.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s
}

/// An escaped window of `b` around offset `at`.
fn excerpt(b: &[u8], at: usize) -> String {
    let start = at.saturating_sub(40);
    let end = (at + 60).min(b.len());
    let start = start.min(end);
    format!(
        "{}{}{} ({} bytes)",
        if start > 0 { "…" } else { "" },
        escape(&b[start..end]),
        if end < b.len() { "…" } else { "" },
        b.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difference_offsets() {
        assert_eq!(first_difference(b"abc", b"abd"), 2);
        assert_eq!(first_difference(b"ab", b"abc"), 2);
        assert_eq!(first_difference(b"", b""), 0);
    }

    #[test]
    fn escaping_is_printable() {
        assert_eq!(escape(b"a\n\x00\xff\\"), "a\\n\\x00\\xff\\\\");
    }

    #[test]
    fn a_failure_fails_the_report() {
        let mut c = CategoryReport::new("x");
        c.record(vec![]);
        c.record(vec![Failure { case: "c".into(), check: "k".into(), expected: b"1".to_vec(), actual: b"2".to_vec() }]);
        let r = Report { categories: vec![c], ..Default::default() };
        assert_eq!((r.passed(), r.failed(), r.ok()), (1, 1, false));
        assert!(r.failure_details(5).contains("FAIL c [k]"));
    }

    #[test]
    fn a_skipped_category_neither_passes_nor_fails() {
        let r = Report { categories: vec![CategoryReport::skipped("floats", "no floats.jsonl")], ..Default::default() };
        assert_eq!((r.passed(), r.failed(), r.ok()), (0, 0, true));
        assert!(r.table().contains("skipped: no floats.jsonl"), "{}", r.table());
    }
}
