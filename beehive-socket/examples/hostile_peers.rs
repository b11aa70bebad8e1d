//! The socket servers against hostile and idle peers, measured.
//!
//! ```sh
//! cargo run --release -p beehive-socket --example hostile_peers -- [idle] [idle-blocking] [slow-byte] [non-reader] [accept-flood]
//! ```
//!
//! Runs a real [`beehive_socket::asyncio::Server`] (for `idle-blocking`, a
//! [`beehive_socket::blocking::Server`]) in this process, with a
//! multi-thread tokio runtime of two workers, attacks it with raw unix
//! sockets and prints one JSON line per scenario (all five without
//! arguments):
//!
//! * `idle` (tokio driver) and `idle-blocking` (blocking driver, a thread
//!   per connection): resident memory (`VmRSS`, `VmHWM`) once the server is up,
//!   with 1000 connections that never send, with 1000 more that completed
//!   the module handshake (remote modules `c0000`..`c0999`, raw packets),
//!   and once all of them are closed (250 ms after the last connection
//!   thread ended), three times over. Targets: each
//!   thousand costs at most 64 MB, RSS comes back within twice the
//!   baseline, and what stays resident after closing does not grow from
//!   cycle to cycle by half a cycle's cost (a leak would). Also shown:
//!   resident memory by kind of mapping (`/proc/self/smaps`) and the
//!   server events dropped because the event channel was full.
//! * `slow-byte`: a registered peer on a unix stream socket sends one byte
//!   of a frame every 2 s (stall timeout 3 s), and a silent peer never
//!   registers (handshake timeout 2 s): when each is cut, as the peer and
//!   the server see it, and why.
//! * `non-reader`: a peer sends 2000 sync requests and never reads its
//!   socket while the server answers every request (write timeout 2 s); a
//!   good client does 200 round trips meanwhile. Targets: every round trip
//!   succeeds, none waits as long as the write timeout, and the non-reader
//!   is cut by the write timeout.
//! * `accept-flood`: with `RLIMIT_NOFILE` lowered to 256, connections are
//!   opened until the server's accept fails (`EMFILE`); the server must
//!   report it and keep serving a connected client; once the attackers
//!   close, a new client must connect and complete a round trip.
//!
//! Every scenario is bounded; the process exits with status 1 when a
//! target is missed or a good client cannot get through.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beehive_model::Message;
use beehive_socket::asyncio::{
    Client, Endpoint, IncomingMessages, Server, ServerEvent, ServerEvents, ServerHandle, ServerOptions,
};
use beehive_socket::session::{CloseReason, SessionConfig, TransportKind};
use beehive_socket::{handshake_request, StreamFraming};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde_json::{json, Value};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::sync::{mpsc, Notify};

const SCENARIOS: [&str; 5] = ["idle", "idle-blocking", "slow-byte", "non-reader", "accept-flood"];

/// What a scenario produced: its figures, and the targets it missed.
struct Report {
    figures: Value,
    missed: Vec<String>,
}

type Outcome = Result<Report, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: hostile_peers [{}]...", SCENARIOS.join("|"));
        return ExitCode::SUCCESS;
    }
    if let Some(bad) = args.iter().find(|a| !SCENARIOS.contains(&a.as_str())) {
        eprintln!("unknown scenario {bad:?}; scenarios: {}", SCENARIOS.join(", "));
        return ExitCode::from(2);
    }
    let chosen: Vec<&str> =
        if args.is_empty() { SCENARIOS.to_vec() } else { args.iter().map(String::as_str).collect() };

    let dir = std::env::temp_dir().join(format!("hostile-peers-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut failed = false;
    for name in chosen {
        let (bound, outcome) = match name {
            "idle" => (Duration::from_secs(120), runtime.block_on(bounded(Duration::from_secs(120), idle(&dir)))),
            "idle-blocking" => {
                (Duration::from_secs(120), runtime.block_on(bounded(Duration::from_secs(120), idle_blocking(&dir))))
            }
            "slow-byte" => {
                (Duration::from_secs(40), runtime.block_on(bounded(Duration::from_secs(40), slow_byte(&dir))))
            }
            "non-reader" => {
                (Duration::from_secs(60), runtime.block_on(bounded(Duration::from_secs(60), non_reader(&dir))))
            }
            _ => (Duration::from_secs(60), runtime.block_on(bounded(Duration::from_secs(60), accept_flood(&dir)))),
        };
        let line = match outcome {
            Ok(Report { mut figures, missed }) => {
                failed |= !missed.is_empty();
                figures["scenario"] = json!(name);
                figures["ok"] = json!(missed.is_empty());
                figures["missed"] = json!(missed);
                figures["bound_s"] = json!(bound.as_secs());
                figures
            }
            Err(error) => {
                failed = true;
                json!({ "scenario": name, "ok": false, "error": error, "bound_s": bound.as_secs() })
            }
        };
        println!("{line}");
        if line["ok"] != json!(true) {
            eprintln!("scenario {name} FAILED: {}", line.get("error").unwrap_or(&line["missed"]));
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs a scenario within its overall bound.
async fn bounded(bound: Duration, scenario: impl std::future::Future<Output = Outcome>) -> Outcome {
    match tokio::time::timeout(bound, scenario).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("the scenario did not finish within {bound:?}")),
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// `VmRSS` and `VmHWM` of this process, in kB.
#[derive(Debug, Clone, Copy)]
struct Mem {
    rss_kb: u64,
    hwm_kb: u64,
}

impl Mem {
    fn now() -> Result<Mem, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .ok_or_else(|| format!("no {name} in /proc/self/status"))
        };
        Ok(Mem { rss_kb: field("VmRSS:")?, hwm_kb: field("VmHWM:")? })
    }

    fn json(self) -> Value {
        json!({ "rss_mb": mb(self.rss_kb), "hwm_mb": mb(self.hwm_kb) })
    }
}

fn mb(kb: u64) -> f64 {
    round2(kb as f64 / 1024.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn ms(d: Duration) -> f64 {
    round2(d.as_secs_f64() * 1000.0)
}

/// Polls `done` until it holds, for at most `limit`; how long it took.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        if done() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Threads of this process named like the blocking driver's connection
/// threads (`beehive-conn-…`).
fn connection_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("beehive-conn"))
        .count()
}

/// Sets the soft `RLIMIT_NOFILE`; the previous soft limit.
fn set_nofile(soft: u64) -> Result<u64, String> {
    let (old, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard).map_err(|e| format!("setrlimit: {e}"))?;
    Ok(old)
}

/// Puts the soft `RLIMIT_NOFILE` back when dropped.
struct NofileGuard(u64);

impl Drop for NofileGuard {
    fn drop(&mut self) {
        let _ = set_nofile(self.0);
    }
}

/// Stops a server (after `into_parts`) when dropped.
struct Stop(ServerHandle);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// Runs blocking peer code off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("peer thread failed: {e}"))
}

fn packet_config() -> SessionConfig {
    SessionConfig::server("socketserver", TransportKind::Packet).local_module("hub", "hubgroup")
}

/// A blocking SOCK_SEQPACKET socket connected to `path` (the connect and
/// every send and receive bounded by `timeout`).
fn packet_connect(path: &Path, timeout: Duration) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    packet_connect_with(&socket, path, timeout)?;
    Ok(socket)
}

