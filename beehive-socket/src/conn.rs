//! A connection: a SOCK_SEQPACKET socket (one JSON message per packet) or a
//! stream socket (unix or TCP) with Raw or Package framing.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beehive_codec::{CodecError, FrameReader, PackageCodec, RawCodec, Received, SeqpacketReader};
use beehive_context::Slot;
use beehive_model::Message;
use bytes::BytesMut;
use socket2::Socket;

use crate::SocketError;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a connection does with each message it reads.
pub type Handler = Arc<dyn Fn(Message) -> Result<(), String> + Send + Sync>;

/// How long a connection's reader polls after a burst before sleeping.
const READER_SPIN: Duration = Duration::from_micros(10);

/// How long a requester reads the socket itself before it parks. A round
/// trip on an idle machine takes about 12 µs, so 20 µs catches most
/// responses without a wake-up; longer spins only take the core from the
/// thread that answers when another process holds the other one (W8 with a
/// core busy: p99 287 µs with 150/50 µs spins, 87 µs with 20/10 µs, same
/// rate idle).
const REQUESTER_SPIN: Duration = Duration::from_micros(20);

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

/// How a connection's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SOCK_SEQPACKET: one message per packet.
    Packet,
    /// A stream socket with this framing. A peer that stops in the middle of
    /// a frame for longer than `stall_timeout` is cut off; an idle peer is not.
    Stream {
        /// The framing.
        framing: StreamFraming,
        /// How long a partial frame may wait for its rest.
        stall_timeout: Duration,
    },
}

/// One connected socket. Writes are serialised (one write per message);
/// a single reader thread owns the receiving side.
pub struct Connection {
    id: u64,
    socket: Socket,
    transport: Transport,
    write_buf: Mutex<BytesMut>,
    closed: AtomicBool,
    max_frame_len: usize,
    /// The TLS session of a TLS connection (reads and writes take it in turn).
    tls: Option<Mutex<rustls::Connection>>,
    /// The receiving side of a packet connection, shared by the reader
    /// thread and requesters waiting for a response (whoever holds it reads).
    packets: Option<Mutex<SeqpacketReader<Socket>>>,
    handler: Mutex<Option<Handler>>,
    /// Requesters currently reading their own responses; the reader thread
    /// stays out of their way (no wake-up per response).
    requesters: (Mutex<usize>, std::sync::Condvar),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("transport", &self.transport)
            .field("tls", &self.tls.is_some())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Wraps a connected stream socket in TLS: runs the handshake (up to
    /// `handshake_timeout`), then reads and writes through the session.
    pub fn with_tls(
        socket: Socket,
        transport: Transport,
        max_frame_len: usize,
        mut tls: rustls::Connection,
        handshake_timeout: Duration,
    ) -> Result<Arc<Self>, SocketError> {
        crate::tls::handshake(&mut tls, &socket, handshake_timeout)?;
        Ok(Arc::new(Connection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            socket,
            transport,
            write_buf: Mutex::new(BytesMut::with_capacity(512)),
            closed: AtomicBool::new(false),
            max_frame_len: max_frame_len.max(beehive_codec::HEADER_LEN + 1),
            tls: Some(Mutex::new(tls)),
            packets: None,
            handler: Mutex::new(None),
            requesters: (Mutex::new(0), std::sync::Condvar::new()),
        }))
    }

    /// Wraps a connected SOCK_SEQPACKET socket; packets longer than
    /// `max_packet_len` are refused (Go's `buffersize`).
    pub fn new(socket: Socket, max_packet_len: usize) -> Arc<Self> {
        Connection::with_transport(socket, Transport::Packet, max_packet_len)
    }

