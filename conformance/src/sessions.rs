//! The `sessions` category: real socket-mode sessions between a Go server
//! and a Go client (`sessions/*.jsonl`).
//!
//! Each transcript is replayed twice:
//!
//! * **server side**: the client's packets are written into a hive served
//!   by our socket backend on the blocking driver
//!   ([`SocketBackend::serve_blocking`]) through a raw SOCK_SEQPACKET
//!   socket, and every packet
//!   our server writes back must match the recorded server packet; packets
//!   the Go server sent on its own (a server-side `Send`, `SendSync` or
//!   `SendToGroup`) are produced by making the same call on our hive;
//! * **client side**: a raw listener plays the recorded server packets to
//!   a hive joined through our socket backend
//!   ([`SocketBackend::connect_blocking`]), and every packet our client
//!   writes must match the
//!   recorded client packet; the scenario's client code (sending, answering
//!   sync requests) is played through our hive's API.
//!
//! Packets are compared byte for byte after the nondeterministic fields are
//! replaced: version-4 UUIDs (which must map one to one between the two
//! sessions, so parent links are checked) and 13-digit header timestamps.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use beehive_context::{Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::blocking::{ConnectOptions, Endpoint, ServerOptions};
use beehive_socket::{SocketBackend, SocketModuleConfig, StreamFraming};
use serde::Deserialize;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::report::{CategoryReport, Failure};
use crate::{read_jsonl, LoadError};

const WAIT: Duration = Duration::from_secs(3);

/// One line of `sessions/index.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    /// Scenario name.
    pub name: String,
    /// Transcript file.
    pub file: String,
    /// `unixpacket`.
    pub socket_type: String,
    /// Configured buffer size.
    pub buffer_size: usize,
    /// The server module.
    pub server_module: String,
    /// The remote module.
    pub client_module: String,
    /// What the server side saw (includes which side closed first).
    #[serde(default)]
    pub server_observed: Vec<String>,
}

/// One packet of a transcript.
#[derive(Debug, Clone, Deserialize)]
pub struct Packet {
    /// Order.
    pub seq: u64,
    /// `client_to_server` or `server_to_client`.
    pub dir: String,
    /// The bytes as text.
    #[serde(default)]
    pub text: Option<String>,
    /// The bytes as base64.
    #[serde(default)]
    pub text_b64: Option<String>,
}

