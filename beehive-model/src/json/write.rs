//! The writer: byte-exact with Go's `json.Marshal` (HTML escaping on).

use base64::Engine as _;

use crate::content::{Content, ModuleExchange, RawJson};
use crate::message::Message;
use crate::value::{Number, Value};
use crate::EncodeError;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes that cannot be copied verbatim into a Go JSON string: controls,
/// `"`, `\`, the HTML characters `<`, `>`, `&`, and 0xE2 (the lead byte of
/// U+2028 and U+2029, which Go escapes).
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[0xE2] = true;
    t
};

/// Writes `s` as a Go JSON string literal, quotes included.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !SPECIAL[c as usize] {
            i += 1;
            continue;
        }
        if c == 0xE2 {
            // U+2028 is E2 80 A8, U+2029 is E2 80 A9.
            if i + 2 < b.len() && b[i + 1] == 0x80 && (b[i + 2] & !1) == 0xA8 {
                out.extend_from_slice(&b[start..i]);
                out.extend_from_slice(if b[i + 2] == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                i += 3;
                start = i;
            } else {
                i += 1;
            }
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 0xF) as usize]]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Writes a float64 exactly as Go's `encoding/json` float encoder does.
///
/// Go calls `strconv.AppendFloat(f, 'f' or 'e', -1, 64)`: the shortest
/// decimal digits that read back as the same float64 (Ryū), in `%f` style
/// for 1e-6 <= |f| < 1e21 and `%e` style otherwise, with the exponent
/// cleaned to at least one digit (`1e-7`, `1e+21`).
///
/// Where two shortest spellings are equally near the exact binary value
/// (1125468240172855.25 lies halfway between `…855.2` and `…855.3`), Go's
/// Ryū rounds the last digit to even. The digits therefore come from the
/// `ryu` crate, which implements the same algorithm with the same tie rule;
/// Rust's own `Display` rounds such ties up and disagrees with Go on about
/// 1 % of values with 16 or 17 significant digits.
pub(crate) fn float(out: &mut Vec<u8>, f: f64) -> Result<(), EncodeError> {
    if !f.is_finite() {
        return Err(EncodeError::UnsupportedFloat { value: f });
    }
    // Integral values below 2^53 print as the exact integer in either style.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        if f == 0.0 && f.is_sign_negative() {
            out.extend_from_slice(b"-0");
        } else {
            out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
        }
        return Ok(());
    }
    let mut buf = ryu::Buffer::new();
    let digits = ShortestDigits::parse(buf.format_finite(f.abs()).as_bytes());
    if f.is_sign_negative() {
        out.push(b'-');
    }
    digits.write_go(out);
    Ok(())
}

/// The shortest round-trip digits of a positive float64: the value is
/// `d1.d2d3…dn × 10^exp`, with no leading or trailing zero digit.
struct ShortestDigits {
    digits: [u8; 24],
    len: usize,
    exp: i32,
}

impl ShortestDigits {
    /// Reads `ryu`'s output (`1.2345e16`, `1e-7`, `0.001234`, `123.45`)
    /// into digits and a decimal exponent.
    fn parse(s: &[u8]) -> Self {
        let (mantissa, mut exp) = match s.iter().position(|&b| b == b'e' || b == b'E') {
            Some(i) => (&s[..i], parse_exponent(&s[i + 1..])),
            None => (s, 0),
        };
        let int_len = mantissa.iter().position(|&b| b == b'.').unwrap_or(mantissa.len());
        exp += int_len as i32 - 1;
        let mut d = ShortestDigits { digits: [0; 24], len: 0, exp: 0 };
        for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
            if d.len == 0 && b == b'0' {
                exp -= 1; // a leading zero of `0.00123`
                continue;
            }
            if d.len < d.digits.len() {
                d.digits[d.len] = b;
                d.len += 1;
            }
        }
        while d.len > 1 && d.digits[d.len - 1] == b'0' {
            d.len -= 1;
        }
        d.exp = exp;
        d
    }

    /// Writes the digits in Go's `'f'` or `'e'` layout.
    fn write_go(&self, out: &mut Vec<u8>) {
        let digits = &self.digits[..self.len];
        let exp = self.exp;
        if !(-6..21).contains(&exp) {
            out.push(digits[0]);
            if digits.len() > 1 {
                out.push(b'.');
                out.extend_from_slice(&digits[1..]);
            }
            out.push(b'e');
            out.push(if exp < 0 { b'-' } else { b'+' });
            out.extend_from_slice(itoa::Buffer::new().format(exp.unsigned_abs()).as_bytes());
        } else if exp < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        }
    }
}

