//! The async server: accepts remote modules, one task per connection.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beehive_model::Message;
use tokio::sync::{mpsc, watch};

use super::conn::{self, Conn, ConnEvent, Link, Shared, Sink};
use super::hive::HiveRoute;
use super::io::Listener;
use super::{DriverError, DriverOptions, Endpoint, Incoming, ServerEvent};
use crate::session::{ModuleRegistry, Role, Session, SessionConfig, SessionError, SessionId};

/// Server settings beyond the session configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Channel sizes and waits of every connection (the inbox is the
    /// server's, shared by all connections).
    pub driver: DriverOptions,
    /// Most connections served at once (Go's `connmax`); more are accepted
    /// and closed at once. 0: no limit.
    pub conn_max: usize,
    /// The listen backlog.
    pub backlog: i32,
    /// First pause after a failed accept (`EMFILE`, `ENFILE`, `ENOBUFS`...);
    /// it doubles on every further failure up to `max_accept_backoff`.
    pub accept_backoff: Duration,
    /// Longest pause after failed accepts.
    pub max_accept_backoff: Duration,
    /// Give the allocator's free memory back to the system when the open
    /// connections fall to a quarter of their peak (glibc's `malloc_trim`,
    /// on a blocking thread of the runtime; nothing elsewhere). Default: on.
    pub release_memory: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            driver: DriverOptions::default(),
            conn_max: 0,
            backlog: 128,
            accept_backoff: Duration::from_millis(20),
            max_accept_backoff: Duration::from_secs(1),
            release_memory: true,
        }
    }
}

impl ServerOptions {
    /// Sets [`driver`](Self::driver) (channel sizes, waits, TLS).
    pub fn driver(mut self, driver: DriverOptions) -> Self {
        self.driver = driver;
        self
    }

    /// Sets [`conn_max`](Self::conn_max).
    pub fn conn_max(mut self, conn_max: usize) -> Self {
        self.conn_max = conn_max;
        self
    }

    /// Sets [`release_memory`](Self::release_memory).
    pub fn release_memory(mut self, release: bool) -> Self {
        self.release_memory = release;
        self
    }
}

#[derive(Debug)]
struct ServerShared {
    conns: Mutex<HashMap<SessionId, Link>>,
    modules: Mutex<HashMap<String, SessionId>>,
    accept_errors: AtomicU64,
    refused: AtomicU64,
    stop: watch::Sender<bool>,
    /// Giving memory back after closes.
    releases: crate::memory::Releases,
}

impl ServerShared {
    fn link_for(&self, module: &str) -> Option<Link> {
        let session = *self.modules.lock().unwrap_or_else(|e| e.into_inner()).get(module)?;
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).get(&session).cloned()
    }

    fn links(&self) -> Vec<Link> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// Where a server's messages go.
#[derive(Clone)]
pub(crate) enum Delivery {
    /// To [`Server::recv`].
    Channel(mpsc::Sender<Incoming>),
    /// Into a hive, through its socket backend.
    Hive(Arc<HiveRoute>),
}

struct ServerSink {
    server: Arc<ServerShared>,
    session: SessionId,
    module: Option<String>,
    delivery: Delivery,
    events: mpsc::Sender<ServerEvent>,
}

impl Sink for ServerSink {
    fn try_deliver(&mut self, message: Message) -> Result<(), Message> {
        match &self.delivery {
            Delivery::Channel(tx) => {
                let item = Incoming { session: self.session, module: self.module.clone(), message };
                conn::try_deliver(tx, item).map_err(|i| i.message)
            }
            Delivery::Hive(route) => route.try_deliver(message),
        }
    }

    fn deliver_later(&mut self, message: Message) -> conn::Stalled {
        match &self.delivery {
            Delivery::Channel(tx) => {
                let item = Incoming { session: self.session, module: self.module.clone(), message };
                conn::deliver_later(tx, item)
            }
            Delivery::Hive(route) => route.deliver_later(message),
        }
    }

    fn event(&mut self, _shared: &Shared, event: ConnEvent) {
        let session = self.session;
        let event = match event {
            ConnEvent::Connected { module } => {
                self.module = Some(module.clone());
                ServerEvent::Connected { session, module }
            }
            ConnEvent::Registered { module, groups } => {
                self.server.modules.lock().unwrap_or_else(|e| e.into_inner()).insert(module.clone(), session);
                if let Delivery::Hive(route) = &self.delivery {
                    let link = self.server.conns.lock().unwrap_or_else(|e| e.into_inner()).get(&session).cloned();
                    if let Some(link) = link {
                        route.registered(&module, &groups, &super::hive::Pipe::Task(link));
                    }
                }
                ServerEvent::Registered { session, module, groups }
            }
            ConnEvent::Malformed { offset, error } => ServerEvent::Malformed { session, offset, error },
            ConnEvent::Closed { reason } => {
                self.server.modules.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, s| *s != session);
                let open = {
                    let mut conns = self.server.conns.lock().unwrap_or_else(|e| e.into_inner());
                    conns.remove(&session);
                    conns.len()
                };
                if self.server.releases.closed(open) {
                    // A walk over every arena: not on an executor thread,
                    // and once the closing tasks have ended.
                    let server = Arc::clone(&self.server);
                    let release = move || server.releases.release();
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => drop(rt.spawn(async move {
                            tokio::time::sleep(crate::memory::RELEASE_DELAY).await;
                            let _ = tokio::task::spawn_blocking(release).await;
                        })),
                        Err(_) => release(),
                    }
                }
                if let Delivery::Hive(route) = &self.delivery {
                    route.closed(session);
                }
                ServerEvent::Disconnected { session, module: self.module.clone(), reason }
            }
        };
        conn::report(&self.events, event);
    }
}

