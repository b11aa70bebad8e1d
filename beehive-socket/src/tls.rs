//! TLS for TCP entries (rustls, ring provider): certificates, keys and CA
//! from the configuration, mutual TLS when the server has a CA.
//!
//! Go's beehive socket client only dials `unixpacket`; TLS over TCP is what
//! its configuration (`ca`, `cert`, `key`) describes, and what we serve:
//! a server entry with `cert` and `key` speaks TLS, and with `ca` it
//! requires client certificates signed by it; a client entry with `ca`
//! verifies the server with it, and presents `cert`/`key` when given.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use socket2::Socket;

use crate::config::SocketConfig;
use crate::SocketError;

fn tls_error(what: &str, e: impl std::fmt::Display) -> SocketError {
    SocketError::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, SocketError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&format!("certificate file {path}"), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&format!("certificate file {path}"), e))
}

fn key(path: &str) -> Result<PrivateKeyDer<'static>, SocketError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(&format!("key file {path}"), e))
}

fn roots(path: &str) -> Result<RootCertStore, SocketError> {
    let mut store = RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert).map_err(|e| tls_error(&format!("CA file {path}"), e))?;
    }
    Ok(store)
}

/// The server's TLS settings, if its entry has a certificate and key.
pub fn server_config(entry: &SocketConfig) -> Result<Option<Arc<ServerConfig>>, SocketError> {
    if entry.cert.is_empty() && entry.key.is_empty() {
        return Ok(None);
    }
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions", e))?;
    let builder = if entry.ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&entry.ca)?), provider())
                .build()
                .map_err(|e| tls_error("client verifier", e))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder
        .with_single_cert(certs(&entry.cert)?, key(&entry.key)?)
        .map_err(|e| tls_error("server certificate", e))?;
    Ok(Some(Arc::new(config)))
}

/// The client's TLS settings and the server name to verify, if its entry has a CA.
pub fn client_config(entry: &SocketConfig) -> Result<Option<(Arc<ClientConfig>, ServerName<'static>)>, SocketError> {
    if entry.ca.is_empty() {
        return Ok(None);
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions", e))?
        .with_root_certificates(roots(&entry.ca)?);
    let config = if entry.cert.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder
            .with_client_auth_cert(certs(&entry.cert)?, key(&entry.key)?)
            .map_err(|e| tls_error("client certificate", e))?
    };
    let host = entry.address.rsplit_once(':').map_or(entry.address.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_owned()).map_err(|e| tls_error("server name", e))?,
    };
    Ok(Some((Arc::new(config), name)))
}

/// Waits until `socket` is readable (or writable); false on timeout.
pub(crate) fn wait(socket: &Socket, write: bool, timeout: Duration) -> io::Result<bool> {
    let flags = if write { PollFlags::POLLOUT } else { PollFlags::POLLIN };
    let mut fds = [PollFd::new(socket.as_fd(), flags)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match nix::poll::poll(&mut fds, ms) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Runs the handshake on a blocking socket, then leaves the socket
/// non-blocking for the reader and writers.
pub(crate) fn handshake(tls: &mut rustls::Connection, socket: &Socket, timeout: Duration) -> Result<(), SocketError> {
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    let deadline = Instant::now() + timeout;
    let mut io = socket;
    while tls.is_handshaking() {
        if Instant::now() >= deadline {
            return Err(SocketError::Io(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")));
        }
        tls.complete_io(&mut io).map_err(|e| tls_error("TLS handshake", e))?;
    }
    // Flush what the handshake left to send (a client's finished message).
    while tls.wants_write() {
        tls.write_tls(&mut io)?;
    }
    socket.set_nonblocking(true)?;
    Ok(())
}

/// Writes `plain` through `tls` to a non-blocking `socket`.
pub(crate) fn write_all(tls: &mut rustls::Connection, socket: &Socket, plain: &[u8]) -> io::Result<()> {
    tls.writer().write_all(plain)?;
    flush(tls, socket)
}

fn flush(tls: &mut rustls::Connection, socket: &Socket) -> io::Result<()> {
    let mut io = socket;
    while tls.wants_write() {
        match tls.write_tls(&mut io) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait(socket, true, Duration::from_secs(10))? {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "peer does not read"));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what the socket has through `tls` and appends the plaintext to
/// `out`, one TLS read at a time (so the session's buffers stay bounded).
/// `Ok(false)` means the peer closed the connection.
pub(crate) fn read_available(tls: &mut rustls::Connection, socket: &Socket, out: &mut Vec<u8>) -> io::Result<bool> {
    let mut io = socket;
    let mut buf = [0u8; 16 * 1024];
    let mut open = true;
    loop {
        // Plaintext already decrypted (also what the handshake read ahead).
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !open {
            break;
        }
        match tls.read_tls(&mut io) {
            Ok(0) => {
                open = false;
                break;
            }
            Ok(_) => {
                tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    flush(tls, socket)?;
    Ok(open)
}