impl Packet {
    fn bytes(&self) -> Vec<u8> {
        match (&self.text, &self.text_b64) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn is_client_packet(&self) -> bool {
        self.dir == "client_to_server"
    }

    fn message(&self) -> Option<Message> {
        beehive_model::from_slice(&self.bytes()).ok()
    }
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Positions of lower-case version-4 UUIDs in `s`.
fn uuids(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= s.len() {
        let w = &s[i..i + 36];
        let shaped = w[8] == b'-' && w[13] == b'-' && w[18] == b'-' && w[23] == b'-';
        if shaped
            && is_hex(&w[..8])
            && is_hex(&w[9..13])
            && w[14] == b'4'
            && is_hex(&w[14..18])
            && matches!(w[19], b'8' | b'9' | b'a' | b'b')
            && is_hex(&w[19..23])
            && is_hex(&w[24..])
        {
            out.push((i, i + 36));
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// Replaces UUIDs with `<uuid>` and 13-digit header timestamps with `<ts>`.
fn mask(s: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::with_capacity(s.len());
    let mut found = Vec::new();
    let mut last = 0;
    for (a, b) in uuids(s) {
        out.extend_from_slice(&s[last..a]);
        out.extend_from_slice(b"<uuid>");
        found.push(String::from_utf8_lossy(&s[a..b]).into_owned());
        last = b;
    }
    out.extend_from_slice(&s[last..]);
    let key = b"\"timestamp\":";
    let mut masked = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(key) {
            masked.extend_from_slice(key);
            i += key.len();
            let digits = out[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 13 {
                masked.extend_from_slice(b"<ts>");
            } else {
                masked.extend_from_slice(&out[i..i + digits]);
            }
            i += digits;
        } else {
            masked.push(out[i]);
            i += 1;
        }
    }
    (masked, found)
}

/// The Go client's answers to the server's sync requests, by the request
/// id they answer.
fn client_answers(packets: &[Packet]) -> HashMap<String, Message> {
    packets
        .iter()
        .filter(|p| p.is_client_packet())
        .filter_map(Packet::message)
        .filter(|m| !m.parent_id().is_empty())
        .map(|m| (m.parent_id().to_owned(), m))
        .collect()
}

/// A recorded server packet with our ids in place of the recorded ones the
/// client chose (`map`: recorded id → ours).
fn with_our_ids(bytes: &[u8], map: &HashMap<String, String>) -> Vec<u8> {
    let mut text = bytes.to_vec();
    for (recorded, ours) in map {
        text = String::from_utf8_lossy(&text).replace(recorded.as_str(), ours).into_bytes();
    }
    text
}

/// Compares a recorded packet with ours by shape, extending the UUID map.
fn same_shape(recorded: &[u8], actual: &[u8], map: &mut HashMap<String, String>) -> Result<(), String> {
    let (r, ru) = mask(recorded);
    let (a, au) = mask(actual);
    if r != a {
        return Err("bytes differ".into());
    }
    for (x, y) in ru.iter().zip(&au) {
        match map.get(x) {
            Some(prev) if prev != y => return Err(format!("uuid {x} was {prev}, now {y}")),
            Some(_) => {}
            None => {
                if map.values().any(|v| v == y) {
                    return Err(format!("uuid {y} stands for two recorded uuids"));
                }
                map.insert(x.clone(), y.clone());
            }
        }
    }
    Ok(())
}

fn fail(case: &str, check: &str, expected: impl Into<Vec<u8>>, actual: impl Into<Vec<u8>>) -> Failure {
    Failure { case: case.to_owned(), check: check.to_owned(), expected: expected.into(), actual: actual.into() }
}

/// A fresh directory for one replay's socket, removed (with the socket)
/// when dropped, on every path out of the replay.
fn scratch_dir(tag: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("beehive-sessions-{tag}-"))
        .tempdir()
        .map_err(|e| format!("no temporary directory could be created: {e}"))
}

fn config(s: &Session, path: &Path) -> Result<SocketModuleConfig, String> {
    SocketModuleConfig::from_yaml(&format!(
        "- module: {srv}\n  server: true\n  address: {p}\n  sockettype: {ty}\n  connmax: 4\n  buffersize: {buf}\n- module: {cli}\n  server: false\n  address: {p}\n  sockettype: {ty}\n  buffersize: {buf}\n",
        srv = s.server_module,
        cli = s.client_module,
        p = path.display(),
        ty = s.socket_type,
        buf = s.buffer_size
    ))
    .map_err(|e| e.to_string())
}

fn recv(sock: &Socket) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = vec![0u8; 1 << 20];
    match (&*sock).read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
    }
}

fn send(sock: &Socket, bytes: &[u8]) -> bool {
    use std::io::Write as _;
    (&*sock).write(bytes).map(|n| n == bytes.len()).unwrap_or(false)
}

/// The message a server-side or client-side caller passed to the API: the
/// recorded packet without what `Send` fills in.
fn as_call(m: &Message) -> Message {
    let mut m = m.clone();
    m.route_mut().destination.clear();
    m.header_mut().message_type.clear();
    m.header_mut().sync = false;
    m
}

/// Replays the client's packets into our server.
fn server_side(s: &Session, packets: &[Packet]) -> Vec<Failure> {
    let case = format!("{} (server side)", s.name);
    let dir = match scratch_dir("srv") {
        Ok(d) => d,
        Err(e) => return vec![fail(&case, "temporary directory", "a directory", e)],
    };
    let path = dir.path().join("server.sock");
    let cfg = match config(s, &path) {
        Ok(c) => c,
        Err(e) => return vec![fail(&case, "config", "a config", e)],
    };
    let hive = Hive::new();
    let backend = SocketBackend::new();
    hive.add_backend(backend.clone());
    // The server module itself is what the handshake answer lists.
    let _ = hive.register(SimpleModule::new(s.server_module.clone(), s.server_module.clone(), |h: &Hive| {
        h.wait_cancelled(Duration::from_secs(3600));
        Ok(())
    }));
    let _ = hive.start();
    let Some(entry) = cfg.servers().next() else { return vec![fail(&case, "config", "a server entry", "none")] };
    let served = Endpoint::from_config(entry).and_then(|endpoint| {
        let session = cfg.server_session(entry, StreamFraming::Raw);
        backend.serve_blocking(&hive, &endpoint, session, ServerOptions::default().conn_max(entry.conn_max))
    });
    let mut server = match served {
        Ok(srv) => srv,
        Err(e) => return vec![fail(&case, "server start", "listening", e.to_string())],
    };
    let mut failures = Vec::new();
    let raw = Socket::new(Domain::UNIX, Type::SEQPACKET, None).and_then(|r| {
        r.connect(&SockAddr::unix(&path)?)?;
        r.set_read_timeout(Some(WAIT))?;
        Ok(r)
    });
    let raw = match raw {
        Ok(r) => r,
        Err(e) => return vec![fail(&case, "connect", "connected", e.to_string())],
    };
    let mut map = HashMap::new();
    let mut client_ids = HashSet::new();
    for p in packets {
        let bytes = p.bytes();
        if p.is_client_packet() {
            if let Some(m) = p.message() {
                client_ids.insert(m.id().to_owned());
            }
            if !send(&raw, &bytes) {
                failures.push(fail(&case, &format!("seq {} sent", p.seq), "sent", "write failed"));
                break;
            }
            continue;
        }
        // A packet the Go server sent on its own: make the same call.
        if let Some(m) = p.message() {
            if !client_ids.contains(m.id()) && !client_ids.contains(m.parent_id()) {
                let (h, module, call) = (hive.clone(), s.client_module.clone(), as_call(&m));
                let name = s.name.clone();
                std::thread::spawn(move || {
                    let _ = if name.contains("sendtogroup") {
                        h.send_to_group(&module, call)
                    } else if name.contains("sendsync") {
                        h.send_sync(&module, call, Duration::from_millis(500)).map(drop)
                    } else {
                        h.send(&module, call)
                    };
                });
            }
        }
        match recv(&raw) {
            Some(actual) => {
                if let Err(why) = same_shape(&bytes, &actual, &mut map) {
                    failures.push(fail(&case, &format!("seq {} ({why})", p.seq), bytes, actual));
                }
            }
            None => failures.push(fail(&case, &format!("seq {}", p.seq), bytes, b"<nothing>".to_vec())),
        }
    }
    if s.server_observed.iter().any(|o| o.contains("first closed by: server")) {
        let _ = raw.set_read_timeout(Some(WAIT));
        if let Some(extra) = recv(&raw) {
            failures.push(fail(&case, "server closes the connection", b"end of stream".to_vec(), extra));
        }
    }
    server.shutdown();
    hive.request_shutdown();
    failures
}

/// True when a send failed because the message is larger than the
/// session's frame limit.
fn too_large(e: &beehive_context::ContextError) -> bool {
    use beehive_socket::session::SessionError;
    matches!(e, beehive_context::ContextError::Remote { source, .. }
        if matches!(source.downcast_ref::<beehive_socket::blocking::DriverError>(),
            Some(beehive_socket::blocking::DriverError::Session(SessionError::MessageTooLarge { .. }))))
}

/// Plays the recorded server packets to our client.
fn client_side(s: &Session, packets: &[Packet]) -> Vec<Failure> {
    let case = format!("{} (client side)", s.name);
    let dir = match scratch_dir("cli") {
        Ok(d) => d,
        Err(e) => return vec![fail(&case, "temporary directory", "a directory", e)],
    };
    let path = dir.path().join("server.sock");
    let cfg = match config(s, &path) {
        Ok(c) => c,
        Err(e) => return vec![fail(&case, "config", "a config", e)],
    };
    let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None).and_then(|l| {
        l.bind(&SockAddr::unix(&path)?)?;
        l.listen(1)?;
        Ok(l)
    });
    let listener = match listener {
        Ok(l) => l,
        Err(e) => return vec![fail(&case, "listen", "listening", e.to_string())],
    };
    let hive = Hive::new();
    let backend = SocketBackend::new();
    hive.add_backend(backend.clone());
    let Some(entry) = cfg.client(&s.client_module) else {
        return vec![fail(&case, "config", "a client entry", "none")];
    };
    let endpoint = match Endpoint::from_config(entry) {
        Ok(e) => e,
        Err(e) => return vec![fail(&case, "client start", "an endpoint", e.to_string())],
    };
    // The client connects and waits for the handshake answer, which the
    // recorded packets below provide.
    let mut joining = Some({
        let (backend, hive, session) = (Arc::clone(&backend), hive.clone(), entry.client_session(StreamFraming::Raw));
        std::thread::spawn(move || backend.connect_blocking(&hive, &endpoint, session, ConnectOptions::default()))
    });
    let mut joined = None;
    let conn = match listener.accept() {
        Ok((c, _)) => c,
        Err(e) => return vec![fail(&case, "accept", "a connection", e.to_string())],
    };
    let _ = conn.set_read_timeout(Some(WAIT));
    // The scenario's client code: receive; answer sync requests with the
    // content the Go client answered with.
    let answers = client_answers(packets);
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (h, module, received) = (hive.clone(), s.client_module.clone(), Arc::clone(&received));
        std::thread::spawn(move || {
            while let Ok(Some(m)) = h.receive_timeout(&module, Duration::from_secs(10)) {
                if m.is_sync() {
                    if let Some(a) = answers.get(m.id()) {
                        let _ = h.send_resp(m.new_response(a.content().clone()));
                    }
                }
                received.lock().unwrap_or_else(|e| e.into_inner()).push(m);
            }
        });
    }
    let mut failures = Vec::new();
    let mut map: HashMap<String, String> = HashMap::new();
    let mut server_ids = HashSet::new();
    let mut sync_calls = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let bytes = p.bytes();
        if !p.is_client_packet() {
            let text = with_our_ids(&bytes, &map);
            if let Some(m) = p.message() {
                server_ids.insert(m.id().to_owned());
            }
            if !send(&conn, &text) {
                failures.push(fail(&case, &format!("seq {} sent", p.seq), "sent", "write failed"));
            }
            continue;
        }
        // A packet the client code sent on its own (not the handshake, not
        // an answer): make the same call on our hive.
        if let Some(m) = p.message() {
            let own = i > 0 && m.parent_id().is_empty() && !server_ids.contains(m.id());
            if own {
                // The client code runs once the client has joined.
                if let Some(j) = joining.take() {
                    joined = Some(j.join());
                }
                let (h, module, call) = (hive.clone(), s.client_module.clone(), as_call(&m));
                if m.is_sync() {
                    sync_calls.push(std::thread::spawn(move || h.send_sync(&module, call, Duration::from_secs(5))));
                } else if let Err(e) = h.send(&module, call) {
                    if too_large(&e) {
                        // Larger than buffersize: Go writes it (and the
                        // server cannot read it); we refuse it and say so.
                        continue;
                    }
                    failures.push(fail(&case, &format!("seq {} call", p.seq), "sent", e.to_string()));
                }
            }
        }
        match recv(&conn) {
            Some(actual) => {
                if let Err(why) = same_shape(&bytes, &actual, &mut map) {
                    failures.push(fail(&case, &format!("seq {} ({why})", p.seq), bytes, actual));
                }
            }
            None => failures.push(fail(&case, &format!("seq {}", p.seq), bytes, b"<nothing>".to_vec())),
        }
    }
    for call in sync_calls {
        match call.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.push(fail(&case, "client send_sync", "a response", e.to_string())),
            Err(_) => failures.push(fail(&case, "client send_sync", "a response", "panicked")),
        }
    }
    hive.request_shutdown();
    drop(conn);
    let joined = joined.or_else(|| joining.map(|j| j.join()));
    match joined.expect("joined or joining") {
        Ok(Ok(mut client)) => client.shutdown(),
        Ok(Err(e)) => failures.push(fail(&case, "client start", "joined", e.to_string())),
        Err(_) => failures.push(fail(&case, "client start", "joined", "panicked")),
    }
    failures
}

