//! The hive's socket backend on the tokio driver.
//!
//! [`SocketBackend`] is a [`Backend`] of context type `unixpacket`: the
//! hive reaches remote modules through it as if they were in process.
//! [`SocketBackend::serve`] runs a socket server whose remote modules join
//! the hive (Go's socket server module); [`SocketBackend::connect`] makes
//! this process a remote module of another hive (Go's socket client), with
//! the server's modules reachable by name and a reconnection after every
//! drop.
//!
//! Flow control: a send to a remote module waits at most
//! [`BackendOptions::send_wait`] for room in its connection's queue (an
//! async send without blocking an executor thread) and fails with
//! [`ContextError::Remote`] after that; `send_to_group` waits at most
//! [`BackendOptions::group_wait`] per member and names the members it
//! skipped. A message from a connection whose destination's inbox is full
//! pauses that connection only (nothing else), for at most
//! [`BackendOptions::delivery_wait`], after which the message is dropped,
//! logged and counted (`beehive_socket_undelivered_total`). Responses to
//! this hive's requests go to their waiters directly, whatever the inboxes
//! hold.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use beehive_context::{
    broadcast, effective_timeout, group_delivery, Backend, BoxFuture, ChannelContext, ContextError, Hive,
    MessageContext, ModuleContext, Offer, RemoteError, SyncKeeper, DEFAULT_INBOX_CAPACITY,
};
use beehive_model::Message;
use tokio::sync::{broadcast, mpsc, watch};

use super::client::open;
use super::conn::{self, ConnEvent, Link, Shared, Sink, Stalled};
use super::server::{Delivery, ServerEvents, ServerHandle, StopGuard};
use super::{ClientEvent, DriverError, DriverOptions, Endpoint, Server, ServerOptions};
use crate::blocking;
use crate::config::UNIXPACKET;
use crate::metrics::{trace_message, Trail};
use crate::session::{ModuleDirectory, Role, SessionConfig, SessionId};

/// Waits and sizes of a [`SocketBackend`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackendOptions {
    /// How long a send to a remote module waits for room in its
    /// connection's queue before it fails.
    pub send_wait: Duration,
    /// How long `send_to_group` waits for room per remote member before it
    /// skips that member (and reports it).
    pub group_wait: Duration,
    /// How long a connection stops reading while the inbox its next
    /// message is for is full; the message is then dropped (logged,
    /// counted) and reading goes on.
    pub delivery_wait: Duration,
    /// Capacity of the inboxes of modules added on this backend.
    pub inbox_capacity: usize,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            send_wait: Duration::from_secs(5),
            group_wait: Duration::from_secs(1),
            delivery_wait: Duration::from_secs(5),
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
        }
    }
}

impl BackendOptions {
    /// Sets [`send_wait`](Self::send_wait).
    pub fn send_wait(mut self, wait: Duration) -> Self {
        self.send_wait = wait;
        self
    }

    /// Sets [`group_wait`](Self::group_wait).
    pub fn group_wait(mut self, wait: Duration) -> Self {
        self.group_wait = wait;
        self
    }

    /// Sets [`delivery_wait`](Self::delivery_wait).
    pub fn delivery_wait(mut self, wait: Duration) -> Self {
        self.delivery_wait = wait;
        self
    }

    /// Sets [`inbox_capacity`](Self::inbox_capacity).
    pub fn inbox_capacity(mut self, capacity: usize) -> Self {
        self.inbox_capacity = capacity;
        self
    }
}

#[derive(Debug, Default)]
struct Routes {
    /// Remote module → the connection serving it now.
    links: HashMap<String, Pipe>,
    /// Every module ever reached through a connection: while it has no
    /// connection, sends to it fail instead of being queued locally.
    remote: HashSet<String>,
    /// Group → its remote members, in order of registration (kept while
    /// they are disconnected, so that a send reports them).
    groups: HashMap<String, Vec<String>>,
    /// Client side: the connection to the server, for answers to requests
    /// whose source is not a listed module.
    default: Option<Pipe>,
    /// Client side: this process's remote modules and the connection each
    /// registered on (`None` while it is down). As in Go, a send to one of
    /// them goes to the server, which routes it by its destination.
    own: HashMap<String, Option<Pipe>>,
}

impl Routes {
    /// Adds remote `module` to `group` (once).
    fn join(&mut self, group: &str, module: &str) {
        let members = self.groups.entry(group.to_owned()).or_default();
        if !members.iter().any(|m| m == module) {
            members.push(module.to_owned());
        }
    }
}

