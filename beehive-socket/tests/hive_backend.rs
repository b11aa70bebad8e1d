//! The hive's socket backend on the tokio driver: remote modules reached
//! through `Hive` calls, a hive serving remote modules and a hive joining
//! another as a remote module, flow control, reconnection.
//!
//! Every wait is bounded; running out of time is a failure.
#![cfg(feature = "tokio")]

mod common;
use common::{temp_dir, within};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use beehive_context::{ContextError, Hive, SimpleAsyncModule};
use beehive_model::Message;
use beehive_socket::asyncio::{
    BackendOptions, Client, ClientEvent, ConnectOptions, DriverError, Endpoint, HiveServer, ServerEvent, ServerOptions,
    SocketBackend,
};
use beehive_socket::session::{SessionConfig, TransportKind};

const T: Duration = Duration::from_secs(10);

fn msg(source: &str, body: &str) -> Message {
    Message::new("").build_router(source, "grp", "res", "query").fill_body(body)
}

/// A module answering every request with "<name>:<body>".
fn echo(name: &'static str) -> SimpleAsyncModule {
    SimpleAsyncModule::new(name, name, move |hive: Hive| async move {
        while let Ok(req) = hive.receive_async(name).await {
            if req.is_sync() {
                let body = format!("{name}:{}", req.content().as_str().unwrap_or_default());
                hive.send_resp_async(req.new_response(body)).await?;
            }
        }
        Ok(())
    })
}

/// A hive with the socket backend and a started `echo` module, serving on
/// `path`.
async fn serving_hive(path: &std::path::Path, options: BackendOptions) -> (Hive, Arc<SocketBackend>, HiveServer) {
    let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
    let backend = SocketBackend::with_options(options);
    hive.add_backend(backend.clone());
    hive.register_async(echo("echo")).unwrap();
    hive.start().unwrap();
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let server = backend.serve(&hive, &Endpoint::unix_packet(path), config, ServerOptions::default()).await.unwrap();
    (hive, backend, server)
}

async fn registered(server: &mut HiveServer, module: &str) {
    within("registration", T, async {
        loop {
            match server.events().recv().await {
                Some(ServerEvent::Registered { module: m, .. }) if m == module => return,
                Some(_) => {}
                None => panic!("server stopped"),
            }
        }
    })
    .await
}

/// Waits until the server saw remote module `module` disconnect (and so
/// released its name).
async fn disconnected(server: &mut HiveServer, module: &str) {
    within("disconnection", T, async {
        loop {
            match server.events().recv().await {
                Some(ServerEvent::Disconnected { module: Some(m), .. }) if m == module => return,
                Some(_) => {}
                None => panic!("server stopped"),
            }
        }
    })
    .await
}

/// Remote module `module`, connected and registered with its server.
async fn remote(endpoint: &Endpoint, module: &str) -> Client {
    Client::connect(endpoint, SessionConfig::client(module, TransportKind::Packet)).await.unwrap()
}

