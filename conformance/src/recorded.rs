//! Category `recorded`: live traffic recorded by `beehive record`.
//!
//! Every message a Go peer writes is `json.NewEncoder(w).Encode(msg)` (Raw
//! framing: Go's JSON and a line feed) or, on a stream, possibly a Package
//! frame (a 12-byte header and Go's JSON). So every recorded message must
//! decode with beehive-rs and re-encode to exactly the recorded bytes:
//!
//! * **unixpacket**: each packet is one case. It must be a Raw frame (JSON
//!   and one line feed; socket mode never writes Package frames on
//!   packets), decode with [`beehive_model::from_slice`] and with
//!   [`beehive_model::json::from_bytes_lazy`], and both decodings must
//!   re-encode ([`beehive_model::to_vec_line`]) to the packet's bytes.
//! * **unix, tcp**: the reads of each connection and direction are joined
//!   into one stream, its framing is recognised from its first bytes
//!   (Package when they are `beeh`, Raw when `{` or JSON whitespace, as
//!   `beehive decode --framing auto` decides) and it is split with
//!   beehive-codec's [`PackageCodec`] or [`RawCodec`]. Each frame is one
//!   case: the bytes it took from the stream (blank lines before it
//!   included) must be exactly what we write for its message (Raw:
//!   `to_vec_line`; Package: the header and `to_vec`). A stream that cannot
//!   be split further (bad header, truncated frame, unrecognised framing)
//!   is one failed case at that offset.
//!
//! Content is decoded as Go's `json.Unmarshal` into `interface{}` decodes
//! it (objects become maps, written back with sorted keys). The one struct
//! a Go peer puts in a message, the handshake answer's
//! `*socket.ModuleExchange` (`modules` before `groups`), is tried as such
//! when the map's order does not match.
//!
//! A connection the relay could not forward completely (`error` in the
//! index) is a failed case too: its recording is not the whole exchange.
//! Case ids name the connection, the direction, the frame number and its
//! byte offset in that direction's stream:
//! `conn-000002 client_to_server #3 @412`.

use std::path::Path;

use base64::Engine as _;
use beehive_codec::{CodecError, PackageCodec, PackageHeader, RawCodec, HEADER_LEN};
use beehive_model::{Content, DecodeError, EncodeError, Message, ModuleExchange};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::{read_jsonl, CategoryReport, Failure, LoadError};

/// One line of `recorded/index.jsonl`: a relayed connection.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedConn {
    /// The connection id, from 1 in accept order.
    pub conn: u64,
    /// Its transcript, relative to `recorded/`.
    pub file: String,
    /// `unixpacket`, `unix` or `tcp`.
    pub transport: String,
    /// Lines in the transcript.
    pub lines: u64,
    /// Why the relay could not forward the connection completely, if it could not.
    #[serde(default)]
    pub error: Option<String>,
}

/// One line of a transcript `recorded/conn-NNNNNN.jsonl`: one packet
/// (unixpacket) or one read (streams).
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedLine {
    /// The connection id.
    pub conn: u64,
    /// The line number within the transcript, from 1.
    pub seq: u64,
    /// `client_to_server` or `server_to_client`.
    pub dir: String,
    /// Nanoseconds from the start of the recording to the read.
    pub t_ns: u64,
    /// `unixpacket`, `unix` or `tcp`.
    pub transport: String,
    /// The number of bytes.
    pub len: u64,
    /// The bytes, base64.
    pub data_b64: String,
}

/// The directions, in the order they are checked.
pub const DIRECTIONS: [&str; 2] = ["client_to_server", "server_to_client"];

