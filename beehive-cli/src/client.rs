//! What `listen` and `send` share: the tokio runtime, connecting as a
//! remote module, and the one-line form of a message.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use beehive_model::Message;
use beehive_socket::asyncio::{Client, ClientHandle, DriverError, DriverOptions, Endpoint, Tls};
use beehive_socket::session::SessionConfig;
use beehive_socket::{SocketConfig, StreamFraming};

use crate::cli::{ConnectArgs, EncodeFraming, RecordTransport};

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

/// The endpoint `--socket` names for `--transport`.
pub fn endpoint(args: &ConnectArgs) -> Endpoint {
    match args.transport {
        RecordTransport::Unixpacket => Endpoint::unix_packet(&args.socket),
        RecordTransport::Unix => Endpoint::unix(&args.socket),
        RecordTransport::Tcp => Endpoint::tcp(args.socket.clone()),
    }
}

/// Connects as `--module` and completes the handshake within `timeout`.
pub async fn connect(args: &ConnectArgs, timeout: Option<Duration>) -> anyhow::Result<(Endpoint, Client)> {
    let endpoint = endpoint(args);
    let framing = match args.framing {
        EncodeFraming::Raw => StreamFraming::Raw,
        EncodeFraming::Package => StreamFraming::Package,
    };
    let mut config = SessionConfig::client(args.module.clone(), endpoint.transport(framing));
    if let Some(t) = timeout {
        config = config.handshake_timeout(t);
    }
    let options = DriverOptions::default().tls(tls(args)?);
    match Client::connect_with(&endpoint, config, options).await {
        Ok(client) => Ok((endpoint, client)),
        Err(DriverError::Io(e)) => Err(e).with_context(|| format!("cannot connect to {} ({endpoint})", args.socket)),
        Err(e) => Err(e).with_context(|| format!("cannot join {} as module {:?}", args.socket, args.module)),
    }
}

/// The TLS settings of `--ca`, `--cert`, `--key` (TLS over tcp only).
fn tls(args: &ConnectArgs) -> anyhow::Result<Option<Tls>> {
    let Some(ca) = &args.ca else { return Ok(None) };
    if args.transport != RecordTransport::Tcp {
        anyhow::bail!("--ca (TLS) needs --transport tcp");
    }
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let entry = SocketConfig {
        module: args.module.clone(),
        address: args.socket.clone(),
        socket_type: beehive_socket::TCP.to_owned(),
        ca: ca.display().to_string(),
        cert: path(&args.cert),
        key: path(&args.key),
        ..SocketConfig::default()
    };
    Tls::from_config(&entry).context("bad TLS settings")
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
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}
