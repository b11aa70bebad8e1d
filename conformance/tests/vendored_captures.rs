//! The full conformance run over the vendored Go captures, one test per
//! category, plus checks that the runner really detects differences.

use beehive_conformance::{decode, default_captures_dir, encode, malformed, read_jsonl, run_category};

fn assert_category(name: &str) {
    let report = run_category(&default_captures_dir(), name).expect("captures load");
    assert!(report.passed > 0, "{name}: no cases ran");
    let details: Vec<String> = report
        .failures
        .iter()
        .take(10)
        .map(|f| {
            format!(
                "{} [{}]: expected {:?} got {:?}",
                f.case,
                f.check,
                String::from_utf8_lossy(&f.expected),
                String::from_utf8_lossy(&f.actual)
            )
        })
        .collect();
    assert_eq!(report.failed, 0, "{name}: {} failing cases, first: {details:#?}", report.failed);
}

#[test]
fn encode_matches_go() {
    assert_category("encode");
}

#[test]
fn decode_matches_go() {
    assert_category("decode");
}

#[test]
fn frames_match_go() {
    assert_category("frames");
}

#[test]
fn malformed_streams_handled() {
    assert_category("malformed");
}

#[test]
fn sessions_match_go() {
    assert_category("sessions");
}

#[test]
fn whole_run_passes_and_counts_every_manifest_line() {
    let dir = default_captures_dir();
    let report = beehive_conformance::run(&dir).expect("run");
    assert!(report.ok());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST.json")).unwrap()).unwrap();
    for cat in &report.categories {
        let file = match cat.name.as_str() {
            "frames" => "frames/index.jsonl".to_owned(),
            "malformed" => "frames/malformed.jsonl".to_owned(),
            "sessions" => "sessions/index.jsonl".to_owned(),
            other => format!("{other}.jsonl"),
        };
        let want = manifest["counts"][&file].as_u64().expect("count in manifest") as usize;
        assert_eq!(cat.passed + cat.failed, want, "{file}");
    }
}

#[test]
fn a_changed_go_json_is_reported() {
    let mut cases: Vec<encode::EncodeCase> = read_jsonl(&default_captures_dir().join("encode.jsonl")).unwrap();
    let case = cases.iter_mut().find(|c| c.go_ok).unwrap();
    case.go_json.push(' ');
    let failures = encode::check_case(case);
    assert!(failures.iter().any(|f| f.check == "go_json"), "{failures:?}");
}

#[test]
fn a_flipped_go_ok_is_reported() {
    let mut cases: Vec<decode::DecodeCase> = read_jsonl(&default_captures_dir().join("decode.jsonl")).unwrap();
    let case = cases.iter_mut().find(|c| c.go_ok).unwrap();
    case.go_ok = false;
    let failures = decode::check_case(case);
    assert!(failures.iter().any(|f| f.check == "go_ok"), "{failures:?}");
}

#[test]
fn a_frame_where_go_returns_none_is_reported() {
    let cases: Vec<malformed::MalformedCase> =
        read_jsonl(&default_captures_dir().join("frames/malformed.jsonl")).unwrap();
    // Pretend Go returned one more token than it did: our frames must differ.
    let mut case = cases.into_iter().find(|c| c.go_end == "error" && !c.go_tokens_b64.is_empty()).unwrap();
    case.go_tokens_b64.push("eHl6".into());
    assert!(!malformed::check_case(&case).is_empty());
}
