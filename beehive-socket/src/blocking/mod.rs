//! The blocking driver: socket-mode connections served by plain threads,
//! for programs without an async runtime and for the lowest latency.
//!
//! It runs the same sans-IO [`Session`] as the
//! [tokio driver](crate::asyncio), so the wire behaviour, the timeouts
//! (handshake, stall, idle, write) and the flow control are the same: a
//! send waits at most [`Options::send_wait`] for room in the connection's
//! bounded outbound queue, then fails with
//! [`SessionError::QueueFull`]; a
//! peer that does not drain its socket is cut by the session's write
//! timeout; a full receiver pauses only the connection that feeds it.
//!
//! How it spends threads: each connection has one thread of its own; sends
//! write on the calling thread; a `send_sync` caller reads its response
//! itself while nobody else reads, so a round trip involves no hand-over
//! between threads. A thread that has to wait polls for
//! [`Options::spin`] (yielding its core between polls) before it blocks,
//! and an idle connection uses no CPU.
//!
//! * [`Client`]: connects, completes the module handshake, sends
//!   ([`Connection`]) and receives ([`Client::recv`]).
//! * [`Server`]: listens (replacing a stale socket file, mode 0600),
//!   accepts remote modules (`conn_max`; accept errors such as `EMFILE`
//!   pause it instead of stopping it), and hands their messages to
//!   [`Server::recv`] or to a handler running on the connection's reader
//!   ([`Server::bind_with_handler`]).
//!
//! Transports: SOCK_SEQPACKET (Go's `unixpacket`), unix stream and TCP
//! (Raw or Package framing), and TCP with TLS ([`Options::tls`], rustls
//! driven as a state machine under the connection's lock).
//!
//! ```no_run
//! use std::time::Duration;
//! use beehive_model::Message;
//! use beehive_socket::blocking::{Client, Endpoint, Server, ServerOptions};
//! use beehive_socket::session::{SessionConfig, TransportKind};
//!
//! let endpoint = Endpoint::unix_packet("/tmp/beehive.sock");
//! let config = SessionConfig::server("socketserver", TransportKind::Packet).local_module("hub", "hubgroup");
//! // Answer every request on the connection's own thread.
//! let _server = Server::bind_with_handler(&endpoint, config, ServerOptions::default(), |conn, incoming| {
//!     if incoming.message.is_sync() {
//!         let _ = conn.send_resp(incoming.message.new_response("pong"));
//!     }
//! })?;
//! let client = Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet))?;
//! let request = Message::new("").build_router("edgeclient", "", "res", "query").fill_body("ping");
//! let answer = client.send_sync("hub", request, Duration::from_secs(5))?;
//! assert_eq!(answer.content().as_str(), Some("pong"));
//! # Ok::<(), beehive_socket::blocking::DriverError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use beehive_model::Message;
use socket2::Socket;

use crate::driver::HANDSHAKE_GUARD;
use crate::metrics::Queued;

pub use crate::driver::{ClientEvent, DriverError, Endpoint, Incoming, ServerEvent, Tls};
use crate::session::{
    CloseReason, ModuleRegistry, Role, Session, SessionConfig, SessionError, SessionId, TransportKind,
};
/// The polling budget of [`Options::spin`], the module bus's own.
pub use beehive_context::SpinBudget;

mod conn;
mod io;
mod mailbox;

use conn::{Conn, ConnEvent, Sink};
#[cfg(feature = "tokio")]
pub(crate) use mailbox::Mailbox;
#[cfg(not(feature = "tokio"))]
use mailbox::Mailbox;
use mailbox::Refused;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Settings of one connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// How long a thread that has to wait (for a response, for a packet,
    /// for a message in [`Client::recv`]) polls before it blocks, yielding
    /// its core between polls: the same [`SpinBudget`] and the same polling
    /// as the module bus's (see there for the measurements). Waking a
    /// blocked thread costs tens of microseconds on an idle machine;
    /// polling only starts when a thread has to wait and ends after the
    /// budget, so an idle connection uses no CPU. `None` (the default):
    /// [`SpinBudget::DEFAULT`], or for the connections of a hive's socket
    /// backend ([`SocketBackend::serve_blocking`](crate::SocketBackend::serve_blocking),
    /// [`connect_blocking`](crate::SocketBackend::connect_blocking)) the
    /// hive's own budget ([`Hive::spin`](beehive_context::Hive::spin)), so
    /// that one setting governs a hive's waits; [`SpinBudget::OFF`]: block
    /// at once.
    pub spin: Option<SpinBudget>,
    /// Messages waiting for [`Client::recv`] (per client) or
    /// [`Server::recv`] (per server). While it is full the connection keeps
    /// up to 256 more messages, then stops reading its socket (the peer is
    /// slowed down, nothing is dropped).
    pub inbox_capacity: usize,
    /// Events waiting to be taken; when full, further events are logged and
    /// dropped.
    pub event_capacity: usize,
    /// How long a send waits for room in the outbound queue before it fails
    /// with `QueueFull` (`send_sync` waits up to its timeout instead).
    pub send_wait: Duration,
    /// SOCK_SEQPACKET: a send buffer size to ask the kernel for
    /// (`SO_SNDBUF`), which bounds the largest packet. `None` keeps the
    /// system's default, as Go does.
    pub packet_send_buffer: Option<usize>,
    /// TCP: TLS settings (client settings to connect, server settings to
    /// accept; [`Tls::from_config`] reads Go's `ca`/`cert`/`key`); `None`:
    /// plain TCP. The TLS handshake completes within the session's
    /// handshake timeout.
    pub tls: Option<Tls>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            spin: None,
            inbox_capacity: 1024,
            event_capacity: 1024,
            send_wait: Duration::from_secs(5),
            packet_send_buffer: None,
            tls: None,
        }
    }
}

