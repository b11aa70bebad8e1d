//! The hive's socket backend on the blocking driver: thread modules of
//! hives without a runtime reaching each other over sockets, flow control,
//! reconnection, and async calls that do not block their executor.
//!
//! Every wait is bounded; running out of time is a failure.
#![cfg(feature = "tokio")]

mod common;
use common::temp_dir;

use std::sync::Arc;
use std::time::{Duration, Instant};

use beehive_context::{ContextError, Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::asyncio::{BackendOptions, SocketBackend};
use beehive_socket::blocking::{Client, ClientEvent, ConnectOptions, Endpoint, Server, ServerEvent, ServerOptions};
use beehive_socket::session::{SessionConfig, TransportKind};

const T: Duration = Duration::from_secs(10);

fn msg(source: &str, body: &str) -> Message {
    Message::new("").build_router(source, "grp", "res", "query").fill_body(body)
}

/// A thread module answering every request with "<name>:<body>".
fn echo(name: &'static str) -> SimpleModule {
    SimpleModule::new(name, name, move |hive: &Hive| {
        while let Ok(req) = hive.receive(name) {
            if req.is_sync() {
                let body = format!("{name}:{}", req.content().as_str().unwrap_or_default());
                hive.send_resp(req.new_response(body))?;
            }
        }
        Ok(())
    })
}

fn server_event(server: &Server, what: &str, pred: impl Fn(&ServerEvent) -> bool) {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.next_event(Some(left)) {
            Some(e) if pred(&e) => return,
            Some(_) => {}
            None => panic!("{what}: no such event within {T:?}"),
        }
    }
}

fn client_event(client: &beehive_socket::blocking::HiveClient, what: &str, pred: impl Fn(&ClientEvent) -> bool) {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event(Some(left)) {
            Some(e) if pred(&e) => return,
            Some(_) => {}
            None => panic!("{what}: no such event within {T:?}"),
        }
    }
}

/// A hive with the socket backend and a started thread module `echo`,
/// serving on `path` with the blocking driver.
fn serving_hive(path: &std::path::Path, hive: Hive, options: BackendOptions) -> (Hive, Arc<SocketBackend>, Server) {
    let backend = SocketBackend::with_options(options);
    hive.add_backend(backend.clone());
    hive.register(echo("echo")).unwrap();
    hive.start().unwrap();
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let server = backend.serve_blocking(&hive, &Endpoint::unix_packet(path), config, ServerOptions::default()).unwrap();
    (hive, backend, server)
}

/// The edge hive: module `edge` on a socket backend with `options`,
/// joined to the hive serving `endpoint` (blocking driver).
fn joined_edge(
    endpoint: &Endpoint,
    options: BackendOptions,
    connect: ConnectOptions,
) -> (Hive, Arc<SocketBackend>, beehive_socket::blocking::HiveClient) {
    let edge = Hive::new();
    let backend = SocketBackend::with_options(options);
    edge.add_backend(backend.clone());
    let client = backend
        .connect_blocking(&edge, endpoint, SessionConfig::client("edge", TransportKind::Packet), connect)
        .unwrap();
    (edge, backend, client)
}

