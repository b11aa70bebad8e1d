//! Entry points for the fuzz targets in `fuzz/`, compiled only with
//! `--cfg fuzzing` (which cargo-fuzz sets) and not part of the API.
//!
//! They run a connection's real read loop ([`Connection::read_loop`]) over an
//! in-process socket pair: the input is written to one end, that end is
//! shut down, and the loop reads the other end in the calling thread until
//! it stops. No threads, no timers: every byte is queued before reading
//! starts, so a run is deterministic.

use std::io::{self, ErrorKind, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beehive_model::Message;
use socket2::{Domain, Socket, Type};

use crate::conn::{Connection, StreamFraming, Transport};

/// The reason a read loop gives when the handler refuses a message.
pub const REJECTED: &str = "fuzz handler rejected the message";

/// What one read loop did.
#[derive(Debug)]
pub struct ReadOutcome {
    /// Packets (packet transport) or bytes (stream transport) of the input
    /// that were queued on the socket; input that did not fit in the socket
    /// buffer was not sent.
    pub written: usize,
    /// The messages handed to the handler, in order.
    pub delivered: Vec<Message>,
    /// Why the loop stopped (what `read_loop` returned).
    pub reason: String,
    /// Whether the connection was closed when the loop returned.
    pub closed: bool,
}

fn run(conn: &Connection, reject_at: Option<usize>) -> (Vec<Message>, String) {
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&delivered);
    let reason = conn.read_loop(move |msg| {
        let mut got = sink.lock().unwrap_or_else(|e| e.into_inner());
        if Some(got.len()) == reject_at {
            return Err(REJECTED.to_owned());
        }
        got.push(msg);
        Ok(())
    });
    let delivered = std::mem::take(&mut *delivered.lock().unwrap_or_else(|e| e.into_inner()));
    (delivered, reason)
}

/// Sends each of `packets` as one SOCK_SEQPACKET packet (until the socket
/// buffer is full), shuts the sending side down, and runs the read loop of a
/// packet connection accepting packets of up to `max_packet_len` bytes. The
/// handler refuses the message at index `reject_at`.
pub fn read_packets(packets: &[&[u8]], max_packet_len: usize, reject_at: Option<usize>) -> io::Result<ReadOutcome> {
    let (tx, rx) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)?;
    tx.set_nonblocking(true)?;
    let mut written = 0;
    for p in packets {
        match tx.send(p) {
            Ok(n) if n == p.len() => written += 1,
            Ok(_) => return Err(io::Error::new(ErrorKind::WriteZero, "short packet write")),
            // A full buffer, or a packet larger than the buffer: stop here.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock) || e.raw_os_error() == Some(nix::libc::EMSGSIZE) => {
                break
            }
            Err(e) => return Err(e),
        }
    }
    tx.shutdown(std::net::Shutdown::Write)?;
    let conn = Connection::new(rx, max_packet_len);
    let (delivered, reason) = run(&conn, reject_at);
    Ok(ReadOutcome { written, delivered, reason, closed: conn.is_closed() })
}

/// Writes `bytes` to a unix stream socket pair (as much as the socket
/// buffer holds), shuts the writing side down, and runs the read loop of a
/// stream connection with `framing` and frames of up to `max_frame_len`
/// bytes. The handler refuses the message at index `reject_at`.
pub fn read_stream(
    bytes: &[u8],
    framing: StreamFraming,
    max_frame_len: usize,
    reject_at: Option<usize>,
) -> io::Result<ReadOutcome> {
    let (tx, rx) = Socket::pair(Domain::UNIX, Type::STREAM, None)?;
    tx.set_nonblocking(true)?;
    let mut written = 0;
    while written < bytes.len() {
        match (&tx).write(&bytes[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    tx.shutdown(std::net::Shutdown::Write)?;
    // The stall timeout never fires: the whole input is queued, then EOF.
    let transport = Transport::Stream { framing, stall_timeout: Duration::from_secs(10) };
    let conn = Connection::with_transport(rx, transport, max_frame_len);
    let (delivered, reason) = run(&conn, reject_at);
    Ok(ReadOutcome { written, delivered, reason, closed: conn.is_closed() })
}
