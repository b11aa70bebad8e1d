//! The socket module configuration: the YAML file Go's beehive reads.
//!
//! ```yaml
//! - module: socketserver
//!   server: true
//!   address: /var/lib/kubeedge/beehive.sock
//!   sockettype: unixpacket
//!   connmax: 4
//!   buffersize: 4096
//! - module: edgeclient
//!   server: false
//!   address: /var/lib/kubeedge/beehive.sock
//!   sockettype: unixpacket
//!   buffersize: 4096
//! ```
//!
//! Go reads it with `sigs.k8s.io/yaml` (YAML to JSON, then `encoding/json`),
//! so keys match case-insensitively and unknown keys are ignored; so here.

#[cfg(feature = "yaml")]
use std::path::Path;
use std::path::PathBuf;

#[cfg(feature = "yaml")]
use serde_json::Value;

use crate::session::{SessionConfig, StreamFraming, TransportKind};

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "SOCKET_MODULE_CONFIG";
/// Where Go looks when the variable is not set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kubeedge/config/socket_module.yaml";
/// Go's socket type for SOCK_SEQPACKET unix sockets (the default).
pub const UNIXPACKET: &str = "unixpacket";
/// Go's socket type for unix stream sockets.
pub const UNIX: &str = "unix";
/// Go's socket type for TCP.
pub const TCP: &str = "tcp";
/// Default largest frame, 64 KiB, when the configuration gives no `buffersize`.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;
/// Default time a partial frame on a stream socket may wait for its rest.
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read socket config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The text is not YAML of the expected shape.
    #[error("bad socket config {path}: {message}")]
    Invalid {
        /// The file (or `<string>`).
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// One entry of the configuration (Go `config.SocketConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketConfig {
    /// The module name.
    pub module: String,
    /// True for the server entry.
    pub server: bool,
    /// Socket path (or host:port for TCP).
    pub address: String,
    /// `unixpacket` (default), `unix` or `tcp`.
    pub socket_type: String,
    /// Maximum concurrent connections of a server.
    pub conn_max: usize,
    /// Read buffer size: the largest packet accepted.
    pub buffer_size: usize,
    /// CA certificate file (TLS).
    pub ca: String,
    /// Certificate file (TLS).
    pub cert: String,
    /// Private key file (TLS).
    pub key: String,
}

impl SocketConfig {
    /// The session transport of this entry's socket type: one message per
    /// packet on `unixpacket` (the default), `framing` on `unix` and `tcp`.
    pub fn transport(&self, framing: StreamFraming) -> TransportKind {
        match self.socket_type.as_str() {
            "" | UNIXPACKET => TransportKind::Packet,
            _ => TransportKind::Stream(framing),
        }
    }

    /// The largest frame of this entry (`buffersize`; Go's default when
    /// unset).
    pub fn max_frame_len(&self) -> usize {
        if self.buffer_size == 0 {
            crate::DEFAULT_BUFFER_SIZE
        } else {
            self.buffer_size
        }
    }

    /// The session of a client entry, as Go's client runs it: the entry's
    /// module, the transport of its socket type, its frame limit.
    pub fn client_session(&self, framing: StreamFraming) -> SessionConfig {
        SessionConfig::client(self.module.clone(), self.transport(framing)).max_frame_len(self.max_frame_len())
    }
}

/// The whole file: a list of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketModuleConfig {
    /// The entries, in file order.
    pub entries: Vec<SocketConfig>,
}

#[cfg(feature = "yaml")]
fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    // Go: the last matching key wins.
    obj.iter().filter(|(k, _)| beehive_model::json::key_matches(k, name)).map(|(_, v)| v).next_back()
}

#[cfg(feature = "yaml")]
fn text(obj: &serde_json::Map<String, Value>, name: &str, at: usize) -> Result<String, String> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("entry {at}: {name} must be a string, found {other}")),
    }
}

#[cfg(feature = "yaml")]
fn number(obj: &serde_json::Map<String, Value>, name: &str, at: usize) -> Result<usize, String> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| format!("entry {at}: {name} must be a non-negative integer, found {n}")),
        Some(other) => Err(format!("entry {at}: {name} must be a number, found {other}")),
    }
}

