//! TLS in the blocking driver: mutual and server-only TLS with round trips
//! both ways and frames larger than a TLS record, the tokio driver as the
//! peer, refused clients (wrong CA, plain TCP) seen within a bound, and
//! settings that do not fit refused with typed errors.
#![cfg(all(feature = "tokio", feature = "tls", feature = "yaml"))]

mod common;

use std::time::{Duration, Instant};

use beehive_model::Message;
use beehive_socket::blocking::{Client, DriverError, Endpoint, Options, Server, ServerEvent, ServerOptions};
use beehive_socket::session::{SessionConfig, TransportKind};
use beehive_socket::{SocketModuleConfig, StreamFraming};
use common::{free_address, server_only_tls, tls_entries, tls_lines, tls_of, tls_read_error, Pki};

const T: Duration = Duration::from_secs(10);
const RAW: TransportKind = TransportKind::Stream(StreamFraming::Raw);

/// A blocking TLS server whose module `hub` answers "re: <body>" on the
/// connection's thread.
fn tls_server(cfg: &SocketModuleConfig) -> (Server, Endpoint) {
    let endpoint = Endpoint::from_config(cfg.servers().next().unwrap()).unwrap();
    let options = ServerOptions::default().connection(Options::default().tls(tls_of(cfg, true)));
    let config = SessionConfig::server("socketserver", RAW).local_module("hub", "hubgroup").max_frame_len(1 << 20);
    let server = Server::bind_with_handler(&endpoint, config, options, |conn, i| {
        if i.message.is_sync() {
            let body = format!("re: {}", i.message.content().as_str().unwrap_or_default());
            let _ = conn.send_resp(i.message.new_response(body));
        }
    })
    .unwrap();
    (server, endpoint)
}

fn tls_client(cfg: &SocketModuleConfig, endpoint: &Endpoint) -> Result<Client, DriverError> {
    let config =
        SessionConfig::client("edgeclient", RAW).max_frame_len(1 << 20).handshake_timeout(Duration::from_secs(3));
    Client::connect_with(endpoint, config, Options::default().tls(tls_of(cfg, false)))
}

fn msg(body: &str) -> Message {
    Message::new("").build_router("edgeclient", "g", "res", "query").fill_body(body)
}

fn round_trips(client: &Client) {
    let answer = client.send_sync("hub", msg("ping"), T).unwrap();
    assert_eq!(answer.content().as_str(), Some("re: ping"));
    // 300 KB: several TLS records and more than one write of plaintext.
    let big = "0123456789abcdef".repeat(300 * 1024 / 16);
    let answer = client.send_sync("hub", msg(&big), T).unwrap();
    assert_eq!(answer.content().as_str().map(str::len), Some(big.len() + 4));
}

#[test]
fn mutual_tls_round_trips_both_ways_with_frames_larger_than_a_record() {
    let pki = Pki::new("blocking-mutual");
    let cfg = tls_entries(
        &free_address(),
        &tls_lines(&pki, Some("ca.pem"), Some("server")),
        &tls_lines(&pki, Some("ca.pem"), Some("client")),
    );
    let (server, endpoint) = tls_server(&cfg);
    let client = tls_client(&cfg, &endpoint).unwrap();
    round_trips(&client);
    // Server → client.
    let deadline = Instant::now() + T;
    while !server.handle().modules().contains(&"edgeclient".to_owned()) {
        assert!(Instant::now() < deadline, "the server never saw the client register");
        std::thread::yield_now();
    }
    server.handle().send("edgeclient", msg("down")).unwrap();
    let got = client.recv_timeout(T).unwrap();
    assert_eq!(got.content().as_str(), Some("down"));
}