fn packet_connect_with(socket: &Socket, path: &Path, timeout: Duration) -> std::io::Result<()> {
    socket.set_write_timeout(Some(timeout))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(&SockAddr::unix(path)?)
}

fn send_packet(socket: &Socket, msg: &Message) -> Result<(), String> {
    let bytes = beehive_model::to_vec_line(msg).map_err(|e| format!("encode: {e}"))?;
    socket.send(&bytes).map(drop).map_err(|e| format!("send: {e}"))
}

/// Waits for the handshake answer to `request` on a packet socket.
fn read_answer(socket: &Socket, request: &Message) -> Result<Message, String> {
    let answer = read_packet(socket)?;
    if answer.parent_id() != request.id() {
        return Err(format!("answer to {:?} instead of {:?}", answer.parent_id(), request.id()));
    }
    Ok(answer)
}

/// One packet through `Read` (socket2's `Read` for `&Socket` takes an
/// initialised buffer).
fn read_packet(socket: &Socket) -> Result<Message, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader: &Socket = socket;
    let n = reader.read(&mut buf).map_err(|e| format!("recv: {e}"))?;
    if n == 0 {
        return Err("recv: end of connection".into());
    }
    beehive_codec::raw::packet::decode(&buf[..n]).map_err(|e| format!("decode: {e}"))
}

/// Counts a server's events; forwards the ones scenarios wait for.
#[derive(Debug, Default)]
struct Counts {
    accepted: AtomicU64,
    registered: AtomicU64,
    connected: AtomicU64,
    disconnected: AtomicU64,
    accept_failed: AtomicU64,
}

type Stamped = (Instant, ServerEvent);

/// The counts are final once the task ends (after the server's shutdown,
/// when every connection is gone).
fn tap(
    mut events: ServerEvents,
    forward: bool,
) -> (Arc<Counts>, mpsc::UnboundedReceiver<Stamped>, tokio::task::JoinHandle<()>) {
    let counts = Arc::new(Counts::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let c = Arc::clone(&counts);
    let task = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let at = Instant::now();
            let counter = match &event {
                ServerEvent::Accepted { .. } => &c.accepted,
                ServerEvent::Registered { .. } => &c.registered,
                ServerEvent::Connected { .. } => &c.connected,
                ServerEvent::Disconnected { .. } => &c.disconnected,
                ServerEvent::AcceptFailed { .. } => &c.accept_failed,
                _ => continue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let wanted = matches!(event, ServerEvent::Disconnected { .. } | ServerEvent::AcceptFailed { .. });
            if forward && wanted {
                let _ = tx.send((at, event));
            }
        }
    });
    (counts, rx, task)
}

/// The next forwarded event `pick` accepts, within `limit`.
async fn next_event<T>(
    rx: &mut mpsc::UnboundedReceiver<Stamped>,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&Stamped) -> Option<T>,
) -> Result<T, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => {
                if let Some(t) = pick(&event) {
                    return Ok(t);
                }
            }
            Ok(None) => return Err(format!("the server's events ended before {what}")),
            Err(_) => return Err(format!("no {what} within {limit:?}")),
        }
    }
}

/// What the responder did for one module.
#[derive(Debug, Default)]
struct Answered {
    ok: AtomicU64,
    refused: AtomicU64,
    first_refusal: Mutex<Option<(Instant, String)>>,
    refusal: Notify,
}

