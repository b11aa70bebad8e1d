//! The real binary against KubeEdge's Go beehive, live over unixpacket:
//! `send` and `listen` against the Go server, `serve` against the Go
//! client, and `record` between the Go client and the Go server.
//!
//! Runs only when `GOPEER` names the Go peer binary (`gopeer server` and
//! `gopeer client` drive the unmodified Go beehive and report JSON lines);
//! otherwise each test prints why it is skipped and returns.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{beehive, Running, STEP as T};
use gopeer_report::{gopeer, Report, GO_OWN_SYNC, GO_RACE};
use serde_json::Value;

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
        // gopeer writes its socket_module.yaml into a fresh directory under
        // TMPDIR: the test's own, removed with it.
        let tmp = report.parent().expect("the report is in the test's directory");
        let child = Command::new(bin)
            .args(args)
            .arg("--report")
            .arg(report)
            .env("TMPDIR", tmp)
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

/// Waits (bounded) until the report has a line for `scenario`.
fn reported(path: &Path, scenario: &str) {
    let started = Instant::now();
    while !Report::read(path).has(scenario) {
        assert!(started.elapsed() < T, "the Go peer did not report {scenario} within {T:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The last (result, detail) reported for `scenario`.
fn result(path: &Path, scenario: &str) -> Option<(String, String)> {
    Report::read(path).last(scenario).map(|r| (r.result.clone(), r.detail.clone()))
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
    let report = Report::read(&report_path);
    let answered = report
        .scenarios()
        .any(|(s, rows)| s.starts_with("srv.answer:") && rows.iter().any(|r| r.detail.contains("to probe")));
    assert!(answered, "{report:?}");
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
    // The echo module answered the Go client's SendSync with its content,
    // unless the answer beat Go's own waiter (Go's race, not ours).
    let report = Report::read(&report_path);
    let go_race = report.lost_to_go_race();
    if go_race {
        eprintln!("{GO_OWN_SYNC}: {GO_RACE}");
    } else {
        let (r, d) = result(&report_path, GO_OWN_SYNC).expect("the Go client's SendSync");
        assert_eq!(r, "pass", "{d}");
        assert!(d.ends_with("content=ping"), "{d}");
    }
    // Go's own failures only: its client cannot write a 2 MB packet.
    let expected: &[&str] = if go_race { &["cli.send:cli-big-2m", GO_OWN_SYNC] } else { &["cli.send:cli-big-2m"] };
    let failed = report.failing_besides(expected);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(serve.interrupt().success());
}

/// `beehive record --listen LISTEN --upstream UPSTREAM --out OUT`, once it
/// listens; its stderr lines come through the receiver.
fn record(listen: &Path, upstream: &str, out: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_beehive"))
        .args(["record", "--listen"])
        .arg(listen)
        .args(["--upstream", upstream, "--out"])
        .arg(out)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("beehive runs");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines.recv_timeout(T).expect("beehive record announces itself");
    assert!(first.starts_with("beehive: recording "), "{first}");
    (child, lines)
}

/// The messages of one direction of a unixpacket transcript, one per packet.
fn packets(transcript: &[Value], dir: &str) -> Vec<beehive_model::Message> {
    transcript
        .iter()
        .filter(|l| l["dir"] == dir)
        .map(|l| {
            let data = base64::engine::general_purpose::STANDARD.decode(l["data_b64"].as_str().unwrap()).unwrap();
            beehive_model::from_slice(&data).unwrap_or_else(|e| panic!("{dir}: not a message ({e}): {l}"))
        })
        .collect()
}

#[test]
fn a_go_to_go_session_recorded_by_beehive_record_conforms() {
    let Some(bin) = gopeer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, upstream, server_report) = go_server(&bin, dir.path(), "edgeclient");
    let relay = dir.path().join("relay.sock");
    let out = dir.path().join("rec");
    let (mut rec, rec_lines) = record(&relay, &upstream, &out);

    // The Go client joins the Go server through the relay and runs its
    // scenarios; the server's run out its own (its duration ends it).
    let client_report = dir.path().join("client-report.jsonl");
    let client = Peer::start(
        &bin,
        &["client", "--socket", relay.to_str().unwrap(), "--module", "edgeclient", "--peer", "hub", "--duration", "6s"],
        &client_report,
    );
    client.finish();
    server.finish();
    let pid = nix::unistd::Pid::from_raw(rec.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = Vec::new();
    while let Ok(line) = rec_lines.recv_timeout(T) {
        rest.push(line);
    }
    let status = rec.wait().unwrap();
    let rest = rest.join("\n");
    assert_eq!(status.code(), Some(0), "{rest}");

    // The session went through the relay as it goes without one. The Go
    // client's SendSync may lose Go's own race (with or without a relay).
    let go_race = Report::read(&client_report).lost_to_go_race();
    if go_race {
        eprintln!("{GO_OWN_SYNC}: {GO_RACE}");
    }
    let sync = if go_race { None } else { Some((&client_report, GO_OWN_SYNC)) };
    for (report_path, scenario) in [
        Some((&client_report, "cli.handshake")),
        sync,
        Some((&client_report, "cli.recv:srv-send-0001")),
        Some((&client_report, "cli.recv:srv-big-60k")),
        Some((&server_report, "srv.registered:edgeclient")),
    ]
    .into_iter()
    .flatten()
    {
        let (r, d) = result(report_path, scenario).unwrap_or_else(|| panic!("{scenario} not reported"));
        assert_eq!(r, "pass", "{scenario}: {d}");
    }

    // One connection, complete, with packets both ways.
    let summary = rest.lines().find(|l| l.contains(": recorded ")).unwrap_or_else(|| panic!("{rest}"));
    let count: u64 = summary
        .split("recorded 1 connection, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(count > 0, "{summary}");
    let index = std::fs::read_to_string(out.join("recorded/index.jsonl")).unwrap();
    let conns: Vec<Value> = index.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(conns.len(), 1, "{index}");
    let conn = &conns[0];
    assert_eq!((conn["lines"].as_u64(), &conn["error"]), (Some(count), &Value::Null), "{conn}");
    assert_eq!(conn["client_to_server"]["end"], "closed by the client", "{conn}");
    assert_eq!(conn["server_to_client"]["end"], "closed by the server", "{conn}");
    let transcript: Vec<Value> = std::fs::read_to_string(out.join("recorded/conn-000001.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(transcript.len() as u64, count);
    let up = packets(&transcript, "client_to_server");
    let down = packets(&transcript, "server_to_client");
    assert!(up.iter().any(|m| m.id() == "cli-sync-0001"), "the Go client's SendSync was recorded");
    assert!(down.iter().any(|m| m.id() == "srv-big-60k"), "the Go server's 60 KB message was recorded");

    // Every packet Go wrote is one conformance case, and every one passes.
    let checked = beehive().arg("conformance").arg(&out).args(["--json", "-"]).timeout(T).output().unwrap();
    let table = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(0), "{table}");
    assert!(table.contains(&format!("OK: {count} cases passed")), "{table}");
    let report: Value = serde_json::from_slice(&checked.stdout).expect("the JSON summary");
    let recorded = report["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "recorded")
        .unwrap_or_else(|| panic!("no recorded category: {report}"));
    assert_eq!(recorded["skipped"], Value::Null, "{recorded}");
    assert_eq!((recorded["passed"].as_u64(), recorded["failed"].as_u64()), (Some(count), Some(0)), "{recorded}");
}
