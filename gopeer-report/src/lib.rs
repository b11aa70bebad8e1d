//! What the Go peer reports in the live interop tests, and the verdicts
//! those tests share.
//!
//! The live tests (`beehive-socket`'s `tokio_go_live`, `beehive-cli`'s
//! `go_live`) run `gopeer`, a scripted peer driving the unmodified Go
//! beehive, when the `GOPEER` environment variable names its binary. The
//! peer writes one JSON object per line to its report file:
//!
//! ```text
//! {"scenario":"cli.sendsync:cli-sync-0001","result":"pass","detail":"..."}
//! {"scenario":"cli.recv_other","result":"info","detail":"header={...} route={...}"}
//! ```
//!
//! A scenario may be reported more than once (`cli.recv_other` is written
//! for every unexpected message); [`Report`] keeps every line, in order.
//!
//! This crate is internal to the workspace's tests and is not published.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The Go client's own `SendSync` to the hub, as gopeer names it.
pub const GO_OWN_SYNC: &str = "cli.sendsync:cli-sync-0001";

/// What a live test's matrix says when [`Report::lost_to_go_race`] holds.
pub const GO_RACE: &str = "lost to Go's race (expected when it happens): the response arrived before Go's \
    SendSync registered its waiter, and Go handed it to the module as an ordinary message";

/// The Go peer's binary from `GOPEER`, or `None` after saying on stderr
/// why the live tests are skipped.
///
/// The reason is written to the process's stderr directly, past the test
/// harness's capture, so that a plain `cargo test` shows why nothing ran.
pub fn gopeer() -> Option<PathBuf> {
    match std::env::var_os("GOPEER") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set GOPEER to the Go peer binary to run the live Go interop tests"
            );
            None
        }
    }
}

/// One line of the report: the scenario's result (`pass`, `fail`, `info`)
/// and its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `pass`, `fail` or `info`.
    pub result: String,
    /// Free text: what was seen, or why the scenario failed.
    pub detail: String,
}

/// The Go peer's report: every line of every scenario, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    scenarios: BTreeMap<String, Vec<Row>>,
}

