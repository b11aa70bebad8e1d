//! The async client: a remote module connected to a socket server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use beehive_model::Message;
use tokio::sync::mpsc;

use super::conn::{self, Conn, ConnEvent, Link, Shared, Sink, State};
use super::{io, ClientEvent, DriverError, DriverOptions, Endpoint};
use crate::driver::HANDSHAKE_GUARD;
use crate::session::{CloseReason, Role, Session, SessionConfig, SessionId};

struct ClientSink {
    messages: mpsc::Sender<Message>,
    events: mpsc::Sender<ClientEvent>,
}

impl Sink for ClientSink {
    fn try_deliver(&mut self, msg: Message) -> Result<(), Message> {
        conn::try_deliver(&self.messages, msg)
    }

    fn deliver_later(&mut self, msg: Message) -> conn::Stalled {
        conn::deliver_later(&self.messages, msg)
    }

    fn event(&mut self, _shared: &Shared, event: ConnEvent) {
        let event = match event {
            ConnEvent::Connected { module } => ClientEvent::Connected { module },
            ConnEvent::Registered { module, groups } => ClientEvent::Registered { module, groups },
            ConnEvent::Malformed { offset, error } => ClientEvent::Malformed { offset, error },
            ConnEvent::Closed { reason } => ClientEvent::Disconnected { reason },
        };
        conn::report(&self.events, event);
    }
}

/// A cloneable handle that sends on a client's connection.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    link: Link,
}

impl ClientHandle {
    /// Go's `Send(module, msg)`: queues `msg` for `module` (a module of the
    /// server's handshake answer, or our own), with the type `unixpacket`.
    /// Returns once the message is queued on the connection (not written).
    pub async fn send(&self, module: &str, msg: Message) -> Result<(), DriverError> {
        self.link.send(module, msg).await
    }

    /// Go's `SendSync(module, msg, timeout)`: sends `msg` with `sync` set
    /// and waits for its response, up to `timeout` in all (waiting for room
    /// in the command channel included).
    pub async fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        self.link.send_sync(module, msg, timeout).await
    }

    /// Go's `SendResp(resp)`: the destination becomes the response's source.
    pub async fn send_resp(&self, resp: Message) -> Result<(), DriverError> {
        self.link.send_resp(resp).await
    }

    /// Go's `SendToGroup(group, msg)`: one copy per member of `group` (from
    /// the handshake answer); returns how many were queued.
    pub async fn send_to_group(&self, group: &str, msg: Message) -> Result<usize, DriverError> {
        self.link.send_to_group(group, msg).await
    }

    /// Queues `msg` exactly as it is.
    pub async fn send_message(&self, msg: Message) -> Result<(), DriverError> {
        self.link.send_message(msg).await
    }

    /// Waits until every message queued so far is written to the socket
    /// (handed to the kernel), at most `timeout`: before closing, so that
    /// nothing queued is lost. Fails with [`DriverError::Timeout`] when the
    /// peer does not take it in time, or the connection's close reason.
    pub async fn flush(&self, timeout: Duration) -> Result<(), DriverError> {
        self.link.flush(timeout).await
    }

    /// Closes the connection (returns at once; the `Disconnected` event
    /// follows).
    pub fn close(&self) {
        self.link.close();
    }

    /// Waits until the connection is closed; why it closed.
    pub async fn closed(&self) -> Arc<CloseReason> {
        self.link.closed().await
    }

    /// True while the connection is up.
    pub fn is_connected(&self) -> bool {
        matches!(*self.link.shared.state.borrow(), State::Connected)
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<Arc<CloseReason>> {
        self.link.shared.close_reason()
    }

    /// The modules reached through the connection, with their groups.
    pub fn modules(&self) -> BTreeMap<String, Vec<String>> {
        self.link.shared.modules()
    }

    /// The session's id.
    pub fn session_id(&self) -> SessionId {
        self.link.shared.session
    }

    /// The module registered through the connection, once it is up: a
    /// client's own module (the server's answer names it), as the
    /// blocking driver's `Connection::peer_module`.
    pub fn peer_module(&self) -> Option<String> {
        self.link.shared.peer()
    }
}

/// The messages addressed to a client's module.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Message>,
}

impl Messages {
    /// The next message; `None` once the connection is closed and every
    /// message was taken.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

/// A client's connection events.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<ClientEvent>,
}

impl Events {
    /// The next event; `None` after `Disconnected` was taken.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.rx.try_recv().ok()
    }
}

/// A remote module connected to a socket server (Go's socket client
/// context), with its handshake complete.
///
/// Dropping the client (every [`ClientHandle`] included) closes the
/// connection.
#[derive(Debug)]
pub struct Client {
    handle: ClientHandle,
    messages: Messages,
    events: Events,
}

