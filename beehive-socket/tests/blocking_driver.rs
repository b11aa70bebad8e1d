//! The blocking driver over real sockets: client and server on every
//! transport, the handler server, flow control and hostile peers.
//!
//! Every wait is bounded; running out of time is a failure.

mod common;
use common::{exhaust_descriptors, raw_handshake, raw_packet, raw_read, run_in_child, silent_listener, temp_dir};

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beehive_model::Message;
use beehive_socket::blocking::{
    Client, ClientEvent, Connection, DriverError, Endpoint, Options, Server, ServerEvent, ServerOptions,
};
use beehive_socket::session::{CloseReason, Refusal, SessionConfig, SessionError, TransportKind};
use beehive_socket::{handshake_request, StreamFraming};

const T: Duration = Duration::from_secs(10);

fn msg(source: &str, body: &str) -> Message {
    Message::new("").build_router(source, "grp", "res", "update").fill_body(body)
}

fn server_config(transport: TransportKind) -> SessionConfig {
    SessionConfig::server("socketserver", transport).local_module("srvmod", "srvgroup")
}

/// Runs `f` on a thread of its own; fails when it takes longer than `limit`.
fn bounded<R: Send + 'static>(what: &str, limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

fn server_event(server: &Server, what: &str, pred: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = server.next_event(Some(left)).unwrap_or_else(|| panic!("{what}: no such event within {T:?}"));
        if pred(&e) {
            return e;
        }
    }
}

fn disconnected_of(module: &str) -> impl Fn(&ServerEvent) -> bool + '_ {
    move |e| matches!(e, ServerEvent::Disconnected { module: Some(m), .. } if m == module)
}

fn reason_of(e: ServerEvent) -> Arc<CloseReason> {
    match e {
        ServerEvent::Disconnected { reason, .. } => reason,
        other => panic!("not a disconnection: {other:?}"),
    }
}

/// Answers sync requests with "re: <body>" on the connection's thread;
/// other messages go to the returned channel.
fn responder(
    endpoint: &Endpoint,
    config: SessionConfig,
    options: ServerOptions,
) -> (Server, std::sync::mpsc::Receiver<(Option<String>, Message)>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = Server::bind_with_handler(endpoint, config, options, move |conn, incoming| {
        if incoming.message.is_sync() {
            let body = format!("re: {}", incoming.message.content().as_str().unwrap_or_default());
            let _ = conn.send_resp(incoming.message.new_response(body));
        } else {
            let _ = tx.lock().unwrap().send((incoming.module, incoming.message));
        }
    })
    .unwrap();
    (server, rx)
}

