//! `beehive serve` run as a process, with `beehive send` and `beehive
//! listen` as its remote modules: the echo module answers, the traffic is
//! printed, one remote module reaches another through the hive, modules
//! without a client entry are refused, and SIGINT stops it cleanly.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use beehive_model::Message;
use beehive_socket::asyncio::{Client, Endpoint};
use beehive_socket::session::{SessionConfig, TransportKind};
use common::{beehive, Running};

/// The longest any single step may take.
const T: Duration = common::STEP;

fn config(dir: &Path, clients: &[&str]) -> (PathBuf, String) {
    common::socket_module_config(dir, 4096, clients)
}

fn serve(config: &Path, extra: &[&str]) -> Running {
    let mut args = vec!["serve", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    Running::start("serve", &args)
}

#[test]
fn the_echo_module_answers_send_and_the_request_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = config(dir.path(), &["cli"]);
    let mut server = serve(&config, &["--echo"]);
    let first = server.line("the listening line");
    assert_eq!(first, format!("serving socketserver on unixpacket:{socket}"));

    let out = beehive()
        .args(["send", "--socket", &socket, "--module", "cli", "--to", "echo", "--sync"])
        .args(["--content", "ping", "--resource", "node/edge-1", "--operation", "query"])
        .timeout(T)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = stdout.lines().next().unwrap_or_default();
    assert!(line.starts_with("response from "), "{line}");
    assert!(line.ends_with("\"ping\""), "{line}");

    let printed = server.line_with("cli → echo");
    assert!(printed.contains(" query node/edge-1 4B sync \"ping\""), "{printed}");
    assert!(server.interrupt().success());
}

#[test]
fn one_remote_module_reaches_another_through_the_hive() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = config(dir.path(), &["cli", "watcher"]);
    let mut server = serve(&config, &["--json"]);
    let first: serde_json::Value = serde_json::from_str(&server.line("the listening line")).unwrap();
    assert_eq!(first["event"], "listening");
    assert_eq!(first["endpoint"], format!("unixpacket:{socket}"));

    let mut listener =
        Running::start("listen", &["listen", "--socket", &socket, "--module", "watcher", "--count", "1"]);
    let registered = listener.line("the registered line");
    assert!(registered.starts_with("registered as watcher on "), "{registered}");
    let event: serde_json::Value = serde_json::from_str(&server.line_with("\"registered\"")).unwrap();
    assert_eq!((event["event"].as_str(), event["module"].as_str()), (Some("registered"), Some("watcher")));

    // Go's client sends only to the modules of the handshake answer, which
    // lists the hive's own modules, not other remote ones; a message with
    // another remote module as destination is forwarded all the same.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = rt.block_on(async {
        let endpoint = Endpoint::unix_packet(&socket);
        let client = Client::connect(&endpoint, SessionConfig::client("cli", TransportKind::Packet)).await.unwrap();
        let msg = Message::new("").build_router("cli", "g", "res", "update").fill_body("hello");
        client.handle().send_message(msg.set_destination("watcher")).await.unwrap();
        client
    });
    let got = listener.line("the forwarded message");
    assert!(got.contains("cli → watcher "), "{got}");
    assert!(got.ends_with("\"hello\""), "{got}");
    assert!(listener.wait().success());
    // Each registered module's end is an event with its name.
    let gone: serde_json::Value = serde_json::from_str(&server.line_with("\"disconnected\"")).unwrap();
    assert_eq!(
        (gone["module"].as_str(), gone["endpoint"].as_str()),
        (Some("watcher"), Some(&*format!("unixpacket:{socket}")))
    );
    assert!(gone["reason"].as_str().is_some_and(|r| !r.is_empty()), "{gone}");
    drop(client);
    drop(rt);
    let gone: serde_json::Value = serde_json::from_str(&server.line_with("\"disconnected\"")).unwrap();
    assert_eq!(gone["module"], "cli", "{gone}");
    assert!(server.interrupt().success());
}

#[test]
fn a_module_without_a_client_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = config(dir.path(), &["cli"]);
    let mut server = serve(&config, &["--echo", "--json"]);
    server.line("the listening line");
    let out = beehive()
        .args(["send", "--socket", &socket, "--module", "intruder", "--to", "echo", "--content", "x"])
        .timeout(T)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("intruder"), "{stderr}");
    // The server says the connection closed before registering, by session.
    let gone: serde_json::Value = serde_json::from_str(&server.line_with("\"disconnected\"")).unwrap();
    assert!(gone["session"].as_u64().is_some() && gone.get("module").is_none(), "{gone}");
    assert!(gone["reason"].as_str().is_some_and(|r| r.contains("intruder")), "{gone}");
    assert!(server.interrupt().success());
}

#[test]
fn a_configuration_without_a_server_entry_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socket_module.yaml");
    std::fs::write(&path, "- module: cli\n  server: false\n  address: /tmp/x.sock\n").unwrap();
    let out = beehive().args(["serve", "--config", path.to_str().unwrap()]).timeout(T).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no server entry"), "{stderr}");
}

