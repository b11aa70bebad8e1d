//! TLS in the tokio driver: mutual and server-only TLS with round trips
//! both ways and frames larger than a TLS record, refused clients (wrong
//! CA, plain TCP) seen within a bound, and a hive served by the blocking
//! driver with TLS as the peer.
#![cfg(all(feature = "tokio", feature = "tls", feature = "yaml"))]

mod common;

use std::future::Future;
use std::time::Duration;

use beehive_context::{Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::asyncio::{Client, DriverError, DriverOptions, Endpoint, Server, ServerEvent, ServerOptions};
use beehive_socket::session::{SessionConfig, TransportKind};
use beehive_socket::{blocking, SocketBackend, SocketModuleConfig, StreamFraming};
use common::{free_address, server_only_tls, tls_entries, tls_lines, tls_of, tls_read_error, Pki};

const T: Duration = Duration::from_secs(10);
const RAW: TransportKind = TransportKind::Stream(StreamFraming::Raw);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {T:?}"),
    }
}

/// An async TLS server whose module `hub` answers "re: <body>".
async fn tls_server(cfg: &SocketModuleConfig) -> (Server, Endpoint) {
    let entry = cfg.servers().next().unwrap();
    let endpoint = Endpoint::from_config(entry).unwrap();
    let options = ServerOptions::default().driver(DriverOptions::default().tls(tls_of(cfg, true)));
    let config = SessionConfig::server("socketserver", RAW).local_module("hub", "hubgroup").max_frame_len(1 << 20);
    let server = Server::bind(&endpoint, config, options).await.unwrap();
    let endpoint = server.endpoint().clone();
    (server, endpoint)
}

fn answer(server: Server) -> tokio::task::JoinHandle<Server> {
    tokio::spawn(async move {
        let mut server = server;
        while let Some(i) = server.recv().await {
            if i.message.is_sync() {
                let body = format!("re: {}", i.message.content().as_str().unwrap_or_default());
                let _ = server.handle().send_resp(i.message.new_response(body)).await;
            }
        }
        server
    })
}

async fn tls_client(cfg: &SocketModuleConfig, endpoint: &Endpoint) -> Result<Client, DriverError> {
    let options = DriverOptions::default().tls(tls_of(cfg, false));
    let config =
        SessionConfig::client("edgeclient", RAW).max_frame_len(1 << 20).handshake_timeout(Duration::from_secs(3));
    Client::connect_with(endpoint, config, options).await
}

fn msg(body: &str) -> Message {
    Message::new("").build_router("edgeclient", "g", "res", "query").fill_body(body)
}

#[tokio::test]
async fn mutual_tls_round_trips_both_ways_with_frames_larger_than_a_record() {
    let pki = Pki::new("tokio-mutual");
    let cfg = tls_entries(
        &free_address(),
        &tls_lines(&pki, Some("ca.pem"), Some("server")),
        &tls_lines(&pki, Some("ca.pem"), Some("client")),
    );
    let (server, endpoint) = tls_server(&cfg).await;
    let handle = server.handle().clone();
    let answering = answer(server);
    let mut client = within("TLS connect", tls_client(&cfg, &endpoint)).await.unwrap();
    let answer = within("round trip", client.send_sync("hub", msg("ping"), T)).await.unwrap();
    assert_eq!(answer.content().as_str(), Some("re: ping"));
    // 300 KB: several TLS records and more than one write of plaintext.
    let big = "0123456789abcdef".repeat(300 * 1024 / 16);
    let answer = within("big round trip", client.send_sync("hub", msg(&big), T)).await.unwrap();
    assert_eq!(answer.content().as_str().map(str::len), Some(big.len() + 4));
    // Server → client.
    handle.send("edgeclient", msg("down")).await.unwrap();
    let got = within("server to client", client.recv()).await.unwrap();
    assert_eq!(got.content().as_str(), Some("down"));
    handle.shutdown();
    let _ = answering.await;
}