/// Runs the category over a `recorded/` directory.
pub fn run(dir: &Path) -> Result<CategoryReport, LoadError> {
    let mut report = CategoryReport::new("recorded");
    let conns: Vec<RecordedConn> = read_jsonl(&dir.join("index.jsonl"))?;
    for conn in &conns {
        let path = dir.join(&conn.file);
        let lines: Vec<RecordedLine> = read_jsonl(&path)?;
        if lines.len() as u64 != conn.lines {
            return Err(LoadError::Format(format!(
                "{}: {} lines, the index says {}",
                path.display(),
                lines.len(),
                conn.lines
            )));
        }
        let mut dirs: [Vec<Vec<u8>>; 2] = Default::default();
        for (i, line) in lines.iter().enumerate() {
            let at = |what: String| LoadError::Line { path: path.clone(), line: i + 1, message: what };
            let d = DIRECTIONS.iter().position(|d| *d == line.dir).ok_or_else(|| at(format!("dir {:?}", line.dir)))?;
            if line.conn != conn.conn || line.transport != conn.transport {
                return Err(at(format!("connection {} ({}) in the file of {}", line.conn, line.transport, conn.conn)));
            }
            let data = base64::engine::general_purpose::STANDARD
                .decode(&line.data_b64)
                .map_err(|e| at(format!("data_b64: {e}")))?;
            if data.len() as u64 != line.len {
                return Err(at(format!("len {} but {} bytes", line.len, data.len())));
            }
            dirs[d].push(data);
        }
        let name = format!("conn-{:06}", conn.conn);
        if let Some(e) = &conn.error {
            report.record(vec![failure(&name, "relay", e.as_bytes().to_vec(), Vec::new())]);
        }
        for (d, chunks) in dirs.iter().enumerate() {
            let case = format!("{name} {}", DIRECTIONS[d]);
            match conn.transport.as_str() {
                "unixpacket" => check_packets(&case, chunks, &mut report),
                "unix" | "tcp" => check_stream(&case, &chunks.concat(), &mut report),
                other => return Err(LoadError::Format(format!("{}: unknown transport {other:?}", path.display()))),
            }
        }
    }
    Ok(report)
}

fn failure(case: &str, check: &str, expected: Vec<u8>, actual: Vec<u8>) -> Failure {
    Failure { case: case.to_owned(), check: check.to_owned(), expected, actual }
}

/// Checks each packet of one direction as one Raw frame.
pub fn check_packets(case: &str, packets: &[Vec<u8>], report: &mut CategoryReport) {
    let mut offset = 0;
    for (i, p) in packets.iter().enumerate() {
        let case = format!("{case} #{} @{offset}", i + 1);
        report.record(check_raw_frame(&case, p));
        offset += p.len();
    }
}

/// Checks one frame of Raw framing: Go's JSON of the message and a line feed.
pub fn check_raw_frame(case: &str, frame: &[u8]) -> Vec<Failure> {
    if frame.starts_with(&beehive_codec::package::MAGIC) {
        return vec![failure(
            case,
            "framing: a Package frame where Go writes one Raw message (JSON and a line feed) per packet",
            frame.to_vec(),
            Vec::new(),
        )];
    }
    let msg = match beehive_model::from_slice(frame) {
        Ok(m) => m,
        Err(e) => return vec![decode_failure(case, frame, 0, &e)],
    };
    // The lazy decoder keeps canonical content as a slice of the input; it
    // must accept the same and write the same.
    let lazy = beehive_model::json::from_bytes_lazy(&Bytes::copy_from_slice(frame));
    let encode = |m: &Message| encode_like_go(m, frame, beehive_model::to_vec_line);
    reencoded(case, frame, encode(&msg), lazy.map(|m| encode(&m)))
}

/// Our bytes for a decoded message: as decoded, or, when that differs from
/// `expected` and the content has the shape of Go's `*socket.ModuleExchange`
/// (the handshake answer, which Go writes from a struct: `modules` before
/// `groups`, where a decoded map has its keys sorted), with that content.
fn encode_like_go(
    msg: &Message,
    expected: &[u8],
    encode: impl Fn(&Message) -> Result<Vec<u8>, EncodeError>,
) -> Result<Vec<u8>, EncodeError> {
    let ours = encode(msg)?;
    if ours == expected {
        return Ok(ours);
    }
    let value = match msg.content() {
        Content::Value(v) => Some(v.clone()),
        Content::Raw(raw) => raw.parse().ok(),
        _ => None,
    };
    if let Some(exchange) = value.as_ref().and_then(ModuleExchange::from_value) {
        let theirs = encode(&msg.clone().fill_body(Content::ModuleExchange(exchange)))?;
        if theirs == expected {
            return Ok(theirs);
        }
    }
    Ok(ours)
}

