//! Both drivers (tokio and blocking) against KubeEdge's Go beehive, live over unixpacket.
//!
//! Runs only when `GOPEER` names the Go peer binary (`gopeer server` and
//! `gopeer client`, driving the unmodified Go beehive and reporting JSON
//! lines); otherwise each test prints why it is skipped and returns.
//! The scenario messages (ids, routes, contents, timestamp) are the ones
//! the Go peer builds and checks.
#![cfg(feature = "tokio")]

mod common;
use common::temp_dir;
use gopeer_report::{gopeer, Report, GO_OWN_SYNC, GO_RACE};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use beehive_context::{ContextError, Hive, SimpleAsyncModule};
use beehive_model::Message;
use beehive_socket::asyncio::{
    Client, ConnectOptions, DriverError, Endpoint, Server, ServerEvent, ServerEvents, ServerOptions, SocketBackend,
};
use beehive_socket::session::{SessionConfig, SessionError, TransportKind};

const T: Duration = Duration::from_secs(20);
const TIMESTAMP: i64 = 1_700_000_000_000;
/// Go's text with HTML characters, U+2028/U+2029, quotes, controls, astral.
const UNI_TEXT: &str = "h\u{e9}llo \u{2603} \u{1F600} <b>&amp;</b> \u{2028}\u{2029} \"q\" \\ \t\n \x01 end";
/// gopeer's buffersize.
const GO_BUFFER: usize = 4 << 20;

fn big(n: usize) -> String {
    "abcdefghijklmnopqrstuvwxyz012345".repeat(n / 32 + 1)[..n].to_owned()
}

/// The scenario message `id` from `source`, as gopeer's spec builds it.
fn spec(id: &str, source: &str) -> Message {
    let (group, resource, operation, content) = match id {
        "cli-uni-0001" => ("cligroup", "res/cli-uni", "insert", UNI_TEXT.to_owned()),
        "cli-big-60k" => ("cligroup", "res/cli-big", "update", big(60 * 1024)),
        "cli-big-2m" => ("cligroup", "res/cli-big", "update", big(2 * 1024 * 1024)),
        "cli-tail-0001" => ("cligroup", "res/cli-tail", "insert", "tail".to_owned()),
        id if id == "cli-sync-0001" || id.starts_with("cli-loop-") => {
            ("cligroup", "res/cli-sync", "query", "ping".to_owned())
        }
        "srv-uni-0001" => ("hubgroup", "res/srv-uni", "insert", UNI_TEXT.to_owned()),
        "srv-big-60k" => ("hubgroup", "res/srv-big", "update", big(60 * 1024)),
        "srv-big-2m" => ("hubgroup", "res/srv-big", "update", big(2 * 1024 * 1024)),
        "srv-sync-0001" => ("hubgroup", "res/srv-sync", "query", "are you there?".to_owned()),
        "srv-tail-0001" => ("hubgroup", "res/srv-tail", "insert", "tail".to_owned()),
        other => panic!("no spec for {other}"),
    };
    Message::raw().build_header(id, "", TIMESTAMP).build_router(source, group, resource, operation).fill_body(content)
}

struct Peer {
    child: Child,
    report: PathBuf,
}

impl Peer {
    fn start(bin: &Path, args: &[&str], report: PathBuf) -> Peer {
        let child = Command::new(bin)
            .args(args)
            .arg("--report")
            .arg(&report)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start GOPEER");
        Peer { child, report }
    }

