//! `beehive record`: a transparent relay between clients and their server
//! that writes everything it forwards to a capture set.
//!
//! Blocking threads, not an async runtime: each connection has one thread
//! per direction, blocked in a read on its source and a write on its
//! destination, so a slow peer stalls only its own direction. A packet is
//! forwarded first and written to the recording afterwards, so recording
//! adds nothing to the relay's hop but a timestamp. Beehive peers keep a
//! few long-lived connections (Go's default `connmax` is 4), for which two
//! threads each cost less than an executor's wake-ups would.
//!
//! The recording (`recorded/conn-NNNNNN.jsonl`, `recorded/index.jsonl`,
//! `MANIFEST.json`) is described in the `record` help text and in
//! conformance/CAPTURES.md.
//!
//! What is relayed is also counted through the `metrics` facade
//! ([`RecordMetrics`]), served by `--metrics`; without it every update is a
//! no-op.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal as _, Read as _, Write};
use std::net::{Shutdown, ToSocketAddrs as _};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use metrics::{Counter, Gauge};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::MsgFlags;
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::cli::{RecordArgs, RecordTransport};
use crate::{observe, style, EXIT_FINDINGS, EXIT_OK};

/// Bytes asked for per read on a stream socket.
const STREAM_READ: usize = 64 * 1024;
/// How often the progress line is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// How often buffered recording lines are written out while recording.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The first pause of accepting after a failed accept (out of descriptors,
/// say); it doubles on every further failure, up to [`MAX_ACCEPT_BACKOFF`].
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// The longest pause of accepting after failures.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The figures of a recording, registered once when it starts.
struct RecordMetrics {
    connections: Counter,
    open: Gauge,
    failures: Counter,
    /// Per [`Dir`].
    packets: [Counter; 2],
    /// Per [`Dir`].
    bytes: [Counter; 2],
}

impl RecordMetrics {
    fn new() -> Self {
        metrics::describe_counter!("beehive_record_connections_total", "Connections accepted by beehive record");
        metrics::describe_gauge!("beehive_record_connections_open", "Connections beehive record is relaying now");
        metrics::describe_counter!(
            "beehive_record_relay_failures_total",
            "Connections beehive record could not relay completely (upstream unreachable, a packet over --max-packet)"
        );
        metrics::describe_counter!(
            "beehive_record_packets_total",
            "Packets (unixpacket) or reads (unix, tcp) relayed and recorded, by direction"
        );
        metrics::describe_counter!(
            "beehive_record_bytes_total",
            metrics::Unit::Bytes,
            "Bytes relayed and recorded, by direction"
        );
        let per_dir = |name: &'static str| {
            [Dir::ClientToServer, Dir::ServerToClient].map(|d| metrics::counter!(name, "direction" => d.name()))
        };
        RecordMetrics {
            connections: metrics::counter!("beehive_record_connections_total"),
            open: metrics::gauge!("beehive_record_connections_open"),
            failures: metrics::counter!("beehive_record_relay_failures_total"),
            packets: per_dir("beehive_record_packets_total"),
            bytes: per_dir("beehive_record_bytes_total"),
        }
    }
}

/// A direction of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ClientToServer = 0,
    ServerToClient = 1,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::ClientToServer => "client_to_server",
            Dir::ServerToClient => "server_to_client",
        }
    }

    fn sender(self) -> &'static str {
        match self {
            Dir::ClientToServer => "client",
            Dir::ServerToClient => "server",
        }
    }
}

/// Why a direction stopped relaying.
enum End {
    /// The sender closed its side (or, on unixpacket, sent an empty packet,
    /// which reads the same).
    Eof,
    /// A read or write failed: the peer reset the connection, say, or the
    /// relay shut the sockets down.
    Failed(String),
    /// The relay could not forward something unchanged.
    Relay(String),
}

/// What one direction relayed.
#[derive(Debug, Default, Serialize)]
struct DirStats {
    lines: u64,
    bytes: u64,
    /// How the direction ended; empty while it runs.
    end: String,
}