/// A cloneable handle that sends to a server's connected modules.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<ServerShared>,
}

impl ServerHandle {
    fn link(&self, module: &str) -> Result<Link, DriverError> {
        self.shared.link_for(module).ok_or_else(|| DriverError::NotConnected(module.to_owned()))
    }

    /// Go's `Send(module, msg)` to a connected remote module.
    pub async fn send(&self, module: &str, msg: Message) -> Result<(), DriverError> {
        self.link(module)?.send(module, msg).await
    }

    /// Go's `SendSync(module, msg, timeout)` to a connected remote module:
    /// waits for its response (up to `timeout` in all).
    pub async fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        self.link(module)?.send_sync(module, msg, timeout).await
    }

    /// Go's `SendResp(resp)`: to the connection serving the response's
    /// source (the requester), with the destination set to it.
    pub async fn send_resp(&self, resp: Message) -> Result<(), DriverError> {
        let module = resp.source().to_owned();
        self.link(&module)?.send_resp(resp).await
    }

    /// Go's `SendToGroup(group, msg)`: one copy per member of `group` on
    /// every connection; returns how many were queued.
    pub async fn send_to_group(&self, group: &str, msg: Message) -> Result<usize, DriverError> {
        let links: Vec<Link> = self
            .shared
            .links()
            .into_iter()
            .filter(|l| l.shared.modules().values().any(|groups| groups.iter().any(|g| g == group)))
            .collect();
        if links.is_empty() {
            return Err(SessionError::UnknownGroup { group: group.to_owned() }.into());
        }
        let mut sent = 0;
        for link in links {
            sent += link.send_to_group(group, msg.clone()).await?;
        }
        Ok(sent)
    }

    /// Queues `msg` as it is on the connection serving `module`.
    pub async fn send_message(&self, module: &str, msg: Message) -> Result<(), DriverError> {
        self.link(module)?.send_message(msg).await
    }

    /// Closes the connection serving `module`; false when none does.
    pub fn disconnect(&self, module: &str) -> bool {
        match self.shared.link_for(module) {
            Some(link) => {
                link.close();
                true
            }
            None => false,
        }
    }

    /// Connections currently served (registered or not).
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The remote modules currently registered, sorted.
    pub fn modules(&self) -> Vec<String> {
        let set: BTreeSet<String> =
            self.shared.modules.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        set.into_iter().collect()
    }

    /// Failed accepts so far.
    pub fn accept_errors(&self) -> u64 {
        self.shared.accept_errors.load(Ordering::Relaxed)
    }

    /// Times this server gave the allocator's free memory back after
    /// connections closed (see [`ServerOptions::release_memory`]).
    pub fn memory_releases(&self) -> u64 {
        self.shared.releases.count()
    }

    /// Connections refused at `conn_max` so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Stops accepting and closes every connection (returns at once).
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
    }
}

/// The incoming messages and events of a server.
#[derive(Debug)]
pub struct ServerEvents {
    rx: mpsc::Receiver<ServerEvent>,
}

impl ServerEvents {
    /// The next event; `None` once the server stopped and every event was
    /// taken.
    pub async fn recv(&mut self) -> Option<ServerEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ServerEvent> {
        self.rx.try_recv().ok()
    }
}

/// The messages of a server's remote modules.
#[derive(Debug)]
pub struct IncomingMessages {
    rx: mpsc::Receiver<Incoming>,
}

impl IncomingMessages {
    /// The next message; `None` once the server stopped and every message
    /// was taken.
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        self.rx.try_recv().ok()
    }
}

/// Stops the server when dropped, unless disarmed.
#[derive(Debug)]
pub(crate) struct StopGuard(Option<Arc<ServerShared>>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.stop.send_replace(true);
        }
    }
}

/// A socket server (Go's socket server module) on the tokio runtime.
///
/// Dropping it stops accepting and closes every connection (after
/// [`into_parts`](Self::into_parts), [`ServerHandle::shutdown`] does).
#[derive(Debug)]
pub struct Server {
    handle: ServerHandle,
    incoming: IncomingMessages,
    events: ServerEvents,
    endpoint: Endpoint,
    guard: StopGuard,
}

impl Server {
    /// Listens on `endpoint` and serves remote modules with sessions of
    /// `config` (server role; one [`ModuleRegistry`] is shared by all
    /// connections, a new one unless the configuration has one).
    pub async fn bind(
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ServerOptions,
    ) -> Result<Server, DriverError> {
        let (incoming_tx, incoming) = mpsc::channel(options.driver.inbox_capacity.max(1));
        let (handle, events, endpoint, guard) =
            Server::start(endpoint, config, options, Delivery::Channel(incoming_tx)).await?;
        Ok(Server { handle, incoming: IncomingMessages { rx: incoming }, events, endpoint, guard })
    }

