//! The socket server module: accepts remote modules and relays their messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beehive_context::{ContextError, Hive};
use beehive_model::{constants, Message, ModuleExchange};
use socket2::Socket;

use crate::config::{SocketConfig, SocketModuleConfig, UNIXPACKET};
use crate::conn::{Connection, StreamFraming};
use crate::context::SocketContext;
use crate::net::{self, DEFAULT_STALL_TIMEOUT};
use crate::SocketError;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default largest packet when the configuration gives no `buffersize`.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;

/// A running socket server (Go's `socketserver` module).
///
/// For each connection it answers the module handshake (`resource: module`,
/// `operation: add`) with the hive's modules and groups, routes the remote
/// module to that connection, and forwards every other message to its
/// destination through the hive. Responses to the server's own `send_sync`
/// are handed to the waiting caller. Messages from modules without a client
/// entry in the configuration close the connection, as in Go.
#[derive(Debug)]
pub struct SocketServer {
    path: PathBuf,
    listener: Arc<Socket>,
    conns: Arc<Mutex<BTreeMap<u64, Arc<Connection>>>>,
    accept: Option<std::thread::JoinHandle<()>>,
    entry: SocketConfig,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// The hive's registered modules and groups, as the handshake answer lists them.
pub fn module_exchange(hive: &Hive) -> ModuleExchange {
    let mut modules = Vec::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, group) in hive.module_groups() {
        modules.push(name.clone());
        groups.entry(group).or_default().push(name);
    }
    ModuleExchange { modules: if modules.is_empty() { None } else { Some(modules) }, groups: Some(groups) }
}

fn is_handshake(msg: &Message) -> bool {
    msg.resource() == constants::RESOURCE_TYPE_MODULE && msg.operation() == constants::OPERATION_TYPE_MODULE
}

/// Server settings beyond the configuration file.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Framing on stream sockets (`unix`, `tcp`); Go's wrapper always uses Raw.
    pub stream_framing: StreamFraming,
    /// How long a partial frame on a stream socket may stall.
    pub stall_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions { stream_framing: StreamFraming::Raw, stall_timeout: DEFAULT_STALL_TIMEOUT }
    }
}

impl SocketServer {
    /// Listens on the server entry `entry` and serves remote modules into
    /// `hive` through `ctx` (which must be the hive's `unixpacket` backend).
    pub fn start(
        hive: &Hive,
        ctx: &Arc<SocketContext>,
        config: &SocketModuleConfig,
        entry: &SocketConfig,
    ) -> Result<Self, SocketError> {
        SocketServer::start_with(hive, ctx, config, entry, ServerOptions::default())
    }

