//! Nonblocking sockets for the tokio driver.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use bytes::Bytes;
use nix::sys::socket::MsgFlags;
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use super::{DriverOptions, Endpoint};
use crate::tlsio::{self, Nonblocking, TlsIo, STREAM_READ_START};

impl Nonblocking for TcpStream {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }
}

/// Frames given to one vectored write.
const MAX_IOVECS: usize = 64;

/// One connected socket.
#[derive(Debug)]
pub(crate) enum Io {
    /// SOCK_SEQPACKET.
    Packet(AsyncFd<Socket>),
    /// Unix stream.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsIo<TcpStream>>),
}

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// A packet of this real length (its first `min(len, buffer)` bytes are
    /// in the buffer; a longer one was cut to the frame limit plus one).
    Packet(usize),
    /// Stream bytes, in the buffer; 0 is the end of the stream.
    Bytes(usize),
}

impl Io {
    /// Waits until a read may make progress.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Io::Packet(fd) => fd.readable().await.map(drop),
            Io::Unix(s) => s.readable().await,
            Io::Tcp(s) => s.readable().await,
            Io::Tls(t) if t.plaintext > 0 || t.eof => Ok(()),
            Io::Tls(t) => t.io.readable().await,
        }
    }

    /// Waits until a write may make progress.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Io::Packet(fd) => fd.writable().await.map(drop),
            Io::Unix(s) => s.writable().await,
            Io::Tcp(s) => s.writable().await,
            Io::Tls(t) => t.io.writable().await,
        }
    }

    /// True when bytes of the transport's own wait to be written (TLS
    /// records: handshake messages, alerts, encrypted frames).
    pub(crate) fn wants_write(&self) -> bool {
        matches!(self, Io::Tls(t) if t.tls.wants_write())
    }

    /// Writes what the transport holds of its own, until the socket is full.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Tls(t) => t.flush(),
            _ => Ok(()),
        }
    }

    /// The connection is over: TLS says so to the peer (with the alert of
    /// a failure, if any), in one nonblocking attempt.
    pub(crate) fn finish(&mut self) {
        if let Io::Tls(t) = self {
            t.finish();
        }
    }

    /// One nonblocking read; `WouldBlock` when there is nothing. `take`
    /// gets what was read: a packet's real length and its first
    /// `min(len, max_frame + 1)` bytes (a longer one is cut), or stream
    /// bytes read into `buf` (grown on demand; none at the end of the
    /// stream).
    pub(crate) fn try_read(
        &mut self,
        buf: &mut Vec<u8>,
        max_frame: usize,
        take: impl FnOnce(Read, &[u8]),
    ) -> io::Result<()> {
        let (read, bytes) = match self {
            Io::Packet(fd) => {
                let full = max_frame.saturating_add(1);
                if full <= SCRATCH_MAX {
                    return SCRATCH.with_borrow_mut(|scratch| {
                        if scratch.len() < full {
                            // Zeroed by the allocator: pages no packet
                            // reached are never touched.
                            *scratch = vec![0; full];
                        }
                        let buf = &mut scratch[..full];
                        let len = fd.try_io(Interest::READABLE, |s| {
                            Ok(nix::sys::socket::recv(
                                s.as_raw_fd(),
                                buf,
                                MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
                            )?)
                        })?;
                        take(Read::Packet(len), &buf[..len.min(full)]);
                        Ok(())
                    });
                }
                let len = fd.try_io(Interest::READABLE, |s| recv_packet(s, buf, max_frame))?;
                (Read::Packet(len), &buf[..len.min(buf.len())])
            }
            Io::Unix(s) => stream_read(buf, |b| s.try_read(b))?,
            Io::Tcp(s) => stream_read(buf, |b| s.try_read(b))?,
            Io::Tls(t) => {
                let n = t.read(buf)?;
                (Read::Bytes(n), &buf[..n])
            }
        };
        take(read, bytes);
        Ok(())
    }

    /// One nonblocking write of the frames at the front of `frames` (the
    /// first one from byte `offset`); returns the bytes written. A packet
    /// goes out whole or not at all.
    pub(crate) fn try_write(&mut self, frames: &[Bytes], offset: usize) -> io::Result<usize> {
        match self {
            Io::Packet(fd) => {
                let Some(frame) = frames.first() else { return Ok(0) };
                fd.try_io(Interest::WRITABLE, |s| {
                    nix::sys::socket::send(s.as_raw_fd(), frame, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
                        .map_err(io::Error::from)
                })
            }
            Io::Unix(s) => with_slices(frames, offset, |slices| s.try_write_vectored(slices)),
            Io::Tcp(s) => with_slices(frames, offset, |slices| s.try_write_vectored(slices)),
            Io::Tls(t) => t.write(frames, offset),
        }
    }

    /// SOCK_SEQPACKET: the largest packet the kernel lets this socket send.
    pub(crate) fn packet_send_limit(&self) -> Option<usize> {
        match self {
            Io::Packet(fd) => crate::driver::packet_send_limit(fd.get_ref()),
            _ => None,
        }
    }
}

