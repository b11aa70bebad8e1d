//! What both drivers share: where a connection goes, TLS settings, and
//! why a driver call failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{SocketConfig, UNIXPACKET};
use beehive_codec::CodecError;
use beehive_model::Message;

use crate::session::{CloseReason, SessionConfig, SessionError, SessionId, StreamFraming, TransportKind};

/// How much longer than the handshake timeout a connecting client waits for
/// the session's verdict before it gives up with
/// [`DriverError::ConnectTimeout`]: the session cuts a handshake at its
/// timeout, so only a driver that has stopped reaches this bound.
pub(crate) const HANDSHAKE_GUARD: Duration = Duration::from_secs(1);

/// Listens on a unix socket of type `ty` at `path` (a stale socket file is
/// replaced, as Go does; the file gets mode 0600); the socket comes back
/// nonblocking.
pub(crate) fn unix_listener(path: &Path, ty: socket2::Type, backlog: i32) -> std::io::Result<socket2::Socket> {
    use std::os::unix::fs::PermissionsExt;

    use socket2::{Domain, SockAddr, Socket};

    // A stale socket from an earlier run: Go removes it unconditionally.
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed a stale socket file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, ty, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Linux refuses a SOCK_SEQPACKET packet longer than `SO_SNDBUF` less this.
const PACKET_SEND_OVERHEAD: usize = 32;

/// The largest packet the kernel lets this SOCK_SEQPACKET socket send.
pub(crate) fn packet_send_limit(socket: &socket2::Socket) -> Option<usize> {
    socket.send_buffer_size().ok().map(|b| b.saturating_sub(PACKET_SEND_OVERHEAD))
}

/// `config` with the packet limit a session on a SOCK_SEQPACKET socket
/// works with: the configured one, lowered to what the kernel takes
/// (`socket`), so that a message too large for the socket is refused when
/// it is sent rather than dropped by the kernel after it was accepted.
pub(crate) fn with_socket_packet_limit(config: SessionConfig, socket: Option<usize>) -> SessionConfig {
    let limit = match (config.get_packet_send_limit(), socket) {
        (Some(c), Some(s)) => Some(c.min(s)),
        (c, s) => c.or(s),
    };
    config.packet_send_limit(limit)
}

/// What a connection reports besides messages (the sinks of both drivers
/// turn it into client or server events).
#[derive(Debug)]
pub(crate) enum ConnEvent {
    Connected { module: String },
    Registered { module: String, groups: Vec<String> },
    Malformed { offset: u64, error: CodecError },
    Closed { reason: Arc<CloseReason> },
}

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
            crate::config::UNIX if tls => Err(DriverError::Unsupported("TLS on a unix socket".into())),
            "" | UNIXPACKET => Ok(Endpoint::unix_packet(&entry.address)),
            crate::config::UNIX => Ok(Endpoint::unix(&entry.address)),
            crate::config::TCP => Ok(Endpoint::tcp(entry.address.clone())),
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
    pub(crate) fn check_tls(&self, tls: Option<&Tls>, server: bool) -> Result<(), DriverError> {
        #[cfg(not(feature = "tls"))]
        {
            let _ = server;
            match tls {
                None => Ok(()),
                Some(t) => match *t {},
            }
        }
        #[cfg(feature = "tls")]
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

    pub(crate) fn check(&self, config: &SessionConfig) -> Result<(), DriverError> {
        #[cfg(not(target_os = "linux"))]
        if let Endpoint::UnixPacket(_) = self {
            return Err(DriverError::Unsupported(
                "unixpacket (SOCK_SEQPACKET unix sockets) needs Linux; use a unix or tcp endpoint".into(),
            ));
        }
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
#[cfg(feature = "tls")]
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

/// TLS settings of TCP connections: none in this build (the `tls` feature
/// is off), so no value of this type exists.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub enum Tls {}

impl Tls {
    /// The TLS settings of a configuration entry, as Go's configuration
    /// describes them: a server entry with `cert` and `key` speaks TLS (and
    /// with `ca` requires client certificates signed by it); a client entry
    /// with `ca` verifies the server with it and presents `cert`/`key` when
    /// given. `None` without TLS files; without the `tls` feature, an entry
    /// with TLS files is [`DriverError::Unsupported`].
    pub fn from_config(entry: &SocketConfig) -> Result<Option<Tls>, DriverError> {
        #[cfg(feature = "tls")]
        {
            let tls_error = |e: crate::SocketError| DriverError::Config(e.to_string());
            if entry.server {
                Ok(crate::tls::server_config(entry).map_err(tls_error)?.map(Tls::Server))
            } else {
                Ok(crate::tls::client_config(entry)
                    .map_err(tls_error)?
                    .map(|(config, server_name)| Tls::Client { config, server_name }))
            }
        }
        #[cfg(not(feature = "tls"))]
        {
            if entry.ca.is_empty() && entry.cert.is_empty() && entry.key.is_empty() {
                Ok(None)
            } else {
                Err(DriverError::Unsupported(format!(
                    "TLS settings of entry {:?}: this build has no TLS (feature `tls`)",
                    entry.module
                )))
            }
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
    /// The socket did not connect within the handshake timeout. A server
    /// that accepts but never answers the handshake gives
    /// [`Handshake`](Self::Handshake) with
    /// [`CloseReason::HandshakeTimeout`] instead: the session cuts the
    /// handshake at its timeout, and the driver waits for that verdict (a
    /// second longer at most, a guard that only a stalled driver reaches).
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

/// What happens to a client's connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// `module` (a module of the server, or our own) is reached through the
    /// connection, member of `groups`. Reported for every module of the
    /// handshake answer, before [`Connected`](Self::Connected).
    Registered {
        /// The module.
        module: String,
        /// Its groups.
        groups: Vec<String>,
    },
    /// The handshake is complete: our `module` is registered.
    Connected {
        /// Our module.
        module: String,
    },
    /// A packet or frame that is not a message was skipped; the connection
    /// stays up.
    Malformed {
        /// Byte offset of the error.
        offset: u64,
        /// The error.
        error: CodecError,
    },
    /// The connection is closed. The last event.
    Disconnected {
        /// Why.
        reason: Arc<CloseReason>,
    },
}

/// A message from a connected remote module.
#[derive(Debug)]
#[non_exhaustive]
pub struct Incoming {
    /// The connection's session.
    pub session: SessionId,
    /// The remote module of the connection (once registered).
    pub module: Option<String>,
    /// The message (Go's server forwards it to its destination).
    pub message: Message,
}

/// What happens on a server.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A connection was accepted; its handshake is pending.
    Accepted {
        /// Its session.
        session: SessionId,
    },
    /// `module` is reached through connection `session`, member of
    /// `groups` (Go: a group of its own name).
    Registered {
        /// The session.
        session: SessionId,
        /// The module.
        module: String,
        /// Its groups.
        groups: Vec<String>,
    },
    /// The handshake of connection `session` is complete.
    Connected {
        /// The session.
        session: SessionId,
        /// The remote module.
        module: String,
    },
    /// A packet or frame that is not a message was skipped; the connection
    /// stays up.
    Malformed {
        /// The session.
        session: SessionId,
        /// Byte offset of the error.
        offset: u64,
        /// The error.
        error: CodecError,
    },
    /// A connection closed.
    Disconnected {
        /// The session.
        session: SessionId,
        /// Its remote module, if it had registered.
        module: Option<String>,
        /// Why.
        reason: Arc<CloseReason>,
    },
    /// A connection was accepted and closed at once: `conn_max` are served.
    Refused {
        /// The limit.
        conn_max: usize,
    },
    /// Accepting failed; the server pauses for `backoff` and tries again.
    AcceptFailed {
        /// The error.
        error: std::io::Error,
        /// The pause.
        backoff: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(socket_type: &str, ca: &str, cert: &str, key: &str) -> SocketConfig {
        SocketConfig {
            address: "/run/x.sock".into(),
            socket_type: socket_type.into(),
            ca: ca.into(),
            cert: cert.into(),
            key: key.into(),
            ..SocketConfig::default()
        }
    }

    #[test]
    fn any_tls_file_on_a_unix_entry_is_refused() {
        for ty in ["", "unixpacket", "unix"] {
            for (ca, cert, key) in [("ca.pem", "", ""), ("", "cert.pem", ""), ("", "", "key.pem")] {
                let r = Endpoint::from_config(&entry(ty, ca, cert, key));
                assert!(matches!(r, Err(DriverError::Unsupported(_))), "{ty:?} {ca:?} {cert:?} {key:?}: {r:?}");
            }
        }
    }

    #[test]
    fn endpoints_display_as_type_and_address() {
        assert_eq!(Endpoint::unix_packet("/run/a.sock").to_string(), "unixpacket:/run/a.sock");
        assert_eq!(Endpoint::unix("/run/b.sock").to_string(), "unix:/run/b.sock");
        assert_eq!(Endpoint::tcp("127.0.0.1:10350").to_string(), "tcp:127.0.0.1:10350");
    }

    #[test]
    fn entries_map_to_their_endpoints() {
        let at = |ty| Endpoint::from_config(&entry(ty, "", "", "")).unwrap();
        assert_eq!(at(""), Endpoint::unix_packet("/run/x.sock"));
        assert_eq!(at("unixpacket"), Endpoint::unix_packet("/run/x.sock"));
        assert_eq!(at("unix"), Endpoint::unix("/run/x.sock"));
        assert_eq!(at("tcp"), Endpoint::tcp("/run/x.sock"));
        let tls = Endpoint::from_config(&entry("tcp", "ca.pem", "cert.pem", "key.pem")).unwrap();
        assert_eq!(tls, Endpoint::tcp("/run/x.sock"));
        assert!(matches!(Endpoint::from_config(&entry("udp", "", "", "")), Err(DriverError::Unsupported(_))));
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_the_tls_feature_any_tls_file_is_unsupported() {
        assert!(Tls::from_config(&entry("tcp", "", "", "")).unwrap().is_none());
        for (ca, cert, key) in [("ca.pem", "", ""), ("", "cert.pem", ""), ("", "", "key.pem")] {
            let r = Tls::from_config(&entry("tcp", ca, cert, key));
            assert!(matches!(r, Err(DriverError::Unsupported(_))), "{ca:?} {cert:?} {key:?}: {r:?}");
        }
    }

    #[test]
    fn a_path_that_cannot_be_removed_is_an_error_of_its_own() {
        // A directory is not a stale socket: removing it fails, and that
        // failure is what comes back (not the bind's "address in use").
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let err = unix_listener(&dir.path().join("taken"), socket2::Type::SEQPACKET, 1).unwrap_err();
        assert_ne!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        // A stale socket file is replaced.
        let path = dir.path().join("stale.sock");
        drop(unix_listener(&path, socket2::Type::SEQPACKET, 1).unwrap());
        assert!(path.exists());
        unix_listener(&path, socket2::Type::SEQPACKET, 1).unwrap();
    }
}
