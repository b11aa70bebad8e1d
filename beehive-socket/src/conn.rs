//! A connection: one SOCK_SEQPACKET socket, one JSON message per packet.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use beehive_codec::{CodecError, SeqpacketReader};
use beehive_model::Message;
use socket2::Socket;

use crate::SocketError;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One connected socket. Writes are serialised (one packet per message,
/// Go's raw writer); a single reader thread owns the receiving side.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    socket: Socket,
    write_buf: Mutex<Vec<u8>>,
    closed: AtomicBool,
    max_packet_len: usize,
}

impl Connection {
    /// Wraps a connected socket; packets longer than `max_packet_len` are
    /// refused (Go's `buffersize`).
    pub fn new(socket: Socket, max_packet_len: usize) -> Arc<Self> {
        Arc::new(Connection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            socket,
            write_buf: Mutex::new(Vec::with_capacity(512)),
            closed: AtomicBool::new(false),
            max_packet_len: max_packet_len.max(1),
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

    /// Writes `msg` as one packet. An error means the message was not sent.
    pub fn send(&self, msg: &Message) -> Result<(), SocketError> {
        if self.is_closed() {
            return Err(SocketError::Closed { id: self.id });
        }
        let mut buf = self.write_buf.lock().unwrap_or_else(|e| e.into_inner());
        buf.clear();
        beehive_model::encode_into(msg, &mut buf).map_err(CodecError::from)?;
        buf.push(b'\n');
        match self.socket.send(&buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(n) => Err(CodecError::ShortWrite { written: n, len: buf.len() }.into()),
            Err(e) => {
                self.close();
                Err(SocketError::Io(e))
            }
        }
    }

    /// Closes the connection (both directions); the reader thread ends.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self.socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Reads messages until the peer closes, a read fails or `handle`
    /// returns an error; then closes the connection. Returns why it ended.
    pub fn read_loop(&self, mut handle: impl FnMut(Message) -> Result<(), String>) -> String {
        let mut reader = SeqpacketReader::with_batch(&self.socket, self.max_packet_len, 8);
        let reason = loop {
            match reader.read_message() {
                Ok(Some(msg)) => {
                    if let Err(e) = handle(msg) {
                        break e;
                    }
                }
                Ok(None) => break "peer closed the connection".to_owned(),
                Err(e) => break format!("read failed: {e}"),
            }
        };
        if !self.is_closed() {
            tracing::warn!(connection = self.id, %reason, "closing connection");
        }
        self.close();
        reason
    }
}
