//! Logs of the real `beehive` binary: `--log-format json` writes JSON
//! lines on stderr, and `--log` / `RUST_LOG` choose which.

mod common;

use std::process::Output;
use std::time::Duration;

use beehive_socket::asyncio::{Endpoint, IncomingMessages, Server, ServerEvents, ServerHandle, ServerOptions};
use beehive_socket::session::{SessionConfig, TransportKind};
use serde_json::Value;
use tokio::runtime::Runtime;

/// The longest any single step may take.
const T: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// A socket server run by the test

/// A server with the local module `srvmod` that lets the module `cli` in
/// and drops what it receives.
struct Hive {
    /// Runs the server.
    _rt: Runtime,
    /// Keep the server running.
    _handle: ServerHandle,
    _events: ServerEvents,
    socket: String,
    _dir: tempfile::TempDir,
}

impl Hive {
    fn start() -> Hive {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("beehive.sock");
        let config = SessionConfig::server("socketserver", TransportKind::Packet)
            .local_module("srvmod", "srvgroup")
            .allow_module("cli");
        let server = rt
            .block_on(Server::bind(&Endpoint::unix_packet(&socket), config, ServerOptions::default()))
            .expect("the server binds");
        let (handle, incoming, events) = server.into_parts();
        rt.spawn(drain(incoming));
        Hive { _rt: rt, _handle: handle, _events: events, socket: socket.to_str().unwrap().to_owned(), _dir: dir }
    }
}

async fn drain(mut incoming: IncomingMessages) {
    while incoming.recv().await.is_some() {}
}

// ---------------------------------------------------------------------------
// Logs

/// `beehive [FLAGS] listen … --timeout 300ms` against `hive`, with
/// `RUST_LOG` set to `rust_log` (or unset); ends by itself once registered.
fn listen_briefly(hive: &Hive, flags: &[&str], rust_log: Option<&str>) -> Output {
    let mut cmd = common::beehive();
    cmd.args(flags).args(["listen", "--socket", &hive.socket, "--module", "cli", "--timeout", "300ms"]);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    let out = cmd.timeout(T).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("registered as cli on "), "stdout holds the command's output only: {stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    out
}

/// The client's `connected` event, as the JSON object of a log line.
fn is_connected_event(v: &Value) -> bool {
    v["fields"]["message"] == "connected"
        && v["level"] == "INFO"
        && v["target"].as_str().is_some_and(|t| t.starts_with("beehive_socket::"))
}

#[test]
fn json_logs_go_to_stderr_as_one_object_per_line_filtered_by_rust_log() {
    let hive = Hive::start();

    let out = listen_briefly(&hive, &["--log-format", "json"], Some("beehive_socket=info"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not a JSON line: {l:?}\n{stderr}")))
        .collect();
    let connected = events.iter().find(|v| is_connected_event(v)).unwrap_or_else(|| panic!("{stderr}"));
    assert!(connected["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{connected}");
    assert!(connected["fields"]["endpoint"].as_str().is_some_and(|e| e.contains("beehive.sock")), "{connected}");
    // RUST_LOG=beehive_socket=info lets nothing of other targets through below warn.
    for v in &events {
        let target = v["target"].as_str().unwrap_or_default();
        assert!(
            target.starts_with("beehive_socket") || ["WARN", "ERROR"].contains(&v["level"].as_str().unwrap()),
            "{v}"
        );
    }

    // The default filter is warn: the info event is not written.
    let out = listen_briefly(&hive, &["--log-format", "json"], None);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("\"connected\""), "{stderr}");

    // --log overrides RUST_LOG.
    let out = listen_briefly(&hive, &["--log-format", "json", "--log", "warn"], Some("beehive_socket=info"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("\"connected\""), "{stderr}");
    let out = listen_briefly(&hive, &["--log-format", "json", "--log", "beehive_socket=info"], Some("off"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.lines().any(|l| serde_json::from_str(l).is_ok_and(|v: Value| is_connected_event(&v))), "{stderr}");
}

#[test]
fn text_logs_are_plain_lines_on_stderr() {
    let hive = Hive::start();
    let out = listen_briefly(&hive, &[], Some("info"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr.lines().find(|l| l.contains(" connected")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(" INFO beehive_socket::"), "{line}");
    assert!(!stderr.contains('\x1b'), "no colour when stderr is not a terminal: {stderr:?}");
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
}

#[test]
fn a_bad_log_filter_is_a_usage_error_and_a_bad_rust_log_a_warning() {
    let out = common::beehive().args(["--log", "beehive=loud", "decode", "-"]).write_stdin("").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'beehive=loud' for '--log <FILTER>'"));

    let out = common::beehive()
        .args(["--log-format", "json", "decode", "-"])
        .env("RUST_LOG", "beehive=loud")
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let warning: Value = serde_json::from_str(stderr.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(warning["fields"]["message"].as_str().unwrap().starts_with("ignoring RUST_LOG=\"beehive=loud\""));
}
