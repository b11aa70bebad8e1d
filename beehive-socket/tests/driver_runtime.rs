//! The tokio driver for programs without a runtime: `DriverRuntime` runs
//! the connections, modules are threads and use the hive's blocking calls.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use beehive_context::{Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::asyncio::{ConnectOptions, DriverRuntime, Endpoint, ServerOptions, SocketBackend};
use beehive_socket::session::{SessionConfig, TransportKind};
use common::temp_dir;

const T: Duration = Duration::from_secs(10);

fn msg(source: &str, body: &str) -> Message {
    Message::new("").build_router(source, "grp", "res", "query").fill_body(body)
}

#[test]
fn thread_modules_talk_across_hives_through_a_runtime_of_their_own() {
    let dir = temp_dir("driver-runtime");
    let endpoint = Endpoint::unix_packet(dir.join("hive.sock"));

    // The hub: a thread module `echo` answering every request.
    let hub_runtime = DriverRuntime::new().unwrap();
    let hub = Hive::new();
    let hub_backend = SocketBackend::new();
    hub.add_backend(hub_backend.clone());
    hub.register(SimpleModule::new("echo", "echo", |hive: &Hive| {
        while let Ok(m) = hive.receive("echo") {
            if m.is_sync() {
                let body = format!("echo:{}", m.content().as_str().unwrap_or_default());
                hive.send_resp(m.new_response(body))?;
            }
        }
        Ok(())
    }))
    .unwrap();
    hub.start().unwrap();
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let _server = hub_runtime.serve(&hub_backend, &hub, &endpoint, config, ServerOptions::default()).unwrap();

    // The edge: module `edge`, joined to the hub, used from plain threads.
    let edge_runtime = DriverRuntime::with_workers(1).unwrap();
    let edge = Hive::new();
    let edge_backend = SocketBackend::new();
    edge.add_backend(edge_backend.clone());
    let config = SessionConfig::client("edge", TransportKind::Packet);
    let _client = edge_runtime.connect(&edge_backend, &edge, &endpoint, config, ConnectOptions::default()).unwrap();

    let answer = edge.send_sync("echo", msg("edge", "up"), T).unwrap();
    assert_eq!(answer.content().as_str(), Some("echo:up"));
    // The hub reaches the edge's module by name, from a thread.
    hub.send("edge", msg("echo", "down")).unwrap();
    let got = edge.receive_timeout("edge", T).unwrap().expect("the hub's message within the bound");
    assert_eq!(got.content().as_str(), Some("down"));
    // And the edge answers a request of the hub from another thread.
    let responder = {
        let edge = edge.clone();
        std::thread::spawn(move || {
            let req = edge.receive_timeout("edge", T).unwrap().expect("the hub's request within the bound");
            edge.send_resp(req.new_response("edge here")).unwrap();
        })
    };
    let answer = hub.send_sync("edge", msg("echo", "who?"), T).unwrap();
    assert_eq!(answer.content().as_str(), Some("edge here"));
    responder.join().unwrap();
    hub.shutdown(T);
    edge.shutdown(T);
}