/// Handshake, sends both ways, sync both ways, groups, disconnection.
fn both_ways(endpoint: Endpoint, transport: TransportKind) {
    let (server, others) = responder(&endpoint, server_config(transport), ServerOptions::default());
    let sh = server.handle().clone();
    let client = Client::connect(&endpoint, SessionConfig::client("edgeclient", transport)).unwrap();
    // The handshake answer's modules and groups, then Connected.
    let mut registered = Vec::new();
    loop {
        match client.next_event(Some(T)).expect("client events ended") {
            ClientEvent::Registered { module, groups } => registered.push((module, groups)),
            ClientEvent::Connected { module } => {
                assert_eq!(module, "edgeclient");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    registered.sort();
    let expected: Vec<(String, Vec<String>)> = vec![
        ("edgeclient".into(), vec![]),
        ("socketserver".into(), vec!["socketserver".into()]),
        ("srvmod".into(), vec!["srvgroup".into()]),
    ];
    assert_eq!(registered, expected);
    assert_eq!(client.modules(), expected.iter().cloned().collect::<BTreeMap<_, _>>());
    assert!(client.is_connected());
    assert_eq!(client.peer_module().as_deref(), Some("edgeclient"));
    let e = server_event(&server, "server registration", |e| matches!(e, ServerEvent::Connected { .. }));
    assert!(matches!(e, ServerEvent::Connected { module, .. } if module == "edgeclient"));
    assert_eq!(sh.modules(), vec!["edgeclient".to_owned()]);

    // Client -> server.
    client.send("srvmod", msg("edgeclient", "hello")).unwrap();
    let (from, got) = others.recv_timeout(T).unwrap();
    assert_eq!(from.as_deref(), Some("edgeclient"));
    assert_eq!(
        (got.destination(), got.message_type(), got.content().as_str()),
        ("srvmod", "unixpacket", Some("hello"))
    );
    let resp = client.send_sync("srvmod", msg("edgeclient", "ping"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("re: ping"));
    assert_eq!(client.send_to_group("srvgroup", msg("edgeclient", "to the group")).unwrap(), 1);
    let (_, got) = others.recv_timeout(T).unwrap();
    assert_eq!((got.destination(), got.content().as_str()), ("srvmod", Some("to the group")));
    assert!(matches!(
        client.send("nowhere", msg("edgeclient", "x")),
        Err(DriverError::Session(SessionError::UnknownModule { .. }))
    ));

    // Server -> client.
    sh.send("edgeclient", msg("srvmod", "to the edge")).unwrap();
    let got = client.recv_timeout(T).unwrap();
    assert_eq!(
        (got.destination(), got.message_type(), got.content().as_str()),
        ("edgeclient", "unixpacket", Some("to the edge"))
    );
    assert_eq!(sh.send_to_group("edgeclient", msg("srvmod", "group")).unwrap(), 1);
    let got = client.recv_timeout(T).unwrap();
    assert_eq!((got.destination(), got.content().as_str()), ("edgeclient", Some("group")));
    // The client's module answers the server's requests.
    let client = Arc::new(client);
    let answerer = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || {
            while let Some(m) = client.recv() {
                if m.is_sync() {
                    client.send_resp(m.new_response("from the edge")).unwrap();
                }
            }
        })
    };
    let resp = sh.send_sync("edgeclient", msg("srvmod", "question"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("from the edge"));

    // The client closes: both sides learn why.
    client.close();
    let reason = client.closed(Some(T)).expect("closed");
    assert!(matches!(*reason, CloseReason::Local), "{reason}");
    let mut last = None;
    while let Some(e) = client.next_event(Some(T)) {
        last = Some(e);
    }
    assert!(
        matches!(last, Some(ClientEvent::Disconnected { ref reason }) if matches!(**reason, CloseReason::Local)),
        "{last:?}"
    );
    let reason = reason_of(server_event(&server, "server disconnection", disconnected_of("edgeclient")));
    assert!(matches!(*reason, CloseReason::PeerClosed), "{reason}");
    assert!(sh.modules().is_empty(), "{:?}", sh.modules());
    assert_eq!(sh.connections(), 0);
    assert!(matches!(client.send("srvmod", msg("edgeclient", "x")), Err(DriverError::Closed(_))));
    bounded("answerer ends", T, move || answerer.join().unwrap());
    assert!(matches!(sh.send("edgeclient", msg("srvmod", "x")), Err(DriverError::NotConnected(_))));

    // The server disconnects a second client.
    let client = Client::connect(&endpoint, SessionConfig::client("edgeclient", transport)).unwrap();
    server_event(&server, "second registration", |e| matches!(e, ServerEvent::Connected { .. }));
    assert!(sh.disconnect("edgeclient"));
    let reason = client.closed(Some(T)).expect("closed by the server");
    assert!(matches!(*reason, CloseReason::PeerClosed), "{reason}");
    let reason = reason_of(server_event(&server, "server disconnection", disconnected_of("edgeclient")));
    assert!(matches!(*reason, CloseReason::Local), "{reason}");
}

#[test]
fn client_and_server_over_unixpacket() {
    let dir = temp_dir("bl-packet");
    both_ways(Endpoint::unix_packet(dir.join("s.sock")), TransportKind::Packet);
}

#[test]
fn client_and_server_over_unix_stream_raw() {
    let dir = temp_dir("bl-raw");
    both_ways(Endpoint::unix(dir.join("s.sock")), TransportKind::Stream(StreamFraming::Raw));
}

#[test]
fn client_and_server_over_unix_stream_package() {
    let dir = temp_dir("bl-package");
    both_ways(Endpoint::unix(dir.join("s.sock")), TransportKind::Stream(StreamFraming::Package));
}

#[test]
fn client_and_server_over_tcp() {
    both_ways(Endpoint::tcp(common::free_address()), TransportKind::Stream(StreamFraming::Raw));
}

#[test]
fn the_server_queue_and_a_shared_connection_serve_many_threads() {
    // Requests from eight threads share one client connection: whichever
    // reads hands the others their responses.
    let dir = temp_dir("bl-threads");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let server = Server::bind(&endpoint, server_config(TransportKind::Packet), ServerOptions::default()).unwrap();
    let client = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let serving = {
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        let handle = server.handle().clone();
        let server = Arc::new(server);
        let s = Arc::clone(&server);
        (
            server,
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(i) = s.recv_timeout(Duration::from_millis(50)) {
                        assert_eq!(i.module.as_deref(), Some("edgeclient"));
                        let body = format!("re: {}", i.message.content().as_str().unwrap_or_default());
                        handle.send_resp(i.message.new_response(body)).unwrap();
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }),
        )
    };
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let conn: Connection = client.connection().clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let body = format!("{t}-{i}");
                    let resp = conn.send_sync("srvmod", msg("edgeclient", &body), T).unwrap();
                    assert_eq!(resp.content().as_str(), Some(format!("re: {body}").as_str()));
                }
            })
        })
        .collect();
    bounded("eight requesters", T * 3, move || {
        for t in threads {
            t.join().unwrap();
        }
    });
    stop.store(true, Ordering::Relaxed);
    serving.1.join().unwrap();
    assert_eq!(answered.load(Ordering::Relaxed), 1600);
}

