//! What `decode` prints for each frame, error and skip: a text line or a
//! JSON object per line.

use std::fmt::Write as _;
use std::io::{self, Write};

use beehive_codec::CodecError;
use beehive_model::{DecodeError, Message};
use serde_json::{json, Value};

use crate::style;

/// Counts over a whole input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Frames found (valid messages or not).
    pub frames: u64,
    /// Frames holding a valid message.
    pub messages: u64,
    /// Problems reported (invalid messages, framing errors).
    pub errors: u64,
    /// Bytes skipped to resynchronise.
    pub skipped: u64,
}

/// Writes the records of one input.
#[derive(Debug)]
pub struct Printer<W: Write> {
    out: W,
    json: bool,
    color: bool,
    framing: &'static str,
    line: Vec<u8>,
    text: String,
    /// Where the records come from in a packet log (`--framing packets`);
    /// `None` for a Package or Raw stream.
    place: Option<Place>,
    /// What has been printed so far.
    pub stats: Stats,
}

/// Where a record of a packet log comes from: the log line and what it
/// says about the packet.
#[derive(Debug, Default)]
struct Place {
    line: u64,
    conn: Option<u64>,
    seq: Option<u64>,
    dir: Option<String>,
    /// How a stream transport's bytes were split (`raw`, `package`); `None`
    /// for a packet, whose offset is not shown in text.
    stream: Option<&'static str>,
}

impl<W: Write> Printer<W> {
    /// A printer of JSON lines (`json`) or text lines, coloured when `color`.
    pub fn new(out: W, json: bool, color: bool) -> Self {
        Printer {
            out,
            json,
            color: color && !json,
            framing: "unknown",
            line: Vec::with_capacity(4096),
            text: String::with_capacity(256),
            place: None,
            stats: Stats::default(),
        }
    }

    /// Says where the records that follow come from in a packet log: the
    /// line, its `conn`, `seq` and `dir`, and for the frames of a stream
    /// transport how its bytes were split (`raw`, `package`).
    pub fn set_place(
        &mut self,
        line: u64,
        conn: Option<u64>,
        seq: Option<u64>,
        dir: Option<&str>,
        stream: Option<&'static str>,
    ) {
        let place = self.place.get_or_insert_with(Place::default);
        place.line = line;
        place.conn = conn;
        place.seq = seq;
        match (dir, &mut place.dir) {
            (Some(d), Some(buf)) => {
                buf.clear();
                buf.push_str(d);
            }
            (d, buf) => *buf = d.map(str::to_owned),
        }
        place.stream = stream;
    }

    /// Names the framing in the records that follow.
    pub fn set_framing(&mut self, framing: &'static str) {
        self.framing = framing;
    }

    /// `{"offset":…,"length":…,"framing":"…"` into `self.line` (no closing brace).
    fn json_head(&mut self, offset: u64, length: Option<u64>) {
        if self.place.is_some() {
            return self.place_json_head(Some(offset), length);
        }
        let mut n = itoa::Buffer::new();
        self.line.clear();
        self.line.extend_from_slice(b"{\"offset\":");
        self.line.extend_from_slice(n.format(offset).as_bytes());
        self.line.extend_from_slice(b",\"length\":");
        match length {
            Some(l) => self.line.extend_from_slice(n.format(l).as_bytes()),
            None => self.line.extend_from_slice(b"null"),
        }
        self.line.extend_from_slice(b",\"framing\":\"");
        self.line.extend_from_slice(self.framing.as_bytes());
        self.line.push(b'"');
    }