#[test]
fn a_remote_module_reaches_the_hive_and_the_hive_reaches_it() {
    let dir = temp_dir("hb-reach");
    let path = dir.join("hive.sock");
    let (hive, backend, server) = serving_hive(&path, Hive::new(), BackendOptions::default());
    let client =
        Client::connect(&Endpoint::unix_packet(&path), SessionConfig::client("edge", TransportKind::Packet)).unwrap();
    server_event(&server, "registration", |e| matches!(e, ServerEvent::Registered { module, .. } if module == "edge"));
    // The handshake answer lists the server's module and the hive's.
    let modules = client.modules();
    assert_eq!(modules.get("socketserver").map(Vec::as_slice), Some(&["socketserver".to_owned()][..]));
    assert_eq!(modules.get("echo").map(Vec::as_slice), Some(&["echo".to_owned()][..]));
    let answer = client.send_sync("echo", msg("edge", "ping"), T).unwrap();
    assert_eq!((answer.content().as_str(), answer.destination()), (Some("echo:ping"), "edge"));
    assert_eq!(backend.remote_modules(), vec!["edge".to_owned()]);

    // The hive to the remote module: a send, a group send, a request.
    let client = Arc::new(client);
    let answerer = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || {
            let mut plain = Vec::new();
            while let Some(m) = client.recv() {
                if m.is_sync() {
                    client
                        .send_resp(m.new_response(format!("edge:{}", m.content().as_str().unwrap_or_default())))
                        .unwrap();
                } else {
                    plain.push(m.content().as_str().unwrap_or_default().to_owned());
                }
            }
            plain
        })
    };
    hive.send("edge", msg("echo", "one")).unwrap();
    hive.send_to_group("edge", msg("echo", "two")).unwrap();
    let answer = hive.send_sync("edge", msg("echo", "three"), T).unwrap();
    assert_eq!(answer.content().as_str(), Some("edge:three"));
    // After it leaves, sends to it fail instead of queueing.
    client.close();
    server_event(&server, "leave", |e| matches!(e, ServerEvent::Disconnected { module: Some(m), .. } if m == "edge"));
    assert!(matches!(hive.send("edge", msg("echo", "x")), Err(ContextError::NotConnected { .. })));
    let plain = answerer.join().unwrap();
    assert_eq!(plain, vec!["one".to_owned(), "two".to_owned()]);
    hive.shutdown(T);
}

#[test]
fn two_hives_of_thread_modules_talk_and_rejoin_after_the_server_restarts() {
    let dir = temp_dir("hb-join");
    let path = dir.join("hive.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let (hub, hub_backend, server) = serving_hive(&path, Hive::new(), BackendOptions::default());
    let options = ConnectOptions::default().retry(Duration::from_millis(20), Duration::from_millis(200));
    let (edge, edge_backend, mut client) = joined_edge(&endpoint, BackendOptions::default(), options);
    assert_eq!(client.module(), "edge");
    assert!(edge_backend.remote_modules().contains(&"echo".to_owned()));
    // Edge → hub, by name, through the edge hive; from several threads.
    let askers: Vec<_> = (0..4)
        .map(|t| {
            let edge = edge.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let body = format!("{t}.{i}");
                    let answer = edge.send_sync("echo", msg("edge", &body), T).unwrap();
                    assert_eq!(answer.content().as_str(), Some(format!("echo:{body}").as_str()));
                }
            })
        })
        .collect();
    for a in askers {
        a.join().unwrap();
    }
    // Hub → edge: into the edge hive's inbox of module "edge".
    hub.send("edge", msg("echo", "down")).unwrap();
    let got = edge.receive_timeout("edge", T).unwrap().expect("a message for edge");
    assert_eq!(got.content().as_str(), Some("down"));

    // The hub's server goes away and comes back on the same path.
    drop(server);
    client_event(&client, "disconnect", |e| matches!(e, ClientEvent::Disconnected { .. }));
    assert!(matches!(edge.send_sync("echo", msg("edge", "x"), T), Err(ContextError::NotConnected { .. })));
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let _server = hub_backend.serve_blocking(&hub, &endpoint, config, ServerOptions::default()).unwrap();
    client_event(&client, "reconnect", |e| matches!(e, ClientEvent::Connected { .. }));
    let answer = edge.send_sync("echo", msg("edge", "again"), T).unwrap();
    assert_eq!(answer.content().as_str(), Some("echo:again"));
    client.shutdown();
    hub.shutdown(T);
    edge.shutdown(T);
}