/// The socket backend of a hive (context type `unixpacket`) on the tokio
/// driver. See the [driver documentation](crate::asyncio).
///
/// ```no_run
/// use beehive_context::Hive;
/// use beehive_socket::asyncio::{Endpoint, ServerOptions, SocketBackend};
/// use beehive_socket::session::{SessionConfig, TransportKind};
///
/// # async fn run() -> Result<(), beehive_socket::asyncio::DriverError> {
/// let hive = Hive::new();
/// let backend = SocketBackend::new();
/// hive.add_backend(backend.clone());
/// let config = SessionConfig::server("socketserver", TransportKind::Packet);
/// let server = backend.serve(&hive, &Endpoint::unix_packet("/tmp/hive.sock"), config, ServerOptions::default()).await?;
/// // Remote modules that register are now reachable with hive.send(..).
/// # drop(server);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SocketBackend {
    local: ChannelContext,
    routes: RwLock<Routes>,
    keeper: SyncKeeper,
    options: BackendOptions,
    tap: OnceLock<broadcast::Sender<Message>>,
}

fn remote_error(module: &str, e: DriverError) -> ContextError {
    tracing::debug!(module, error = %e, "send to a remote module failed");
    ContextError::Remote { module: module.to_owned(), source: RemoteError::new(e) }
}

/// A `send_sync` that failed: a timeout names its request.
fn sync_error(module: &str, msg_id: String, e: DriverError) -> ContextError {
    match e {
        DriverError::Timeout(timeout) => ContextError::ResponseTimeout { msg_id, timeout },
        e => remote_error(module, e),
    }
}

fn not_connected(module: &str) -> ContextError {
    ContextError::NotConnected { module: module.to_owned() }
}

/// A connection of either driver, as the backend uses it.
#[derive(Debug, Clone)]
pub(crate) enum Pipe {
    /// A connection task of the tokio driver.
    Task(Link),
    /// A connection of the blocking driver.
    Thread(blocking::Connection),
}

/// How often an async send to a blocking connection whose queue is full
/// looks again.
const ROOM_RETRY: Duration = Duration::from_millis(1);

impl Pipe {
    fn session(&self) -> SessionId {
        match self {
            Pipe::Task(l) => l.shared.session,
            Pipe::Thread(c) => c.session_id(),
        }
    }

    fn close(&self) {
        match self {
            Pipe::Task(l) => l.close(),
            Pipe::Thread(c) => c.close(),
        }
    }

    /// Waits (without blocking the executor) until a blocking connection's
    /// queue has room, at most until `deadline`.
    async fn room(c: &blocking::Connection, deadline: Instant) {
        while !c.has_room() && Instant::now() < deadline {
            tokio::time::sleep(ROOM_RETRY).await;
        }
    }

    fn send_blocking(&self, module: &str, msg: Message, wait: Duration) -> Result<(), DriverError> {
        match self {
            Pipe::Task(l) => l.send_blocking(module, msg, wait),
            Pipe::Thread(c) => c.send_until(module, msg, Instant::now() + wait),
        }
    }

    fn send_sync_blocking(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        match self {
            Pipe::Task(l) => l.send_sync_blocking(module, msg, timeout),
            Pipe::Thread(c) => c.send_sync(module, msg, timeout),
        }
    }

    fn send_resp_blocking(&self, msg: Message) -> Result<(), DriverError> {
        match self {
            Pipe::Task(l) => l.send_resp_blocking(msg),
            Pipe::Thread(c) => c.send_resp(msg),
        }
    }

    fn send_message_blocking(&self, msg: Message, wait: Duration) -> Result<(), DriverError> {
        match self {
            Pipe::Task(l) => l.send_message_blocking(msg, wait),
            Pipe::Thread(c) => c.send_message_until(msg, Instant::now() + wait),
        }
    }

    async fn send_within(&self, module: &str, msg: Message, wait: Duration) -> Result<(), DriverError> {
        match self {
            Pipe::Task(l) => l.send_within(module, msg, wait).await,
            Pipe::Thread(c) => {
                Pipe::room(c, Instant::now() + wait).await;
                c.send_until(module, msg, Instant::now())
            }
        }
    }

    async fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        match self {
            Pipe::Task(l) => l.send_sync(module, msg, timeout).await,
            Pipe::Thread(c) => {
                let start = Instant::now();
                Pipe::room(c, start + timeout).await;
                let left = timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(DriverError::Timeout(timeout));
                }
                c.request_async(module, msg, left)?.await
            }
        }
    }

    async fn send_resp(&self, msg: Message, wait: Duration) -> Result<(), DriverError> {
        match self {
            Pipe::Task(l) => l.send_resp(msg).await,
            Pipe::Thread(c) => {
                Pipe::room(c, Instant::now() + wait).await;
                c.send_resp_until(msg, Instant::now())
            }
        }
    }

    async fn send_message_within(&self, msg: Message, wait: Duration) -> Result<(), DriverError> {
        match self {
            Pipe::Task(l) => l.send_message_within(msg, wait).await,
            Pipe::Thread(c) => {
                Pipe::room(c, Instant::now() + wait).await;
                c.send_message_until(msg, Instant::now())
            }
        }
    }
}