    /// Wraps a connected socket with the given transport; frames longer than
    /// `max_frame_len` are refused.
    pub fn with_transport(socket: Socket, transport: Transport, max_frame_len: usize) -> Arc<Self> {
        let max_frame_len = max_frame_len.max(beehive_codec::HEADER_LEN + 1);
        let packets = match transport {
            Transport::Packet => {
                socket.try_clone().ok().map(|dup| Mutex::new(SeqpacketReader::with_batch(dup, max_frame_len, 8)))
            }
            Transport::Stream { .. } => None,
        };
        Arc::new(Connection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            socket,
            transport,
            write_buf: Mutex::new(BytesMut::with_capacity(512)),
            closed: AtomicBool::new(false),
            max_frame_len,
            tls: None,
            packets,
            handler: Mutex::new(None),
            requesters: (Mutex::new(0), std::sync::Condvar::new()),
        })
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once closed (by us, or after a failed write or read).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Writes `msg` as one frame. An error means the message was not sent.
    pub fn send(&self, msg: &Message) -> Result<(), SocketError> {
        if self.is_closed() {
            return Err(SocketError::Closed { id: self.id });
        }
        let mut buf = self.write_buf.lock().unwrap_or_else(|e| e.into_inner());
        buf.clear();
        let result = match self.transport {
            Transport::Packet | Transport::Stream { framing: StreamFraming::Raw, .. } => {
                RawCodec::new().encode_message(msg, &mut buf).map_err(SocketError::from)?;
                if let Some(tls) = &self.tls {
                    crate::tls::write_all(&mut tls.lock().unwrap_or_else(|e| e.into_inner()), &self.socket, &buf)
                } else if matches!(self.transport, Transport::Packet) {
                    self.socket.send(&buf).and_then(|n| {
                        if n == buf.len() {
                            Ok(())
                        } else {
                            Err(std::io::Error::new(ErrorKind::WriteZero, "short packet write"))
                        }
                    })
                } else {
                    (&self.socket).write_all(&buf)
                }
            }
            Transport::Stream { framing: StreamFraming::Package, .. } => {
                PackageCodec::with_max_frame_len(self.max_frame_len)
                    .and_then(|mut c| c.encode_message(msg, &mut buf))
                    .map_err(SocketError::from)?;
                match &self.tls {
                    Some(tls) => {
                        crate::tls::write_all(&mut tls.lock().unwrap_or_else(|e| e.into_inner()), &self.socket, &buf)
                    }
                    None => (&self.socket).write_all(&buf),
                }
            }
        };
        result.map_err(|e| {
            self.close();
            SocketError::Io(e)
        })
    }

