//! The reader: Go's `json.Unmarshal` into a `model.Message`, byte for byte.
//!
//! One left-to-right pass both checks the grammar (as Go's `checkValid` does
//! before decoding) and stores values. A syntax error anywhere rejects the
//! input and stores nothing; a type error is remembered (the first one only,
//! as Go's `saveError`) and the rest of the document is still decoded.
//! Containers are parsed with an explicit stack, so nesting up to Go's limit
//! of 10000 levels never deepens the call stack.

use std::sync::Arc;

use crate::content::{Content, RawJson};
use crate::error::{DecodeError, JsonKind, SyntaxContext};
use crate::json::{canonical, fold, scan};
use crate::message::Parts;
use crate::value::{Array, Map, Number, Value};

/// Go's `maxNestingDepth`: the top-level value counts as one level.
pub const MAX_DEPTH: usize = 10_000;

const HEADER_FIELDS: [&str; 6] = ["msg_id", "parent_msg_id", "timestamp", "resourceversion", "sync", "type"];
const ROUTE_FIELDS: [&str; 5] = ["source", "destination", "group", "operation", "resource"];
const MESSAGE_FIELDS: [&str; 3] = ["header", "route", "content"];

enum Frame {
    Array(Vec<Value>),
    Object(Map, String),
    SkipArray,
    SkipObject,
}

pub(crate) struct Parser<'a> {
    src: &'a [u8],
    /// The whole input as text when it is valid UTF-8 (the usual case):
    /// string runs are then sliced from it without validating each again.
    text: Option<&'a str>,
    /// When set, canonical object/array content is kept as a slice of this buffer.
    lazy: Option<&'a bytes::Bytes>,
    pos: usize,
    depth: usize,
    type_error: Option<DecodeError>,
    key: String,
}

/// Appends `bytes` to `out`, replacing every byte that does not start a valid
/// UTF-8 sequence with U+FFFD, one replacement per byte (Go's
/// `utf8.DecodeRune` rule, unlike `String::from_utf8_lossy`).
fn push_go_lossy(out: &mut String, mut bytes: &[u8]) {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // SAFETY-free: the prefix was just validated.
                out.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
                out.push('\u{FFFD}');
                bytes = &bytes[valid + 1..];
            }
        }
    }
}