/// Answers every sync request with `pong` (one task, one answer at a
/// time, as a simple server would); `watch` gets the outcome of the
/// answers to that module.
fn responder(mut incoming: IncomingMessages, handle: ServerHandle, watch: Option<(String, Arc<Answered>)>) {
    tokio::spawn(async move {
        while let Some(item) = incoming.recv().await {
            if !item.message.is_sync() {
                continue;
            }
            let resp = item.message.new_response("pong");
            let r = handle.send_resp(resp).await;
            if let Some((module, answered)) = &watch {
                if item.message.source() == module {
                    match r {
                        Ok(()) => {
                            answered.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            answered.refused.fetch_add(1, Ordering::Relaxed);
                            let mut first = answered.first_refusal.lock().unwrap_or_else(|e| e.into_inner());
                            if first.is_none() {
                                *first = Some((Instant::now(), e.to_string()));
                                answered.refusal.notify_one();
                            }
                        }
                    }
                }
            }
        }
    });
}

fn request(source: &str) -> Message {
    Message::new("").build_router(source, "", "res", "query").fill_body("ping")
}

/// One `send_sync` to `hub`: its round trip, or why it failed.
async fn round_trip(client: &Client, name: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let answer = client.send_sync("hub", request(name), Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
    if answer.content().as_str() != Some("pong") {
        return Err(format!("unexpected answer {answer}"));
    }
    Ok(start.elapsed())
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn latency(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    json!({
        "n": samples.len(),
        "p50_ms": ms(percentile(&samples, 50)),
        "p99_ms": ms(percentile(&samples, 99)),
        "max_ms": ms(samples.last().copied().unwrap_or_default()),
    })
}

fn reason_kind(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::Local => "Local",
        CloseReason::PeerClosed => "PeerClosed",
        CloseReason::HandshakeTimeout(_) => "HandshakeTimeout",
        CloseReason::IdleTimeout(_) => "IdleTimeout",
        CloseReason::StallTimeout { .. } => "StallTimeout",
        CloseReason::WriteTimeout { .. } => "WriteTimeout",
        CloseReason::OutboundOverflow { .. } => "OutboundOverflow",
        CloseReason::Malformed { .. } => "Malformed",
        CloseReason::NotRegistered { .. } => "NotRegistered",
        CloseReason::SourceNotAllowed { .. } => "SourceNotAllowed",
        CloseReason::HandshakeRefused(_) => "HandshakeRefused",
        _ => "Other",
    }
}

// ---------------------------------------------------------------------------
// idle

const IDLE_CONNS: usize = 1000;
const IDLE_TARGET_MB: f64 = 64.0;
/// Connect, register and close cycles: the second shows whether what the
/// first left resident is reused (allocator retention) or grows (a leak).
const IDLE_CYCLES: usize = 3;
/// How long after the last connection thread ended the closed state is
/// measured.
const SETTLE: Duration = Duration::from_millis(250);

/// Resident kB by kind of mapping (`/proc/self/smaps`): the main heap,
/// other anonymous memory (malloc arenas, thread stacks, tokio's mmaps),
/// and files.
fn rss_by_kind() -> Value {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return Value::Null };
    let (mut heap, mut anon, mut file) = (0u64, 0u64, 0u64);
    let mut kind = 0;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let name = words.nth(4).unwrap_or_default();
            kind = match name {
                "[heap]" => 0,
                "" | "[stack]" | "[anon]" => 1,
                n if n.starts_with('[') => 1,
                _ => 2,
            };
        } else if first == "Rss:" {
            let kb: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match kind {
                0 => heap += kb,
                1 => anon += kb,
                _ => file += kb,
            }
        }
    }
    json!({ "heap_mb": mb(heap), "anon_mb": mb(anon), "file_mb": mb(file) })
}

/// One cycle's figures.
struct Cycle {
    idle: Mem,
    registered: Mem,
    closed: Mem,
    closed_by_kind: Value,
    connect_idle: Duration,
    register: Duration,
    drain: Duration,
}

/// What the idle scenario watches of a server of either driver.
trait Watched {
    fn connections(&self) -> usize;
    fn module_count(&self) -> usize;
}

impl Watched for ServerHandle {
    fn connections(&self) -> usize {
        ServerHandle::connections(self)
    }

    fn module_count(&self) -> usize {
        self.modules().len()
    }
}

impl Watched for beehive_socket::blocking::ServerHandle {
    fn connections(&self) -> usize {
        beehive_socket::blocking::ServerHandle::connections(self)
    }

    fn module_count(&self) -> usize {
        self.modules().len()
    }
}

