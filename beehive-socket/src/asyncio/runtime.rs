//! A runtime of its own for programs without one.

use std::future::Future;
use std::sync::Arc;

use beehive_context::Hive;

use super::{ConnectOptions, DriverError, Endpoint, HiveClient, HiveServer, ServerOptions, SocketBackend};
use crate::session::SessionConfig;

/// A small tokio runtime owned by the program's socket side, for programs
/// whose modules are threads and which have no runtime of their own: the
/// connections run on its worker threads, the hive's blocking calls
/// (`send`, `send_sync`, `send_resp`, `receive`...) work from any other
/// thread. Dropping it stops every connection it runs, so keep it for as
/// long as its servers and clients.
///
/// ```no_run
/// use beehive_context::Hive;
/// use beehive_socket::asyncio::{DriverRuntime, Endpoint, ServerOptions, SocketBackend};
/// use beehive_socket::session::{SessionConfig, TransportKind};
///
/// let runtime = DriverRuntime::new()?;
/// let hive = Hive::new();
/// let backend = SocketBackend::new();
/// hive.add_backend(backend.clone());
/// let config = SessionConfig::server("socketserver", TransportKind::Packet);
/// let server = runtime.serve(&backend, &hive, &Endpoint::unix_packet("/tmp/beehive.sock"), config, ServerOptions::default())?;
/// // Module threads now reach remote modules with hive.send(..), hive.send_sync(..).
/// # drop(server);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DriverRuntime {
    runtime: tokio::runtime::Runtime,
}

impl DriverRuntime {
    /// A runtime with two worker threads.
    pub fn new() -> Result<Self, DriverError> {
        DriverRuntime::with_workers(2)
    }

    /// A runtime with `workers` worker threads (at least one).
    pub fn with_workers(workers: usize) -> Result<Self, DriverError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("beehive-socket")
            .enable_all()
            .build()?;
        Ok(DriverRuntime { runtime })
    }

    /// The runtime's handle (for `HiveBuilder::runtime`, so that async
    /// modules run here too).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// [`SocketBackend::serve`], waiting on this thread until it listens.
    pub fn serve(
        &self,
        backend: &Arc<SocketBackend>,
        hive: &Hive,
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ServerOptions,
    ) -> Result<HiveServer, DriverError> {
        self.block_on(backend.serve(hive, endpoint, config, options))
    }

    /// [`SocketBackend::connect`], waiting on this thread until the first
    /// connection is registered.
    pub fn connect(
        &self,
        backend: &Arc<SocketBackend>,
        hive: &Hive,
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ConnectOptions,
    ) -> Result<HiveClient, DriverError> {
        self.block_on(backend.connect(hive, endpoint, config, options))
    }

    /// Runs `future` on the runtime and waits for it on this thread (not
    /// from inside a runtime).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}
