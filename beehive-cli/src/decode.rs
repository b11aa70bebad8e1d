//! `beehive decode`: every frame of a stream, with offsets and typed errors.
//!
//! The framing is beehive-codec's ([`PackageCodec`], [`RawCodec`]); this
//! module only feeds them the input in chunks, keeps the stream offsets, and
//! decides what happens after an error (go on, stop, or resynchronise).
//!
//! A packet log (`--framing packets`: `beehive record`'s transcripts, the
//! capture sessions) is read line by line: each line carries the bytes of
//! one packet, decoded as beehive-socket decodes a packet, or of one read
//! of a stream transport, joined per connection and direction and split
//! with the same codecs.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use beehive_codec::{CodecError, Framing, PackageCodec, RawCodec, HEADER_LEN};
use beehive_model::{Content, Message, ModuleExchange, Value};
use bytes::{Buf as _, Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

use crate::cli::{DecodeArgs, DecodeFraming};
use crate::report::{Printer, Stats};
use crate::{style, EXIT_FINDINGS, EXIT_OK};

/// Bytes asked for per read of the input.
const READ_SIZE: usize = 1 << 20;
/// Output buffer size.
const WRITE_BUFFER: usize = 1 << 20;
/// What a resynchronisation looks for: magic, version and reserved bytes as
/// Go writes them (a length field follows).
const SYNC: &[u8; 8] = b"beehv1rv";

/// The input: a reader, the bytes read but not yet consumed, and the stream
/// offset of the first of them.
struct Input<R> {
    reader: R,
    buf: BytesMut,
    chunk: Vec<u8>,
    /// Stream offset of `buf[0]`.
    start: u64,
    eof: bool,
    progress: Progress,
}

/// A progress line on stderr, only when stderr is a terminal and only
/// once a run has taken more than a second.
struct Progress {
    enabled: bool,
    /// The input size, when known (a regular file).
    total: Option<u64>,
    read: u64,
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool, total: Option<u64>) -> Self {
        Progress { enabled, total, read: 0, started: Instant::now(), last: None }
    }

    /// Counts `n` more bytes read at `now`; returns the line to draw when
    /// one is due: never in the first second, then at most every 250 ms.
    fn update(&mut self, n: usize, now: Instant) -> Option<String> {
        self.read += n as u64;
        if !self.enabled
            || now - self.started < Duration::from_secs(1)
            || self.last.is_some_and(|l| now - l < Duration::from_millis(250))
        {
            return None;
        }
        self.last = Some(now);
        let mb = self.read as f64 / 1e6;
        Some(match self.total {
            Some(t) if t > 0 => {
                format!("{mb:.0} of {:.0} MB ({:.0}%)", t as f64 / 1e6, self.read as f64 * 100.0 / t as f64)
            }
            _ => format!("{mb:.0} MB"),
        })
    }

    /// Draws the progress line `text` on stderr.
    fn draw(text: &str) {
        let _ = write!(io::stderr().lock(), "\rbeehive: reading… {text}\x1b[K");
    }

    /// Forgets the line drawn, if any; true when there was one to erase.
    fn clear(&mut self) -> bool {
        self.last.take().is_some()
    }
}

impl<R: Read> Input<R> {
    fn new(reader: R, progress: Progress) -> Self {
        Input {
            reader,
            buf: BytesMut::with_capacity(READ_SIZE),
            chunk: vec![0; READ_SIZE],
            start: 0,
            eof: false,
            progress,
        }
    }

    /// One read; sets `eof` when the reader has nothing more.
    fn fill(&mut self) -> io::Result<()> {
        loop {
            match self.reader.read(&mut self.chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&self.chunk[..n]);
                    if let Some(text) = self.progress.update(n, Instant::now()) {
                        Progress::draw(&text);
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until at least `n` bytes are buffered or the input ends.
    fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n && !self.eof {
            self.fill()?;
        }
        Ok(())
    }

    /// Drops `n` buffered bytes.
    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.start += n as u64;
    }

    /// Accounts for `n` bytes a codec removed from the buffer.
    fn consumed(&mut self, n: usize) {
        self.start += n as u64;
    }
}

/// Runs `decode`; the exit code says whether malformed input was found.
pub fn run(args: &DecodeArgs) -> anyhow::Result<u8> {
    let (reader, name, size): (Box<dyn Read>, String, Option<u64>) = match &args.input {
        None => (Box::new(io::stdin().lock()), "stdin".to_owned(), None),
        Some(p) if p.as_os_str() == "-" => (Box::new(io::stdin().lock()), "stdin".to_owned(), None),
        Some(p) => {
            let file = open(p)?;
            let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            (Box::new(file), p.display().to_string(), size)
        }
    };
    let color = style::stdout_colored();
    let out = BufWriter::with_capacity(WRITE_BUFFER, io::stdout().lock());
    let mut printer = Printer::new(out, args.json, color);
    let mut input = Input::new(reader, Progress::new(io::stderr().is_terminal() && !io::stdout().is_terminal(), size));
    let decoded = decode_stream(&mut input, &mut printer, args).with_context(|| format!("cannot read {name}"));
    if input.progress.clear() {
        let _ = write!(io::stderr().lock(), "\r\x1b[K");
    }
    let (framing, lines) = decoded?;
    let (_, stats) = printer.finish().context("cannot write to stdout")?;
    if !args.json {
        let stopped = !input.eof || !input.buf.is_empty();
        summary(&name, framing, &stats, lines, input.start, stopped);
    }
    Ok(if stats.errors > 0 { EXIT_FINDINGS } else { EXIT_OK })
}

fn open(path: &Path) -> anyhow::Result<File> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        anyhow::bail!("cannot read {}: it is a directory", path.display());
    }
    Ok(file)
}