async fn idle_cycle(path: &Path, handle: &impl Watched) -> Result<Cycle, String> {
    // 1000 connections that never send.
    let start = Instant::now();
    let p = path.to_owned();
    let silent = blocking(move || -> Result<Vec<Socket>, String> {
        (0..IDLE_CONNS)
            .map(|i| packet_connect(&p, Duration::from_secs(10)).map_err(|e| format!("idle connection {i}: {e}")))
            .collect()
    })
    .await??;
    wait_until("1000 idle connections accepted", Duration::from_secs(20), || handle.connections() == IDLE_CONNS)
        .await?;
    let connect_idle = start.elapsed();
    let idle = Mem::now()?;

    // 1000 remote modules c0000..c0999, registered with raw packets.
    let start = Instant::now();
    let p = path.to_owned();
    let registered = blocking(move || -> Result<Vec<Socket>, String> {
        let mut socks = Vec::with_capacity(IDLE_CONNS);
        let mut requests = Vec::with_capacity(IDLE_CONNS);
        for i in 0..IDLE_CONNS {
            let s = packet_connect(&p, Duration::from_secs(10)).map_err(|e| format!("module connection {i}: {e}"))?;
            let req = handshake_request(&format!("c{i:04}"));
            send_packet(&s, &req)?;
            socks.push(s);
            requests.push(req);
        }
        for (s, req) in socks.iter().zip(&requests) {
            read_answer(s, req).map_err(|e| format!("handshake of {}: {e}", req.source()))?;
        }
        Ok(socks)
    })
    .await??;
    wait_until("1000 modules registered", Duration::from_secs(20), || {
        handle.module_count() == IDLE_CONNS && handle.connections() == 2 * IDLE_CONNS
    })
    .await?;
    let register = start.elapsed();
    let with_registered = Mem::now()?;

    // Everyone leaves.
    let start = Instant::now();
    drop(silent);
    drop(registered);
    wait_until("every connection closed", Duration::from_secs(30), || {
        handle.connections() == 0 && handle.module_count() == 0
    })
    .await?;
    // The blocking driver's connection threads report the close and then
    // end: their stacks go only then.
    wait_until("every connection thread ended", Duration::from_secs(30), || connection_threads() == 0).await?;
    // Measured once the server had a moment after the last close (it gives
    // memory back 50 ms after the close that made a release due).
    tokio::time::sleep(SETTLE).await;
    let drain = start.elapsed();
    Ok(Cycle {
        idle,
        registered: with_registered,
        closed: Mem::now()?,
        closed_by_kind: rss_by_kind(),
        connect_idle,
        register,
        drain,
    })
}

async fn idle(dir: &Path) -> Outcome {
    // 2000 connections, two descriptors each (both ends live here).
    let _limit = NofileGuard(set_nofile(8192)?);
    let path = dir.join("idle.sock");
    let endpoint = Endpoint::unix_packet(&path);
    // Connections that never send would be cut at the handshake timeout:
    // it is raised so that they stay while measured.
    let config = packet_config().handshake_timeout(Duration::from_secs(300));
    let server = Server::bind(&endpoint, config, ServerOptions::default()).await.map_err(|e| e.to_string())?;
    let (handle, incoming, events) = server.into_parts();
    let _stop = Stop(handle.clone());
    let (counts, _rx, tapped) = tap(events, false);
    responder(incoming, handle.clone(), None);
    let baseline = Mem::now()?;
    let baseline_by_kind = rss_by_kind();

    let mut cycles = Vec::new();
    for _ in 0..IDLE_CYCLES {
        cycles.push(idle_cycle(&path, &handle).await?);
    }

    // Every event taken: the server stops, its event stream ends.
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(5), tapped)
        .await
        .map_err(|_| "the server's events did not end after its shutdown".to_owned())?
        .map_err(|e| e.to_string())?;
    let conns = (IDLE_CONNS * IDLE_CYCLES) as u64;
    let seen = |c: &AtomicU64| c.load(Ordering::Relaxed);
    // Events the server dropped because its event channel was full (the
    // tap takes them as fast as it can).
    let events_dropped = json!({
        "accepted": 2 * conns - seen(&counts.accepted),
        "registered": conns - seen(&counts.registered),
        "connected": conns - seen(&counts.connected),
        "disconnected": 2 * conns - seen(&counts.disconnected),
    });
    idle_report(baseline, baseline_by_kind, &cycles, events_dropped)
}

/// The idle scenario against the blocking driver's server (a thread per
/// connection), its events left untaken.
async fn idle_blocking(dir: &Path) -> Outcome {
    use beehive_socket::blocking;
    let _limit = NofileGuard(set_nofile(8192)?);
    let path = dir.join("idle-blocking.sock");
    let config = packet_config().handshake_timeout(Duration::from_secs(300));
    let mut server =
        blocking::Server::bind(&blocking::Endpoint::unix_packet(&path), config, blocking::ServerOptions::default())
            .map_err(|e| e.to_string())?;
    let handle = server.handle().clone();
    let baseline = Mem::now()?;
    let baseline_by_kind = rss_by_kind();
    let mut cycles = Vec::new();
    for _ in 0..IDLE_CYCLES {
        cycles.push(idle_cycle(&path, &handle).await?);
    }
    server.shutdown();
    idle_report(baseline, baseline_by_kind, &cycles, Value::Null)
}

