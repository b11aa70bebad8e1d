//! `beehive listen` and `beehive send` against an async socket server run
//! by the test: sync round trips both ways, messages printed as they
//! arrive, and a missing socket reported with its path.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{beehive, msg, Hive, Running};

/// The longest any single step may take.
const T: Duration = Duration::from_secs(20);

/// `beehive listen` as module `cli` with `args`, once registered.
fn listener(socket: &str, args: &[&str]) -> Running {
    let mut all = vec!["listen", "--socket", socket, "--module", "cli"];
    all.extend_from_slice(args);
    let mut l = Running::start("listen", &all);
    let first = l.line("the registered line");
    assert!(first.starts_with("registered as cli on unixpacket:"), "{first}");
    assert!(first.contains("srvmod [srvgroup]"), "{first}");
    // A list separated by ", ", ours left out.
    let (_, modules) = first.split_once("; server modules: ").unwrap_or_else(|| panic!("{first}"));
    assert!(modules.split(", ").all(|m| !m.is_empty() && !m.starts_with("cli ")), "{first}");
    l
}

#[test]
fn send_sync_prints_the_servers_response() {
    let hive = Hive::start();
    let out = beehive()
        .args(["send", "--socket", &hive.socket, "--module", "cli", "--to", "srvmod", "--sync", "--timeout", "900ms"])
        .args(["--content", "ping", "--resource", "node/edge-1", "--operation", "query"])
        .timeout(T)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = stdout.lines().next().unwrap_or_default();
    assert!(line.starts_with("response from "), "{line}");
    // The round trip in milliseconds: answered within the 900 ms timeout,
    // and a local round trip takes some microseconds at least.
    let ms: f64 = line.split(" in ").nth(1).and_then(|r| r.split("ms: ").next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(ms > 0.0 && ms < 900.0, "{line}");
    assert!(line.contains("\"re: ping\""), "{line}");
    assert!(line.contains(" response node/edge-1 "), "{line}");
}

#[test]
fn send_without_content_sends_one_message_per_stdin_line() {
    let mut hive = Hive::start();
    let out = beehive()
        .args(["send", "--socket", &hive.socket, "--module", "cli", "--to", "srvmod", "--group", "g"])
        .write_stdin("a\nb\n")
        .timeout(T)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sent 2 messages to srvmod"), "{stderr}");
    for body in ["a", "b"] {
        let got = hive
            .rt
            .block_on(async { tokio::time::timeout(T, hive.others.recv()).await })
            .expect("the server receives the line")
            .expect("the server runs");
        assert_eq!((got.source(), got.group(), got.content().as_str()), ("cli", "g", Some(body)));
    }
}

#[test]
fn send_count_sync_prints_throughput_and_latency() {
    let hive = Hive::start();
    let out = beehive()
        .args(["send", "--socket", &hive.socket, "--module", "cli", "--to", "srvmod", "--sync", "--count", "5"])
        .timeout(T)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("5 messages to srvmod in "), "{stdout}");
    assert!(stdout.contains("msg/s; round trip p50 "), "{stdout}");
    assert!(stdout.contains(" p99 "), "{stdout}");
}

