//! Blocking readers and writers over `std::io`, for code without tokio.

use std::io::{self, Read, Write};

use beehive_model::Message;
use bytes::{Bytes, BytesMut};

use crate::framing::Framing;
use crate::raw::packet;
use crate::{CodecError, PackageCodec, RawCodec};

/// Default size of one read from the underlying reader.
pub const DEFAULT_READ_SIZE: usize = 64 * 1024;

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads frames (and messages) from a byte stream.
///
/// Holds at most one partial frame beyond a read's worth of bytes; a frame
/// over the framing's maximum is rejected from its header, before its
/// payload is read.
#[derive(Debug)]
pub struct FrameReader<R, F> {
    inner: R,
    framing: F,
    buf: BytesMut,
    chunk: Vec<u8>,
    eof: bool,
}

/// Package framing over a stream (Go's `PackageReader`).
pub type PackageReader<R> = FrameReader<R, PackageCodec>;
/// Raw newline-delimited framing over a stream.
pub type RawReader<R> = FrameReader<R, RawCodec>;

impl<R: Read> PackageReader<R> {
    /// A package reader with the default maximum frame size.
    pub fn package(inner: R) -> Self {
        FrameReader::new(inner, PackageCodec::new())
    }
}

impl<R: Read> RawReader<R> {
    /// A raw line reader with the default maximum line length.
    pub fn raw(inner: R) -> Self {
        FrameReader::new(inner, RawCodec::new())
    }
}

impl<R: Read, F: Framing> FrameReader<R, F> {
    /// Reads with `framing`, [`DEFAULT_READ_SIZE`] bytes at a time.
    pub fn new(inner: R, framing: F) -> Self {
        FrameReader::with_read_size(inner, framing, DEFAULT_READ_SIZE)
    }

    /// Reads with `framing`, up to `read_size` bytes per read call (Go's
    /// reader asks for as much as its buffer holds).
    pub fn with_read_size(inner: R, framing: F, read_size: usize) -> Self {
        FrameReader { inner, framing, buf: BytesMut::new(), chunk: vec![0; read_size.max(1)], eof: false }
    }