/// The recording file of one connection and its counts.
struct Log {
    out: Option<BufWriter<File>>,
    line: String,
    seq: u64,
    dirs: [DirStats; 2],
    error: Option<String>,
    closed_ns: Option<u64>,
    write_error: Option<io::Error>,
}

/// One relayed connection.
struct Conn {
    id: u64,
    opened_ns: u64,
    sockets: Mutex<Sockets>,
    log: Mutex<Log>,
}

/// The sockets of a connection, for shutting them down, and why they were.
#[derive(Default)]
struct Sockets {
    /// Shared with the relay's threads; released when the connection closes.
    list: Vec<Arc<Socket>>,
    /// The relay shut the connection down (a direction failed, or the
    /// recording is ending): a socket added now is shut down at once.
    shut: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    fn file_name(id: u64) -> String {
        format!("conn-{id:06}.jsonl")
    }

    /// Keeps `socket` for [`Conn::shut_down`].
    fn add_socket(&self, socket: &Arc<Socket>) {
        let mut sockets = lock(&self.sockets);
        if sockets.shut {
            let _ = socket.shutdown(Shutdown::Both);
        }
        sockets.list.push(socket.clone());
    }

    /// Shuts every socket down, which ends both directions' blocking calls.
    fn shut_down(&self) {
        let mut sockets = lock(&self.sockets);
        sockets.shut = true;
        for s in &sockets.list {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Writes the line of one packet or read.
    fn record(&self, rec: &Recorder, dir: Dir, t_ns: u64, data: &[u8]) {
        let mut log = lock(&self.log);
        let log = &mut *log;
        log.seq += 1;
        let stats = &mut log.dirs[dir as usize];
        stats.lines += 1;
        stats.bytes += data.len() as u64;
        let line = &mut log.line;
        line.clear();
        let mut n = itoa::Buffer::new();
        line.push_str("{\"conn\":");
        line.push_str(n.format(self.id));
        line.push_str(",\"seq\":");
        line.push_str(n.format(log.seq));
        line.push_str(",\"dir\":\"");
        line.push_str(dir.name());
        line.push_str("\",\"t_ns\":");
        line.push_str(n.format(t_ns));
        line.push_str(",\"transport\":\"");
        line.push_str(rec.transport.name());
        line.push_str("\",\"len\":");
        line.push_str(n.format(data.len()));
        line.push_str(",\"data_b64\":\"");
        base64::engine::general_purpose::STANDARD.encode_string(data, line);
        line.push_str("\"}\n");
        if let Some(out) = &mut log.out {
            if let Err(e) = out.write_all(line.as_bytes()) {
                log.write_error.get_or_insert(e);
                log.out = None;
            }
        }
        rec.lines.fetch_add(1, Ordering::Relaxed);
        rec.metrics.packets[dir as usize].increment(1);
        rec.metrics.bytes[dir as usize].increment(data.len() as u64);
    }

    fn end(&self, dir: Dir, how: String) {
        lock(&self.log).dirs[dir as usize].end = how;
    }

    fn fail(&self, error: String) {
        lock(&self.log).error.get_or_insert(error);
    }

    fn flush(&self) {
        let mut log = lock(&self.log);
        if let Some(Err(e)) = log.out.as_mut().map(|o| o.flush()) {
            log.write_error.get_or_insert(e);
            log.out = None;
        }
    }

    /// Gives up on relaying the connection: says why, closes the client and
    /// the connection.
    fn not_relayed(&self, rec: &Recorder, error: String) {
        note(&format!("connection {}: {error}", self.id));
        self.fail(error);
        self.end(Dir::ClientToServer, "not relayed".into());
        self.end(Dir::ServerToClient, "not relayed".into());
        self.shut_down();
        self.close(rec);
    }

    /// Flushes and closes the file, and lets go of the sockets; the
    /// connection is over.
    fn close(&self, rec: &Recorder) {
        lock(&self.sockets).list.clear();
        let mut log = lock(&self.log);
        if let Some(Err(e)) = log.out.take().map(|mut o| o.flush()) {
            log.write_error.get_or_insert(e);
        }
        log.closed_ns = Some(rec.now_ns());
        rec.open.fetch_sub(1, Ordering::Relaxed);
        rec.metrics.open.decrement(1);
        if log.error.is_some() {
            rec.metrics.failures.increment(1);
        }
        tracing::info!(
            conn = self.id,
            lines = log.seq,
            client_to_server_bytes = log.dirs[Dir::ClientToServer as usize].bytes,
            server_to_client_bytes = log.dirs[Dir::ServerToClient as usize].bytes,
            error = log.error.as_deref(),
            "connection closed"
        );
    }
}

/// What every connection shares.
struct Recorder {
    started: Instant,
    transport: RecordTransport,
    max_packet: usize,
    connect_timeout: Duration,
    stopping: AtomicBool,
    conns: Mutex<Vec<Arc<Conn>>>,
    lines: AtomicU64,
    open: AtomicU64,
    /// Connections closed as soon as accepted, with nothing recorded: their
    /// recording file could not be created.
    unrecorded: AtomicU64,
    metrics: RecordMetrics,
}

impl Recorder {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn conns(&self) -> Vec<Arc<Conn>> {
        lock(&self.conns).clone()
    }

    fn flush_all(&self) {
        for c in self.conns() {
            c.flush();
        }
    }
}

/// Runs `record` until Ctrl-C, SIGTERM or `--duration`.
pub fn run(args: &RecordArgs) -> anyhow::Result<u8> {
    let recorded = prepare_out(&args.out)?;
    let upstream = resolve(args.transport, &args.upstream).context("bad --upstream")?;
    let (listener, shown) = listen(args).context("cannot listen")?;
    // A remove-on-exit guard for the socket file.
    let _socket_file = SocketFile((args.transport != RecordTransport::Tcp).then(|| PathBuf::from(&args.listen)));
    // The recorder goes in before the figures register with it.
    observe::start_metrics(args.metrics)?;

    // Signals and the end of the accept loop meet in one socket pair.
    let (wake_rx, wake_tx) = UnixStream::pair().context("cannot create the signal pipe")?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(sig, wake_tx.try_clone()?).context("cannot handle signals")?;
    }

    let rec = Arc::new(Recorder {
        started: Instant::now(),
        transport: args.transport,
        max_packet: args.max_packet as usize,
        connect_timeout: args.connect_timeout,
        stopping: AtomicBool::new(false),
        conns: Mutex::new(Vec::new()),
        lines: AtomicU64::new(0),
        open: AtomicU64::new(0),
        unrecorded: AtomicU64::new(0),
        metrics: RecordMetrics::new(),
    });
    let started_wall = SystemTime::now();
    note(&format!(
        "recording {} ({}) → {} into {}; Ctrl-C ends the recording",
        shown,
        args.transport.name(),
        args.upstream,
        args.out.display()
    ));

    let (stop_ticker, ticks) = mpsc::channel::<()>();
    let ticker = {
        let rec = rec.clone();
        let progress = io::stderr().is_terminal();
        thread::spawn(move || tick(&rec, &ticks, progress))
    };

    let mut handles = Vec::new();
    let ended = accept_loop(&rec, &listener, &wake_rx, &upstream, &recorded, args.duration, &mut handles);

    // From here a second Ctrl-C stops at once.
    let now = Arc::new(AtomicBool::new(true));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_default(sig, now.clone());
    }
    drop(listener);
    rec.stopping.store(true, Ordering::SeqCst);
    for c in rec.conns() {
        c.shut_down();
    }
    for h in handles {
        let _ = h.join();
    }
    drop(stop_ticker);
    let _ = ticker.join();
    let duration_ns = rec.now_ns();

