//! `beehive-bench [--repeat R] [--sync-timeout D] [--n N] W1..W8|all ...`
//!
//! Runs the benchmark workloads W1–W8 (described in this crate's
//! `WORKLOADS.md`) against beehive-rs and prints one JSON line per run on
//! stdout (diagnostics go to stderr).

mod cli;
mod output;
mod workloads;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("beehive-bench: {e}");
            eprintln!("{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    for w in &opts.workloads {
        for _ in 0..opts.repeat {
            match workloads::run(w, &opts) {
                Ok(result) => println!("{}", result.to_json_line()),
                Err(e) => {
                    eprintln!("beehive-bench: {}: {e}", w.id());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}
