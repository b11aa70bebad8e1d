//! The workloads. Each returns one [`RunResult`].

mod bus;
mod json;
mod socket;

use crate::cli::Options;
use std::time::Instant;

use beehive_model::Message;

use crate::output::{Latency, RunResult};

/// Latencies and failures of the round trips of W2 and W8: a call succeeds
/// when the response answers the request with "ok". Failed calls count in
/// `errors`/`err_secs`.
pub(crate) struct RoundTrips {
    workload: &'static str,
    n: u64,
    lat: Vec<f64>,
    errors: u64,
    err_secs: f64,
    t0: Instant,
}

impl RoundTrips {
    /// Starts the clock.
    pub(crate) fn start(workload: &'static str, n: u64) -> Self {
        RoundTrips { workload, n, lat: Vec::with_capacity(n as usize), errors: 0, err_secs: 0.0, t0: Instant::now() }
    }

    /// Records one call to `req` that took `took` seconds.
    pub(crate) fn record(&mut self, req: &Message, resp: Option<Message>, took: f64) {
        match resp {
            Some(resp) if resp.parent_id() == req.id() && resp.content().as_str() == Some("ok") => {
                self.lat.push(took * 1e6)
            }
            _ => {
                self.errors += 1;
                self.err_secs += took;
            }
        }
    }

    /// Stops the clock.
    pub(crate) fn finish(mut self) -> RunResult {
        let secs = self.t0.elapsed().as_secs_f64();
        RunResult {
            workload: self.workload.to_owned(),
            n: self.n,
            ops: self.n,
            secs,
            bytes: None,
            lat: Latency::of(&mut self.lat),
            errors: self.errors,
            err_secs: self.err_secs,
        }
    }
}

/// The timed loop of W2 and W8: N fresh small requests through `call`
/// (timeout handling inside it).
pub(crate) fn round_trips(
    workload: &'static str,
    n: u64,
    mut call: impl FnMut(Message) -> Option<Message>,
) -> RunResult {
    let mut trips = RoundTrips::start(workload, n);
    for _ in 0..n {
        let req = socket::small_message();
        let ts = Instant::now();
        let resp = call(req.clone());
        trips.record(&req, resp, ts.elapsed().as_secs_f64());
    }
    trips.finish()
}

/// A workload id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    W1,
    W2,
    W3,
    W4,
    W5,
    W6,
    W7,
    W8,
    /// Extra, not in `all`: W4 with the content already held as raw JSON.
    W4Raw,
    /// Extra, not in `all`: W5 without materialising the content.
    W5Lazy,
    /// Extra, not in `all`: W1 with an async receiver (`receive_async`).
    W1Async,
    /// Extra, not in `all`: W2 with the echo module and the requester as
    /// tasks on one current-thread tokio runtime.
    W2Async,
    /// Extra, not in `all`: W1's message hand-over alone (the same clones
    /// through a bare lock-free queue, both sides spinning).
    W1Floor,
    /// Extra, not in `all`: W7's system calls alone (a packet encoded once,
    /// a reader that compares bytes instead of decoding).
    W7Floor,
    /// Extra, not in `all`: W8 through the tokio driver of beehive-socket.
    W8Async,
    /// Extra, not in `all`: W8 between thread modules of two hives through
    /// the hive's socket backend on the blocking driver.
    W8Hive,
}

impl Workload {
    /// The workloads `all` runs: W1 to W8.
    pub const ALL: [Workload; 8] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
        Workload::W7,
        Workload::W8,
    ];

    pub fn parse(s: &str) -> Option<Workload> {
        match s.to_ascii_uppercase().as_str() {
            "W8" => Some(Workload::W8),
            "W1" => Some(Workload::W1),
            "W2" => Some(Workload::W2),
            "W3" => Some(Workload::W3),
            "W4" => Some(Workload::W4),
            "W5" => Some(Workload::W5),
            "W6" => Some(Workload::W6),
            "W7" => Some(Workload::W7),
            "W4-RAW" => Some(Workload::W4Raw),
            "W5-LAZY" => Some(Workload::W5Lazy),
            "W1-ASYNC" => Some(Workload::W1Async),
            "W2-ASYNC" => Some(Workload::W2Async),
            "W1-FLOOR" => Some(Workload::W1Floor),
            "W7-FLOOR" => Some(Workload::W7Floor),
            "W8-ASYNC" => Some(Workload::W8Async),
            "W8-HIVE" => Some(Workload::W8Hive),
            _ => None,
        }
    }

    pub fn id(&self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
            Workload::W7 => "W7",
            Workload::W8 => "W8",
            Workload::W4Raw => "W4-raw",
            Workload::W5Lazy => "W5-lazy",
            Workload::W1Async => "W1-async",
            Workload::W2Async => "W2-async",
            Workload::W1Floor => "W1-floor",
            Workload::W7Floor => "W7-floor",
            Workload::W8Async => "W8-async",
            Workload::W8Hive => "W8-hive",
        }
    }
}

pub fn run(w: &Workload, opts: &Options) -> Result<RunResult, String> {
    match w {
        Workload::W8 => socket::w8(opts.n.unwrap_or(50_000), opts.sync_timeout),
        Workload::W8Async => socket::w8_async(opts.n.unwrap_or(50_000), opts.sync_timeout),
        Workload::W8Hive => socket::w8_hive(opts.n.unwrap_or(50_000), opts.sync_timeout),
        Workload::W1 => bus::w1(opts.n.unwrap_or(1_000_000)),
        Workload::W1Async => bus::w1_async(opts.n.unwrap_or(1_000_000)),
        Workload::W1Floor => bus::w1_floor(opts.n.unwrap_or(1_000_000)),
        Workload::W2Async => bus::w2_async(opts.n.unwrap_or(200_000), opts.sync_timeout),
        Workload::W2 => bus::w2(opts.n.unwrap_or(200_000), opts.sync_timeout),
        Workload::W3 => bus::w3(opts.n.unwrap_or(250_000)),
        Workload::W6 => socket::w6(opts.n.unwrap_or(200_000)),
        Workload::W7 => socket::w7(opts.n.unwrap_or(200_000)),
        Workload::W7Floor => socket::w7_floor(opts.n.unwrap_or(200_000)),
        Workload::W4 => json::w4(opts.n.unwrap_or(100_000), false),
        Workload::W4Raw => json::w4(opts.n.unwrap_or(100_000), true),
        Workload::W5 => json::w5(opts.n.unwrap_or(100_000), false),
        Workload::W5Lazy => json::w5(opts.n.unwrap_or(100_000), true),
    }
}