    let ended = ended?;
    let conns = rec.conns();
    let (failed, lines) = write_index(&recorded, args.transport.name(), &conns)?;
    write_manifest(&args.out, args, &shown, started_wall, duration_ns, &conns)?;
    let what = if args.transport == RecordTransport::Unixpacket { "packet" } else { "read" };
    let unrecorded = rec.unrecorded.load(Ordering::Relaxed);
    let text = format!(
        "beehive: {ended}: recorded {} {}, {lines} {what}{} into {}{}{}",
        conns.len(),
        if conns.len() == 1 { "connection" } else { "connections" },
        if lines == 1 { "" } else { "s" },
        args.out.display(),
        if failed > 0 {
            format!("; {failed} could not be relayed completely (see recorded/index.jsonl)")
        } else {
            String::new()
        },
        match unrecorded {
            0 => String::new(),
            n => format!("; {n} closed unrecorded (their recording file could not be created)"),
        },
    );
    let clean = failed == 0 && unrecorded == 0;
    let color = style::stderr_colored();
    let mut err = io::stderr().lock();
    let _ = style::paint(&mut err, color, if clean { style::DIM } else { style::ERROR }, &text);
    let _ = writeln!(err);
    Ok(if clean { EXIT_OK } else { EXIT_FINDINGS })
}