#[tokio::test]
async fn server_only_tls_and_the_blocking_tls_server_as_peer() {
    let pki = Pki::new("tokio-server-only");
    let cfg = server_only_tls(&pki);
    // The blocking implementation's TLS server, module `srvmod` answering.
    let hive = Hive::new();
    let backend = SocketBackend::new();
    hive.add_backend(backend.clone());
    hive.register(SimpleModule::new("srvmod", "g", |hive: &Hive| {
        while let Ok(m) = hive.receive("srvmod") {
            if m.is_sync() {
                hive.send_resp(m.new_response("secure pong"))?;
            }
        }
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    let entry = cfg.servers().next().unwrap();
    let endpoint = Endpoint::from_config(entry).unwrap();
    let options = blocking::ServerOptions::default().connection(blocking::Options::default().tls(tls_of(&cfg, true)));
    let _srv =
        backend.serve_blocking(&hive, &endpoint, cfg.server_session(entry, StreamFraming::Raw), options).unwrap();
    let client = within("TLS connect", tls_client(&cfg, &endpoint)).await.unwrap();
    let answer = within("round trip", client.send_sync("srvmod", msg("ping"), T)).await.unwrap();
    assert_eq!(answer.content().as_str(), Some("secure pong"));
    drop(client);
    hive.shutdown(T);
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused_within_the_handshake_timeout() {
    let pki = Pki::new("tokio-wrong-ca");
    let cfg = tls_entries(
        &free_address(),
        &tls_lines(&pki, None, Some("server")),
        &tls_lines(&pki, Some("other-ca.pem"), None),
    );
    let (mut server, endpoint) = tls_server(&cfg).await;
    let started = std::time::Instant::now();
    let r = within("refusal", tls_client(&cfg, &endpoint)).await;
    assert!(matches!(r, Err(DriverError::Handshake { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "refused after {:?}", started.elapsed());
    // The server saw the connection close without a registration.
    within("server event", async {
        loop {
            match server.events().recv().await {
                Some(ServerEvent::Disconnected { module: None, reason, .. }) => {
                    // The client said why before it closed: a TLS alert.
                    let error = tls_read_error(&reason);
                    assert!(error.contains("alert"), "{error}");
                    return;
                }
                Some(_) => {}
                None => panic!("server stopped"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_plain_tcp_client_gets_no_registration_from_a_tls_server() {
    let pki = Pki::new("tokio-plain");
    let cfg = tls_entries(&free_address(), &tls_lines(&pki, None, Some("server")), "");
    let (mut server, endpoint) = tls_server(&cfg).await;
    let config = SessionConfig::client("edgeclient", RAW).handshake_timeout(Duration::from_secs(2));
    let r = within("refusal", Client::connect(&endpoint, config)).await;
    match r {
        Err(DriverError::Handshake { .. }) => {}
        Err(e) => panic!("expected a failed handshake, got {e}"),
        Ok(_) => panic!("a plain client must not register with a TLS server"),
    }
    within("server event", async {
        loop {
            match server.events().recv().await {
                Some(ServerEvent::Disconnected { module: None, reason, .. }) => {
                    let error = tls_read_error(&reason);
                    assert!(error.contains("corrupt message"), "{error}");
                    return;
                }
                Some(ServerEvent::Registered { .. }) => panic!("a plain client registered"),
                Some(_) => {}
                None => panic!("server stopped"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn tls_settings_on_a_unix_socket_or_of_the_wrong_side_are_refused() {
    let pki = Pki::new("tokio-misuse");
    let cfg = server_only_tls(&pki);
    let dir = common::temp_dir("tokio-tls-misuse");
    let unix = Endpoint::unix(dir.join("s.sock"));
    let options = DriverOptions::default().tls(tls_of(&cfg, false));
    let r = Client::connect_with(&unix, SessionConfig::client("edgeclient", RAW), options).await;
    assert!(matches!(r, Err(DriverError::Unsupported(_))), "{r:?}");
    let entry = cfg.servers().next().unwrap();
    let endpoint = Endpoint::from_config(entry).unwrap();
    let options = ServerOptions::default().driver(DriverOptions::default().tls(tls_of(&cfg, false)));
    let r = Server::bind(&endpoint, SessionConfig::server("socketserver", RAW), options).await;
    assert!(matches!(r, Err(DriverError::Config(_))), "{r:?}");
}

/// A burst larger than the server's inbox, read only after the client has
/// written all of it: the server connection stops reading while the inbox
/// is full and resumes as the application reads; every message arrives, in
/// order. (Whether plaintext is left decrypted in rustls when it stops is
/// up to timing; `asyncio::io`'s unit tests check that case directly.)
#[tokio::test]
async fn a_burst_over_tls_read_late_arrives_whole_and_in_order() {
    let pki = Pki::new("tokio-burst");
    let cfg = server_only_tls(&pki);
    let (mut server, endpoint) = tls_server(&cfg).await;
    let client = within("TLS connect", tls_client(&cfg, &endpoint)).await.unwrap();
    const N: usize = 2000;
    for i in 0..N {
        within("send", client.send("hub", msg(&format!("burst {i}")))).await.unwrap();
    }
    within("flush", client.handle().flush(T)).await.unwrap();
    for i in 0..N {
        let got = within("burst message", server.recv()).await.expect("server stopped");
        assert_eq!(got.message.content().as_str(), Some(format!("burst {i}").as_str()));
    }
}

/// A TLS peer whose TCP connection ends without a `close_notify` (killed,
/// or a middlebox cut it) has closed, like a plain peer: the connection
/// ends as `PeerClosed`, not as an I/O error.
#[tokio::test]
async fn a_tls_peer_that_ends_without_close_notify_has_closed() {
    let pki = Pki::new("tokio-abrupt");
    let cfg = server_only_tls(&pki);
    let (mut server, endpoint) = tls_server(&cfg).await;
    let Some(blocking::Tls::Client { config, server_name }) = tls_of(&cfg, false) else { panic!("no client TLS") };
    let Endpoint::Tcp(address) = endpoint else { panic!("not TCP: {endpoint}") };
    within(
        "handshake and abrupt end",
        tokio::task::spawn_blocking(move || {
            let mut tcp = std::net::TcpStream::connect(address).unwrap();
            tcp.set_read_timeout(Some(T)).unwrap();
            let mut tls = rustls::ClientConnection::new(config, server_name).unwrap();
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp).unwrap();
            }
            tcp.shutdown(std::net::Shutdown::Both).unwrap();
        }),
    )
    .await
    .unwrap();
    let reason = within("disconnection", async {
        loop {
            match server.events().recv().await {
                Some(ServerEvent::Disconnected { module: None, reason, .. }) => return reason,
                Some(_) => {}
                None => panic!("server stopped"),
            }
        }
    })
    .await;
    assert!(matches!(*reason, beehive_socket::session::CloseReason::PeerClosed), "{reason:?}");
}

/// The server writes more than the socket holds to a client that has
/// stopped reading (its inbox is full): TLS records wait until the socket
/// has room, and once the client reads again every message arrives, in
/// order. A full socket is not an error. (Several frames per write used to
/// offer rustls more than its buffer limit takes, and the connection failed
/// with `WriteZero`.)
#[tokio::test]
async fn tls_records_wait_for_a_full_socket_to_drain() {
    let pki = Pki::new("tokio-full");
    let cfg = server_only_tls(&pki);
    let (server, endpoint) = tls_server(&cfg).await;
    let mut options = DriverOptions::default().tls(tls_of(&cfg, false));
    options.inbox_capacity = 1;
    let config = SessionConfig::client("edgeclient", RAW).max_frame_len(1 << 20);
    let mut client = within("TLS connect", Client::connect_with(&endpoint, config, options)).await.unwrap();
    let (sh, _incoming, mut events) = server.into_parts();
    within("registration", async {
        while !matches!(events.recv().await, Some(ServerEvent::Registered { .. }) | None) {}
    })
    .await;
    // 400 messages of 32 KB: 13 MB, far more than the client buffers while
    // nobody reads it plus what the sockets hold.
    const N: usize = 400;
    let body = |i: usize| format!("{i:06}{}", "x".repeat(32 * 1024));
    let sending = tokio::spawn(async move {
        for i in 0..N {
            sh.send("edgeclient", msg(&body(i))).await.unwrap();
        }
        sh
    });
    for i in 0..N {
        let Some(got) = within("message", client.recv()).await else {
            let mut seen = Vec::new();
            while let Some(e) = client.events().try_recv() {
                seen.push(format!("client: {e:?}"));
            }
            while let Some(e) = events.try_recv() {
                seen.push(format!("server: {e:?}"));
            }
            panic!("the connection closed at message {i}: {seen:?}");
        };
        assert_eq!(got.content().as_str().map(|s| &s[..6]), Some(format!("{i:06}").as_str()));
    }
    within("sender", sending).await.unwrap();
}
