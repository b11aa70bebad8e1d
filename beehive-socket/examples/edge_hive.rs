//! A Rust module joining an edgecore-style hive over unixpacket, as two
//! processes, both driven by the same `socket_module.yaml`.
//!
//! ```sh
//! cat > /tmp/socket_module.yaml <<'YAML'
//! - module: socketserver
//!   server: true
//!   address: /tmp/beehive.sock
//!   sockettype: unixpacket
//!   connmax: 4
//!   buffersize: 4096
//! - module: edgeclient
//!   server: false
//!   address: /tmp/beehive.sock
//!   sockettype: unixpacket
//!   buffersize: 4096
//! YAML
//! export SOCKET_MODULE_CONFIG=/tmp/socket_module.yaml
//! cargo run -p beehive-socket --example edge_hive -- server &   # the hive (a Go edgecore works too)
//! cargo run -p beehive-socket --example edge_hive -- client     # the remote module
//! ```
//!
//! The server hive runs a module `metamanager` that answers sync requests;
//! the client registers `edgeclient`, asks `metamanager` a question with
//! `send_sync`, prints the answer and exits.

use std::time::Duration;

use beehive_context::{Hive, SimpleModule};
use beehive_model::{constants, Message};
use beehive_socket::blocking::{ConnectOptions, Endpoint, ServerOptions};
use beehive_socket::{SocketBackend, SocketModuleConfig, StreamFraming};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let role = std::env::args().nth(1).unwrap_or_default();
    let config = SocketModuleConfig::load()?;
    let hive = Hive::new();
    // The hive's socket backend on the blocking driver: thread modules, no
    // async runtime.
    let backend = SocketBackend::new();
    hive.add_backend(backend.clone());
    match role.as_str() {
        "server" => {
            hive.register(SimpleModule::new("metamanager", "meta", |hive: &Hive| {
                while let Ok(m) = hive.receive("metamanager") {
                    println!("metamanager got: {m}");
                    if m.is_sync() {
                        hive.send_resp(m.new_response(format!("pods for {}: nginx", m.source())))?;
                    }
                }
                Ok(())
            }))?;
            hive.start()?;
            let entry = config.servers().next().ok_or("no server entry in the config")?;
            let session = config.server_session(entry, StreamFraming::Raw);
            let _server =
                backend.serve_blocking(&hive, &Endpoint::from_config(entry)?, session, ServerOptions::default())?;
            println!("serving on {} (Ctrl-C to stop)", entry.address);
            let report = hive.run_until_shutdown(Duration::from_secs(5))?;
            println!("shutdown: {report:?}");
        }
        "client" => {
            let entry = config.client("edgeclient").ok_or("no edgeclient entry in the config")?;
            // Returns once registered (within the handshake timeout), then
            // reconnects after every drop until `_client` is dropped.
            let session = entry.client_session(StreamFraming::Raw);
            let _client =
                backend.connect_blocking(&hive, &Endpoint::from_config(entry)?, session, ConnectOptions::default())?;
            println!("registered; remote modules: {:?}", backend.remote_modules());
            let question = Message::new("")
                .build_router("edgeclient", "", constants::RESOURCE_TYPE_POD, constants::QUERY_OPERATION)
                .fill_body("which pods?");
            let answer = hive.send_sync("metamanager", question, Duration::from_secs(5))?;
            println!("answer: {:?}", answer.content().as_str());
            hive.request_shutdown();
        }
        _ => return Err("usage: edge_hive server|client (with SOCKET_MODULE_CONFIG set)".into()),
    }
    Ok(())
}
