//! A remote module: connects to a socket server, registers itself with the
//! module handshake, and keeps the connection up.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use beehive_context::{ContextError, Hive};
use beehive_model::{constants, Message, ModuleExchange};

use crate::config::{SocketConfig, UNIXPACKET};
use crate::conn::{Connection, StreamFraming};
use crate::context::SocketContext;
use crate::server::DEFAULT_BUFFER_SIZE;
use crate::SocketError;

/// How a client connects and reconnects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// First wait before reconnecting (Go: a fixed 5 s).
    pub retry_interval: Duration,
    /// Longest wait between attempts; the wait doubles up to it.
    pub max_retry_interval: Duration,
    /// Handshake timeout (Go: 10 s).
    pub handshake_timeout: Duration,
    /// Framing on stream sockets (`unix`, `tcp`); Go's wrapper always uses Raw.
    pub stream_framing: StreamFraming,
    /// How long a partial frame on a stream socket may stall.
    pub stall_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry_interval: Duration::from_millis(500),
            max_retry_interval: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            stream_framing: StreamFraming::Raw,
            stall_timeout: crate::net::DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// The module handshake request Go's socket context sends.
pub fn handshake_request(module: &str) -> Message {
    Message::new("")
        .build_router(module, "", constants::RESOURCE_TYPE_MODULE, constants::OPERATION_TYPE_MODULE)
        .set_type(UNIXPACKET)
        .fill_body("")
}

#[derive(Default)]
struct State {
    connected: bool,
    handshakes: u64,
}

/// A running remote module connection.
#[derive(Clone)]
pub struct SocketClient {
    module: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl std::fmt::Debug for SocketClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketClient").field("module", &self.module).finish()
    }
}

fn handshake(
    hive: &Hive,
    ctx: &SocketContext,
    conn: &Arc<Connection>,
    module: &str,
    timeout: Duration,
) -> Result<(), SocketError> {
    let fail = |reason: String| SocketError::Handshake { module: module.to_owned(), reason };
    let resp = ctx.request(conn, handshake_request(module), timeout)?;
    let exchange = match resp.content() {
        beehive_model::Content::ModuleExchange(m) => m.clone(),
        other => {
            let value = match other {
                beehive_model::Content::Value(v) => v.clone(),
                beehive_model::Content::Null => beehive_model::Value::Null,
                _ => return Err(fail(format!("unexpected answer content {other:?}"))),
            };
            ModuleExchange::from_value(&value).ok_or_else(|| fail("answer is not a module exchange".into()))?
        }
    };
    for name in exchange.modules.iter().flatten().filter(|n| n.as_str() != module) {
        ctx.register_pipe(name, conn);
        match hive.add_module(name, UNIXPACKET) {
            Ok(()) | Err(ContextError::DuplicateModule { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (group, members) in exchange.groups.iter().flatten() {
        for member in members {
            ctx.register_pipe_group(member, group, conn);
        }
    }
    Ok(())
}

impl SocketClient {
    /// Starts remote module `entry.module`: its messages are routed to the
    /// server, messages for it are queued for `hive.receive(module)`. The
    /// connection is retried (with backoff) and re-registered after every
    /// drop until the hive shuts down.
    pub fn start(
        hive: &Hive,
        ctx: &Arc<SocketContext>,
        entry: &SocketConfig,
        options: ClientOptions,
    ) -> Result<Self, SocketError> {
        if ![UNIXPACKET, crate::net::UNIX, crate::net::TCP].contains(&entry.socket_type.as_str()) {
            return Err(SocketError::UnsupportedSocketType(entry.socket_type.clone()));
        }
        let module = entry.module.clone();
        let transport = crate::net::transport(entry, options.stream_framing, options.stall_timeout);
        let tls = crate::tls::client_config(entry)?;
        match hive.add_module(&module, UNIXPACKET) {
            Ok(()) | Err(ContextError::DuplicateModule { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let client = SocketClient { module: module.clone(), state: Arc::default() };
        let (hive, ctx, entry, state) = (hive.clone(), Arc::clone(ctx), entry.clone(), Arc::clone(&client.state));
        let max_packet = if entry.buffer_size == 0 { DEFAULT_BUFFER_SIZE } else { entry.buffer_size };
        std::thread::Builder::new().name(format!("socket-client-{module}")).spawn(move || {
            let mut wait = options.retry_interval;
            while !hive.is_cancelled() {
                let socket = match crate::net::dial(&entry) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(module = %module, error = %e, "cannot connect, retrying");
                        hive.wait_cancelled(wait);
                        wait = (wait * 2).min(options.max_retry_interval);
                        continue;
                    }
                };
                let conn = match &tls {
                    None => Connection::with_transport(socket, transport, max_packet),
                    Some((cfg, name)) => {
                        let session = rustls::ClientConnection::new(Arc::clone(cfg), name.clone())
                            .map(rustls::Connection::Client)
                            .map_err(|e| e.to_string())
                            .and_then(|s| {
                                Connection::with_tls(socket, transport, max_packet, s, options.handshake_timeout)
                                    .map_err(|e| e.to_string())
                            });
                        match session {
                            Ok(conn) => conn,
                            Err(e) => {
                                tracing::warn!(module = %module, error = %e, "TLS handshake failed, retrying");
                                hive.wait_cancelled(wait);
                                wait = (wait * 2).min(options.max_retry_interval);
                                continue;
                            }
                        }
                    }
                };
                ctx.register_pipe(&module, &conn);
                ctx.set_default_pipe(Some(&conn));
                let reader = {
                    let (ctx, conn, module) = (Arc::clone(&ctx), Arc::clone(&conn), module.clone());
                    std::thread::spawn(move || {
                        let (c2, m2) = (Arc::clone(&ctx), module.clone());
                        conn.read_loop(move |msg| {
                            let (ctx, module) = (&c2, &m2);
                            if let Some(msg) = ctx.offer_response(msg) {
                                ctx.deliver_local(module, msg).map_err(|e| e.to_string())?;
                            }
                            Ok(())
                        })
                    })
                };
                match handshake(&hive, &ctx, &conn, &module, options.handshake_timeout) {
                    Ok(()) => {
                        wait = options.retry_interval;
                        let (m, cv) = &*state;
                        let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
                        st.connected = true;
                        st.handshakes += 1;
                        cv.notify_all();
                    }
                    Err(e) => {
                        tracing::warn!(module = %module, error = %e, "handshake failed");
                        conn.close();
                    }
                }
                let reason = reader.join().unwrap_or_else(|_| "reader panicked".into());
                tracing::info!(module = %module, %reason, "connection lost");
                ctx.remove_connection(conn.id());
                {
                    let (m, _) = &*state;
                    m.lock().unwrap_or_else(|e| e.into_inner()).connected = false;
                }
                hive.wait_cancelled(wait);
            }
        })?;
        Ok(client)
    }

    /// The module name.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// Waits until the module is registered with the server (at least
    /// `handshakes` handshakes done in all); false on timeout.
    pub fn wait_connected(&self, handshakes: u64, timeout: Duration) -> bool {
        let (m, cv) = &*self.state;
        let st = m.lock().unwrap_or_else(|e| e.into_inner());
        let (st, _) = cv
            .wait_timeout_while(st, timeout, |s| !(s.connected && s.handshakes >= handshakes))
            .unwrap_or_else(|e| e.into_inner());
        st.connected && st.handshakes >= handshakes
    }
}