impl SocketBackend {
    /// A backend with the default options.
    pub fn new() -> Arc<Self> {
        SocketBackend::with_options(BackendOptions::default())
    }

    /// A backend with `options`.
    pub fn with_options(options: BackendOptions) -> Arc<Self> {
        Arc::new(SocketBackend {
            local: ChannelContext::with_capacity(options.inbox_capacity.max(1)),
            routes: RwLock::default(),
            keeper: SyncKeeper::default(),
            options,
            tap: OnceLock::new(),
        })
    }

    /// The options.
    pub fn options(&self) -> &BackendOptions {
        &self.options
    }

    fn read(&self) -> RwLockReadGuard<'_, Routes> {
        self.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Routes> {
        self.routes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection serving `module`: `Ok(None)` for a module of this
    /// process, an error for a remote module that is not connected now.
    fn link(&self, module: &str) -> Result<Option<Pipe>, ContextError> {
        let routes = self.read();
        match routes.links.get(module) {
            Some(link) => Ok(Some(link.clone())),
            None if routes.remote.contains(module) => Err(not_connected(module)),
            None => match routes.own.get(module) {
                Some(Some(link)) => Ok(Some(link.clone())),
                Some(None) => Err(not_connected(module)),
                None => Ok(None),
            },
        }
    }

    fn is_remote(&self, module: &str) -> bool {
        self.read().remote.contains(module)
    }

    /// A copy of every message read from the connections from now on
    /// (handshakes aside), before it is delivered: for tools that show the
    /// traffic. A receiver that falls more than `capacity` messages behind
    /// loses the oldest and learns how many
    /// ([`broadcast::error::RecvError::Lagged`]); the first call sets the
    /// capacity for all. Without a receiver, nothing is copied.
    pub fn tap(&self, capacity: usize) -> broadcast::Receiver<Message> {
        self.tap.get_or_init(|| broadcast::Sender::new(capacity.max(1))).subscribe()
    }

    /// The remote modules connected now, sorted.
    pub fn remote_modules(&self) -> Vec<String> {
        let mut v: Vec<String> = self.read().links.keys().cloned().collect();
        v.sort();
        v
    }

    /// `module` (in `groups`) is reached through `link` from now on.
    fn add_route(&self, hive: &Hive, module: &str, groups: &[String], link: &Pipe) {
        {
            let mut routes = self.write();
            routes.remote.insert(module.to_owned());
            routes.links.insert(module.to_owned(), link.clone());
            for group in groups {
                routes.join(group, module);
            }
        }
        match hive.add_module(module, UNIXPACKET) {
            Ok(()) | Err(ContextError::DuplicateModule { .. }) => {}
            Err(e) => tracing::warn!(module, error = %e, "cannot add a remote module to the hive"),
        }
        for group in groups {
            if let Err(e) = hive.add_module_group(module, group) {
                tracing::warn!(module, group = %group, error = %e, "cannot add a remote module to its group");
            }
        }
    }

    /// Connection `session` closed: its modules are unreachable until they
    /// connect again.
    fn drop_routes(&self, session: SessionId) {
        let mut routes = self.write();
        routes.links.retain(|_, link| link.session() != session);
        if routes.default.as_ref().is_some_and(|l| l.session() == session) {
            routes.default = None;
        }
        for link in routes.own.values_mut() {
            if link.as_ref().is_some_and(|l| l.session() == session) {
                *link = None;
            }
        }
    }

    /// Serves remote modules on `endpoint` with sessions of `config`
    /// (server role) into `hive`, whose backend of type `unixpacket` this
    /// must be. The handshake answer lists the server's module and the
    /// hive's registered modules at the time of each registration.
    pub async fn serve(
        self: &Arc<Self>,
        hive: &Hive,
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ServerOptions,
    ) -> Result<HiveServer, DriverError> {
        self.check_installed(hive)?;
        let directory = {
            let hive = hive.clone();
            ModuleDirectory::new(move || hive.module_groups())
        };
        let config = config.module_directory(directory);
        let route = Arc::new(HiveRoute { backend: Arc::clone(self), hive: hive.clone(), own: None });
        let (handle, events, endpoint, guard) = Server::start(endpoint, config, options, Delivery::Hive(route)).await?;
        Ok(HiveServer { handle, events, endpoint, _guard: guard })
    }

    /// Makes this process remote module `config`'s module (client role) of
    /// the hive serving `endpoint`: waits for the first connection, then
    /// keeps reconnecting (with backoff) after every drop until the
    /// returned [`HiveClient`] is shut down or dropped. The module gets an
    /// inbox in `hive` on this backend; the server's modules become
    /// reachable by name while connected.
    pub async fn connect(
        self: &Arc<Self>,
        hive: &Hive,
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ConnectOptions,
    ) -> Result<HiveClient, DriverError> {
        self.check_installed(hive)?;
        let Role::Client { module } = config.get_role() else {
            return Err(DriverError::Config("a client needs a session in the client role".into()));
        };
        let module = module.clone();
        match hive.add_module(&module, UNIXPACKET) {
            Ok(()) | Err(ContextError::DuplicateModule { .. }) => {}
            Err(e) => return Err(DriverError::Config(format!("cannot add module {module:?} to the hive: {e}"))),
        }
        let (events_tx, events) = mpsc::channel(options.driver.event_capacity.max(1));
        let stop = watch::Sender::new(false);
        let supervisor = Supervisor {
            backend: Arc::clone(self),
            hive: hive.clone(),
            endpoint: endpoint.clone(),
            config,
            options,
            module: module.clone(),
            events: events_tx,
            stop: stop.subscribe(),
        };
        let link = supervisor.connect_once().await?;
        tokio::spawn(supervisor.run(link));
        Ok(HiveClient { module, events: ClientEvents { rx: events }, stop })
    }

    /// [`serve`](Self::serve) on the blocking driver: an accept thread and
    /// one thread per connection, no runtime needed; a sync request from
    /// this hive to a remote module costs no thread hand-over.
    pub fn serve_blocking(
        self: &Arc<Self>,
        hive: &Hive,
        endpoint: &Endpoint,
        config: SessionConfig,
        options: blocking::ServerOptions,
    ) -> Result<blocking::Server, DriverError> {
        self.check_installed(hive)?;
        let directory = {
            let hive = hive.clone();
            ModuleDirectory::new(move || hive.module_groups())
        };
        let config = config.module_directory(directory);
        let route = Arc::new(HiveRoute { backend: Arc::clone(self), hive: hive.clone(), own: None });
        let mut options = options;
        options.connection.spin.get_or_insert(hive.spin());
        blocking::Server::bind_with_hooks(endpoint, config, options, route)
    }

    /// [`connect`](Self::connect) on the blocking driver: the connection
    /// and the reconnections run on threads of their own, no runtime
    /// needed.
    pub fn connect_blocking(
        self: &Arc<Self>,
        hive: &Hive,
        endpoint: &Endpoint,
        config: SessionConfig,
        options: blocking::ConnectOptions,
    ) -> Result<blocking::HiveClient, DriverError> {
        self.check_installed(hive)?;
        let Role::Client { module } = config.get_role() else {
            return Err(DriverError::Config("a client needs a session in the client role".into()));
        };
        let module = module.clone();
        match hive.add_module(&module, UNIXPACKET) {
            Ok(()) | Err(ContextError::DuplicateModule { .. }) => {}
            Err(e) => return Err(DriverError::Config(format!("cannot add module {module:?} to the hive: {e}"))),
        }
        let mut options = options;
        options.connection.spin.get_or_insert(hive.spin());
        let events =
            Arc::new(blocking::Mailbox::new(options.connection.event_capacity.max(1), blocking::SpinBudget::OFF));
        let route: Arc<dyn blocking::Hooks> =
            Arc::new(HiveRoute { backend: Arc::clone(self), hive: hive.clone(), own: Some(module.clone()) });
        let connect = {
            let (backend, endpoint, config, options, events, module_name) = (
                Arc::clone(self),
                endpoint.clone(),
                config.clone(),
                options.clone(),
                Arc::clone(&events),
                module.clone(),
            );
            move || -> Result<blocking::Connection, DriverError> {
                let conn = blocking::connect_with_hooks(
                    &endpoint,
                    &config,
                    &options.connection,
                    Arc::clone(&route),
                    Arc::clone(&events),
                )?;
                backend.client_connected(&module_name, Pipe::Thread(conn.clone()));
                Ok(conn)
            }
        };
        let first = connect()?;
        let supervision = Arc::new(blocking::Supervision::default());
        supervision.set_current(first.clone());
        let thread = {
            let (supervision, endpoint, module) = (Arc::clone(&supervision), endpoint.clone(), module.clone());
            std::thread::Builder::new().name(format!("beehive-reconnect-{module}")).spawn(move || {
                let mut conn = first;
                let mut wait = options.retry_interval;
                loop {
                    let reason = conn.closed(None);
                    if supervision.is_stopped() {
                        return;
                    }
                    if let Some(reason) = reason {
                        tracing::info!(%endpoint, %module, %reason, "connection lost");
                    }
                    loop {
                        if !supervision.pause(wait) {
                            return;
                        }
                        match connect() {
                            Ok(c) => {
                                supervision.set_current(c.clone());
                                conn = c;
                                wait = options.retry_interval;
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(%endpoint, %module, error = %e, ?wait, "cannot reconnect, retrying");
                                wait = (wait * 2).min(options.max_retry_interval);
                            }
                        }
                    }
                }
            })?
        };
        Ok(blocking::HiveClient::new(module, events, supervision, thread))
    }

    /// Client side: `module` is a remote module of this process.
    fn is_own(&self, module: &str) -> bool {
        self.read().own.contains_key(module)
    }

    /// Client side: our `module` is registered on `link`, the connection to
    /// the server.
    fn client_connected(&self, module: &str, link: Pipe) {
        let mut routes = self.write();
        routes.own.insert(module.to_owned(), Some(link.clone()));
        routes.default = Some(link);
    }

    fn check_installed(self: &Arc<Self>, hive: &Hive) -> Result<(), DriverError> {
        let installed = hive.backend(UNIXPACKET).ok();
        let ours: Arc<dyn Backend> = self.clone();
        match installed {
            Some(b) if Arc::ptr_eq(&b, &ours) => Ok(()),
            _ => Err(DriverError::Config(
                "the backend is not the hive's `unixpacket` backend (Hive::add_backend)".into(),
            )),
        }
    }

    /// The remote members of `group` and their connections now (`None`:
    /// not connected); `None` when the group has no remote member.
    fn group_members(&self, group: &str) -> Option<Vec<(String, Option<Pipe>)>> {
        let routes = self.read();
        let members = routes.groups.get(group)?;
        Some(members.iter().map(|m| (m.clone(), routes.links.get(m).cloned())).collect())
    }

    fn group_sync_message(msg: Message) -> Message {
        // Unlike a plain broadcast (Go leaves the type alone), a synchronous
        // one carries the type, so the members' answers route back here.
        msg.set_sync(true).set_type(UNIXPACKET)
    }
}

impl ModuleContext for SocketBackend {
    fn add_module(&self, module: &str) -> Result<(), ContextError> {
        if self.is_remote(module) {
            return Ok(());
        }
        self.local.add_module(module)
    }

