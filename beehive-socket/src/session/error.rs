//! Why a session call failed, and why a session closed.

use std::fmt;
use std::io;
use std::time::Duration;

use beehive_codec::CodecError;

use super::registry::NameTaken;

/// Why a send on a session failed. None of these closes the session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is closed; nothing more is sent.
    #[error("the session is closed")]
    Closed,
    /// The outbound queue holds its maximum (frames or bytes); the message
    /// was not queued.
    #[error("outbound queue full: {frames} frames, {bytes} bytes queued")]
    QueueFull {
        /// Frames queued or being written.
        frames: usize,
        /// Bytes queued or being written.
        bytes: usize,
    },
    /// The message's frame is larger than the transport's limit (Go's
    /// `buffersize`); the message was not queued (on SOCK_SEQPACKET Go's
    /// write of such a message fails and the connection stays up).
    #[error("message frame of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The frame length (for raw framing on a stream: the line without
        /// its line feed, as the peer's reader counts it).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No module of that name is served through this session.
    #[error("module {module:?} is not served through this session")]
    UnknownModule {
        /// The module.
        module: String,
    },
    /// No group of that name is served through this session.
    #[error("group {group:?} is not served through this session")]
    UnknownGroup {
        /// The group.
        group: String,
    },
    /// As many requests wait for their response as the session allows.
    #[error("{pending} requests already wait for a response")]
    TooManyRequests {
        /// Requests waiting.
        pending: usize,
    },
    /// A request with this id already waits for its response.
    #[error("a request with id {id:?} already waits for its response")]
    DuplicateRequest {
        /// The id.
        id: String,
    },
    /// The message cannot be encoded (Go's `json.Marshal` fails as well).
    #[error(transparent)]
    Encode(CodecError),
    /// The module name is served by another session.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
}

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Server side: the module has no client entry in the configuration (Go
    /// closes the connection).
    #[error("module {module:?} is not allowed to register")]
    NotAllowed {
        /// The module.
        module: String,
    },
    /// Server side: the module is served by another live session, or is one
    /// of the server's own modules.
    #[error("{0}")]
    NameTaken(NameTaken),
    /// Client side: the server closed the connection before answering (how
    /// a Go server refuses).
    #[error("the server closed the connection before answering the handshake")]
    PeerClosed,
    /// Client side: the answer is not a module exchange.
    #[error("the handshake answer is not a module exchange: {reason}")]
    BadAnswer {
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a session closed (carried by [`Event::Closed`](super::Event::Closed)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`Session::close`](super::Session::close) was called.
    #[error("closed locally")]
    Local,
    /// The peer closed the connection: a read found the end of the stream,
    /// or the socket reported that the peer is gone (`ECONNRESET`, `EPIPE`,
    /// `ECONNABORTED`).
    #[error("the peer closed the connection")]
    PeerClosed,
    /// Reading from or writing to the connection failed for a reason other
    /// than the peer closing it (a TLS record that does not authenticate,
    /// a socket error, a write the transport would not take).
    #[error("{direction} failed: {error}")]
    Io {
        /// Whether a read or a write failed.
        direction: IoDirection,
        /// The error the transport returned.
        #[source]
        error: io::Error,
    },
    /// The handshake was refused (by us as a server, or by the server).
    #[error("handshake refused: {0}")]
    HandshakeRefused(Refusal),
    /// The handshake did not complete within the handshake timeout.
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// Nothing was received for the idle timeout.
    #[error("nothing received for {0:?}")]
    IdleTimeout(Duration),
    /// A partial frame on a stream did not complete within the stall timeout.
    #[error("a frame stalled for {timeout:?} with {buffered} bytes received")]
    StallTimeout {
        /// The stall timeout.
        timeout: Duration,
        /// Bytes of the incomplete frame received.
        buffered: usize,
    },
    /// The peer did not drain outbound data for the write timeout.
    #[error("no write progress for {timeout:?} with {pending} bytes to write")]
    WriteTimeout {
        /// The write timeout.
        timeout: Duration,
        /// Bytes still to be written.
        pending: usize,
    },
    /// Server side: the peer kept registering while not reading the
    /// answers, until the outbound queue was full.
    #[error("outbound queue full ({frames} frames, {bytes} bytes) while answering a registration")]
    OutboundOverflow {
        /// Frames queued or being written.
        frames: usize,
        /// Bytes queued or being written.
        bytes: usize,
    },
    /// A stream whose framing is broken (bad header, oversized frame or
    /// line, truncated at the end): the stream cannot be resynchronised.
    #[error("malformed stream at byte {offset}: {error}")]
    Malformed {
        /// Stream offset of the error.
        offset: u64,
        /// The error.
        error: CodecError,
    },
    /// Server side: a message other than the handshake before registration.
    #[error("message {id:?} arrived before the module handshake")]
    NotRegistered {
        /// The message id.
        id: String,
    },
    /// Server side: a message from a module that has no client entry (Go
    /// closes the connection).
    #[error("message from module {module:?}, which is not allowed")]
    SourceNotAllowed {
        /// The message's source.
        module: String,
    },
}

impl CloseReason {
    /// A short, stable name of the reason's kind (`"peer_closed"`,
    /// `"idle_timeout"`...), for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CloseReason::Local => "local",
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Io { .. } => "io_error",
            CloseReason::HandshakeRefused(_) => "handshake_refused",
            CloseReason::HandshakeTimeout(_) => "handshake_timeout",
            CloseReason::IdleTimeout(_) => "idle_timeout",
            CloseReason::StallTimeout { .. } => "stall_timeout",
            CloseReason::WriteTimeout { .. } => "write_timeout",
            CloseReason::OutboundOverflow { .. } => "outbound_overflow",
            CloseReason::Malformed { .. } => "malformed",
            CloseReason::NotRegistered { .. } => "not_registered",
            CloseReason::SourceNotAllowed { .. } => "source_not_allowed",
        }
    }
}

/// Which way the bytes were going when a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoDirection {
    /// Reading from the connection.
    Read,
    /// Writing to the connection.
    Write,
}

impl fmt::Display for IoDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoDirection::Read => "reading",
            IoDirection::Write => "writing",
        })
    }
}

/// The byte offset a codec error refers to.
pub(crate) fn codec_offset(e: &CodecError) -> u64 {
    match e {
        CodecError::BadMagic { offset, .. }
        | CodecError::UnsupportedVersion { offset, .. }
        | CodecError::NegativeLength { offset, .. }
        | CodecError::FrameTooLarge { offset, .. }
        | CodecError::Truncated { offset, .. }
        | CodecError::LineTooLong { offset, .. } => *offset,
        CodecError::Json { offset, source } => offset + source.offset() as u64,
        _ => 0,
    }
}
