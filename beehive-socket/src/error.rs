//! Errors of the socket layer.

/// Why a socket operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// Reading or writing a frame failed (I/O, oversized or malformed data).
    #[error(transparent)]
    Codec(#[from] beehive_codec::CodecError),
    /// The bus refused the operation.
    #[error(transparent)]
    Context(#[from] beehive_context::ContextError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The connection is closed; the message was not sent.
    #[error("connection {id} is closed")]
    Closed {
        /// The connection.
        id: u64,
    },
    /// The module handshake failed.
    #[error("handshake of module {module:?} failed: {reason}")]
    Handshake {
        /// The module.
        module: String,
        /// Why.
        reason: String,
    },
    /// A socket type this build does not serve.
    #[error("unsupported socket type {0:?}")]
    UnsupportedSocketType(String),
    /// A system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
