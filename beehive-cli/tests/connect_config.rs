//! `listen` and `send` connecting through KubeEdge's socket_module.yaml
//! (`--config`, the very file `beehive serve --config` reads) and through
//! `--tcp`: the entry's address, socket type, buffer size and TLS files are
//! used, flags given override them, and a file without an entry to use is
//! a usage error naming it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{beehive, Running};

/// The longest any single step may take.
const T: Duration = common::STEP;

fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `beehive serve --config CONFIG --echo --json`, once it listens on every server entry.
fn serve(config: &Path, servers: usize) -> Running {
    let mut serve = Running::start("serve", &["serve", "--config", s(config), "--echo", "--json"]);
    for _ in 0..servers {
        serve.line_with("\"listening\"");
    }
    serve
}

/// `beehive send ARGS… --to echo --sync --content CONTENT`.
fn send_sync(args: &[&str], content: &str) -> Output {
    beehive()
        .arg("send")
        .args(args)
        .args(["--to", "echo", "--sync", "--content", content, "--timeout", "5s"])
        .timeout(T)
        .output()
        .unwrap()
}

/// The echo module's answer holds the request's own content.
fn assert_echoed(out: &Output, content: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = stdout.lines().next().unwrap_or_default();
    assert!(line.starts_with("response from "), "{line}");
    assert!(line.ends_with(&format!("{content:?}")), "{line}");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A TCP address nothing listens on (yet).
fn free_tcp_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

#[test]
fn send_and_listen_connect_with_the_file_serve_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = common::socket_module_config(dir.path(), 4096, &["cli", "watcher"]);
    let mut server = serve(&config, 1);

    // No --socket: the client entry of cli gives the address and type.
    let out = send_sync(&["--config", s(&config), "--module", "cli"], "ping");
    assert_echoed(&out, "ping");
    let printed = server.line_with("\"source\":\"cli\"");
    assert!(printed.contains("\"content\":\"ping\""), "{printed}");

    let mut listener = Running::start("listen", &["listen", "--config", s(&config), "--module", "watcher"]);
    let registered = listener.line("the registered line");
    assert!(registered.starts_with(&format!("registered as watcher on unixpacket:{socket};")), "{registered}");
    let event: serde_json::Value = serde_json::from_str(&server.line_with("\"module\":\"watcher\"")).unwrap();
    assert_eq!(event["event"], "registered");
    assert!(listener.interrupt().success());

    // The entry's buffersize is the largest message: a larger one is
    // refused before it is sent (the same server takes it from a client
    // without the file, only to drop it).
    let big = "x".repeat(5000);
    let out = send_sync(&["--config", s(&config), "--module", "cli"], &big);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("exceeds the limit of 4096 bytes"), "{}", stderr(&out));
    assert!(server.interrupt().success());
}

#[test]
fn unix_stream_and_tcp_entries_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let unix = dir.path().join("stream.sock");
    let tcp = free_tcp_address();
    let yaml = format!(
        "- module: streamserver\n  server: true\n  address: {u}\n  sockettype: unix\n\
         - module: tcpserver\n  server: true\n  address: \"{tcp}\"\n  sockettype: tcp\n\
         - module: cli\n  server: false\n  address: {u}\n  sockettype: unix\n\
         - module: tcpcli\n  server: false\n  address: \"{tcp}\"\n  sockettype: tcp\n",
        u = unix.display()
    );
    let config = write(dir.path(), "socket_module.yaml", &yaml);
    let mut server = serve(&config, 2);
    assert_echoed(&send_sync(&["--config", s(&config), "--module", "cli"], "over a unix stream"), "over a unix stream");
    let event: serde_json::Value = serde_json::from_str(&server.line_with("\"module\":\"cli\"")).unwrap();
    assert_eq!(event["endpoint"], format!("unix:{}", unix.display()));
    assert_echoed(&send_sync(&["--config", s(&config), "--module", "tcpcli"], "over tcp"), "over tcp");
    let event: serde_json::Value = serde_json::from_str(&server.line_with("\"module\":\"tcpcli\"")).unwrap();
    assert_eq!(event["endpoint"], format!("tcp:{tcp}"));
    assert!(server.interrupt().success());
}