impl Options {
    /// Sets [`spin`](Self::spin).
    pub fn spin(mut self, spin: SpinBudget) -> Self {
        self.spin = Some(spin);
        self
    }

    /// The polling budget in force: [`spin`](Self::spin) or the default.
    pub(crate) fn spin_budget(&self) -> SpinBudget {
        self.spin.unwrap_or(SpinBudget::DEFAULT)
    }

    /// Sets [`inbox_capacity`](Self::inbox_capacity).
    pub fn inbox_capacity(mut self, capacity: usize) -> Self {
        self.inbox_capacity = capacity.max(1);
        self
    }

    /// Sets [`send_wait`](Self::send_wait).
    pub fn send_wait(mut self, wait: Duration) -> Self {
        self.send_wait = wait;
        self
    }

    /// Sets [`tls`](Self::tls).
    pub fn tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`packet_send_buffer`](Self::packet_send_buffer).
    pub fn packet_send_buffer(mut self, size: Option<usize>) -> Self {
        self.packet_send_buffer = size;
        self
    }
}

/// A session for `socket`, with the kernel's packet limit on SOCK_SEQPACKET.
fn open_session(socket: &Socket, config: &SessionConfig, options: &Options) -> std::io::Result<Session> {
    let mut config = config.clone();
    if matches!(config.get_transport(), TransportKind::Packet) {
        if let Some(size) = options.packet_send_buffer {
            socket.set_send_buffer_size(size)?;
        }
        config = crate::driver::with_socket_packet_limit(config, crate::driver::packet_send_limit(socket));
    }
    Ok(Session::new(config, Instant::now()))
}

/// The TLS side of a new connection (`server`: an accepted one), when
/// `options` ask for one.
fn tls_state(options: &Options, server: bool) -> Result<Option<crate::tlsio::TlsSession>, DriverError> {
    Ok(options.tls.as_ref().map(|tls| crate::tlsio::session(tls, server)).transpose()?)
}

/// One connection: sends, and what is known of it. Cheap to clone; the
/// connection stays open while its peer or its owner keeps it so.
#[derive(Debug, Clone)]
pub struct Connection {
    conn: Arc<Conn>,
}

impl Connection {
    /// When a send waits no longer for room: [`Options::send_wait`] from now.
    fn send_deadline(&self) -> Instant {
        Instant::now() + self.conn.options().send_wait
    }

    /// Go's `Send(module, msg)` to a module served through this connection:
    /// the message is written (or queued behind what the socket has not
    /// taken yet) when this returns.
    pub fn send(&self, module: &str, msg: Message) -> Result<(), DriverError> {
        self.send_until(module, msg, self.send_deadline())
    }

    /// Go's `SendSync(module, msg, timeout)`: the response, or
    /// [`DriverError::Timeout`] after `timeout` in all.
    pub fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        self.conn.request(module, msg, timeout)
    }

    /// Go's `SendResp(resp)`: the destination becomes the response's
    /// source.
    pub fn send_resp(&self, resp: Message) -> Result<(), DriverError> {
        self.send_resp_until(resp, self.send_deadline())
    }

    /// Go's `SendToGroup(group, msg)`: one copy per member of `group`
    /// served through this connection; how many were sent.
    pub fn send_to_group(&self, group: &str, msg: Message) -> Result<usize, DriverError> {
        let queued = Queued::group(&msg, group);
        self.conn.send_with(self.send_deadline(), queued, |inner, now| inner.session().send_to_group(group, msg, now))
    }

    /// Sends `msg` exactly as it is.
    pub fn send_message(&self, msg: Message) -> Result<(), DriverError> {
        self.send_message_until(msg, self.send_deadline())
    }

    /// Waits until everything sent before is written to the socket, at
    /// most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), DriverError> {
        self.conn.wait_flushed(timeout)
    }

    /// Closes the connection at once (what is not written yet is dropped).
    pub fn close(&self) {
        self.conn.close();
    }

    /// Waits until the connection is closed, at most `timeout` (`None`:
    /// without limit); the reason, or `None` when still open.
    pub fn closed(&self, timeout: Option<Duration>) -> Option<Arc<CloseReason>> {
        self.conn.wait_closed(timeout.map(|t| Instant::now() + t))
    }

    /// True while the handshake is complete and the connection open.
    pub fn is_connected(&self) -> bool {
        let status = self.conn.status();
        status.connected && status.closed.is_none()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<Arc<CloseReason>> {
        self.conn.close_reason()
    }

    /// The modules reached through the connection and their groups.
    pub fn modules(&self) -> BTreeMap<String, Vec<String>> {
        self.conn.status().modules.clone()
    }

    /// The remote module (on a server), or our own (on a client), once
    /// registered.
    pub fn peer_module(&self) -> Option<String> {
        self.conn.status().peer.clone()
    }

    /// The connection's session.
    pub fn session_id(&self) -> SessionId {
        self.conn.id()
    }
}