/// `beehive: TEXT` on stderr; a closed stderr does not stop the recording.
fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "beehive: {text}");
}

/// Removes the listening socket file when the recording ends.
struct SocketFile(Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// Accepts connections until a signal or the deadline; returns why it stopped.
fn accept_loop(
    rec: &Arc<Recorder>,
    listener: &Socket,
    wake: &UnixStream,
    upstream: &SockAddr,
    recorded: &Path,
    duration: Option<Duration>,
    handles: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<&'static str> {
    let deadline = duration.map(|d| rec.started + d);
    let mut next_id = 1;
    let mut backoff = ACCEPT_BACKOFF;
    // After a failed accept, accepting pauses until then.
    let mut paused: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            return Ok("--duration reached");
        }
        paused = paused.filter(|&p| p > now);
        let timeout = match deadline.into_iter().chain(paused).min() {
            None => PollTimeout::NONE,
            Some(until) => {
                let ms = (until - now).as_micros().div_ceil(1000).min(i32::MAX as u128);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        // While accepting pauses, only the signals are watched.
        let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN), PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let watched = if paused.is_some() { 1 } else { 2 };
        match nix::poll::poll(&mut fds[..watched], timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => bail!("cannot wait for connections: {e}"),
        }
        let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[0]) {
            return Ok("stopped");
        }
        // (Not polled while paused: then not ready.)
        if !ready(&fds[1]) {
            continue;
        }
        loop {
            let failed = match listener.accept() {
                Ok((client, _)) => {
                    let id = next_id;
                    next_id += 1;
                    match start_conn(rec, id, client, upstream, recorded) {
                        Ok(handle) => {
                            handles.extend(handle);
                            backoff = ACCEPT_BACKOFF;
                            continue;
                        }
                        Err(e) => e,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up before it was taken: the next may not.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    tracing::debug!(error = %e, "a client left before it was accepted");
                    continue;
                }
                // Out of descriptors or memory for now.
                Err(e) => format!("accept failed: {e}"),
            };
            note(&format!("{failed}; accepting again in {backoff:?}"));
            paused = Some(Instant::now() + backoff);
            backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            break;
        }
        handles.retain(|h| !h.is_finished());
    }
}

