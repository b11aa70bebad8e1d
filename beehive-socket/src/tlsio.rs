//! TLS over a nonblocking stream, for both drivers: rustls driven as a
//! state machine (records in, plaintext out and back), so a connection keeps
//! one readiness loop (or one `poll`) for every transport.
//!
//! Without the `tls` feature the same names exist as uninhabited types: a
//! driver's TLS branches compile and can never be taken.

use std::io;

use bytes::Bytes;

#[cfg(feature = "tls")]
pub(crate) use real::{TlsIo, TlsSession};
#[cfg(not(feature = "tls"))]
pub(crate) use stand_in::{TlsIo, TlsSession};

/// The TLS side of a new connection with `tls` settings: a client session
/// (`server` false) or a server session; settings of the other side are an
/// `InvalidInput` error.
pub(crate) fn session(tls: &crate::driver::Tls, server: bool) -> io::Result<TlsSession> {
    #[cfg(feature = "tls")]
    {
        use std::sync::Arc;

        use crate::driver::Tls;
        let invalid = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidInput, e);
        match (tls, server) {
            (Tls::Client { config, server_name }, false) => {
                Ok(rustls::ClientConnection::new(Arc::clone(config), server_name.clone()).map_err(invalid)?.into())
            }
            (Tls::Server(config), true) => {
                Ok(rustls::ServerConnection::new(Arc::clone(config)).map_err(invalid)?.into())
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "TLS settings of the other side")),
        }
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = server;
        match *tls {}
    }
}

/// Bytes a stream read takes at first; the buffer grows when reads fill it.
pub(crate) const STREAM_READ_START: usize = 4 * 1024;
/// Largest stream read buffer.
pub(crate) const STREAM_READ_MAX: usize = 64 * 1024;

/// After a stream read of `n` bytes into `buf`: a read that filled the
/// buffer doubles it, up to [`STREAM_READ_MAX`], so the next one may take
/// more.
#[inline]
pub(crate) fn grow_after_read(buf: &mut Vec<u8>, n: usize) {
    if n == buf.len() && buf.len() < STREAM_READ_MAX {
        buf.resize((buf.len() * 2).min(STREAM_READ_MAX), 0);
    }
}

/// A stream socket read and written without waiting (`WouldBlock` when it
/// cannot make progress).
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) trait Nonblocking {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

#[cfg(feature = "tls")]
mod real {
    use super::*;

    /// Plaintext taken into rustls per write, at most: the rest waits until its
    /// records are on the socket, so the session's write timeout still sees a
    /// peer that does not read.
    const TLS_WRITE_CHUNK: usize = 64 * 1024;

    /// `std::io` access to a [`Nonblocking`] socket, for rustls.
    struct Adapter<'a, S>(&'a S);

    impl<S: Nonblocking> io::Read for Adapter<'_, S> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.try_read(buf)
        }
    }

    impl<S: Nonblocking> io::Write for Adapter<'_, S> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.try_write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// One TLS connection's state (client or server).
    pub(crate) type TlsSession = rustls::Connection;

    /// TLS over the nonblocking stream `io`.
    #[derive(Debug)]
    pub(crate) struct TlsIo<S> {
        pub(crate) io: S,
        pub(crate) tls: rustls::Connection,
        /// Decrypted bytes waiting in rustls: a read can make progress without
        /// the socket.
        pub(crate) plaintext: usize,
        /// The peer's stream ended (TCP end or `close_notify`).
        pub(crate) eof: bool,
    }

    impl<S: Nonblocking> TlsIo<S> {
        pub(crate) fn new(io: S, tls: rustls::Connection) -> Self {
            TlsIo { io, tls, plaintext: 0, eof: false }
        }

        /// Writes the records rustls holds until the socket is full.
        pub(crate) fn flush(&mut self) -> io::Result<()> {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut Adapter(&self.io)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }

        /// The connection is over: a `close_notify` joins whatever rustls
        /// still holds (the fatal alert of a failed handshake, say), and one
        /// nonblocking attempt is made to put it on the socket, so that the
        /// peer learns why instead of seeing a bare end of stream. Errors are
        /// ignored: the socket closes next either way.
        pub(crate) fn finish(&mut self) {
            self.tls.send_close_notify();
            if let Err(e) = self.flush() {
                tracing::trace!(error = %e, "the last TLS records were not written");
            }
        }

        /// Plaintext into `buf` (grown on demand); 0 is the end of the stream,
        /// `WouldBlock` when there is nothing to read.
        pub(crate) fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
            if buf.is_empty() {
                buf.resize(STREAM_READ_START, 0);
            }
            loop {
                if self.plaintext > 0 || self.eof {
                    let n = match io::Read::read(&mut self.tls.reader(), buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                        Err(e) => return Err(e),
                    };
                    self.plaintext = self.plaintext.saturating_sub(n);
                    if n > 0 || self.eof {
                        grow_after_read(buf, n);
                        return Ok(n);
                    }
                }
                match self.tls.read_tls(&mut Adapter(&self.io)) {
                    Ok(0) => self.eof = true,
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
                let state =
                    self.tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                self.plaintext = state.plaintext_bytes_to_read();
                if state.peer_has_closed() {
                    self.eof = true;
                }
                // Handshake messages and alerts to answer.
                self.flush()?;
            }
        }

        /// Takes plaintext of the frames at the front of `frames` (the first
        /// from byte `offset`) once the earlier records are out, at most
        /// 64 KiB; returns how much. `WouldBlock` while records wait.
        pub(crate) fn write(&mut self, frames: &[Bytes], offset: usize) -> io::Result<usize> {
            self.flush()?;
            if self.tls.wants_write() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut taken = 0;
            for (i, frame) in frames.iter().enumerate() {
                let bytes = if i == 0 { &frame[offset.min(frame.len())..] } else { &frame[..] };
                let room = TLS_WRITE_CHUNK - taken;
                let part = &bytes[..bytes.len().min(room)];
                // rustls takes less than offered once the records it holds
                // reach its buffer limit (counted with their overhead); the
                // rest waits for the next call, after those records are out.
                let n = io::Write::write(&mut self.tls.writer(), part)?;
                taken += n;
                if n < part.len() || taken == TLS_WRITE_CHUNK {
                    break;
                }
            }
            self.flush()?;
            Ok(taken)
        }
    }
}

#[cfg(not(feature = "tls"))]
mod stand_in {
    use super::*;

    /// No TLS in this build: there is no TLS connection state.
    #[derive(Debug)]
    pub(crate) enum TlsSession {}

    /// No TLS in this build: never constructed.
    #[derive(Debug)]
    #[allow(dead_code)]
    pub(crate) struct TlsIo<S> {
        pub(crate) io: S,
        pub(crate) tls: TlsSession,
        pub(crate) plaintext: usize,
        pub(crate) eof: bool,
    }

    impl TlsSession {
        pub(crate) fn wants_write(&self) -> bool {
            match *self {}
        }
    }

    impl<S: Nonblocking> TlsIo<S> {
        pub(crate) fn new(_io: S, tls: TlsSession) -> Self {
            match tls {}
        }

        pub(crate) fn flush(&mut self) -> io::Result<()> {
            match self.tls {}
        }

        pub(crate) fn finish(&mut self) {
            match self.tls {}
        }

        pub(crate) fn read(&mut self, _buf: &mut Vec<u8>) -> io::Result<usize> {
            match self.tls {}
        }

        pub(crate) fn write(&mut self, _frames: &[Bytes], _offset: usize) -> io::Result<usize> {
            match self.tls {}
        }
    }
}