/// Sends with a deadline of their own (the public sends use `send_wait`),
/// and what the hive's socket backend needs beyond the public calls.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
impl Connection {
    /// [`send`](Self::send) waiting for room until `deadline`.
    pub(crate) fn send_until(&self, module: &str, msg: Message, deadline: Instant) -> Result<(), DriverError> {
        self.conn.send_with(deadline, Queued::to(&msg, module), |inner, now| inner.session().send(module, msg, now))
    }

    /// [`send_message`](Self::send_message) waiting for room until
    /// `deadline`.
    pub(crate) fn send_message_until(&self, msg: Message, deadline: Instant) -> Result<(), DriverError> {
        self.conn.send_with(deadline, Queued::message(&msg), |inner, now| inner.session().send_message(msg, now))
    }

    /// [`send_resp`](Self::send_resp) waiting for room until `deadline`.
    pub(crate) fn send_resp_until(&self, resp: Message, deadline: Instant) -> Result<(), DriverError> {
        self.conn.send_with(deadline, Queued::response(&resp), |inner, now| inner.session().send_resp(resp, now))
    }

    /// [`send_sync`](Self::send_sync) for async callers: the request is
    /// sent when this returns, the future never blocks.
    pub(crate) fn request_async(
        &self,
        module: &str,
        msg: Message,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Message, DriverError>>, DriverError> {
        self.conn.request_async(module, msg, timeout)
    }

    /// True when the outbound queue takes another frame now.
    pub(crate) fn has_room(&self) -> bool {
        self.conn.has_room()
    }
}

// ---- client -------------------------------------------------------------------

struct ClientSink {
    inbox: Arc<Mailbox<Message>>,
    events: Arc<Mailbox<ClientEvent>>,
}

fn report<T: std::fmt::Debug>(events: &Mailbox<T>, event: T) {
    if let Err(Refused::Full(e)) = events.try_push(event) {
        tracing::warn!(event = ?e, "event queue full, event dropped");
    }
}

impl Sink for ClientSink {
    fn try_deliver(&self, _conn: &Arc<Conn>, msg: Message) -> Result<(), Message> {
        match self.inbox.try_push(msg) {
            Ok(()) => Ok(()),
            Err(Refused::Full(m)) => Err(m),
            Err(Refused::Closed(m)) => {
                tracing::debug!(msg_id = m.id(), "the client is gone, message dropped");
                Ok(())
            }
        }
    }

    fn deliver_until(&self, _conn: &Arc<Conn>, msg: Message, deadline: Instant) -> Result<(), Message> {
        match self.inbox.push_until(msg, Some(deadline)) {
            Ok(()) | Err(Refused::Closed(_)) => Ok(()),
            Err(Refused::Full(m)) => Err(m),
        }
    }

    fn event(&self, _conn: &Arc<Conn>, event: ConnEvent) {
        let event = match event {
            ConnEvent::Connected { module } => ClientEvent::Connected { module },
            ConnEvent::Registered { module, groups } => ClientEvent::Registered { module, groups },
            ConnEvent::Malformed { offset, error } => ClientEvent::Malformed { offset, error },
            ConnEvent::Closed { reason } => {
                report(&self.events, ClientEvent::Disconnected { reason });
                self.events.close();
                self.inbox.close();
                return;
            }
        };
        report(&self.events, event);
    }
}

/// A remote module connected to a socket server. Dropping it closes the
/// connection.
#[derive(Debug)]
pub struct Client {
    connection: Connection,
    inbox: Arc<Mailbox<Message>>,
    events: Arc<Mailbox<ClientEvent>>,
}

impl Client {
    /// Connects to `endpoint` and completes the handshake within the
    /// configuration's handshake timeout, with default [`Options`].
    pub fn connect(endpoint: &Endpoint, config: SessionConfig) -> Result<Client, DriverError> {
        Client::connect_with(endpoint, config, Options::default())
    }

    /// [`connect`](Self::connect) with `options`.
    pub fn connect_with(endpoint: &Endpoint, config: SessionConfig, options: Options) -> Result<Client, DriverError> {
        if !matches!(config.get_role(), Role::Client { .. }) {
            return Err(DriverError::Config("a client needs a client session configuration".into()));
        }
        endpoint.check(&config)?;
        endpoint.check_tls(options.tls.as_ref(), false)?;
        let timeout = config.get_handshake_timeout();
        let deadline = Instant::now() + timeout;
        let socket = io::connect(endpoint, timeout)?;
        let session = open_session(&socket, &config, &options)?;
        let tls = tls_state(&options, false)?;
        let inbox = Arc::new(Mailbox::new(options.inbox_capacity, options.spin_budget()));
        let events = Arc::new(Mailbox::new(options.event_capacity, SpinBudget::OFF));
        let sink = ClientSink { inbox: Arc::clone(&inbox), events: Arc::clone(&events) };
        let conn = Conn::start(socket, session, options, Box::new(sink), tls)?;
        handshake_verdict(&conn, endpoint, deadline, timeout)?;
        Ok(Client { connection: Connection { conn }, inbox, events })
    }

    /// The connection (cloneable, for other threads).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The next message addressed to our module; `None` once the
    /// connection is closed and every message was taken.
    pub fn recv(&self) -> Option<Message> {
        self.inbox.pop_until(None)
    }