    /// Listens and starts accepting; messages go to `delivery`.
    pub(crate) async fn start(
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ServerOptions,
        delivery: Delivery,
    ) -> Result<(ServerHandle, ServerEvents, Endpoint, StopGuard), DriverError> {
        if !matches!(config.get_role(), Role::Server { .. }) {
            return Err(DriverError::Config("a server needs a session in the server role".into()));
        }
        endpoint.check(&config)?;
        endpoint.check_tls(options.driver.tls.as_ref(), true)?;
        let config = if config.registry.is_none() { config.registry(ModuleRegistry::new()) } else { config };
        let listener = Listener::bind(endpoint, options.backlog).await?;
        let endpoint = match (endpoint, listener.local_tcp_addr()) {
            (Endpoint::Tcp(_), Some(addr)) => Endpoint::Tcp(addr.to_string()),
            _ => endpoint.clone(),
        };
        let shared = Arc::new(ServerShared {
            conns: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            accept_errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stop: watch::Sender::new(false),
            releases: crate::memory::Releases::new(options.release_memory),
        });
        let (events_tx, events) = mpsc::channel(options.driver.event_capacity.max(1));
        let accept = Accept {
            listener,
            config,
            options,
            shared: Arc::clone(&shared),
            delivery,
            events: events_tx,
            endpoint: endpoint.clone(),
        };
        tokio::spawn(accept.run());
        tracing::info!(%endpoint, "socket server listening");
        Ok((
            ServerHandle { shared: Arc::clone(&shared) },
            ServerEvents { rx: events },
            endpoint,
            StopGuard(Some(shared)),
        ))
    }

    /// Where the server listens (a TCP port 0 resolved).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A cloneable handle for sending from other tasks.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The next message from a remote module.
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// The server's events.
    pub fn events(&mut self) -> &mut ServerEvents {
        &mut self.events
    }

    /// The handle, the incoming messages and the events apart (for separate
    /// tasks); the server then runs until [`ServerHandle::shutdown`].
    pub fn into_parts(self) -> (ServerHandle, IncomingMessages, ServerEvents) {
        let Server { handle, incoming, events, endpoint: _, mut guard } = self;
        guard.0 = None;
        (handle, incoming, events)
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

struct Accept {
    listener: Listener,
    config: SessionConfig,
    options: ServerOptions,
    shared: Arc<ServerShared>,
    delivery: Delivery,
    events: mpsc::Sender<ServerEvent>,
    endpoint: Endpoint,
}

impl Accept {
    async fn run(self) {
        let mut stop = self.shared.stop.subscribe();
        let mut backoff = self.options.accept_backoff;
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let accepted = tokio::select! {
                r = self.listener.accept(&self.options.driver) => r,
                _ = stop.changed() => continue,
            };
            match accepted {
                Ok(io) => {
                    backoff = self.options.accept_backoff;
                    let conn_max = self.options.conn_max;
                    if conn_max > 0 && self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).len() >= conn_max {
                        tracing::warn!(conn_max, "refusing a connection: too many connections");
                        self.shared.refused.fetch_add(1, Ordering::Relaxed);
                        crate::metrics::refused();
                        conn::report(&self.events, ServerEvent::Refused { conn_max });
                        drop(io);
                        continue;
                    }
                    self.serve(io);
                }
                Err(error) => {
                    self.shared.accept_errors.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::accept_error();
                    tracing::warn!(endpoint = %self.endpoint, error = %error, ?backoff, "accept failed, pausing");
                    conn::report(&self.events, ServerEvent::AcceptFailed { error, backoff });
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(self.options.max_accept_backoff.max(self.options.accept_backoff));
                }
            }
        }
        for link in self.shared.links() {
            link.close();
        }
        if let Endpoint::UnixPacket(path) | Endpoint::Unix(path) = &self.endpoint {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(endpoint = %self.endpoint, "socket server stopped");
    }

    fn serve(&self, io: super::io::Io) {
        let config = crate::driver::with_socket_packet_limit(self.config.clone(), io.packet_send_limit());
        let session = Session::new(config, conn::now());
        let id = session.id();
        let shared = Shared::new(id);
        let (tx, commands) = mpsc::channel(self.options.driver.command_capacity.max(1));
        let link = Link { tx, shared: Arc::clone(&shared), send_wait: self.options.driver.send_wait };
        {
            let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.insert(id, link);
            self.shared.releases.opened(conns.len());
        }
        let sink = ServerSink {
            server: Arc::clone(&self.shared),
            session: id,
            module: None,
            delivery: self.delivery.clone(),
            events: self.events.clone(),
        };
        tracing::debug!(session = %id, "connection accepted");
        conn::report(&self.events, ServerEvent::Accepted { session: id });
        tokio::spawn(Conn::new(session, io, commands, false, sink, shared).run());
    }
}