fn with_slices(
    frames: &[Bytes],
    offset: usize,
    write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut slices = Vec::with_capacity(frames.len().min(MAX_IOVECS));
    for (i, frame) in frames.iter().take(MAX_IOVECS).enumerate() {
        let bytes = if i == 0 { &frame[offset.min(frame.len())..] } else { &frame[..] };
        slices.push(IoSlice::new(bytes));
    }
    write(&slices)
}

fn stream_read(buf: &mut Vec<u8>, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<(Read, &[u8])> {
    if buf.is_empty() {
        buf.resize(STREAM_READ_START, 0);
    }
    let n = read(buf)?;
    tlsio::grow_after_read(buf, n);
    Ok((Read::Bytes(n), &buf[..n]))
}

/// Frame limits up to which packets are read into the thread's scratch
/// buffer, in one call; above it, the connection's own buffer grows to the
/// peeked size of each packet (two calls).
const SCRATCH_MAX: usize = 4 << 20;

thread_local! {
    /// The packet read buffer of the thread (a runtime's worker): as large
    /// as the largest frame limit it served, shared by every connection the
    /// thread polls, so an idle connection holds no read buffer at all.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Receives one packet. The packet's size is peeked first (`MSG_PEEK |
/// MSG_TRUNC` gives the real length) so that the buffer grows to it, up to
/// `max_frame + 1` bytes; once the buffer has that size, one call does.
/// Returns the real length.
fn recv_packet(socket: &Socket, buf: &mut Vec<u8>, max_frame: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let full = max_frame.saturating_add(1);
    if buf.len() < full {
        let len = nix::sys::socket::recv(fd, buf, MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT)?;
        if len > buf.len() {
            buf.resize(len.next_power_of_two().max(512).min(full), 0);
        }
    }
    Ok(nix::sys::socket::recv(fd, buf, MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT)?)
}

/// Registers a nonblocking socket with the runtime's reactor.
///
/// `AsyncFd::register` is `unsafe` (its contract: the descriptor stays open
/// and the same while registered), and this crate keeps unsafe code to one
/// audited call (`src/memory.rs`); the
/// safe `AsyncFd::new` is deprecated for types that do not own their
/// descriptor. A `socket2::Socket` owns its descriptor and closes it only
/// when dropped, so the contract holds here.
#[allow(deprecated)]
fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    AsyncFd::new(socket)
}

fn packet_socket(socket: Socket, options: &DriverOptions) -> io::Result<Io> {
    socket.set_nonblocking(true)?;
    if let Some(size) = options.packet_send_buffer {
        socket.set_send_buffer_size(size)?;
    }
    Ok(Io::Packet(register(socket)?))
}

/// Connects to `endpoint` without blocking the runtime.
pub(crate) async fn connect(endpoint: &Endpoint, options: &DriverOptions) -> io::Result<Io> {
    match endpoint {
        Endpoint::UnixPacket(path) => {
            let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
            socket.set_nonblocking(true)?;
            let addr = SockAddr::unix(path)?;
            let mut wait = std::time::Duration::from_millis(1);
            loop {
                match socket.connect(&addr) {
                    Ok(()) => break,
                    // A unix socket's backlog is full: try again shortly.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(std::time::Duration::from_millis(50));
                    }
                    Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {
                        let fd = register(socket)?;
                        let _ = fd.writable().await?;
                        let socket = fd.into_inner();
                        if let Some(e) = socket.take_error()? {
                            return Err(e);
                        }
                        return packet_socket(socket, options);
                    }
                    Err(e) => return Err(e),
                }
            }
            packet_socket(socket, options)
        }
        Endpoint::Unix(path) => Ok(Io::Unix(UnixStream::connect(path).await?)),
        Endpoint::Tcp(address) => {
            let stream = TcpStream::connect(address.as_str()).await?;
            stream.set_nodelay(true)?;
            match &options.tls {
                None => Ok(Io::Tcp(stream)),
                Some(tls) => Ok(Io::Tls(Box::new(TlsIo::new(stream, tlsio::session(tls, false)?)))),
            }
        }
    }
}