    /// [`recv`](Self::recv) waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Message> {
        self.inbox.pop_until(Some(Instant::now() + timeout))
    }

    /// A message if one is waiting.
    pub fn try_recv(&self) -> Option<Message> {
        self.inbox.try_pop()
    }

    /// The next connection event, waiting at most `timeout` (`None`: until
    /// one comes or the connection's events end).
    pub fn next_event(&self, timeout: Option<Duration>) -> Option<ClientEvent> {
        self.events.pop_until(timeout.map(|t| Instant::now() + t))
    }
}

impl std::ops::Deref for Client {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.connection.close();
        self.inbox.close();
    }
}

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
/// A client connection whose traffic goes to `hooks` (the hive's socket
/// backend); its events go to `events`.
struct HookSink {
    hooks: Arc<dyn Hooks>,
    events: Arc<Mailbox<ClientEvent>>,
}

impl Sink for HookSink {
    fn try_deliver(&self, conn: &Arc<Conn>, msg: Message) -> Result<(), Message> {
        self.hooks.try_deliver(&Connection { conn: Arc::clone(conn) }, msg)
    }

    fn deliver_until(&self, conn: &Arc<Conn>, msg: Message, deadline: Instant) -> Result<(), Message> {
        self.hooks.deliver_until(&Connection { conn: Arc::clone(conn) }, msg, deadline)
    }

    fn event(&self, conn: &Arc<Conn>, event: ConnEvent) {
        let event = match event {
            ConnEvent::Connected { module } => ClientEvent::Connected { module },
            ConnEvent::Registered { module, groups } => {
                self.hooks.registered(&Connection { conn: Arc::clone(conn) }, &module, &groups);
                ClientEvent::Registered { module, groups }
            }
            ConnEvent::Malformed { offset, error } => ClientEvent::Malformed { offset, error },
            ConnEvent::Closed { reason } => {
                self.hooks.closed(conn.id());
                ClientEvent::Disconnected { reason }
            }
        };
        report(&self.events, event);
    }
}

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
/// Connects with the hive's hooks; the connection once the handshake is
/// complete.
pub(crate) fn connect_with_hooks(
    endpoint: &Endpoint,
    config: &SessionConfig,
    options: &Options,
    hooks: Arc<dyn Hooks>,
    events: Arc<Mailbox<ClientEvent>>,
) -> Result<Connection, DriverError> {
    if !matches!(config.get_role(), Role::Client { .. }) {
        return Err(DriverError::Config("a client needs a client session configuration".into()));
    }
    endpoint.check(config)?;
    endpoint.check_tls(options.tls.as_ref(), false)?;
    let timeout = config.get_handshake_timeout();
    let deadline = Instant::now() + timeout;
    let socket = io::connect(endpoint, timeout)?;
    let session = open_session(&socket, config, options)?;
    let tls = tls_state(options, false)?;
    let conn = Conn::start(socket, session, options.clone(), Box::new(HookSink { hooks, events }), tls)?;
    handshake_verdict(&conn, endpoint, deadline, timeout)?;
    Ok(Connection { conn })
}

/// Waits for a client connection's handshake, started for `timeout` at
/// `deadline`: the session's verdict (it cuts the handshake at its
/// timeout), or `ConnectTimeout` once the guard beyond it has passed too.
fn handshake_verdict(
    conn: &Conn,
    endpoint: &Endpoint,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), DriverError> {
    if conn.wait_connected(deadline + HANDSHAKE_GUARD) {
        return Ok(());
    }
    Err(match conn.close_reason() {
        Some(reason) => DriverError::Handshake { endpoint: endpoint.clone(), reason },
        None => {
            conn.close();
            DriverError::ConnectTimeout { endpoint: endpoint.clone(), timeout }
        }
    })
}

// ---- server -------------------------------------------------------------------

/// Server settings beyond the session configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Settings of every connection (the inbox is the server's, shared by
    /// all connections).
    pub connection: Options,
    /// Most connections served at once (Go's `connmax`); more are accepted
    /// and closed at once. 0: no limit.
    pub conn_max: usize,
    /// The listen backlog.
    pub backlog: i32,
    /// First pause after a failed accept (`EMFILE`...); it doubles on every
    /// further failure up to `max_accept_backoff`.
    pub accept_backoff: Duration,
    /// Longest pause after failed accepts.
    pub max_accept_backoff: Duration,
    /// Give the allocator's free memory back to the system when the open
    /// connections fall to a quarter of their peak (glibc's `malloc_trim`;
    /// nothing elsewhere). Default: on.
    pub release_memory: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            connection: Options::default(),
            conn_max: 0,
            backlog: 128,
            accept_backoff: Duration::from_millis(20),
            max_accept_backoff: Duration::from_secs(1),
            release_memory: true,
        }
    }
}