#[test]
fn flags_on_the_command_line_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = common::socket_module_config(dir.path(), 4096, &["cli"]);
    let server = serve(&config, 1);
    // A file whose entry for cli names a TCP address nobody serves.
    let elsewhere = free_tcp_address();
    let other = write(
        dir.path(),
        "elsewhere.yaml",
        &format!("- module: cli\n  server: false\n  address: \"{elsewhere}\"\n  sockettype: tcp\n"),
    );
    let out = send_sync(&["--config", s(&other), "--module", "cli"], "x");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains(&format!("cannot connect to {elsewhere} (tcp:{elsewhere})")), "{}", stderr(&out));
    // --socket replaces the address only: the entry's sockettype stays.
    let out = send_sync(&["--config", s(&other), "--module", "cli", "--socket", &socket], "x");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains(&format!("(tcp:{socket})")), "{}", stderr(&out));
    // With --transport too, the server is reached.
    let args = ["--config", s(&other), "--module", "cli", "--socket", &socket, "--transport", "unixpacket"];
    assert_echoed(&send_sync(&args, "overridden"), "overridden");
    // And listen takes the same flags.
    let mut listener = Running::start("listen", &[&["listen"][..], &args].concat());
    let registered = listener.line("the registered line");
    assert!(registered.starts_with(&format!("registered as cli on unixpacket:{socket};")), "{registered}");
    assert!(listener.interrupt().success());
    assert!(server.interrupt().success());
}

#[test]
fn without_a_client_entry_the_first_server_entry_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = common::socket_module_config(dir.path(), 4096, &["cli"]);
    let server = serve(&config, 1);
    // Only the server entry: its address is where to connect.
    let server_only = write(
        dir.path(),
        "server-only.yaml",
        &format!("- module: socketserver\n  server: true\n  address: {socket}\n  sockettype: unixpacket\n"),
    );
    assert_echoed(
        &send_sync(&["--config", s(&server_only), "--module", "cli"], "via the server entry"),
        "via the server entry",
    );
    // A file with client entries, none of them cli's: the server entry is
    // used all the same, with a warning.
    let others = write(
        dir.path(),
        "others.yaml",
        &format!(
            "- module: someone\n  server: false\n  address: /nonexistent.sock\n\
             - module: socketserver\n  server: true\n  address: {socket}\n"
        ),
    );
    let out = send_sync(&["--config", s(&others), "--module", "cli"], "warned");
    assert_echoed(&out, "warned");
    assert!(stderr(&out).contains("has no client entry for module \"cli\""), "{}", stderr(&out));
    assert!(server.interrupt().success());
}

#[test]
fn a_config_without_an_entry_to_use_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.yaml");
    let others = write(dir.path(), "others.yaml", "- module: someone\n  server: false\n  address: /tmp/x.sock\n");
    let empty = write(dir.path(), "empty.yaml", "[]\n");
    let no_address = write(dir.path(), "no-address.yaml", "- module: cli\n  server: false\n");
    let bad_type = write(dir.path(), "bad-type.yaml", "- module: cli\n  address: /tmp/x.sock\n  sockettype: udp\n");
    let cases = [
        (&missing, "cannot read socket config"),
        (&others, "has no client entry (server: false) for module \"cli\" and no server entry"),
        (&empty, "has no client entry (server: false) for module \"cli\" and no server entry"),
        (&no_address, "has no address: give --socket or --tcp"),
        (&bad_type, "has sockettype \"udp\""),
    ];
    for (file, why) in cases {
        for sub in ["send", "listen"] {
            let out = beehive()
                .args([sub, "--config", s(file), "--module", "cli"])
                .args(if sub == "send" { &["--to", "echo"][..] } else { &[] })
                .timeout(T)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{sub} {file:?}: {out:?}");
            let err = stderr(&out);
            assert!(err.starts_with("beehive: error: "), "{sub}: {err}");
            assert!(err.contains(s(file)), "{sub}: the file is named: {err}");
            assert!(err.contains(why), "{sub} {file:?}: {err}");
        }
    }
    // Neither --socket, --tcp nor --config: clap's usage error.
    let out = beehive().args(["send", "--module", "cli", "--to", "echo"]).timeout(T).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--socket <PATH>"), "{}", stderr(&out));
}