/// Takes the session's next transmit, reports it written, and compares it
/// by shape with the packet Go sent at this point (`None` when it matches).
fn next_transmit_matches(
    sess: &mut beehive_socket::session::Session,
    now: std::time::Instant,
    case: &str,
    seq: u64,
    expected: Vec<u8>,
    map: &mut HashMap<String, String>,
) -> Option<Failure> {
    match sess.poll_transmit() {
        Some(t) => {
            sess.handle_written(t.frame.len(), now);
            let why = same_shape(&expected, &t.frame, map).err()?;
            Some(fail(case, &format!("seq {seq} ({why})"), expected, t.frame.to_vec()))
        }
        None => Some(fail(case, &format!("seq {seq}"), expected, b"<nothing>".to_vec())),
    }
}

/// Replays the client's packets into a sans-IO server-role
/// [`session::Session`] (no sockets): messages are forwarded to their
/// destination as Go's server does, the scenario's server-side calls are
/// made on the session, and every packet it transmits must match.
fn session_server_side(s: &Session, packets: &[Packet]) -> Vec<Failure> {
    use beehive_socket::session::{self, Event, TransportKind};
    let case = format!("{} (server session)", s.name);
    let now = std::time::Instant::now();
    let config = session::SessionConfig::server(s.server_module.as_str(), TransportKind::Packet)
        .allow_module(s.client_module.as_str())
        .max_frame_len(s.buffer_size);
    let mut sess = session::Session::new(config, now);
    let mut failures = Vec::new();
    let mut map = HashMap::new();
    let mut client_ids = HashSet::new();
    for p in packets {
        let bytes = p.bytes();
        if p.is_client_packet() {
            if let Some(m) = p.message() {
                client_ids.insert(m.id().to_owned());
            }
            sess.handle_packet(&bytes, now);
            while let Some(e) = sess.poll_event() {
                match e {
                    Event::Message(m) | Event::UnmatchedResponse(m) => {
                        let dest = m.destination().to_owned();
                        if let Err(e) = sess.send(&dest, m, now) {
                            failures.push(fail(&case, &format!("seq {} forwarded", p.seq), "queued", e.to_string()));
                        }
                    }
                    Event::Closed { reason } => {
                        failures.push(fail(&case, &format!("seq {}", p.seq), "open", reason.to_string()))
                    }
                    // An oversized packet: Go's server closes, the session
                    // skips it and stays up.
                    _ => {}
                }
            }
            continue;
        }
        if let Some(m) = p.message() {
            if !client_ids.contains(m.id()) && !client_ids.contains(m.parent_id()) {
                let (module, call) = (s.client_module.as_str(), as_call(&m));
                let r = if s.name.contains("sendtogroup") {
                    sess.send_to_group(module, call, now).map(drop)
                } else if s.name.contains("sendsync") {
                    sess.send_sync(module, call, Duration::from_millis(500), now).map(drop)
                } else {
                    sess.send(module, call, now)
                };
                if let Err(e) = r {
                    failures.push(fail(&case, &format!("seq {} call", p.seq), "queued", e.to_string()));
                }
            }
        }
        if let Some(f) = next_transmit_matches(&mut sess, now, &case, p.seq, bytes, &mut map) {
            failures.push(f);
        }
    }
    failures
}