#[test]
fn a_handshake_refusal_is_seen_at_once_and_a_transport_mismatch_is_typed() {
    let dir = temp_dir("bl-refusal");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let config = server_config(TransportKind::Packet).allow_module("someoneelse");
    let _server = Server::bind(&endpoint, config, ServerOptions::default()).unwrap();
    let start = Instant::now();
    let e = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).unwrap_err();
    assert!(
        matches!(&e, DriverError::Handshake { reason, .. } if matches!(**reason, CloseReason::HandshakeRefused(Refusal::PeerClosed))),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(2), "refusal seen after {:?}", start.elapsed());
    let e = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Stream(StreamFraming::Raw)))
        .unwrap_err();
    assert!(matches!(e, DriverError::TransportMismatch { .. }), "{e}");
    let e = Client::connect(&endpoint, server_config(TransportKind::Packet)).unwrap_err();
    assert!(matches!(e, DriverError::Config(_)), "{e}");
}

#[test]
fn a_message_over_the_frame_limit_is_refused_and_the_connection_stays_up() {
    let dir = temp_dir("bl-large");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let (_server, _others) = responder(&endpoint, server_config(TransportKind::Packet), ServerOptions::default());
    let client =
        Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet).max_frame_len(4096))
            .unwrap();
    let e = client.send("srvmod", msg("edgeclient", &"x".repeat(8192))).unwrap_err();
    assert!(matches!(e, DriverError::Session(SessionError::MessageTooLarge { max: 4096, .. })), "{e}");
    let resp = client.send_sync("srvmod", msg("edgeclient", "still here"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("re: still here"));
}

// ---- hostile peers -------------------------------------------------------

#[test]
fn a_peer_that_never_registers_is_cut_at_the_handshake_timeout() {
    let dir = temp_dir("bl-nohandshake");
    let path = dir.join("s.sock");
    let limit = Duration::from_millis(300);
    let config = server_config(TransportKind::Packet).handshake_timeout(limit);
    let server = Server::bind(&Endpoint::unix_packet(&path), config, ServerOptions::default()).unwrap();
    let start = Instant::now();
    let peer = raw_packet(&path);
    let reason = reason_of(server_event(&server, "cut", |e| matches!(e, ServerEvent::Disconnected { .. })));
    let elapsed = start.elapsed();
    assert!(matches!(*reason, CloseReason::HandshakeTimeout(t) if t == limit), "{reason}");
    assert!(elapsed >= limit && elapsed < limit * 2, "cut after {elapsed:?}");
    assert_eq!(raw_read(&peer), None);
}