/// A listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Packet(AsyncFd<Socket>),
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Listens on `endpoint`.
    pub(crate) async fn bind(endpoint: &Endpoint, backlog: i32) -> io::Result<Self> {
        match endpoint {
            Endpoint::UnixPacket(path) => {
                Ok(Listener::Packet(register(crate::driver::unix_listener(path, Type::SEQPACKET, backlog)?)?))
            }
            Endpoint::Unix(path) => {
                let socket = crate::driver::unix_listener(path, Type::STREAM, backlog)?;
                Ok(Listener::Unix(UnixListener::from_std(std::os::unix::net::UnixListener::from(
                    std::os::fd::OwnedFd::from(socket),
                ))?))
            }
            Endpoint::Tcp(address) => Ok(Listener::Tcp(TcpListener::bind(address.as_str()).await?)),
        }
    }

    /// The bound TCP address (useful with port 0).
    pub(crate) fn local_tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            _ => None,
        }
    }

    /// The next connection.
    pub(crate) async fn accept(&self, options: &DriverOptions) -> io::Result<Io> {
        match self {
            Listener::Packet(fd) => {
                let (socket, _) = fd.async_io(Interest::READABLE, |s| s.accept()).await?;
                packet_socket(socket, options)
            }
            Listener::Unix(l) => Ok(Io::Unix(l.accept().await?.0)),
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                stream.set_nodelay(true)?;
                match &options.tls {
                    Some(tls) => Ok(Io::Tls(Box::new(TlsIo::new(stream, tlsio::session(tls, true)?)))),
                    None => Ok(Io::Tcp(stream)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    #[cfg(feature = "tls")]
    use std::{sync::Arc, task::Poll};

    use super::*;
    use crate::tlsio::STREAM_READ_MAX;

    /// A SOCK_SEQPACKET listener at `path` that accepts nobody, its
    /// backlog filled by plain connections (kept in the returned vector).
    fn full_listener(path: &std::path::Path) -> (Socket, Vec<Socket>) {
        let addr = SockAddr::unix(path).unwrap();
        let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        listener.bind(&addr).unwrap();
        listener.listen(0).unwrap();
        let mut queued = Vec::new();
        for _ in 0..64 {
            let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
            s.set_nonblocking(true).unwrap();
            match s.connect(&addr) {
                Ok(()) => queued.push(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (listener, queued),
                Err(e) => panic!("filling the backlog: {e}"),
            }
        }
        panic!("the backlog never filled");
    }

    #[tokio::test]
    async fn a_packet_connect_to_a_full_backlog_waits_for_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let (listener, _queued) = full_listener(&path);
        let endpoint = Endpoint::unix_packet(&path);
        let options = DriverOptions::default();
        let mut connecting = pin!(connect(&endpoint, &options));
        // Full: the connect keeps trying instead of failing.
        assert!(futures_poll(connecting.as_mut()).is_pending());
        tokio::task::yield_now().await;
        assert!(futures_poll(connecting.as_mut()).is_pending());
        // Room: accepting one queued connection lets it through.
        let (first, _) = listener.accept().unwrap();
        let io = tokio::time::timeout(std::time::Duration::from_secs(10), connecting).await.expect("connected in time");
        assert!(matches!(io, Ok(Io::Packet(_))), "{io:?}");
        drop(first);
    }

    #[tokio::test]
    async fn a_packet_connect_without_a_listener_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::unix_packet(dir.path().join("nobody.sock"));
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), connect(&endpoint, &DriverOptions::default()))
            .await
            .expect("an answer in time");
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    /// Polls `f` once, with a waker that does nothing.
    fn futures_poll<F: std::future::Future + ?Sized>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_vectored_write_starts_the_first_frame_at_the_offset_only() {
        let frames = [Bytes::from_static(b"abc"), Bytes::from_static(b"def"), Bytes::from_static(b"gh")];
        let mut seen = Vec::new();
        let n = with_slices(&frames, 1, |slices| {
            seen = slices.iter().map(|s| s.to_vec()).collect();
            Ok(7)
        })
        .unwrap();
        assert_eq!(n, 7);
        assert_eq!(seen, [b"bc".to_vec(), b"def".to_vec(), b"gh".to_vec()]);
        // At most MAX_IOVECS frames per write.
        let many = vec![Bytes::from_static(b"x"); MAX_IOVECS + 5];
        let mut count = 0;
        with_slices(&many, 0, |slices| {
            count = slices.len();
            Ok(0)
        })
        .unwrap();
        assert_eq!(count, MAX_IOVECS);
    }

    #[test]
    fn a_stream_read_buffer_doubles_while_reads_fill_it_up_to_its_limit() {
        let mut buf = Vec::new();
        let mut sizes = Vec::new();
        // Bounded: a buffer that never grows fails below, not by hanging.
        for _ in 0..64 {
            let (read, bytes) = stream_read(&mut buf, |b| Ok(b.len())).unwrap();
            let Read::Bytes(n) = read else { unreachable!() };
            assert_eq!(bytes.len(), n);
            sizes.push(n);
            if n == STREAM_READ_MAX {
                break;
            }
        }
        assert_eq!(sizes[0], STREAM_READ_START);
        assert!(sizes.windows(2).all(|w| w[1] == (w[0] * 2).min(STREAM_READ_MAX)), "{sizes:?}");
        assert_eq!(buf.len(), STREAM_READ_MAX, "never beyond the limit");
        // A read that does not fill the buffer leaves it as it is.
        let mut buf = Vec::new();
        stream_read(&mut buf, |_| Ok(10)).unwrap();
        assert_eq!(buf.len(), STREAM_READ_START);
    }

    /// A TLS client over a connected TCP stream whose peer sends nothing.
    #[cfg(feature = "tls")]
    async fn quiet_tls() -> (Io, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        (Io::Tls(Box::new(TlsIo::new(stream, tls.into()))), peer)
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn tls_with_decrypted_bytes_or_the_end_is_readable_without_the_socket() {
        let (mut io, _peer) = quiet_tls().await;
        // Nothing decrypted and no end: only the socket can make progress,
        // and it has nothing.
        assert!(futures_poll(pin!(io.readable())).is_pending());
        let Io::Tls(t) = &mut io else { unreachable!() };
        t.plaintext = 1;
        assert!(matches!(futures_poll(pin!(io.readable())), Poll::Ready(Ok(()))));
        let Io::Tls(t) = &mut io else { unreachable!() };
        (t.plaintext, t.eof) = (0, true);
        assert!(matches!(futures_poll(pin!(io.readable())), Poll::Ready(Ok(()))));
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn only_tls_has_bytes_of_its_own_to_write() {
        let (mut io, _peer) = quiet_tls().await;
        // A new client's first flight (its hello) waits in rustls.
        assert!(io.wants_write());
        io.flush().unwrap();
        assert!(!io.wants_write(), "the hello is written to the socket");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let unix = Io::Unix(UnixStream::from_std(a).unwrap());
        assert!(!unix.wants_write());
    }
}
