//! # beehive-socket
//!
//! Remote beehive modules over unix SOCK_SEQPACKET sockets (Go's
//! `unixpacket`, the default), unix stream and TCP sockets (with TLS),
//! wire-compatible with KubeEdge's Go socket mode: one JSON message plus a
//! line feed per packet, the module handshake (`resource: module`,
//! `operation: add`, answered with the module exchange), and Go's routing
//! rules.
//!
//! * [`session`]: one connection as a sans-IO state machine (handshake,
//!   routing, response matching, every timeout, a bounded outbound queue).
//! * [`asyncio`] (feature `tokio`): the tokio driver over that session.
//! * [`blocking`]: the blocking driver over the same session (threads, no
//!   runtime).
//! * [`SocketBackend`]: the hive's backend of context type `unixpacket`
//!   over either driver.
//! * [`SocketModuleConfig`]: Go's `socket_module.yaml`, with the sessions
//!   its entries describe.
//!
//! ```no_run
//! use beehive_context::Hive;
//! use beehive_socket::blocking::{Endpoint, ServerOptions};
//! use beehive_socket::{SocketBackend, SocketModuleConfig, StreamFraming};
//!
//! let config = SocketModuleConfig::load()?;
//! let hive = Hive::new();
//! let backend = SocketBackend::new();
//! hive.add_backend(backend.clone());
//! let entry = config.servers().next().expect("a server entry");
//! let session = config.server_session(entry, StreamFraming::Raw);
//! let _server = backend.serve_blocking(&hive, &Endpoint::from_config(entry)?, session, ServerOptions::default())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
pub mod asyncio;
pub mod blocking;
pub mod config;
mod driver;
mod error;
mod memory;
mod metrics;
pub mod session;
#[cfg(feature = "tls")]
pub mod tls;
mod tlsio;

pub use config::{
    ConfigError, SocketConfig, SocketModuleConfig, DEFAULT_BUFFER_SIZE, DEFAULT_STALL_TIMEOUT, TCP, UNIX, UNIXPACKET,
};
pub use error::SocketError;
pub use session::{handshake_request, StreamFraming};

/// The hive's `unixpacket` backend, over either driver (tokio:
/// [`serve`](SocketBackend::serve), [`connect`](SocketBackend::connect);
/// blocking: [`serve_blocking`](SocketBackend::serve_blocking),
/// [`connect_blocking`](SocketBackend::connect_blocking)).
#[cfg(feature = "tokio")]
pub use asyncio::{BackendOptions, SocketBackend};

// The README's examples compile.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