    fn add_module_group(&self, module: &str, group: &str) -> Result<(), ContextError> {
        if self.is_remote(module) {
            self.write().join(group, module);
            return Ok(());
        }
        self.local.add_module_group(module, group)
    }

    fn seal(&self, module: &str) -> Result<(), ContextError> {
        if self.is_remote(module) {
            return Ok(());
        }
        self.local.seal(module)
    }

    fn cleanup(&self, module: &str) -> Result<usize, ContextError> {
        let link = {
            let mut routes = self.write();
            if !routes.remote.remove(module) {
                drop(routes);
                return self.local.cleanup(module);
            }
            for members in routes.groups.values_mut() {
                members.retain(|m| m != module);
            }
            routes.links.remove(module)
        };
        if let Some(link) = link {
            link.close();
        }
        Ok(0)
    }
}

impl MessageContext for SocketBackend {
    fn send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        match self.link(module)? {
            Some(link) => link.send_blocking(module, msg, self.options.send_wait).map_err(|e| remote_error(module, e)),
            None => self.local.send(module, msg),
        }
    }

    fn try_send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        match self.link(module)? {
            Some(link) => link.send_blocking(module, msg, Duration::ZERO).map_err(|e| remote_error(module, e)),
            None => self.local.try_send(module, msg),
        }
    }

    fn offer(&self, module: &str, msg: Message) -> Result<(), Offer> {
        // A message read from a connection for one of our own remote
        // modules goes into its inbox here (a send to it goes out).
        if self.is_own(module) {
            return self.local.offer(module, msg);
        }
        match self.link(module) {
            Ok(None) => self.local.offer(module, msg),
            Ok(Some(_)) => self.try_send(module, msg).map_err(Offer::Failed),
            Err(e) => Err(Offer::Failed(e)),
        }
    }

    fn send_timeout(&self, module: &str, msg: Message, timeout: Duration) -> Result<(), ContextError> {
        match self.link(module)? {
            Some(link) => link.send_blocking(module, msg, timeout).map_err(|e| remote_error(module, e)),
            None => self.local.send_timeout(module, msg, timeout),
        }
    }

    fn send_async<'a>(&'a self, module: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        match self.link(module) {
            Ok(Some(link)) => Box::pin(async move {
                link.send_within(module, msg, self.options.send_wait).await.map_err(|e| remote_error(module, e))
            }),
            Ok(None) => self.local.send_async(module, msg),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn receive(&self, module: &str) -> Result<Message, ContextError> {
        self.local.receive(module)
    }

    fn receive_timeout(&self, module: &str, timeout: Duration) -> Result<Option<Message>, ContextError> {
        self.local.receive_timeout(module, timeout)
    }

    fn receive_async<'a>(&'a self, module: &'a str) -> BoxFuture<'a, Result<Message, ContextError>> {
        self.local.receive_async(module)
    }

    fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, ContextError> {
        match self.link(module)? {
            Some(link) => {
                let id = msg.id().to_owned();
                link.send_sync_blocking(module, msg, effective_timeout(timeout)).map_err(|e| sync_error(module, id, e))
            }
            None => self.local.send_sync(module, msg, timeout),
        }
    }

    fn send_sync_async<'a>(
        &'a self,
        module: &'a str,
        msg: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ContextError>> {
        match self.link(module) {
            Ok(Some(link)) => Box::pin(async move {
                let id = msg.id().to_owned();
                link.send_sync(module, msg, effective_timeout(timeout)).await.map_err(|e| sync_error(module, id, e))
            }),
            Ok(None) => self.local.send_sync_async(module, msg, timeout),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn send_resp(&self, resp: Message) -> Result<(), ContextError> {
        // Go sends a response to the module named by its source (the module
        // that sent the request), with that module as destination.
        let source = resp.source().to_owned();
        let resp = match self.resp_target(resp)? {
            Answer::Remote(link, resp) => {
                return link.send_resp_blocking(resp).map_err(|e| remote_error(&source, e));
            }
            Answer::Local(resp) => resp,
        };
        self.local.send_resp(resp)
    }

    fn send_resp_async<'a>(&'a self, resp: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        match self.resp_target(resp) {
            Ok(Answer::Remote(link, resp)) => Box::pin(async move {
                let source = resp.source().to_owned();
                link.send_resp(resp, self.options.send_wait).await.map_err(|e| remote_error(&source, e))
            }),
            Ok(Answer::Local(resp)) => self.local.send_resp_async(resp),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn send_to_group(&self, group: &str, msg: Message) -> Result<(), ContextError> {
        let Some(targets) = self.group_members(group) else { return self.local.send_to_group(group, msg) };
        broadcast(group, msg.id(), &targets, |member, link| match link {
            Some(link) => link
                .send_message_blocking(msg.clone().set_destination(member), self.options.group_wait)
                .map_err(|e| e.to_string()),
            None => Err(not_connected(member).to_string()),
        })
    }

    fn send_to_group_async<'a>(&'a self, group: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        let Some(targets) = self.group_members(group) else {
            return self.local.send_to_group_async(group, msg);
        };
        Box::pin(async move {
            let mut failed = Vec::new();
            for (member, link) in targets {
                let r = match link {
                    Some(link) => link
                        .send_message_within(msg.clone().set_destination(member.as_str()), self.options.group_wait)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(not_connected(&member).to_string()),
                };
                if let Err(reason) = r {
                    failed.push((member, reason));
                }
            }
            group_delivery(group, msg.id(), failed)
        })
    }

    fn send_to_group_sync(&self, group: &str, msg: Message, timeout: Duration) -> Result<Vec<Message>, ContextError> {
        let Some(targets) = self.group_members(group) else {
            return self.local.send_to_group_sync(group, msg, timeout);
        };
        if targets.is_empty() {
            return Err(ContextError::UnknownGroup { group: group.to_owned() });
        }
        let members: Vec<String> = targets.iter().map(|(m, _)| m.clone()).collect();
        let timeout = effective_timeout(timeout);
        let msg = Self::group_sync_message(msg);
        self.keeper.group_sync(group, msg.id(), &members, timeout, |name, _, deadline| {
            let Some((_, Some(link))) = targets.iter().find(|(m, _)| m == name) else { return false };
            let wait = deadline.saturating_duration_since(Instant::now()).min(self.options.group_wait);
            link.send_message_blocking(msg.clone().set_destination(name), wait).is_ok()
        })
    }
}

/// Where a response goes.
enum Answer {
    /// Out on this connection.
    Remote(Pipe, Message),
    /// To a waiter of this process.
    Local(Message),
}

impl SocketBackend {
    /// Where a response goes: to the connection serving its source; to a
    /// waiter of this process when one waits for it; otherwise (client
    /// side) to the server, through which the request came from a module
    /// the server did not list (Go's client panics there).
    fn resp_target(&self, resp: Message) -> Result<Answer, ContextError> {
        let routes = self.read();
        let source = resp.source();
        if let Some(link) = routes.links.get(source) {
            return Ok(Answer::Remote(link.clone(), resp));
        }
        if routes.remote.contains(source) {
            return Err(not_connected(source));
        }
        match &routes.default {
            Some(link) if !self.local.is_waiting(resp.parent_id()) => Ok(Answer::Remote(link.clone(), resp)),
            _ => Ok(Answer::Local(resp)),
        }
    }
}

impl Backend for SocketBackend {
    fn context_type(&self) -> &str {
        UNIXPACKET
    }
}

/// How messages read from a connection reach the hive.
#[derive(Debug)]
pub(crate) struct HiveRoute {
    backend: Arc<SocketBackend>,
    hive: Hive,
    /// Client side: our module, which gets every message that is not for
    /// another module of this process.
    own: Option<String>,
}

fn undelivered(module: &str, error: &ContextError) {
    tracing::warn!(module, error = %error, "message from a connection not delivered, dropped");
    metrics::counter!("beehive_socket_undelivered_total", "reason" => error.kind()).increment(1);
}

impl HiveRoute {
    /// Where `msg` goes in this process; `None` when it goes to another
    /// connection (server side: Go forwards it to its destination).
    fn destination(&self, msg: &Message) -> (String, bool) {
        let dest = msg.destination();
        match &self.own {
            Some(own) => {
                let local = !dest.is_empty() && !self.backend.is_remote(dest) && self.hive.has_module(dest);
                (if local { dest.to_owned() } else { own.clone() }, false)
            }
            None => (dest.to_owned(), self.backend.is_remote(dest)),
        }
    }

    pub(crate) fn try_deliver(&self, msg: Message) -> Result<(), Message> {
        if let Some(tap) = self.backend.tap.get() {
            if tap.receiver_count() > 0 {
                let _ = tap.send(msg.clone());
            }
        }
        if !msg.parent_id().is_empty() && self.backend.keeper.is_waiting(msg.parent_id()) {
            trace_message!(msg, "response to a waiting request");
            let _ = self.backend.keeper.deliver(msg);
            return Ok(());
        }
        let (dest, remote) = self.destination(&msg);
        if remote {
            trace_message!(msg, module = %dest, "forwarded to another connection");
            // To another connection: an async send, never a wait here.
            return Err(msg);
        }
        let trail = Trail::of(&msg);
        match self.hive.offer(&dest, msg) {
            Ok(()) => {
                if let Some(t) = trail {
                    trace_message!(t, module = %dest, waited = false, "delivered into the hive");
                }
                Ok(())
            }
            Err(Offer::Full(msg)) => Err(msg),
            Err(Offer::Failed(e)) => {
                undelivered(&dest, &e);
                Ok(())
            }
        }
    }

    pub(crate) fn deliver_later(&self, msg: Message) -> Stalled {
        let (dest, remote) = self.destination(&msg);
        let hive = self.hive.clone();
        let backend = Arc::clone(&self.backend);
        let wait = self.backend.options.delivery_wait;
        // A forward is traced by the connection that queues it.
        let trail = if remote { None } else { Trail::of(&msg) };
        Box::pin(async move {
            let id = msg.id().to_owned();
            let source = msg.source().to_owned();
            let delivery: BoxFuture<'_, Result<(), ContextError>> = if backend.is_own(&dest) {
                backend.local.send_async(&dest, msg)
            } else {
                Box::pin(hive.send_async(&dest, msg))
            };
            match tokio::time::timeout(wait, delivery).await {
                Ok(Ok(())) => {
                    if let Some(t) = trail {
                        trace_message!(t, module = %dest, waited = true, "delivered into the hive");
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(msg_id = %id, %source, "not delivered");
                    undelivered(&dest, &e);
                }
                Err(_) => {
                    tracing::warn!(msg_id = %id, %source, ?wait, "inbox full for too long");
                    undelivered(&dest, &ContextError::Full { module: dest.clone() });
                }
            }
        })
    }

    pub(crate) fn registered(&self, module: &str, groups: &[String], link: &Pipe) {
        self.backend.add_route(&self.hive, module, groups, link);
    }

    pub(crate) fn closed(&self, session: SessionId) {
        self.backend.drop_routes(session);
    }
}

impl blocking::Hooks for HiveRoute {
    fn try_deliver(&self, _conn: &blocking::Connection, msg: Message) -> Result<(), Message> {
        HiveRoute::try_deliver(self, msg)
    }

    /// Waits for room up to the backend's delivery wait (this connection
    /// reads nothing meanwhile), then drops, logs and counts the message.
    fn deliver_until(&self, _conn: &blocking::Connection, msg: Message, _deadline: Instant) -> Result<(), Message> {
        let (dest, _) = self.destination(&msg);
        let wait = self.backend.options.delivery_wait;
        let (id, source) = (msg.id().to_owned(), msg.source().to_owned());
        let delivered = if self.backend.is_own(&dest) {
            self.backend.local.send_timeout(&dest, msg, wait)
        } else {
            self.hive.send_timeout(&dest, msg, wait)
        };
        match delivered {
            Ok(()) => {}
            Err(ContextError::Full { .. }) => {
                tracing::warn!(msg_id = %id, %source, ?wait, "inbox full for too long");
                undelivered(&dest, &ContextError::Full { module: dest.clone() });
            }
            Err(e) => {
                tracing::warn!(msg_id = %id, %source, "not delivered");
                undelivered(&dest, &e);
            }
        }
        Ok(())
    }

    fn registered(&self, conn: &blocking::Connection, module: &str, groups: &[String]) {
        if self.own.as_deref() != Some(module) {
            self.backend.add_route(&self.hive, module, groups, &Pipe::Thread(conn.clone()));
        }
    }

    fn closed(&self, session: SessionId) {
        self.backend.drop_routes(session);
    }
}

/// A socket server serving remote modules into a hive
/// ([`SocketBackend::serve`]). Dropping it stops the server and closes
/// every connection.
#[derive(Debug)]
pub struct HiveServer {
    handle: ServerHandle,
    events: ServerEvents,
    endpoint: Endpoint,
    _guard: StopGuard,
}

impl HiveServer {
    /// Where the server listens (a TCP port 0 resolved).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The server's handle (connections, modules, direct sends).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The server's events (accepted, registered, disconnected...).
    pub fn events(&mut self) -> &mut ServerEvents {
        &mut self.events
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

/// Reconnection of a [`HiveClient`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Channel sizes and waits of the connection.
    pub driver: DriverOptions,
    /// First pause before reconnecting; it doubles after every failed
    /// attempt up to `max_retry_interval`.
    pub retry_interval: Duration,
    /// Longest pause between attempts.
    pub max_retry_interval: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            driver: DriverOptions::default(),
            retry_interval: Duration::from_millis(100),
            max_retry_interval: Duration::from_secs(5),
        }
    }
}

impl ConnectOptions {
    /// Sets the first and the longest pause before reconnecting.
    pub fn retry(mut self, first: Duration, max: Duration) -> Self {
        self.retry_interval = first;
        self.max_retry_interval = max.max(first);
        self
    }
}

/// This process as a remote module of another hive
/// ([`SocketBackend::connect`]). Dropping it (or
/// [`shutdown`](Self::shutdown)) closes the connection and stops
/// reconnecting.
#[derive(Debug)]
pub struct HiveClient {
    module: String,
    events: ClientEvents,
    stop: watch::Sender<bool>,
}

impl HiveClient {
    /// The module this process registers.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The connection's events, over every reconnection.
    pub fn events(&mut self) -> &mut ClientEvents {
        &mut self.events
    }

    /// Closes the connection and stops reconnecting.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for HiveClient {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The events of a [`HiveClient`]: those of each connection in turn.
#[derive(Debug)]
pub struct ClientEvents {
    rx: mpsc::Receiver<ClientEvent>,
}

impl ClientEvents {
    /// The next event; `None` once the client stopped.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.rx.try_recv().ok()
    }
}

struct Supervisor {
    backend: Arc<SocketBackend>,
    hive: Hive,
    endpoint: Endpoint,
    config: SessionConfig,
    options: ConnectOptions,
    module: String,
    events: mpsc::Sender<ClientEvent>,
    stop: watch::Receiver<bool>,
}

struct HiveClientSink {
    route: HiveRoute,
    link: Link,
    events: mpsc::Sender<ClientEvent>,
}

impl Sink for HiveClientSink {
    fn try_deliver(&mut self, msg: Message) -> Result<(), Message> {
        self.route.try_deliver(msg)
    }

    fn deliver_later(&mut self, msg: Message) -> Stalled {
        self.route.deliver_later(msg)
    }

    fn event(&mut self, shared: &Shared, event: ConnEvent) {
        let event = match event {
            ConnEvent::Registered { module, groups } => {
                if self.route.own.as_deref() != Some(module.as_str()) {
                    self.route.registered(&module, &groups, &Pipe::Task(self.link.clone()));
                }
                ClientEvent::Registered { module, groups }
            }
            ConnEvent::Connected { module } => ClientEvent::Connected { module },
            ConnEvent::Malformed { offset, error } => ClientEvent::Malformed { offset, error },
            ConnEvent::Closed { reason } => {
                self.route.closed(shared.session);
                ClientEvent::Disconnected { reason }
            }
        };
        conn::report(&self.events, event);
    }
}

impl Supervisor {
    async fn connect_once(&self) -> Result<Link, DriverError> {
        let route =
            HiveRoute { backend: Arc::clone(&self.backend), hive: self.hive.clone(), own: Some(self.module.clone()) };
        let events = self.events.clone();
        let make_sink = |link: &Link| HiveClientSink { route, link: link.clone(), events };
        let link = open(&self.endpoint, self.config.clone(), &self.options.driver, false, make_sink).await?;
        self.backend.client_connected(&self.module, Pipe::Task(link.clone()));
        Ok(link)
    }

    async fn run(mut self, mut link: Link) {
        let mut wait = self.options.retry_interval;
        loop {
            tokio::select! {
                reason = link.closed() => tracing::info!(endpoint = %self.endpoint, module = %self.module, %reason, "connection lost"),
                _ = self.stop.wait_for(|s| *s) => {
                    link.close();
                    return;
                }
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = self.stop.wait_for(|s| *s) => return,
                }
                match self.connect_once().await {
                    Ok(l) => {
                        link = l;
                        wait = self.options.retry_interval;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %self.endpoint, module = %self.module, error = %e, ?wait, "cannot reconnect, retrying");
                        wait = (wait * 2).min(self.options.max_retry_interval);
                    }
                }
            }
        }
    }
}