impl Client {
    /// Connects to `endpoint` and completes the handshake of `config`
    /// (client role), within the configuration's handshake timeout.
    pub async fn connect(endpoint: &Endpoint, config: SessionConfig) -> Result<Client, DriverError> {
        Client::connect_with(endpoint, config, DriverOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit channel options.
    pub async fn connect_with(
        endpoint: &Endpoint,
        config: SessionConfig,
        options: DriverOptions,
    ) -> Result<Client, DriverError> {
        let (messages_tx, messages) = mpsc::channel(options.inbox_capacity.max(1));
        let (events_tx, events) = mpsc::channel(options.event_capacity.max(1));
        let sink = |_: &Link| ClientSink { messages: messages_tx, events: events_tx };
        let link = open(endpoint, config, &options, true, sink).await?;
        Ok(Client { handle: ClientHandle { link }, messages: Messages { rx: messages }, events: Events { rx: events } })
    }

    /// A cloneable handle for sending from other tasks.
    pub fn handle(&self) -> &ClientHandle {
        &self.handle
    }

    /// The next message addressed to our module; `None` once the
    /// connection is closed and every message was taken.
    pub async fn recv(&mut self) -> Option<Message> {
        self.messages.recv().await
    }

    /// The connection's events (registered modules, connected, malformed
    /// input, disconnected).
    pub fn events(&mut self) -> &mut Events {
        &mut self.events
    }

    /// The handle, the messages and the events apart (for separate tasks).
    pub fn into_parts(self) -> (ClientHandle, Messages, Events) {
        (self.handle, self.messages, self.events)
    }

    /// See [`ClientHandle::send`].
    pub async fn send(&self, module: &str, msg: Message) -> Result<(), DriverError> {
        self.handle.send(module, msg).await
    }

    /// See [`ClientHandle::send_sync`].
    pub async fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        self.handle.send_sync(module, msg, timeout).await
    }

    /// See [`ClientHandle::send_resp`].
    pub async fn send_resp(&self, resp: Message) -> Result<(), DriverError> {
        self.handle.send_resp(resp).await
    }

    /// See [`ClientHandle::send_to_group`].
    pub async fn send_to_group(&self, group: &str, msg: Message) -> Result<usize, DriverError> {
        self.handle.send_to_group(group, msg).await
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.handle.close();
    }
}

/// Connects to `endpoint`, starts the connection task with `sink` and waits
/// for the handshake of `config` (client role) to complete.
pub(crate) async fn open<S: Sink>(
    endpoint: &Endpoint,
    config: SessionConfig,
    options: &DriverOptions,
    close_when_orphaned: bool,
    make_sink: impl FnOnce(&Link) -> S,
) -> Result<Link, DriverError> {
    if !matches!(config.get_role(), Role::Client { .. }) {
        return Err(DriverError::Config("a client needs a session in the client role".into()));
    }
    endpoint.check(&config)?;
    endpoint.check_tls(options.tls.as_ref(), false)?;
    let timeout = config.get_handshake_timeout();
    let deadline = tokio::time::Instant::now() + timeout;
    let io = match tokio::time::timeout_at(deadline, io::connect(endpoint, options)).await {
        Ok(r) => r?,
        Err(_) => return Err(DriverError::ConnectTimeout { endpoint: endpoint.clone(), timeout }),
    };
    let config = crate::driver::with_socket_packet_limit(config, io.packet_send_limit());
    let session = Session::new(config, conn::now());
    let shared = Shared::new(session.id());
    let (tx, commands) = mpsc::channel(options.command_capacity.max(1));
    let link = Link { tx, shared: Arc::clone(&shared), send_wait: options.send_wait };
    let task = Conn::new(session, io, commands, close_when_orphaned, make_sink(&link), shared);
    let mut state = link.shared.state.subscribe();
    tokio::spawn(task.run());
    // The session cuts the handshake at its timeout; the bound is a guard.
    let wait = async {
        loop {
            match &*state.borrow_and_update() {
                State::Connected => return Ok(()),
                State::Closed(reason) => return Err(Arc::clone(reason)),
                State::Handshaking => {}
            }
            if state.changed().await.is_err() {
                return Err(Arc::new(CloseReason::Local));
            }
        }
    };
    match tokio::time::timeout_at(deadline + HANDSHAKE_GUARD, wait).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return Err(DriverError::Handshake { endpoint: endpoint.clone(), reason }),
        Err(_) => {
            link.close();
            return Err(DriverError::ConnectTimeout { endpoint: endpoint.clone(), timeout });
        }
    }
    tracing::info!(%endpoint, module = ?link.shared.peer(), "connected");
    Ok(link)
}
