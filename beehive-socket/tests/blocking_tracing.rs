//! The message events of the blocking driver: a request followed, by its
//! ids, out of a client's connection into a server's and its answer back.
//! The connections run on threads of their own, so the subscriber is the
//! process's global one, and this binary holds this one test.
//!
//! Every wait is bounded; running out of time is a failure.

mod common;
use common::collector::Collector;
use common::temp_dir;

use std::time::Duration;

use beehive_model::Message;
use beehive_socket::blocking::{Client, Endpoint, Server, ServerOptions};
use beehive_socket::session::{SessionConfig, TransportKind};

const T: Duration = Duration::from_secs(10);

#[test]
fn a_request_and_its_answer_are_followed_through_both_connections() {
    let collector = Collector::default();
    tracing::subscriber::set_global_default(collector.clone()).unwrap();
    let dir = temp_dir("btrace");
    let endpoint = Endpoint::unix_packet(dir.join("s.sock"));
    let config = SessionConfig::server("socketserver", TransportKind::Packet).local_module("echo", "echo-group");
    let (sessions_tx, sessions) = std::sync::mpsc::channel();
    let server = Server::bind_with_handler(&endpoint, config, ServerOptions::default(), move |conn, incoming| {
        let _ = sessions_tx.send(conn.session_id().to_string());
        let body = format!("echo:{}", incoming.message.content().as_str().unwrap_or_default());
        conn.send_resp(incoming.message.new_response(body)).unwrap();
    })
    .unwrap();
    let client = Client::connect(&endpoint, SessionConfig::client("edge", TransportKind::Packet)).unwrap();
    let client_session = client.session_id().to_string();

    let request = Message::new("").build_router("edge", "grp", "res", "query").fill_body("ping");
    let id = request.id().to_owned();
    let answer = client.send_sync("echo", request, T).unwrap();
    assert_eq!(answer.content().as_str(), Some("echo:ping"));
    let server_session = sessions.recv_timeout(T).unwrap();

    // Out of the client's connection into the server's.
    let request_fields = [("msg_id", id.as_str()), ("source", "edge"), ("destination", "echo"), ("operation", "query")];
    let queued = collector.one_from("queued for writing", &request_fields, "client", &client_session);
    assert_eq!(queued.get("parent_msg_id"), Some(""));
    collector.one_from("read from a connection", &request_fields, "server", &server_session);
    // The answer back.
    collector.assert_answer_traced(&answer, &id, &server_session, &client_session);

    // A send the session refuses is an event too, with its error.
    let stray = Message::new("").build_router("edge", "grp", "res", "update").fill_body("lost");
    let stray_id = stray.id().to_owned();
    assert!(client.send("nosuchmodule", stray).is_err());
    let refused = collector.one("not queued", &[("msg_id", stray_id.as_str()), ("destination", "nosuchmodule")]);
    assert!(refused.get("error").is_some_and(|e| !e.is_empty()), "{refused:?}");
    assert!(collector.events.lock().unwrap().iter().all(|e| e.level == tracing::Level::TRACE));
    drop(client);
    drop(server);
}