/// Parses a decimal exponent such as `16`, `-7` or `+21`.
fn parse_exponent(s: &[u8]) -> i32 {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = digits.iter().fold(0i32, |acc, &b| acc * 10 + i32::from(b - b'0'));
    if neg {
        -v
    } else {
        v
    }
}

/// Writes a number as Go writes `float64`, `int64` and `uint64`.
pub(crate) fn number(out: &mut Vec<u8>, n: &Number) -> Result<(), EncodeError> {
    match *n {
        Number::Float(f) => float(out, f),
        Number::Int(i) => {
            out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            Ok(())
        }
        Number::Uint(u) => {
            out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
            Ok(())
        }
    }
}

enum Frame<'a> {
    Array(std::slice::Iter<'a, Value>),
    Object(std::collections::btree_map::Iter<'a, String, Value>),
}

/// Writes a dynamic value (objects with sorted keys). Iterative, so values of
/// any depth are written without growing the call stack.
pub(crate) fn value(out: &mut Vec<u8>, v: &Value) -> Result<(), EncodeError> {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut next = Some(v);
    loop {
        if let Some(v) = next.take() {
            match v {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Bool(true) => out.extend_from_slice(b"true"),
                Value::Bool(false) => out.extend_from_slice(b"false"),
                Value::Number(n) => number(out, n)?,
                Value::String(s) => string(out, s),
                Value::Array(items) => {
                    out.push(b'[');
                    let mut it = items.iter();
                    match it.next() {
                        None => out.push(b']'),
                        Some(first) => {
                            next = Some(first);
                            stack.push(Frame::Array(it));
                            continue;
                        }
                    }
                }
                Value::Object(map) => {
                    out.push(b'{');
                    let mut it = map.iter();
                    match it.next() {
                        None => out.push(b'}'),
                        Some((k, first)) => {
                            string(out, k);
                            out.push(b':');
                            next = Some(first);
                            stack.push(Frame::Object(it));
                            continue;
                        }
                    }
                }
            }
        }
        // A value is complete: continue its parent, or finish.
        match stack.last_mut() {
            None => return Ok(()),
            Some(Frame::Array(it)) => match it.next() {
                Some(v) => {
                    out.push(b',');
                    next = Some(v);
                }
                None => {
                    out.push(b']');
                    stack.pop();
                }
            },
            Some(Frame::Object(it)) => match it.next() {
                Some((k, v)) => {
                    out.push(b',');
                    string(out, k);
                    out.push(b':');
                    next = Some(v);
                }
                None => {
                    out.push(b'}');
                    stack.pop();
                }
            },
        }
    }
}

fn string_list(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

pub(crate) fn module_exchange(out: &mut Vec<u8>, m: &ModuleExchange) {
    out.extend_from_slice(b"{\"modules\":");
    match &m.modules {
        None => out.extend_from_slice(b"null"),
        Some(list) => string_list(out, list),
    }
    out.extend_from_slice(b",\"groups\":");
    match &m.groups {
        None => out.extend_from_slice(b"null"),
        Some(groups) => {
            out.push(b'{');
            for (i, (g, members)) in groups.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, g);
                out.push(b':');
                string_list(out, members);
            }
            out.push(b'}');
        }
    }
    out.push(b'}');
}

/// Writes raw JSON as Go's marshaler path does: validates it, removes
/// insignificant whitespace and escapes `<`, `>`, `&`, U+2028 and U+2029.
/// Everything else is copied verbatim.
pub(crate) fn raw(out: &mut Vec<u8>, raw: &RawJson) -> Result<(), EncodeError> {
    let src = raw.as_bytes();
    if raw.is_canonical() {
        out.extend_from_slice(src);
        return Ok(());
    }
    super::read::validate(src).map_err(|source| EncodeError::InvalidRawJson { source })?;
    out.reserve(src.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
            } else {
                match c {
                    b'\\' => {
                        escaped = true;
                        out.push(c);
                    }
                    b'"' => {
                        in_string = false;
                        out.push(c);
                    }
                    b'<' | b'>' | b'&' => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(c >> 4) as usize],
                        HEX[(c & 0xF) as usize],
                    ]),
                    0xE2 if i + 2 < src.len() && src[i + 1] == 0x80 && (src[i + 2] & !1) == 0xA8 => {
                        out.extend_from_slice(if src[i + 2] == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                        i += 2;
                    }
                    _ => out.push(c),
                }
            }
        } else {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    in_string = true;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        i += 1;
    }
    Ok(())
}