/// A server that stops reading cannot hold `send` up: what was queued
/// gets the flush wait, the user is told, and the command ends.
#[test]
fn send_to_a_server_that_stops_reading_warns_and_ends() {
    let hive = Hive::start_deaf();
    let content = "x".repeat(60 * 1024);
    let out = beehive()
        .args(["send", "--socket", &hive.socket, "--module", "cli", "--to", "srvmod", "--count", "400"])
        .args(["--content", &content])
        .timeout(T)
        .output()
        .unwrap();
    // 400 messages of 60 KiB are more than the socket and the outbound
    // queue (16 MiB) hold: the rest fail at once, each said, and count as
    // failed; the exit status says some failed.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (queued, failed) = stdout
        .split_once(" messages to srvmod in ")
        .and_then(|(n, rest)| Some((n.parse::<u32>().ok()?, rest.split("; ").nth(1)?.strip_suffix(" failed\n")?)))
        .unwrap_or_else(|| panic!("the summary: {stdout}"));
    let failed: u32 = failed.parse().unwrap();
    assert!(queued > 0 && failed > 0 && queued + failed == 400, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().collect();
    let full = warnings.iter().filter(|l| l.contains("to srvmod: outbound queue full")).count();
    assert_eq!(full, failed as usize, "{stderr}");
    // What was queued got the flush wait, and the user is told it may not
    // all have been written.
    let last = warnings.last().copied().unwrap_or_default();
    assert!(last.starts_with("beehive: warning: queued messages may not all be written"), "{last}");
}

#[test]
fn listen_prints_the_messages_it_receives() {
    let mut hive = Hive::start();
    let mut listener = listener(&hive.socket, &["--count", "2"]);
    hive.registered();
    for body in ["first", "second"] {
        hive.rt.block_on(hive.handle.send("cli", msg(body))).expect("the server sends");
    }
    let lines = [listener.line("the first message"), listener.line("the second message")];
    for (line, body) in lines.iter().zip(["first", "second"]) {
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(time.len(), "12:34:56.789".len(), "{line}");
        assert!(rest.starts_with("srvmod → cli update default/pod/nginx "), "{line}");
        assert!(rest.ends_with(&format!("B {body:?}")), "{line}");
    }
    assert!(listener.wait().success());
}

#[test]
fn listen_json_prints_gos_json() {
    let mut hive = Hive::start();
    let mut listen =
        Running::start("listen", &["listen", "--socket", &hive.socket, "--module", "cli", "--json", "--count", "1"]);
    let first: serde_json::Value = serde_json::from_str(&listen.line("registered")).unwrap();
    assert_eq!(first["registered"], "cli");
    assert_eq!(first["modules"]["srvmod"], serde_json::json!(["srvgroup"]));
    hive.registered();
    let sent = msg("hello");
    hive.rt.block_on(hive.handle.send("cli", sent.clone())).unwrap();
    let line = listen.line("the message");
    let got = beehive_model::from_slice(line.as_bytes()).expect("Go's JSON of a message");
    assert_eq!((got.id(), got.content().as_str()), (sent.id(), Some("hello")));
    assert!(listen.wait().success());
}

#[test]
fn listen_answers_sync_requests() {
    let mut hive = Hive::start();
    let mut listener = listener(&hive.socket, &["--answer", "pong", "--count", "1"]);
    hive.registered();
    let request = msg("ping");
    let answer = hive.rt.block_on(hive.handle.send_sync("cli", request, T)).expect("the listener answers");
    assert_eq!(answer.content().as_str(), Some("pong"));
    let line = listener.line("the request");
    assert!(line.ends_with(" sync \"ping\""), "{line}");
    assert!(listener.wait().success());
}

#[test]
fn a_missing_socket_is_a_usage_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let socket = socket.to_str().unwrap();
    for sub in ["send", "listen"] {
        let out = beehive()
            .args([sub, "--socket", socket, "--module", "cli"])
            .args(if sub == "send" { &["--to", "srvmod"][..] } else { &[] })
            .timeout(T)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(socket), "{sub}: {stderr}");
        assert!(!Path::new(socket).exists());
    }
}

#[test]
fn listen_exits_1_when_its_timeout_ends_before_its_count_and_0_without_a_count() {
    let mut hive = Hive::start();
    let short = listener(&hive.socket, &["--count", "5", "--timeout", "300ms"]);
    hive.registered();
    let (status, stderr) = short.wait_with_stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("warning: 0 of 5 messages within 300ms"), "{stderr}");
    let open_ended = listener(&hive.socket, &["--timeout", "300ms"]);
    hive.registered();
    let (status, stderr) = open_ended.wait_with_stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn listen_once_exits_1_when_disconnected_before_its_count() {
    let mut hive = Hive::start();
    let listener = listener(&hive.socket, &["--count", "5", "--once", "--answer", "pong"]);
    hive.registered();
    let answer = hive.rt.block_on(hive.handle.send_sync("cli", msg("ping"), T)).expect("the listener answers");
    assert_eq!(answer.content().as_str(), Some("pong"));
    assert!(hive.handle.disconnect("cli"), "cli is connected");
    let (status, stderr) = listener.wait_with_stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    // Said once, with the count; nothing is flushed to a lost connection.
    assert_eq!(stderr.matches("disconnected from ").count(), 1, "{stderr}");
    assert!(stderr.contains("the peer closed the connection (after 1 messages)"), "{stderr}");
    assert!(!stderr.contains("may not all be written"), "{stderr}");
}
