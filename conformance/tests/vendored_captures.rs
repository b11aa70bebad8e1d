//! The full conformance run over the vendored Go captures, one test per
//! category, plus checks that the runner really detects differences.

use beehive_conformance::{
    category_file, decode, default_captures_dir, encode, floats, malformed, read_jsonl, run_category, CATEGORIES,
};

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
fn floats_match_go() {
    assert_category("floats");
}

#[test]
fn whole_run_passes_and_counts_every_manifest_line() {
    let dir = default_captures_dir();
    let report = beehive_conformance::run(&dir).expect("run");
    assert!(report.ok(), "{}\n{}", report.table(), report.failure_details(10));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST.json")).unwrap()).unwrap();
    for cat in &report.categories {
        assert_eq!(cat.skipped, None, "{}", cat.name);
        let file = category_file(&cat.name).expect("known category");
        let want = manifest["counts"][file].as_u64().expect("count in manifest") as usize;
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

#[test]
fn a_different_float_spelling_is_reported() {
    let cases: Vec<floats::FloatCase> = read_jsonl(&default_captures_dir().join("floats.jsonl")).unwrap();
    // The spelling Rust's own formatting picks where Go rounds a tie to even.
    let mut case = cases.into_iter().find(|c| c.bits == "430ffcdbf54ab9ba").expect("the documented tie case");
    assert_eq!(case.go.as_deref(), Some("1125468240172855.2"));
    assert!(floats::check_case(&case).unwrap().is_empty());
    // Both spellings read back as the same float64; only the spelling differs.
    case.go = Some("1125468240172855.3".into());
    let failures = floats::check_case(&case).unwrap();
    assert_eq!(failures.iter().map(|f| f.check.as_str()).collect::<Vec<_>>(), ["go"]);
    // A spelling of another value also fails reading back.
    case.go = Some("1125468240172855.5".into());
    let failures = floats::check_case(&case).unwrap();
    assert_eq!(failures.iter().map(|f| f.check.as_str()).collect::<Vec<_>>(), ["go", "read_back"]);
}

#[test]
fn a_float_go_refuses_must_be_refused() {
    let cases: Vec<floats::FloatCase> = read_jsonl(&default_captures_dir().join("floats.jsonl")).unwrap();
    let mut refused = cases.iter().filter(|c| c.go_error).cloned().collect::<Vec<_>>();
    assert!(!refused.is_empty(), "the captures list NaN and the infinities");
    for case in &refused {
        assert!(floats::check_case(case).unwrap().is_empty(), "{case:?}");
    }
    // Claim Go wrote a finite value as an error: our successful encoding is a failure.
    let mut finite = cases.iter().find(|c| !c.go_error).unwrap().clone();
    finite.go_error = true;
    finite.go = None;
    refused.push(finite);
    let failures = floats::check_case(refused.last().unwrap()).unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].check, "go_error");
}

#[test]
fn absent_categories_are_skipped_and_named() {
    let src = default_captures_dir();
    let dir = std::env::temp_dir().join(format!("beehive-conformance-partial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["MANIFEST.json", "encode.jsonl"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let report = beehive_conformance::run(&dir).expect("a partial directory is not an error");
    std::fs::remove_dir_all(&dir).unwrap();
    for cat in &report.categories {
        if cat.name == "encode" {
            assert_eq!(cat.skipped, None);
            assert!(cat.passed > 0);
        } else {
            let reason = cat.skipped.as_deref().unwrap_or_else(|| panic!("{} ran without its file", cat.name));
            assert!(reason.contains(category_file(&cat.name).unwrap()), "{reason}");
            assert_eq!((cat.passed, cat.failed), (0, 0));
        }
    }
    assert_eq!(report.categories.len(), CATEGORIES.len());
    assert!(report.ok());
}
