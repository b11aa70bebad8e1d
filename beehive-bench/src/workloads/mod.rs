//! The workloads. Each returns one [`RunResult`].

mod json;

use crate::cli::Options;
use crate::output::RunResult;

/// A workload id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    W4,
    W5,
    /// Extra, not in `all`: W4 with the content already held as raw JSON.
    W4Raw,
    /// Extra, not in `all`: W5 without materialising the content.
    W5Lazy,
}

impl Workload {
    /// The workloads `all` runs: every one of W1–W8 implemented so far.
    pub const ALL: [Workload; 2] = [Workload::W4, Workload::W5];

    pub fn parse(s: &str) -> Option<Workload> {
        match s.to_ascii_uppercase().as_str() {
            "W4" => Some(Workload::W4),
            "W5" => Some(Workload::W5),
            "W4-RAW" => Some(Workload::W4Raw),
            "W5-LAZY" => Some(Workload::W5Lazy),
            _ => None,
        }
    }

    pub fn id(&self) -> &'static str {
        match self {
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W4Raw => "W4-raw",
            Workload::W5Lazy => "W5-lazy",
        }
    }
}

pub fn run(w: &Workload, opts: &Options) -> Result<RunResult, String> {
    match w {
        Workload::W4 => json::w4(opts.n.unwrap_or(100_000), false),
        Workload::W4Raw => json::w4(opts.n.unwrap_or(100_000), true),
        Workload::W5 => json::w5(opts.n.unwrap_or(100_000), false),
        Workload::W5Lazy => json::w5(opts.n.unwrap_or(100_000), true),
    }
}
