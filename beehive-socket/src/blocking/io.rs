//! Sockets of the blocking driver: listening, connecting, reading and
//! writing without blocking (the connection waits in `poll`).

use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::MsgFlags;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::Endpoint;
use crate::tlsio::{self, Nonblocking, STREAM_READ_START};

impl Nonblocking for std::sync::Arc<Socket> {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::sys::socket::recv(self.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)?)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        write(self, buf)
    }
}

/// A packet connection's read buffer at its first read; packets up to
/// this size need one system call each, larger ones a peek first.
const PACKET_READ_START: usize = 16 * 1024;

/// What one read got.
pub(crate) enum Read {
    /// A packet of this real length (longer than the buffer when truncated).
    Packet(usize),
    /// Stream bytes (0: end of stream).
    Bytes(usize),
}

fn tcp_addr(address: &str) -> io::Result<std::net::SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no address for {address:?}")))
}

/// A nonblocking listening socket on `endpoint`.
pub(crate) fn listen(endpoint: &Endpoint, backlog: i32) -> io::Result<Socket> {
    let socket = match endpoint {
        Endpoint::UnixPacket(path) => crate::driver::unix_listener(path, Type::SEQPACKET, backlog)?,
        Endpoint::Unix(path) => crate::driver::unix_listener(path, Type::STREAM, backlog)?,
        Endpoint::Tcp(address) => {
            let addr = tcp_addr(address)?;
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(backlog)?;
            socket
        }
    };
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Connects to `endpoint` within `timeout`; the socket comes back
/// nonblocking.
pub(crate) fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Socket> {
    let (socket, addr) = match endpoint {
        Endpoint::UnixPacket(path) => (Socket::new(Domain::UNIX, Type::SEQPACKET, None)?, SockAddr::unix(path)?),
        Endpoint::Unix(path) => (Socket::new(Domain::UNIX, Type::STREAM, None)?, SockAddr::unix(path)?),
        Endpoint::Tcp(address) => {
            let addr = tcp_addr(address)?;
            (Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?, addr.into())
        }
    };
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match socket
            .connect_timeout(&addr, deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))
        {
            Ok(()) => break,
            // A unix socket's backlog is full: try again shortly.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
    if matches!(endpoint, Endpoint::Tcp(_)) {
        socket.set_tcp_nodelay(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// An accepted connection, nonblocking.
pub(crate) fn accept(listener: &Socket, tcp: bool) -> io::Result<Socket> {
    let (socket, _) = listener.accept()?;
    socket.set_nonblocking(true)?;
    if tcp {
        socket.set_tcp_nodelay(true)?;
    }
    Ok(socket)
}

/// Receives one packet without blocking. While the buffer is smaller than
/// the largest packet, the packet's size is peeked first (`MSG_PEEK |
/// MSG_TRUNC` gives the real length) so the buffer grows to it, up to
/// `max_frame + 1` bytes.
fn recv_packet(socket: &Socket, buf: &mut Vec<u8>, max_frame: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let full = max_frame.saturating_add(1);
    if buf.len() < PACKET_READ_START.min(full) {
        // Most packets fit: they are read without a peek.
        buf.resize(PACKET_READ_START.min(full), 0);
    }
    if buf.len() < full {
        let len = nix::sys::socket::recv(fd, buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT)?;
        if len > buf.len() {
            buf.resize(len.next_power_of_two().max(512).min(full), 0);
        }
    }
    Ok(nix::sys::socket::recv(fd, buf, MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT)?)
}

/// Reads without blocking: a packet, or what a stream has.
pub(crate) fn read(socket: &Socket, packet: bool, buf: &mut Vec<u8>, max_frame: usize) -> io::Result<Read> {
    if packet {
        return recv_packet(socket, buf, max_frame).map(Read::Packet);
    }
    if buf.is_empty() {
        buf.resize(STREAM_READ_START, 0);
    }
    let n = nix::sys::socket::recv(socket.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)?;
    tlsio::grow_after_read(buf, n);
    Ok(Read::Bytes(n))
}

/// Writes without blocking (and without `SIGPIPE`).
pub(crate) fn write(socket: &Socket, bytes: &[u8]) -> io::Result<usize> {
    Ok(nix::sys::socket::send(socket.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT)?)
}