impl Report {
    /// The report in `text`. A line that is not a JSON object with a
    /// `scenario` is skipped: the peer may be writing its last line while
    /// a test reads the file.
    pub fn parse(text: &str) -> Report {
        let mut scenarios: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(scenario) = v["scenario"].as_str() else { continue };
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            scenarios.entry(scenario.to_owned()).or_default().push(Row { result: s("result"), detail: s("detail") });
        }
        Report { scenarios }
    }

    /// The report in the file at `path`; empty while the file does not exist.
    pub fn read(path: &Path) -> Report {
        Report::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }

    /// Whether `scenario` has been reported.
    pub fn has(&self, scenario: &str) -> bool {
        self.scenarios.contains_key(scenario)
    }

    /// The last line reported for `scenario`.
    pub fn last(&self, scenario: &str) -> Option<&Row> {
        self.scenarios.get(scenario).and_then(|rows| rows.last())
    }

    /// Every line reported for `scenario`, in order (empty if none).
    pub fn rows(&self, scenario: &str) -> &[Row] {
        self.scenarios.get(scenario).map_or(&[], Vec::as_slice)
    }

    /// Every scenario reported, by name, with its lines.
    pub fn scenarios(&self) -> impl Iterator<Item = (&str, &[Row])> {
        self.scenarios.iter().map(|(s, rows)| (s.as_str(), rows.as_slice()))
    }

    /// The scenarios with a failed line, but for those in `expected`.
    pub fn failing_besides(&self, expected: &[&str]) -> Vec<String> {
        self.scenarios
            .iter()
            .filter(|(s, rows)| !expected.contains(&s.as_str()) && rows.iter().any(|r| r.result == "fail"))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// True when the Go client's own `SendSync` ([`GO_OWN_SYNC`]) failed
    /// because of Go's race, not the peer under test's.
    ///
    /// Go's `RemoteBroker.SendSync` writes the request and only then
    /// registers the waiter, so a response that comes back before the
    /// waiter exists is returned by `Receive` as an ordinary message
    /// (gopeer reports it as `cli.recv_other`, with the request's id as its
    /// parent) and the call times out. Both pieces of evidence are
    /// required: the failed call, and the early response.
    pub fn lost_to_go_race(&self) -> bool {
        let failed = self.rows(GO_OWN_SYNC).iter().any(|r| r.result == "fail");
        let parent = "\"parent_msg_id\":\"cli-sync-0001\"";
        let arrived_early = self.rows("cli.recv_other").iter().any(|r| r.detail.contains(parent));
        failed && arrived_early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: &str = r#"{"scenario":"cli.sendsync:cli-sync-0001","result":"fail","detail":"after 5s: timeout"}"#;
    const EARLY: &str = r#"{"scenario":"cli.recv_other","result":"info","detail":"header={\"msg_id\":\"x\",\"parent_msg_id\":\"cli-sync-0001\"} route={}"}"#;
    const OTHER: &str =
        r#"{"scenario":"cli.recv_other","result":"info","detail":"header={\"parent_msg_id\":\"srv-1\"}"}"#;

    fn report(lines: &[&str]) -> Report {
        Report::parse(&lines.join("\n"))
    }

    #[test]
    fn every_line_of_a_scenario_is_kept_in_order() {
        let r = report(&[OTHER, r#"{"scenario":"a","result":"pass","detail":"1"}"#, EARLY]);
        let details: Vec<&str> = r.rows("cli.recv_other").iter().map(|r| r.detail.as_str()).collect();
        assert_eq!(details.len(), 2);
        assert!(details[0].contains("srv-1") && details[1].contains("cli-sync-0001"));
        assert_eq!(r.last("cli.recv_other").unwrap().detail, details[1]);
        assert_eq!(r.last("a"), Some(&Row { result: "pass".into(), detail: "1".into() }));
        assert!(r.has("a") && !r.has("b"));
        assert!(r.rows("b").is_empty() && r.last("b").is_none());
        let names: Vec<(&str, usize)> = r.scenarios().map(|(s, rows)| (s, rows.len())).collect();
        assert_eq!(names, [("a", 1), ("cli.recv_other", 2)]);
    }

    #[test]
    fn a_partly_written_or_foreign_line_is_skipped() {
        let r = report(&[r#"{"scenario":"a","result":"pass"}"#, r#"{"result":"fail"}"#, "", r#"{"scenario":"b","res"#]);
        assert_eq!(r, report(&[r#"{"scenario":"a","result":"pass","detail":""}"#]));
        assert_eq!(Report::read(Path::new("/nonexistent/gopeer/report.jsonl")), Report::default());
    }

    /// With `GOPEER` set the live tests must run, never skip.
    #[test]
    fn the_peer_is_the_binary_gopeer_names() {
        assert_eq!(gopeer(), std::env::var_os("GOPEER").map(PathBuf::from));
    }

    #[test]
    fn a_report_file_reads_as_its_text_parses() {
        let path = std::env::temp_dir().join(format!("gopeer-report-test-{}.jsonl", std::process::id()));
        let text = [FAIL, EARLY, OTHER].join("\n");
        std::fs::write(&path, &text).unwrap();
        let read = Report::read(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read, Report::parse(&text));
        assert!(read.lost_to_go_race());
    }

    #[test]
    fn failing_scenarios_are_listed_but_for_the_expected_ones() {
        let pass = r#"{"scenario":"p","result":"pass","detail":""}"#;
        let fail_later =
            [r#"{"scenario":"q","result":"info","detail":""}"#, r#"{"scenario":"q","result":"fail","detail":""}"#];
        let r = report(&[FAIL, pass, fail_later[0], fail_later[1]]);
        assert_eq!(r.failing_besides(&[]), [GO_OWN_SYNC, "q"]);
        assert_eq!(r.failing_besides(&[GO_OWN_SYNC]), ["q"]);
        assert!(r.failing_besides(&["q", GO_OWN_SYNC]).is_empty());
    }

    #[test]
    fn go_race_needs_both_the_failed_call_and_the_early_response() {
        assert!(report(&[FAIL, EARLY]).lost_to_go_race());
        assert!(report(&[EARLY, OTHER, FAIL]).lost_to_go_race());
        assert!(!report(&[FAIL]).lost_to_go_race());
        assert!(!report(&[FAIL, OTHER]).lost_to_go_race());
        assert!(!report(&[EARLY]).lost_to_go_race());
        let passed = FAIL.replace("\"fail\"", "\"pass\"");
        assert!(!report(&[&passed, EARLY]).lost_to_go_race());
    }
}