impl ServerOptions {
    /// Sets [`connection`](Self::connection).
    pub fn connection(mut self, options: Options) -> Self {
        self.connection = options;
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

type Handler = dyn Fn(&Connection, Incoming) + Send + Sync;

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
/// What an owner (the hive's socket backend) does with a connection's
/// traffic, in place of an inbox.
pub(crate) trait Hooks: Send + Sync + 'static {
    /// Delivers a message; gives it back when there is no room.
    fn try_deliver(&self, conn: &Connection, msg: Message) -> Result<(), Message>;
    /// Delivers a message waiting for room until `deadline`; gives it back
    /// when it could not (the owner has logged why).
    fn deliver_until(&self, conn: &Connection, msg: Message, deadline: Instant) -> Result<(), Message>;
    /// `module` (in `groups`) is reached through `conn` from now on.
    fn registered(&self, conn: &Connection, module: &str, groups: &[String]);
    /// Connection `session` closed.
    fn closed(&self, session: SessionId);
}

enum Delivery {
    Inbox(Arc<Mailbox<Incoming>>),
    Handler(Box<Handler>),
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Hooks(Arc<dyn Hooks>),
}

struct ServerShared {
    conns: Mutex<HashMap<SessionId, Arc<Conn>>>,
    modules: Mutex<HashMap<String, SessionId>>,
    accept_errors: AtomicU64,
    refused: AtomicU64,
    stop: AtomicBool,
    delivery: Delivery,
    events: Arc<Mailbox<ServerEvent>>,
    /// Interrupts the accept loop's `poll`.
    wake: std::os::unix::net::UnixStream,
    /// Giving memory back after closes.
    releases: crate::memory::Releases,
    /// When the accept thread gives memory back next: a little after the
    /// close that made it due, once the ending connection threads have
    /// freed what they held.
    release_at: Mutex<Option<Instant>>,
}

impl ServerShared {
    fn conn_for(&self, module: &str) -> Option<Arc<Conn>> {
        let session = *lock(&self.modules).get(module)?;
        lock(&self.conns).get(&session).cloned()
    }
}

struct ServerSink {
    server: std::sync::Weak<ServerShared>,
    session: SessionId,
    module: Mutex<Option<String>>,
}

impl ServerSink {
    fn incoming(&self, message: Message) -> Incoming {
        Incoming { session: self.session, module: lock(&self.module).clone(), message }
    }
}

impl Sink for ServerSink {
    fn try_deliver(&self, conn: &Arc<Conn>, msg: Message) -> Result<(), Message> {
        let Some(server) = self.server.upgrade() else { return Ok(()) };
        match &server.delivery {
            Delivery::Inbox(inbox) => match inbox.try_push(self.incoming(msg)) {
                Err(Refused::Full(i)) => Err(i.message),
                _ => Ok(()),
            },
            Delivery::Handler(handler) => {
                handler(&Connection { conn: Arc::clone(conn) }, self.incoming(msg));
                Ok(())
            }
            Delivery::Hooks(hooks) => hooks.try_deliver(&Connection { conn: Arc::clone(conn) }, msg),
        }
    }

    fn deliver_until(&self, conn: &Arc<Conn>, msg: Message, deadline: Instant) -> Result<(), Message> {
        let Some(server) = self.server.upgrade() else { return Ok(()) };
        match &server.delivery {
            Delivery::Inbox(inbox) => match inbox.push_until(self.incoming(msg), Some(deadline)) {
                Err(Refused::Full(i)) => Err(i.message),
                _ => Ok(()),
            },
            Delivery::Handler(_) => self.try_deliver(conn, msg),
            Delivery::Hooks(hooks) => hooks.deliver_until(&Connection { conn: Arc::clone(conn) }, msg, deadline),
        }
    }

    fn event(&self, conn: &Arc<Conn>, event: ConnEvent) {
        let Some(server) = self.server.upgrade() else { return };
        let session = self.session;
        let event = match event {
            ConnEvent::Connected { module } => {
                *lock(&self.module) = Some(module.clone());
                ServerEvent::Connected { session, module }
            }
            ConnEvent::Registered { module, groups } => {
                lock(&server.modules).insert(module.clone(), session);
                if let Delivery::Hooks(hooks) = &server.delivery {
                    hooks.registered(&Connection { conn: Arc::clone(conn) }, &module, &groups);
                }
                ServerEvent::Registered { session, module, groups }
            }
            ConnEvent::Malformed { offset, error } => ServerEvent::Malformed { session, offset, error },
            ConnEvent::Closed { reason } => {
                lock(&server.modules).retain(|_, s| *s != session);
                let open = {
                    let mut conns = lock(&server.conns);
                    conns.remove(&session);
                    conns.len()
                };
                if server.releases.closed(open) {
                    *lock(&server.release_at) = Some(Instant::now() + crate::memory::RELEASE_DELAY);
                    let _ = std::io::Write::write(&mut &server.wake, &[1]);
                }
                if let Delivery::Hooks(hooks) = &server.delivery {
                    hooks.closed(session);
                }
                ServerEvent::Disconnected { session, module: lock(&self.module).clone(), reason }
            }
        };
        report(&server.events, event);
    }
}

/// A cloneable handle that sends to a server's connected modules.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<ServerShared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("connections", &self.connections()).finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The connection serving `module`.
    pub fn connection(&self, module: &str) -> Result<Connection, DriverError> {
        self.shared
            .conn_for(module)
            .map(|conn| Connection { conn })
            .ok_or_else(|| DriverError::NotConnected(module.to_owned()))
    }

    /// Go's `Send(module, msg)` to a connected remote module.
    pub fn send(&self, module: &str, msg: Message) -> Result<(), DriverError> {
        self.connection(module)?.send(module, msg)
    }