/// The idle scenario's figures and missed targets.
fn idle_report(baseline: Mem, baseline_by_kind: Value, cycles: &[Cycle], events_dropped: Value) -> Outcome {
    let first = &cycles[0];
    let last = &cycles[cycles.len() - 1];
    let idle_cost = mb(first.idle.rss_kb.saturating_sub(baseline.rss_kb));
    let registered_cost = mb(first.registered.rss_kb.saturating_sub(first.idle.rss_kb));
    let after_ratio = round2(last.closed.rss_kb as f64 / baseline.rss_kb as f64);
    let growth = mb(last.closed.rss_kb.saturating_sub(first.closed.rss_kb));
    // A leak of per-connection state would add about one cycle's cost per
    // cycle; allocator drift stays well below half of it.
    let cycle_cost = mb(first.registered.rss_kb.saturating_sub(baseline.rss_kb));
    let mut missed = Vec::new();
    if growth > cycle_cost / 2.0 {
        missed.push(format!(
            "RSS after closing grew {growth} MB over {IDLE_CYCLES} cycles (one cycle costs {cycle_cost} MB): a leak?"
        ));
    }
    if idle_cost > IDLE_TARGET_MB {
        missed.push(format!("1000 idle connections cost {idle_cost} MB > {IDLE_TARGET_MB} MB"));
    }
    if registered_cost > IDLE_TARGET_MB {
        missed.push(format!("1000 registered connections cost {registered_cost} MB > {IDLE_TARGET_MB} MB"));
    }
    if after_ratio > 2.0 {
        missed.push(format!(
            "RSS after closing is {after_ratio}x the baseline (> 2x): {} MB resident of which {} in the heap",
            mb(last.closed.rss_kb),
            last.closed_by_kind["heap_mb"]
        ));
    }
    let cycle_figures: Vec<Value> = cycles
        .iter()
        .map(|c| {
            json!({
                "idle": c.idle.json(),
                "registered": c.registered.json(),
                "closed": c.closed.json(),
                "closed_rss_by_kind": c.closed_by_kind,
                "connect_idle_ms": ms(c.connect_idle),
                "register_ms": ms(c.register),
                "close_drain_ms": ms(c.drain),
            })
        })
        .collect();
    let per_conn = |a: Mem, b: Mem| round2(b.rss_kb.saturating_sub(a.rss_kb) as f64 / IDLE_CONNS as f64);
    Ok(Report {
        figures: json!({
            "connections": IDLE_CONNS,
            "baseline": baseline.json(),
            "baseline_rss_by_kind": baseline_by_kind,
            "idle_cost_mb": idle_cost,
            "idle_kb_per_conn": per_conn(baseline, first.idle),
            "registered_cost_mb": registered_cost,
            "registered_kb_per_conn": per_conn(first.idle, first.registered),
            "closed_vs_baseline": after_ratio,
            "cycle_cost_mb": cycle_cost,
            "closed_growth_after_first_cycle_mb": growth,
            "cycles": cycle_figures,
            "events_dropped": events_dropped,
        }),
        missed,
    })
}

// ---------------------------------------------------------------------------
// slow-byte

const STALL: Duration = Duration::from_secs(3);
const SILENT_HANDSHAKE: Duration = Duration::from_secs(2);
const BYTE_PACE: Duration = Duration::from_secs(2);

/// How a peer saw itself cut.
#[derive(Debug)]
struct Cut {
    /// From the first byte (slow peer) or the connect (silent peer).
    after: Duration,
    how: String,
    bytes_sent: usize,
}

/// Registers on a stream socket, then sends one byte of a frame every 2 s
/// until the server cuts it. The wait between bytes is a read, which
/// also sees the cut.
fn slow_peer(path: &Path) -> Result<Cut, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let req = handshake_request("slowpeer");
    stream.write_all(&beehive_model::to_vec_line(&req).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(|e| format!("handshake answer: {e}"))?;
    let answer = beehive_model::from_slice(line.trim_end().as_bytes()).map_err(|e| format!("answer: {e}"))?;
    if answer.parent_id() != req.id() {
        return Err("the handshake answer does not answer the request".into());
    }
    stream.set_read_timeout(Some(BYTE_PACE)).map_err(|e| e.to_string())?;
    let frame = br#"{"header":{"msg_id":"slow"#;
    let mut first: Option<Instant> = None;
    for (sent, byte) in frame.iter().enumerate() {
        if let Err(e) = stream.write_all(std::slice::from_ref(byte)) {
            let after = first.map_or(Duration::ZERO, |t| t.elapsed());
            return Ok(Cut { after, how: format!("write: {e}"), bytes_sent: sent });
        }
        let first = *first.get_or_insert_with(Instant::now);
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Cut { after: first.elapsed(), how: "EOF".into(), bytes_sent: sent + 1 }),
            Ok(n) => return Err(format!("unexpected {n} bytes from the server")),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Ok(Cut { after: first.elapsed(), how: format!("read: {e}"), bytes_sent: sent + 1 }),
        }
    }
    Err(format!("still connected after {} bytes", frame.len()))
}

/// Connects and says nothing; how long until the server hangs up.
fn silent_peer(path: &Path) -> Result<Cut, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    let start = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(15))).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => Ok(Cut { after: start.elapsed(), how: "EOF".into(), bytes_sent: 0 }),
        Ok(n) => Err(format!("unexpected {n} bytes from the server")),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Err("still connected after 15 s".into())
        }
        Err(e) => Ok(Cut { after: start.elapsed(), how: format!("read: {e}"), bytes_sent: 0 }),
    }
}