    /// [`start`](Self::start) with explicit options.
    pub fn start_with(
        hive: &Hive,
        ctx: &Arc<SocketContext>,
        config: &SocketModuleConfig,
        entry: &SocketConfig,
        options: ServerOptions,
    ) -> Result<Self, SocketError> {
        let path = PathBuf::from(&entry.address);
        let listener = Arc::new(net::listen(entry, 128)?);
        let transport = net::transport(entry, options.stream_framing, options.stall_timeout);
        let tls = crate::tls::server_config(entry)?;
        let entry = entry.clone();
        let conns: Arc<Mutex<BTreeMap<u64, Arc<Connection>>>> = Arc::default();
        let max_packet = if entry.buffer_size == 0 { DEFAULT_BUFFER_SIZE } else { entry.buffer_size };
        let conn_max = entry.conn_max;
        let active = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, c, hive, ctx, config, stop) = (
            Arc::clone(&listener),
            Arc::clone(&conns),
            hive.clone(),
            Arc::clone(ctx),
            config.clone(),
            Arc::clone(&stopping),
        );
        let accept = std::thread::Builder::new().name("socket-accept".into()).spawn(move || loop {
            let socket = match l.accept() {
                Ok(_) if stop.load(Ordering::SeqCst) => return,
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::info!(error = %e, "socket server stopped accepting");
                    return;
                }
            };
            if conn_max > 0 && active.load(Ordering::SeqCst) >= conn_max {
                // Refuse at once; the accept loop is not stalled (Go sleeps 5 s here).
                tracing::warn!(conn_max, "refusing connection: too many connections");
                drop(socket);
                continue;
            }
            active.fetch_add(1, Ordering::SeqCst);
            let (hive, ctx, config, c, active, tls) =
                (hive.clone(), Arc::clone(&ctx), config.clone(), Arc::clone(&c), Arc::clone(&active), tls.clone());
            let spawned = std::thread::Builder::new().name("socket-conn".into()).spawn(move || {
                let conn = match tls {
                    None => Connection::with_transport(socket, transport, max_packet),
                    Some(cfg) => {
                        let session = rustls::ServerConnection::new(cfg).map(rustls::Connection::Server);
                        match session.map_err(|e| e.to_string()).and_then(|tls| {
                            Connection::with_tls(socket, transport, max_packet, tls, HANDSHAKE_TIMEOUT)
                                .map_err(|e| e.to_string())
                        }) {
                            Ok(conn) => conn,
                            Err(e) => {
                                tracing::warn!(error = %e, "TLS handshake failed, closing");
                                active.fetch_sub(1, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                };
                c.lock().unwrap_or_else(|e| e.into_inner()).insert(conn.id(), Arc::clone(&conn));
                let reason = {
                    let (hive, ctx, config, me) = (hive.clone(), Arc::clone(&ctx), config.clone(), Arc::clone(&conn));
                    conn.read_loop(move |msg| serve(&hive, &ctx, &config, &me, msg))
                };
                tracing::info!(connection = conn.id(), %reason, "connection ended");
                ctx.remove_connection(conn.id());
                c.lock().unwrap_or_else(|e| e.into_inner()).remove(&conn.id());
                active.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot spawn a connection thread");
            }
        })?;
        Ok(SocketServer { path, listener, conns, accept: Some(accept), entry, stopping })
    }

    /// The socket path (or TCP address).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections currently served.
    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.listener.shutdown(std::net::Shutdown::Both);
        // Wake a blocked accept by connecting once.
        let _ = net::dial(&self.entry);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for conn in self.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            conn.close();
        }
        if self.entry.socket_type != net::TCP {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Handles one message read from a client connection.
fn serve(
    hive: &Hive,
    ctx: &SocketContext,
    config: &SocketModuleConfig,
    conn: &Arc<Connection>,
    msg: Message,
) -> Result<(), String> {
    let Some(msg) = ctx.offer_response(msg) else { return Ok(()) };
    let source = msg.source().to_owned();
    if is_handshake(&msg) {
        if !config.is_remote_module(&source) {
            return Err(format!("handshake from module {source:?}, which has no client entry in the configuration"));
        }
        ctx.register_pipe(&source, conn);
        match hive.add_module(&source, UNIXPACKET) {
            Ok(()) | Err(ContextError::DuplicateModule { .. }) => {}
            Err(e) => return Err(format!("cannot add remote module {source:?}: {e}")),
        }
        hive.add_module_group(&source, &source).map_err(|e| e.to_string())?;
        // Go answers through SendResp, which only reaches the socket context
        // when the request carried type "unixpacket"; we always answer.
        let resp = msg.new_response(module_exchange(hive)).set_destination(source.as_str());
        conn.send(&resp).map_err(|e| format!("cannot answer the handshake: {e}"))?;
        tracing::info!(module = %source, connection = conn.id(), "remote module registered");
        return Ok(());
    }
    if !config.is_remote_module(&source) {
        return Err(format!(
            "message {} from module {source:?}, which has no client entry in the configuration",
            msg.id()
        ));
    }
    let dest = msg.destination().to_owned();
    if let Err(e) = hive.send(&dest, msg) {
        tracing::warn!(destination = %dest, error = %e, "cannot forward a remote message");
    }
    Ok(())
}