/// `beehive: FILE: package, 4 frames, 4 messages, 0 errors, 735 bytes` on
/// stderr (`stopped at byte N` instead of the size when decoding stopped
/// early; the number of lines before the size for a packet log).
fn summary(name: &str, framing: &str, stats: &Stats, lines: Option<u64>, bytes: u64, stopped: bool) {
    let color = style::stderr_colored();
    let mut err = io::stderr().lock();
    let mut text = format!(
        "beehive: {name}: {framing}, {}, {} {}, {}",
        plural(stats.frames, "frame"),
        stats.messages,
        if stats.messages == 1 { "message" } else { "messages" },
        plural(stats.errors, "error"),
    );
    if stats.skipped > 0 {
        text.push_str(&format!(", {} skipped", plural(stats.skipped, "byte")));
    }
    if let Some(lines) = lines {
        text.push_str(&format!(", {}", plural(lines, "line")));
    }
    if stopped {
        text.push_str(&format!(", stopped at byte {bytes}"));
    } else {
        text.push_str(&format!(", {}", plural(bytes, "byte")));
    }
    let style = if stats.errors > 0 { style::ERROR } else { style::DIM };
    let _ = style::paint(&mut err, color, style, &text);
    let _ = writeln!(err);
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Decodes the whole input; returns the framing used, and for a packet log
/// the number of its lines.
fn decode_stream<R: Read, W: Write>(
    input: &mut Input<R>,
    p: &mut Printer<W>,
    args: &DecodeArgs,
) -> io::Result<(&'static str, Option<u64>)> {
    let max = args.max_frame_len as usize;
    let framing = match args.framing {
        DecodeFraming::Auto => {
            input.fill_to(MAGIC.len())?;
            match recognise(&input.buf) {
                Some(DecodeFraming::Raw) if is_packet_log(input, line_limit(max))? => DecodeFraming::Packets,
                Some(f) => f,
                None => {
                    p.unrecognised(&input.buf[..input.buf.len().min(8)])?;
                    return Ok(("unrecognised", None));
                }
            }
        }
        f => f,
    };
    match framing {
        DecodeFraming::Package => {
            p.set_framing("package");
            package(input, p, max, args.resync)?;
            Ok(("package", None))
        }
        DecodeFraming::Packets => {
            p.set_framing("packets");
            let lines = packets(input, p, max)?;
            Ok(("packets", Some(lines)))
        }
        _ => {
            p.set_framing("raw");
            raw(input, p, max)?;
            Ok(("raw", None))
        }
    }
}

const MAGIC: &[u8; 4] = b"beeh";

/// The `auto` rule: Package when the input starts with the magic `beeh`
/// (or, when shorter than four bytes, with a prefix of it); Raw when it is
/// empty or starts with `{` or JSON whitespace (unless [`is_packet_log`]);
/// otherwise unrecognised.
fn recognise(head: &[u8]) -> Option<DecodeFraming> {
    let n = head.len().min(MAGIC.len());
    match head.first() {
        None => Some(DecodeFraming::Raw),
        Some(_) if head[..n] == MAGIC[..n] => Some(DecodeFraming::Package),
        Some(b'{' | b' ' | b'\t' | b'\r' | b'\n') => Some(DecodeFraming::Raw),
        Some(_) => None,
    }
}

fn is_json_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// What `auto` looks at in the first line of an input that starts like Raw.
#[derive(Deserialize)]
struct Probe {
    dir: Option<IgnoredAny>,
    data_b64: Option<IgnoredAny>,
    text: Option<IgnoredAny>,
    text_b64: Option<IgnoredAny>,
    header: Option<IgnoredAny>,
    route: Option<IgnoredAny>,
}

/// The `auto` rule for packet logs, on an input that starts like Raw: its
/// first non-blank line (read up to `limit` bytes, nothing consumed) is a
/// JSON object with a `dir` key and a `data_b64`, `text` or `text_b64` key,
/// and without the `header` and `route` keys of a message.
fn is_packet_log<R: Read>(input: &mut Input<R>, limit: usize) -> io::Result<bool> {
    let mut searched = 0;
    let start = loop {
        if let Some(i) = input.buf[searched..].iter().position(|b| !is_json_space(b)) {
            break searched + i;
        }
        searched = input.buf.len();
        if input.eof || searched > limit {
            return Ok(false);
        }
        input.fill()?;
    };
    if input.buf[start] != b'{' {
        return Ok(false);
    }
    let mut searched = start;
    let end = loop {
        if let Some(i) = memchr::memchr(b'\n', &input.buf[searched..]) {
            break searched + i;
        }
        searched = input.buf.len();
        if input.eof {
            break searched;
        }
        if searched - start > limit {
            return Ok(false);
        }
        input.fill()?;
    };
    let probe = serde_json::from_slice::<Probe>(&input.buf[start..end]);
    Ok(probe.is_ok_and(|l| {
        l.dir.is_some()
            && (l.data_b64.is_some() || l.text.is_some() || l.text_b64.is_some())
            && l.header.is_none()
            && l.route.is_none()
    }))
}

/// Prints one frame: its message, or why its payload is not one.
fn frame<W: Write>(
    p: &mut Printer<W>,
    offset: u64,
    length: u64,
    payload_offset: u64,
    payload: &Bytes,
) -> io::Result<()> {
    // The lazy decoder accepts and rejects exactly what `from_slice` does
    // and re-encodes byte-exactly, without building values for content
    // that is already in Go's form.
    match beehive_model::json::from_bytes_lazy(payload) {
        Ok(msg) => p.message(offset, length, &msg),
        Err(e) => p.invalid_message(offset, length, payload_offset, e),
    }
}

/// Package framing: a broken frame stops decoding, or with `resync`
/// skips to the next valid header.
fn package<R: Read, W: Write>(input: &mut Input<R>, p: &mut Printer<W>, max: usize, resync: bool) -> io::Result<()> {
    let new_codec =
        || PackageCodec::with_max_frame_len(max).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let mut codec = new_codec()?;
    let mut base = input.start;
    loop {
        let before = input.buf.len();
        let r = if input.eof { codec.decode_frame_eof(&mut input.buf) } else { codec.decode_frame(&mut input.buf) };
        match r {
            Ok(Some(payload)) => {
                let len = before - input.buf.len();
                let offset = input.start;
                input.consumed(len);
                frame(p, offset, len as u64, offset + HEADER_LEN as u64, &payload)?;
            }
            Ok(None) if input.eof => return Ok(()),
            Ok(None) => input.fill()?,
            Err(CodecError::Io(e)) => return Err(e),
            Err(e) => {
                // Nothing of a broken frame is consumed: it starts at `input.start`.
                p.error(input.start, None, &shift(e, base))?;
                if !resync {
                    return Ok(());
                }
                resynchronise(input, p, max)?;
                codec = new_codec()?;
                base = input.start;
            }
        }
    }
}

/// Skips from the broken frame at `input.start` to the next header that
/// reads `beehv1rv` and carries a length from 0 to `max - 12`, or to the
/// end of the input; reports how many bytes it skipped.
fn resynchronise<R: Read, W: Write>(input: &mut Input<R>, p: &mut Printer<W>, max: usize) -> io::Result<()> {
    let from = input.start;
    input.fill_to(1)?;
    input.advance(input.buf.len().min(1));
    let resumed = loop {
        match memchr::memmem::find(&input.buf, SYNC) {
            Some(i) if input.buf.len() >= i + HEADER_LEN => {
                let l = &input.buf[i + SYNC.len()..i + HEADER_LEN];
                let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
                if usize::try_from(len).is_ok_and(|len| len <= max - HEADER_LEN) {
                    input.advance(i);
                    break Some(input.start);
                }
                input.advance(i + 1);
            }
            Some(i) => {
                // A candidate whose length field has not arrived yet.
                if input.eof {
                    input.advance(input.buf.len());
                    break None;
                }
                input.advance(i);
                input.fill()?;
            }
            None => {
                // Keep a tail that may be the start of a header.
                let keep = input.buf.len().min(SYNC.len() - 1);
                input.advance(input.buf.len() - keep);
                if input.eof {
                    input.advance(keep);
                    break None;
                }
                input.fill()?;
            }
        }
    };
    p.skipped(from, input.start - from, resumed, "valid package header")
}

/// Raw framing: a line too long is reported and skipped; decoding goes on
/// at the next line.
fn raw<R: Read, W: Write>(input: &mut Input<R>, p: &mut Printer<W>, max: usize) -> io::Result<()> {
    let new_codec = || RawCodec::with_max_line_len(max).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let mut codec = new_codec()?;
    let mut base = input.start;
    loop {
        let before = input.buf.len();
        let r = if input.eof { codec.decode_frame_eof(&mut input.buf) } else { codec.decode_frame(&mut input.buf) };
        // Blank lines are consumed even when no frame comes back.
        input.consumed(before - input.buf.len());
        match r {
            Ok(Some(line)) => {
                let offset = base + codec.last_frame_offset();
                frame(p, offset, line.len() as u64, offset, &line)?;
            }
            Ok(None) if input.eof => return Ok(()),
            Ok(None) => input.fill()?,
            Err(CodecError::Io(e)) => return Err(e),
            Err(e @ CodecError::LineTooLong { .. }) => {
                p.error(input.start, None, &shift(e, base))?;
                skip_line(input, p)?;
                codec = new_codec()?;
                base = input.start;
            }
            Err(e) => {
                p.error(input.start, None, &shift(e, base))?;
                return Ok(());
            }
        }
    }
}

/// Skips to just after the next line feed (or the end of the input).
fn skip_line<R: Read, W: Write>(input: &mut Input<R>, p: &mut Printer<W>) -> io::Result<()> {
    let from = input.start;
    let resumed = loop {
        if let Some(i) = memchr::memchr(b'\n', &input.buf) {
            input.advance(i + 1);
            break Some(input.start);
        }
        input.advance(input.buf.len());
        if input.eof {
            break None;
        }
        input.fill()?;
    };
    p.skipped(from, input.start - from, resumed, "next line")
}

/// The longest packet log line accepted, for packets of at most `max`
/// bytes: as `text`, a byte may take six characters (`\u0000`).
fn line_limit(max: usize) -> usize {
    max.saturating_mul(6).saturating_add(4096)
}

/// Packet log: one packet (or stream read) per line. A line that holds no
/// packet is reported and decoding goes on at the next line; the streams
/// of stream transports are finished at the end of the input. Returns the
/// number of lines.
fn packets<R: Read, W: Write>(input: &mut Input<R>, p: &mut Printer<W>, max: usize) -> io::Result<u64> {
    let limit = line_limit(max);
    let mut log = PacketLog::new(max);
    let mut line = 0u64;
    let mut searched = 0;
    loop {
        if let Some(i) = memchr::memchr(b'\n', &input.buf[searched..]) {
            let len = searched + i;
            line += 1;
            if len > limit {
                line_too_long(p, line, input.start, len as u64, limit)?;
            } else {
                log.line(p, line, input.start, &input.buf[..len])?;
            }
            input.advance(len + 1);
            searched = 0;
        } else if input.buf.len() > limit {
            line += 1;
            let at = input.start;
            let length = skip_to_line_feed(input)?;
            line_too_long(p, line, at, length, limit)?;
            searched = 0;
        } else if input.eof {
            if !input.buf.is_empty() {
                line += 1;
                log.line(p, line, input.start, &input.buf)?;
                input.advance(input.buf.len());
            }
            break;
        } else {
            searched = input.buf.len();
            input.fill()?;
        }
    }
    log.finish(p)?;
    Ok(line)
}

/// A log line over the limit (at byte `at` of the input), skipped.
fn line_too_long<W: Write>(p: &mut Printer<W>, line: u64, at: u64, length: u64, limit: usize) -> io::Result<()> {
    p.set_place(line, None, None, None, None);
    let message = format!("line of {length} bytes at byte {at} exceeds the maximum of {limit} bytes; skipped");
    let error = json!({"kind": "line_too_long", "input_offset": at, "max": limit, "message": message});
    p.place_error(None, Some(length), &message, error)
}

/// Drops the input up to and including the next line feed (or to its end);
/// returns how many bytes that was, the line feed not counted.
fn skip_to_line_feed<R: Read>(input: &mut Input<R>) -> io::Result<u64> {
    let mut skipped = 0;
    loop {
        if let Some(i) = memchr::memchr(b'\n', &input.buf) {
            input.advance(i + 1);
            return Ok(skipped + i as u64);
        }
        skipped += input.buf.len() as u64;
        input.advance(input.buf.len());
        if input.eof {
            return Ok(skipped);
        }
        input.fill()?;
    }
}

/// One line of a packet log: `beehive record`'s (`conn`, `seq`, `dir`,
/// `t_ns`, `transport`, `len`, `data_b64`) or a capture session's (`seq`,
/// `dir`, `text` or `text_b64`, `bytes`). Other keys are ignored.
#[derive(Deserialize)]
struct LogLine<'a> {
    conn: Option<u64>,
    seq: Option<u64>,
    #[serde(borrow)]
    dir: Option<Cow<'a, str>>,
    #[serde(borrow)]
    transport: Option<Cow<'a, str>>,
    len: Option<u64>,
    bytes: Option<u64>,
    #[serde(borrow)]
    data_b64: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text_b64: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

/// Why a log line holds no packet.
struct BadLine(String);

/// A connection's direction (conn, dir) and whether its lines are stream reads.
type DirectionKey = (Option<u64>, Option<String>, bool);

/// The state of a packet log: per connection and direction, the bytes seen
/// so far, and for stream transports the stream being split.
struct PacketLog {
    max: usize,
    directions: Vec<Direction>,
    index: HashMap<DirectionKey, usize>,
    /// Scratch for re-encodings.
    scratch: Vec<u8>,
}

struct Direction {
    conn: Option<u64>,
    dir: Option<String>,
    /// Packet transports: bytes of the packets so far (the next packet's offset).
    carried: u64,
    /// Stream transports: the stream.
    stream: Option<Stream>,
}

/// The bytes of a stream transport's reads, joined, being split into frames.
struct Stream {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// Stream offset where the current codec started.
    base: u64,
    /// Chosen from the first bytes (as `auto` chooses).
    codec: Option<(Box<dyn Framing>, &'static str)>,
    state: StreamState,
    /// The reads that may still hold the start of a frame: stream offset,
    /// log line, `seq`.
    reads: VecDeque<(u64, u64, Option<u64>)>,
}

enum StreamState {
    Live,
    /// After a Raw line over the limit: dropping bytes up to the next line feed.
    SkipLine {
        from: u64,
    },
    /// After a broken Package frame or an unrecognised start: the rest of
    /// the stream is not decoded.
    Broken {
        from: u64,
    },
}

impl PacketLog {
    fn new(max: usize) -> Self {
        PacketLog { max, directions: Vec::new(), index: HashMap::new(), scratch: Vec::new() }
    }

    /// One line, `at` its byte offset in the input, without its line feed.
    fn line<W: Write>(&mut self, p: &mut Printer<W>, line: u64, at: u64, text: &[u8]) -> io::Result<()> {
        let Some(first) = text.iter().find(|b| !is_json_space(b)) else {
            return Ok(()); // blank
        };
        let parsed = if *first == b'{' {
            serde_json::from_slice::<LogLine<'_>>(text)
                .map_err(|e| BadLine(format!("not a packet log line: {}", json_error(&e))))
        } else {
            Err(BadLine("not a JSON object".to_owned()))
        };
        let l = match parsed {
            Ok(l) => l,
            Err(BadLine(message)) => {
                p.set_place(line, None, None, None, None);
                return bad_line(p, at, text.len(), &message);
            }
        };
        p.set_place(line, l.conn, l.seq, l.dir.as_deref(), None);
        let stream = match l.transport.as_deref() {
            None | Some("unixpacket") => false,
            Some("unix" | "tcp") => true,
            Some(t) => {
                return bad_line(p, at, text.len(), &format!("unknown transport {t:?} (unixpacket, unix or tcp)"))
            }
        };
        let data = match packet_bytes(&l) {
            Ok(d) => d,
            Err(BadLine(message)) => return bad_line(p, at, text.len(), &message),
        };
        let key = (l.conn, l.dir.as_deref().map(str::to_owned), stream);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let (conn, dir, stream) = key.clone();
                self.directions.push(Direction { conn, dir, carried: 0, stream: stream.then(Stream::new) });
                self.index.insert(key, self.directions.len() - 1);
                self.directions.len() - 1
            }
        };
        let d = &mut self.directions[i];
        match &mut d.stream {
            Some(s) => {
                s.push(line, l.seq, &data);
                s.drain(p, (d.conn, d.dir.as_deref()), self.max, false, &mut self.scratch)
            }
            None => {
                let offset = d.carried;
                d.carried += data.len() as u64;
                self.packet(p, offset, Bytes::from(data))
            }
        }
    }

    /// One packet: one message as Go writes it, decoded as beehive-socket's
    /// session decodes a packet.
    fn packet<W: Write>(&mut self, p: &mut Printer<W>, offset: u64, packet: Bytes) -> io::Result<()> {
        let length = packet.len() as u64;
        if packet.len() > self.max {
            p.stats.frames += 1;
            return p.error(offset, Some(length), &CodecError::PacketTooLarge { max: self.max });
        }
        match beehive_codec::raw::packet::decode_lazy(&packet) {
            Ok(msg) => {
                let written = packet.strip_suffix(b"\n").unwrap_or(&packet);
                let msg = as_go_wrote(msg, written, &mut self.scratch);
                p.message(offset, length, &msg)
            }
            Err(CodecError::Json { source, .. }) => p.invalid_message(offset, length, offset, source),
            Err(e) => {
                p.stats.frames += 1;
                p.error(offset, Some(length), &e)
            }
        }
    }

    /// The end of the input: every stream's last frame, and what could not
    /// be decoded.
    fn finish<W: Write>(&mut self, p: &mut Printer<W>) -> io::Result<()> {
        for d in &mut self.directions {
            if let Some(s) = &mut d.stream {
                s.drain(p, (d.conn, d.dir.as_deref()), self.max, true, &mut self.scratch)?;
            }
        }
        Ok(())
    }
}