    /// `{"line":…,"conn":…,"seq":…,"dir":…,"offset":…,"length":…,"framing":"packets"`
    /// (and `"stream":…` for a stream transport) into `self.line`.
    fn place_json_head(&mut self, offset: Option<u64>, length: Option<u64>) {
        let Some(place) = &self.place else { return };
        let mut n = itoa::Buffer::new();
        let mut opt = |line: &mut Vec<u8>, v: Option<u64>| match v {
            Some(v) => line.extend_from_slice(n.format(v).as_bytes()),
            None => line.extend_from_slice(b"null"),
        };
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"line\":");
        opt(line, Some(place.line));
        line.extend_from_slice(b",\"conn\":");
        opt(line, place.conn);
        line.extend_from_slice(b",\"seq\":");
        opt(line, place.seq);
        line.extend_from_slice(b",\"dir\":");
        // A string from the log: escaped by serde_json (cannot fail).
        let _ = serde_json::to_writer(&mut *line, &place.dir);
        line.extend_from_slice(b",\"offset\":");
        opt(line, offset);
        line.extend_from_slice(b",\"length\":");
        opt(line, length);
        line.extend_from_slice(b",\"framing\":\"");
        line.extend_from_slice(self.framing.as_bytes());
        line.push(b'"');
        if let Some(stream) = place.stream {
            line.extend_from_slice(b",\"stream\":\"");
            line.extend_from_slice(stream.as_bytes());
            line.push(b'"');
        }
    }

    /// `line 3 conn 1 #3 client_to_server 202 `: what is known of the line,
    /// then `@OFFSET` for a stream transport's frame and the length.
    fn place_text_head(&mut self, offset: Option<u64>, length: Option<u64>) -> io::Result<()> {
        let Some(place) = &self.place else { return Ok(()) };
        let mut head = format!("line {}", place.line);
        if let Some(c) = place.conn {
            let _ = write!(head, " conn {c}");
        }
        if let Some(s) = place.seq {
            let _ = write!(head, " #{s}");
        }
        if let Some(d) = &place.dir {
            head.push(' ');
            head.push_str(d);
        }
        if let (Some(_), Some(o)) = (place.stream, offset) {
            let _ = write!(head, " @{o}");
        }
        if let Some(l) = length {
            let _ = write!(head, " {l}");
        }
        if head.chars().any(char::is_control) {
            let mut escaped = Vec::new();
            write_escaped(&mut escaped, &head)?;
            head = String::from_utf8_lossy(&escaped).into_owned();
        }
        style::paint(&mut self.out, self.color, style::DIM, &head)?;
        self.out.write_all(b" ")
    }

    fn text_head(&mut self, offset: u64, length: Option<u64>) -> io::Result<()> {
        if self.place.is_some() {
            return self.place_text_head(Some(offset), length);
        }
        let mut n = itoa::Buffer::new();
        let mut head = String::with_capacity(24);
        head.push_str(n.format(offset));
        head.push(' ');
        match length {
            Some(l) => head.push_str(n.format(l)),
            None => head.push('-'),
        }
        style::paint(&mut self.out, self.color, style::DIM, &head)?;
        self.out.write_all(b" ")
    }

    /// A frame holding a valid message.
    pub fn message(&mut self, offset: u64, length: u64, msg: &Message) -> io::Result<()> {
        self.stats.frames += 1;
        if self.json {
            self.json_head(offset, Some(length));
            let head = self.line.len();
            self.line.extend_from_slice(b",\"message\":");
            if let Err(e) = beehive_model::encode_into(msg, &mut self.line) {
                // Cannot happen for a decoded message (every decoded value can
                // be written), but say so rather than print half an object.
                self.line.truncate(head);
                return self.finish_error(json!({"kind": "encode", "message": e.to_string()}));
            }
            self.stats.messages += 1;
            self.line.extend_from_slice(b"}\n");
            return self.out.write_all(&self.line);
        }
        self.stats.messages += 1;
        self.text_head(offset, Some(length))?;
        self.text.clear();
        let _ = write!(self.text, "{msg}");
        write_escaped(&mut self.out, &self.text)?;
        self.out.write_all(b"\n")
    }

    /// A frame whose payload (at stream offset `payload_offset`) is not a message.
    pub fn invalid_message(
        &mut self,
        offset: u64,
        length: u64,
        payload_offset: u64,
        source: DecodeError,
    ) -> io::Result<()> {
        self.stats.frames += 1;
        let err = CodecError::Json { offset: payload_offset, source };
        self.error(offset, Some(length), &err)
    }

    /// A problem at `offset` (a framing error, or an invalid message).
    pub fn error(&mut self, offset: u64, length: Option<u64>, err: &CodecError) -> io::Result<()> {
        if self.json {
            self.json_head(offset, length);
            return self.finish_error(codec_error_json(err));
        }
        self.stats.errors += 1;
        self.text_head(offset, length)?;
        style::paint(&mut self.out, self.color, style::ERROR, "error:")?;
        self.out.write_all(b" ")?;
        write_escaped(&mut self.out, &err.to_string())?;
        self.out.write_all(b"\n")
    }

    /// Input that is neither a Package nor a Raw stream (`--framing auto`).
    pub fn unrecognised(&mut self, prefix: &[u8]) -> io::Result<()> {
        let message = format!(
            "cannot recognise the framing: the input starts with {} (Package starts with \"beeh\", Raw with '{{' \
             or whitespace); choose one with --framing",
            escape_bytes(prefix)
        );
        if self.json {
            self.json_head(0, None);
            return self.finish_error(json!({
                "kind": "unrecognised_framing", "offset": 0, "found": prefix, "message": message,
            }));
        }
        self.stats.errors += 1;
        self.text_head(0, None)?;
        style::paint(&mut self.out, self.color, style::ERROR, "error:")?;
        writeln!(self.out, " {message}")
    }

    /// A problem in a packet log that is not a frame's: a line that holds
    /// no packet (`offset` `None`), or a stream whose framing is not
    /// recognised. `error` is its JSON, `message` its text.
    pub fn place_error(
        &mut self,
        offset: Option<u64>,
        length: Option<u64>,
        message: &str,
        error: Value,
    ) -> io::Result<()> {
        if self.json {
            self.place_json_head(offset, length);
            return self.finish_error(error);
        }
        self.stats.errors += 1;
        self.place_text_head(offset, None)?;
        style::paint(&mut self.out, self.color, style::ERROR, "error:")?;
        self.out.write_all(b" ")?;
        write_escaped(&mut self.out, message)?;
        self.out.write_all(b"\n")
    }

    /// `skipped` bytes from `offset` dropped; decoding resumes at
    /// `resumed_at`, or never (the end of the input came first).
    pub fn skipped(&mut self, offset: u64, skipped: u64, resumed_at: Option<u64>, what: &str) -> io::Result<()> {
        self.stats.skipped += skipped;
        if self.json {
            self.json_head(offset, Some(skipped));
            let mut n = itoa::Buffer::new();
            self.line.extend_from_slice(b",\"skipped\":");
            self.line.extend_from_slice(n.format(skipped).as_bytes());
            self.line.extend_from_slice(b",\"resumed_at\":");
            match resumed_at {
                Some(r) => self.line.extend_from_slice(n.format(r).as_bytes()),
                None => self.line.extend_from_slice(b"null"),
            }
            self.line.extend_from_slice(b"}\n");
            return self.out.write_all(&self.line);
        }
        self.text_head(offset, Some(skipped))?;
        let text = match resumed_at {
            Some(r) => format!("skipped {skipped} bytes, resumed at byte {r} ({what})"),
            None if self.place.is_some() => format!("skipped {skipped} bytes to the end of the stream ({what})"),
            None => format!("skipped {skipped} bytes to the end of the input (no {what} found)"),
        };
        style::paint(&mut self.out, self.color, style::WARN, &text)?;
        self.out.write_all(b"\n")
    }

    fn finish_error(&mut self, error: Value) -> io::Result<()> {
        self.stats.errors += 1;
        self.line.extend_from_slice(b",\"error\":");
        serde_json::to_writer(&mut self.line, &error).map_err(io::Error::other)?;
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)
    }

    /// Flushes and gives back the output.
    pub fn finish(mut self) -> io::Result<(W, Stats)> {
        self.out.flush()?;
        Ok((self.out, self.stats))
    }
}