    /// Go's `SendSync(module, msg, timeout)` to a connected remote module.
    pub fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        self.connection(module)?.send_sync(module, msg, timeout)
    }

    /// Go's `SendResp(resp)`: to the connection serving the response's
    /// source (the requester).
    pub fn send_resp(&self, resp: Message) -> Result<(), DriverError> {
        let module = resp.source().to_owned();
        self.connection(&module)?.send_resp(resp)
    }

    /// Go's `SendToGroup(group, msg)`: one copy per member of `group` on
    /// every connection; how many were sent.
    pub fn send_to_group(&self, group: &str, msg: Message) -> Result<usize, DriverError> {
        let conns: Vec<Arc<Conn>> = lock(&self.shared.conns)
            .values()
            .filter(|c| c.status().modules.values().any(|groups| groups.iter().any(|g| g == group)))
            .cloned()
            .collect();
        if conns.is_empty() {
            return Err(SessionError::UnknownGroup { group: group.to_owned() }.into());
        }
        let mut sent = 0;
        for conn in conns {
            sent += Connection { conn }.send_to_group(group, msg.clone())?;
        }
        Ok(sent)
    }

    /// Closes the connection serving `module`; false when none does.
    pub fn disconnect(&self, module: &str) -> bool {
        match self.shared.conn_for(module) {
            Some(conn) => {
                conn.close();
                true
            }
            None => false,
        }
    }

    /// Connections currently served (registered or not).
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// The remote modules currently registered, sorted.
    pub fn modules(&self) -> Vec<String> {
        let set: BTreeSet<String> = lock(&self.shared.modules).keys().cloned().collect();
        set.into_iter().collect()
    }

    /// Failed accepts so far.
    pub fn accept_errors(&self) -> u64 {
        self.shared.accept_errors.load(Ordering::Relaxed)
    }

    /// Connections refused at `conn_max` so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Times this server gave the allocator's free memory back after
    /// connections closed (see [`ServerOptions::release_memory`]).
    pub fn memory_releases(&self) -> u64 {
        self.shared.releases.count()
    }

    /// Stops accepting and closes every connection (returns at once).
    pub fn shutdown(&self) {
        if !self.shared.stop.swap(true, Ordering::AcqRel) {
            let _ = std::io::Write::write(&mut &self.shared.wake, &[1]);
        }
    }
}

