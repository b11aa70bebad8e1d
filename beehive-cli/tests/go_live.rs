//! The real binary against KubeEdge's Go beehive, live over unixpacket:
//! `send` and `listen` against the Go server, `serve` against the Go client.
//!
//! Runs only when `GOPEER` names the Go peer binary (`gopeer server` and
//! `gopeer client` drive the unmodified Go beehive and report JSON lines);
//! otherwise each test prints why it is skipped and returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{beehive, Running, STEP as T};
use serde_json::Value;

fn gopeer() -> Option<PathBuf> {
    match std::env::var_os("GOPEER") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("skipped: set GOPEER to the Go peer binary to run the live Go interop tests");
            None
        }
    }
}

/// A Go peer process, killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    fn start(bin: &Path, args: &[&str], report: &Path) -> Peer {
        let child = Command::new(bin)
            .args(args)
            .arg("--report")
            .arg(report)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("GOPEER runs");
        Peer(child)
    }

    /// Waits (bounded) for the peer to exit.
    fn finish(mut self) {
        let started = Instant::now();
        while self.0.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < T, "the Go peer did not exit within {T:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The report's lines as (scenario, result, detail).
fn report(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("scenario"), s("result"), s("detail"))
        })
        .collect()
}

/// Waits (bounded) until the report has a line for `scenario`.
fn reported(path: &Path, scenario: &str) {
    let started = Instant::now();
    while !report(path).iter().any(|(s, _, _)| s == scenario) {
        assert!(started.elapsed() < T, "the Go peer did not report {scenario} within {T:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn result(path: &Path, scenario: &str) -> Option<(String, String)> {
    report(path).into_iter().rev().find(|(s, _, _)| s == scenario).map(|(_, r, d)| (r, d))
}

/// `gopeer server` with its module `hub`, letting in `allow`, once it listens.
fn go_server(bin: &Path, dir: &Path, allow: &str) -> (Peer, String, PathBuf) {
    let socket = dir.join("go.sock");
    let report = dir.join("server-report.jsonl");
    let s = socket.to_str().unwrap().to_owned();
    let peer = Peer::start(bin, &["server", "--socket", &s, "--allow", allow, "--duration", "9s"], &report);
    reported(&report, "srv.start");
    let started = Instant::now();
    while !socket.exists() {
        assert!(started.elapsed() < T, "the Go server's socket did not appear");
        thread::sleep(Duration::from_millis(20));
    }
    (peer, s, report)
}

#[test]
fn send_sync_reaches_the_go_servers_module() {
    let Some(bin) = gopeer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (peer, socket, report_path) = go_server(&bin, dir.path(), "probe");
    let out = beehive()
        .args(["send", "--socket", &socket, "--module", "probe", "--to", "hub", "--sync", "--content", "ping"])
        .timeout(T)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // gopeer's hub answers "pong:<request id>:by:hub".
    let line = stdout.lines().next().unwrap_or_default();
    assert!(line.starts_with("response from "), "{line}");
    assert!(line.contains(":by:hub\""), "{line}");
    drop(peer);
    // The Go server received the request from probe and answered it.
    let lines = report(&report_path);
    let answered = lines.iter().any(|(s, _, d)| s.starts_with("srv.answer:") && d.contains("to probe"));
    assert!(answered, "{lines:?}");
}

#[test]
fn listen_prints_what_the_go_server_sends() {
    let Some(bin) = gopeer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (peer, socket, _report) = go_server(&bin, dir.path(), "probe");
    let mut listen = Running::start("listen", &["listen", "--socket", &socket, "--module", "probe", "--json"]);
    let first: Value = serde_json::from_str(&listen.line("the registered line")).unwrap();
    assert_eq!(first["registered"], "probe");
    assert!(first["modules"]["hub"].is_array(), "{first}");
    // The Go server's scripted messages, in Go's JSON, up to its last one.
    let mut ids = Vec::new();
    loop {
        let line = listen.line("the Go server's messages");
        let msg = beehive_model::from_slice(line.as_bytes()).expect("Go's JSON of a message");
        assert_eq!((msg.source(), msg.destination()), ("hub", "probe"), "{line}");
        ids.push(msg.id().to_owned());
        if msg.id() == "srv-tail-0001" {
            break;
        }
    }
    for id in ["srv-send-0001", "srv-uni-0001", "srv-big-60k", "srv-group-0001", "srv-sync-0001"] {
        assert!(ids.iter().any(|i| i == id), "{id} not printed: {ids:?}");
    }
    assert!(listen.interrupt().success());
    peer.finish();
}

#[test]
fn the_go_client_against_beehive_serve() {
    let Some(bin) = gopeer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = common::socket_module_config(dir.path(), 4 << 20, &["edgeclient"]);
    let mut serve = Running::start(
        "serve",
        &["serve", "--config", config.to_str().unwrap(), "--echo", "--echo-module", "hub", "--json"],
    );
    let first: Value = serde_json::from_str(&serve.line("the listening line")).unwrap();
    assert_eq!(first["event"], "listening");
    let report_path = dir.path().join("client-report.jsonl");
    let client = Peer::start(
        &bin,
        &["client", "--socket", &socket, "--module", "edgeclient", "--peer", "hub", "--mode", "broker"]
            .into_iter()
            .chain(["--duration", "6s"])
            .collect::<Vec<_>>(),
        &report_path,
    );
    let registered: Value = serde_json::from_str(&serve.line_with("\"registered\"")).unwrap();
    assert_eq!(registered["module"], "edgeclient");
    // serve prints the Go client's request to hub (through Go's broker,
    // the Go client's way to address a server module), in Go's JSON.
    let line = serve.line_with("cli-sync-0001");
    let msg = beehive_model::from_slice(line.as_bytes()).expect("Go's JSON of a message");
    assert_eq!((msg.source(), msg.destination(), msg.is_sync()), ("edgeclient", "hub", true));
    client.finish();
    let (r, d) = result(&report_path, "cli.handshake").expect("the Go client handshook");
    assert_eq!(r, "pass", "{d}");
    // The echo module answered the Go client's SendSync with its content.
    let (r, d) = result(&report_path, "cli.sendsync:cli-sync-0001").expect("the Go client's SendSync");
    assert_eq!(r, "pass", "{d}");
    assert!(d.ends_with("content=ping"), "{d}");
    // Go's own failure only: its client cannot write a 2 MB packet.
    let failed: Vec<_> =
        report(&report_path).into_iter().filter(|(s, r, _)| r == "fail" && s != "cli.send:cli-big-2m").collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(serve.interrupt().success());
}
