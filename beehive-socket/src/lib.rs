//! # beehive-socket
//!
//! Remote beehive modules over unix SOCK_SEQPACKET sockets (Go's
//! `unixpacket`, the default), unix stream and TCP sockets, wire-compatible with KubeEdge's Go socket mode: one JSON
//! message plus a line feed per packet, the module handshake (`resource:
//! module`, `operation: add`, answered with the module exchange), and Go's
//! routing rules. [`SocketContext`] is the hive backend of context type
//! `unixpacket`; [`SocketServer`] accepts remote modules; [`SocketClient`]
//! is a remote module that connects, registers and reconnects.
//!
//! ```no_run
//! use std::sync::Arc;
//! use beehive_context::Hive;
//! use beehive_socket::{SocketContext, SocketModuleConfig, SocketServer};
//!
//! let config = SocketModuleConfig::load()?;
//! let hive = Hive::new();
//! let ctx = Arc::new(SocketContext::new());
//! hive.add_backend(ctx.clone());
//! let server = config.servers().next().expect("a server entry");
//! let _server = SocketServer::start(&hive, &ctx, &config, server)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
pub mod asyncio;
pub mod blocking;
mod client;
pub mod config;
mod conn;
mod context;
mod driver;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_bridge;
#[cfg(feature = "tokio")]
mod metrics;
mod net;
mod server;
pub mod session;
pub mod tls;
mod tlsio;

pub use client::{handshake_request, ClientOptions, SocketClient};
pub use config::{ConfigError, SocketConfig, SocketModuleConfig};
pub use conn::StreamFraming;
// The first blocking implementation's connection: reachable for the fuzz
// bridge, not part of the API.
#[doc(hidden)]
pub use conn::{Connection, Transport};
pub use context::SocketContext;
pub use error::SocketError;
pub use net::{DEFAULT_STALL_TIMEOUT, TCP, UNIX};
pub use server::{module_exchange, ServerOptions, SocketServer, DEFAULT_BUFFER_SIZE};

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
