//! `beehive conformance`, `beehive completions` and the help texts.

mod common;

use common::{beehive, captures};
use serde_json::Value;

#[test]
fn conformance_passes_on_the_vendored_captures() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let out = beehive().arg("conformance").arg(captures()).arg("--json").arg(&summary).assert().code(0);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for category in ["encode", "decode", "frames", "malformed", "sessions", "floats", "total"] {
        assert!(stdout.lines().any(|l| l.starts_with(category)), "{category}: {stdout}");
    }
    assert!(stdout.contains("OK: "), "{stdout}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let categories = json["categories"].as_array().unwrap();
    assert_eq!(categories.len(), 6);
    // Every case MANIFEST.json announces ran and passed.
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(captures().join("MANIFEST.json")).unwrap()).unwrap();
    let expected = manifest["counts"]["encode.jsonl"].as_u64().unwrap();
    let encode = categories.iter().find(|c| c["name"] == "encode").unwrap();
    assert_eq!((encode["passed"].as_u64(), encode["failed"].as_u64()), (Some(expected), Some(0)));
}

#[test]
fn conformance_fails_on_a_corrupted_case_and_skips_absent_categories() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(captures().join("MANIFEST.json"), dir.path().join("MANIFEST.json")).unwrap();
    let text = std::fs::read_to_string(captures().join("encode.jsonl")).unwrap();
    let mut lines: Vec<String> = text.lines().take(5).map(str::to_owned).collect();
    // Claim that Go wrote a different timestamp for the third case.
    let mut case: Value = serde_json::from_str(&lines[2]).unwrap();
    let id = case["case"].as_str().unwrap().to_owned();
    let go_json = case["go_json"].as_str().unwrap().replace("\"timestamp\":", "\"timestamp\":9");
    case["go_json"] = Value::String(go_json);
    lines[2] = case.to_string();
    std::fs::write(dir.path().join("encode.jsonl"), lines.join("\n") + "\n").unwrap();

    let out = beehive().arg("conformance").arg(dir.path()).args(["--json", "-"]).assert().code(1);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains(&format!("FAIL {id} [go_json]")), "{stderr}");
    assert!(stderr.contains("skipped: no decode.jsonl"), "{stderr}");
    assert!(stderr.contains("FAILED: 1 cases failed"), "{stderr}");
    // `--json -`: the summary alone on stdout.
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["categories"][0]["passed"], 4);
    assert_eq!(json["categories"][0]["failed"], 1);
    assert_eq!(json["categories"][1]["skipped"], "no decode.jsonl in the capture directory");
}

#[test]
fn conformance_without_a_capture_set_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = beehive().arg("conformance").arg(dir.path()).assert().code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.starts_with("beehive: error: cannot check the capture set in "), "{stderr}");
    assert!(stderr.contains("MANIFEST.json"), "{stderr}");
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef beehive"), ("fish", "complete -c beehive")] {
        let out = beehive().args(["completions", shell]).assert().success();
        let script = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["decode", "encode", "conformance", "resync"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    beehive().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn help_has_examples_and_exit_codes() {
    for args in [&["--help"][..], &["decode", "--help"], &["encode", "--help"], &["conformance", "--help"]] {
        let out = beehive().args(args).assert().success();
        let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert!(text.contains("Examples:"), "{args:?}: {text}");
        assert!(text.contains("Exit codes:"), "{args:?}: {text}");
        assert!(!text.contains('\x1b'), "no colour when not on a terminal");
    }
    beehive().assert().code(2);
    beehive().arg("frobnicate").assert().code(2);
}
