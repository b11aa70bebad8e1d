//! A connection: a SOCK_SEQPACKET socket (one JSON message per packet) or a
//! stream socket (unix or TCP) with Raw or Package framing.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beehive_codec::{CodecError, FrameReader, PackageCodec, RawCodec, SeqpacketReader};
use beehive_model::Message;
use bytes::BytesMut;
use socket2::Socket;

use crate::SocketError;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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
        Arc::new(Connection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            socket,
            transport,
            write_buf: Mutex::new(BytesMut::with_capacity(512)),
            closed: AtomicBool::new(false),
            max_frame_len: max_frame_len.max(beehive_codec::HEADER_LEN + 1),
            tls: None,
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
    pub fn read_loop(&self, handle: impl FnMut(Message) -> Result<(), String>) -> String {
        let reason = match self.transport {
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

    fn read_packets(&self, mut handle: impl FnMut(Message) -> Result<(), String>) -> String {
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
        mut handle: impl FnMut(Message) -> Result<(), String>,
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
        mut handle: impl FnMut(Message) -> Result<(), String>,
    ) -> String {
        let _ = self.socket.set_read_timeout(Some(stall_timeout));
        let read_size = 64 * 1024;
        let next = |r: &mut dyn FnMut() -> Result<Option<Message>, CodecError>, buffered: &dyn Fn() -> usize| loop {
            match r() {
                Ok(Some(msg)) => return Ok(Some(msg)),
                Ok(None) => return Ok(None),
                Err(CodecError::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if buffered() > 0 {
                        return Err(format!("peer stalled for {stall_timeout:?} in the middle of a frame"));
                    }
                    if self.is_closed() {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        };
        let mut run = |read: &mut dyn FnMut() -> Result<Option<Message>, CodecError>, buffered: &dyn Fn() -> usize| loop {
            match next(read, buffered) {
                Ok(Some(msg)) => {
                    if let Err(e) = handle(msg) {
                        return e;
                    }
                }
                Ok(None) => return "peer closed the connection".to_owned(),
                Err(e) => return e,
            }
        };
        match framing {
            StreamFraming::Raw => {
                let codec = RawCodec::with_max_line_len(self.max_frame_len).unwrap_or_default();
                let reader = std::cell::RefCell::new(FrameReader::with_read_size(&self.socket, codec, read_size));
                run(&mut || reader.borrow_mut().read_message(), &|| reader.borrow().buffered())
            }
            StreamFraming::Package => {
                let codec = PackageCodec::with_max_frame_len(self.max_frame_len).unwrap_or_default();
                let reader = std::cell::RefCell::new(FrameReader::with_read_size(&self.socket, codec, read_size));
                run(&mut || reader.borrow_mut().read_message(), &|| reader.borrow().buffered())
            }
        }
    }
}