#[test]
fn a_server_that_never_answers_fails_the_connect_with_the_handshake_timeout() {
    let dir = temp_dir("bl-silentserver");
    let path = dir.join("s.sock");
    let _listener = silent_listener(&path);
    let limit = Duration::from_millis(300);
    let config = SessionConfig::client("edgeclient", TransportKind::Packet).handshake_timeout(limit);
    let start = Instant::now();
    let result = bounded("connect", T, move || Client::connect(&Endpoint::unix_packet(&path), config).map(drop));
    let elapsed = start.elapsed();
    match result {
        Err(DriverError::Handshake { reason, .. }) => {
            assert!(matches!(*reason, CloseReason::HandshakeTimeout(t) if t == limit), "{reason}")
        }
        other => panic!("expected the handshake timeout, got {other:?}"),
    }
    assert!(elapsed >= limit && elapsed < limit * 2, "failed after {elapsed:?}");
}

#[test]
fn a_malformed_packet_is_reported_and_the_connection_stays_up() {
    let dir = temp_dir("bl-malformed");
    let path = dir.join("s.sock");
    let (server, others) =
        responder(&Endpoint::unix_packet(&path), server_config(TransportKind::Packet), ServerOptions::default());
    let peer = raw_packet(&path);
    raw_handshake(&peer, "sloppy");
    (&peer).write_all(b"{not json\n").unwrap();
    let e = server_event(&server, "malformed", |e| matches!(e, ServerEvent::Malformed { .. }));
    assert!(matches!(e, ServerEvent::Malformed { offset: 1, .. }), "{e:?}");
    let m = msg("sloppy", "after").set_destination("srvmod");
    (&peer).write_all(&beehive_model::to_vec_line(&m).unwrap()).unwrap();
    let (from, got) = others.recv_timeout(T).unwrap();
    assert_eq!((from.as_deref(), got.content().as_str()), (Some("sloppy"), Some("after")));
}