#[test]
fn serve_speaks_tls_over_tcp_and_send_verifies_it_with_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::server_pki(dir.path());
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let yaml = format!(
        "- module: socketserver\n  server: true\n  address: \"{address}\"\n  sockettype: tcp\n  cert: {}\n  key: {}\n- module: cli\n  server: false\n  address: \"{address}\"\n  sockettype: tcp\n",
        cert.display(),
        key.display()
    );
    let config = dir.path().join("socket_module.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut server = serve(&config, &["--echo"]);
    assert_eq!(server.line("the listening line"), format!("serving socketserver on tcp:{address}"));
    let send = |extra: &[&str]| {
        beehive()
            .args(["send", "--transport", "tcp", "--socket", &address, "--module", "cli", "--to", "echo", "--sync"])
            .args(["--content", "secret", "--timeout", "3s"])
            .args(extra)
            .timeout(T)
            .output()
            .unwrap()
    };
    let out = send(&["--ca", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().ends_with("\"secret\""), "{out:?}");
    // Without TLS the server never sees a registration.
    let out = send(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(server.interrupt().success());
}

#[test]
fn listen_joins_again_after_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = config(dir.path(), &["cli", "watcher"]);
    let mut server = serve(&config, &[]);
    server.line("the listening line");
    let mut listener =
        Running::start("listen", &["listen", "--socket", &socket, "--module", "watcher", "--count", "1"]);
    assert!(listener.line("the registered line").starts_with("registered as watcher on "));
    // The server goes away and comes back.
    assert!(server.interrupt().success());
    let mut server = serve(&config, &[]);
    server.line("the listening line");
    let again = listener.line("the registered line after reconnecting");
    assert!(again.starts_with("registered as watcher on "), "{again}");
    let out = beehive()
        .args(["send", "--socket", &socket, "--module", "cli", "--to", "socketserver", "--content", "x"])
        .timeout(T)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // What cli sends to the server module is not for watcher; a message to
    // watcher comes through the hive from a library client.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = rt.block_on(async {
        let endpoint = Endpoint::unix_packet(&socket);
        let client = Client::connect(&endpoint, SessionConfig::client("cli", TransportKind::Packet)).await.unwrap();
        let msg = Message::new("").build_router("cli", "g", "res", "update").fill_body("after restart");
        client.handle().send_message(msg.set_destination("watcher")).await.unwrap();
        client
    });
    let got = listener.line("the message after reconnecting");
    assert!(got.ends_with("\"after restart\""), "{got}");
    assert!(listener.wait().success());
    drop(client);
    assert!(server.interrupt().success());
}

/// A serve configuration on a unix stream socket (`sockettype: unix`) that
/// lets `cli` in, with frames of at most `buffersize` bytes.
fn stream_config(dir: &Path, buffersize: usize) -> (PathBuf, String) {
    let socket = dir.join("stream.sock").to_str().unwrap().to_owned();
    let entry = |module: &str, server: bool| {
        format!("- module: {module}\n  server: {server}\n  address: {socket}\n  sockettype: unix\n  buffersize: {buffersize}\n")
    };
    let path = dir.join("socket_module.yaml");
    std::fs::write(&path, entry("socketserver", true) + &entry("cli", false)).unwrap();
    (path, socket)
}

fn event(server: &mut Running, kind: &str) -> serde_json::Value {
    let line = server.line_with(&format!("\"event\":\"{kind}\""));
    serde_json::from_str(&line).unwrap()
}

#[test]
fn lines_that_are_not_messages_are_reported_where_they_are_and_the_connection_stays() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = stream_config(dir.path(), 4096);
    let mut server = serve(&config, &["--json"]);
    assert_eq!(event(&mut server, "listening")["endpoint"], format!("unix:{socket}"));

    let mut peer = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let first = "nonsense\n";
    let second = "{\"header\":{\"msg_id\":7}}\n";
    peer.write_all(format!("{first}{second}").as_bytes()).unwrap();
    let a = event(&mut server, "malformed");
    let b = event(&mut server, "malformed");
    assert_eq!(a["session"], b["session"], "{a} {b}");
    // Each is placed inside its own line of the stream.
    let offset = |v: &serde_json::Value| v["offset"].as_u64().unwrap() as usize;
    assert!(offset(&a) < first.len() - 1, "{a}");
    assert!((first.len()..first.len() + second.len() - 1).contains(&offset(&b)), "{b}");
    assert!(b["error"].as_str().is_some_and(|e| e.contains("msg_id")), "{b}");

    // The connection outlived both: it ends when the peer closes it.
    drop(peer);
    let gone = event(&mut server, "disconnected");
    assert_eq!(gone["session"], a["session"], "{gone}");
    assert_eq!(gone["reason"], "the peer closed the connection", "{gone}");
    assert!(server.interrupt().success());
}

#[test]
fn a_line_over_the_frame_limit_ends_the_connection_and_says_where() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = stream_config(dir.path(), 64);
    let mut server = serve(&config, &[]);
    assert_eq!(server.line("the listening line"), format!("serving socketserver on unix:{socket}"));

    let mut peer = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let short = "not a message\n";
    peer.write_all(short.as_bytes()).unwrap();
    peer.write_all(&[b'x'; 200]).unwrap();
    // The server closes the connection: the peer reads its end.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut peer, &mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let (status, stderr) = server.interrupt_with_stderr();
    assert!(status.success(), "{stderr}");
    // Without --json the events are lines on stderr.
    let skipped = stderr.lines().find(|l| l.contains("skipped input that is not a message")).unwrap_or_default();
    assert!(skipped.contains("at byte "), "{stderr}");
    let closed = stderr.lines().find(|l| l.contains("closed before registering")).unwrap_or_default();
    assert!(closed.contains(&format!("malformed stream at byte {}", short.len())), "{stderr}");
}
