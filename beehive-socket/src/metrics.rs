//! What the drivers report: figures through the [`metrics`] facade, and an
//! event per message crossing a connection through [`tracing`].
//!
//! # Metrics
//!
//! The crate depends on the facade only: a program that wants the figures
//! installs a recorder (a Prometheus exporter, say) **before** it connects
//! or serves, since each connection registers its handles when it starts.
//! The handles live in the connection's task, so counting a read, a write
//! or a message is one increment on a handle held there (one branch when
//! no recorder is installed). `role` is `server` for the connections a
//! server accepted, `client` for those a client opened.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `beehive_socket_connections_opened_total` | counter | `role` | connections started |
//! | `beehive_socket_connections_closed_total` | counter | `role`, `reason` | connections closed, by [`CloseReason::kind`] (`aborted`: the task was dropped, with its runtime, before its session closed) |
//! | `beehive_socket_connections_open` | gauge | `role` | connections open now |
//! | `beehive_socket_bytes_read_total` | counter | `role` | bytes of frames read from the sockets (a packet counts its whole length; over TLS, the plaintext) |
//! | `beehive_socket_bytes_written_total` | counter | `role` | bytes of frames written to them |
//! | `beehive_socket_messages_read_total` | counter | `role` | messages decoded from the connections, handshakes included |
//! | `beehive_socket_messages_written_total` | counter | `role` | messages written whole to them, handshakes included |
//! | `beehive_socket_malformed_total` | counter | `role` | packets or frames skipped because they are not a message |
//! | `beehive_socket_accept_errors_total` | counter | | failed accepts (the server pauses, then accepts again) |
//! | `beehive_socket_refused_total` | counter | | connections closed at once because `conn_max` are served |
//! | `beehive_socket_undelivered_total` | counter | `reason` | messages from a connection the hive backend dropped: the inbox stayed full (`full`) or the delivery failed ([`ContextError::kind`](beehive_context::ContextError::kind)) |
//!
//! Between two connected peers the bytes and messages one side wrote are
//! those the other read.
//!
//! # Message events
//!
//! At level `TRACE`, target `beehive_socket::message` (so
//! `RUST_LOG=beehive_socket::message=trace` follows every message), each
//! event carries the message's `msg_id`, `parent_msg_id`, `source`,
//! `destination` and `operation`: a request and its response can be
//! followed from one socket into a module and back. The events:
//!
//! * `read from a connection` (`session`, `role`): the connection's task
//!   decoded a message (handshakes aside);
//! * `queued for writing` (`session`, `role`; `destination` is the module
//!   it is queued for, or for a group send, with `group`, the message's
//!   own), or `not queued` with the `error`;
//! * `delivered into the hive` (`module`, `waited` when the inbox was
//!   full at first), `response to a waiting request`, `forwarded to
//!   another connection` (`module`): where the hive backend put a message
//!   read from a connection.
//!
//! While the level is off for that target nothing is formatted, copied or
//! allocated for them.

use beehive_model::Message;
use metrics::{Counter, Gauge};

use crate::driver::DriverError;
use crate::session::{CloseReason, Role, SessionId};

/// The target of the message events.
pub(crate) const MESSAGE_TARGET: &str = "beehive_socket::message";

/// A `TRACE` event of target [`MESSAGE_TARGET`] with the fields of `$msg`
/// (a [`Message`] or a [`Trail`]) followed by the given fields and text.
/// The fields are evaluated only when the event is enabled.
macro_rules! trace_message {
    ($msg:expr, $($rest:tt)+) => {
        ::tracing::trace!(
            target: $crate::metrics::MESSAGE_TARGET,
            msg_id = $msg.id(),
            parent_msg_id = $msg.parent_id(),
            source = $msg.source(),
            destination = $msg.destination(),
            operation = $msg.operation(),
            $($rest)+
        )
    };
}
#[cfg(feature = "tokio")]
pub(crate) use trace_message;

/// True when the message events are enabled.
#[inline]
pub(crate) fn tracing_messages() -> bool {
    tracing::enabled!(target: MESSAGE_TARGET, tracing::Level::TRACE)
}

/// The event of a message read from a connection.
#[inline]
pub(crate) fn trace_read(msg: &Message, session: SessionId, role: ConnRole) {
    trace_message!(msg, session = %session, role = role.label(), "read from a connection");
}

/// The event of a send, "queued for writing" or "not queued": the
/// message's fields, taken before the message goes into the session (only
/// while the events are on), and the group it was sent to.
pub(crate) struct Queued<'a> {
    trail: Option<Trail>,
    group: Option<&'a str>,
}

impl<'a> Queued<'a> {
    /// `msg` sent as it is.
    pub(crate) fn message(msg: &Message) -> Self {
        Queued { trail: Trail::of(msg), group: None }
    }

    /// `msg` sent to `module` (the destination the session sets).
    pub(crate) fn to(msg: &Message, module: &str) -> Self {
        Queued { trail: Trail::of(msg).map(|t| t.to(module)), group: None }
    }

    /// A response: it goes back to its source.
    pub(crate) fn response(msg: &Message) -> Self {
        let trail = Trail::of(msg).map(|t| {
            let source = t.source().to_owned();
            t.to(&source)
        });
        Queued { trail, group: None }
    }