/// Runs remote module `client` (named `name`): it answers every request with
/// "<name>:<body>" and hands the other messages to the returned channel.
fn answering(name: &'static str, mut client: Client) -> tokio::sync::mpsc::UnboundedReceiver<Message> {
    let handle = client.handle().clone();
    let (plain_tx, plain) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = client.recv().await {
            if m.is_sync() {
                let body = format!("{name}:{}", m.content().as_str().unwrap_or_default());
                handle.send_resp(m.new_response(body)).await.unwrap();
            } else {
                plain_tx.send(m).unwrap();
            }
        }
    });
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_module_reaches_a_module_of_the_hive_and_the_answer_lists_the_hive() {
    let dir = temp_dir("reach");
    let path = dir.join("hive.sock");
    let (hive, backend, mut server) = serving_hive(&path, BackendOptions::default()).await;
    let mut tap = backend.tap(16);
    let client = remote(&Endpoint::unix_packet(&path), "edge").await;
    registered(&mut server, "edge").await;
    // The handshake answer: the server's module and the hive's modules,
    // each in its group.
    let modules = client.handle().modules();
    assert_eq!(modules.get("socketserver").map(Vec::as_slice), Some(&["socketserver".to_owned()][..]));
    assert_eq!(modules.get("echo").map(Vec::as_slice), Some(&["echo".to_owned()][..]));
    let answer = within("send_sync", T, client.send_sync("echo", msg("edge", "ping"), T)).await.unwrap();
    assert_eq!(answer.content().as_str(), Some("echo:ping"));
    assert_eq!(answer.destination(), "edge");
    // The tap saw the request (not the handshake).
    let seen = tap.try_recv().unwrap();
    assert_eq!((seen.source(), seen.destination(), seen.content().as_str()), ("edge", "echo", Some("ping")));
    assert!(tap.try_recv().is_err());
    hive.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_registered_after_the_server_started_is_listed_to_later_clients() {
    let dir = temp_dir("dynamic");
    let path = dir.join("hive.sock");
    let (hive, _backend, _server) = serving_hive(&path, BackendOptions::default()).await;
    hive.register_async(echo("late")).unwrap();
    let client = remote(&Endpoint::unix_packet(&path), "edge").await;
    assert!(client.handle().modules().contains_key("late"), "{:?}", client.handle().modules());
    hive.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hive_sends_to_remote_modules_async_blocking_and_by_group() {
    let dir = temp_dir("to-remote");
    let path = dir.join("hive.sock");
    let (hive, _backend, mut server) = serving_hive(&path, BackendOptions::default()).await;
    let endpoint = Endpoint::unix_packet(&path);
    let edge = remote(&endpoint, "edge").await;
    registered(&mut server, "edge").await;
    // The remote module answers requests with "edge:<body>".
    let mut plain = answering("edge", edge);

    let answer = within("async send_sync", T, hive.send_sync_async("edge", msg("echo", "a"), T)).await.unwrap();
    assert_eq!(answer.content().as_str(), Some("edge:a"));

    // From a thread outside the runtime, with the blocking calls.
    let h = hive.clone();
    let answer =
        within("blocking send_sync", T, tokio::task::spawn_blocking(move || h.send_sync("edge", msg("echo", "b"), T)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(answer.content().as_str(), Some("edge:b"));

    hive.send_async("edge", msg("echo", "plain")).await.unwrap();
    let got = within("plain message", T, plain.recv()).await.unwrap();
    assert_eq!(got.content().as_str(), Some("plain"));
    assert_eq!(got.destination(), "edge");
    assert_eq!(got.message_type(), "unixpacket");

    // Go registers a remote module in a group of its own name.
    hive.send_to_group_async("edge", msg("echo", "to the group")).await.unwrap();
    let got = within("group message", T, plain.recv()).await.unwrap();
    assert_eq!(got.content().as_str(), Some("to the group"));
    hive.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_remote_module_leaves_sends_to_it_and_its_group_fail() {
    let dir = temp_dir("left");
    let path = dir.join("hive.sock");
    let (hive, backend, mut server) = serving_hive(&path, BackendOptions::default()).await;
    let edge = remote(&Endpoint::unix_packet(&path), "edge").await;
    registered(&mut server, "edge").await;
    assert_eq!(backend.remote_modules(), vec!["edge".to_owned()]);
    edge.close();
    disconnected(&mut server, "edge").await;
    assert!(backend.remote_modules().is_empty());
    assert_eq!(hive.send("edge", msg("echo", "x")), Err(ContextError::NotConnected { module: "edge".into() }));
    assert!(matches!(hive.send_sync_async("edge", msg("echo", "x"), T).await, Err(ContextError::NotConnected { .. })));
    match hive.send_to_group("edge", msg("echo", "x")) {
        Err(ContextError::GroupDelivery { failed, .. }) => {
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].0, "edge");
        }
        other => panic!("a group of disconnected members must fail, got {other:?}"),
    }
    hive.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_pauses_only_the_connection_that_feeds_it() {
    let dir = temp_dir("full");
    let path = dir.join("hive.sock");
    let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).channel_capacity(4).build();
    // Longer than the test: a stall shared with other connections would
    // show as a round trip that never completes.
    let backend = SocketBackend::with_options(BackendOptions::default().delivery_wait(Duration::from_secs(60)));
    hive.add_backend(backend.clone());
    hive.register_async(echo("echo")).unwrap();
    // A module that never reads.
    hive.add_module("sink", "channel").unwrap();
    hive.start().unwrap();
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let endpoint = Endpoint::unix_packet(&path);
    let _server = backend.serve(&hive, &endpoint, config, ServerOptions::default()).await.unwrap();

    let flooder = remote(&endpoint, "flooder").await;
    let good = remote(&endpoint, "good").await;
    // Far more than the sink's inbox holds: the flooder's connection stops
    // being read once the inbox is full.
    for i in 0..64 {
        flooder.handle().send_message(msg("flooder", &format!("{i}")).set_destination("sink")).await.unwrap();
    }
    // Meanwhile the other connection gets its answers.
    for i in 0..20 {
        let answer =
            within("round trip beside a paused connection", T, good.send_sync("echo", msg("good", "hi"), T)).await;
        assert_eq!(answer.unwrap().content().as_str(), Some("echo:hi"), "round trip {i}");
    }
    // The flooder, still connected, was only paused: once the sink reads,
    // every message arrives, in order, none dropped.
    assert!(flooder.handle().is_connected());
    for i in 0..64 {
        let m = within("the paused connection resumes", T, hive.receive_async("sink")).await.unwrap();
        assert_eq!(m.content().as_str(), Some(format!("{i}").as_str()));
    }
    hive.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_paused_by_a_full_inbox_resumes_after_the_delivery_wait() {
    let dir = temp_dir("give-up");
    let path = dir.join("hive.sock");
    let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).channel_capacity(1).build();
    let wait = Duration::from_millis(50);
    let backend = SocketBackend::with_options(BackendOptions::default().delivery_wait(wait));
    hive.add_backend(backend.clone());
    hive.register_async(echo("echo")).unwrap();
    hive.add_module("sink", "channel").unwrap();
    hive.start().unwrap();
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let endpoint = Endpoint::unix_packet(&path);
    let _server = backend.serve(&hive, &endpoint, config, ServerOptions::default()).await.unwrap();
    let peer = remote(&endpoint, "peer").await;
    for i in 0..3 {
        peer.handle().send_message(msg("peer", &format!("{i}")).set_destination("sink")).await.unwrap();
    }
    // Behind the two messages the full inbox cannot take, a request: it is
    // answered once both were given up, each after the delivery wait.
    let started = tokio::time::Instant::now();
    let answer = within("request behind a full inbox", T, peer.send_sync("echo", msg("peer", "q"), T)).await;
    assert_eq!(answer.unwrap().content().as_str(), Some("echo:q"));
    assert!(started.elapsed() >= wait, "answered after {:?}", started.elapsed());
    let first = hive.receive_timeout("sink", Duration::ZERO).unwrap();
    assert_eq!(first.map(|m| m.content().as_str().map(str::to_owned)), Some(Some("0".to_owned())));
    assert_eq!(hive.receive_timeout("sink", Duration::ZERO).unwrap().map(|m| m.id().to_owned()), None);
    hive.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hive_joins_another_as_a_remote_module_and_rejoins_after_the_server_restarts() {
    let dir = temp_dir("join");
    let path = dir.join("hive.sock");
    let endpoint = Endpoint::unix_packet(&path);
    let (hub, hub_backend, server) = serving_hive(&path, BackendOptions::default()).await;

    // The edge hive: module "edge" on its socket backend.
    let edge = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
    let edge_backend = SocketBackend::new();
    edge.add_backend(edge_backend.clone());
    let options = ConnectOptions::default().retry(Duration::from_millis(20), Duration::from_millis(200));
    let mut client = edge_backend
        .connect(&edge, &endpoint, SessionConfig::client("edge", TransportKind::Packet), options)
        .await
        .unwrap();
    assert!(edge_backend.remote_modules().contains(&"echo".to_owned()));

    // Edge → hub: the hub's echo module, by name, through the edge hive.
    let answer = within("edge → hub", T, edge.send_sync_async("echo", msg("edge", "up"), T)).await.unwrap();
    assert_eq!(answer.content().as_str(), Some("echo:up"));

    // Hub → edge: into the edge hive's inbox of module "edge".
    hub.send_async("edge", msg("echo", "down")).await.unwrap();
    let got = within("hub → edge", T, edge.receive_async("edge")).await.unwrap();
    assert_eq!(got.content().as_str(), Some("down"));

    // The hub's server goes away and comes back on the same path.
    drop(server);
    within("disconnect", T, async {
        loop {
            match client.events().recv().await {
                Some(ClientEvent::Disconnected { .. }) => return,
                Some(_) => {}
                None => panic!("client stopped"),
            }
        }
    })
    .await;
    assert!(matches!(edge.send_sync_async("echo", msg("edge", "x"), T).await, Err(ContextError::NotConnected { .. })));
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let _server = hub_backend.serve(&hub, &endpoint, config, ServerOptions::default()).await.unwrap();
    within("reconnect", T, async {
        loop {
            match client.events().recv().await {
                Some(ClientEvent::Connected { .. }) => return,
                Some(_) => {}
                None => panic!("client stopped"),
            }
        }
    })
    .await;
    let answer = within("after reconnecting", T, edge.send_sync_async("echo", msg("edge", "again"), T)).await.unwrap();
    assert_eq!(answer.content().as_str(), Some("echo:again"));
    client.shutdown();
    hub.shutdown_async(T).await;
    edge.shutdown_async(T).await;
}

#[test]
fn a_socket_send_sync_keeps_a_current_thread_runtime_free() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = temp_dir("current");
        let path = dir.join("hive.sock");
        let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
        let backend = SocketBackend::new();
        hive.add_backend(backend.clone());
        hive.start().unwrap();
        let endpoint = Endpoint::unix_packet(&path);
        let config = SessionConfig::server("socketserver", TransportKind::Packet);
        let mut server = backend.serve(&hive, &endpoint, config, ServerOptions::default()).await.unwrap();
        let mut edge = remote(&endpoint, "edge").await;
        registered(&mut server, "edge").await;
        // The remote module answers only once the ticker has made progress
        // while the request was waiting: the request must not hold the
        // only thread.
        let ticks = Arc::new(AtomicU64::new(0));
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                let mut go = Some(go_tx);
                loop {
                    if ticks.fetch_add(1, Ordering::SeqCst) == 100 {
                        if let Some(go) = go.take() {
                            let _ = go.send(());
                        }
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let handle = edge.handle().clone();
        tokio::spawn(async move {
            let req = edge.recv().await.unwrap();
            go_rx.await.unwrap();
            handle.send_resp(req.new_response("late")).await.unwrap();
        });
        let answer = within("send_sync", T, hive.send_sync_async("edge", msg("x", "q"), T)).await.unwrap();
        assert_eq!(answer.content().as_str(), Some("late"));
        assert!(ticks.load(Ordering::SeqCst) > 100);
        ticker.abort();
        hive.shutdown_async(T).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_not_installed_in_the_hive_is_refused() {
    let dir = temp_dir("not-installed");
    let hive = Hive::new();
    let backend = SocketBackend::new();
    let config = SessionConfig::server("socketserver", TransportKind::Packet);
    let r = backend.serve(&hive, &Endpoint::unix_packet(dir.join("x.sock")), config, ServerOptions::default()).await;
    assert!(matches!(r, Err(DriverError::Config(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_sync_over_sockets_and_a_module_that_registers_again_is_one_member() {
    let dir = temp_dir("group-sync");
    let path = dir.join("hive.sock");
    let (hive, _backend, mut server) = serving_hive(&path, BackendOptions::default()).await;
    let endpoint = Endpoint::unix_packet(&path);
    // `edge` registers, leaves and registers again (Go: in a group of its
    // own name each time).
    let first = remote(&endpoint, "edge").await;
    registered(&mut server, "edge").await;
    first.close();
    // The name is free again once the server saw the connection go.
    disconnected(&mut server, "edge").await;
    let edge = remote(&endpoint, "edge").await;
    registered(&mut server, "edge").await;
    let mut plain = answering("edge", edge);
    // One copy per member, however often it registered.
    hive.send_to_group_async("edge", msg("echo", "once")).await.unwrap();
    hive.send_async("edge", msg("echo", "marker")).await.unwrap();
    let got = within("group copy", T, plain.recv()).await.unwrap();
    assert_eq!(got.content().as_str(), Some("once"));
    let got = within("marker", T, plain.recv()).await.unwrap();
    assert_eq!(got.content().as_str(), Some("marker"), "a second copy of the group message arrived");
    // A synchronous broadcast: the member's answer comes back to the keeper.
    let h = hive.clone();
    let answers = within(
        "group sync",
        T,
        tokio::task::spawn_blocking(move || h.send_to_group_sync("edge", msg("echo", "all"), T)),
    )
    .await
    .unwrap()
    .unwrap();
    let bodies: Vec<_> = answers.iter().map(|m| m.content().as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(bodies, ["edge:all"]);
    hive.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_hive_delivers_by_destination_and_the_rest_to_its_own_module() {
    let dir = temp_dir("client-dest");
    let path = dir.join("hive.sock");
    let (hub, _hub_backend, mut server) = serving_hive(&path, BackendOptions::default()).await;
    let edge = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
    let edge_backend = SocketBackend::new();
    edge.add_backend(edge_backend.clone());
    // Another module of the edge process, on the in-process backend.
    edge.add_module("side", "channel").unwrap();
    let endpoint = Endpoint::unix_packet(&path);
    let _client = edge_backend
        .connect(&edge, &endpoint, SessionConfig::client("edge", TransportKind::Packet), ConnectOptions::default())
        .await
        .unwrap();
    registered(&mut server, "edge").await;
    let h = server.handle().clone();
    // Over edge's connection: for `side`, for nobody, for a module of the
    // hub (which is not in the edge process).
    for (dest, body) in [("side", "to side"), ("", "to nobody"), ("echo", "to a hub module"), ("edge", "to edge")] {
        h.send_message("edge", msg("echo", body).set_destination(dest)).await.unwrap();
    }
    let got = within("side", T, edge.receive_async("side")).await.unwrap();
    assert_eq!(got.content().as_str(), Some("to side"));
    for body in ["to nobody", "to a hub module", "to edge"] {
        let got = within("edge", T, edge.receive_async("edge")).await.unwrap();
        assert_eq!(got.content().as_str(), Some(body));
    }
    hub.shutdown_async(T).await;
    edge.shutdown_async(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_between_two_remote_modules_goes_through_the_hive() {
    let dir = temp_dir("remote-resp");
    let path = dir.join("hive.sock");
    let (hive, _backend, mut server) = serving_hive(&path, BackendOptions::default()).await;
    let endpoint = Endpoint::unix_packet(&path);
    let mut a = remote(&endpoint, "a").await;
    registered(&mut server, "a").await;
    let mut b = remote(&endpoint, "b").await;
    registered(&mut server, "b").await;
    // b asks a through the hive (a is not in b's module list: the message
    // carries its destination), a answers, the hive forwards the answer.
    let request = msg("b", "question").set_destination("a").set_sync(true);
    b.handle().send_message(request.clone()).await.unwrap();
    let got = within("request at a", T, a.recv()).await.unwrap();
    assert_eq!(got.id(), request.id());
    a.handle().send_resp(got.new_response("answer")).await.unwrap();
    let answer = within("answer at b", T, b.recv()).await.unwrap();
    assert_eq!((answer.parent_id(), answer.content().as_str()), (request.id(), Some("answer")));
    hive.shutdown_async(T).await;
}
