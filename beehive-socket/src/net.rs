//! Listening and dialling for each socket type of the configuration.

use std::net::ToSocketAddrs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{SocketConfig, UNIXPACKET};
use crate::conn::{StreamFraming, Transport};
use crate::SocketError;

/// Go's socket type for unix stream sockets.
pub const UNIX: &str = "unix";
/// Go's socket type for TCP.
pub const TCP: &str = "tcp";

/// Default time a partial frame on a stream socket may wait for its rest.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

fn unix_listener(path: &Path, ty: Type, backlog: i32) -> Result<Socket, SocketError> {
    if path.exists() {
        // A stale socket from an earlier run (Go removes it unconditionally).
        std::fs::remove_file(path)?;
    }
    let socket = Socket::new(Domain::UNIX, ty, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    socket.listen(backlog)?;
    Ok(socket)
}

fn tcp_addr(address: &str) -> Result<std::net::SocketAddr, SocketError> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| SocketError::UnsupportedSocketType(format!("tcp address {address:?}")))
}

/// Listens on the entry's address with its socket type.
pub(crate) fn listen(entry: &SocketConfig, backlog: i32) -> Result<Socket, SocketError> {
    match entry.socket_type.as_str() {
        UNIXPACKET => unix_listener(Path::new(&entry.address), Type::SEQPACKET, backlog),
        UNIX => unix_listener(Path::new(&entry.address), Type::STREAM, backlog),
        TCP => {
            let addr = tcp_addr(&entry.address)?;
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(backlog)?;
            Ok(socket)
        }
        other => Err(SocketError::UnsupportedSocketType(other.to_owned())),
    }
}

/// Connects to the entry's address with its socket type.
pub(crate) fn dial(entry: &SocketConfig) -> Result<Socket, SocketError> {
    match entry.socket_type.as_str() {
        UNIXPACKET | UNIX => {
            let ty = if entry.socket_type == UNIX { Type::STREAM } else { Type::SEQPACKET };
            let socket = Socket::new(Domain::UNIX, ty, None)?;
            socket.connect(&SockAddr::unix(&entry.address)?)?;
            Ok(socket)
        }
        TCP => {
            let addr = tcp_addr(&entry.address)?;
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.connect(&addr.into())?;
            socket.set_tcp_nodelay(true)?;
            Ok(socket)
        }
        other => Err(SocketError::UnsupportedSocketType(other.to_owned())),
    }
}

/// The transport of a socket type.
pub(crate) fn transport(entry: &SocketConfig, framing: StreamFraming, stall_timeout: Duration) -> Transport {
    if entry.socket_type == UNIXPACKET {
        Transport::Packet
    } else {
        Transport::Stream { framing, stall_timeout }
    }
}
