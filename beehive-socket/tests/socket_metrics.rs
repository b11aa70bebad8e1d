//! What the tokio driver reports through the `metrics` facade: the
//! connections, their bytes and messages, malformed input, refused
//! connections and failed accepts (the message events: `socket_tracing.rs`).
//!
//! The recorder is thread-local, so every test runs its runtime on its own
//! thread (a current-thread runtime): the connection tasks report to it.
//! Every wait is bounded; running out of time is a failure.
#![cfg(feature = "tokio")]

mod common;
use common::recorder::{assert_connected, assert_exchanged, side, Side, TestRecorder};
use common::{exhaust_descriptors, on_this_thread, raw_packet, run_in_child, temp_dir, within};

use std::io::{Read, Write};
use std::time::Duration;

use beehive_model::Message;
use beehive_socket::asyncio::{Client, Endpoint, Server, ServerEvent, ServerEvents, ServerOptions};
use beehive_socket::handshake_request;
use beehive_socket::session::{SessionConfig, TransportKind};
use beehive_socket::StreamFraming;
use socket2::{Domain, SockAddr, Socket, Type};

const T: Duration = Duration::from_secs(10);

// ---- helpers -------------------------------------------------------------------

async fn blocking<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    within(what, T * 2, tokio::task::spawn_blocking(f)).await.unwrap()
}

fn msg(source: &str, body: &str) -> Message {
    Message::new("").build_router(source, "grp", "res", "update").fill_body(body)
}

fn server_config(transport: TransportKind) -> SessionConfig {
    SessionConfig::server("socketserver", transport).local_module("srvmod", "srvgroup")
}

async fn server_event(events: &mut ServerEvents, what: &str, pred: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
    within(what, T, async {
        loop {
            let e = events.recv().await.unwrap_or_else(|| panic!("{what}: the server's events ended"));
            if pred(&e) {
                return e;
            }
        }
    })
    .await
}

/// The bytes of `msg` on the wire (one JSON message and a line feed, in a
/// packet or as a raw stream line).
fn wire_len(msg: &Message) -> u64 {
    beehive_model::to_vec_line(msg).unwrap().len() as u64
}

// ---- metrics -----------------------------------------------------------------

/// A client and a server exchange messages, then the client closes: both
/// sides count the connection, its bytes and its messages, and its close.
fn both_sides_are_counted(endpoint: Endpoint, transport: TransportKind) {
    let r = TestRecorder::default();
    metrics::with_local_recorder(&r, || {
        on_this_thread(async {
            let server = Server::bind(&endpoint, server_config(transport), ServerOptions::default()).await.unwrap();
            let (sh, mut incoming, mut sev) = server.into_parts();
            let client =
                within("connect", T, Client::connect(&endpoint, SessionConfig::client("edgeclient", transport)))
                    .await
                    .unwrap();
            let (ch, mut cmsgs, _cev) = client.into_parts();
            server_event(&mut sev, "registration", |e| matches!(e, ServerEvent::Connected { .. })).await;

            let (srv, cli) = assert_connected(&r);

            // Three messages up, two down.
            let mut up = 0;
            for i in 0..3 {
                ch.send("srvmod", msg("edgeclient", &format!("up {i}"))).await.unwrap();
                let got = within("message up", T, incoming.recv()).await.expect("server stopped").message;
                assert_eq!(got.content().as_str(), Some(format!("up {i}").as_str()));
                up += wire_len(&got);
            }
            let mut down = 0;
            for i in 0..2 {
                sh.send("edgeclient", msg("srvmod", &format!("down {i}"))).await.unwrap();
                let got = within("message down", T, cmsgs.recv()).await.expect("client closed");
                assert_eq!(got.content().as_str(), Some(format!("down {i}").as_str()));
                down += wire_len(&got);
            }
            // The handshake and three messages up, the answer and two down.
            let (srv2, cli2) = assert_exchanged(&r, (srv, cli), (4, 3), (up, down));

            // The client closes; the server reads the end.
            ch.close();
            within("client closed", T, ch.closed()).await;
            server_event(&mut sev, "disconnection", |e| matches!(e, ServerEvent::Disconnected { .. })).await;
            assert_eq!(
                r.counters("beehive_socket_connections_closed_total"),
                vec![
                    ("beehive_socket_connections_closed_total{reason=local,role=client}".to_owned(), 1),
                    ("beehive_socket_connections_closed_total{reason=peer_closed,role=server}".to_owned(), 1),
                ]
            );
            for role in ["server", "client"] {
                assert_eq!(r.gauge(&format!("beehive_socket_connections_open{{role={role}}}")), 0.0, "{role}");
            }
            // Nothing more went either way.
            assert_eq!((side(&r, "server"), side(&r, "client")), (srv2, cli2));
            sh.shutdown();
        })
    });
}