/// Starts relaying an accepted client on a thread of its own. An error
/// (the recording file cannot be created) closes the client unrecorded; a
/// thread that cannot start closes it recorded as not relayed.
fn start_conn(
    rec: &Arc<Recorder>,
    id: u64,
    client: Socket,
    upstream: &SockAddr,
    recorded: &Path,
) -> Result<Option<JoinHandle<()>>, String> {
    let path = recorded.join(Conn::file_name(id));
    let file = match File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            rec.unrecorded.fetch_add(1, Ordering::Relaxed);
            return Err(format!("connection {id} closed unrecorded: cannot create {}: {e}", path.display()));
        }
    };
    let client = Arc::new(client);
    let conn = Arc::new(Conn {
        id,
        opened_ns: rec.now_ns(),
        sockets: Mutex::default(),
        log: Mutex::new(Log {
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            line: String::with_capacity(1024),
            seq: 0,
            dirs: Default::default(),
            error: None,
            closed_ns: None,
            write_error: None,
        }),
    });
    conn.add_socket(&client);
    lock(&rec.conns).push(conn.clone());
    rec.open.fetch_add(1, Ordering::Relaxed);
    rec.metrics.connections.increment(1);
    rec.metrics.open.increment(1);
    tracing::info!(conn = id, "connection accepted");
    let spawned = {
        let (rec, conn, upstream) = (rec.clone(), conn.clone(), upstream.clone());
        thread::Builder::new().name(format!("record-{id}")).spawn(move || serve(&rec, &conn, &client, &upstream))
    };
    match spawned {
        Ok(handle) => Ok(Some(handle)),
        Err(e) => {
            conn.not_relayed(rec, format!("cannot start relaying: {e}"));
            Ok(None)
        }
    }
}

/// Relays one connection: connects upstream, then one thread per direction.
fn serve(rec: &Arc<Recorder>, conn: &Arc<Conn>, client: &Arc<Socket>, upstream: &SockAddr) {
    let _ = client.set_nonblocking(false);
    let up = connect(rec, upstream).and_then(|s| {
        if rec.transport == RecordTransport::Tcp {
            client.set_tcp_nodelay(true)?;
        }
        Ok(Arc::new(s))
    });
    let up = match up {
        Ok(s) => s,
        Err(e) => return conn.not_relayed(rec, format!("cannot connect to the upstream: {e}")),
    };
    conn.add_socket(&up);
    let back = {
        let (rec, conn, src, dst) = (rec.clone(), conn.clone(), up.clone(), client.clone());
        thread::Builder::new()
            .name(format!("record-{}-back", conn.id))
            .spawn(move || pump(&rec, &conn, Dir::ServerToClient, &src, &dst))
    };
    let back = match back {
        Ok(handle) => handle,
        Err(e) => return conn.not_relayed(rec, format!("cannot start relaying: {e}")),
    };
    pump(rec, conn, Dir::ClientToServer, client, &up);
    let _ = back.join();
    conn.close(rec);
}

/// Forwards `src` to `dst` until either side ends, recording every packet or read.
fn pump(rec: &Recorder, conn: &Conn, dir: Dir, src: &Socket, dst: &Socket) {
    let end = match rec.transport {
        RecordTransport::Unixpacket => packets(rec, conn, dir, src, dst),
        RecordTransport::Unix | RecordTransport::Tcp => stream(rec, conn, dir, src, dst),
    };
    let shut = lock(&conn.sockets).shut;
    let stopping = rec.stopping.load(Ordering::SeqCst);
    match end {
        End::Relay(e) => {
            note(&format!("connection {}: {e}", conn.id));
            conn.end(dir, "relay error".into());
            conn.fail(e);
            conn.shut_down();
        }
        // A read or write ended by the shutdown (it may read as an end of
        // the connection): the cause is the shutdown, not the peer.
        _ if stopping => conn.end(dir, "recording ended".into()),
        _ if shut => conn.end(dir, "shut down: the other direction failed".into()),
        End::Eof => {
            // Pass the half-close on; the other direction goes on.
            let _ = dst.shutdown(Shutdown::Write);
            conn.end(dir, format!("closed by the {}", dir.sender()));
        }
        End::Failed(e) => {
            conn.end(dir, e);
            conn.shut_down();
        }
    }
}