    /// Closes the connection (both directions); the reader thread ends.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self.socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Reads messages until the peer closes, a read fails, a partial frame
    /// stalls or `handle` returns an error; then closes the connection.
    /// Returns why it ended.
    pub fn read_loop(&self, handle: impl Fn(Message) -> Result<(), String> + Send + Sync + 'static) -> String {
        let reason = match self.transport {
            Transport::Packet if self.packets.is_some() => {
                *self.handler.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(handle));
                let reason = self.read_packets_shared();
                // Drop the handler: it may hold this connection.
                self.handler.lock().unwrap_or_else(|e| e.into_inner()).take();
                reason
            }
            Transport::Packet => self.read_packets(handle),
            Transport::Stream { framing, stall_timeout } if self.tls.is_some() => {
                self.read_tls(framing, stall_timeout, handle)
            }
            Transport::Stream { framing, stall_timeout } => self.read_stream(framing, stall_timeout, handle),
        };
        if !self.is_closed() {
            tracing::warn!(connection = self.id, %reason, "closing connection");
        }
        self.close();
        reason
    }

    /// Reads and dispatches every queued packet while holding the shared
    /// reader (waiting for it when `wait_for_lock`, giving up otherwise).
    /// `Some(reason)` when the connection must end.
    fn drain(&self, wait_for_lock: bool) -> Option<String> {
        let packets = self.packets.as_ref()?;
        // Without a handler (the reader thread has not started yet) nothing
        // may be read: it would be dropped.
        let handler = self.handler.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let mut reader = if wait_for_lock {
            packets.lock().unwrap_or_else(|e| e.into_inner())
        } else {
            match packets.try_lock() {
                Ok(g) => g,
                Err(_) => return None,
            }
        };
        loop {
            let msg = match reader.try_read_packet() {
                Ok(Received::Packet(p)) => match beehive_codec::raw::packet::decode(p) {
                    Ok(m) => m,
                    Err(e) => return Some(format!("read failed: {e}")),
                },
                Ok(Received::Empty) => return None,
                Ok(Received::Closed) => return Some("peer closed the connection".to_owned()),
                Err(e) => return Some(format!("read failed: {e}")),
            };
            if let Err(e) = handler(msg) {
                return Some(e);
            }
        }
    }

    fn read_packets_shared(&self) -> String {
        loop {
            if self.is_closed() {
                return "closed".to_owned();
            }
            {
                let (m, cv) = &self.requesters;
                let n = m.lock().unwrap_or_else(|e| e.into_inner());
                if *n > 0 {
                    let _ = cv.wait_timeout(n, Duration::from_millis(5));
                    continue;
                }
            }
            match crate::tls::wait(&self.socket, false, Duration::from_secs(1)) {
                Ok(true) => {
                    if let Some(reason) = self.drain(true) {
                        return reason;
                    }
                    // Traffic tends to come in bursts: poll a little before
                    // going back to sleep in the kernel.
                    let until = Instant::now() + READER_SPIN;
                    while Instant::now() < until {
                        if let Some(reason) = self.drain(false) {
                            return reason;
                        }
                        for _ in 0..64 {
                            std::hint::spin_loop();
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }

    /// Waits for `slot`'s responses until `deadline`. On a packet connection
    /// the waiting requester first reads the socket itself for a short
    /// while, so its response reaches it without waking another thread.
    pub fn await_responses(&self, slot: &Slot, deadline: Instant) -> Vec<Message> {
        if self.packets.is_some() {
            *self.requesters.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let spin_until = (Instant::now() + REQUESTER_SPIN).min(deadline);
            while !slot.is_complete() && !self.is_closed() {
                if let Some(reason) = self.drain(false) {
                    tracing::warn!(connection = self.id, %reason, "closing connection");
                    self.close();
                    break;
                }
                if slot.is_complete() || Instant::now() >= spin_until {
                    break;
                }
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            let (m, cv) = &self.requesters;
            *m.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            cv.notify_all();
        }
        slot.wait(deadline)
    }

    fn read_packets(&self, handle: impl Fn(Message) -> Result<(), String>) -> String {
        let mut reader = SeqpacketReader::with_batch(&self.socket, self.max_frame_len, 8);
        loop {
            match reader.read_message() {
                Ok(Some(msg)) => {
                    if let Err(e) = handle(msg) {
                        return e;
                    }
                }
                Ok(None) => return "peer closed the connection".to_owned(),
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }

    fn read_tls(
        &self,
        framing: StreamFraming,
        stall_timeout: Duration,
        handle: impl Fn(Message) -> Result<(), String>,
    ) -> String {
        let Some(tls) = &self.tls else { return "not a TLS connection".to_owned() };
        let mut codec: Box<dyn beehive_codec::Framing> = match framing {
            StreamFraming::Raw => Box::new(RawCodec::with_max_line_len(self.max_frame_len).unwrap_or_default()),
            StreamFraming::Package => {
                Box::new(PackageCodec::with_max_frame_len(self.max_frame_len).unwrap_or_default())
            }
        };
        let mut plain = BytesMut::new();
        let mut chunk = Vec::new();
        loop {
            // Take what the session has: the handshake may already hold the
            // peer's first records, so this comes before waiting.
            chunk.clear();
            let open = match crate::tls::read_available(
                &mut tls.lock().unwrap_or_else(|e| e.into_inner()),
                &self.socket,
                &mut chunk,
            ) {
                Ok(open) => open,
                Err(e) => return format!("TLS read failed: {e}"),
            };
            plain.extend_from_slice(&chunk);
            loop {
                let next = if open { codec.decode_frame(&mut plain) } else { codec.decode_frame_eof(&mut plain) };
                match next {
                    Ok(Some(payload)) => match beehive_model::from_slice(&payload) {
                        Ok(msg) => {
                            if let Err(e) = handle(msg) {
                                return e;
                            }
                        }
                        Err(e) => return format!("frame is not a valid message: {e}"),
                    },
                    Ok(None) => break,
                    Err(e) => return format!("read failed: {e}"),
                }
            }
            if !open {
                return "peer closed the connection".to_owned();
            }
            match crate::tls::wait(&self.socket, false, stall_timeout) {
                Ok(true) => {}
                Ok(false) if !plain.is_empty() => {
                    return format!("peer stalled for {stall_timeout:?} in the middle of a frame");
                }
                Ok(false) if self.is_closed() => return "closed".to_owned(),
                Ok(false) => {}
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }

    fn read_stream(
        &self,
        framing: StreamFraming,
        stall_timeout: Duration,
        handle: impl Fn(Message) -> Result<(), String>,
    ) -> String {
        let _ = self.socket.set_read_timeout(Some(stall_timeout));
        let read_size = 64 * 1024;
        match framing {
            StreamFraming::Raw => {
                let codec = RawCodec::with_max_line_len(self.max_frame_len).unwrap_or_default();
                self.read_frames(FrameReader::with_read_size(&self.socket, codec, read_size), stall_timeout, handle)
            }
            StreamFraming::Package => {
                let codec = PackageCodec::with_max_frame_len(self.max_frame_len).unwrap_or_default();
                self.read_frames(FrameReader::with_read_size(&self.socket, codec, read_size), stall_timeout, handle)
            }
        }
    }

    /// The read loop of a plain stream socket whose read timeout is
    /// `stall_timeout`: a timeout with part of a frame buffered cuts the peer.
    fn read_frames<F: beehive_codec::Framing>(
        &self,
        mut reader: FrameReader<&Socket, F>,
        stall_timeout: Duration,
        handle: impl Fn(Message) -> Result<(), String>,
    ) -> String {
        loop {
            match reader.read_message() {
                Ok(Some(msg)) => {
                    if let Err(e) = handle(msg) {
                        return e;
                    }
                }
                Ok(None) => return "peer closed the connection".to_owned(),
                Err(CodecError::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if reader.buffered() > 0 {
                        return format!("peer stalled for {stall_timeout:?} in the middle of a frame");
                    }
                    if self.is_closed() {
                        return "peer closed the connection".to_owned();
                    }
                }
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }
}