#[test]
fn a_full_inbox_pauses_only_the_connection_that_feeds_it() {
    let dir = temp_dir("hb-full");
    let path = dir.join("hive.sock");
    let endpoint = Endpoint::unix_packet(&path);
    // Longer than the test: a stall shared with other connections would
    // show as a round trip that never completes.
    let options = BackendOptions::default().delivery_wait(Duration::from_secs(60));
    let hive = Hive::builder().channel_capacity(4).build();
    hive.add_module("sink", "channel").unwrap();
    let (hive, _backend, _server) = serving_hive(&path, hive, options);
    let flooder = Client::connect(&endpoint, SessionConfig::client("flooder", TransportKind::Packet)).unwrap();
    let good = Client::connect(&endpoint, SessionConfig::client("good", TransportKind::Packet)).unwrap();
    for i in 0..64 {
        flooder.send_message(msg("flooder", &format!("{i}")).set_destination("sink")).unwrap();
    }
    for i in 0..20 {
        let answer = good.send_sync("echo", msg("good", "hi"), T).unwrap_or_else(|e| panic!("round trip {i}: {e}"));
        assert_eq!(answer.content().as_str(), Some("echo:hi"));
    }
    assert!(flooder.is_connected());
    for i in 0..64 {
        let m = hive.receive_timeout("sink", T).unwrap().unwrap_or_else(|| panic!("message {i} missing"));
        assert_eq!(m.content().as_str(), Some(format!("{i}").as_str()));
    }
    hive.shutdown(T);
}

#[test]
fn an_async_request_over_a_blocking_connection_leaves_its_runtime_free() {
    let dir = temp_dir("hb-async");
    let path = dir.join("hive.sock");
    // The hub answers after a pause, on a thread module.
    let hub = Hive::new();
    let hub_backend = SocketBackend::new();
    hub.add_backend(hub_backend.clone());
    hub.register(SimpleModule::new("slow", "slow", |hive: &Hive| {
        while let Ok(req) = hive.receive("slow") {
            std::thread::sleep(Duration::from_millis(200));
            hive.send_resp(req.new_response("late"))?;
        }
        Ok(())
    }))
    .unwrap();
    hub.start().unwrap();
    let endpoint = Endpoint::unix_packet(&path);
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let _server = hub_backend.serve_blocking(&hub, &endpoint, config, ServerOptions::default()).unwrap();
    let (edge, _edge_backend, _client) = joined_edge(&endpoint, BackendOptions::default(), ConnectOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (answer, waited, ticks) = rt.block_on(async {
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let started = tokio::time::Instant::now();
        let answer = tokio::time::timeout(T, edge.send_sync_async("slow", msg("edge", "q"), T)).await.unwrap();
        let waited = started.elapsed();
        ticker.abort();
        (answer, waited, ticks.load(std::sync::atomic::Ordering::Relaxed))
    });
    assert_eq!(answer.unwrap().content().as_str(), Some("late"));
    // While the request waited for its answer (about 200 ms), the ticker on
    // the same thread kept running.
    assert!(waited >= Duration::from_millis(150), "answered after {waited:?}");
    assert!(ticks >= 5, "the runtime ticked {ticks} times in {waited:?}");
    hub.shutdown(T);
    edge.shutdown(T);
}

#[test]
fn a_joined_hive_whose_module_does_not_read_is_paused_and_loses_nothing() {
    // The edge module's inbox holds 4; the hub sends 64 before the edge
    // reads: the edge connection waits for room instead of dropping.
    let dir = temp_dir("hb-edge-full");
    let path = dir.join("hive.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let (hub, _hub_backend, _server) = serving_hive(&path, Hive::new(), BackendOptions::default());
    let options = BackendOptions::default().inbox_capacity(4).delivery_wait(Duration::from_secs(60));
    let (edge, _edge_backend, _client) = joined_edge(&endpoint, options, ConnectOptions::default());
    for i in 0..64 {
        hub.send("edge", msg("echo", &format!("{i}"))).unwrap();
    }
    // A response behind the 64 on the same connection: once it is here,
    // all 64 were read, and at most 4 fit in the inbox.
    let answer = edge.send_sync("echo", msg("edge", "behind"), T).unwrap();
    assert_eq!(answer.content().as_str(), Some("echo:behind"));
    for i in 0..64 {
        let m = edge.receive_timeout("edge", T).unwrap().unwrap_or_else(|| panic!("message {i} missing"));
        assert_eq!(m.content().as_str(), Some(format!("{i}").as_str()));
    }
    hub.shutdown(T);
    edge.shutdown(T);
}
