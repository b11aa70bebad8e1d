//! The tokio driver: socket-mode connections on the caller's tokio runtime.
//!
//! Every connection is one task that owns its [`Session`](crate::session::Session)
//! and its socket. The task waits, all at once, for the socket to become
//! readable, for it to become writable (only while the session has frames
//! to write), for commands from the handles, and for the session's next
//! timeout. Nothing in it blocks an executor thread: a peer that stops
//! reading is cut by the session's write timeout, a peer that stops in the
//! middle of a frame by its stall timeout, a peer that never registers by
//! its handshake timeout; other connections and the rest of the runtime go
//! on meanwhile.
//!
//! * [`Client`]: connects to a server, completes the module handshake and
//!   gives a handle with [`send`](ClientHandle::send),
//!   [`send_sync`](ClientHandle::send_sync), [`send_resp`](ClientHandle::send_resp)
//!   and [`send_to_group`](ClientHandle::send_to_group), the messages
//!   addressed to the module ([`recv`](Client::recv)) and the connection's
//!   events ([`events`](Client::events)).
//! * [`Server`]: listens (with Go's replacement of a stale socket file and
//!   mode 0600), accepts remote modules (`connmax`, backing off on accept
//!   errors such as `EMFILE` instead of stopping), shares one
//!   [`ModuleRegistry`](crate::session::ModuleRegistry) between its
//!   connections, yields their messages and events, and sends to any
//!   connected module.
//! * [`SocketBackend`]: the hive's `unixpacket` backend on this driver.
//!   [`SocketBackend::serve`] makes a hive's modules reachable to remote
//!   modules and the remote modules reachable through `Hive` calls, with
//!   the handshake answer listing the hive's modules of the moment;
//!   [`SocketBackend::connect`] makes a process a remote module of another
//!   hive and reconnects after every drop. Its blocking calls work from any
//!   thread, its async calls never block an executor thread, and a full
//!   inbox pauses only the connection feeding it.
//!
//! Transports: SOCK_SEQPACKET (Go's `unixpacket`, one message per packet),
//! unix stream and TCP (Raw or Package framing), and TCP with TLS
//! ([`Tls`], rustls driven as a state machine inside the same readiness
//! loop, its handshake within the session's handshake timeout).
//!
//! Handles talk to the connection task over a bounded channel: when it
//! stays full for the caller's wait ([`DriverOptions::send_wait`], or the
//! `send_sync` timeout) the call fails with [`DriverError::Busy`]; nothing
//! is queued without bound.
//!
//! ```no_run
//! use std::time::Duration;
//! use beehive_model::Message;
//! use beehive_socket::asyncio::{Client, Endpoint, Server, ServerOptions};
//! use beehive_socket::session::{SessionConfig, TransportKind};
//!
//! # async fn run() -> Result<(), beehive_socket::asyncio::DriverError> {
//! let endpoint = Endpoint::unix_packet("/tmp/beehive.sock");
//! let config = SessionConfig::server("socketserver", TransportKind::Packet).local_module("hub", "hubgroup");
//! let mut server = Server::bind(&endpoint, config, ServerOptions::default()).await?;
//! tokio::spawn(async move {
//!     // Answer every request.
//!     while let Some(incoming) = server.recv().await {
//!         if incoming.message.is_sync() {
//!             let resp = incoming.message.new_response("pong");
//!             let _ = server.handle().send_resp(resp).await;
//!         }
//!     }
//! });
//!
//! let client = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).await?;
//! let request = Message::new("").build_router("edgeclient", "", "res", "query").fill_body("ping");
//! let answer = client.send_sync("hub", request, Duration::from_secs(5)).await?;
//! assert_eq!(answer.content().as_str(), Some("pong"));
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

pub use crate::driver::{ClientEvent, DriverError, Endpoint, Incoming, ServerEvent, Tls};

mod block;
mod client;
mod conn;
mod hive;
mod io;
mod runtime;
mod server;

pub use client::{Client, ClientHandle, Events, Messages};
pub use hive::{BackendOptions, ClientEvents, ConnectOptions, HiveClient, HiveServer, SocketBackend};
pub use runtime::DriverRuntime;
pub use server::{IncomingMessages, Server, ServerEvents, ServerHandle, ServerOptions};

/// Sizes and waits of one connection's channels.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverOptions {
    /// Commands (sends) waiting for the connection task.
    pub command_capacity: usize,
    /// Messages waiting for [`Client::recv`] (per client) or
    /// [`Server::recv`] (per server). While full, the connection stops
    /// reading its socket (the peer is slowed down, nothing is dropped).
    pub inbox_capacity: usize,
    /// Events waiting to be taken; when full, further events are logged and
    /// dropped (the connection state stays available from the handles).
    pub event_capacity: usize,
    /// How long a send waits for room in a full command channel before it
    /// fails with [`DriverError::Busy`] (`send_sync` waits up to its own
    /// timeout instead).
    pub send_wait: Duration,
    /// SOCK_SEQPACKET: a send buffer size to ask the kernel for
    /// (`SO_SNDBUF`), which bounds the largest packet that can be sent.
    /// `None` (the default) keeps the system's default, as Go does.
    pub packet_send_buffer: Option<usize>,
    /// TCP: TLS settings (client settings to connect, server settings to
    /// accept); `None`: plain TCP.
    pub tls: Option<Tls>,
}

impl DriverOptions {
    /// Sets [`tls`](Self::tls).
    pub fn tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self
    }
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            command_capacity: 256,
            inbox_capacity: 1024,
            event_capacity: 1024,
            send_wait: Duration::from_secs(5),
            packet_send_buffer: None,
            tls: None,
        }
    }
}