/// Connections whose tasks are dropped with their runtime, never closed:
/// each is counted closed once, for reason `aborted`, and no longer open.
#[test]
fn connections_dropped_with_their_runtime_are_counted_aborted() {
    let dir = temp_dir("aborted");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let r = TestRecorder::default();
    metrics::with_local_recorder(&r, || {
        let handles = on_this_thread(async {
            let server =
                Server::bind(&endpoint, server_config(TransportKind::Packet), ServerOptions::default()).await.unwrap();
            let (sh, incoming, mut sev) = server.into_parts();
            let client = within(
                "connect",
                T,
                Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)),
            )
            .await
            .unwrap();
            server_event(&mut sev, "registration", |e| matches!(e, ServerEvent::Connected { .. })).await;
            assert_connected(&r);
            // Kept past the runtime, so that nothing closes the connections
            // before their tasks are dropped.
            (sh, incoming, sev, client)
        });
        assert_eq!(
            r.counters("beehive_socket_connections_closed_total"),
            vec![
                ("beehive_socket_connections_closed_total{reason=aborted,role=client}".to_owned(), 1),
                ("beehive_socket_connections_closed_total{reason=aborted,role=server}".to_owned(), 1),
            ]
        );
        for role in ["server", "client"] {
            assert_eq!(r.gauge(&format!("beehive_socket_connections_open{{role={role}}}")), 0.0, "{role}");
        }
        drop(handles);
    });
}

#[test]
fn both_sides_of_a_packet_connection_are_counted() {
    let dir = temp_dir("packet");
    both_sides_are_counted(Endpoint::unix_packet(dir.join("s.sock")), TransportKind::Packet);
}

#[test]
fn both_sides_of_a_stream_connection_are_counted() {
    let dir = temp_dir("stream");
    both_sides_are_counted(Endpoint::unix(dir.join("s.sock")), TransportKind::Stream(StreamFraming::Raw));
}

#[test]
fn a_garbage_packet_is_counted_malformed_and_every_byte_of_a_raw_peer_is_counted() {
    let r = TestRecorder::default();
    metrics::with_local_recorder(&r, || {
        on_this_thread(async {
            let dir = temp_dir("malformed");
            let path = dir.join("s.sock");
            let server = Server::bind(
                &Endpoint::unix_packet(&path),
                server_config(TransportKind::Packet),
                ServerOptions::default(),
            )
            .await
            .unwrap();
            let (sh, _incoming, mut sev) = server.into_parts();
            let peer = raw_packet(&path);
            let request = beehive_model::to_vec_line(&handshake_request("rawpeer").set_sync(true)).unwrap();
            (&peer).write_all(&request).unwrap();
            let (peer, answer) = blocking("handshake answer", move || {
                let mut buf = vec![0u8; 65536];
                let n = (&peer).read(&mut buf).unwrap();
                (peer, n as u64)
            })
            .await;
            assert!(answer > 0);
            server_event(&mut sev, "registration", |e| matches!(e, ServerEvent::Connected { .. })).await;

            let garbage = b"this is not a message\n";
            (&peer).write_all(garbage).unwrap();
            server_event(&mut sev, "malformed", |e| matches!(e, ServerEvent::Malformed { .. })).await;
            let srv = side(&r, "server");
            assert_eq!(
                srv,
                Side {
                    bytes_read: (request.len() + garbage.len()) as u64,
                    bytes_written: answer,
                    messages_read: 1,
                    messages_written: 1,
                    malformed: 1,
                }
            );

            drop(peer);
            server_event(&mut sev, "disconnection", |e| matches!(e, ServerEvent::Disconnected { .. })).await;
            assert_eq!(r.counter("beehive_socket_connections_closed_total{reason=peer_closed,role=server}"), 1);
            assert_eq!(r.gauge("beehive_socket_connections_open{role=server}"), 0.0);
            assert_eq!(side(&r, "server"), srv);
            sh.shutdown();
        })
    });
}

