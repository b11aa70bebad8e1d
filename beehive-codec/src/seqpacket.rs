//! Batched packet reading on Linux: `recvmmsg(2)` takes every queued packet
//! (up to a batch) in one system call, so a busy reader pays one call per
//! batch instead of one per packet.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};

use beehive_model::Message;
use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders};

use crate::raw::packet;
use crate::CodecError;

/// What a non-blocking read found.
#[derive(Debug)]
pub enum Received<'a> {
    /// A packet.
    Packet(&'a [u8]),
    /// Nothing queued now.
    Empty,
    /// The peer closed the connection.
    Closed,
}

/// Default number of packets taken per system call.
pub const DEFAULT_BATCH: usize = 16;

/// Reads one message per packet from a SOCK_SEQPACKET socket, taking up to
/// a batch of queued packets per `recvmmsg` call (it blocks only until the
/// first packet is there). Oversized packets are detected from the kernel's
/// `MSG_TRUNC` flag and reported as [`CodecError::PacketTooLarge`].
#[derive(Debug)]
pub struct SeqpacketReader<S> {
    sock: S,
    bufs: Vec<Vec<u8>>,
    /// Length and truncation flag of each packet of the current batch.
    got: Vec<(usize, bool)>,
    next: usize,
    max_packet_len: usize,
}

impl<S: AsFd> SeqpacketReader<S> {
    /// A reader for packets of up to `max_packet_len` bytes, [`DEFAULT_BATCH`] per call.
    pub fn new(sock: S, max_packet_len: usize) -> Self {
        SeqpacketReader::with_batch(sock, max_packet_len, DEFAULT_BATCH)
    }

    /// A reader taking up to `batch` packets per system call.
    pub fn with_batch(sock: S, max_packet_len: usize, batch: usize) -> Self {
        let batch = batch.max(1);
        SeqpacketReader {
            sock,
            bufs: vec![vec![0; max_packet_len.max(1)]; batch],
            got: Vec::with_capacity(batch),
            next: 0,
            max_packet_len,
        }
    }

    /// One `recvmmsg` call into the batch buffers.
    fn receive(&mut self, flags: MsgFlags) -> Result<(), Errno> {
        let fd = self.sock.as_fd().as_raw_fd();
        let mut headers = MultiHeaders::<()>::preallocate(self.bufs.len(), None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let results = recvmmsg(fd, &mut headers, slices.iter_mut(), flags, None)?;
        for r in results {
            self.got.push((r.bytes, r.flags.contains(MsgFlags::MSG_TRUNC)));
        }
        Ok(())
    }

    /// Refills the batch; with `wait` false returns `Ok(false)` at once
    /// when nothing is queued.
    fn refill(&mut self, wait: bool) -> Result<bool, CodecError> {
        self.next = 0;
        let flags = if wait { MsgFlags::MSG_WAITFORONE } else { MsgFlags::MSG_WAITFORONE | MsgFlags::MSG_DONTWAIT };
        loop {
            self.got.clear();
            match self.receive(flags) {
                Ok(()) => return Ok(true),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) if !wait => return Ok(false),
                Err(e) => return Err(CodecError::Io(io::Error::from(e))),
            }
        }
    }

    /// Like [`read_packet`](Self::read_packet) without blocking:
    /// `Ok(Received::Empty)` when no packet is queued.
    pub fn try_read_packet(&mut self) -> Result<Received<'_>, CodecError> {
        if self.next >= self.got.len() && !self.refill(false)? {
            return Ok(Received::Empty);
        }
        Ok(match self.take()? {
            Some(p) => Received::Packet(p),
            None => Received::Closed,
        })
    }

    fn take(&mut self) -> Result<Option<&[u8]>, CodecError> {
        let i = self.next;
        let Some(&(len, truncated)) = self.got.get(i) else {
            return Ok(None);
        };
        if len == 0 {
            self.got.clear();
            return Ok(None);
        }
        self.next += 1;
        if truncated {
            return Err(CodecError::PacketTooLarge { max: self.max_packet_len });
        }
        Ok(Some(&self.bufs[i][..len]))
    }

    /// The next packet, borrowed until the next read; `Ok(None)` when the
    /// peer has closed the connection.
    pub fn read_packet(&mut self) -> Result<Option<&[u8]>, CodecError> {
        if self.next >= self.got.len() {
            self.refill(true)?;
        }
        self.take()
    }

    /// The next message; `Ok(None)` when the peer has closed the connection.
    pub fn read_message(&mut self) -> Result<Option<Message>, CodecError> {
        match self.read_packet()? {
            None => Ok(None),
            Some(p) => packet::decode(p).map(Some),
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.sock
    }
}