    /// `msg` sent to the members of `group`.
    pub(crate) fn group(msg: &Message, group: &'a str) -> Self {
        Queued { trail: Trail::of(msg), group: Some(group) }
    }

    /// Emits the event for the send's outcome `r`.
    pub(crate) fn report(self, session: SessionId, role: ConnRole, r: Result<(), &DriverError>) {
        let Some(t) = self.trail else { return };
        let (role, group) = (role.label(), self.group);
        match r {
            Ok(()) => trace_message!(t, session = %session, role, group, "queued for writing"),
            Err(e) => trace_message!(t, session = %session, role, group, error = %e, "not queued"),
        }
    }
}

/// The fields of a message's events, kept for an event after the message
/// was handed on (into a session, an inbox). Taken only while the events
/// are enabled.
#[derive(Debug)]
pub(crate) struct Trail {
    id: String,
    parent_id: String,
    source: String,
    destination: String,
    operation: String,
}

impl Trail {
    /// `msg`'s fields when the events are enabled.
    #[inline]
    pub(crate) fn of(msg: &Message) -> Option<Trail> {
        if !tracing_messages() {
            return None;
        }
        Some(Trail {
            id: msg.id().to_owned(),
            parent_id: msg.parent_id().to_owned(),
            source: msg.source().to_owned(),
            destination: msg.destination().to_owned(),
            operation: msg.operation().to_owned(),
        })
    }

    /// With `destination` instead of the message's.
    pub(crate) fn to(mut self, destination: &str) -> Trail {
        destination.clone_into(&mut self.destination);
        self
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn parent_id(&self) -> &str {
        &self.parent_id
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn destination(&self) -> &str {
        &self.destination
    }

    pub(crate) fn operation(&self) -> &str {
        &self.operation
    }
}

/// Which end of a connection this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnRole {
    /// Accepted by a server.
    Server,
    /// Opened by a client.
    Client,
}

impl ConnRole {
    /// The role of a session of `role`.
    pub(crate) fn of(role: &Role) -> ConnRole {
        match role {
            Role::Server { .. } => ConnRole::Server,
            Role::Client { .. } => ConnRole::Client,
        }
    }

    /// The `role` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ConnRole::Server => "server",
            ConnRole::Client => "client",
        }
    }
}

/// The handles of one connection, registered when it starts (which counts
/// it opened); dropping them before [`closed`](Self::closed) counts it
/// closed as `aborted`.
#[derive(Debug)]
pub(crate) struct ConnMetrics {
    role: ConnRole,
    pub(crate) bytes_read: Counter,
    pub(crate) bytes_written: Counter,
    pub(crate) messages_written: Counter,
    pub(crate) malformed: Counter,
    messages_read: Counter,
    /// Messages the session had decoded when last counted.
    decoded: u64,
    open: Gauge,
    closed: bool,
}

impl ConnMetrics {
    /// Registers the handles of a connection of `role` and counts it
    /// opened.
    pub(crate) fn open(role: ConnRole) -> ConnMetrics {
        let role_label = role.label();
        metrics::counter!("beehive_socket_connections_opened_total", "role" => role_label).increment(1);
        let open = metrics::gauge!("beehive_socket_connections_open", "role" => role_label);
        open.increment(1.0);
        ConnMetrics {
            role,
            bytes_read: metrics::counter!("beehive_socket_bytes_read_total", "role" => role_label),
            bytes_written: metrics::counter!("beehive_socket_bytes_written_total", "role" => role_label),
            messages_written: metrics::counter!("beehive_socket_messages_written_total", "role" => role_label),
            malformed: metrics::counter!("beehive_socket_malformed_total", "role" => role_label),
            messages_read: metrics::counter!("beehive_socket_messages_read_total", "role" => role_label),
            decoded: 0,
            open,
            closed: false,
        }
    }

    /// The connection's role.
    #[cfg(feature = "tokio")]
    pub(crate) fn role(&self) -> ConnRole {
        self.role
    }

    /// The session has decoded `total` messages so far: counts the new
    /// ones.
    #[inline]
    pub(crate) fn decoded(&mut self, total: u64) {
        if total > self.decoded {
            self.messages_read.increment(total - self.decoded);
            self.decoded = total;
        }
    }

    /// Counts the connection closed for `reason` (once).
    pub(crate) fn closed(&mut self, reason: &CloseReason) {
        self.close(reason.kind());
    }

    fn close(&mut self, kind: &'static str) {
        if self.closed {
            return;
        }
        self.closed = true;
        metrics::counter!("beehive_socket_connections_closed_total", "role" => self.role.label(), "reason" => kind)
            .increment(1);
        self.open.decrement(1.0);
    }
}

impl Drop for ConnMetrics {
    fn drop(&mut self) {
        self.close("aborted");
    }
}

#[cold]
pub(crate) fn accept_error() {
    metrics::counter!("beehive_socket_accept_errors_total").increment(1);
}

#[cold]
pub(crate) fn refused() {
    metrics::counter!("beehive_socket_refused_total").increment(1);
}
