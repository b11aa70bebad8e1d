//! Unix stream and TCP sockets, with Raw and Package framing, and the
//! stream-only faults (a peer closing or stalling in the middle of a frame).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beehive_context::{Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::{
    handshake_request, ClientOptions, ServerOptions, SocketClient, SocketContext, SocketModuleConfig, SocketServer,
    StreamFraming,
};

const T: Duration = Duration::from_secs(10);

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("beehive-streams-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_tcp_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn config(ty: &str, address: &str) -> SocketModuleConfig {
    SocketModuleConfig::from_yaml(&format!(
        "- module: socketserver\n  server: true\n  address: \"{address}\"\n  sockettype: {ty}\n  connmax: 4\n  buffersize: 65536\n- module: edgeclient\n  address: \"{address}\"\n  sockettype: {ty}\n  buffersize: 65536\n"
    ))
    .unwrap()
}

fn server(cfg: &SocketModuleConfig, options: ServerOptions) -> (Hive, SocketServer) {
    let hive = Hive::new();
    let ctx = Arc::new(SocketContext::new());
    hive.add_backend(ctx.clone());
    hive.register(SimpleModule::new("srvmod", "srvgroup", |hive: &Hive| {
        while let Ok(m) = hive.receive("srvmod") {
            if m.is_sync() {
                hive.send_resp(m.new_response(format!("re: {}", m.content().as_str().unwrap_or_default())))?;
            }
        }
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    let srv = SocketServer::start_with(&hive, &ctx, cfg, cfg.servers().next().unwrap(), options).unwrap();
    (hive, srv)
}

fn round_trip(ty: &str, address: &str, framing: StreamFraming) {
    let cfg = config(ty, address);
    let options = ServerOptions { stream_framing: framing, ..ServerOptions::default() };
    let (server_hive, _srv) = server(&cfg, options);
    let client_hive = Hive::new();
    let cctx = Arc::new(SocketContext::new());
    client_hive.add_backend(cctx.clone());
    let copts = ClientOptions { stream_framing: framing, ..ClientOptions::default() };
    let client = SocketClient::start(&client_hive, &cctx, cfg.client("edgeclient").unwrap(), copts).unwrap();
    assert!(client.wait_connected(1, T), "{ty} {framing:?}: no handshake");
    for i in 0..50 {
        let body = format!("ping {i} {}", "x".repeat(i * 100));
        let resp = client_hive
            .send_sync("srvmod", Message::new("").set_route("edgeclient", "").fill_body(body.as_str()), T)
            .unwrap();
        assert_eq!(resp.content().as_str(), Some(format!("re: {body}").as_str()));
    }
    server_hive.send("edgeclient", Message::new("").set_route("srvmod", "").fill_body("down")).unwrap();
    assert_eq!(client_hive.receive_timeout("edgeclient", T).unwrap().unwrap().content().as_str(), Some("down"));
    server_hive.send_to_group("edgeclient", Message::new("").set_route("srvmod", "").fill_body("group")).unwrap();
    assert_eq!(client_hive.receive_timeout("edgeclient", T).unwrap().unwrap().content().as_str(), Some("group"));
    client_hive.request_shutdown();
}

#[test]
fn unix_stream_with_raw_framing() {
    let dir = temp_dir("unix-raw");
    round_trip("unix", dir.join("s.sock").to_str().unwrap(), StreamFraming::Raw);
}

#[test]
fn unix_stream_with_package_framing() {
    let dir = temp_dir("unix-pkg");
    round_trip("unix", dir.join("s.sock").to_str().unwrap(), StreamFraming::Package);
}

#[test]
fn tcp_with_raw_and_package_framing() {
    round_trip("tcp", &free_tcp_address(), StreamFraming::Raw);
    round_trip("tcp", &free_tcp_address(), StreamFraming::Package);
}

fn handshake(s: &mut std::os::unix::net::UnixStream) -> bool {
    let req = handshake_request("edgeclient").set_sync(true);
    s.write_all(&beehive_model::to_vec_line(&req).unwrap()).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    beehive_model::from_slice(&got).map(|m| m.parent_id() == req.id()).unwrap_or(false)
}

#[test]
fn a_peer_stalling_mid_frame_is_cut_off_and_an_idle_peer_is_not() {
    let dir = temp_dir("stall");
    let path = dir.join("s.sock");
    let cfg = config("unix", path.to_str().unwrap());
    let options = ServerOptions { stall_timeout: Duration::from_millis(200), ..ServerOptions::default() };
    let (_hive, _srv) = server(&cfg, options);
    let mut idle = std::os::unix::net::UnixStream::connect(&path).unwrap();
    idle.set_read_timeout(Some(T)).unwrap();
    assert!(handshake(&mut idle));
    let mut staller = std::os::unix::net::UnixStream::connect(&path).unwrap();
    staller.set_read_timeout(Some(T)).unwrap();
    staller.write_all(b"{\"header\":{\"msg_id\":\"half").unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(staller.read(&mut buf).unwrap_or(0), 0, "the stalled peer is disconnected");
    assert!(t0.elapsed() >= Duration::from_millis(150), "cut off too early: {:?}", t0.elapsed());
    // The idle connection (no partial frame) survived several timeouts.
    std::thread::sleep(Duration::from_millis(500));
    assert!(handshake(&mut idle));
}

#[test]
fn a_peer_closing_mid_frame_ends_only_its_connection() {
    let dir = temp_dir("midclose");
    let path = dir.join("s.sock");
    let cfg = config("unix", path.to_str().unwrap());
    let options = ServerOptions { stream_framing: StreamFraming::Package, ..ServerOptions::default() };
    let (_hive, srv) = server(&cfg, options);
    let mut cut = std::os::unix::net::UnixStream::connect(&path).unwrap();
    cut.write_all(b"beehv1rv\x00\x00\x01\x00{\"header\"").unwrap();
    drop(cut);
    let deadline = Instant::now() + T;
    while srv.connections() > 0 {
        assert!(Instant::now() < deadline, "the half-sent connection was not closed");
        std::thread::sleep(Duration::from_millis(5));
    }
}
