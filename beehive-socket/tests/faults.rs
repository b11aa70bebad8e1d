//! Faults on the server side, driven through raw SOCK_SEQPACKET sockets.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use beehive_context::Hive;
use beehive_socket::{handshake_request, SocketContext, SocketModuleConfig, SocketServer};
use socket2::{Domain, SockAddr, Socket, Type};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("beehive-faults-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn server(dir: &Path, conn_max: usize) -> (Hive, SocketServer, PathBuf) {
    let path = dir.join("s.sock");
    let cfg = SocketModuleConfig::from_yaml(&format!(
        "- module: socketserver\n  server: true\n  address: {p}\n  connmax: {conn_max}\n  buffersize: 1024\n- module: edgeclient\n  address: {p}\n",
        p = path.display()
    ))
    .unwrap();
    let hive = Hive::new();
    let ctx = Arc::new(SocketContext::new());
    hive.add_backend(ctx.clone());
    let srv = SocketServer::start(&hive, &ctx, &cfg, cfg.servers().next().unwrap()).unwrap();
    (hive, srv, path)
}

fn raw(path: &Path) -> Socket {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.connect(&SockAddr::unix(path).unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn read(s: &Socket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    match (&*s).read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(buf[..n].to_vec()),
    }
}

/// Sends the handshake of `module` and returns the answer, if any.
fn handshake(s: &Socket, module: &str) -> Option<beehive_model::Message> {
    let req = handshake_request(module).set_sync(true);
    (&*s).write_all(&beehive_model::to_vec_line(&req).unwrap()).unwrap();
    let answer = beehive_model::from_slice(&read(s)?).unwrap();
    assert_eq!(answer.parent_id(), req.id());
    Some(answer)
}

#[test]
fn the_socket_file_is_private_and_a_stale_one_is_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("mode");
    std::fs::write(dir.join("s.sock"), b"stale").unwrap();
    let (_hive, _srv, path) = server(&dir, 4);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(handshake(&raw(&path), "edgeclient").is_some());
}

#[test]
fn connections_beyond_connmax_are_refused_without_stalling_the_others() {
    let dir = temp_dir("connmax");
    let (_hive, srv, path) = server(&dir, 1);
    let first = raw(&path);
    assert!(handshake(&first, "edgeclient").is_some());
    for _ in 0..3 {
        let extra = raw(&path);
        assert!(read(&extra).is_none(), "an extra connection must be closed at once");
    }
    // The accepted connection is unaffected.
    assert!(handshake(&first, "edgeclient").is_some());
    assert_eq!(srv.connections(), 1);
}

#[test]
fn an_oversized_or_malformed_packet_closes_only_that_connection() {
    let dir = temp_dir("oversize");
    let (_hive, _srv, path) = server(&dir, 4);
    let good = raw(&path);
    assert!(handshake(&good, "edgeclient").is_some());
    let big = raw(&path);
    (&big).write_all(&vec![b' '; 4000]).unwrap();
    assert!(read(&big).is_none(), "the oversized sender is cut off");
    let bad = raw(&path);
    (&bad).write_all(b"{\"header\":").unwrap();
    assert!(read(&bad).is_none(), "the malformed sender is cut off");
    assert!(handshake(&good, "edgeclient").is_some(), "the other connection still works");
}

#[test]
fn modules_without_a_client_entry_are_refused() {
    let dir = temp_dir("unknown");
    let (_hive, _srv, path) = server(&dir, 4);
    let s = raw(&path);
    assert!(handshake(&s, "intruder").is_none());
    let s = raw(&path);
    assert!(handshake(&s, "edgeclient").is_some());
    let msg = beehive_model::Message::new("").build_router("intruder", "", "r", "o").set_destination("edgeclient");
    (&s).write_all(&beehive_model::to_vec_line(&msg).unwrap()).unwrap();
    assert!(read(&s).is_none(), "a message from an unconfigured module closes the connection, as in Go");
}

#[test]
fn a_handshake_without_a_type_is_answered_too() {
    // Go registers such a module but never answers (its answer is routed by type).
    let dir = temp_dir("notype");
    let (_hive, _srv, path) = server(&dir, 4);
    let s = raw(&path);
    let mut req = handshake_request("edgeclient").set_sync(true);
    req.header_mut().message_type.clear();
    (&s).write_all(&beehive_model::to_vec_line(&req).unwrap()).unwrap();
    let answer = beehive_model::from_slice(&read(&s).expect("an answer")).unwrap();
    assert_eq!(answer.parent_id(), req.id());
}