#[test]
fn tcp_is_short_for_socket_and_transport_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let address = free_tcp_address();
    let yaml = format!(
        "- module: socketserver\n  server: true\n  address: \"{address}\"\n  sockettype: tcp\n\
         - module: cli\n  server: false\n  address: \"{address}\"\n  sockettype: tcp\n"
    );
    let config = write(dir.path(), "socket_module.yaml", &yaml);
    let server = serve(&config, 1);
    assert_echoed(&send_sync(&["--tcp", &address, "--module", "cli"], "short"), "short");
    let mut listener = Running::start("listen", &["listen", "--tcp", &address, "--module", "cli"]);
    let registered = listener.line("the registered line");
    assert!(registered.starts_with(&format!("registered as cli on tcp:{address};")), "{registered}");
    assert!(listener.interrupt().success());
    // --tcp replaces both the address and the socket type of a file's entry.
    let unix_entry = write(dir.path(), "unix.yaml", "- module: cli\n  server: false\n  address: /nonexistent.sock\n");
    assert_echoed(&send_sync(&["--config", s(&unix_entry), "--tcp", &address, "--module", "cli"], "over"), "over");
    // It is a HOST:PORT, and it goes with neither --socket nor --transport.
    for bad in [
        &["--tcp", "127.0.0.1"][..],
        &["--tcp", &address, "--socket", &address],
        &["--tcp", &address, "--transport", "tcp"],
    ] {
        let out = send_sync(&[bad, &["--module", "cli"][..]].concat(), "x");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert!(stderr(&out).contains("--tcp"), "{bad:?}: {}", stderr(&out));
    }
    assert!(server.interrupt().success());
}

#[test]
fn tls_files_come_from_the_client_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::server_pki(dir.path());
    let address = free_tcp_address();
    let server_entry = format!(
        "- module: socketserver\n  server: true\n  address: \"{address}\"\n  sockettype: tcp\n  cert: {}\n  key: {}\n",
        cert.display(),
        key.display()
    );
    let yaml = format!(
        "{server_entry}- module: cli\n  server: false\n  address: \"{address}\"\n  sockettype: tcp\n  ca: {}\n",
        ca.display()
    );
    let config = write(dir.path(), "socket_module.yaml", &yaml);
    let server = serve(&config, 1);
    // The client entry's ca verifies the server.
    assert_echoed(&send_sync(&["--config", s(&config), "--module", "cli"], "secret"), "secret");
    // A server entry's cert and key are the server's own: without a client
    // entry, TLS needs --ca, which a flag gives.
    let server_only = write(dir.path(), "server-only.yaml", &server_entry);
    let out = send_sync(&["--config", s(&server_only), "--module", "cli"], "x");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains(s(&server_only)) && err.contains("serves TLS") && err.contains("--ca"), "{err}");
    let out = send_sync(&["--config", s(&server_only), "--module", "cli", "--ca", s(&ca)], "flagged");
    assert_echoed(&out, "flagged");
    // The file's TLS files on a socket type overridden to unixpacket.
    let out = send_sync(&["--config", s(&config), "--module", "cli", "--transport", "unixpacket"], "x");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("need the tcp transport"), "{}", stderr(&out));
    assert!(server.interrupt().success());
}