    /// Waits for the peer to exit (bounded); its report.
    async fn finish(mut self) -> Report {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the Go peer did not exit within {T:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Report::read(&self.report)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Collects messages from `rx` until the Go server's last one
/// (`srv-tail-0001`), within the bound.
async fn until_tail(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Message>) -> (BTreeMap<String, Message>, bool) {
    let mut got = BTreeMap::new();
    let waited = tokio::time::timeout(T, async {
        while let Some(m) = rx.recv().await {
            let id = m.id().to_owned();
            got.insert(id.clone(), m);
            if id == "srv-tail-0001" {
                return true;
            }
        }
        false
    })
    .await;
    (got, matches!(waited, Ok(true)))
}

/// The checks of what the Go server sends its client `edgeclient`, as
/// (what, passed, detail).
fn go_server_messages(got: &BTreeMap<String, Message>, tail: bool) -> Vec<(String, bool, String)> {
    let mut out = vec![("connection up until srv-tail-0001".to_owned(), tail, String::new())];
    for id in ["srv-send-0001", "srv-uni-0001", "srv-big-60k", "srv-group-0001", "srv-sync-0001", "srv-tail-0001"] {
        let m = got.get(id);
        let ok = match (id, m) {
            (_, None) => false,
            ("srv-uni-0001", Some(m)) => m.content().as_str() == Some(UNI_TEXT),
            ("srv-big-60k", Some(m)) => m.content().as_str() == Some(big(60 * 1024).as_str()),
            (_, Some(m)) => m.source() == "hub" && m.destination() == "edgeclient",
        };
        out.push((format!("received {id}"), ok, format!("{:?}", m.map(|m| m.route().clone()))));
    }
    out.push(("srv-big-2m not delivered (Go's write fails)".into(), !got.contains_key("srv-big-2m"), String::new()));
    out
}

/// The Go server's own scenarios with a client `edgeclient`: each must
/// pass, and nothing else fail but its server-side SendSync, which Go never
/// matches (with a Go client as well). Returns whether all held.
fn go_server_report(report: &Report, rows: &mut Vec<(String, String)>) -> bool {
    let mut all = true;
    for scenario in [
        "srv.registered:edgeclient",
        "srv.recv:cli-uni-0001",
        "srv.recv:cli-big-60k",
        "srv.recv:cli-sync-0001",
        "srv.recv:cli-tail-0001",
    ] {
        all &= expect_go(report, scenario, rows);
    }
    let known = "srv.sendsync:srv-sync-0001";
    let r = report.last(known).map_or("missing", |row| row.result.as_str());
    rows.push((format!("go {known} (Go never matches it)"), format!("{r} (expected fail)")));
    let fails = report.failing_besides(&[known]);
    rows.push((
        "go: no failing scenario".into(),
        if fails.is_empty() { "pass".into() } else { format!("fail: {fails:?}") },
    ));
    all && fails.is_empty()
}

/// The Go client `edgeclient` connected to our server, which saw it, and it
/// reported its handshake (it takes the answer before anything else), as
/// (what, passed, detail).
async fn go_client_joined(events: &mut ServerEvents, report: &Path) -> Vec<(String, bool, String)> {
    let registered = tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Some(ServerEvent::Connected { module, .. }) if module == "edgeclient" => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    vec![
        ("Go client registered".into(), matches!(registered, Ok(true)), format!("{registered:?}")),
        ("Go client reports its handshake".into(), reported(report, "cli.handshake").await, String::new()),
    ]
}

/// The Go client's own scenarios against our server: each must pass, its
/// 2 MB message never arrives (Go's write fails), and nothing else fails
/// but its answer to the server's SendSync, which panics inside Go's
/// client (with a Go server as well). Returns whether all held.
fn go_client_report(report: &Report, rows: &mut Vec<(String, String)>) -> bool {
    let mut all = true;
    for scenario in [
        "cli.handshake",
        "cli.recv:srv-uni-0001",
        "cli.recv:srv-big-60k",
        "cli.recv:srv-sync-0001",
        "cli.recv:srv-tail-0001",
        "cli.echo:cli-send-0001",
        "cli.echo:cli-uni-0001",
        "cli.echo:cli-big-60k",
        "cli.sendsync:cli-sync-0001",
        "cli.echo:cli-tail-0001",
    ] {
        if scenario == GO_OWN_SYNC && report.lost_to_go_race() {
            rows.push((format!("go {scenario}"), GO_RACE.into()));
            continue;
        }
        all &= expect_go(report, scenario, rows);
    }
    let big = report.has("cli.echo:cli-big-2m");
    rows.push((
        "go cli-big-2m never arrives (Go's write fails)".into(),
        if big { "fail: it arrived".into() } else { "pass".into() },
    ));
    let known = "cli.answer:srv-sync-0001";
    let (r, detail) = report.last(known).map_or(("missing", ""), |row| (&row.result, &row.detail));
    rows.push((format!("go {known}"), format!("{r}: {detail} (expected)")));
    let expected: &[&str] = if report.lost_to_go_race() { &[known, GO_OWN_SYNC] } else { &[known] };
    let fails = report.failing_besides(expected);
    rows.push((
        "go: no failing scenario".into(),
        if fails.is_empty() { "pass".into() } else { format!("fail: {fails:?}") },
    ));
    all && !big && fails.is_empty()
}

fn print_matrix(title: &str, rows: &[(String, String)]) {
    println!("{title}");
    for (scenario, result) in rows {
        println!("  {scenario:<40} {result}");
    }
}

fn expect_go(report: &Report, scenario: &str, rows: &mut Vec<(String, String)>) -> bool {
    let (result, detail) =
        report.last(scenario).map_or(("missing".into(), String::new()), |r| (r.result.clone(), r.detail.clone()));
    let ok = result == "pass";
    rows.push((format!("go {scenario}"), if ok { result } else { format!("{result}: {detail}") }));
    ok
}

#[tokio::test]
async fn async_client_against_the_go_server() {
    let Some(bin) = gopeer() else { return };
    let dir = temp_dir("client");
    let path = dir.join("go.sock");
    let p = path.to_str().unwrap();
    let peer = Peer::start(
        &bin,
        &["server", "--socket", p, "--allow", "edgeclient", "--duration", "11s"],
        dir.join("r.jsonl"),
    );
    let endpoint = Endpoint::unix_packet(&path);
    let config = SessionConfig::client("edgeclient", TransportKind::Packet).max_frame_len(GO_BUFFER);
    let client = tokio::time::timeout(T, async {
        loop {
            match Client::connect(&endpoint, config.clone()).await {
                Ok(c) => return c,
                Err(DriverError::Io(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("connect: {e}"),
            }
        }
    })
    .await
    .expect("the Go server did not come up");
    let mut rows = vec![("rust handshake".to_owned(), "pass".to_owned())];
    let (ch, mut messages, _events) = client.into_parts();
    assert!(ch.modules().contains_key("hub"), "{:?}", ch.modules());
    // Our module records what arrives. It does not answer the Go server's
    // request: Go's server never hands a reply to its waiter, and a reply
    // (whose source is the server's module "hub", which has no client
    // entry) makes it close the connection. Go's own client cannot answer
    // either (it panics).
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let answerer = tokio::spawn(async move {
        while let Some(m) = messages.recv().await {
            let _ = seen_tx.send(m);
        }
    });
    let mut check = |what: &str, ok: bool, detail: String| {
        rows.push((format!("rust {what}"), if ok { "pass".into() } else { format!("fail: {detail}") }));
        ok
    };
    let mut all = true;
    for id in ["cli-uni-0001", "cli-big-60k"] {
        let r = ch.send("hub", spec(id, "edgeclient")).await;
        all &= check(&format!("send {id}"), r.is_ok(), format!("{r:?}"));
    }
    let r = ch.send_sync("hub", spec("cli-sync-0001", "edgeclient"), Duration::from_secs(5)).await;
    let ok = matches!(&r, Ok(m) if m.content().as_str() == Some("pong:cli-sync-0001:by:hub"));
    all &= check("send_sync cli-sync-0001", ok, format!("{r:?}"));
    let r = ch.send("hub", spec("cli-big-2m", "edgeclient")).await;
    let ok = matches!(r, Err(DriverError::Session(SessionError::MessageTooLarge { .. })));
    all &= check("send cli-big-2m refused (MessageTooLarge)", ok, format!("{r:?}"));
    let r = ch.send("hub", spec("cli-tail-0001", "edgeclient")).await;
    all &= check("send cli-tail-0001 after the 2 MB refusal", r.is_ok(), format!("{r:?}"));
    let r = ch.send_sync("hub", spec("cli-loop-0001", "edgeclient"), Duration::from_secs(5)).await;
    let ok = matches!(&r, Ok(m) if m.content().as_str() == Some("pong:cli-loop-0001:by:hub"));
    all &= check("send_sync after the 2 MB refusal", ok, format!("{r:?}"));
    // What the Go server sends us, up to its last message.
    let (got, tail) = until_tail(&mut seen).await;
    for (what, ok, detail) in go_server_messages(&got, tail) {
        all &= check(&what, ok, detail);
    }
    let report = peer.finish().await;
    answerer.abort();
    all &= go_server_report(&report, &mut rows);
    print_matrix("async client <-> Go server (gopeer server)", &rows);
    assert!(all, "see the matrix above");
}

#[tokio::test]
async fn the_go_client_against_the_async_server() {
    let Some(bin) = gopeer() else { return };
    let dir = temp_dir("server");
    let path = dir.join("rs.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let config = SessionConfig::server("socketserver", TransportKind::Packet)
        .local_module("hub", "hubgroup")
        .max_frame_len(GO_BUFFER);
    let server = Server::bind(&endpoint, config, ServerOptions::default()).await.unwrap();
    let (sh, mut incoming, mut events) = server.into_parts();
    // Go's server: every message goes to its destination; "hub" answers requests.
    let relay = {
        let sh = sh.clone();
        tokio::spawn(async move {
            let mut to_hub = BTreeSet::new();
            while let Some(i) = incoming.recv().await {
                let m = i.message;
                let dest = m.destination().to_owned();
                if dest == "hub" {
                    to_hub.insert(m.id().to_owned());
                    if m.is_sync() {
                        let body = format!("pong:{}:by:hub", m.id());
                        let _ = sh.send_resp(m.new_response(body)).await;
                    }
                } else if let Err(e) = sh.send_message(&dest, m).await {
                    eprintln!("relay to {dest}: {e}");
                }
            }
            to_hub
        })
    };
    let p = path.to_str().unwrap();
    let report_path = dir.join("r.jsonl");
    let peer = Peer::start(
        &bin,
        &["client", "--socket", p, "--module", "edgeclient", "--peer", "hub", "--duration", "9s"],
        report_path.clone(),
    );
    let mut rows = Vec::new();
    let mut all = true;
    let mut check = |what: &str, ok: bool, detail: String| {
        rows.push((format!("rust {what}"), if ok { "pass".into() } else { format!("fail: {detail}") }));
        ok
    };
    for (what, ok, detail) in go_client_joined(&mut events, &report_path).await {
        all &= check(&what, ok, detail);
    }
    for id in ["srv-uni-0001", "srv-big-60k"] {
        let r = sh.send("edgeclient", spec(id, "hub")).await;
        all &= check(&format!("send {id}"), r.is_ok(), format!("{r:?}"));
    }
    // Go's client panics answering a request from the server (nil pointer
    // in its socket context), so this one times out, as with a Go server.
    let r = sh.send_sync("edgeclient", spec("srv-sync-0001", "hub"), Duration::from_secs(1)).await;
    let ok = matches!(r, Err(DriverError::Timeout(_)));
    all &= check("send_sync srv-sync-0001 times out (Go's client cannot answer)", ok, format!("{r:?}"));
    let r = sh.send("edgeclient", spec("srv-big-2m", "hub")).await;
    let ok = matches!(r, Err(DriverError::Session(SessionError::MessageTooLarge { .. })));
    all &= check("send srv-big-2m refused (MessageTooLarge)", ok, format!("{r:?}"));
    let r = sh.send("edgeclient", spec("srv-tail-0001", "hub")).await;
    all &= check("send srv-tail-0001 after the 2 MB refusal", r.is_ok(), format!("{r:?}"));
    let report = peer.finish().await;
    sh.shutdown();
    let _ = relay.await;
    all &= go_client_report(&report, &mut rows);
    print_matrix("Go client (gopeer client) <-> async server", &rows);
    assert!(all, "see the matrix above");
}

/// Waits (bounded) until the Go peer's report has a line for `scenario`.
async fn reported(report: &Path, scenario: &str) -> bool {
    let deadline = tokio::time::Instant::now() + T;
    let needle = format!("\"scenario\":\"{scenario}\"");
    while tokio::time::Instant::now() < deadline {
        if std::fs::read_to_string(report).is_ok_and(|t| t.contains(&needle)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_client_against_a_hive_served_by_the_socket_backend() {
    let Some(bin) = gopeer() else { return };
    let dir = temp_dir("hive");
    let path = dir.join("rs.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
    let backend = SocketBackend::new();
    hive.add_backend(backend.clone());
    // The hive's module `hub` answers requests as gopeer's server does.
    hive.register_async(SimpleAsyncModule::new("hub", "hubgroup", |hive: Hive| async move {
        while let Ok(m) = hive.receive_async("hub").await {
            if m.is_sync() {
                let body = format!("pong:{}:by:hub", m.id());
                hive.send_resp_async(m.new_response(body)).await?;
            }
        }
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    let config = SessionConfig::server("socketserver", TransportKind::Packet).max_frame_len(GO_BUFFER);
    let mut server = backend.serve(&hive, &endpoint, config, ServerOptions::default()).await.unwrap();
    let p = path.to_str().unwrap();
    let report_path = dir.join("r.jsonl");
    let peer = Peer::start(
        &bin,
        &["client", "--socket", p, "--module", "edgeclient", "--peer", "hub", "--duration", "9s"],
        report_path.clone(),
    );
    let mut rows = Vec::new();
    let mut all = true;
    let mut check = |what: &str, ok: bool, detail: String| {
        rows.push((format!("rust {what}"), if ok { "pass".into() } else { format!("fail: {detail}") }));
        ok
    };
    for (what, ok, detail) in go_client_joined(server.events(), &report_path).await {
        all &= check(&what, ok, detail);
    }
    for id in ["srv-uni-0001", "srv-big-60k"] {
        let r = hive.send_async("edgeclient", spec(id, "hub")).await;
        all &= check(&format!("hive.send {id}"), r.is_ok(), format!("{r:?}"));
    }
    // Go's client cannot answer a request from its server (see above).
    let r = hive.send_sync_async("edgeclient", spec("srv-sync-0001", "hub"), Duration::from_secs(1)).await;
    let ok = matches!(r, Err(ContextError::ResponseTimeout { .. }));
    all &= check("hive.send_sync srv-sync-0001 times out (Go's client cannot answer)", ok, format!("{r:?}"));
    let r = hive.send_async("edgeclient", spec("srv-big-2m", "hub")).await;
    let too_large = |e: &ContextError| match e {
        ContextError::Remote { source, .. } => matches!(
            source.downcast_ref::<DriverError>(),
            Some(DriverError::Session(SessionError::MessageTooLarge { .. }))
        ),
        _ => false,
    };
    all &= check("hive.send srv-big-2m refused (MessageTooLarge)", r.as_ref().is_err_and(too_large), format!("{r:?}"));
    let r = hive.send_async("edgeclient", spec("srv-tail-0001", "hub")).await;
    all &= check("hive.send srv-tail-0001 after the 2 MB refusal", r.is_ok(), format!("{r:?}"));
    let report = peer.finish().await;
    server.shutdown();
    all &= go_client_report(&report, &mut rows);
    print_matrix("Go client (gopeer client) <-> hive served by SocketBackend", &rows);
    hive.shutdown_async(T).await;
    assert!(all, "see the matrix above");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hive_joins_the_go_server_through_the_socket_backend() {
    let Some(bin) = gopeer() else { return };
    let dir = temp_dir("hive-client");
    let path = dir.join("go.sock");
    let p = path.to_str().unwrap();
    let peer = Peer::start(
        &bin,
        &["server", "--socket", p, "--allow", "edgeclient", "--duration", "11s"],
        dir.join("r.jsonl"),
    );
    let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
    let backend = SocketBackend::new();
    hive.add_backend(backend.clone());
    let endpoint = Endpoint::unix_packet(&path);
    let config = SessionConfig::client("edgeclient", TransportKind::Packet).max_frame_len(GO_BUFFER);
    let _client = tokio::time::timeout(T, async {
        loop {
            match backend.connect(&hive, &endpoint, config.clone(), ConnectOptions::default()).await {
                Ok(c) => return c,
                Err(DriverError::Io(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("connect: {e}"),
            }
        }
    })
    .await
    .expect("the Go server did not come up");
    let mut rows = vec![("rust handshake".to_owned(), "pass".to_owned())];
    let mut check = |what: &str, ok: bool, detail: String| {
        rows.push((format!("rust {what}"), if ok { "pass".into() } else { format!("fail: {detail}") }));
        ok
    };
    let mut all = check("hub reachable by name", backend.remote_modules().contains(&"hub".to_owned()), String::new());
    for id in ["cli-uni-0001", "cli-big-60k"] {
        let r = hive.send_async("hub", spec(id, "edgeclient")).await;
        all &= check(&format!("hive.send {id}"), r.is_ok(), format!("{r:?}"));
    }
    let r = hive.send_sync_async("hub", spec("cli-sync-0001", "edgeclient"), Duration::from_secs(5)).await;
    let ok = matches!(&r, Ok(m) if m.content().as_str() == Some("pong:cli-sync-0001:by:hub"));
    all &= check("hive.send_sync cli-sync-0001", ok, format!("{r:?}"));
    let r = hive.send_async("hub", spec("cli-big-2m", "edgeclient")).await;
    all &= check("hive.send cli-big-2m refused", matches!(r, Err(ContextError::Remote { .. })), format!("{r:?}"));
    // From a thread outside the runtime, with the blocking calls.
    let h = hive.clone();
    let r = tokio::task::spawn_blocking(move || {
        h.send("hub", spec("cli-tail-0001", "edgeclient"))?;
        h.send_sync("hub", spec("cli-loop-0001", "edgeclient"), Duration::from_secs(5))
    })
    .await
    .unwrap();
    let ok = matches!(&r, Ok(m) if m.content().as_str() == Some("pong:cli-loop-0001:by:hub"));
    all &= check("blocking send and send_sync after the 2 MB refusal", ok, format!("{r:?}"));
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let h = hive.clone();
    let taker = tokio::spawn(async move {
        while let Ok(m) = h.receive_async("edgeclient").await {
            if seen_tx.send(m).is_err() {
                return;
            }
        }
    });
    let (got, tail) = until_tail(&mut seen).await;
    taker.abort();
    for (what, ok, detail) in go_server_messages(&got, tail) {
        all &= check(&format!("{what} (in the hive)"), ok, detail);
    }
    let report = peer.finish().await;
    all &= go_server_report(&report, &mut rows);
    print_matrix("hive joined through SocketBackend::connect <-> Go server (gopeer server)", &rows);
    hive.shutdown_async(T).await;
    assert!(all, "see the matrix above");
}

// ---- the blocking driver against the Go peer ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_against_the_go_server() {
    use beehive_socket::blocking;

    let Some(bin) = gopeer() else { return };
    let dir = temp_dir("bl-client");
    let path = dir.join("go.sock");
    let p = path.to_str().unwrap();
    let peer = Peer::start(
        &bin,
        &["server", "--socket", p, "--allow", "edgeclient", "--duration", "11s"],
        dir.join("r.jsonl"),
    );
    let endpoint = blocking::Endpoint::unix_packet(&path);
    let config = SessionConfig::client("edgeclient", TransportKind::Packet).max_frame_len(GO_BUFFER);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (rows_tx, rows_rx) = std::sync::mpsc::channel();
    // The blocking client on a thread of its own, as a program without a
    // runtime runs it; what arrives goes to `seen`.
    let client_thread = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + T;
        let client = loop {
            match blocking::Client::connect(&endpoint, config.clone()) {
                Ok(c) => break c,
                Err(DriverError::Io(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        let client = std::sync::Arc::new(client);
        assert!(client.modules().contains_key("hub"), "{:?}", client.modules());
        let reader = {
            let client = std::sync::Arc::clone(&client);
            std::thread::spawn(move || {
                while let Some(m) = client.recv() {
                    if seen_tx.send(m).is_err() {
                        return;
                    }
                }
            })
        };
        let mut rows = vec![("rust handshake".to_owned(), true, String::new())];
        for id in ["cli-uni-0001", "cli-big-60k"] {
            let r = client.send("hub", spec(id, "edgeclient"));
            rows.push((format!("send {id}"), r.is_ok(), format!("{r:?}")));
        }
        let r = client.send_sync("hub", spec("cli-sync-0001", "edgeclient"), Duration::from_secs(5));
        let ok = matches!(&r, Ok(m) if m.content().as_str() == Some("pong:cli-sync-0001:by:hub"));
        rows.push(("send_sync cli-sync-0001".into(), ok, format!("{r:?}")));
        let r = client.send("hub", spec("cli-big-2m", "edgeclient"));
        let ok = matches!(r, Err(DriverError::Session(SessionError::MessageTooLarge { .. })));
        rows.push(("send cli-big-2m refused (MessageTooLarge)".into(), ok, format!("{r:?}")));
        let r = client.send("hub", spec("cli-tail-0001", "edgeclient"));
        rows.push(("send cli-tail-0001 after the 2 MB refusal".into(), r.is_ok(), format!("{r:?}")));
        let r = client.send_sync("hub", spec("cli-loop-0001", "edgeclient"), Duration::from_secs(5));
        let ok = matches!(&r, Ok(m) if m.content().as_str() == Some("pong:cli-loop-0001:by:hub"));
        rows.push(("send_sync after the 2 MB refusal".into(), ok, format!("{r:?}")));
        let _ = rows_tx.send(rows);
        // Up until the Go server closes the connection.
        let _ = client.closed(Some(T));
        let _ = reader.join();
    });
    let mut rows = Vec::new();
    let mut all = true;
    let mut check = |what: &str, ok: bool, detail: String| {
        rows.push((format!("rust {what}"), if ok { "pass".into() } else { format!("fail: {detail}") }));
        ok
    };
    let sent = tokio::task::spawn_blocking(move || rows_rx.recv_timeout(T)).await.unwrap().expect("client rows");
    for (what, ok, detail) in sent {
        all &= check(&what, ok, detail);
    }
    let (got, tail) = until_tail(&mut seen).await;
    for (what, ok, detail) in go_server_messages(&got, tail) {
        all &= check(&what, ok, detail);
    }
    let report = peer.finish().await;
    tokio::task::spawn_blocking(move || client_thread.join()).await.unwrap().unwrap();
    all &= go_server_report(&report, &mut rows);
    print_matrix("blocking client <-> Go server (gopeer server)", &rows);
    assert!(all, "see the matrix above");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_client_against_the_blocking_server() {
    use beehive_socket::blocking;

    let Some(bin) = gopeer() else { return };
    let dir = temp_dir("bl-server");
    let path = dir.join("rs.sock");
    let endpoint = blocking::Endpoint::unix_packet(&path);
    let config = SessionConfig::server("socketserver", TransportKind::Packet)
        .local_module("hub", "hubgroup")
        .max_frame_len(GO_BUFFER);
    // Go's server: every message goes to its destination; "hub" answers
    // requests, on the connection's thread.
    let server =
        blocking::Server::bind_with_handler(&endpoint, config, blocking::ServerOptions::default(), |conn, i| {
            let m = i.message;
            if m.destination() == "hub" {
                if m.is_sync() {
                    let body = format!("pong:{}:by:hub", m.id());
                    let _ = conn.send_resp(m.new_response(body));
                }
            } else if let Err(e) = conn.send_message(m) {
                eprintln!("relay: {e}");
            }
        })
        .unwrap();
    let sh = server.handle().clone();
    let p = path.to_str().unwrap();
    let report_path = dir.join("r.jsonl");
    let peer = Peer::start(
        &bin,
        &["client", "--socket", p, "--module", "edgeclient", "--peer", "hub", "--duration", "9s"],
        report_path.clone(),
    );
    let mut rows = Vec::new();
    let mut all = true;
    let mut check = |what: &str, ok: bool, detail: String| {
        rows.push((format!("rust {what}"), if ok { "pass".into() } else { format!("fail: {detail}") }));
        ok
    };
    let joined = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + T;
        while let Some(e) = server.next_event(Some(deadline.saturating_duration_since(std::time::Instant::now()))) {
            if matches!(&e, ServerEvent::Connected { module, .. } if module == "edgeclient") {
                return (server, true);
            }
        }
        (server, false)
    })
    .await
    .unwrap();
    let (server, registered) = joined;
    all &= check("Go client registered", registered, String::new());
    all &= check("Go client reports its handshake", reported(&report_path, "cli.handshake").await, String::new());
    let sent = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for id in ["srv-uni-0001", "srv-big-60k"] {
            let r = sh.send("edgeclient", spec(id, "hub"));
            out.push((format!("send {id}"), r.is_ok(), format!("{r:?}")));
        }
        // Go's client panics answering a request from the server, so this
        // one times out, as with a Go server.
        let r = sh.send_sync("edgeclient", spec("srv-sync-0001", "hub"), Duration::from_secs(1));
        let ok = matches!(r, Err(DriverError::Timeout(_)));
        out.push(("send_sync srv-sync-0001 times out (Go's client cannot answer)".into(), ok, format!("{r:?}")));
        let r = sh.send("edgeclient", spec("srv-big-2m", "hub"));
        let ok = matches!(r, Err(DriverError::Session(SessionError::MessageTooLarge { .. })));
        out.push(("send srv-big-2m refused (MessageTooLarge)".into(), ok, format!("{r:?}")));
        let r = sh.send("edgeclient", spec("srv-tail-0001", "hub"));
        out.push(("send srv-tail-0001 after the 2 MB refusal".into(), r.is_ok(), format!("{r:?}")));
        out
    })
    .await
    .unwrap();
    for (what, ok, detail) in sent {
        all &= check(&what, ok, detail);
    }
    let report = peer.finish().await;
    drop(server);
    all &= go_client_report(&report, &mut rows);
    print_matrix("Go client (gopeer client) <-> blocking server", &rows);
    assert!(all, "see the matrix above");
}
