//! The captured Go socket-mode sessions (`conformance/captures/sessions`)
//! replayed through a server-role and a client-role session: every packet
//! the session transmits must have the shape of Go's packet (UUIDs and
//! header timestamps masked, UUIDs mapping one to one so parent links are
//! checked).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use beehive_model::Message;
use beehive_socket::session::{Event, Session, SessionConfig, SessionError, TransportKind};

struct Packet {
    seq: u64,
    client: bool,
    bytes: Vec<u8>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/captures/sessions")
}

fn load(file: &str) -> Vec<Packet> {
    let text = std::fs::read_to_string(dir().join(file)).expect("capture");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            Packet {
                seq: v["seq"].as_u64().expect("seq"),
                client: v["dir"] == "client_to_server",
                bytes: v["text"].as_str().expect("text").as_bytes().to_vec(),
            }
        })
        .collect()
}

fn scenarios() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir().join("index.jsonl")).expect("index");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            (v["name"].as_str().unwrap().to_owned(), v["file"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Positions of lower-case version-4 UUIDs.
fn uuids(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= s.len() {
        let w = &s[i..i + 36];
        let dashes = w[8] == b'-' && w[13] == b'-' && w[18] == b'-' && w[23] == b'-';
        let v4 = w[14] == b'4' && matches!(w[19], b'8' | b'9' | b'a' | b'b');
        let hex = [&w[..8], &w[9..13], &w[14..18], &w[19..23], &w[24..]].iter().all(|p| is_hex(p));
        if dashes && v4 && hex {
            out.push((i, i + 36));
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// UUIDs become `<uuid>`, 13-digit header timestamps `<ts>`.
fn mask(s: &[u8]) -> (String, Vec<String>) {
    let text = String::from_utf8_lossy(s).into_owned();
    let mut found = Vec::new();
    let mut out = String::new();
    let mut last = 0;
    for (a, b) in uuids(s) {
        out.push_str(&text[last..a]);
        out.push_str("<uuid>");
        found.push(text[a..b].to_owned());
        last = b;
    }
    out.push_str(&text[last..]);
    let key = "\"timestamp\":";
    let mut masked = String::new();
    let mut rest = out.as_str();
    while let Some(at) = rest.find(key) {
        masked.push_str(&rest[..at + key.len()]);
        rest = &rest[at + key.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        masked.push_str(if digits == 13 { "<ts>" } else { &rest[..digits] });
        rest = &rest[digits..];
    }
    masked.push_str(rest);
    (masked, found)
}

fn same_shape(recorded: &[u8], actual: &[u8], map: &mut HashMap<String, String>) -> Result<(), String> {
    let (r, ru) = mask(recorded);
    let (a, au) = mask(actual);
    if r != a {
        return Err(format!("expected {r}\n     got {a}"));
    }
    for (x, y) in ru.iter().zip(&au) {
        match map.get(x) {
            Some(prev) if prev != y => return Err(format!("uuid {x} was {prev}, now {y}")),
            Some(_) => {}
            None if map.values().any(|v| v == y) => return Err(format!("uuid {y} stands for two recorded uuids")),
            None => {
                map.insert(x.clone(), y.clone());
            }
        }
    }
    Ok(())
}

fn message(bytes: &[u8]) -> Message {
    beehive_model::from_slice(bytes).expect("a captured message")
}

/// What the caller passed to the API: the packet without what `Send` fills in.
fn as_call(m: &Message) -> Message {
    let mut m = m.clone();
    m.route_mut().destination.clear();
    m.header_mut().message_type.clear();
    m.header_mut().sync = false;
    m
}

const SERVER: &str = "socketserver";
const CLIENT: &str = "edgeclient";

/// Plays the client's packets into a server session; the server-side
/// hive is played by forwarding every message to its destination (Go's
/// `handleServerMessage`) and by making the scenario's own calls.
fn server_side(name: &str, packets: &[Packet]) -> Vec<String> {
    let now = Instant::now();
    let config = SessionConfig::server(SERVER, TransportKind::Packet).allow_module(CLIENT).max_frame_len(4096);
    let mut s = Session::new(config, now);
    let mut failures = Vec::new();
    let mut map = HashMap::new();
    let mut client_ids = HashSet::new();
    for p in packets {
        if p.client {
            let m = message(&p.bytes);
            client_ids.insert(m.id().to_owned());
            s.handle_packet(&p.bytes, now);
            while let Some(e) = s.poll_event() {
                match e {
                    Event::Message(m) | Event::UnmatchedResponse(m) => {
                        let dest = m.destination().to_owned();
                        if let Err(e) = s.send(&dest, m, now) {
                            failures.push(format!("seq {}: forwarding failed: {e}", p.seq));
                        }
                    }
                    Event::Malformed { .. } if name == "oversize" => {
                        // Go's server reads the first 4096 bytes, fails to decode
                        // them and closes; the session skips the packet.
                        assert!(s.is_connected());
                    }
                    Event::Closed { reason } => failures.push(format!("seq {}: closed: {reason}", p.seq)),
                    Event::Malformed { error, .. } => failures.push(format!("seq {}: malformed: {error}", p.seq)),
                    _ => {}
                }
            }
            continue;
        }
        let m = message(&p.bytes);
        if !client_ids.contains(m.id()) && !client_ids.contains(m.parent_id()) {
            // A packet the Go server sent on its own: make the same call.
            let call = as_call(&m);
            let r = if name.contains("sendtogroup") {
                s.send_to_group(CLIENT, call, now).map(drop)
            } else if name.contains("sendsync") {
                s.send_sync(CLIENT, call, Duration::from_secs(2), now).map(drop)
            } else {
                s.send(CLIENT, call, now)
            };
            if let Err(e) = r {
                failures.push(format!("seq {}: call failed: {e}", p.seq));
            }
        }
        match s.poll_transmit() {
            Some(t) => {
                s.handle_written(t.frame.len(), now);
                if let Err(why) = same_shape(&p.bytes, &t.frame, &mut map) {
                    failures.push(format!("seq {}: {why}", p.seq));
                }
            }
            None => failures.push(format!("seq {}: nothing transmitted", p.seq)),
        }
    }
    if let Some(t) = s.poll_transmit() {
        failures.push(format!("an extra packet: {}", String::from_utf8_lossy(&t.frame)));
    }
    failures
}

/// Plays the server's packets to a client session; the scenario's client
/// code (its own sends, its answers to sync requests) is played through
/// the session's API.
fn client_side(name: &str, packets: &[Packet]) -> Vec<String> {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::client(CLIENT, TransportKind::Packet).max_frame_len(4096), now);
    let answers: HashMap<String, Message> = packets
        .iter()
        .filter(|p| p.client)
        .map(|p| message(&p.bytes))
        .filter(|m| !m.parent_id().is_empty())
        .map(|m| (m.parent_id().to_owned(), m))
        .collect();
    let mut failures = Vec::new();
    let mut map: HashMap<String, String> = HashMap::new();
    let mut server_ids = HashSet::new();
    let mut own_sync = Vec::new();
    let mut responses = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if !p.client {
            let mut text = String::from_utf8(p.bytes.clone()).expect("text");
            for (recorded, ours) in &map {
                text = text.replace(recorded.as_str(), ours);
            }
            server_ids.insert(message(&p.bytes).id().to_owned());
            s.handle_packet(text.as_bytes(), now);
            while let Some(e) = s.poll_event() {
                match e {
                    Event::Message(m) if m.is_sync() => {
                        if let Some(a) = answers.get(m.id()) {
                            s.send_resp(m.new_response(a.content().clone()), now).expect("answer queued");
                        }
                    }
                    Event::Response(m) => responses.push(m.parent_id().to_owned()),
                    Event::Closed { reason } => failures.push(format!("seq {}: closed: {reason}", p.seq)),
                    Event::Malformed { error, .. } => failures.push(format!("seq {}: malformed: {error}", p.seq)),
                    _ => {}
                }
            }
            continue;
        }
        let m = message(&p.bytes);
        if i > 0 && m.parent_id().is_empty() && !server_ids.contains(m.id()) {
            let call = as_call(&m);
            let r = if m.is_sync() {
                s.send_sync(CLIENT, call, Duration::from_secs(3), now).map(|id| own_sync.push(id))
            } else {
                s.send(CLIENT, call, now)
            };
            match r {
                Ok(()) => {}
                Err(SessionError::MessageTooLarge { len, max }) if name == "oversize" => {
                    // Go writes it and the server cannot read it; the
                    // session refuses it and stays up.
                    assert!(len > max && s.is_connected());
                    continue;
                }
                Err(e) => failures.push(format!("seq {}: call failed: {e}", p.seq)),
            }
        }
        match s.poll_transmit() {
            Some(t) => {
                s.handle_written(t.frame.len(), now);
                if let Err(why) = same_shape(&p.bytes, &t.frame, &mut map) {
                    failures.push(format!("seq {}: {why}", p.seq));
                }
            }
            None => failures.push(format!("seq {}: nothing transmitted", p.seq)),
        }
    }
    if !s.is_connected() {
        failures.push("the handshake did not complete".into());
    }
    if own_sync != responses {
        failures.push(format!("send_sync {own_sync:?} got responses for {responses:?}"));
    }
    if let Some(t) = s.poll_transmit() {
        failures.push(format!("an extra packet: {}", String::from_utf8_lossy(&t.frame)));
    }
    failures
}

#[test]
fn captured_go_sessions_replay_through_both_roles() {
    let list = scenarios();
    assert!(list.len() >= 7, "the capture index lists the scenarios");
    let mut failures = Vec::new();
    for (name, file) in &list {
        let packets = load(file);
        failures.extend(server_side(name, &packets).into_iter().map(|f| format!("{name} (server): {f}")));
        failures.extend(client_side(name, &packets).into_iter().map(|f| format!("{name} (client): {f}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shapes_mask_ids_and_times_but_keep_links() {
    let mut map = HashMap::new();
    let rec = br#"{"header":{"msg_id":"00000000-0000-4000-8000-000000000001","timestamp":1600000000001}}"#;
    let ours = br#"{"header":{"msg_id":"3f2b1c4d-1111-4abc-9def-0123456789ab","timestamp":1795706658148}}"#;
    assert!(same_shape(rec, ours, &mut map).is_ok());
    let bad = br#"{"parent_msg_id":"aaaaaaaa-1111-4abc-9def-0123456789ab"}"#;
    assert!(same_shape(br#"{"parent_msg_id":"00000000-0000-4000-8000-000000000001"}"#, bad, &mut map).is_err());
    assert!(same_shape(br#"{"a":1}"#, br#"{"a":2}"#, &mut map).is_err());
}
