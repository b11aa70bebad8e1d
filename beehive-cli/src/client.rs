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
    /// What the user should know about the choice of entry.
    warning: Option<String>,
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
            warning: None,
        });
    }
    let Some(server) = config.servers().next() else {
        bail!("{file} has no client entry (server: false) for module {module:?} and no server entry (server: true) to connect to");
    };
    // Client entries for other modules: a server reading this file lets in
    // only those.
    let warning = config.entries.iter().any(|e| !e.server).then(|| {
        format!(
            "{file} has no client entry for module {module:?}: connecting to its server entry {:?}; a server reading \
             this file refuses modules without a client entry",
            server.module
        )
    });
    let server_tls = !server.cert.is_empty() || !server.key.is_empty();
    let entry = SocketConfig { ca: String::new(), cert: String::new(), key: String::new(), ..server.clone() };
    Ok(FileEntry { entry, what: format!("server entry {:?} in {file}", server.module), server_tls, warning })
}

impl Target {
    /// The connection `args` describe: `--config`'s entry (if any) with
    /// the flags given on the command line over it.
    pub fn resolve(args: &ConnectArgs) -> anyhow::Result<Target> {
        let (entry, what) = settings(args)?;
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

/// The entry `args` describe, checked, and where it came from (for
/// messages): `--config`'s entry (if any) with the flags given on the
/// command line over it. Warns about the choice of entry when it should.
fn settings(args: &ConnectArgs) -> anyhow::Result<(SocketConfig, String)> {
    let file = args.config.as_deref().map(|path| file_entry(path, &args.module)).transpose()?;
    if let Some(warning) = file.as_ref().and_then(|f| f.warning.as_deref()) {
        crate::listen::warn(warning);
    }
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
    let what = what.to_owned();
    Ok((entry, what))
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

    fn args(module: &str) -> ConnectArgs {
        ConnectArgs {
            socket: None,
            tcp: None,
            config: None,
            module: module.to_owned(),
            transport: None,
            framing: EncodeFraming::Raw,
            ca: None,
            cert: None,
            key: None,
        }
    }

    fn yaml(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const SERVER_TLS: &str = "- module: hub\n  server: true\n  address: 127.0.0.1:7001\n  sockettype: tcp\n  \
                              ca: /srv/ca.pem\n  cert: /srv/cert.pem\n  key: /srv/key.pem\n";

    #[test]
    fn a_client_entry_is_used_as_it_is_and_without_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let both = yaml(
            &dir,
            "both.yaml",
            &format!("{SERVER_TLS}- module: cli\n  server: false\n  address: 127.0.0.1:7001\n  ca: /cli/ca.pem\n"),
        );
        let f = file_entry(&both, "cli").unwrap();
        assert_eq!((f.entry.module.as_str(), f.entry.ca.as_str()), ("cli", "/cli/ca.pem"));
        assert!(!f.server_tls && f.warning.is_none());
        assert!(f.what.starts_with("client entry \"cli\" in "), "{}", f.what);
    }

    #[test]
    fn a_server_entry_is_used_without_its_own_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let server_only = yaml(&dir, "server.yaml", SERVER_TLS);
        let f = file_entry(&server_only, "cli").unwrap();
        assert_eq!((f.entry.address.as_str(), f.entry.socket_type.as_str()), ("127.0.0.1:7001", "tcp"));
        assert_eq!((f.entry.ca.as_str(), f.entry.cert.as_str(), f.entry.key.as_str()), ("", "", ""));
        assert!(f.server_tls);
        assert!(f.warning.is_none(), "only a server entry: nothing to warn about");
        assert!(f.what.starts_with("server entry \"hub\" in "), "{}", f.what);
        // Either of cert and key says the server speaks TLS.
        for (line, tls) in [("  cert: /c.pem\n", true), ("  key: /k.pem\n", true), ("  ca: /ca.pem\n", false)] {
            let path = yaml(&dir, "one.yaml", &format!("- module: hub\n  server: true\n  address: /s.sock\n{line}"));
            assert_eq!(file_entry(&path, "cli").unwrap().server_tls, tls, "{line}");
        }
    }

    #[test]
    fn client_entries_of_other_modules_make_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let others = yaml(
            &dir,
            "others.yaml",
            "- module: someone\n  server: false\n  address: /x.sock\n- module: hub\n  server: true\n  address: /s.sock\n",
        );
        let warning = file_entry(&others, "cli").unwrap().warning.expect("a warning");
        assert!(warning.contains("no client entry for module \"cli\"") && warning.contains("\"hub\""), "{warning}");
    }

    fn settings_err(args: &ConnectArgs) -> String {
        format!("{:#}", settings(args).expect_err("a usage error"))
    }

    #[test]
    fn tls_files_need_tcp_and_the_message_says_where_they_came_from() {
        let mut a = args("cli");
        a.socket = Some("/s.sock".into());
        a.ca = Some("/ca.pem".into());
        assert_eq!(settings_err(&a), "--ca (TLS) needs --transport tcp");
        let mut a = args("cli");
        a.socket = Some("/s.sock".into());
        (a.cert, a.key) = (Some("/c.pem".into()), Some("/k.pem".into()));
        assert_eq!(settings_err(&a), "--ca (TLS) needs --transport tcp");
        let dir = tempfile::tempdir().unwrap();
        for file in ["ca: /ca.pem", "cert: /c.pem", "key: /k.pem"] {
            let path = yaml(&dir, "c.yaml", &format!("- module: cli\n  server: false\n  address: /s.sock\n  {file}\n"));
            let mut a = args("cli");
            a.config = Some(path);
            let err = settings_err(&a);
            assert!(err.starts_with("the client entry \"cli\" in "), "{file}: {err}");
            assert!(
                err.ends_with("has TLS files (ca, cert, key), which need the tcp transport, not unixpacket"),
                "{err}"
            );
        }
        let plain = yaml(&dir, "p.yaml", "- module: cli\n  server: false\n  address: /s.sock\n");
        let mut a = args("cli");
        a.config = Some(plain);
        let (entry, what) = settings(&a).unwrap();
        assert_eq!((entry.address.as_str(), entry.module.as_str(), entry.server), ("/s.sock", "cli", false));
        assert!(what.starts_with("client entry \"cli\" in "), "{what}");
    }

    #[test]
    fn a_tls_server_entry_needs_a_ca_and_lends_no_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args("cli");
        a.config = Some(yaml(&dir, "server.yaml", SERVER_TLS));
        let err = settings_err(&a);
        assert!(err.contains("serves TLS (cert, key)") && err.contains("give --ca"), "{err}");
        a.ca = Some("/mine/ca.pem".into());
        let (entry, _) = settings(&a).unwrap();
        assert_eq!((entry.ca.as_str(), entry.cert.as_str(), entry.key.as_str()), ("/mine/ca.pem", "", ""));
        // Not over tcp, the server's files say nothing about this connection.
        let unix = SERVER_TLS.replace("127.0.0.1:7001", "/s.sock").replace("tcp", "unixpacket");
        let mut a = args("cli");
        a.config = Some(yaml(&dir, "unix.yaml", &unix));
        assert_eq!(settings(&a).unwrap().0.address, "/s.sock");
    }
}