/// The failures of a re-encoding `full` (from `from_slice`) and `lazy`
/// (from `from_bytes_lazy`) that should both be `expected`; the lazy one is
/// reported only where it differs from the other.
fn reencoded(
    case: &str,
    expected: &[u8],
    full: Result<Vec<u8>, EncodeError>,
    lazy: Result<Result<Vec<u8>, EncodeError>, DecodeError>,
) -> Vec<Failure> {
    match (full, lazy) {
        (Ok(ours), _) if ours != expected => vec![failure(case, "reencode", expected.to_vec(), ours)],
        (Err(e), _) => vec![failure(case, &format!("reencode: {e}"), expected.to_vec(), Vec::new())],
        (Ok(_), Err(e)) => vec![failure(case, &format!("decode_lazy: {e}"), expected.to_vec(), Vec::new())],
        (Ok(_), Ok(Err(e))) => vec![failure(case, &format!("reencode_lazy: {e}"), expected.to_vec(), Vec::new())],
        (Ok(_), Ok(Ok(ours))) if ours != expected => vec![failure(case, "reencode_lazy", expected.to_vec(), ours)],
        _ => Vec::new(),
    }
}

/// A message that does not decode: `actual` is the frame up to the byte
/// the decoder stopped at, so the report's first difference points at it.
fn decode_failure(case: &str, frame: &[u8], payload_start: usize, e: &DecodeError) -> Failure {
    let at = (payload_start + e.offset()).min(frame.len());
    failure(case, &format!("decode: {e}"), frame.to_vec(), frame[..at].to_vec())
}

/// Checks one direction of a stream connection.
pub fn check_stream(case: &str, stream: &[u8], report: &mut CategoryReport) {
    if stream.is_empty() {
        return;
    }
    let head = &stream[..stream.len().min(4)];
    let package = head == &beehive_codec::package::MAGIC[..head.len()];
    if !package && !matches!(stream[0], b'{' | b' ' | b'\t' | b'\r' | b'\n') {
        let shown = stream[..stream.len().min(16)].to_vec();
        report.record(vec![failure(
            &format!("{case} #1 @0"),
            "framing: neither Package (\"beeh\") nor Raw ('{' or whitespace)",
            shown,
            Vec::new(),
        )]);
        return;
    }
    // The whole stream is in memory: the codecs' limits only guard allocation.
    let max = i32::MAX as usize;
    if package {
        let mut codec = PackageCodec::with_max_frame_len(max).expect("a valid limit");
        split(
            case,
            stream,
            |buf, eof| if eof { codec.decode_frame_eof(buf) } else { codec.decode_frame(buf) },
            report,
            check_package_frame,
        );
    } else {
        let mut codec = RawCodec::with_max_line_len(max).expect("a valid limit");
        split(
            case,
            stream,
            |buf, eof| if eof { codec.decode_frame_eof(buf) } else { codec.decode_frame(buf) },
            report,
            |case, frame, _| check_raw_frame(case, frame),
        );
    }
}

/// Splits `stream` into frames with `decode` and checks each with `check`
/// (given the bytes the frame took from the stream and its payload).
fn split(
    case: &str,
    stream: &[u8],
    mut decode: impl FnMut(&mut BytesMut, bool) -> Result<Option<Bytes>, CodecError>,
    report: &mut CategoryReport,
    check: impl Fn(&str, &[u8], &Bytes) -> Vec<Failure>,
) {
    let mut buf = BytesMut::from(stream);
    let mut n = 0;
    loop {
        let offset = stream.len() - buf.len();
        let before = buf.len();
        match decode(&mut buf, true) {
            Ok(Some(payload)) => {
                n += 1;
                let took = &stream[offset..offset + (before - buf.len())];
                report.record(check(&format!("{case} #{n} @{offset}"), took, &payload));
            }
            Ok(None) => {
                if !buf.is_empty() {
                    // Only blank lines were left (Raw): Go writes none.
                    report.record(vec![failure(
                        &format!("{case} #{} @{offset}", n + 1),
                        "framing: bytes after the last frame",
                        stream[offset..].to_vec(),
                        Vec::new(),
                    )]);
                }
                return;
            }
            Err(e) => {
                let check = format!("framing: {e}");
                report.record(vec![failure(
                    &format!("{case} #{} @{offset}", n + 1),
                    &check,
                    stream[offset..].to_vec(),
                    Vec::new(),
                )]);
                return;
            }
        }
    }
}