/// Plays the recorded server packets to a sans-IO client-role
/// [`session::Session`]; the scenario's client code runs on the session's
/// API, and every packet it transmits must match.
fn session_client_side(s: &Session, packets: &[Packet]) -> Vec<Failure> {
    use beehive_socket::session::{self, Event, SessionError, TransportKind};
    let case = format!("{} (client session)", s.name);
    let now = std::time::Instant::now();
    let config =
        session::SessionConfig::client(s.client_module.as_str(), TransportKind::Packet).max_frame_len(s.buffer_size);
    let mut sess = session::Session::new(config, now);
    let answers = client_answers(packets);
    let mut failures = Vec::new();
    let mut map: HashMap<String, String> = HashMap::new();
    let mut server_ids = HashSet::new();
    for (i, p) in packets.iter().enumerate() {
        let bytes = p.bytes();
        if !p.is_client_packet() {
            let text = with_our_ids(&bytes, &map);
            if let Some(m) = p.message() {
                server_ids.insert(m.id().to_owned());
            }
            sess.handle_packet(&text, now);
            while let Some(e) = sess.poll_event() {
                match e {
                    Event::Message(m) if m.is_sync() => {
                        if let Some(a) = answers.get(m.id()) {
                            let _ = sess.send_resp(m.new_response(a.content().clone()), now);
                        }
                    }
                    Event::Closed { reason } => {
                        failures.push(fail(&case, &format!("seq {}", p.seq), "open", reason.to_string()))
                    }
                    _ => {}
                }
            }
            continue;
        }
        if let Some(m) = p.message() {
            if i > 0 && m.parent_id().is_empty() && !server_ids.contains(m.id()) {
                let (module, call) = (s.client_module.as_str(), as_call(&m));
                let r = if m.is_sync() {
                    sess.send_sync(module, call, Duration::from_secs(5), now).map(drop)
                } else {
                    sess.send(module, call, now)
                };
                match r {
                    Ok(()) => {}
                    // Larger than buffersize: Go writes it (and the server
                    // cannot read it); the session refuses it.
                    Err(SessionError::MessageTooLarge { .. }) => continue,
                    Err(e) => failures.push(fail(&case, &format!("seq {} call", p.seq), "queued", e.to_string())),
                }
            }
        }
        if let Some(f) = next_transmit_matches(&mut sess, now, &case, p.seq, bytes, &mut map) {
            failures.push(f);
        }
    }
    failures
}