fn hex_val(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

fn literal_text(lit: &[u8]) -> String {
    let cut = &lit[..lit.len().min(64)];
    String::from_utf8_lossy(cut).into_owned()
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a [u8]) -> Self {
        Parser {
            src,
            text: std::str::from_utf8(src).ok(),
            lazy: None,
            pos: 0,
            depth: 0,
            type_error: None,
            key: String::new(),
        }
    }

    /// A parser that keeps canonical content as a slice of `buf`.
    pub(crate) fn lazy(buf: &'a bytes::Bytes) -> Self {
        Parser { lazy: Some(buf), ..Parser::new(buf) }
    }

    // ----- low-level helpers -----

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eof(&self) -> DecodeError {
        DecodeError::UnexpectedEnd { offset: self.src.len() }
    }

    /// The error for the byte at `pos` (or end of input) in `context`.
    fn invalid(&self, context: SyntaxContext) -> DecodeError {
        match self.peek() {
            None => self.eof(),
            Some(byte) => DecodeError::InvalidCharacter { offset: self.pos, byte, context },
        }
    }

    fn enter(&mut self) -> Result<(), DecodeError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DecodeError::DepthLimit { offset: self.pos, limit: MAX_DEPTH });
        }
        self.pos += 1;
        Ok(())
    }

    fn save_type_error(&mut self, e: DecodeError) {
        if self.type_error.is_none() {
            self.type_error = Some(e);
        }
    }

    fn literal(&mut self, lit: &'static str) -> Result<(), DecodeError> {
        for &expected in &lit.as_bytes()[1..] {
            self.pos += 1;
            if self.peek() != Some(expected) {
                return Err(self.invalid(SyntaxContext::InLiteral { literal: lit, expected }));
            }
        }
        self.pos += 1;
        Ok(())
    }

    /// Scans a number per the JSON grammar; returns its text.
    fn number(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.pos += 1;
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return Err(self.invalid(SyntaxContext::InNumber)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.invalid(SyntaxContext::AfterDecimalPoint));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.invalid(SyntaxContext::InExponent));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
        }
        Ok(&self.src[start..self.pos])
    }

    /// Reads four hex digits of a `\u` escape at `pos`.
    fn hex4(&mut self) -> Result<u16, DecodeError> {
        let mut v = 0u16;
        for _ in 0..4 {
            match self.peek() {
                None => return Err(self.eof()),
                Some(b) => match hex_val(b) {
                    Some(d) => v = (v << 4) | d,
                    None => return Err(self.invalid(SyntaxContext::InUnicodeEscape)),
                },
            }
            self.pos += 1;
        }
        Ok(v)
    }

    /// Reads a string whose opening quote is at `pos`. With `out`, appends
    /// the unescaped text (Go's `unquote` rules); without, only checks it.
    fn string(&mut self, mut out: Option<&mut String>) -> Result<(), DecodeError> {
        self.pos += 1;
        loop {
            let start = self.pos;
            let rest = &self.src[start..];
            let run = scan::string_stop(rest);
            self.pos += run;
            if let Some(o) = out.as_deref_mut() {
                match self.run_text(start, start + run) {
                    Some(text) => o.push_str(text),
                    None => push_go_lossy(o, &rest[..run]),
                }
            }
            match self.peek() {
                None => return Err(self.eof()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = match self.peek() {
                        None => return Err(self.eof()),
                        Some(e) => e,
                    };
                    let simple = match esc {
                        b'"' => Some('"'),
                        b'\\' => Some('\\'),
                        b'/' => Some('/'),
                        b'b' => Some('\u{8}'),
                        b'f' => Some('\u{c}'),
                        b'n' => Some('\n'),
                        b'r' => Some('\r'),
                        b't' => Some('\t'),
                        b'u' => None,
                        _ => return Err(self.invalid(SyntaxContext::InStringEscape)),
                    };
                    self.pos += 1;
                    let ch = match simple {
                        Some(c) => c,
                        None => self.unicode_escape()?,
                    };
                    if let Some(o) = out.as_deref_mut() {
                        o.push(ch);
                    }
                }
                Some(_) => return Err(self.invalid(SyntaxContext::InString)),
            }
        }
    }

    /// The input between `start` and `end` as text, when it is valid UTF-8.
    /// Runs start after a quote or escape and end before one, so they lie on
    /// character boundaries whenever the whole input is valid.
    #[inline]
    fn run_text(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.text {
            Some(t) => t.get(start..end),
            None => std::str::from_utf8(&self.src[start..end]).ok(),
        }
    }

    /// The string whose opening quote is at `pos`, when it has no escape
    /// or control byte: the range of its bytes (its closing quote is at the
    /// range's end). Otherwise the length of its leading plain run.
    #[inline]
    fn unescaped(&self) -> Result<std::ops::Range<usize>, usize> {
        let start = self.pos + 1;
        let run = scan::string_stop(&self.src[start..]);
        match self.src.get(start + run) {
            Some(b'"') => Ok(start..start + run),
            _ => Err(run),
        }
    }

    /// Reads a string whose opening quote is at `pos` into a new `String`,
    /// allocated once with the exact length when the string has no escapes.
    fn string_owned(&mut self) -> Result<String, DecodeError> {
        let run = match self.unescaped() {
            Ok(r) => {
                if let Some(text) = self.run_text(r.start, r.end) {
                    self.pos = r.end + 1;
                    return Ok(text.to_owned());
                }
                r.len()
            }
            Err(run) => run,
        };
        let mut out = String::with_capacity(run + 8);
        self.string(Some(&mut out))?;
        Ok(out)
    }

    /// After `\u`: the character, combining a surrogate pair when a high
    /// surrogate is directly followed by a `\u` low surrogate. Any other
    /// surrogate becomes U+FFFD and the following escape is read on its own.
    fn unicode_escape(&mut self) -> Result<char, DecodeError> {
        let first = self.hex4()?;
        if !(0xD800..0xE000).contains(&first) {
            return Ok(char::from_u32(u32::from(first)).unwrap_or('\u{FFFD}'));
        }
        if first < 0xDC00 && self.src.get(self.pos) == Some(&b'\\') && self.src.get(self.pos + 1) == Some(&b'u') {
            // Look ahead without committing: only a valid low surrogate is consumed.
            let save = self.pos;
            self.pos += 2;
            match self.hex4() {
                Ok(second) if (0xDC00..0xE000).contains(&second) => {
                    let c = 0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00);
                    return Ok(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
                Ok(_) => self.pos = save,
                Err(e) => return Err(e),
            }
        }
        Ok('\u{FFFD}')
    }

    /// Reads an object key at `pos` (which must be a `"`) into `self.key`,
    /// then the `:` after it.
    fn key_and_colon(&mut self) -> Result<(), DecodeError> {
        if self.peek() != Some(b'"') {
            return Err(self.invalid(SyntaxContext::ObjectKeyStart));
        }
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        let r = self.string(Some(&mut key));
        self.key = key;
        r?;
        self.colon()
    }

    /// Reads an object key at `pos` and the `:` after it; the index of the
    /// field of `fields` the key names, Go's way ([`fold::match_field`]).
    fn field_key(&mut self, fields: &[&str]) -> Result<Option<usize>, DecodeError> {
        // A key without escapes that is exactly a field's name (what Go and
        // we write) is matched in place, without copying it out.
        if self.peek() == Some(b'"') {
            if let Ok(r) = self.unescaped() {
                if let Some(i) = fold::exact_field(&self.src[r.start..r.end], fields) {
                    self.pos = r.end + 1;
                    self.colon()?;
                    return Ok(Some(i));
                }
            }
        }
        self.key_and_colon()?;
        Ok(fold::match_field(self.key.as_bytes(), fields))
    }

    /// Reads an object key into a new `String`, then the `:` after it.
    fn owned_key_and_colon(&mut self) -> Result<String, DecodeError> {
        if self.peek() != Some(b'"') {
            return Err(self.invalid(SyntaxContext::ObjectKeyStart));
        }
        let key = self.string_owned()?;
        self.colon()?;
        Ok(key)
    }

    /// Whitespace, `:`, whitespace.
    fn colon(&mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.invalid(SyntaxContext::AfterObjectKey));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// Converts a content number: Go's `strconv.ParseFloat(s, 64)`, where
    /// overflow is an error and underflow silently gives zero.
    fn float_of(&mut self, lit: &[u8], offset: usize) -> Value {
        // Fast path: up to 15 digits, no fraction or exponent, is exact.
        let (neg, digits) = match lit.split_first() {
            Some((b'-', d)) => (true, d),
            _ => (false, lit),
        };
        if digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
            let mut v: i64 = 0;
            for &d in digits {
                v = v * 10 + i64::from(d - b'0');
            }
            let f = v as f64;
            return Value::Number(Number::Float(if neg { -f } else { f }));
        }
        let text = std::str::from_utf8(lit).unwrap_or("");
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Number(Number::Float(f)),
            _ => {
                self.save_type_error(DecodeError::NumberOutOfRange {
                    offset,
                    field: "content",
                    expected: "float64",
                    literal: literal_text(lit),
                });
                Value::Null
            }
        }
    }

    /// Reads one value at `pos`. With `build`, returns it as a [`Value`];
    /// otherwise only checks it and returns `Value::Null`.
    pub(crate) fn value(&mut self, build: bool) -> Result<Value, DecodeError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Read the start of a value.
            self.skip_ws();
            let start = self.pos;
            let mut done = match self.peek() {
                None => return Err(self.eof()),
                Some(b'{') => {
                    self.enter()?;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        self.depth -= 1;
                        Value::Object(Map::new())
                    } else {
                        stack.push(if build {
                            let key = self.owned_key_and_colon()?;
                            Frame::Object(Map::new(), key)
                        } else {
                            self.key_and_colon()?;
                            Frame::SkipObject
                        });
                        continue;
                    }
                }
                Some(b'[') => {
                    self.enter()?;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        self.depth -= 1;
                        Value::Array(Array::new())
                    } else {
                        stack.push(if build { Frame::Array(Vec::new()) } else { Frame::SkipArray });
                        continue;
                    }
                }
                Some(b'"') => {
                    if build {
                        Value::String(self.string_owned()?)
                    } else {
                        self.string(None)?;
                        Value::Null
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    let lit = self.number()?;
                    if build {
                        self.float_of(lit, start)
                    } else {
                        Value::Null
                    }
                }
                Some(b't') => {
                    self.literal("true")?;
                    Value::Bool(true)
                }
                Some(b'f') => {
                    self.literal("false")?;
                    Value::Bool(false)
                }
                Some(b'n') => {
                    self.literal("null")?;
                    Value::Null
                }
                Some(_) => return Err(self.invalid(SyntaxContext::ValueStart)),
            };
            // A value is complete: hand it to its container, closing
            // containers as long as they end here.
            loop {
                let Some(frame) = stack.last_mut() else {
                    return Ok(done);
                };
                self.skip_ws();
                let is_array = matches!(frame, Frame::Array(_) | Frame::SkipArray);
                match frame {
                    Frame::Array(items) => items.push(std::mem::take(&mut done)),
                    Frame::Object(map, key) => {
                        map.insert(std::mem::take(key), std::mem::take(&mut done));
                    }
                    Frame::SkipArray | Frame::SkipObject => {}
                }
                let (close, context) = if is_array {
                    (b']', SyntaxContext::AfterArrayElement)
                } else {
                    (b'}', SyntaxContext::AfterObjectValue)
                };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if !is_array {
                            self.skip_ws();
                            if build {
                                let next = self.owned_key_and_colon()?;
                                if let Some(Frame::Object(_, key)) = stack.last_mut() {
                                    *key = next;
                                }
                            } else {
                                self.key_and_colon()?;
                            }
                        }
                        break;
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        self.depth -= 1;
                        done = match stack.pop() {
                            Some(Frame::Array(items)) => Value::Array(Array::from(items)),
                            Some(Frame::Object(map, _)) => Value::Object(map),
                            _ => Value::Null,
                        };
                    }
                    _ => return Err(self.invalid(context)),
                }
            }
        }
    }

    fn kind_at(&self) -> JsonKind {
        match self.peek() {
            Some(b'"') => JsonKind::String,
            Some(b'{') => JsonKind::Object,
            Some(b'[') => JsonKind::Array,
            Some(b't' | b'f') => JsonKind::Bool,
            _ => JsonKind::Number,
        }
    }

    /// A value of the wrong type for a field: remember the error, check and
    /// skip the value.
    fn wrong_type(&mut self, field: &'static str, expected: &'static str) -> Result<(), DecodeError> {
        let e = DecodeError::WrongType { offset: self.pos, field, expected, found: self.kind_at() };
        self.value(false)?;
        self.save_type_error(e);
        Ok(())
    }

    /// `null` at `pos`: consume it and return true.
    fn null(&mut self) -> Result<bool, DecodeError> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn string_field(&mut self, dst: &mut String, field: &'static str) -> Result<(), DecodeError> {
        match self.peek() {
            Some(b'"') => {
                // Without escapes: one copy, allocated once at its length.
                if let Ok(r) = self.unescaped() {
                    if let Some(text) = self.run_text(r.start, r.end) {
                        if dst.capacity() >= text.len() {
                            dst.clear();
                            dst.push_str(text);
                        } else {
                            *dst = text.to_owned();
                        }
                        self.pos = r.end + 1;
                        return Ok(());
                    }
                }
                dst.clear();
                self.string(Some(dst))
            }
            Some(b'n') => self.null().map(drop),
            _ => self.wrong_type(field, "string"),
        }
    }

    fn timestamp_field(&mut self, dst: &mut i64) -> Result<(), DecodeError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                let lit = self.number()?;
                // Go: strconv.ParseInt(literal, 10, 64); fractions, exponents and
                // out-of-range values are type errors that leave the field alone.
                match std::str::from_utf8(lit).ok().and_then(|s| s.parse::<i64>().ok()) {
                    Some(v) => *dst = v,
                    None => self.save_type_error(DecodeError::NumberOutOfRange {
                        offset: start,
                        field: "header.timestamp",
                        expected: "int64",
                        literal: literal_text(lit),
                    }),
                }
                Ok(())
            }
            Some(b'n') => self.null().map(drop),
            _ => self.wrong_type("header.timestamp", "int64"),
        }
    }

    fn bool_field(&mut self, dst: &mut bool, field: &'static str) -> Result<(), DecodeError> {
        match self.peek() {
            Some(b't') => {
                self.literal("true")?;
                *dst = true;
                Ok(())
            }
            Some(b'f') => {
                self.literal("false")?;
                *dst = false;
                Ok(())
            }
            Some(b'n') => self.null().map(drop),
            _ => self.wrong_type(field, "bool"),
        }
    }

    /// Reads an object whose members are dispatched by `member(self, field
    /// index)`; unknown keys are checked and skipped. `pos` is at the value.
    fn struct_object<T>(
        &mut self,
        target: &mut T,
        fields: &[&str],
        name: &'static str,
        type_name: &'static str,
        mut member: impl FnMut(&mut Self, &mut T, usize) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        match self.peek() {
            Some(b'{') => {}
            Some(b'n') => return self.null().map(drop),
            _ => return self.wrong_type(name, type_name),
        }
        self.enter()?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let field = self.field_key(fields)?;
            match field {
                Some(i) => member(self, target, i)?,
                None => {
                    self.value(false)?;
                }
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.invalid(SyntaxContext::AfterObjectValue)),
            }
        }
    }

    fn header_member(&mut self, h: &mut crate::MessageHeader, i: usize) -> Result<(), DecodeError> {
        match i {
            0 => self.string_field(&mut h.id, "header.msg_id"),
            1 => self.string_field(&mut h.parent_id, "header.parent_msg_id"),
            2 => self.timestamp_field(&mut h.timestamp),
            3 => self.string_field(&mut h.resource_version, "header.resourceversion"),
            4 => self.bool_field(&mut h.sync, "header.sync"),
            _ => self.string_field(&mut h.message_type, "header.type"),
        }
    }

    fn route_member(&mut self, r: &mut crate::MessageRoute, i: usize) -> Result<(), DecodeError> {
        match i {
            0 => self.string_field(&mut r.source, "route.source"),
            1 => self.string_field(&mut r.destination, "route.destination"),
            2 => self.string_field(&mut r.group, "route.group"),
            3 => self.string_field(&mut r.operation, "route.operation"),
            _ => self.string_field(&mut r.resource, "route.resource"),
        }
    }

    fn message_member(&mut self, m: &mut Parts, i: usize) -> Result<(), DecodeError> {
        match i {
            0 => self.struct_object(&mut m.header, &HEADER_FIELDS, "header", "MessageHeader", Self::header_member),
            1 => self.struct_object(&mut m.route, &ROUTE_FIELDS, "route", "MessageRoute", Self::route_member),
            _ => {
                if let (Some(buf), Some(b'{' | b'[')) = (self.lazy, self.peek()) {
                    let start = self.pos;
                    self.value(false)?;
                    if canonical::is_canonical(&self.src[start..self.pos], self.text.is_some()) {
                        let raw = RawJson::canonical(buf.slice(start..self.pos));
                        m.content = Arc::new(Content::Raw(raw));
                        return Ok(());
                    }
                    // Not canonical: decode it for real (validity is already known).
                    self.pos = start;
                }
                let v = self.value(true)?;
                m.content = Arc::new(Content::from(v));
                Ok(())
            }
        }
    }

    /// Decodes a whole document into `target` with Go's rules.
    pub(crate) fn message(mut self, target: &mut Parts) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.peek().is_none() {
            return Err(self.eof());
        }
        self.struct_object(target, &MESSAGE_FIELDS, "message", "Message", Self::message_member)?;
        self.finish()
    }

    /// Checks that only whitespace follows, then reports the saved type error.
    fn finish(mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.peek().is_some() {
            return Err(self.invalid(SyntaxContext::AfterTopLevelValue));
        }
        match self.type_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Decodes a whole document as a dynamic value.
    pub(crate) fn whole_value(mut self) -> Result<Value, DecodeError> {
        self.skip_ws();
        let v = self.value(true)?;
        self.finish()?;
        Ok(v)
    }
}

/// Checks that `src` is exactly one JSON value (surrounding whitespace
/// allowed), with Go's grammar and depth limit.
pub(crate) fn validate(src: &[u8]) -> Result<(), DecodeError> {
    let mut p = Parser::new(src);
    p.skip_ws();
    p.value(false)?;
    p.finish()
}