/// Checks one Package frame: the header for the payload, then Go's JSON of the message.
fn check_package_frame(case: &str, frame: &[u8], payload: &Bytes) -> Vec<Failure> {
    let msg = match beehive_model::from_slice(payload) {
        Ok(m) => m,
        Err(e) => return vec![decode_failure(case, frame, HEADER_LEN, &e)],
    };
    let framed = |json: Vec<u8>| {
        let mut ours = PackageHeader::for_payload(json.len() as i32).encode().to_vec();
        ours.extend_from_slice(&json);
        ours
    };
    let lazy = beehive_model::json::from_bytes_lazy(payload);
    let json = &frame[HEADER_LEN..];
    let encode = |m: &Message| encode_like_go(m, json, beehive_model::to_vec).map(framed);
    reencoded(case, frame, encode(&msg), lazy.map(|m| encode(&m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"{\"header\":{\"msg_id\":\"a\",\"timestamp\":1},\"route\":{},\"content\":null}\n";

    fn package(json: &[u8]) -> Vec<u8> {
        let mut v = PackageHeader::for_payload(json.len() as i32).encode().to_vec();
        v.extend_from_slice(json);
        v
    }

    fn checks(r: &CategoryReport) -> Vec<(&str, &str)> {
        r.failures.iter().map(|f| (f.case.as_str(), f.check.split(':').next().unwrap())).collect()
    }

    #[test]
    fn canonical_packets_pass_and_others_fail_with_their_offset() {
        let mut r = CategoryReport::new("recorded");
        let spaced = b"{\"header\": {\"msg_id\":\"a\",\"timestamp\":1},\"route\":{},\"content\":null}\n".to_vec();
        check_packets("c", &[MSG.to_vec(), spaced, b"{\"header\":\n".to_vec(), MSG[..MSG.len() - 1].to_vec()], &mut r);
        assert_eq!((r.passed, r.failed), (1, 3));
        let found = checks(&r);
        assert!(found.contains(&("c #2 @66", "reencode")), "{found:?}");
        assert!(found.contains(&("c #3 @133", "decode")), "{found:?}");
        assert!(found.contains(&("c #4 @144", "reencode")), "{found:?}");
        // The decode failure points at the byte the decoder stopped at.
        let f = r.failures.iter().find(|f| f.check.starts_with("decode")).unwrap();
        assert!(f.actual.len() >= 10, "{f:?}");
    }

    #[test]
    fn every_packet_of_the_captured_go_sessions_passes() {
        let dir = crate::default_captures_dir().join("sessions");
        let mut r = CategoryReport::new("recorded");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() == "index.jsonl" {
                continue;
            }
            let lines: Vec<serde_json::Value> = read_jsonl(&path).unwrap();
            let packets: Vec<Vec<u8>> = lines.iter().map(|l| l["text"].as_str().unwrap().as_bytes().to_vec()).collect();
            check_packets(&path.display().to_string(), &packets, &mut r);
        }
        // The handshake answer (a ModuleExchange written from Go's struct) among them.
        assert!(r.passed >= 20, "{}", r.passed);
        assert_eq!(r.failures.len(), 0, "{:#?}", r.failures);
    }

    #[test]
    fn raw_streams_are_split_whatever_the_reads() {
        let mut stream = MSG.repeat(3);
        let mut r = CategoryReport::new("recorded");
        check_stream("s", &stream, &mut r);
        assert_eq!((r.passed, r.failed), (3, 0));
        // A blank line before a frame, and a last frame cut short.
        stream.insert(MSG.len(), b'\n');
        stream.pop();
        let mut r = CategoryReport::new("recorded");
        check_stream("s", &stream, &mut r);
        assert_eq!(checks(&r), [("s #2 @66", "reencode"), ("s #3 @133", "reencode")]);
    }

    #[test]
    fn package_streams_are_split_and_truncation_is_reported() {
        let json = &MSG[..MSG.len() - 1];
        let mut stream = package(json).repeat(2);
        let mut r = CategoryReport::new("recorded");
        check_stream("p", &stream, &mut r);
        assert_eq!((r.passed, r.failed), (2, 0));
        stream.extend_from_slice(&package(json)[..20]);
        let mut r = CategoryReport::new("recorded");
        check_stream("p", &stream, &mut r);
        assert_eq!((r.passed, r.failed), (2, 1));
        assert_eq!(checks(&r), [("p #3 @154", "framing")]);
        // A JSON payload with a line feed is not what Go's package writer writes.
        let mut r = CategoryReport::new("recorded");
        check_stream("p", &package(MSG), &mut r);
        assert_eq!(checks(&r), [("p #1 @0", "reencode")]);
    }

    #[test]
    fn unrecognised_streams_fail_at_their_start() {
        let mut r = CategoryReport::new("recorded");
        check_stream("u", b"GET / HTTP/1.1\r\n", &mut r);
        assert_eq!(checks(&r), [("u #1 @0", "framing")]);
    }
}