/// A socket server: accepts remote modules on its own thread, one thread
/// per connection. Dropping it shuts it down.
pub struct Server {
    handle: ServerHandle,
    inbox: Option<Arc<Mailbox<Incoming>>>,
    events: Arc<Mailbox<ServerEvent>>,
    endpoint: Endpoint,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Server {
    /// Listens on `endpoint`; messages of the remote modules come out of
    /// [`recv`](Self::recv).
    pub fn bind(endpoint: &Endpoint, config: SessionConfig, options: ServerOptions) -> Result<Server, DriverError> {
        let inbox = Arc::new(Mailbox::new(options.connection.inbox_capacity, options.connection.spin_budget()));
        Server::start(endpoint, config, options, Delivery::Inbox(Arc::clone(&inbox)), Some(inbox))
    }

    /// Listens on `endpoint`; every message of a remote module goes to
    /// `handler`, called on the thread that read it with the connection it
    /// came from (answer with [`Connection::send_resp`]). A handler that
    /// blocks holds up its own connection only.
    pub fn bind_with_handler(
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ServerOptions,
        handler: impl Fn(&Connection, Incoming) + Send + Sync + 'static,
    ) -> Result<Server, DriverError> {
        Server::start(endpoint, config, options, Delivery::Handler(Box::new(handler)), None)
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    /// Listens on `endpoint`; the connections' traffic goes to `hooks`.
    pub(crate) fn bind_with_hooks(
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ServerOptions,
        hooks: Arc<dyn Hooks>,
    ) -> Result<Server, DriverError> {
        Server::start(endpoint, config, options, Delivery::Hooks(hooks), None)
    }

    fn start(
        endpoint: &Endpoint,
        config: SessionConfig,
        options: ServerOptions,
        delivery: Delivery,
        inbox: Option<Arc<Mailbox<Incoming>>>,
    ) -> Result<Server, DriverError> {
        if !matches!(config.get_role(), Role::Server { .. }) {
            return Err(DriverError::Config("a server needs a server session configuration".into()));
        }
        endpoint.check(&config)?;
        endpoint.check_tls(options.connection.tls.as_ref(), true)?;
        // One owner per module name among the server's connections.
        let config = if config.registry.is_none() { config.registry(ModuleRegistry::new()) } else { config };
        let listener = io::listen(endpoint, options.backlog)?;
        let (wake_rx, wake) = std::os::unix::net::UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        let events = Arc::new(Mailbox::new(options.connection.event_capacity, SpinBudget::OFF));
        let shared = Arc::new(ServerShared {
            conns: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            accept_errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            delivery,
            events: Arc::clone(&events),
            wake,
            releases: crate::memory::Releases::new(options.release_memory),
            release_at: Mutex::new(None),
        });
        let accept = Accept {
            listener,
            wake: wake_rx,
            config,
            options,
            shared: Arc::clone(&shared),
            endpoint: endpoint.clone(),
        };
        let thread = std::thread::Builder::new().name("beehive-accept".into()).spawn(move || accept.run())?;
        Ok(Server { handle: ServerHandle { shared }, inbox, events, endpoint: endpoint.clone(), accept: Some(thread) })
    }

    /// The endpoint listened on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The handle (cloneable, for other threads).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The next message of a remote module; `None` when the server has a
    /// handler, or is shut down and every message was taken.
    pub fn recv(&self) -> Option<Incoming> {
        self.inbox.as_ref()?.pop_until(None)
    }

    /// [`recv`](Self::recv) waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Incoming> {
        self.inbox.as_ref()?.pop_until(Some(Instant::now() + timeout))
    }

    /// A message if one is waiting.
    pub fn try_recv(&self) -> Option<Incoming> {
        self.inbox.as_ref()?.try_pop()
    }

    /// The next server event, waiting at most `timeout` (`None`: until one
    /// comes or the server is shut down).
    pub fn next_event(&self, timeout: Option<Duration>) -> Option<ServerEvent> {
        self.events.pop_until(timeout.map(|t| Instant::now() + t))
    }

    /// Stops accepting, closes every connection and waits for the accept
    /// thread.
    pub fn shutdown(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(inbox) = &self.inbox {
            inbox.close();
        }
    }
}

struct Accept {
    listener: Socket,
    wake: std::os::unix::net::UnixStream,
    config: SessionConfig,
    options: ServerOptions,
    shared: Arc<ServerShared>,
    endpoint: Endpoint,
}

impl Accept {
    fn run(self) {
        use std::os::fd::AsFd;

        use nix::poll::{PollFd, PollFlags, PollTimeout};

        let tcp = matches!(self.endpoint, Endpoint::Tcp(_));
        let mut backoff = self.options.accept_backoff;
        let mut pause: Option<Instant> = None;
        while !self.shared.stop.load(Ordering::Acquire) {
            let release_at = *lock(&self.shared.release_at);
            let wait = match pause.into_iter().chain(release_at).min() {
                Some(until) => {
                    let ms = until.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128);
                    PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let listen = if pause.is_some() { PollFlags::empty() } else { PollFlags::POLLIN };
            let mut fds =
                [PollFd::new(self.listener.as_fd(), listen), PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, wait);
            if fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                let mut drain = [0u8; 64];
                while matches!(std::io::Read::read(&mut &self.wake, &mut drain), Ok(n) if n > 0) {}
            }
            self.release_if_due();
            if pause.is_some_and(|until| Instant::now() >= until) {
                pause = None;
            }
            if pause.is_some() {
                continue;
            }
            match io::accept(&self.listener, tcp) {
                Ok(socket) => {
                    backoff = self.options.accept_backoff;
                    self.serve(socket);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                }
                Err(error) => {
                    self.shared.accept_errors.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::accept_error();
                    tracing::warn!(endpoint = %self.endpoint, error = %error, ?backoff, "accept failed, pausing");
                    report(&self.shared.events, ServerEvent::AcceptFailed { error, backoff });
                    pause = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(self.options.max_accept_backoff.max(self.options.accept_backoff));
                }
            }
        }
        let conns: Vec<Arc<Conn>> = lock(&self.shared.conns).values().cloned().collect();
        for conn in conns {
            conn.close();
        }
        if let Endpoint::UnixPacket(path) | Endpoint::Unix(path) = &self.endpoint {
            let _ = std::fs::remove_file(path);
        }
        self.shared.events.close();
        tracing::info!(endpoint = %self.endpoint, "socket server stopped");
    }

    /// Gives memory back when a release is due (see `ServerOptions::release_memory`).
    fn release_if_due(&self) {
        let mut release_at = lock(&self.shared.release_at);
        if release_at.is_some_and(|at| Instant::now() >= at) {
            *release_at = None;
            drop(release_at);
            crate::memory::trim_thread_arena();
            self.shared.releases.release();
        }
    }

    fn serve(&self, socket: Socket) {
        let conn_max = self.options.conn_max;
        if conn_max > 0 && lock(&self.shared.conns).len() >= conn_max {
            tracing::warn!(conn_max, "refusing a connection: too many connections");
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            crate::metrics::refused();
            report(&self.shared.events, ServerEvent::Refused { conn_max });
            return;
        }
        let session = match open_session(&socket, &self.config, &self.options.connection) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up an accepted connection");
                return;
            }
        };
        let tls = match tls_state(&self.options.connection, true) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up TLS for an accepted connection");
                return;
            }
        };
        let id = session.id();
        let sink = ServerSink { server: Arc::downgrade(&self.shared), session: id, module: Mutex::new(None) };
        // Registered before the thread can report anything about it.
        let mut conns = lock(&self.shared.conns);
        match Conn::start(socket, session, self.options.connection.clone(), Box::new(sink), tls) {
            Ok(conn) => {
                conns.insert(id, conn);
                self.shared.releases.opened(conns.len());
                drop(conns);
                tracing::debug!(session = %id, "connection accepted");
                report(&self.shared.events, ServerEvent::Accepted { session: id });
            }
            Err(e) => tracing::warn!(error = %e, "cannot start a connection"),
        }
    }
}

// ---- the hive's socket backend on this driver -----------------------------------

#[cfg(feature = "tokio")]
/// Reconnection of a [`HiveClient`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Settings of the connection.
    pub connection: Options,
    /// First pause before reconnecting; it doubles after every failed
    /// attempt up to `max_retry_interval`.
    pub retry_interval: Duration,
    /// Longest pause between attempts.
    pub max_retry_interval: Duration,
}