/// Unixpacket: one `recv` per packet into a buffer of `--max-packet`
/// bytes; `MSG_TRUNC` makes it return the packet's real length, so a
/// larger packet is detected, never cut.
fn packets(rec: &Recorder, conn: &Conn, dir: Dir, src: &Socket, dst: &Socket) -> End {
    // Zeroed memory comes from the allocator untouched: pages are mapped
    // only as large packets fill them.
    let mut buf = vec![0u8; rec.max_packet];
    loop {
        let n = match nix::sys::socket::recv(src.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
            Ok(0) => return End::Eof,
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return End::Failed(format!("read failed: {}", io::Error::from(e))),
        };
        let t = rec.now_ns();
        if n > buf.len() {
            return End::Relay(format!(
                "a {n}-byte packet from the {} exceeds --max-packet {}; it was not forwarded and the connection \
                 was closed",
                dir.sender(),
                buf.len()
            ));
        }
        if let Err(e) = send_packet(dst, &buf[..n]) {
            return e;
        }
        conn.record(rec, dir, t, &buf[..n]);
    }
}

/// Sends one packet whole; a packet over the socket's send buffer grows the buffer once.
fn send_packet(dst: &Socket, data: &[u8]) -> Result<(), End> {
    let mut grown = false;
    loop {
        match dst.send_with_flags(data, nix::libc::MSG_NOSIGNAL) {
            Ok(n) if n == data.len() => return Ok(()),
            Ok(n) => return Err(End::Relay(format!("only {n} of the {} bytes of a packet were sent", data.len()))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) && !grown => {
                grown = true;
                let _ = dst.set_send_buffer_size(data.len().saturating_mul(2).saturating_add(64 * 1024));
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => {
                return Err(End::Relay(format!(
                    "a {}-byte packet does not fit the send buffer towards its receiver: {e}",
                    data.len()
                )))
            }
            Err(e) => return Err(End::Failed(format!("write failed: {e}"))),
        }
    }
}

/// Streams: each read is forwarded whole, then recorded as one line.
fn stream(rec: &Recorder, conn: &Conn, dir: Dir, src: &Socket, dst: &Socket) -> End {
    let mut buf = vec![0u8; STREAM_READ];
    let mut reader = src;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return End::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return End::Failed(format!("read failed: {e}")),
        };
        let t = rec.now_ns();
        let mut sent = 0;
        while sent < n {
            match dst.send_with_flags(&buf[sent..n], nix::libc::MSG_NOSIGNAL) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // What was read is recorded even when it could not all be forwarded.
                    conn.record(rec, dir, t, &buf[..n]);
                    return End::Failed(format!("write failed after {sent} of {n} bytes: {e}"));
                }
            }
        }
        conn.record(rec, dir, t, &buf[..n]);
    }
}

/// The progress line (on a terminal) and the periodic flush of the files.
fn tick(rec: &Recorder, stop: &mpsc::Receiver<()>, progress: bool) {
    let mut flushed = Instant::now();
    let mut shown = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
        if progress {
            let conns = lock(&rec.conns).len();
            let what = if rec.transport == RecordTransport::Unixpacket { "packets" } else { "reads" };
            let _ = write!(
                io::stderr().lock(),
                "\rbeehive: recording… {conns} connections ({} open), {} {what}\x1b[K",
                rec.open.load(Ordering::Relaxed),
                rec.lines.load(Ordering::Relaxed),
            );
            shown = true;
        }
        if flushed.elapsed() >= FLUSH_EVERY {
            rec.flush_all();
            flushed = Instant::now();
        }
    }
    if shown {
        let _ = write!(io::stderr().lock(), "\r\x1b[K");
    }
}

/// Creates `DIR` and `DIR/recorded`; refuses a directory that already
/// holds a capture set or a recording.
fn prepare_out(out: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for existing in ["MANIFEST.json", "recorded"] {
        if out.join(existing).exists() {
            bail!("{} already holds {existing}; choose an empty or new directory", out.display());
        }
    }
    let recorded = out.join("recorded");
    fs::create_dir(&recorded).with_context(|| format!("cannot create {}", recorded.display()))?;
    Ok(recorded)
}