impl SocketModuleConfig {
    #[cfg(feature = "yaml")]
    /// Parses the YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, Path::new("<string>"))
    }

    #[cfg(feature = "yaml")]
    fn parse(yaml: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_owned(), message };
        let doc: Value = serde_saphyr::from_str(yaml).map_err(|e| invalid(e.to_string()))?;
        let list = match doc {
            Value::Null => return Ok(SocketModuleConfig::default()),
            Value::Array(list) => list,
            other => return Err(invalid(format!("expected a list of entries, found {other}"))),
        };
        let mut entries = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let Value::Object(obj) = item else {
                return Err(invalid(format!("entry {i} is not a mapping")));
            };
            let server = match field(obj, "server") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => return Err(invalid(format!("entry {i}: server must be true or false, found {other}"))),
            };
            let mut socket_type = text(obj, "sockettype", i).map_err(invalid)?;
            if socket_type.is_empty() {
                socket_type = UNIXPACKET.to_owned();
            }
            entries.push(SocketConfig {
                module: text(obj, "module", i).map_err(invalid)?,
                server,
                address: text(obj, "address", i).map_err(invalid)?,
                socket_type,
                conn_max: number(obj, "connmax", i).map_err(invalid)?,
                buffer_size: number(obj, "buffersize", i).map_err(invalid)?,
                ca: text(obj, "ca", i).map_err(invalid)?,
                cert: text(obj, "cert", i).map_err(invalid)?,
                key: text(obj, "key", i).map_err(invalid)?,
            });
        }
        Ok(SocketModuleConfig { entries })
    }

    #[cfg(feature = "yaml")]
    /// Reads the file at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    #[cfg(feature = "yaml")]
    /// Reads the file named by `SOCKET_MODULE_CONFIG`, else the default path.
    pub fn load() -> Result<Self, ConfigError> {
        match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => Self::from_path(PathBuf::from(p)),
            _ => Self::from_path(DEFAULT_CONFIG_PATH),
        }
    }

    /// The client entry of `module` (Go `GetClientSocketConfig`).
    pub fn client(&self, module: &str) -> Option<&SocketConfig> {
        self.entries.iter().find(|e| !e.server && e.module == module)
    }

    /// The server entries (Go `GetServerSocketConfig`).
    pub fn servers(&self) -> impl Iterator<Item = &SocketConfig> {
        self.entries.iter().filter(|e| e.server)
    }

    /// The session of server entry `entry`, as Go's server runs it: the
    /// entry's module, the transport of its socket type, its frame limit,
    /// and only modules with a client entry allowed to register.
    pub fn server_session(&self, entry: &SocketConfig, framing: StreamFraming) -> SessionConfig {
        let mut session =
            SessionConfig::server(entry.module.clone(), entry.transport(framing)).max_frame_len(entry.max_frame_len());
        // Without client entries nobody may register (as in Go).
        session.allowed.get_or_insert_with(Default::default);
        for client in self.entries.iter().filter(|e| !e.server) {
            session = session.allow_module(client.module.clone());
        }
        session
    }

    /// True when `module` may connect as a remote module (Go
    /// `IsModuleEnabled`: it has a client entry).
    pub fn is_remote_module(&self, module: &str) -> bool {
        self.client(module).is_some()
    }
}

#[cfg(all(test, feature = "yaml"))]
mod tests {
    use super::*;

    #[test]
    fn reads_go_style_entries_case_insensitively() {
        let cfg = SocketModuleConfig::from_yaml(
            "- module: socketserver\n  Server: true\n  ADDRESS: /tmp/s.sock\n  connmax: 4\n  buffersize: 4096\n  extra: 1\n- module: edgeclient\n  address: /tmp/s.sock\n  sockettype: unixpacket\n",
        )
        .unwrap();
        let server = cfg.servers().next().unwrap();
        assert_eq!(
            (server.module.as_str(), server.address.as_str(), server.conn_max, server.buffer_size),
            ("socketserver", "/tmp/s.sock", 4, 4096)
        );
        assert_eq!(server.socket_type, UNIXPACKET);
        assert!(cfg.is_remote_module("edgeclient"));
        assert!(!cfg.is_remote_module("socketserver"));
    }

    /// Registers `module` with a session of `config`; true when accepted.
    fn registers(config: SessionConfig, module: &str) -> bool {
        use crate::session::{Session, SessionConfig as C};
        let now = std::time::Instant::now();
        let mut server = Session::new(config, now);
        let mut client = Session::new(C::client(module, TransportKind::Packet), now);
        while let Some(t) = client.poll_transmit() {
            server.handle_packet(&t.frame, now);
        }
        server.is_connected()
    }

    #[test]
    fn entries_give_the_sessions_go_runs() {
        let cfg = SocketModuleConfig::from_yaml(
            "- module: hub
  server: true
  address: /tmp/s.sock
  buffersize: 4096
- module: edge
  address: /tmp/s.sock
- module: tcpclient
  address: 127.0.0.1:1
  sockettype: tcp
",
        )
        .unwrap();
        let server = cfg.servers().next().unwrap();
        let session = cfg.server_session(server, StreamFraming::Package);
        assert_eq!(session.get_transport(), TransportKind::Packet);
        assert_eq!(session.get_max_frame_len(), 4096);
        assert!(registers(session.clone(), "edge"));
        assert!(registers(session, "tcpclient"));
        assert!(!registers(cfg.server_session(server, StreamFraming::Raw), "stranger"));
        let edge = cfg.client("edge").unwrap().client_session(StreamFraming::Raw);
        assert_eq!(edge.get_max_frame_len(), crate::DEFAULT_BUFFER_SIZE);
        assert_eq!(crate::DEFAULT_BUFFER_SIZE, 65_536, "the documented default");
        let tcp = cfg.client("tcpclient").unwrap();
        assert_eq!(tcp.transport(StreamFraming::Package), TransportKind::Stream(StreamFraming::Package));
        // Without client entries nobody registers, as with Go.
        let alone = SocketModuleConfig::from_yaml("- module: hub\n  server: true\n  address: /tmp/s.sock\n").unwrap();
        assert!(!registers(alone.server_session(alone.servers().next().unwrap(), StreamFraming::Raw), "edge"));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        for bad in ["module: x", "- module: [1]", "- server: maybe", "- connmax: -1", "- [a"] {
            let e = SocketModuleConfig::from_yaml(bad).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid { .. }), "{bad}: {e}");
        }
        assert!(matches!(SocketModuleConfig::from_path("/nonexistent/x.yaml"), Err(ConfigError::Io { .. })));
        assert_eq!(SocketModuleConfig::from_yaml("").unwrap().entries.len(), 0);
    }
}
