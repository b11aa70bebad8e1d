//! `beehive-conformance [CAPTURES_DIR] [--json FILE] [--show N]`
//!
//! Checks beehive-rs against a Go capture set (the vendored
//! `conformance/captures` by default), prints a per-category table and the
//! first failures, and exits non-zero when any case fails.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "beehive-conformance", about = "Check beehive-rs against captures of the Go beehive")]
struct Args {
    /// Capture directory (format beehive-captures/1); defaults to the vendored captures.
    captures: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// How many failures to show in detail.
    #[arg(long, default_value_t = 10)]
    show: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.captures.unwrap_or_else(beehive_conformance::default_captures_dir);
    let report = match beehive_conformance::run(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("beehive-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    println!("captures: {} (seed {})", report.captures, report.seed.map_or("?".to_owned(), |s| s.to_string()));
    print!("{}", report.table());
    if !report.ok() {
        println!();
        print!("{}", report.failure_details(args.show));
    }
    if let Some(path) = args.json {
        if let Err(e) = std::fs::write(&path, report.to_json()) {
            eprintln!("beehive-conformance: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
