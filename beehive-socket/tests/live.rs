//! A Rust server and a Rust client over a real unixpacket socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use beehive_context::{ContextError, Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::{ClientOptions, SocketClient, SocketContext, SocketModuleConfig, SocketServer};

const T: Duration = Duration::from_secs(10);

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("beehive-socket-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(path: &std::path::Path, buffer: usize, conn_max: usize) -> SocketModuleConfig {
    SocketModuleConfig::from_yaml(&format!(
        "- module: socketserver\n  server: true\n  address: {p}\n  sockettype: unixpacket\n  connmax: {conn_max}\n  buffersize: {buffer}\n- module: edgeclient\n  server: false\n  address: {p}\n  sockettype: unixpacket\n  buffersize: {buffer}\n",
        p = path.display()
    ))
    .unwrap()
}

struct Pair {
    server_hive: Hive,
    client_hive: Hive,
    server: SocketServer,
    client: SocketClient,
}

fn pair(tag: &str) -> Pair {
    let dir = temp_dir(tag);
    let cfg = config(&dir.join("server.sock"), 4096, 4);
    let server_hive = Hive::new();
    let sctx = Arc::new(SocketContext::new());
    server_hive.add_backend(sctx.clone());
    // A server-side module answering sync requests with "re: <body>".
    server_hive
        .register(SimpleModule::new("srvmod", "srvgroup", |hive: &Hive| {
            while let Ok(m) = hive.receive("srvmod") {
                if m.is_sync() {
                    let body = format!("re: {}", m.content().as_str().unwrap_or_default());
                    hive.send_resp(m.new_response(body))?;
                }
            }
            Ok(())
        }))
        .unwrap();
    server_hive.start().unwrap();
    let server = SocketServer::start(&server_hive, &sctx, &cfg, cfg.servers().next().unwrap()).unwrap();
    let client_hive = Hive::new();
    let cctx = Arc::new(SocketContext::new());
    client_hive.add_backend(cctx.clone());
    let client =
        SocketClient::start(&client_hive, &cctx, cfg.client("edgeclient").unwrap(), ClientOptions::default()).unwrap();
    assert!(client.wait_connected(1, T), "no handshake");
    Pair { server_hive, client_hive, server, client }
}

fn msg(source: &str, body: &str) -> Message {
    Message::new("").build_router(source, "grp", "res", "update").fill_body(body)
}

#[test]
fn handshake_then_messages_both_ways() {
    let p = pair("both");
    // Client -> server-side module, async.
    p.client_hive.send("srvmod", msg("edgeclient", "hello")).unwrap();
    // Client -> server-side module, sync.
    let resp = p.client_hive.send_sync("srvmod", msg("edgeclient", "ping"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("re: ping"));
    // Server -> remote module.
    p.server_hive.send("edgeclient", msg("srvmod", "to the edge")).unwrap();
    let got = p.client_hive.receive_timeout("edgeclient", T).unwrap().unwrap();
    assert_eq!(got.content().as_str(), Some("to the edge"));
    assert_eq!((got.destination(), got.message_type()), ("edgeclient", "unixpacket"));
    // Server -> group of the remote module (Go: the group named after it).
    p.server_hive.send_to_group("edgeclient", msg("srvmod", "group")).unwrap();
    let got = p.client_hive.receive_timeout("edgeclient", T).unwrap().unwrap();
    assert_eq!(got.content().as_str(), Some("group"));
    drop(p.server);
}

#[test]
fn server_side_send_sync_to_a_remote_module_gets_its_answer() {
    // Go's server never hands replies to its waiter, so this always times out there.
    let p = pair("srvsync");
    let ch = p.client_hive.clone();
    std::thread::spawn(move || {
        while let Ok(Some(m)) = ch.receive_timeout("edgeclient", T) {
            if m.is_sync() {
                ch.send_resp(m.new_response("from the edge")).unwrap();
            }
        }
    });
    for source in ["srvmod", "srvdriver"] {
        let resp = p.server_hive.send_sync("edgeclient", msg(source, "question"), T).unwrap();
        assert_eq!(resp.content().as_str(), Some("from the edge"), "{source}");
    }
}

#[test]
fn the_client_reconnects_and_registers_again_after_the_server_restarts() {
    let dir = temp_dir("restart");
    let cfg = config(&dir.join("server.sock"), 4096, 4);
    let start_server = |hive: &Hive| {
        let ctx = Arc::new(SocketContext::new());
        hive.add_backend(ctx.clone());
        SocketServer::start(hive, &ctx, &cfg, cfg.servers().next().unwrap()).unwrap()
    };
    let hive1 = Hive::new();
    let mut server = start_server(&hive1);
    let client_hive = Hive::new();
    let cctx = Arc::new(SocketContext::new());
    client_hive.add_backend(cctx.clone());
    let options = ClientOptions { retry_interval: Duration::from_millis(20), ..ClientOptions::default() };
    let client = SocketClient::start(&client_hive, &cctx, cfg.client("edgeclient").unwrap(), options).unwrap();
    assert!(client.wait_connected(1, T));
    server.stop();
    drop(server);
    // While the server is down, sends to the remote side fail: nothing is lost silently.
    let hive2 = Hive::new();
    hive2.add_module("sink", "channel").unwrap();
    let _server = start_server(&hive2);
    assert!(client.wait_connected(2, T), "no second handshake");
    hive2.send("edgeclient", msg("sink", "after restart")).unwrap();
    let got = client_hive.receive_timeout("edgeclient", T).unwrap().unwrap();
    assert_eq!(got.content().as_str(), Some("after restart"));
    client_hive.request_shutdown();
}

#[test]
fn a_send_on_a_dead_connection_is_an_error() {
    let mut p = pair("dead");
    p.server.stop();
    // The client notices the close; a send to the server side then fails.
    let deadline = std::time::Instant::now() + T;
    loop {
        match p.client_hive.send("srvmod", msg("edgeclient", "x")) {
            Err(ContextError::Closed { .. }) => break,
            Ok(()) => assert!(std::time::Instant::now() < deadline, "sends kept succeeding"),
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // From then on every send fails: none is queued where nobody reads it.
    for _ in 0..20 {
        assert!(matches!(p.client_hive.send("srvmod", msg("edgeclient", "x")), Err(ContextError::Closed { .. })));
        assert!(matches!(p.client_hive.send("edgeclient", msg("edgeclient", "x")), Err(ContextError::Closed { .. })));
    }
    p.client_hive.request_shutdown();
    let _ = p.client;
}

#[test]
fn group_sync_reaches_remote_members_and_collects_their_answers() {
    // Go's socket context answers "not supported now".
    let p = pair("groupsync");
    let ch = p.client_hive.clone();
    std::thread::spawn(move || {
        while let Ok(Some(m)) = ch.receive_timeout("edgeclient", T) {
            if m.is_sync() {
                ch.send_resp(m.new_response("edge says yes")).unwrap();
            }
        }
    });
    let answers = p.server_hive.send_to_group_sync("edgeclient", msg("srvmod", "all of you?"), T).unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].content().as_str(), Some("edge says yes"));
}