/// A line that holds no packet, reported.
fn bad_line<W: Write>(p: &mut Printer<W>, at: u64, length: usize, message: &str) -> io::Result<()> {
    let error = json!({"kind": "bad_line", "input_offset": at, "message": message});
    p.place_error(None, Some(length as u64), message, error)
}

/// A serde_json error as `MESSAGE at column N` (the log line is its line 1).
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let what = text.rsplit_once(" at line ").map_or(text.as_str(), |(what, _)| what);
    format!("{what} at column {}", e.column())
}

/// The packet's bytes: `data_b64`, `text_b64` or `text` (the first present),
/// checked against `len` or `bytes` when given.
fn packet_bytes(l: &LogLine<'_>) -> Result<Vec<u8>, BadLine> {
    let b64 = |key: &str, s: &str| {
        base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| BadLine(format!("{key} is not base64: {e}")))
    };
    let data = match (&l.data_b64, &l.text_b64, &l.text) {
        (Some(d), _, _) => b64("data_b64", d)?,
        (None, Some(t), _) => b64("text_b64", t)?,
        (None, None, Some(t)) => t.as_bytes().to_vec(),
        (None, None, None) => return Err(BadLine("no packet bytes (data_b64, text_b64 or text)".to_owned())),
    };
    for (key, n) in [("len", l.len), ("bytes", l.bytes)] {
        if let Some(n) = n.filter(|&n| n != data.len() as u64) {
            return Err(BadLine(format!("{key} is {n} but the line holds {} bytes", data.len())));
        }
    }
    Ok(data)
}