#[cfg(feature = "tokio")]
impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connection: Options::default(),
            retry_interval: Duration::from_millis(100),
            max_retry_interval: Duration::from_secs(5),
        }
    }
}

#[cfg(feature = "tokio")]
impl ConnectOptions {
    /// Sets the first and the longest pause before reconnecting.
    pub fn retry(mut self, first: Duration, max: Duration) -> Self {
        self.retry_interval = first;
        self.max_retry_interval = max.max(first);
        self
    }
}

#[cfg(feature = "tokio")]
/// What a [`HiveClient`] shares with its reconnecting thread.
#[derive(Debug, Default)]
pub(crate) struct Supervision {
    stopped: Mutex<bool>,
    changed: std::sync::Condvar,
    current: Mutex<Option<Connection>>,
}

#[cfg(feature = "tokio")]
impl Supervision {
    /// Stops: closes the current connection, wakes the thread.
    pub(crate) fn stop(&self) {
        *lock(&self.stopped) = true;
        if let Some(c) = lock(&self.current).take() {
            c.close();
        }
        self.changed.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// The connection in use (closed at once when already stopped).
    pub(crate) fn set_current(&self, conn: Connection) {
        let stopped = lock(&self.stopped);
        if *stopped {
            conn.close();
        }
        *lock(&self.current) = Some(conn);
    }

    /// Sleeps `pause` unless stopped meanwhile; false when stopped.
    pub(crate) fn pause(&self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        let mut stopped = lock(&self.stopped);
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            stopped = self.changed.wait_timeout(stopped, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        false
    }
}

#[cfg(feature = "tokio")]
/// This process as a remote module of another hive over the blocking
/// driver ([`SocketBackend::connect_blocking`](crate::asyncio::SocketBackend::connect_blocking)).
/// Dropping it (or [`shutdown`](Self::shutdown)) closes the connection and
/// stops reconnecting.
#[derive(Debug)]
pub struct HiveClient {
    module: String,
    events: Arc<Mailbox<ClientEvent>>,
    supervision: Arc<Supervision>,
    thread: Option<JoinHandle<()>>,
}

#[cfg(feature = "tokio")]
impl HiveClient {
    pub(crate) fn new(
        module: String,
        events: Arc<Mailbox<ClientEvent>>,
        supervision: Arc<Supervision>,
        thread: JoinHandle<()>,
    ) -> Self {
        HiveClient { module, events, supervision, thread: Some(thread) }
    }

    /// The module this process registers.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The next event of the connection (over every reconnection), waiting
    /// at most `timeout` (`None`: until one comes or the client stops).
    pub fn next_event(&self, timeout: Option<Duration>) -> Option<ClientEvent> {
        self.events.pop_until(timeout.map(|t| Instant::now() + t))
    }

    /// Closes the connection, stops reconnecting, and waits for the
    /// reconnecting thread.
    pub fn shutdown(&mut self) {
        self.supervision.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(feature = "tokio")]
impl Drop for HiveClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::TransportKind;
    use crate::StreamFraming;
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;

    /// Hooks that look, while a registration runs, whether the peer can
    /// already read its handshake answer.
    struct Probe {
        peer: Mutex<Option<UnixStream>>,
        early: std::sync::mpsc::SyncSender<Vec<u8>>,
    }

    impl Hooks for Probe {
        fn try_deliver(&self, _: &Connection, _: Message) -> Result<(), Message> {
            Ok(())
        }

        fn deliver_until(&self, _: &Connection, _: Message, _: Instant) -> Result<(), Message> {
            Ok(())
        }

        fn registered(&self, _: &Connection, _: &str, _: &[String]) {
            let peer = lock(&self.peer);
            let peer = peer.as_ref().expect("the peer is connected before it registers");
            peer.set_nonblocking(true).unwrap();
            let mut buf = vec![0u8; 4096];
            let early = match (&*peer).read(&mut buf) {
                Ok(n) => buf[..n].to_vec(),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                    Vec::new()
                }
            };
            peer.set_nonblocking(false).unwrap();
            let _ = self.early.try_send(early);
        }

        fn closed(&self, _: SessionId) {}
    }

    #[test]
    fn a_server_answers_the_handshake_only_once_its_modules_are_routable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (early_tx, early_rx) = std::sync::mpsc::sync_channel(1);
        let probe = Arc::new(Probe { peer: Mutex::new(None), early: early_tx });
        let config = SessionConfig::server("socketserver", TransportKind::Stream(StreamFraming::Raw));
        let mut server =
            Server::bind_with_hooks(&Endpoint::unix(&path), config, ServerOptions::default(), probe.clone()).unwrap();
        let peer = UnixStream::connect(&path).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        *lock(&probe.peer) = Some(peer.try_clone().unwrap());
        let request = crate::handshake_request("edgemod").set_sync(true);
        (&peer).write_all(&beehive_model::to_vec_line(&request).unwrap()).unwrap();

        let early = early_rx.recv_timeout(Duration::from_secs(10)).expect("the module registered");
        assert_eq!(String::from_utf8_lossy(&early), "", "the answer was readable before the module was routable");
        let mut answer = vec![0u8; 4096];
        let n = (&peer).read(&mut answer).unwrap();
        let answer = beehive_model::from_slice(&answer[..n]).unwrap();
        assert_eq!(answer.parent_id(), request.id(), "the handshake answer follows the registration");
        server.shutdown();
    }
}