async fn slow_byte(dir: &Path) -> Outcome {
    let path = dir.join("slow.sock");
    let endpoint = Endpoint::unix(&path);
    let config = SessionConfig::server("socketserver", TransportKind::Stream(StreamFraming::Raw))
        .local_module("hub", "hubgroup")
        .stall_timeout(STALL)
        .handshake_timeout(SILENT_HANDSHAKE);
    let server = Server::bind(&endpoint, config, ServerOptions::default()).await.map_err(|e| e.to_string())?;
    let (handle, incoming, events) = server.into_parts();
    let _stop = Stop(handle.clone());
    let (_counts, mut rx, _tapped) = tap(events, true);
    responder(incoming, handle.clone(), None);

    let (p1, p2) = (path.clone(), path.clone());
    let slow = tokio::task::spawn_blocking(move || slow_peer(&p1));
    let silent = tokio::task::spawn_blocking(move || silent_peer(&p2));
    let slow = slow.await.map_err(|e| e.to_string())??;
    let silent = silent.await.map_err(|e| e.to_string())??;

    // The server's side: both Disconnected events.
    let mut slow_reason = None;
    let mut silent_reason = None;
    while slow_reason.is_none() || silent_reason.is_none() {
        let (module, reason) = next_event(&mut rx, Duration::from_secs(5), "both disconnections", |(_, e)| match e {
            ServerEvent::Disconnected { module, reason, .. } => Some((module.clone(), Arc::clone(reason))),
            _ => None,
        })
        .await?;
        match module.as_deref() {
            Some("slowpeer") => slow_reason = Some(reason),
            None => silent_reason = Some(reason),
            Some(other) => return Err(format!("unexpected disconnection of {other}")),
        }
    }
    let (Some(slow_reason), Some(silent_reason)) = (slow_reason, silent_reason) else {
        return Err("a disconnection went missing".into());
    };

    let mut missed = Vec::new();
    if !matches!(*slow_reason, CloseReason::StallTimeout { .. }) {
        missed.push(format!("the slow peer was cut for {slow_reason}, not the stall timeout"));
    }
    if slow.after < STALL || slow.after > STALL + Duration::from_secs(1) {
        missed.push(format!("the slow peer was cut {:?} after its first byte (stall timeout {STALL:?})", slow.after));
    }
    if !matches!(*silent_reason, CloseReason::HandshakeTimeout(_)) {
        missed.push(format!("the silent peer was cut for {silent_reason}, not the handshake timeout"));
    }
    if silent.after > SILENT_HANDSHAKE + Duration::from_secs(1) {
        missed
            .push(format!("the silent peer was cut after {:?} (handshake timeout {SILENT_HANDSHAKE:?})", silent.after));
    }
    Ok(Report {
        figures: json!({
            "slow_peer": {
                "stall_timeout_s": STALL.as_secs(),
                "byte_every_s": BYTE_PACE.as_secs(),
                "cut_after_first_byte_ms": ms(slow.after),
                "bytes_sent": slow.bytes_sent,
                "peer_saw": slow.how,
                "reason_kind": reason_kind(&slow_reason),
                "reason": slow_reason.to_string(),
            },
            "silent_peer": {
                "handshake_timeout_s": SILENT_HANDSHAKE.as_secs(),
                "cut_after_connect_ms": ms(silent.after),
                "peer_saw": silent.how,
                "reason_kind": reason_kind(&silent_reason),
                "reason": silent_reason.to_string(),
            },
        }),
        missed,
    })
}

// ---------------------------------------------------------------------------
// non-reader

const FLOOD_REQUESTS: usize = 2000;
const GOOD_ROUND_TRIPS: usize = 200;
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the non-reader managed to send.
#[derive(Debug)]
struct Flood {
    sent: usize,
    error: Option<(Duration, String)>,
}