/// Writes `text` with control characters escaped (`\n`, `\t`, `\r`,
/// `\u{1b}`), so that a frame stays on one line and cannot drive the terminal.
fn write_escaped(out: &mut impl Write, text: &str) -> io::Result<()> {
    if !text.chars().any(char::is_control) {
        return out.write_all(text.as_bytes());
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    out.write_all(s.as_bytes())
}

/// Bytes as `"text"` with `\xNN` for anything not printable ASCII.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// The typed error as a JSON object: `kind`, `message` (the error's text)
/// and the variant's fields.
pub fn codec_error_json(err: &CodecError) -> Value {
    let message = err.to_string();
    match err {
        CodecError::BadMagic { offset, found } => {
            json!({"kind": "bad_magic", "offset": offset, "found": found, "message": message})
        }
        CodecError::UnsupportedVersion { offset, found } => {
            json!({"kind": "unsupported_version", "offset": offset, "found": found, "message": message})
        }
        CodecError::NegativeLength { offset, length } => {
            json!({"kind": "negative_length", "offset": offset, "length_field": length, "message": message})
        }
        CodecError::FrameTooLarge { offset, frame_len, max } => json!({
            "kind": "frame_too_large", "offset": offset, "frame_len": frame_len, "max": max, "message": message,
        }),
        CodecError::Truncated { offset, needed, available } => json!({
            "kind": "truncated", "offset": offset, "needed": needed, "available": available, "message": message,
        }),
        CodecError::LineTooLong { offset, max } => {
            json!({"kind": "line_too_long", "offset": offset, "max": max, "message": message})
        }
        CodecError::PacketTooLarge { max } => json!({"kind": "packet_too_large", "max": max, "message": message}),
        CodecError::Json { offset, source } => json!({
            "kind": "invalid_message", "offset": offset, "message": message,
            "cause": decode_error_json(source, *offset),
        }),
        CodecError::Io(_) => json!({"kind": "io", "message": message}),
        _ => json!({"kind": "other", "message": message}),
    }
}

/// A JSON decoding error: `offset` within the payload, `stream_offset` in
/// the input.
pub fn decode_error_json(err: &DecodeError, payload_offset: u64) -> Value {
    let mut v = match err {
        DecodeError::UnexpectedEnd { .. } => json!({"kind": "unexpected_end"}),
        DecodeError::InvalidCharacter { byte, context, .. } => {
            json!({"kind": "invalid_character", "byte": byte, "context": context.to_string()})
        }
        DecodeError::DepthLimit { limit, .. } => json!({"kind": "depth_limit", "limit": limit}),
        DecodeError::WrongType { field, expected, found, .. } => json!({
            "kind": "wrong_type", "field": field, "expected": expected, "found": found.to_string(),
        }),
        DecodeError::NumberOutOfRange { field, expected, literal, .. } => json!({
            "kind": "number_out_of_range", "field": field, "expected": expected, "literal": literal,
        }),
        _ => json!({"kind": "other"}),
    };
    v["offset"] = json!(err.offset());
    v["stream_offset"] = json!(payload_offset + err.offset() as u64);
    v["message"] = json!(err.to_string());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let mut out = Vec::new();
        write_escaped(&mut out, "a\nb\x1b[31m\u{85}").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\\nb\\u{1b}[31m\\u{85}");
    }

    #[test]
    fn bytes_are_shown_printable() {
        assert_eq!(escape_bytes(b"be\x00\xff\"\\"), "\"be\\x00\\xff\\\"\\\\\"");
    }

    #[test]
    fn json_records_are_one_line_each() {
        let mut p = Printer::new(Vec::new(), true, false);
        p.set_framing("raw");
        let msg = Message::raw().build_header("a", "", 1);
        p.message(3, 10, &msg).unwrap();
        p.error(13, None, &CodecError::LineTooLong { offset: 13, max: 4 }).unwrap();
        p.skipped(13, 5, Some(18), "line").unwrap();
        let (out, stats) = p.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"offset":3,"length":10,"framing":"raw","message":{"header":{"msg_id":"a","timestamp":1},"route":{},"content":null}}"#
        );
        let e: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(e["error"]["kind"], "line_too_long");
        assert_eq!(e["length"], Value::Null);
        assert_eq!(lines[2], r#"{"offset":13,"length":5,"framing":"raw","skipped":5,"resumed_at":18}"#);
        assert_eq!(stats, Stats { frames: 1, messages: 1, errors: 1, skipped: 5 });
    }

    fn decode_error(json: &str) -> DecodeError {
        beehive_model::from_slice(json.as_bytes()).expect_err("not a message")
    }

    #[test]
    fn each_typed_error_keeps_its_kind_and_fields() {
        let v = codec_error_json(&CodecError::UnsupportedVersion { offset: 24, found: b"v2".to_vec() });
        assert_eq!(
            (v["kind"].as_str(), &v["offset"], &v["found"]),
            (Some("unsupported_version"), &json!(24), &json!([118, 50]))
        );
        let v = codec_error_json(&CodecError::Io(io::Error::other("disk gone")));
        assert_eq!(
            (v["kind"].as_str(), v["message"].as_str().is_some_and(|m| m.contains("disk gone"))),
            (Some("io"), true)
        );

        let v = decode_error_json(&decode_error("{x"), 100);
        assert_eq!(v["kind"], "invalid_character");
        assert_eq!(
            (&v["byte"], v["context"].as_str()),
            (&json!(b'x'), Some("looking for beginning of object key string"))
        );
        assert_eq!((&v["offset"], &v["stream_offset"]), (&json!(1), &json!(101)));
        let deep = "[".repeat(20_000);
        let v = decode_error_json(&decode_error(&deep), 0);
        assert_eq!(v["kind"], "depth_limit");
        assert!(v["limit"].as_u64().is_some_and(|l| l > 0 && l < 20_000), "{v}");
        let v = decode_error_json(&decode_error(r#"{"header":{"timestamp":99999999999999999999}}"#), 0);
        assert_eq!(v["kind"], "number_out_of_range");
        assert_eq!((v["literal"].as_str(), v["field"].as_str().is_some()), (Some("99999999999999999999"), true));
    }

    #[test]
    fn text_records_count_what_they_say() {
        let mut p = Printer::new(Vec::new(), false, false);
        p.unrecognised(b"[1").unwrap();
        p.skipped(7, 3, None, "header").unwrap();
        let (out, stats) = p.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("0 - error: cannot recognise the framing: the input starts with \"[1\""),
            "{text}"
        );
        assert_eq!(lines[1], "7 3 skipped 3 bytes to the end of the input (no header found)");
        assert_eq!(stats, Stats { frames: 0, messages: 0, errors: 1, skipped: 3 });
    }

    #[test]
    fn a_skip_in_a_packet_log_ends_at_its_stream_not_the_input() {
        let mut p = Printer::new(Vec::new(), false, false);
        p.set_place(4, Some(1), Some(2), Some("up"), Some("package"));
        p.skipped(7, 3, None, "header").unwrap();
        p.skipped(10, 2, Some(12), "header").unwrap();
        let (out, _) = p.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(" skipped 3 bytes to the end of the stream (header)"), "{text}");
        assert!(lines[1].ends_with(" skipped 2 bytes, resumed at byte 12 (header)"), "{text}");
    }
}