    /// The next frame payload; `Ok(None)` at a clean end of stream.
    pub fn read_frame(&mut self) -> Result<Option<Bytes>, CodecError> {
        loop {
            if let Some(frame) = self.framing.decode_frame(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.eof {
                return self.framing.decode_frame_eof(&mut self.buf);
            }
            let n = read_retrying(&mut self.inner, &mut self.chunk)?;
            if n == 0 {
                self.eof = true;
            } else {
                self.buf.extend_from_slice(&self.chunk[..n]);
            }
        }
    }

    /// The next message; `Ok(None)` at a clean end of stream.
    pub fn read_message(&mut self) -> Result<Option<Message>, CodecError> {
        match self.read_frame()? {
            None => Ok(None),
            Some(payload) => beehive_model::from_slice(&payload)
                .map(Some)
                .map_err(|source| CodecError::Json { offset: self.framing.last_frame_offset(), source }),
        }
    }

    /// Bytes received but not yet returned as a frame: a partial frame when
    /// non-zero after a read error or timeout.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Gives back the underlying reader (buffered bytes are dropped).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames (and messages) to a byte stream: each frame with a single
/// `write_all` of header and payload together.
#[derive(Debug)]
pub struct FrameWriter<W, F> {
    inner: W,
    framing: F,
    buf: BytesMut,
}

/// Package framing over a stream (Go's `PackageWriter`).
pub type PackageWriter<W> = FrameWriter<W, PackageCodec>;
/// Raw framing over a stream (Go's `RawWriter`).
pub type RawWriter<W> = FrameWriter<W, RawCodec>;

impl<W: Write> PackageWriter<W> {
    /// A package writer with the default maximum frame size.
    pub fn package(inner: W) -> Self {
        FrameWriter::new(inner, PackageCodec::new())
    }
}

impl<W: Write> RawWriter<W> {
    /// A raw writer.
    pub fn raw(inner: W) -> Self {
        FrameWriter::new(inner, RawCodec::new())
    }
}

impl<W: Write, F: Framing> FrameWriter<W, F> {
    /// Writes with `framing`.
    pub fn new(inner: W, framing: F) -> Self {
        FrameWriter { inner, framing, buf: BytesMut::new() }
    }

    fn send(&mut self) -> Result<(), CodecError> {
        let r = self.inner.write_all(&self.buf);
        self.buf.clear();
        Ok(r?)
    }

    /// Writes one frame carrying `payload` (Go's `Write`).
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<(), CodecError> {
        self.buf.clear();
        self.framing.encode_frame(payload, &mut self.buf)?;
        self.send()
    }

    /// Writes one message (Go's `WriteJSON`).
    pub fn write_message(&mut self, msg: &Message) -> Result<(), CodecError> {
        self.buf.clear();
        self.framing.encode_message(msg, &mut self.buf)?;
        self.send()
    }

    /// Writes several messages with one `write_all` (fewer system calls).
    pub fn write_messages<'a>(&mut self, msgs: impl IntoIterator<Item = &'a Message>) -> Result<(), CodecError> {
        self.buf.clear();
        for msg in msgs {
            self.framing.encode_message(msg, &mut self.buf)?;
        }
        self.send()
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), CodecError> {
        Ok(self.inner.flush()?)
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Gives back the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads one message per packet from a SOCK_SEQPACKET socket (anything whose
/// every `read` returns exactly one packet).
///
/// Each read uses a buffer one byte larger than the maximum packet, so an
/// oversized packet is reported as [`CodecError::PacketTooLarge`] instead of
/// being silently cut.
#[derive(Debug)]
pub struct PacketReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_packet_len: usize,
}

impl<R: Read> PacketReader<R> {
    /// A reader for packets of up to [`packet::DEFAULT_MAX_PACKET_LEN`] bytes.
    pub fn new(inner: R) -> Self {
        PacketReader::with_max_packet_len(inner, packet::DEFAULT_MAX_PACKET_LEN)
    }

    /// A reader for packets of up to `max_packet_len` bytes.
    pub fn with_max_packet_len(inner: R, max_packet_len: usize) -> Self {
        PacketReader { inner, buf: vec![0; max_packet_len + 1], max_packet_len }
    }

    /// The next packet, borrowed until the next read; `Ok(None)` when the
    /// peer has closed the connection (a zero-length read).
    pub fn read_packet(&mut self) -> Result<Option<&[u8]>, CodecError> {
        let n = read_retrying(&mut self.inner, &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if n > self.max_packet_len {
            return Err(CodecError::PacketTooLarge { max: self.max_packet_len });
        }
        Ok(Some(&self.buf[..n]))
    }

    /// The next message; `Ok(None)` when the peer has closed the connection.
    pub fn read_message(&mut self) -> Result<Option<Message>, CodecError> {
        match self.read_packet()? {
            None => Ok(None),
            Some(p) => packet::decode(p).map(Some),
        }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

/// Writes one message per packet: each with a single `write` call, which a
/// SOCK_SEQPACKET socket turns into exactly one packet (Go's raw writer).
#[derive(Debug)]
pub struct PacketWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> PacketWriter<W> {
    /// A packet writer.
    pub fn new(inner: W) -> Self {
        PacketWriter { inner, buf: Vec::with_capacity(512) }
    }

    /// Writes `payload` as one packet.
    pub fn write_packet(&mut self, payload: &[u8]) -> Result<(), CodecError> {
        let n = loop {
            match self.inner.write(payload) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n != payload.len() {
            return Err(CodecError::ShortWrite { written: n, len: payload.len() });
        }
        Ok(())
    }

    /// Writes `msg` as one packet: Go's JSON and a line feed.
    pub fn write_message(&mut self, msg: &Message) -> Result<(), CodecError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let r = beehive_model::encode_into(msg, &mut buf).map_err(CodecError::from).and_then(|()| {
            buf.push(b'\n');
            self.write_packet(&buf)
        });
        self.buf = buf;
        r
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}