#[test]
fn a_peer_trickling_bytes_on_a_stream_is_cut_at_the_stall_timeout() {
    let dir = temp_dir("bl-trickle");
    let path = dir.join("s.sock");
    let stall = Duration::from_millis(300);
    let transport = TransportKind::Stream(StreamFraming::Raw);
    let config = server_config(transport).stall_timeout(stall).handshake_timeout(Duration::from_secs(5));
    let server = Server::bind(&Endpoint::unix(&path), config, ServerOptions::default()).unwrap();
    let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let line = beehive_model::to_vec_line(&handshake_request("trickler").set_sync(true)).unwrap();
            // One byte every 20 ms, never the line feed.
            for b in &line[..line.len() - 1] {
                if stop.load(Ordering::Relaxed) || peer.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let reason = reason_of(server_event(&server, "cut", |e| matches!(e, ServerEvent::Disconnected { .. })));
    let elapsed = start.elapsed();
    assert!(
        matches!(*reason, CloseReason::StallTimeout { timeout, buffered } if timeout == stall && buffered > 0),
        "{reason}"
    );
    assert!(elapsed >= stall && elapsed < stall * 2, "cut after {elapsed:?}");
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
}

#[test]
fn a_peer_that_never_reads_is_cut_at_the_write_timeout_while_others_go_on() {
    let dir = temp_dir("bl-noread");
    let path = dir.join("s.sock");
    let limit = Duration::from_millis(300);
    let config = server_config(TransportKind::Packet).write_timeout(Some(limit));
    let (server, _others) = responder(&Endpoint::unix_packet(&path), config, ServerOptions::default());
    let good =
        Client::connect(&Endpoint::unix_packet(&path), SessionConfig::client("goodclient", TransportKind::Packet))
            .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let rounds = {
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
        std::thread::spawn(move || {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("round {done}");
                let resp = good
                    .send_sync("srvmod", msg("goodclient", &body), Duration::from_secs(1))
                    .unwrap_or_else(|e| panic!("round trip {done} failed: {e}"));
                assert_eq!(resp.content().as_str(), Some(format!("re: {body}").as_str()));
                done += 1;
                count.store(done, Ordering::Relaxed);
            }
            done
        })
    };
    // The flooder registers, then sends requests and never reads the answers.
    let flooder = std::thread::spawn(move || {
        let s = raw_packet(&path);
        raw_handshake(&s, "flooder");
        let body = "z".repeat(2048);
        let mut sent = 0u32;
        let start = Instant::now();
        while start.elapsed() < T * 2 {
            let req = Message::new("")
                .build_router("flooder", "grp", "res", "query")
                .fill_body(body.as_str())
                .set_sync(true)
                .set_destination("srvmod");
            if (&s).write_all(&beehive_model::to_vec_line(&req).unwrap()).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let reason = reason_of(server_event(&server, "flooder cut", disconnected_of("flooder")));
    assert!(
        matches!(*reason, CloseReason::WriteTimeout { timeout, pending } if timeout == limit && pending > 0),
        "{reason}"
    );
    let during = count.load(Ordering::Relaxed);
    // The good client keeps going after the cut, too.
    let target = during + 20;
    bounded("rounds after the cut", T, {
        let count = Arc::clone(&count);
        move || {
            while count.load(Ordering::Relaxed) < target {
                std::thread::yield_now();
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    let done = bounded("good client", T, move || rounds.join().unwrap());
    assert!(during >= 1, "no round trip while the flooder was connected");
    assert!(done >= target);
    assert!(bounded("flooder ends", T * 3, move || flooder.join().unwrap()) > 0);
}

#[test]
fn a_client_that_does_not_take_its_messages_still_gets_its_responses() {
    // The client's inbox holds 4; the server pushes 100 messages the
    // application does not take; its requests are still answered, and the
    // 100 messages all arrive, in order, once it reads.
    let dir = temp_dir("bl-busy");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let (server, _others) = responder(&endpoint, server_config(TransportKind::Packet), ServerOptions::default());
    let client = Client::connect_with(
        &endpoint,
        SessionConfig::client("edgeclient", TransportKind::Packet),
        Options::default().inbox_capacity(4),
    )
    .unwrap();
    server_event(&server, "registration", |e| matches!(e, ServerEvent::Connected { .. }));
    for i in 0..100 {
        server.handle().send("edgeclient", msg("srvmod", &format!("push {i}"))).unwrap();
    }
    for i in 0..20 {
        let body = format!("ask {i}");
        let resp = client.send_sync("srvmod", msg("edgeclient", &body), T).unwrap();
        assert_eq!(resp.content().as_str(), Some(format!("re: {body}").as_str()));
    }
    for i in 0..100 {
        let m = client.recv_timeout(T).unwrap_or_else(|| panic!("push {i} missing"));
        assert_eq!(m.content().as_str(), Some(format!("push {i}").as_str()));
    }
}

#[test]
fn conn_max_refuses_extra_connections_and_serves_the_others() {
    let dir = temp_dir("bl-connmax");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let (server, _others) =
        responder(&endpoint, server_config(TransportKind::Packet), ServerOptions::default().conn_max(2));
    let a = Client::connect(&endpoint, SessionConfig::client("a", TransportKind::Packet)).unwrap();
    let b = Client::connect(&endpoint, SessionConfig::client("b", TransportKind::Packet)).unwrap();
    let e = Client::connect(&endpoint, SessionConfig::client("c", TransportKind::Packet)).unwrap_err();
    assert!(matches!(e, DriverError::Handshake { .. }), "{e}");
    assert!(matches!(
        server_event(&server, "refused", |e| matches!(e, ServerEvent::Refused { .. })),
        ServerEvent::Refused { conn_max: 2 }
    ));
    assert_eq!(server.handle().refused(), 1);
    for c in [&a, &b] {
        assert!(c.send_sync("srvmod", msg(&c.peer_module().unwrap(), "hi"), T).is_ok());
    }
    // A slot frees when a client leaves.
    drop(a);
    server_event(&server, "a leaves", disconnected_of("a"));
    let c = Client::connect(&endpoint, SessionConfig::client("c", TransportKind::Packet)).unwrap();
    assert!(c.send_sync("srvmod", msg("c", "hi"), T).is_ok());
}

#[test]
fn memory_is_given_back_when_the_connections_ebb() {
    let dir = temp_dir("bl-ebb");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let config = server_config(TransportKind::Packet).handshake_timeout(T * 3);
    let (server, _others) = responder(&endpoint, config, ServerOptions::default());
    let Endpoint::UnixPacket(path) = &endpoint else { unreachable!() };
    let peers: Vec<_> = (0..20).map(|_| raw_packet(path)).collect();
    common::eventually("20 connections served", T, || server.handle().connections() == 20);
    assert_eq!(server.handle().memory_releases(), 0, "nothing closed yet");
    // 16 closes leave 4, a quarter of the peak: a release is due (and one
    // more once none is left; the server may do both in one).
    drop(peers);
    common::eventually("a release after the peers left", T, || server.handle().memory_releases() >= 1);
    assert_eq!(server.handle().connections(), 0);
    // The release woke the accept loop with no connection waiting: its
    // accept found none, which is no failure (no pause, nothing counted).
    let late = Client::connect(&endpoint, SessionConfig::client("late", TransportKind::Packet)).unwrap();
    assert!(late.send_sync("srvmod", msg("late", "hi"), T).is_ok());
    assert_eq!(server.handle().accept_errors(), 0);
}

#[test]
fn a_module_name_in_use_is_refused_and_the_owner_keeps_it() {
    let dir = temp_dir("bl-takeover");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let (_server, _others) = responder(&endpoint, server_config(TransportKind::Packet), ServerOptions::default());
    let first = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).unwrap();
    let e = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).unwrap_err();
    assert!(matches!(e, DriverError::Handshake { .. }), "{e}");
    let resp = first.send_sync("srvmod", msg("edgeclient", "mine"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("re: mine"));
}

#[test]
fn a_full_outbound_queue_fails_sends_after_their_wait_and_drains_once_the_peer_reads() {
    // The server's handler stops reading its connection until released, so
    // the client's socket and then its queue fill up.
    let dir = temp_dir("bl-queue");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(Some(release_rx));
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let seen_tx = std::sync::Mutex::new(seen_tx);
    let _server = Server::bind_with_handler(
        &endpoint,
        server_config(TransportKind::Packet),
        ServerOptions::default(),
        move |_, i| {
            if let Some(rx) = release_rx.lock().unwrap().take() {
                let _ = rx.recv_timeout(T * 3);
            }
            let _ = seen_tx.lock().unwrap().send(i.message.content().as_str().unwrap_or_default().to_owned());
        },
    )
    .unwrap();
    let wait = Duration::from_millis(200);
    let client = Client::connect_with(
        &endpoint,
        SessionConfig::client("edgeclient", TransportKind::Packet).max_queued_frames(8),
        Options::default().send_wait(wait),
    )
    .unwrap();
    let body = "q".repeat(8 * 1024);
    let mut sent = 0usize;
    let failed = loop {
        let start = Instant::now();
        match client.send("srvmod", msg("edgeclient", &format!("{sent} {body}"))) {
            Ok(()) => sent += 1,
            Err(e) => break (e, start.elapsed()),
        }
        assert!(sent < 10_000, "the queue never filled");
    };
    assert!(matches!(failed.0, DriverError::Session(SessionError::QueueFull { frames: 8, .. })), "{}", failed.0);
    assert!(failed.1 >= wait && failed.1 < wait * 10, "failed after {:?}", failed.1);
    // A request waits for room until its own timeout.
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let e = client.send_sync("srvmod", msg("edgeclient", "q"), timeout).unwrap_err();
    assert!(matches!(e, DriverError::Timeout(t) if t == timeout), "{e}");
    assert!(start.elapsed() >= timeout && start.elapsed() < timeout * 10, "{:?}", start.elapsed());
    // Nor is the queue written out while the peer does not read.
    let wait = Duration::from_millis(100);
    assert!(matches!(client.flush(wait), Err(DriverError::Timeout(t)) if t == wait));
    // Once the peer reads, everything accepted arrives, in order.
    release_tx.send(()).unwrap();
    client.flush(T).unwrap();
    for i in 0..sent {
        let got = seen.recv_timeout(T).unwrap_or_else(|_| panic!("message {i} of {sent} missing"));
        assert!(got.starts_with(&format!("{i} ")), "message {i}: {}", &got[..got.len().min(20)]);
    }
}

#[test]
fn a_packet_the_kernel_refuses_fails_its_send_and_the_connection_stays_up() {
    // The configured limit is above what the socket takes: the driver
    // lowers it to the socket's, so the send fails at once instead of the
    // kernel refusing the packet (EMSGSIZE); the rest go on (as in Go,
    // whose write fails and whose connection stays up).
    let dir = temp_dir("bl-emsgsize");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let config = server_config(TransportKind::Packet).max_frame_len(8 << 20);
    let (_server, _others) = responder(&endpoint, config, ServerOptions::default());
    let client = Client::connect_with(
        &endpoint,
        SessionConfig::client("edgeclient", TransportKind::Packet)
            .max_frame_len(8 << 20)
            .packet_send_limit(Some(8 << 20)),
        Options::default().packet_send_buffer(Some(64 * 1024)),
    )
    .unwrap();
    let e = client.send("srvmod", msg("edgeclient", &"x".repeat(1 << 20))).unwrap_err();
    match e {
        DriverError::Session(SessionError::MessageTooLarge { len, max }) => {
            assert!(len > 1 << 20 && max <= 2 * 64 * 1024, "{len} {max}")
        }
        other => panic!("expected MessageTooLarge, got {other}"),
    }
    let resp = client.send_sync("srvmod", msg("edgeclient", "after"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("re: after"));
}

#[test]
fn a_full_server_inbox_pauses_the_connection_and_loses_nothing() {
    // The server's inbox holds 2 and nobody takes from it while the client
    // sends 50: the connection holds the rest and then stops reading.
    let dir = temp_dir("bl-server-full");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let options = ServerOptions::default().connection(Options::default().inbox_capacity(2));
    let server = Server::bind(&endpoint, server_config(TransportKind::Packet), options).unwrap();
    let client = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).unwrap();
    for i in 0..50 {
        client.send("srvmod", msg("edgeclient", &format!("{i}"))).unwrap();
    }
    client.flush(T).unwrap();
    for i in 0..50 {
        let got = server.recv_timeout(T).unwrap_or_else(|| panic!("message {i} missing"));
        assert_eq!(got.message.content().as_str(), Some(format!("{i}").as_str()));
    }
}

const EMFILE_CHILD: &str = "BEEHIVE_BLOCKING_EMFILE_CHILD";

#[test]
fn accept_backs_off_on_emfile_and_recovers() {
    run_in_child("emfile_child", EMFILE_CHILD);
}

#[test]
#[ignore = "run by accept_backs_off_on_emfile_and_recovers in a child process"]
fn emfile_child() {
    common::child_only(EMFILE_CHILD, "accept_backs_off_on_emfile_and_recovers");
    let dir = temp_dir("bl-emfile");
    let path = dir.join("s.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let mut options = ServerOptions::default();
    options.accept_backoff = Duration::from_millis(10);
    options.max_accept_backoff = Duration::from_millis(30);
    let (server, _others) = responder(&endpoint, server_config(TransportKind::Packet), options);
    // A client socket made before the descriptors run out.
    let early = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
    let filler = exhaust_descriptors();
    let since = Instant::now();
    early.connect(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
    // The accept fails with EMFILE, again and again, with growing pauses.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match server.next_event(Some(T)).expect("events ended") {
            ServerEvent::AcceptFailed { error, backoff } => {
                assert_eq!(error.raw_os_error(), Some(nix::errno::Errno::EMFILE as i32), "{error}");
                seen.push((Instant::now(), backoff));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    common::assert_backoffs(&seen, Duration::from_millis(10), Duration::from_millis(30), since);
    assert!(server.handle().accept_errors() >= 4);
    // Descriptors come back: the waiting connection is served, and a new one.
    drop(filler);
    early.set_read_timeout(Some(T)).unwrap();
    raw_handshake(&early, "early");
    let client = Client::connect(&endpoint, SessionConfig::client("late", TransportKind::Packet)).unwrap();
    let resp = client.send_sync("srvmod", msg("late", "after EMFILE"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("re: after EMFILE"));
    println!("CHILD-OK");
}

#[test]
fn option_builders_set_their_fields() {
    use beehive_socket::blocking::SpinBudget;
    let o = Options::default();
    assert_eq!(o.spin, None, "the default: the bus's budget, or the hive's");
    assert_eq!(o.spin(SpinBudget::OFF).spin, Some(SpinBudget::OFF));
    let s = ServerOptions::default();
    assert!(s.release_memory, "on by default");
    assert!(!s.release_memory(false).release_memory);
    assert_eq!(ServerOptions::default().conn_max(3).conn_max, 3);
}