/// The address of `text` for the transport.
fn resolve(transport: RecordTransport, text: &str) -> anyhow::Result<SockAddr> {
    match transport {
        RecordTransport::Unixpacket | RecordTransport::Unix => {
            Ok(SockAddr::unix(text).with_context(|| format!("{text:?} is not a socket path"))?)
        }
        RecordTransport::Tcp => {
            let addr = text
                .to_socket_addrs()
                .with_context(|| format!("{text:?} is not HOST:PORT"))?
                .next()
                .with_context(|| format!("{text:?} resolves to no address"))?;
            Ok(addr.into())
        }
    }
}

fn socket_type(transport: RecordTransport) -> Type {
    match transport {
        RecordTransport::Unixpacket => Type::SEQPACKET,
        RecordTransport::Unix | RecordTransport::Tcp => Type::STREAM,
    }
}

/// Listens on `--listen`; returns the socket (non-blocking) and the address as shown.
fn listen(args: &RecordArgs) -> anyhow::Result<(Socket, String)> {
    let addr = resolve(args.transport, &args.listen)?;
    let socket = match args.transport {
        RecordTransport::Unixpacket | RecordTransport::Unix => {
            let path = Path::new(&args.listen);
            match fs::symlink_metadata(path) {
                // A stale socket from an earlier run (Go removes it too).
                Ok(m) if m.file_type().is_socket() => {
                    fs::remove_file(path).with_context(|| format!("cannot remove the old socket {}", path.display()))?
                }
                Ok(_) => bail!("{} exists and is not a socket", path.display()),
                Err(_) => {}
            }
            let s = Socket::new(Domain::UNIX, socket_type(args.transport), None)?;
            s.bind(&addr).with_context(|| format!("cannot bind {}", path.display()))?;
            s
        }
        RecordTransport::Tcp => {
            let s = Socket::new(addr.domain(), Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.bind(&addr).with_context(|| format!("cannot bind {}", args.listen))?;
            s
        }
    };
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    let shown = match socket.local_addr().ok().and_then(|a| a.as_socket()) {
        Some(a) => a.to_string(),
        None => args.listen.clone(),
    };
    Ok((socket, shown))
}

/// Connects to the upstream, waiting at most `--connect-timeout`, and
/// giving up within a [`TICK`] when the recording ends.
fn connect(rec: &Recorder, addr: &SockAddr) -> io::Result<Socket> {
    let transport = rec.transport;
    let protocol = (transport == RecordTransport::Tcp).then_some(Protocol::TCP);
    let s = Socket::new(addr.domain(), socket_type(transport), protocol)?;
    let deadline = Instant::now() + rec.connect_timeout;
    // Before each wait: the time it may take, or why it may not go on.
    let next_wait = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if rec.stopping.load(Ordering::SeqCst) {
            Err(io::Error::other("the recording ended"))
        } else if left.is_zero() {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within --connect-timeout {:?}", rec.connect_timeout),
            ))
        } else {
            // A zero socket timeout would mean no timeout.
            Ok(left.min(TICK).max(Duration::from_millis(1)))
        }
    };
    if transport == RecordTransport::Tcp {
        s.set_nonblocking(true)?;
        match s.connect(addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => loop {
                let wait = next_wait()?;
                let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLOUT)];
                let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
                match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(0) | Err(Errno::EINTR) => continue,
                    Ok(_) => break,
                    Err(e) => return Err(e.into()),
                }
            },
            Err(e) => return Err(e),
        }
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        s.set_nonblocking(false)?;
        s.set_tcp_nodelay(true)?;
    } else {
        // A unix connect waits while the server's backlog is full, each
        // attempt for at most the socket's send timeout.
        loop {
            s.set_write_timeout(Some(next_wait()?))?;
            match s.connect(addr) {
                Ok(()) => break,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(e),
            }
        }
        s.set_write_timeout(None)?;
    }
    Ok(s)
}