/// Runs both replays of one scenario against the socket server and client,
/// and both against the sans-IO session.
pub fn check(dir: &Path, s: &Session) -> Result<Vec<Failure>, LoadError> {
    let packets: Vec<Packet> = read_jsonl(&dir.join(&s.file))?;
    let mut failures = server_side(s, &packets);
    failures.extend(client_side(s, &packets));
    failures.extend(session_server_side(s, &packets));
    failures.extend(session_client_side(s, &packets));
    Ok(failures)
}

/// Runs the category over `sessions/index.jsonl`.
pub fn run(dir: &Path) -> Result<CategoryReport, LoadError> {
    let sessions: Vec<Session> = read_jsonl(&dir.join("index.jsonl"))?;
    let mut report = CategoryReport::new("sessions");
    for s in &sessions {
        report.record(check(dir, s)?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_sessions_replay_through_the_sans_io_session() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sessions");
        let sessions: Vec<Session> = read_jsonl(&dir.join("index.jsonl")).unwrap();
        assert!(!sessions.is_empty());
        for s in &sessions {
            let packets: Vec<Packet> = read_jsonl(&dir.join(&s.file)).unwrap();
            let mut failures = session_server_side(s, &packets);
            failures.extend(session_client_side(s, &packets));
            assert!(failures.is_empty(), "{}: {:?}", s.name, failures);
        }
    }

    #[test]
    fn shapes_mask_ids_and_times_but_keep_links() {
        let mut map = HashMap::new();
        let rec = br#"{"header":{"msg_id":"00000000-0000-4000-8000-000000000001","timestamp":1600000000001}}"#;
        let ours = br#"{"header":{"msg_id":"3f2b1c4d-1111-4abc-9def-0123456789ab","timestamp":1795706658148}}"#;
        assert!(same_shape(rec, ours, &mut map).is_ok());
        let rec2 = br#"{"parent_msg_id":"00000000-0000-4000-8000-000000000001"}"#;
        let bad = br#"{"parent_msg_id":"aaaaaaaa-1111-4abc-9def-0123456789ab"}"#;
        assert!(same_shape(rec2, bad, &mut map).is_err());
        assert!(same_shape(br#"{"a":1}"#, br#"{"a":2}"#, &mut map).is_err());
    }
}