#[test]
fn server_only_tls_with_the_tokio_driver_on_the_other_end() {
    let pki = Pki::new("blocking-server-only");
    let cfg = server_only_tls(&pki);
    // Our blocking server, the tokio client.
    let (_server, endpoint) = tls_server(&cfg);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use beehive_socket::asyncio::{Client as AsyncClient, DriverOptions};
        let config = SessionConfig::client("edgeclient", RAW).max_frame_len(1 << 20);
        let options = DriverOptions::default().tls(tls_of(&cfg, false));
        let client =
            tokio::time::timeout(T, AsyncClient::connect_with(&endpoint, config, options)).await.unwrap().unwrap();
        let big = "x".repeat(200 * 1024);
        let answer = tokio::time::timeout(T, client.send_sync("hub", msg(&big), T)).await.unwrap().unwrap();
        assert_eq!(answer.content().as_str().map(str::len), Some(big.len() + 4));
    });
    // The tokio server, our blocking client.
    let cfg = server_only_tls(&pki);
    let endpoint = Endpoint::from_config(cfg.servers().next().unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut server = rt.block_on(async {
        use beehive_socket::asyncio::{DriverOptions, Server as AsyncServer, ServerOptions as AsyncOptions};
        let options = AsyncOptions::default().driver(DriverOptions::default().tls(tls_of(&cfg, true)));
        let config = SessionConfig::server("socketserver", RAW).local_module("hub", "hubgroup").max_frame_len(1 << 20);
        AsyncServer::bind(&endpoint, config, options).await.unwrap()
    });
    rt.spawn(async move {
        while let Some(i) = server.recv().await {
            let body = format!("re: {}", i.message.content().as_str().unwrap_or_default());
            let _ = server.handle().send_resp(i.message.new_response(body)).await;
        }
    });
    let client = tls_client(&cfg, &endpoint).unwrap();
    round_trips(&client);
}

#[test]
fn a_client_trusting_another_ca_and_a_plain_client_are_refused_within_a_bound() {
    let pki = Pki::new("blocking-refused");
    let cfg = tls_entries(
        &free_address(),
        &tls_lines(&pki, Some("ca.pem"), Some("server")),
        &tls_lines(&pki, Some("other-ca.pem"), Some("client")),
    );
    let (server, endpoint) = tls_server(&cfg);
    let start = Instant::now();
    let e = tls_client(&cfg, &endpoint).unwrap_err();
    assert!(matches!(e, DriverError::Handshake { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3), "refused after {:?}", start.elapsed());
    // A plain client: the server cuts it (no TLS handshake), the client
    // learns within its handshake timeout.
    let start = Instant::now();
    let config = SessionConfig::client("edgeclient", RAW).handshake_timeout(Duration::from_secs(2));
    let e = Client::connect_with(&endpoint, config, Options::default()).unwrap_err();
    assert!(matches!(e, DriverError::Handshake { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5), "refused after {:?}", start.elapsed());
    // The server learns why each connection failed: the first client's
    // alert, the second's bytes that are not TLS.
    let deadline = Instant::now() + T;
    let mut errors = Vec::new();
    while errors.len() < 2 {
        match server.next_event(Some(deadline.saturating_duration_since(Instant::now()))) {
            Some(ServerEvent::Disconnected { reason, .. }) => errors.push(tls_read_error(&reason)),
            Some(_) => {}
            None => panic!("the server reported {} of 2 refused connections", errors.len()),
        }
    }
    assert!(errors.iter().any(|e| e.contains("alert")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("corrupt message")), "{errors:?}");
}

#[test]
fn tls_settings_that_do_not_fit_are_typed_errors() {
    let pki = Pki::new("blocking-misfit");
    let cfg = server_only_tls(&pki);
    let server_tls = Options::default().tls(tls_of(&cfg, true));
    let client_tls = Options::default().tls(tls_of(&cfg, false));
    let dir = common::temp_dir("blocking-misfit");
    let unix = Endpoint::unix_packet(dir.join("s.sock"));
    let e = Client::connect_with(&unix, SessionConfig::client("edgeclient", TransportKind::Packet), client_tls.clone())
        .unwrap_err();
    assert!(matches!(e, DriverError::Unsupported(_)), "{e}");
    let tcp = Endpoint::tcp(free_address());
    let e = Client::connect_with(&tcp, SessionConfig::client("edgeclient", RAW), server_tls.clone()).unwrap_err();
    assert!(matches!(e, DriverError::Config(_)), "{e}");
    let e =
        Server::bind(&tcp, SessionConfig::server("socketserver", RAW), ServerOptions::default().connection(client_tls))
            .unwrap_err();
    assert!(matches!(e, DriverError::Config(_)), "{e}");
}
