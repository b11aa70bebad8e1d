//! The message events of the tokio driver: one request followed, by its
//! ids, from a client's socket into a hive's module and back.
//!
//! One test in this binary, on purpose: `tracing` caches per call site
//! whether anyone listens, process-wide, and a test without a subscriber
//! hitting the same call sites on another thread at the same time can
//! leave them cached as unheard. The subscriber is thread-local, so the
//! runtime is a current-thread one on the test's thread. Every wait is
//! bounded; running out of time is a failure.
#![cfg(feature = "tokio")]

mod common;
use common::collector::Collector;
use common::{on_this_thread, temp_dir, within};

use std::time::Duration;

use beehive_context::{Hive, SimpleAsyncModule};
use beehive_model::Message;
use beehive_socket::asyncio::{BackendOptions, Client, Endpoint, ServerEvent, ServerOptions, SocketBackend};
use beehive_socket::session::{SessionConfig, TransportKind};

const T: Duration = Duration::from_secs(10);

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

#[test]
fn a_request_is_followed_from_a_socket_into_a_module_and_back() {
    let collector = Collector::default();
    tracing::subscriber::with_default(collector.clone(), || {
        on_this_thread(async {
            let dir = temp_dir("trace");
            let endpoint = Endpoint::unix_packet(dir.join("hive.sock"));
            let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
            let backend = SocketBackend::with_options(BackendOptions::default());
            hive.add_backend(backend.clone());
            hive.register_async(echo("echo")).unwrap();
            hive.start().unwrap();
            let config = SessionConfig::server("socketserver", TransportKind::Packet);
            let mut server = backend.serve(&hive, &endpoint, config, ServerOptions::default()).await.unwrap();
            let client =
                within("connect", T, Client::connect(&endpoint, SessionConfig::client("edge", TransportKind::Packet)))
                    .await
                    .unwrap();
            let session = within("registration", T, async {
                loop {
                    match server.events().recv().await.expect("server stopped") {
                        ServerEvent::Connected { session, .. } => return session.to_string(),
                        _ => continue,
                    }
                }
            })
            .await;
            let client_session = client.handle().session_id().to_string();

            let request = Message::new("").build_router("edge", "grp", "res", "query").fill_body("ping");
            let id = request.id().to_owned();
            let answer = within("send_sync", T, client.send_sync("echo", request, T)).await.unwrap();
            assert_eq!(answer.content().as_str(), Some("echo:ping"));

            // Out of the client, into the server's connection, into the
            // hive's module.
            let request_fields =
                [("msg_id", id.as_str()), ("source", "edge"), ("destination", "echo"), ("operation", "query")];
            let queued = collector.one_from("queued for writing", &request_fields, "client", &client_session);
            assert_eq!(queued.get("parent_msg_id"), Some(""));
            collector.one_from("read from a connection", &request_fields, "server", &session);
            let delivered = collector.one("delivered into the hive", &request_fields);
            assert_eq!((delivered.get("module"), delivered.get("waited")), (Some("echo"), Some("false")));
            // The answer back, out of the server's connection into the
            // client's.
            collector.assert_answer_traced(&answer, &id, &session, &client_session);
            assert!(collector.events.lock().unwrap().iter().all(|e| e.level == tracing::Level::TRACE));
            hive.shutdown_async(T).await;
        })
    });
}
