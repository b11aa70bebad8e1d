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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{SocketConfig, UNIXPACKET};
use crate::conn::StreamFraming;
use crate::session::{CloseReason, SessionConfig, SessionError, TransportKind};

mod block;
mod client;
mod conn;
mod hive;
mod io;
mod runtime;
mod server;

pub use client::{Client, ClientEvent, ClientHandle, Events, Messages};
pub use hive::{BackendOptions, ClientEvents, ConnectOptions, HiveClient, HiveServer, SocketBackend};
pub use runtime::DriverRuntime;
pub use server::{Incoming, IncomingMessages, Server, ServerEvent, ServerEvents, ServerHandle, ServerOptions};

/// Where a connection goes: the socket type and address of a
/// configuration entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A unix SOCK_SEQPACKET socket (Go's `unixpacket`).
    UnixPacket(PathBuf),
    /// A unix stream socket (Go's `unix`).
    Unix(PathBuf),
    /// A TCP address, `host:port` (Go's `tcp`).
    Tcp(String),
}

impl Endpoint {
    /// A unix SOCK_SEQPACKET socket at `path`.
    pub fn unix_packet(path: impl AsRef<Path>) -> Self {
        Endpoint::UnixPacket(path.as_ref().to_owned())
    }

    /// A unix stream socket at `path`.
    pub fn unix(path: impl AsRef<Path>) -> Self {
        Endpoint::Unix(path.as_ref().to_owned())
    }

    /// A TCP address (`host:port`).
    pub fn tcp(address: impl Into<String>) -> Self {
        Endpoint::Tcp(address.into())
    }

    /// The endpoint of a configuration entry (`sockettype` and `address`).
    /// TLS files (`ca`, `cert`, `key`) are for TCP entries only; their
    /// settings come from [`Tls::from_config`].
    pub fn from_config(entry: &SocketConfig) -> Result<Self, DriverError> {
        let tls = !entry.ca.is_empty() || !entry.cert.is_empty() || !entry.key.is_empty();
        match entry.socket_type.as_str() {
            "" | UNIXPACKET if tls => Err(DriverError::Unsupported("TLS on a unixpacket socket".into())),
            crate::net::UNIX if tls => Err(DriverError::Unsupported("TLS on a unix socket".into())),
            "" | UNIXPACKET => Ok(Endpoint::unix_packet(&entry.address)),
            crate::net::UNIX => Ok(Endpoint::unix(&entry.address)),
            crate::net::TCP => Ok(Endpoint::tcp(entry.address.clone())),
            other => Err(DriverError::Unsupported(format!("socket type {other:?}"))),
        }
    }

    /// The session transport of this endpoint with `framing` on streams.
    pub fn transport(&self, framing: StreamFraming) -> TransportKind {
        match self {
            Endpoint::UnixPacket(_) => TransportKind::Packet,
            Endpoint::Unix(_) | Endpoint::Tcp(_) => TransportKind::Stream(framing),
        }
    }

    /// TLS settings fit: TCP only, and the side's own kind.
    fn check_tls(&self, tls: Option<&Tls>, server: bool) -> Result<(), DriverError> {
        match (tls, self) {
            (None, _) => Ok(()),
            (Some(_), Endpoint::UnixPacket(_) | Endpoint::Unix(_)) => {
                Err(DriverError::Unsupported(format!("TLS on {self}: TLS is for TCP endpoints")))
            }
            (Some(Tls::Server(_)), Endpoint::Tcp(_)) if !server => {
                Err(DriverError::Config("server TLS settings given to a client".into()))
            }
            (Some(Tls::Client { .. }), Endpoint::Tcp(_)) if server => {
                Err(DriverError::Config("client TLS settings given to a server".into()))
            }
            _ => Ok(()),
        }
    }

    fn check(&self, config: &SessionConfig) -> Result<(), DriverError> {
        let packet = matches!(self, Endpoint::UnixPacket(_));
        if packet != matches!(config.get_transport(), TransportKind::Packet) {
            return Err(DriverError::TransportMismatch { endpoint: self.clone(), transport: config.get_transport() });
        }
        Ok(())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::UnixPacket(p) => write!(f, "unixpacket:{}", p.display()),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// TLS settings of TCP connections (rustls, ring provider).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Tls {
    /// Connect with TLS, verifying the server as `server_name`.
    Client {
        /// The client settings (roots, client certificate).
        config: Arc<rustls::ClientConfig>,
        /// The name (or IP address) the server's certificate must carry.
        server_name: rustls::pki_types::ServerName<'static>,
    },
    /// Accept with TLS.
    Server(Arc<rustls::ServerConfig>),
}

impl Tls {
    /// The TLS settings of a configuration entry, as Go's configuration
    /// describes them: a server entry with `cert` and `key` speaks TLS (and
    /// with `ca` requires client certificates signed by it); a client entry
    /// with `ca` verifies the server with it and presents `cert`/`key` when
    /// given. `None` without TLS files.
    pub fn from_config(entry: &SocketConfig) -> Result<Option<Tls>, DriverError> {
        let tls_error = |e: crate::SocketError| DriverError::Config(e.to_string());
        if entry.server {
            Ok(crate::tls::server_config(entry).map_err(tls_error)?.map(Tls::Server))
        } else {
            Ok(crate::tls::client_config(entry)
                .map_err(tls_error)?
                .map(|(config, server_name)| Tls::Client { config, server_name }))
        }
    }
}

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

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A socket call failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The session refused the send (queue full, message too large, unknown
    /// module or group...); the connection stays up.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The connection is closed, for this reason.
    #[error("the connection is closed: {0}")]
    Closed(Arc<CloseReason>),
    /// The connection's command channel stayed full for this long.
    #[error("the connection did not take the command within {0:?}")]
    Busy(Duration),
    /// No response to a `send_sync` within its timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// Connecting (or the handshake) did not finish in time.
    #[error("could not connect to {endpoint} within {timeout:?}")]
    ConnectTimeout {
        /// Where.
        endpoint: Endpoint,
        /// The handshake timeout.
        timeout: Duration,
    },
    /// The handshake failed; the connection is closed.
    #[error("handshake with {endpoint} failed: {reason}")]
    Handshake {
        /// Where.
        endpoint: Endpoint,
        /// Why the session closed.
        reason: Arc<CloseReason>,
    },
    /// Server side: no connection serves this module.
    #[error("module {0:?} is not connected")]
    NotConnected(String),
    /// The session configuration does not fit (wrong role).
    #[error("invalid session configuration: {0}")]
    Config(String),
    /// The session's transport does not match the endpoint's socket type.
    #[error("endpoint {endpoint} does not carry transport {transport:?}")]
    TransportMismatch {
        /// The endpoint.
        endpoint: Endpoint,
        /// The session's transport.
        transport: TransportKind,
    },
    /// Something the driver does not do (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
}