async fn non_reader(dir: &Path) -> Outcome {
    let path = dir.join("nonreader.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let config = packet_config().write_timeout(Some(WRITE_TIMEOUT));
    let server = Server::bind(&endpoint, config, ServerOptions::default()).await.map_err(|e| e.to_string())?;
    let (handle, incoming, events) = server.into_parts();
    let _stop = Stop(handle.clone());
    let (_counts, mut rx, _tapped) = tap(events, true);
    let answered = Arc::new(Answered::default());
    responder(incoming, handle.clone(), Some(("nonreader".to_owned(), Arc::clone(&answered))));

    let good = Client::connect(&endpoint, SessionConfig::client("good", TransportKind::Packet))
        .await
        .map_err(|e| format!("the good client cannot connect: {e}"))?;
    // Warm-up round trip, not counted.
    round_trip(&good, "good").await.map_err(|e| format!("the good client's first round trip: {e}"))?;

    // The non-reader registers (reading its handshake answer, the last
    // thing it ever reads).
    let p = path.clone();
    let peer = blocking(move || -> Result<Socket, String> {
        let s = packet_connect(&p, Duration::from_secs(5)).map_err(|e| format!("non-reader connect: {e}"))?;
        let req = handshake_request("nonreader");
        send_packet(&s, &req)?;
        read_answer(&s, &req)?;
        Ok(s)
    })
    .await??;
    wait_until("the non-reader registered", Duration::from_secs(5), || {
        handle.modules().iter().any(|m| m == "nonreader")
    })
    .await?;

    let flood_start = Instant::now();
    let flood = tokio::task::spawn_blocking(move || {
        let mut sent = 0;
        let mut error = None;
        for _ in 0..FLOOD_REQUESTS {
            let msg = request("nonreader").set_destination("hub").set_sync(true).set_type("unixpacket");
            match send_packet(&peer, &msg) {
                Ok(()) => sent += 1,
                Err(e) => {
                    error = Some((flood_start.elapsed(), e));
                    break;
                }
            }
        }
        // Held (unread) until the server has cut it.
        (Flood { sent, error }, peer)
    });

    // Phase 1: round trips while the flood comes in.
    let mut during_flood = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..GOOD_ROUND_TRIPS / 2 {
        match round_trip(&good, "good").await {
            Ok(d) => during_flood.push(d),
            Err(e) => failures.push(e),
        }
    }
    // Phase 2: round trips once the server cannot write to the non-reader
    // any more (its outbound queue refused an answer), before the write
    // timeout cuts it.
    let stalled = tokio::select! {
        () = answered.refusal.notified() => true,
        () = tokio::time::sleep(Duration::from_secs(10)) => false,
    };
    let queue_full_at = answered.first_refusal.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let still_up_at_phase2 = handle.modules().iter().any(|m| m == "nonreader");
    let mut while_stalled = Vec::new();
    for _ in 0..GOOD_ROUND_TRIPS / 2 {
        match round_trip(&good, "good").await {
            Ok(d) => while_stalled.push(d),
            Err(e) => failures.push(e),
        }
    }
    let phase2_done = flood_start.elapsed();

    // The non-reader's end.
    let (cut_at, reason) =
        next_event(&mut rx, WRITE_TIMEOUT * 4, "the non-reader's disconnection", |(at, e)| match e {
            ServerEvent::Disconnected { module: Some(m), reason, .. } if m == "nonreader" => {
                Some((at.saturating_duration_since(flood_start), Arc::clone(reason)))
            }
            _ => None,
        })
        .await?;
    let (flood, peer) = flood.await.map_err(|e| e.to_string())?;
    drop(peer);
    let after_cut = round_trip(&good, "good").await;

    let mut all: Vec<Duration> = during_flood.iter().chain(&while_stalled).copied().collect();
    all.sort();
    let ok = all.len();
    let mut missed = Vec::new();
    if ok != GOOD_ROUND_TRIPS {
        missed.push(format!("only {ok} of {GOOD_ROUND_TRIPS} good round trips succeeded: {failures:?}"));
    }
    if let Err(e) = &after_cut {
        missed.push(format!("the good client failed after the cut: {e}"));
    }
    if percentile(&all, 99) >= WRITE_TIMEOUT {
        missed.push(format!("the good client's p99 {:?} reaches the write timeout", percentile(&all, 99)));
    }
    if !matches!(*reason, CloseReason::WriteTimeout { .. }) {
        missed.push(format!("the non-reader was cut for {reason}, not the write timeout"));
    }
    if !stalled {
        missed.push("the server never refused an answer to the non-reader (its queue never filled)".into());
    }
    let stall_ms = queue_full_at.as_ref().map(|(t, _)| ms(t.saturating_duration_since(flood_start)));
    Ok(Report {
        figures: json!({
            "write_timeout_s": WRITE_TIMEOUT.as_secs(),
            "good_client": {
                "ok": ok,
                "of": GOOD_ROUND_TRIPS,
                "p50_ms": ms(percentile(&all, 50)),
                "p99_ms": ms(percentile(&all, 99)),
                "max_ms": ms(all.last().copied().unwrap_or_default()),
                "during_flood": latency(during_flood),
                "while_non_reader_stalled": latency(while_stalled),
                "phase2_done_ms": ms(phase2_done),
                "non_reader_still_up_at_phase2": still_up_at_phase2,
                "after_cut_ok": after_cut.is_ok(),
            },
            "non_reader": {
                "requests_sent": flood.sent,
                "send_error": flood.error.as_ref().map(|(t, e)| json!({ "at_ms": ms(*t), "error": e })),
                "answers_queued": answered.ok.load(Ordering::Relaxed),
                "answers_refused": answered.refused.load(Ordering::Relaxed),
                "first_refusal_ms": stall_ms,
                "first_refusal": queue_full_at.map(|(_, e)| e),
                "disconnected_ms": ms(cut_at),
                "reason_kind": reason_kind(&reason),
                "reason": reason.to_string(),
            },
        }),
        missed,
    })
}

// ---------------------------------------------------------------------------
// accept-flood

const FLOOD_NOFILE: u64 = 256;
const RESERVE: usize = 16;
const RECOVERY_TARGET: Duration = Duration::from_secs(5);

/// The attackers' sockets, and what the flood saw.
#[derive(Debug)]
struct Attack {
    sockets: Vec<Socket>,
    accepted: usize,
    socket_emfile: bool,
    from_reserve: usize,
}

fn attack(path: &Path, handle: &ServerHandle, before: usize) -> Result<Attack, String> {
    // Sockets made while descriptors are left, connected once none are.
    let mut reserve: Vec<Socket> = (0..RESERVE)
        .map(|_| Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(|e| format!("reserve socket: {e}")))
        .collect::<Result<_, _>>()?;
    let mut attack = Attack { sockets: Vec::new(), accepted: 0, socket_emfile: false, from_reserve: 0 };
    while handle.accept_errors() == 0 {
        let socket = match Socket::new(Domain::UNIX, Type::SEQPACKET, None) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32) => {
                attack.socket_emfile = true;
                attack.from_reserve += 1;
                reserve.pop().ok_or("no accept failure once the reserve sockets were connected")?
            }
            Err(e) => return Err(format!("attacker socket: {e}")),
        };
        packet_connect_with(&socket, path, Duration::from_secs(2))
            .map_err(|e| format!("attacker {} connect: {e}", attack.sockets.len()))?;
        attack.sockets.push(socket);
        // Wait for the server to take it, or to fail to.
        let n = attack.sockets.len();
        let start = Instant::now();
        while handle.connections() < before + n && handle.accept_errors() == 0 {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(format!("the server neither accepted nor failed attacker {n}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    attack.accepted = handle.connections() - before;
    attack.sockets.extend(reserve);
    Ok(attack)
}

async fn accept_flood(dir: &Path) -> Outcome {
    let path = dir.join("flood.sock");
    let endpoint = Endpoint::unix_packet(&path);
    // The attackers never register: they must stay while the flood lasts.
    let config = packet_config().handshake_timeout(Duration::from_secs(60));
    let server = Server::bind(&endpoint, config, ServerOptions::default()).await.map_err(|e| e.to_string())?;
    let (handle, incoming, events) = server.into_parts();
    let _stop = Stop(handle.clone());
    let (counts, mut rx, _tapped) = tap(events, true);
    responder(incoming, handle.clone(), None);

    let early = Client::connect(&endpoint, SessionConfig::client("early", TransportKind::Packet))
        .await
        .map_err(|e| format!("the early client cannot connect: {e}"))?;
    round_trip(&early, "early").await.map_err(|e| format!("the early client's round trip: {e}"))?;

    let limit = NofileGuard(set_nofile(FLOOD_NOFILE)?);
    let (p, h) = (path.clone(), handle.clone());
    let attack = blocking(move || attack(&p, &h, 1)).await??;
    let flood_start = Instant::now();
    let first_failure = next_event(&mut rx, Duration::from_secs(5), "AcceptFailed", |(_, e)| match e {
        ServerEvent::AcceptFailed { error, backoff, .. } => Some((error.to_string(), *backoff)),
        _ => None,
    })
    .await?;
    // The flood lasts until the accept backoff is at its longest (the
    // worst moment for a newcomer): at every failed accept, the connected
    // client must still get its answer.
    let max_backoff = ServerOptions::default().max_accept_backoff;
    let mut backoffs = vec![first_failure.1];
    let mut during = Vec::new();
    let mut during_failures = Vec::new();
    loop {
        match round_trip(&early, "early").await {
            Ok(d) => during.push(d),
            Err(e) => during_failures.push(e),
        }
        if backoffs.last().is_some_and(|b| *b >= max_backoff) {
            break;
        }
        let backoff = next_event(&mut rx, Duration::from_secs(5), "another AcceptFailed", |(_, e)| match e {
            ServerEvent::AcceptFailed { backoff, .. } => Some(*backoff),
            _ => None,
        })
        .await?;
        backoffs.push(backoff);
    }
    let flood_lasted = flood_start.elapsed();
    let accept_errors_flood = handle.accept_errors();

    // The attackers leave; a new client must get through.
    let attackers = attack.sockets.len();
    let closing = Instant::now();
    drop(attack.sockets);
    let late = Client::connect(&endpoint, SessionConfig::client("late", TransportKind::Packet)).await;
    let connect_took = closing.elapsed();
    let late_rt = match &late {
        Ok(c) => round_trip(c, "late").await,
        Err(e) => Err(format!("connect: {e}")),
    };
    let recovered = closing.elapsed();
    drop(limit);
    let drained =
        wait_until("the attackers' connections closed", Duration::from_secs(10), || handle.connections() == 2).await;

    let mut missed = Vec::new();
    if !during_failures.is_empty() {
        missed.push(format!("the connected client failed while accept failed: {during_failures:?}"));
    }
    if let Err(e) = &late_rt {
        missed.push(format!("no new client after the flood: {e}"));
    } else if recovered > RECOVERY_TARGET {
        missed.push(format!("recovery took {recovered:?} > {RECOVERY_TARGET:?}"));
    }
    if let Err(e) = &drained {
        missed.push(e.clone());
    }
    Ok(Report {
        figures: json!({
            "nofile_soft": FLOOD_NOFILE,
            "attackers": attackers,
            "accepted_before_failure": attack.accepted,
            "attacker_socket_emfile": attack.socket_emfile,
            "attackers_from_reserve": attack.from_reserve,
            "first_accept_error": first_failure.0,
            "backoffs_ms": backoffs.iter().map(|b| ms(*b)).collect::<Vec<_>>(),
            "flood_lasted_ms": ms(flood_lasted),
            "accept_errors_during_flood": accept_errors_flood,
            "accept_failed_events": counts.accept_failed.load(Ordering::Relaxed),
            "connected_client_during_flood": {
                "ok": during.len(),
                "failed": during_failures.len(),
                "max_ms": ms(during.iter().max().copied().unwrap_or_default()),
            },
            "recovery": {
                "connect_ms": ms(connect_took),
                "round_trip_ms": late_rt.as_ref().ok().map(|d| ms(*d)),
                "total_ms": ms(recovered),
                "target_ms": ms(RECOVERY_TARGET),
            },
            "accept_errors_total": handle.accept_errors(),
        }),
        missed,
    })
}