/// Writes message content as Go writes the value held in the interface.
pub(crate) fn content(out: &mut Vec<u8>, c: &Content) -> Result<(), EncodeError> {
    match c {
        Content::Null => out.extend_from_slice(b"null"),
        Content::String(s) => string(out, s),
        Content::Bytes(None) => out.extend_from_slice(b"null"),
        Content::Bytes(Some(b)) => {
            out.push(b'"');
            let start = out.len();
            let len = base64::encoded_len(b.len(), true).unwrap_or(0);
            out.resize(start + len, 0);
            let written = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
            out.push(b'"');
        }
        Content::Value(v) => value(out, v)?,
        Content::Raw(r) => raw(out, r)?,
        Content::ModuleExchange(m) => module_exchange(out, m),
    }
    Ok(())
}

/// Writes a whole message as Go's `json.Marshal(&msg)`.
pub(crate) fn message(out: &mut Vec<u8>, m: &Message) -> Result<(), EncodeError> {
    let p = m.parts();
    let h = &p.header;
    let r = &p.route;
    out.extend_from_slice(b"{\"header\":{\"msg_id\":");
    string(out, &h.id);
    if !h.parent_id.is_empty() {
        out.extend_from_slice(b",\"parent_msg_id\":");
        string(out, &h.parent_id);
    }
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(itoa::Buffer::new().format(h.timestamp).as_bytes());
    if !h.resource_version.is_empty() {
        out.extend_from_slice(b",\"resourceversion\":");
        string(out, &h.resource_version);
    }
    if h.sync {
        out.extend_from_slice(b",\"sync\":true");
    }
    if !h.message_type.is_empty() {
        out.extend_from_slice(b",\"type\":");
        string(out, &h.message_type);
    }
    out.extend_from_slice(b"},\"route\":{");
    let mut first = true;
    for (name, v) in [
        (&b"\"source\":"[..], &r.source),
        (b"\"destination\":", &r.destination),
        (b"\"group\":", &r.group),
        (b"\"operation\":", &r.operation),
        (b"\"resource\":", &r.resource),
    ] {
        if v.is_empty() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(name);
        string(out, v);
    }
    out.extend_from_slice(b"},\"content\":");
    content(out, &p.content)?;
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod float_tests {
    use super::float;

    fn go(bits: u64) -> String {
        let mut out = Vec::new();
        float(&mut out, f64::from_bits(bits)).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Values exactly halfway between two shortest spellings: Go rounds the
    /// last digit to even. Expected texts are Go 1.23's `json.Marshal`
    /// output (the first from the captures' floats.jsonl).
    #[test]
    fn ties_round_to_even_as_go() {
        assert_eq!(go(0x430f_fcdb_f54a_b9ba), "1125468240172855.2");
        assert_eq!(go(0x4310_0000_0000_0001), "1125899906842624.2");
        assert_eq!(go(0x42b6_419c_821f_29d0), "24471054458665.812");
        // 2^-25, at an exponent border where the gap below is half the gap above.
        assert_eq!(go(0x3e60_0000_0000_0000), "2.9802322387695312e-8");
    }

    /// Layout boundaries of Go's 'f'/'e' choice (captures enc-0167, enc-0172
    /// to enc-0175, enc-0211 and the floats.jsonl edge values).
    #[test]
    fn layouts_as_go() {
        assert_eq!(go(0x4415_af1d_78b5_8c40), "100000000000000000000");
        assert_eq!(go(0x444b_1ae4_d6e2_ef50), "1e+21");
        assert_eq!(go(0x444b_1ae4_d6e2_ef4f), "999999999999999900000");
        assert_eq!(go(0x3eb0_c6f7_a0b5_ed8d), "0.000001");
        assert_eq!(go(0x3e7a_d7f2_9abc_af48), "1e-7");
        assert_eq!(go(0x8000_0000_0000_0000), "-0");
        assert_eq!(go(0x7fef_ffff_ffff_ffff), "1.7976931348623157e+308");
        assert_eq!(go(0x0000_0000_0000_0001), "5e-324");
        assert_eq!(go(0x0010_0000_0000_0000), "2.2250738585072014e-308");
        assert_eq!(go(0x3fd3_3333_3333_3334), "0.30000000000000004");
        assert_eq!(go(0x437b_69b4_ba63_0f35), "123456789012345680");
        assert_eq!(go(0xb807_04bb_7b4d_7c03), "-8.455656236043991e-39");
        // Integral values from 2^53 on leave the integer path; ryu writes
        // them with a ".0" that Go does not.
        assert_eq!(go(0x4340_0000_0000_0001), "9007199254740994");
        assert_eq!(go(0x4341_c379_37e0_7fff), "9999999999999998");
        assert_eq!(go(0x42dc_1221_8377_de6b), "123456789012345.67");
        assert_eq!(go(0x3f54_26fe_718a_86d7), "0.00123");
        assert_eq!(go(0x3ea0_c6f7_a0b5_ed8d), "5e-7");
    }

    #[test]
    fn non_finite_values_are_refused() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(float(&mut Vec::new(), f).is_err());
        }
    }
}
