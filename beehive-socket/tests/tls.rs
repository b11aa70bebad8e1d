//! TCP with TLS: server authentication, mutual TLS, and refused clients.

use std::sync::Arc;
use std::time::Duration;

use beehive_context::{Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::{ClientOptions, SocketClient, SocketContext, SocketModuleConfig, SocketServer};

const T: Duration = Duration::from_secs(10);

mod common;
use common::{free_address, Pki};

fn yaml(address: &str, server_tls: &str, client_tls: &str) -> SocketModuleConfig {
    SocketModuleConfig::from_yaml(&format!(
        "- module: socketserver\n  server: true\n  address: \"{address}\"\n  sockettype: tcp\n  connmax: 4\n  buffersize: 65536\n{server_tls}- module: edgeclient\n  address: \"{address}\"\n  sockettype: tcp\n  buffersize: 65536\n{client_tls}"
    ))
    .unwrap()
}

fn start(cfg: &SocketModuleConfig) -> (Hive, SocketServer) {
    let hive = Hive::new();
    let ctx = Arc::new(SocketContext::new());
    hive.add_backend(ctx.clone());
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
    let srv = SocketServer::start(&hive, &ctx, cfg, cfg.servers().next().unwrap()).unwrap();
    (hive, srv)
}

fn client(cfg: &SocketModuleConfig) -> (Hive, SocketClient) {
    let hive = Hive::new();
    let ctx = Arc::new(SocketContext::new());
    hive.add_backend(ctx.clone());
    let options = ClientOptions { retry_interval: Duration::from_millis(50), ..ClientOptions::default() };
    let c = SocketClient::start(&hive, &ctx, cfg.client("edgeclient").unwrap(), options).unwrap();
    (hive, c)
}

fn tls_lines(pki: &Pki, ca: &str, cert: Option<&str>) -> String {
    let mut s = format!("  ca: {}\n", pki.path(ca));
    if let Some(name) = cert {
        s += &format!("  cert: {}\n  key: {}\n", pki.path(&format!("{name}.pem")), pki.path(&format!("{name}.key")));
    }
    s
}

#[test]
fn mutual_tls_round_trips_both_ways() {
    let pki = Pki::new("mutual");
    let cfg =
        yaml(&free_address(), &tls_lines(&pki, "ca.pem", Some("server")), &tls_lines(&pki, "ca.pem", Some("client")));
    let (server_hive, _srv) = start(&cfg);
    let (client_hive, c) = client(&cfg);
    assert!(c.wait_connected(1, T), "no TLS handshake");
    let resp =
        client_hive.send_sync("srvmod", Message::new("").set_route("edgeclient", "").fill_body("ping"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("secure pong"));
    server_hive.send("edgeclient", Message::new("").set_route("srvmod", "").fill_body("down")).unwrap();
    assert_eq!(client_hive.receive_timeout("edgeclient", T).unwrap().unwrap().content().as_str(), Some("down"));
    server_hive.send_to_group("edgeclient", Message::new("").set_route("srvmod", "").fill_body("group")).unwrap();
    assert_eq!(client_hive.receive_timeout("edgeclient", T).unwrap().unwrap().content().as_str(), Some("group"));
    client_hive.request_shutdown();
}

#[test]
fn server_only_tls_without_client_certificates() {
    let pki = Pki::new("server-only");
    let server_tls = format!("  cert: {}\n  key: {}\n", pki.path("server.pem"), pki.path("server.key"));
    let cfg = yaml(&free_address(), &server_tls, &tls_lines(&pki, "ca.pem", None));
    let (_server_hive, _srv) = start(&cfg);
    let (client_hive, c) = client(&cfg);
    assert!(c.wait_connected(1, T));
    let resp = client_hive.send_sync("srvmod", Message::new("").set_route("edgeclient", "").fill_body("x"), T).unwrap();
    assert_eq!(resp.content().as_str(), Some("secure pong"));
    client_hive.request_shutdown();
}

fn refused(server_tls: String, client_tls: String) {
    let cfg = yaml(&free_address(), &server_tls, &client_tls);
    let (_server_hive, _srv) = start(&cfg);
    let (client_hive, c) = client(&cfg);
    assert!(!c.wait_connected(1, Duration::from_millis(800)), "the handshake must fail");
    client_hive.request_shutdown();
}

#[test]
fn a_client_without_a_certificate_is_refused_by_a_mutual_tls_server() {
    let pki = Pki::new("no-client-cert");
    refused(tls_lines(&pki, "ca.pem", Some("server")), tls_lines(&pki, "ca.pem", None));
}

#[test]
fn a_server_signed_by_another_ca_is_refused_by_the_client() {
    let pki = Pki::new("wrong-ca");
    refused(tls_lines(&pki, "ca.pem", Some("server")), tls_lines(&pki, "other-ca.pem", Some("client")));
}

#[test]
fn unreadable_certificate_files_are_clear_errors() {
    let cfg = yaml(&free_address(), "  cert: /nonexistent/c.pem\n  key: /nonexistent/k.pem\n", "");
    let hive = Hive::new();
    let ctx = Arc::new(SocketContext::new());
    hive.add_backend(ctx.clone());
    let err = SocketServer::start(&hive, &ctx, &cfg, cfg.servers().next().unwrap()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
}