#[test]
fn a_connection_over_conn_max_is_counted_refused() {
    let r = TestRecorder::default();
    metrics::with_local_recorder(&r, || {
        on_this_thread(async {
            let dir = temp_dir("refused");
            let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
            let options = ServerOptions::default().conn_max(1);
            let mut server = Server::bind(&endpoint, server_config(TransportKind::Packet), options).await.unwrap();
            let first =
                within("connect", T, Client::connect(&endpoint, SessionConfig::client("first", TransportKind::Packet)))
                    .await
                    .unwrap();
            assert!(Client::connect(&endpoint, SessionConfig::client("second", TransportKind::Packet)).await.is_err());
            server_event(server.events(), "refused", |e| matches!(e, ServerEvent::Refused { conn_max: 1 })).await;
            assert_eq!(r.counter("beehive_socket_refused_total{}"), 1);
            // The refused connection never started: one server connection,
            // two client ones (the second closed by the server).
            assert_eq!(r.counter("beehive_socket_connections_opened_total{role=server}"), 1);
            assert_eq!(r.counter("beehive_socket_connections_opened_total{role=client}"), 2);
            assert_eq!(r.counter("beehive_socket_connections_closed_total{reason=handshake_refused,role=client}"), 1);
            assert_eq!(r.gauge("beehive_socket_connections_open{role=server}"), 1.0);
            assert_eq!(r.gauge("beehive_socket_connections_open{role=client}"), 1.0);
            assert!(first.handle().is_connected());
        })
    });
}

// ---- accept errors, in a child process with a low descriptor limit ------------

const EMFILE_CHILD: &str = "BEEHIVE_METRICS_EMFILE_CHILD";

#[test]
fn failed_accepts_are_counted() {
    run_in_child("emfile_child", EMFILE_CHILD);
}

#[test]
#[ignore = "run by failed_accepts_are_counted in a child process"]
fn emfile_child() {
    common::child_only(EMFILE_CHILD, "failed_accepts_are_counted");
    let r = TestRecorder::default();
    metrics::with_local_recorder(&r, || {
        on_this_thread(async {
            let dir = temp_dir("emfile");
            let path = dir.join("s.sock");
            let mut options = ServerOptions::default();
            options.accept_backoff = Duration::from_millis(10);
            let server = Server::bind(&Endpoint::unix_packet(&path), server_config(TransportKind::Packet), options)
                .await
                .unwrap();
            let (sh, _incoming, mut sev) = server.into_parts();
            let early = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
            let filler = exhaust_descriptors();
            early.connect(&SockAddr::unix(&path).unwrap()).unwrap();
            let mut failures = 0;
            while failures < 3 {
                if let ServerEvent::AcceptFailed { .. } =
                    within("accept failure", T, sev.recv()).await.expect("events ended")
                {
                    failures += 1;
                }
            }
            // Counted with every failure (the server's own count moves
            // with it, on this thread).
            let counted = r.counter("beehive_socket_accept_errors_total{}");
            assert!(counted >= 3, "{counted}");
            assert_eq!(counted, sh.accept_errors());
            assert_eq!(r.counter("beehive_socket_connections_opened_total{role=server}"), 0);
            drop(filler);
            sh.shutdown();
            println!("CHILD-OK");
        })
    });
}
