//! `beehive conformance`: the conformance runner as a subcommand.

use std::io::{self, Write};

use anyhow::Context as _;

use crate::cli::ConformanceArgs;
use crate::{style, EXIT_FINDINGS, EXIT_OK};

/// Runs every category over the capture directory; exit 1 on any failure.
pub fn run(args: &ConformanceArgs) -> anyhow::Result<u8> {
    let dir = args.captures.clone().unwrap_or_else(beehive_conformance::default_captures_dir);
    let report =
        beehive_conformance::run(&dir).with_context(|| format!("cannot check the capture set in {}", dir.display()))?;
    let json_to_stdout = args.json.as_ref().is_some_and(|p| p.as_os_str() == "-");

    let mut text = String::new();
    // A recording has no seed; its manifest names what made it.
    let origin = match report.seed {
        Some(s) => format!("seed {s}"),
        None => recorder(&dir).unwrap_or_else(|| "seed ?".to_owned()),
    };
    text.push_str(&format!("captures: {} ({origin})\n", report.captures));
    text.push_str(&report.table());
    let (color, mut out): (bool, Box<dyn Write>) = if json_to_stdout {
        (style::stderr_colored(), Box::new(io::stderr().lock()))
    } else {
        (style::stdout_colored(), Box::new(io::stdout().lock()))
    };
    out.write_all(text.as_bytes())?;
    if !report.ok() {
        writeln!(out)?;
        for line in report.failure_details(args.show).lines() {
            match line.strip_prefix("FAIL") {
                Some(rest) => {
                    style::paint(&mut out, color, style::ERROR, "FAIL")?;
                    writeln!(out, "{rest}")?;
                }
                None => writeln!(out, "{line}")?,
            }
        }
        writeln!(out)?;
        let shown = args.show.min(report.categories.iter().map(|c| c.failures.len()).sum());
        let verdict = format!("FAILED: {} cases failed ({} failures shown)", report.failed(), shown);
        style::paint(&mut out, color, style::ERROR, &verdict)?;
    } else {
        style::paint(&mut out, color, style::OK, &format!("OK: {} cases passed", report.passed()))?;
    }
    writeln!(out)?;
    out.flush()?;
    drop(out);

    match &args.json {
        Some(_) if json_to_stdout => {
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{}", report.to_json()).and_then(|()| stdout.flush()).context("cannot write to stdout")?;
        }
        Some(path) => std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("cannot write the summary to {}", path.display()))?,
        None => {}
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_FINDINGS })
}

/// `recorded by beehive record 0.1.0 at 2024-…` from a recording's MANIFEST.json.
fn recorder(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    let by = manifest.get("recorder")?.as_str()?;
    let at = manifest.get("started").and_then(|s| s.as_str()).unwrap_or("?");
    Some(format!("recorded by {by} at {at}"))
}