/// One line of `recorded/index.jsonl`.
#[derive(Serialize)]
struct IndexLine<'a> {
    conn: u64,
    file: String,
    transport: &'static str,
    opened_ns: u64,
    closed_ns: Option<u64>,
    lines: u64,
    client_to_server: &'a DirStats,
    server_to_client: &'a DirStats,
    error: Option<&'a str>,
}

/// Writes `recorded/index.jsonl`; returns how many connections had a relay
/// error and how many lines were recorded in all.
fn write_index(recorded: &Path, transport: &'static str, conns: &[Arc<Conn>]) -> anyhow::Result<(usize, u64)> {
    let path = recorded.join("index.jsonl");
    let mut text = String::new();
    let (mut failed, mut lines) = (0, 0);
    for c in conns {
        let mut log = lock(&c.log);
        if let Some(e) = log.write_error.take() {
            return Err(e).with_context(|| format!("cannot write {}", recorded.join(Conn::file_name(c.id)).display()));
        }
        failed += usize::from(log.error.is_some());
        lines += log.seq;
        let line = IndexLine {
            conn: c.id,
            file: Conn::file_name(c.id),
            transport,
            opened_ns: c.opened_ns,
            closed_ns: log.closed_ns,
            lines: log.seq,
            client_to_server: &log.dirs[0],
            server_to_client: &log.dirs[1],
            error: log.error.as_deref(),
        };
        text.push_str(&serde_json::to_string(&line)?);
        text.push('\n');
    }
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((failed, lines))
}

/// `MANIFEST.json` of the recording.
#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    seed: Option<i64>,
    go_version: Option<&'a str>,
    beehive_source: Option<&'a str>,
    recorder: String,
    transport: &'static str,
    listen: &'a str,
    upstream: &'a str,
    started: String,
    duration_ns: u64,
    counts: BTreeMap<String, u64>,
}

fn write_manifest(
    out: &Path,
    args: &RecordArgs,
    shown: &str,
    started: SystemTime,
    duration_ns: u64,
    conns: &[Arc<Conn>],
) -> anyhow::Result<()> {
    let mut counts = BTreeMap::new();
    counts.insert("recorded/index.jsonl".to_owned(), conns.len() as u64);
    for c in conns {
        counts.insert(format!("recorded/{}", Conn::file_name(c.id)), lock(&c.log).seq);
    }
    let manifest = Manifest {
        format: "beehive-captures/1",
        seed: None,
        go_version: None,
        beehive_source: None,
        recorder: format!("beehive record {}", env!("CARGO_PKG_VERSION")),
        transport: args.transport.name(),
        listen: shown,
        upstream: &args.upstream,
        started: rfc3339(started),
        duration_ns,
        counts,
    };
    let path = out.join("MANIFEST.json");
    fs::write(&path, serde_json::to_string(&manifest)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `2024-05-01T12:34:56.123456789Z`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(946_684_799);
        assert_eq!(rfc3339(t), "1999-12-31T23:59:59.000000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(13_574_606_400);
        assert_eq!(rfc3339(t), "2400-02-29T12:00:00.000000000Z");
    }

    /// Day after day from 1970 to 2500, each date is the one after the
    /// day before, by the Gregorian calendar's rules.
    #[test]
    fn rfc3339_counts_every_day() {
        let days_in = |y: u32, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for day in 0..days_before(2500) {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 43_200);
            assert_eq!(rfc3339(t), format!("{y:04}-{m:02}-{d:02}T12:00:00.000000000Z"));
            d += 1;
            if d > days_in(y, m) {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
        assert_eq!((y, m, d), (2500, 1, 1));
    }

    /// Days from 1970-01-01 to January 1st of `year`.
    fn days_before(year: u32) -> u64 {
        (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum()
    }

    /// The Gregorian rule, written out here so that the tests do not
    /// check `rfc3339` against its own arithmetic.
    fn leap(y: u32) -> bool {
        y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
    }
}
