//! TLS for TCP entries (rustls, ring provider): certificates, keys and CA
//! from the configuration, mutual TLS when the server has a CA.
//!
//! Go's beehive socket client only dials `unixpacket`; TLS over TCP is what
//! its configuration (`ca`, `cert`, `key`) describes, and what we serve:
//! a server entry with `cert` and `key` speaks TLS, and with `ca` it
//! requires client certificates signed by it; a client entry with `ca`
//! verifies the server with it, and presents `cert`/`key` when given.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

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
