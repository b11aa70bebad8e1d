//! What `listen` and `send` share: the tokio runtime, connecting as a
//! remote module, and the one-line form of a message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use beehive_model::Message;
use beehive_socket::asyncio::{Client, ClientHandle, DriverError, DriverOptions, Endpoint, Tls};
use beehive_socket::session::SessionConfig;
use beehive_socket::{SocketConfig, SocketModuleConfig, StreamFraming};

use crate::cli::{ConnectArgs, EncodeFraming};

/// How long the last queued messages may take to be written before the
/// connection closes anyway.
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The most characters of content shown in a line.
const PREVIEW_CHARS: usize = 60;

/// A small runtime for one connection.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves once `timeout` has passed from now; never without one.
pub async fn ends_after(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// Where and how `listen` and `send` connect: the flags, merged over
/// `--config`'s entry, checked once before the first connection.
#[derive(Debug, Clone)]
pub struct Target {
    /// The module the connection registers as.
    pub module: String,
    /// The address, as given (a path or HOST:PORT).
    pub address: String,
    /// The socket to connect to.
    pub endpoint: Endpoint,
    /// The client session: module, transport, largest frame.
    pub session: SessionConfig,
    /// TLS over tcp.
    pub tls: Option<Tls>,
}

/// The entry of `--config` a connection uses, and how to name it.
struct FileEntry {
    entry: SocketConfig,
    /// `client entry "probe" in FILE`.
    what: String,
    /// The server entry serves TLS: its files are its own, not ours.
    server_tls: bool,
}

/// The client entry of `module` in the file, else its first server entry
/// (Go's client entries carry the server's address).
fn file_entry(path: &Path, module: &str) -> anyhow::Result<FileEntry> {
    let config = SocketModuleConfig::from_path(path)?;
    let file = path.display();
    if let Some(entry) = config.client(module) {
        return Ok(FileEntry {
            entry: entry.clone(),
            what: format!("client entry {module:?} in {file}"),
            server_tls: false,
        });
    }
    let Some(server) = config.servers().next() else {
        bail!("{file} has no client entry (server: false) for module {module:?} and no server entry (server: true) to connect to");
    };
    if config.entries.iter().any(|e| !e.server) {
        crate::listen::warn(&format!(
            "{file} has no client entry for module {module:?}: connecting to its server entry {:?}; a server reading \
             this file refuses modules without a client entry",
            server.module
        ));
    }
    let server_tls = !server.cert.is_empty() || !server.key.is_empty();
    let entry = SocketConfig { ca: String::new(), cert: String::new(), key: String::new(), ..server.clone() };
    Ok(FileEntry { entry, what: format!("server entry {:?} in {file}", server.module), server_tls })
}

impl Target {
    /// The connection `args` describe: `--config`'s entry (if any) with
    /// the flags given on the command line over it.
    pub fn resolve(args: &ConnectArgs) -> anyhow::Result<Target> {
        let file = args.config.as_deref().map(|path| file_entry(path, &args.module)).transpose()?;
        let mut entry = match &file {
            Some(f) => f.entry.clone(),
            None => SocketConfig { socket_type: beehive_socket::UNIXPACKET.to_owned(), ..SocketConfig::default() },
        };
        entry.module = args.module.clone();
        entry.server = false;
        if let Some(address) = &args.tcp {
            entry.address = address.clone();
            entry.socket_type = beehive_socket::TCP.to_owned();
        }
        if let Some(socket) = &args.socket {
            entry.address = socket.clone();
        }
        if let Some(transport) = args.transport {
            entry.socket_type = transport.name().to_owned();
        }
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(ca) = &args.ca {
            entry.ca = path(ca);
        }
        if let Some(cert) = &args.cert {
            entry.cert = path(cert);
        }
        if let Some(key) = &args.key {
            entry.key = path(key);
        }
        // Usage errors name where a setting came from.
        let what = file.as_ref().map_or("the command line", |f| f.what.as_str());
        if entry.address.is_empty() {
            bail!("the {what} has no address: give --socket or --tcp");
        }
        let kind = entry.socket_type.as_str();
        if ![beehive_socket::UNIXPACKET, beehive_socket::UNIX, beehive_socket::TCP].contains(&kind) {
            bail!("the {what} has sockettype {kind:?}: unixpacket, unix or tcp (or give --transport)");
        }
        let flags_tls = args.ca.is_some() || args.cert.is_some();
        let tls_files = !entry.ca.is_empty() || !entry.cert.is_empty() || !entry.key.is_empty();
        if tls_files && kind != beehive_socket::TCP {
            if flags_tls {
                bail!("--ca (TLS) needs --transport tcp");
            }
            bail!("the {what} has TLS files (ca, cert, key), which need the tcp transport, not {kind}");
        }
        if entry.cert.is_empty() != entry.key.is_empty() {
            bail!("the {what} has only one of cert and key: a client certificate needs both");
        }
        if !entry.cert.is_empty() && entry.ca.is_empty() {
            bail!("a client certificate (cert, key) needs a CA to verify the server: give --ca");
        }
        if let Some(f) = file.as_ref().filter(|f| f.server_tls && entry.ca.is_empty() && kind == beehive_socket::TCP) {
            bail!(
                "the {} serves TLS (cert, key) and the file has no client entry for module {:?}: give --ca (the \
                 CA that verifies the server)",
                f.what,
                args.module
            );
        }
        let endpoint = Endpoint::from_config(&entry).with_context(|| format!("the settings of the {what}"))?;
        let tls = Tls::from_config(&entry).context("bad TLS settings")?;
        let framing = match args.framing {
            EncodeFraming::Raw => StreamFraming::Raw,
            EncodeFraming::Package => StreamFraming::Package,
        };
        Ok(Target {
            module: args.module.clone(),
            address: entry.address.clone(),
            endpoint,
            session: entry.client_session(framing),
            tls,
        })
    }
}

/// Connects as the target's module and completes the handshake within `timeout`.
pub async fn connect(target: &Target, timeout: Option<Duration>) -> anyhow::Result<(Endpoint, Client)> {
    let endpoint = target.endpoint.clone();
    let mut config = target.session.clone();
    if let Some(t) = timeout {
        config = config.handshake_timeout(t);
    }
    let options = DriverOptions::default().tls(target.tls.clone());
    match Client::connect_with(&endpoint, config, options).await {
        Ok(client) => Ok((endpoint, client)),
        Err(DriverError::Io(e)) => Err(e).with_context(|| format!("cannot connect to {} ({endpoint})", target.address)),
        Err(e) => Err(e).with_context(|| format!("cannot join {} as module {:?}", target.address, target.module)),
    }
}

/// Waits (up to [`FLUSH_WAIT`]) until every queued message is written,
/// then closes the connection; says so when some could not be written.
pub async fn flush_and_close(handle: &ClientHandle) {
    if let Err(e) = handle.flush(FLUSH_WAIT).await {
        crate::listen::warn(&format!("queued messages may not all be written: {e}"));
    }
    handle.close();
}

/// `srvmod [srvgroup], socketserver [socketserver]`: the modules reached
/// through the connection, ours left out.
pub fn modules_text(handle: &ClientHandle, ours: &str) -> String {
    let mut text = String::new();
    for (module, groups) in handle.modules() {
        if module == ours {
            continue;
        }
        if !text.is_empty() {
            text.push_str(", ");
        }
        let _ = write!(text, "{module} [{}]", groups.join(" "));
    }
    if text.is_empty() {
        text.push_str("none");
    }
    text
}

/// `SOURCE → DESTINATION OPERATION RESOURCE SIZE CONTENT`, with `sync`
/// after the size for a sync request.
pub fn summary(msg: &Message) -> String {
    let data = msg.content_data().unwrap_or_default();
    let text = String::from_utf8_lossy(&data);
    let mut preview: String = text.chars().take(PREVIEW_CHARS).collect();
    let cut = text.chars().nth(PREVIEW_CHARS).is_some();
    preview = format!("{preview:?}");
    if cut {
        preview.push('…');
    }
    format!(
        "{} → {} {} {} {}B{} {preview}",
        or_dash(msg.source()),
        or_dash(msg.destination()),
        or_dash(msg.operation()),
        or_dash(msg.resource()),
        data.len(),
        if msg.is_sync() { " sync" } else { "" },
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// One line for an arriving message, flushed: Go's JSON of it with `json`,
/// else the time of day and its [`summary`].
pub fn print_message(out: &mut impl std::io::Write, msg: &Message, json: bool) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", self::json(msg)?)?;
    } else {
        writeln!(out, "{} {}", clock(), summary(msg))?;
    }
    out.flush()?;
    Ok(())
}

/// Go's JSON of `msg` as text.
pub fn json(msg: &Message) -> anyhow::Result<String> {
    let bytes = beehive_model::to_vec(msg).context("cannot write the message as JSON")?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `12:34:56.789`: the time of day now, UTC.
pub fn clock() -> String {
    clock_at(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// [`clock`] at `d` after the Unix epoch.
fn clock_at(d: Duration) -> String {
    let s = d.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_the_time_of_day_in_utc() {
        // 2026-11-28 17:07:05.042 UTC.
        let d = Duration::from_millis(1_795_885_625_042);
        assert_eq!(clock_at(d), "17:07:05.042");
        assert_eq!(clock_at(Duration::from_millis(86_399_999)), "23:59:59.999");
        assert_eq!(clock_at(Duration::ZERO), "00:00:00.000");
    }
}
