//! `beehive decode`: every frame of a stream, with offsets and typed errors.
//!
//! The framing is beehive-codec's ([`PackageCodec`], [`RawCodec`]); this
//! module only feeds them the input in chunks, keeps the stream offsets, and
//! decides what happens after an error (go on, stop, or resynchronise).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use beehive_codec::{CodecError, Framing as _, PackageCodec, RawCodec, HEADER_LEN};
use bytes::{Buf as _, Bytes, BytesMut};

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

    fn update(&mut self, n: usize) {
        self.read += n as u64;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now - self.started < Duration::from_secs(1)
            || self.last.is_some_and(|l| now - l < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(now);
        let mb = self.read as f64 / 1e6;
        let text = match self.total {
            Some(t) if t > 0 => {
                format!("{mb:.0} of {:.0} MB ({:.0}%)", t as f64 / 1e6, self.read as f64 * 100.0 / t as f64)
            }
            _ => format!("{mb:.0} MB"),
        };
        let _ = write!(io::stderr().lock(), "\rbeehive: reading… {text}\x1b[K");
    }

    /// Clears the line if one was printed.
    fn clear(&mut self) {
        if self.last.take().is_some() {
            let _ = write!(io::stderr().lock(), "\r\x1b[K");
        }
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
                    self.progress.update(n);
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
    let framing = decode_stream(&mut input, &mut printer, args).with_context(|| format!("cannot read {name}"));
    input.progress.clear();
    let framing = framing?;
    let (_, stats) = printer.finish().context("cannot write to stdout")?;
    if !args.json {
        let stopped = !input.eof || !input.buf.is_empty();
        summary(&name, framing, &stats, input.start, stopped);
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
/// stderr (`stopped at byte N` instead of the size when decoding stopped early).
fn summary(name: &str, framing: &str, stats: &Stats, bytes: u64, stopped: bool) {
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

/// Decodes the whole input; returns the framing used.
fn decode_stream<R: Read, W: Write>(
    input: &mut Input<R>,
    p: &mut Printer<W>,
    args: &DecodeArgs,
) -> io::Result<&'static str> {
    let framing = match args.framing {
        DecodeFraming::Package => DecodeFraming::Package,
        DecodeFraming::Raw => DecodeFraming::Raw,
        DecodeFraming::Auto => {
            input.fill_to(MAGIC.len())?;
            match recognise(&input.buf) {
                Some(f) => f,
                None => {
                    p.unrecognised(&input.buf[..input.buf.len().min(8)])?;
                    return Ok("unrecognised");
                }
            }
        }
    };
    match framing {
        DecodeFraming::Package => {
            p.set_framing("package");
            package(input, p, args.max_frame_len as usize, args.resync)?;
            Ok("package")
        }
        _ => {
            p.set_framing("raw");
            raw(input, p, args.max_frame_len as usize)?;
            Ok("raw")
        }
    }
}

const MAGIC: &[u8; 4] = b"beeh";

/// The `auto` rule: Package when the input starts with the magic `beeh`
/// (or, when shorter than four bytes, with a prefix of it); Raw when it is
/// empty or starts with `{` or JSON whitespace; otherwise unrecognised.
fn recognise(head: &[u8]) -> Option<DecodeFraming> {
    let n = head.len().min(MAGIC.len());
    match head.first() {
        None => Some(DecodeFraming::Raw),
        Some(_) if head[..n] == MAGIC[..n] => Some(DecodeFraming::Package),
        Some(b'{' | b' ' | b'\t' | b'\r' | b'\n') => Some(DecodeFraming::Raw),
        Some(_) => None,
    }
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
        // A one-byte reader: every split point of the input is exercised.
        let mut input = Input::new(OneByte(input), Progress::new(false, None));
        decode_stream(&mut input, &mut p, &args).unwrap();
        let (out, stats) = p.finish().unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    const MSG: &[u8] = br#"{"header":{"msg_id":"a","timestamp":1},"route":{},"content":null}"#;

    fn frame_of(payload: &[u8]) -> Vec<u8> {
        let mut v = b"beehv1rv".to_vec();
        v.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        v.extend_from_slice(payload);
        v
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
