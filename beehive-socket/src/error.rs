//! Errors of the socket layer outside the drivers.

/// Why TLS settings from a configuration entry cannot be used (a
/// certificate, key or CA file that cannot be read or parsed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// Reading or parsing a file failed; the message names the file.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