impl Stream {
    fn new() -> Self {
        Stream {
            buf: BytesMut::new(),
            start: 0,
            base: 0,
            codec: None,
            state: StreamState::Live,
            reads: VecDeque::new(),
        }
    }

    /// The bytes of one read (log line `line`).
    fn push(&mut self, line: u64, seq: Option<u64>, data: &[u8]) {
        if let StreamState::Broken { .. } = self.state {
            // Only counted; nothing will point at them.
            self.start += data.len() as u64;
            return;
        }
        let end = self.start + self.buf.len() as u64;
        self.reads.push_back((end, line, seq));
        self.buf.extend_from_slice(data);
    }

    /// Points the printer at the read holding stream offset `offset`.
    /// Offsets come in increasing order, so earlier reads are dropped.
    fn place<W: Write>(&mut self, p: &mut Printer<W>, (conn, dir): (Option<u64>, Option<&str>), offset: u64) {
        while self.reads.get(1).is_some_and(|r| r.0 <= offset) {
            self.reads.pop_front();
        }
        let (line, seq) = self.reads.front().map_or((0, None), |r| (r.1, r.2));
        p.set_place(line, conn, seq, dir, Some(self.codec.as_ref().map_or("unrecognised", |c| c.1)));
    }

    /// Splits off and prints every complete frame (with `eof`, the last
    /// ones too).
    fn drain<W: Write>(
        &mut self,
        p: &mut Printer<W>,
        who: (Option<u64>, Option<&str>),
        max: usize,
        eof: bool,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        loop {
            match self.state {
                StreamState::Live => {}
                StreamState::SkipLine { from } => {
                    if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                        self.advance(i + 1);
                        self.place(p, who, from);
                        p.skipped(from, self.start - from, Some(self.start), "next line")?;
                        self.state = StreamState::Live;
                        self.codec = None;
                        self.base = self.start;
                        continue;
                    }
                    self.advance(self.buf.len());
                    if eof {
                        self.place(p, who, from);
                        p.skipped(from, self.start - from, None, "no line feed after the long line")?;
                    }
                    return Ok(());
                }
                StreamState::Broken { from } => {
                    if eof && self.start > from {
                        self.place(p, who, from);
                        p.skipped(from, self.start - from, None, "not decoded after the error")?;
                    }
                    return Ok(());
                }
            }
            if self.codec.is_none() {
                if self.buf.is_empty() || (self.buf.len() < MAGIC.len() && !eof) {
                    return Ok(());
                }
                let codec: (Box<dyn Framing>, &'static str) = match recognise(&self.buf) {
                    Some(DecodeFraming::Package) => (Box::new(package_codec(max)?), "package"),
                    Some(_) => (Box::new(raw_codec(max)?), "raw"),
                    None => {
                        let at = self.start;
                        self.place(p, who, at);
                        let found = &self.buf[..self.buf.len().min(8)];
                        let message = format!(
                            "cannot recognise the framing of the stream: it starts with {} (Package starts with \
                             \"beeh\", Raw with '{{' or whitespace)",
                            crate::report::escape_bytes(found)
                        );
                        let error = json!({
                            "kind": "unrecognised_framing", "offset": at, "found": found, "message": message,
                        });
                        p.place_error(Some(at), None, &message, error)?;
                        self.break_off(at);
                        continue;
                    }
                };
                self.codec = Some(codec);
                self.base = self.start;
            }
            let Some((codec, framing)) = &mut self.codec else { return Ok(()) };
            let package = *framing == "package";
            let before = self.buf.len();
            let r = if eof { codec.decode_frame_eof(&mut self.buf) } else { codec.decode_frame(&mut self.buf) };
            let at = self.start;
            // Raw: blank lines are consumed even when no frame comes back.
            self.start += (before - self.buf.len()) as u64;
            match r {
                Ok(Some(payload)) => {
                    let (offset, length, payload_offset) = if package {
                        (at, self.start - at, at + HEADER_LEN as u64)
                    } else {
                        let offset = self.base + codec.last_frame_offset();
                        (offset, payload.len() as u64, offset)
                    };
                    self.place(p, who, offset);
                    match beehive_model::json::from_bytes_lazy(&payload) {
                        Ok(msg) => p.message(offset, length, &as_go_wrote(msg, &payload, scratch))?,
                        Err(e) => p.invalid_message(offset, length, payload_offset, e)?,
                    }
                }
                Ok(None) => return Ok(()),
                Err(CodecError::Io(e)) => return Err(e),
                Err(e) => {
                    let at = self.start;
                    let long_line = matches!(e, CodecError::LineTooLong { .. });
                    let e = shift(e, self.base);
                    self.place(p, who, at);
                    p.error(at, None, &e)?;
                    if long_line {
                        self.state = StreamState::SkipLine { from: at };
                    } else if eof {
                        // The error (a truncated frame) covers the bytes left.
                        self.break_off(self.start + self.buf.len() as u64);
                    } else {
                        self.break_off(at);
                    }
                }
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.start += n as u64;
    }

    /// Gives up on the stream from `from` on: what is buffered is dropped
    /// (and counted when the stream ends).
    fn break_off(&mut self, from: u64) {
        self.advance(self.buf.len());
        self.buf = BytesMut::new();
        self.state = StreamState::Broken { from };
    }
}

fn package_codec(max: usize) -> io::Result<PackageCodec> {
    PackageCodec::with_max_frame_len(max).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn raw_codec(max: usize) -> io::Result<RawCodec> {
    RawCodec::with_max_line_len(max).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// The message as Go wrote it when `written` (its JSON as it went over the
/// socket) shows how: Go writes the handshake answer from its
/// `*socket.ModuleExchange` struct, `modules` before `groups`, while decoded
/// content is a map written back with its keys sorted. Any other message
/// is returned as decoded.
///
/// Content written with sorted keys comes from the lazy decoder as raw
/// bytes and is written back as it came; only an object decoded into a
/// [`Value`] (its keys were out of order, or spaced) can be such a struct.
fn as_go_wrote(msg: Message, written: &[u8], scratch: &mut Vec<u8>) -> Message {
    let Content::Value(value @ Value::Object(_)) = msg.content() else { return msg };
    let Some(exchange) = ModuleExchange::from_value(value) else { return msg };
    let as_struct = msg.clone().fill_body(Content::ModuleExchange(exchange));
    scratch.clear();
    match beehive_model::encode_into(&as_struct, scratch) {
        Ok(()) if scratch.as_slice() == written => as_struct,
        _ => msg,
    }
}

/// The error with its offsets counted from the start of the input instead
/// of from `base`, where the codec that found it started.
fn shift(e: CodecError, base: u64) -> CodecError {
    match e {
        CodecError::BadMagic { offset, found } => CodecError::BadMagic { offset: offset + base, found },
        CodecError::UnsupportedVersion { offset, found } => {
            CodecError::UnsupportedVersion { offset: offset + base, found }
        }
        CodecError::NegativeLength { offset, length } => CodecError::NegativeLength { offset: offset + base, length },
        CodecError::FrameTooLarge { offset, frame_len, max } => {
            CodecError::FrameTooLarge { offset: offset + base, frame_len, max }
        }
        CodecError::Truncated { offset, needed, available } => {
            CodecError::Truncated { offset: offset + base, needed, available }
        }
        CodecError::LineTooLong { offset, max } => CodecError::LineTooLong { offset: offset + base, max },
        CodecError::Json { offset, source } => CodecError::Json { offset: offset + base, source },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], framing: DecodeFraming, resync: bool, max: u64) -> (String, Stats) {
        let args = DecodeArgs { input: None, framing, json: false, resync, max_frame_len: max };
        let mut p = Printer::new(Vec::new(), false, false);
        let mut input = Input::new(one_byte(input), Progress::new(false, None));
        decode_stream(&mut input, &mut p, &args).unwrap();
        let (out, stats) = p.finish().unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    /// A reader giving at most `.1` bytes per read.
    struct Chunks<'a>(&'a [u8], usize);
    impl Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// One byte per read: every split point of the input is exercised.
    fn one_byte(data: &[u8]) -> Chunks<'_> {
        Chunks(data, 1)
    }

    const MSG: &[u8] = br#"{"header":{"msg_id":"a","timestamp":1},"route":{},"content":null}"#;

    fn frame_of(payload: &[u8]) -> Vec<u8> {
        let mut v = b"beehv1rv".to_vec();
        v.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn progress_shows_after_a_second_then_every_quarter_second() {
        let mut p = Progress::new(true, Some(4_000_000));
        let t0 = p.started;
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(p.update(1_000_000, ms(999)), None);
        assert_eq!(p.update(0, ms(1000)).as_deref(), Some("1 of 4 MB (25%)"));
        assert_eq!(p.update(1_000_000, ms(1249)), None);
        assert_eq!(p.update(0, ms(1250)).as_deref(), Some("2 of 4 MB (50%)"));
        assert_eq!(p.update(2_000_000, ms(1250)), None);
        assert_eq!(p.update(0, ms(5000)).as_deref(), Some("4 of 4 MB (100%)"));
        assert!(p.clear(), "a line was drawn");
        assert!(!p.clear(), "it is erased once");
    }

    #[test]
    fn progress_without_a_known_size_counts_megabytes() {
        for total in [None, Some(0)] {
            let mut p = Progress::new(true, total);
            let later = p.started + Duration::from_secs(2);
            assert_eq!(p.update(3_000_000, later).as_deref(), Some("3 MB"), "{total:?}");
        }
    }

    #[test]
    fn progress_stays_silent_when_disabled() {
        let mut p = Progress::new(false, Some(10));
        assert_eq!(p.update(5, p.started + Duration::from_secs(10)), None);
        assert!(!p.clear());
    }

    /// A reader that fails with each of `errors` in turn, then reads `data`.
    struct Failing<'a> {
        errors: Vec<io::ErrorKind>,
        data: &'a [u8],
    }
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.errors.is_empty() {
                return Err(self.errors.remove(0).into());
            }
            one_byte(self.data).read(buf).inspect(|&n| self.data = &self.data[n..])
        }
    }

    #[test]
    fn an_interrupted_read_is_retried_and_other_errors_are_reported() {
        let reader = Failing { errors: vec![io::ErrorKind::Interrupted; 3], data: b"ab" };
        let mut input = Input::new(reader, Progress::new(false, None));
        input.fill_to(2).unwrap();
        assert_eq!(&input.buf[..], b"ab");
        assert!(!input.eof);
        input.fill().unwrap();
        assert!(input.eof);

        let reader = Failing { errors: vec![io::ErrorKind::BrokenPipe, io::ErrorKind::Interrupted], data: b"ab" };
        let mut input = Input::new(reader, Progress::new(false, None));
        assert_eq!(input.fill().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert!(input.buf.is_empty());
    }

    #[test]
    fn auto_tells_a_packet_log_from_a_raw_stream() {
        let probe = |text: &[u8]| {
            let mut input = Input::new(one_byte(text), Progress::new(false, None));
            is_packet_log(&mut input, 1 << 20).unwrap()
        };
        assert!(probe(b"\n {\"seq\":1,\"dir\":\"client_to_server\",\"text\":\"x\",\"bytes\":1}\n{"));
        assert!(probe(br#"{"conn":1,"seq":1,"dir":"server_to_client","transport":"unix","len":0,"data_b64":""}"#));
        assert!(!probe(MSG));
        assert!(!probe(br#"{"header":{},"route":{},"dir":"x","text":"y"}"#));
        assert!(!probe(br#"{"dir":"x"}"#));
        assert!(!probe(b"{\"dir\":\"x\",\n\"text\":\"y\"}"));
        assert!(!probe(b" \n"));
    }

    #[test]
    fn auto_looks_for_a_packet_log_line_within_the_limit_only() {
        let line = br#"{"dir":"x","text":"y"}"#;
        let limit = line.len();
        let probe = |blank: usize, limit: usize| {
            let mut text = vec![b' '; blank];
            text.extend_from_slice(line);
            text.push(b'\n');
            let mut input = Input::new(one_byte(&text), Progress::new(false, None));
            is_packet_log(&mut input, limit).unwrap()
        };
        // A line of exactly the limit, after as many blank bytes, is looked at.
        assert!(probe(limit, limit));
        assert!(probe(2, limit));
        // One more blank byte, or one byte less of limit, and it is not.
        assert!(!probe(limit + 1, limit));
        assert!(!probe(0, limit - 1));
    }

    #[test]
    fn the_handshake_answer_keeps_gos_key_order() {
        let written =
            br#"{"header":{"msg_id":"a","timestamp":1},"route":{},"content":{"modules":["m"],"groups":{"m":["m"]}}}"#;
        let mut scratch = Vec::new();
        let msg = beehive_model::json::from_bytes_lazy(&Bytes::from_static(written)).unwrap();
        let sorted = beehive_model::to_vec(&msg).unwrap();
        assert_ne!(&sorted[..], &written[..]);
        let msg = as_go_wrote(msg, written, &mut scratch);
        assert_eq!(beehive_model::to_vec(&msg).unwrap(), written);
        // Written sorted, it stays sorted.
        let msg = beehive_model::json::from_bytes_lazy(&Bytes::from(sorted.clone())).unwrap();
        assert_eq!(beehive_model::to_vec(&as_go_wrote(msg, &sorted, &mut scratch)).unwrap(), sorted);
        // Spaced, it is not what Go writes from the struct: it is written sorted.
        let spaced =
            br#"{"header":{"msg_id":"a","timestamp":1},"route":{},"content":{"modules": ["m"],"groups":{"m":["m"]}}}"#;
        let msg = beehive_model::json::from_bytes_lazy(&Bytes::from_static(spaced)).unwrap();
        assert_eq!(beehive_model::to_vec(&as_go_wrote(msg, spaced, &mut scratch)).unwrap(), sorted);
    }

    #[test]
    fn auto_rule() {
        assert_eq!(recognise(b""), Some(DecodeFraming::Raw));
        assert_eq!(recognise(b"be"), Some(DecodeFraming::Package));
        assert_eq!(recognise(b"beehv1"), Some(DecodeFraming::Package));
        assert_eq!(recognise(b"\r\n{"), Some(DecodeFraming::Raw));
        assert_eq!(recognise(b"bex"), None);
        assert_eq!(recognise(b"[1]"), None);
    }

    #[test]
    fn resync_from_a_split_input_skips_exactly() {
        let mut input = frame_of(MSG);
        input.extend_from_slice(b"garbage beehv1rv\xff\xff\xff\xff beehv");
        let resume = input.len();
        input.extend_from_slice(&frame_of(MSG));
        let (out, stats) = decode(&input, DecodeFraming::Package, true, 1 << 20);
        let skipped = (resume - MSG.len() - 12) as u64;
        assert_eq!(stats, Stats { frames: 2, messages: 2, errors: 1, skipped }, "{out}");
        assert!(out.contains(&format!("skipped {skipped} bytes, resumed at byte {resume}")), "{out}");
    }

    #[test]
    fn resync_passes_over_a_header_whose_frame_would_exceed_the_maximum() {
        let max = 100;
        // 95 fits in a 100-byte frame's length field but not with the header.
        let mut input = frame_of(MSG);
        let broken = input.len();
        input.extend_from_slice(b"xxbeehv1rv");
        input.extend_from_slice(&95i32.to_be_bytes());
        let resume = input.len();
        input.extend_from_slice(&frame_of(MSG));
        let (out, stats) = decode(&input, DecodeFraming::Package, true, max);
        let skipped = (resume - broken) as u64;
        assert_eq!(stats, Stats { frames: 2, messages: 2, errors: 1, skipped }, "{out}");
        assert!(out.contains(&format!("skipped {skipped} bytes, resumed at byte {resume}")), "{out}");
    }

    #[test]
    fn a_packet_log_line_of_exactly_the_limit_is_read() {
        let max = 64;
        let limit = line_limit(max as usize);
        let line = |len: usize| {
            let mut l = text_line(MSG, len);
            l.push(b'\n');
            l
        };
        let (out, stats) = decode(&line(limit), DecodeFraming::Packets, false, max);
        assert!(!out.contains("exceeds the maximum"), "{out}");
        // The packet itself is over the maximum: one error, for it.
        assert_eq!(stats.errors, 1, "{out}");
        assert!(out.contains("error: packet larger than the maximum of 64 bytes"), "{out}");
        let (out, stats) = decode(&line(limit + 1), DecodeFraming::Packets, false, max);
        assert!(
            out.contains(&format!("line of {} bytes at byte 0 exceeds the maximum of {limit} bytes", limit + 1)),
            "{out}"
        );
        assert_eq!(stats.errors, 1, "{out}");
    }

    /// A packet log line holding `data` as `text`, `len` bytes long
    /// (padded with an ignored key), without its line feed.
    fn text_line(data: &[u8], len: usize) -> Vec<u8> {
        let mut l = format!(
            r#"{{"dir":"d","text":{},"pad":""#,
            serde_json::to_string(std::str::from_utf8(data).unwrap()).unwrap()
        )
        .into_bytes();
        assert!(l.len() + 2 <= len, "{len} is too short");
        l.resize(len - 2, b'a');
        l.extend_from_slice(b"\"}");
        l
    }

    #[test]
    fn packet_log_lines_are_numbered_through_long_lines_and_a_last_line_without_a_line_feed() {
        // The message is exactly as long as the maximum packet.
        let max = MSG.len();
        let limit = line_limit(max);
        let mut input = text_line(MSG, limit + 7);
        input.push(b'\n');
        input.extend_from_slice(&text_line(MSG, limit + 1));
        input.push(b'\n');
        input.extend_from_slice(&text_line(MSG, 200));
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, max as u64);
        let expected = format!(
            "line 1 error: line of {} bytes at byte 0 exceeds the maximum of {limit} bytes; skipped\n\
             line 2 error: line of {} bytes at byte {} exceeds the maximum of {limit} bytes; skipped\n\
             line 3 d {max} MessageID: a ",
            limit + 7,
            limit + 1,
            limit + 8,
        );
        assert!(out.starts_with(&expected), "{out}");
        assert_eq!(stats, Stats { frames: 1, messages: 1, errors: 2, skipped: 0 }, "{out}");
    }

    /// A `beehive record` line: one read of a unix stream, client to server.
    fn read_line(seq: u64, data: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        format!(
            r#"{{"conn":1,"seq":{seq},"dir":"client_to_server","transport":"unix","len":{},"data_b64":"{b64}"}}"#,
            data.len()
        )
        .into_bytes()
        .into_iter()
        .chain([b'\n'])
        .collect()
    }

    #[test]
    fn a_broken_stream_counts_what_it_did_not_decode() {
        let mut first = frame_of(MSG);
        first.extend_from_slice(b"XXXX");
        let mut input = read_line(1, &first);
        input.extend_from_slice(&read_line(2, b"more bytes"));
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, 1 << 20);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("line 1 conn 1 #1 client_to_server @0 77 MessageID: a "), "{out}");
        assert!(lines[1].starts_with("line 1 conn 1 #1 client_to_server @77 error: bad package magic"), "{out}");
        assert_eq!(
            lines[2],
            "line 1 conn 1 #1 client_to_server @77 14 skipped 14 bytes to the end of the stream \
             (not decoded after the error)"
        );
        assert_eq!(stats, Stats { frames: 1, messages: 1, errors: 1, skipped: 14 }, "{out}");
    }

    #[test]
    fn a_long_line_in_a_raw_stream_is_skipped_to_the_next_line() {
        // A blank line, a 150-byte line, then the message, split between two reads.
        let mut first = b"\n{".to_vec();
        first.resize(151, b'x');
        first.push(b'\n');
        first.extend_from_slice(&MSG[..10]);
        let mut rest = MSG[10..].to_vec();
        rest.push(b'\n');
        let mut input = read_line(1, &first);
        input.extend_from_slice(&read_line(2, &rest));
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, 100);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(
            lines[0],
            "line 1 conn 1 #1 client_to_server @1 error: raw line at byte 1 exceeds the maximum of 100 bytes"
        );
        assert_eq!(
            lines[1],
            "line 1 conn 1 #1 client_to_server @1 151 skipped 151 bytes, resumed at byte 152 (next line)"
        );
        assert!(lines[2].starts_with("line 1 conn 1 #1 client_to_server @152 65 MessageID: a "), "{out}");
        assert_eq!(stats, Stats { frames: 1, messages: 1, errors: 1, skipped: 151 }, "{out}");
    }

    #[test]
    fn a_stream_is_recognised_from_its_first_four_bytes_even_across_reads() {
        let mut input = read_line(1, b"b");
        input.extend_from_slice(&read_line(2, b"x{}\n"));
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, 1 << 20);
        // Told apart from Package only by the second byte, in the second read.
        let place = "line 1 conn 1 #1 client_to_server @0";
        assert_eq!(
            out,
            format!(
                "{place} error: cannot recognise the framing of the stream: it starts with \"bx{{}}\\x0a\" \
                 (Package starts with \"beeh\", Raw with '{{' or whitespace)\n\
                 {place} 5 skipped 5 bytes to the end of the stream (not decoded after the error)\n"
            )
        );
        assert_eq!(stats, Stats { frames: 0, messages: 0, errors: 1, skipped: 5 }, "{out}");
    }

    #[test]
    fn a_long_raw_line_that_never_ends_is_skipped_to_the_end_of_the_stream() {
        // A message first, so that the long line starts past the stream's start.
        let mut first = MSG.to_vec();
        first.push(b'\n');
        let at = first.len();
        first.push(b'{');
        first.resize(at + 150, b'x');
        let mut input = read_line(1, &first);
        input.extend_from_slice(&read_line(2, b"yyyyy"));
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, 100);
        let place = format!("line 1 conn 1 #1 client_to_server @{at}");
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[1], format!("{place} error: raw line at byte {at} exceeds the maximum of 100 bytes"));
        assert_eq!(
            lines[2],
            format!("{place} 155 skipped 155 bytes to the end of the stream (no line feed after the long line)")
        );
        assert_eq!(stats, Stats { frames: 1, messages: 1, errors: 1, skipped: 155 }, "{out}");
    }

    #[test]
    fn an_invalid_message_in_a_package_stream_is_placed_in_its_payload() {
        let mut data = frame_of(MSG);
        data.extend_from_slice(&frame_of(b"[1]"));
        let input = read_line(1, &data);
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, 1 << 20);
        let second = (12 + MSG.len()) as u64;
        let last = out.lines().last().unwrap_or_default();
        assert_eq!(
            last,
            format!(
                "line 1 conn 1 #1 client_to_server @{second} 15 error: frame at byte {} is not a valid message: \
                 cannot decode a JSON array into message (Message) at byte 0",
                second + 12
            ),
            "{out}"
        );
        assert_eq!(stats, Stats { frames: 2, messages: 1, errors: 1, skipped: 0 }, "{out}");
    }

    #[test]
    fn a_stream_cut_inside_its_first_frame_reports_the_truncation_only() {
        let frame = frame_of(MSG);
        let input = read_line(1, &frame[..40]);
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, 1 << 20);
        // The error covers the 40 bytes: nothing is reported as skipped.
        assert_eq!(
            out,
            format!(
                "line 1 conn 1 #1 client_to_server @0 error: stream ended inside a frame at byte 0: \
                 40 of {} bytes present\n",
                frame.len()
            )
        );
        assert_eq!(stats, Stats { frames: 0, messages: 0, errors: 1, skipped: 0 }, "{out}");
    }

    #[test]
    fn errors_after_a_resynchronisation_are_placed_in_the_whole_input() {
        let f = frame_of(MSG);
        let mut input = f.clone();
        input.extend_from_slice(b"xx");
        for header in [&b"beehv2rv\0\0\0\x05"[..], b"beehv1rv\xff\xff\xff\xff", b"beehv1rv\x7f\xff\xff\xff"] {
            input.extend_from_slice(&f);
            input.extend_from_slice(header);
        }
        input.extend_from_slice(&f);
        let (out, stats) = decode(&input, DecodeFraming::Package, true, 1 << 20);
        let n = f.len();
        let at = |k: usize| n + 2 + k * (n + 12) + n;
        let errors: Vec<_> = out.lines().filter(|l| l.contains(" - error: ")).collect();
        assert_eq!(
            errors,
            [
                format!("{n} - error: bad package magic [120] at byte {n} (expected \"beeh\")"),
                format!("{} - error: unsupported package version [118, 50] at byte {} (expected \"v1\")", at(0), at(0)),
                format!("{} - error: negative package length -1 at byte {}", at(1), at(1)),
                format!(
                    "{} - error: frame of 2147483659 bytes at byte {} exceeds the maximum of 1048576 bytes",
                    at(2),
                    at(2)
                ),
            ],
            "{out}"
        );
        assert_eq!(stats, Stats { frames: 5, messages: 5, errors: 4, skipped: 2 + 3 * 12 }, "{out}");
    }

    #[test]
    fn a_package_stream_keeps_the_maximum_frame_length() {
        let f = frame_of(MSG);
        let input = read_line(1, &f);
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, (f.len() - 1) as u64);
        let (n, place) = (f.len(), "line 1 conn 1 #1 client_to_server @0");
        assert_eq!(
            out,
            format!(
                "{place} error: frame of {n} bytes at byte 0 exceeds the maximum of {} bytes\n\
                 {place} {n} skipped {n} bytes to the end of the stream (not decoded after the error)\n",
                n - 1
            )
        );
        assert_eq!(stats, Stats { frames: 0, messages: 0, errors: 1, skipped: n as u64 }, "{out}");
        let (out, stats) = decode(&input, DecodeFraming::Packets, false, n as u64);
        assert_eq!(stats, Stats { frames: 1, messages: 1, errors: 0, skipped: 0 }, "{out}");
    }

    #[test]
    fn shift_moves_every_offset_by_the_base_and_keeps_the_rest() {
        let json = || beehive_model::from_slice(b"[").unwrap_err();
        let each = |offset: u64| {
            [
                CodecError::BadMagic { offset, found: b"x".to_vec() },
                CodecError::UnsupportedVersion { offset, found: b"v2".to_vec() },
                CodecError::NegativeLength { offset, length: -3 },
                CodecError::FrameTooLarge { offset, frame_len: 9, max: 8 },
                CodecError::Truncated { offset, needed: 9, available: 4 },
                CodecError::LineTooLong { offset, max: 8 },
                CodecError::Json { offset, source: json() },
                CodecError::PacketTooLarge { max: 8 },
            ]
        };
        for (e, expected) in each(5).into_iter().zip(each(105)) {
            assert_eq!(format!("{:?}", shift(e, 100)), format!("{expected:?}"));
        }
        assert_eq!(format!("{:?}", shift(CodecError::PacketTooLarge { max: 8 }, 100)), "PacketTooLarge { max: 8 }");
    }

    #[test]
    fn a_long_packet_log_line_is_measured_across_reads() {
        let max = 64;
        let limit = line_limit(max);
        let mut input = text_line(MSG, limit + 20);
        input.push(b'\n');
        // The first read holds no line feed; the second holds the rest.
        let mut source = Input::new(Chunks(&input, limit + 10), Progress::new(false, None));
        let mut p = Printer::new(Vec::new(), false, false);
        assert_eq!(packets(&mut source, &mut p, max).unwrap(), 1);
        let (out, stats) = p.finish().unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            format!(
                "line 1 error: line of {} bytes at byte 0 exceeds the maximum of {limit} bytes; skipped\n",
                limit + 20
            )
        );
        assert_eq!(stats.errors, 1);
    }

    #[test]
    fn a_long_raw_line_is_skipped_to_the_next_line() {
        let mut input = b"\n".to_vec();
        input.extend_from_slice(&[b'x'; 100]);
        input.push(b'\n');
        input.extend_from_slice(MSG);
        let (out, stats) = decode(&input, DecodeFraming::Raw, false, 80);
        assert_eq!(stats, Stats { frames: 1, messages: 1, errors: 1, skipped: 101 }, "{out}");
        assert!(out.starts_with("1 - error: raw line at byte 1 exceeds"), "{out}");
        assert!(out.contains("\n102 65 MessageID: a"), "{out}");
    }
}
