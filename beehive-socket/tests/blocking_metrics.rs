//! The blocking driver's figures through the `metrics` facade. Its
//! connections run on threads of their own, so the recorder is the
//! process's global one, and this binary holds this one test.
//!
//! Every wait is bounded; running out of time is a failure.

mod common;
use common::recorder::{assert_connected, assert_exchanged, side, TestRecorder};
use common::{eventually, raw_packet, temp_dir};

use std::io::Write;
use std::time::{Duration, Instant};

use beehive_model::Message;
use beehive_socket::blocking::{Client, Endpoint, Server, ServerEvent, ServerOptions};
use beehive_socket::session::{SessionConfig, TransportKind};

const T: Duration = Duration::from_secs(10);

fn msg(source: &str, body: &str) -> Message {
    Message::new("").build_router(source, "grp", "res", "update").fill_body(body)
}

fn wire_len(msg: &Message) -> u64 {
    beehive_model::to_vec_line(msg).unwrap().len() as u64
}

fn server_event(server: &Server, what: &str, pred: impl Fn(&ServerEvent) -> bool) {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = server.next_event(Some(left)).unwrap_or_else(|| panic!("{what}: no such event within {T:?}"));
        if pred(&e) {
            return;
        }
    }
}

#[test]
fn the_blocking_driver_counts_connections_bytes_messages_and_closes() {
    let r = TestRecorder::default();
    metrics::set_global_recorder(r.clone()).expect("the only recorder of this binary");
    let dir = temp_dir("bl-metrics");
    let path = dir.join("s.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let config = SessionConfig::server("socketserver", TransportKind::Packet).local_module("srvmod", "srvgroup");
    let server = Server::bind(&endpoint, config, ServerOptions::default()).unwrap();
    let client = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).unwrap();
    server_event(&server, "registration", |e| matches!(e, ServerEvent::Connected { .. }));

    // The server counts its answer once written, which is after the
    // registration the event above reports.
    eventually("the answer counted", T, || side(&r, "server").messages_written == 1);
    let (srv, cli) = assert_connected(&r);

    // Three messages up, two down.
    let mut up = 0;
    for i in 0..3 {
        client.connection().send("srvmod", msg("edgeclient", &format!("up {i}"))).unwrap();
        let got = server.recv_timeout(T).expect("message up").message;
        assert_eq!(got.content().as_str(), Some(format!("up {i}").as_str()));
        up += wire_len(&got);
    }
    let mut down = 0;
    for i in 0..2 {
        server.handle().send("edgeclient", msg("srvmod", &format!("down {i}"))).unwrap();
        let got = client.recv_timeout(T).expect("message down");
        assert_eq!(got.content().as_str(), Some(format!("down {i}").as_str()));
        down += wire_len(&got);
    }
    // The handshake and three messages up, the answer and two down.
    assert_exchanged(&r, (srv, cli), (4, 3), (up, down));

    // A packet that is not a message: counted, skipped.
    let raw = raw_packet(&path);
    (&raw).write_all(b"{not json\n").unwrap();
    eventually("the garbage counted", T, || side(&r, "server").malformed == 1);

    // The client closes; the server reads the end.
    client.connection().close();
    server_event(&server, "disconnection", |e| matches!(e, ServerEvent::Disconnected { module: Some(_), .. }));
    drop(raw);
    eventually("the server's two closes counted", T, || {
        r.counter("beehive_socket_connections_closed_total{reason=peer_closed,role=server}") == 2
    });
    assert_eq!(
        r.counters("beehive_socket_connections_closed_total"),
        vec![
            ("beehive_socket_connections_closed_total{reason=local,role=client}".to_owned(), 1),
            ("beehive_socket_connections_closed_total{reason=peer_closed,role=server}".to_owned(), 2),
        ]
    );
    eventually("no connection open", T, || r.gauge("beehive_socket_connections_open{role=server}") == 0.0);
    assert_eq!(r.gauge("beehive_socket_connections_open{role=client}"), 0.0);
}
