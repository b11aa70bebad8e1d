//! Session options.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::registry::ModuleRegistry;

/// How messages are delimited on a stream socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamFraming {
    /// JSON plus a line feed per message (what Go's socket wrapper always
    /// uses).
    #[default]
    Raw,
    /// Package framing: `beeh` `v1` `rv` + length + JSON.
    Package,
}

/// How a session's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// SOCK_SEQPACKET (Go's `unixpacket`): one message per packet, fed with
    /// [`Session::handle_packet`](super::Session::handle_packet).
    Packet,
    /// A stream socket (unix stream, TCP, TLS) with this framing, fed with
    /// [`Session::handle_bytes`](super::Session::handle_bytes).
    Stream(StreamFraming),
}

/// Where a server session looks up, at each registration, the modules of
/// its process that the handshake answer lists (module, group) — a hive's
/// registered modules, which may change while the server runs. It is asked
/// for a list, never does I/O of the session's.
#[derive(Clone)]
pub struct ModuleDirectory(Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>);

impl ModuleDirectory {
    /// A directory that calls `list` for the current modules and groups.
    pub fn new(list: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static) -> Self {
        ModuleDirectory(Arc::new(list))
    }

    /// The modules and groups now.
    pub fn list(&self) -> Vec<(String, String)> {
        (self.0)()
    }
}

impl std::fmt::Debug for ModuleDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ModuleDirectory").finish_non_exhaustive()
    }
}

/// Which end of the connection a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The accepting side: waits for the peer's module registration and
    /// answers it with the module exchange.
    Server {
        /// The server module itself (Go's socket server module), listed
        /// first in the handshake answer, in a group of its own name.
        module: String,
    },
    /// The connecting side: registers `module` and learns the server's
    /// modules and groups from the answer.
    Client {
        /// The remote module this connection serves.
        module: String,
    },
}

/// Go's socket handshake timeout (`SendSyncInternal` with no timeout).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time outbound data may wait for the peer to drain it.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default maximum of frames queued or being written.
pub const DEFAULT_MAX_QUEUED_FRAMES: usize = 1024;
/// Default maximum of bytes queued or being written.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 << 20;
/// Default maximum of requests waiting for their response.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 4096;

/// A session's options, built from a role and a transport.
///
/// ```
/// use std::time::Duration;
/// use beehive_socket::session::{SessionConfig, TransportKind};
///
/// let config = SessionConfig::server("socketserver", TransportKind::Packet)
///     .allow_module("edgeclient")
///     .max_frame_len(4096)
///     .handshake_timeout(Duration::from_secs(5));
/// assert_eq!(config.get_max_frame_len(), 4096);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    pub(crate) role: Role,
    pub(crate) transport: TransportKind,
    pub(crate) local_modules: Vec<(String, String)>,
    pub(crate) directory: Option<ModuleDirectory>,
    pub(crate) allowed: Option<BTreeSet<String>>,
    pub(crate) registry: Option<ModuleRegistry>,
    pub(crate) max_frame_len: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) stall_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) max_queued_frames: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) max_pending_requests: usize,
    pub(crate) message_type: String,
    pub(crate) packet_send_limit: Option<usize>,
}

impl SessionConfig {
    fn new(role: Role, transport: TransportKind) -> Self {
        SessionConfig {
            role,
            transport,
            local_modules: Vec::new(),
            directory: None,
            allowed: None,
            registry: None,
            max_frame_len: crate::config::DEFAULT_BUFFER_SIZE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            stall_timeout: crate::config::DEFAULT_STALL_TIMEOUT,
            idle_timeout: None,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            max_queued_frames: DEFAULT_MAX_QUEUED_FRAMES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            message_type: crate::config::UNIXPACKET.to_owned(),
            packet_send_limit: None,
        }
    }

    /// The accepting side of server module `module`.
    pub fn server(module: impl Into<String>, transport: TransportKind) -> Self {
        SessionConfig::new(Role::Server { module: module.into() }, transport)
    }

    /// The connecting side of remote module `module`.
    pub fn client(module: impl Into<String>, transport: TransportKind) -> Self {
        SessionConfig::new(Role::Client { module: module.into() }, transport)
    }

    /// Server side: another module of this process to list in the
    /// handshake answer, in `group` (Go lists every registered module).
    pub fn local_module(mut self, module: impl Into<String>, group: impl Into<String>) -> Self {
        self.local_modules.push((module.into(), group.into()));
        self
    }

    /// Server side: where the other modules of this process are looked up
    /// at each registration (after those of
    /// [`local_module`](Self::local_module)); a module of the directory
    /// cannot be registered by a peer either.
    pub fn module_directory(mut self, directory: ModuleDirectory) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Server side: a module allowed to register (a client entry of the
    /// configuration). Without any, every module may register.
    pub fn allow_module(mut self, module: impl Into<String>) -> Self {
        self.allowed.get_or_insert_with(BTreeSet::new).insert(module.into());
        self
    }

    /// Server side: the registry deciding which session owns a module name.
    pub fn registry(mut self, registry: ModuleRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Largest frame accepted and sent (Go's `buffersize`): a packet, a
    /// raw line without its line feed, or a package frame with its header.
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.max_frame_len = len.max(beehive_codec::HEADER_LEN + 1);
        self
    }

    /// How long the handshake may take, from the session's creation.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a partial frame on a stream may wait for its rest, counted
    /// from its first byte (more bytes do not extend it).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// How long the peer may stay silent (no byte received) before the
    /// session is cut; `None` (the default, as in Go) never cuts an idle peer.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long outbound data may wait without any write progress
    /// ([`Session::handle_written`](super::Session::handle_written)); `None`
    /// disables the check.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Maximum of frames queued or being written.
    pub fn max_queued_frames(mut self, frames: usize) -> Self {
        self.max_queued_frames = frames.max(1);
        self
    }

    /// Maximum of bytes queued or being written.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes.max(1);
        self
    }

    /// Maximum of requests waiting for their response.
    pub fn max_pending_requests(mut self, requests: usize) -> Self {
        self.max_pending_requests = requests;
        self
    }

    /// The `type` that `send` and `send_sync` put in the header (Go: the
    /// socket type of the context, `unixpacket`).
    pub fn message_type(mut self, message_type: impl Into<String>) -> Self {
        self.message_type = message_type.into();
        self
    }

    /// SOCK_SEQPACKET: the largest packet the socket can send (the kernel
    /// refuses larger ones, whatever the frame limit: on Linux the socket's
    /// `SO_SNDBUF` less 32 bytes). A message whose packet is larger is
    /// refused with [`SessionError::MessageTooLarge`](super::SessionError::MessageTooLarge)
    /// at once; received packets are still checked against
    /// [`max_frame_len`](Self::max_frame_len) only. `None` (the default):
    /// the frame limit alone. Both socket drivers set it to the socket's
    /// own limit, or lower a configured one to it: a packet the kernel
    /// would refuse is refused to its sender instead.
    pub fn packet_send_limit(mut self, limit: Option<usize>) -> Self {
        self.packet_send_limit = limit;
        self
    }

    /// The packet send limit.
    pub fn get_packet_send_limit(&self) -> Option<usize> {
        self.packet_send_limit
    }

    /// The role.
    pub fn get_role(&self) -> &Role {
        &self.role
    }

    /// The transport.
    pub fn get_transport(&self) -> TransportKind {
        self.transport
    }

    /// The frame limit.
    pub fn get_max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The handshake timeout.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The stall timeout.
    pub fn get_stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The idle timeout.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The write timeout.
    pub fn get_write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }
}
