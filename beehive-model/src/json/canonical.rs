//! Is a JSON text already exactly what Go would write after decoding it?
//!
//! Go decodes content into `interface{}` and writes it back with sorted keys,
//! no duplicates, `float64` numbers and its own string escaping. Text that Go
//! (or this crate) wrote is already in that form, so a message that is only
//! forwarded can keep its content as bytes: re-encoding copies them and the
//! output is still byte-exact. Anything else (whitespace, unsorted or
//! duplicate keys, other number spellings or escapes, invalid UTF-8) is not
//! canonical and gets decoded into a `Value` instead.

use super::write;

/// Checks `src`, which must already be one valid JSON value without
/// surrounding whitespace. `known_utf8` skips the UTF-8 check when the
/// caller has already validated the text.
pub(crate) fn is_canonical(src: &[u8], known_utf8: bool) -> bool {
    if !known_utf8 && std::str::from_utf8(src).is_err() {
        return false;
    }
    // Per open container: for objects, the previous key and whether a key comes next.
    enum Level {
        Array,
        Object { prev: Option<(usize, usize)>, expect_key: bool },
    }
    let mut stack: Vec<Level> = Vec::new();
    let mut i = 0;
    while i < src.len() {
        match src[i] {
            b'{' => {
                stack.push(Level::Object { prev: None, expect_key: true });
                i += 1;
            }
            b'[' => {
                stack.push(Level::Array);
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b',' => {
                if let Some(Level::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = true;
                }
                i += 1;
            }
            b':' => i += 1,
            b'"' => {
                let Some(end) = string_end(src, i) else {
                    return false;
                };
                if let Some(Level::Object { prev, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *expect_key = false;
                        let key = &src[i + 1..end - 1];
                        if key.contains(&b'\\') {
                            return false;
                        }
                        if let Some((s, e)) = *prev {
                            if src[s..e] >= *key {
                                return false;
                            }
                        }
                        *prev = Some((i + 1, end - 1));
                    }
                }
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < src.len() && matches!(src[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                if !number_is_canonical(&src[start..i]) {
                    return false;
                }
            }
            b't' | b'n' => i += 4,
            b'f' => i += 5,
            _ => return false,
        }
    }
    true
}

/// The index after the closing quote of the string starting at `start`, if
/// the string is written exactly as Go writes strings.
fn string_end(src: &[u8], start: usize) -> Option<usize> {
    // Every step below stays within `src`: it only moves past bytes it has seen.
    let mut i = start + 1;
    loop {
        i += super::scan::canonical_stop(src.get(i..)?);
        match *src.get(i)? {
            b'"' => return Some(i + 1),
            b'<' | b'>' | b'&' => return None,
            // U+2028 and U+2029, which Go writes escaped.
            0xE2 if matches!(src.get(i + 1..i + 3), Some([0x80, 0xA8 | 0xA9])) => return None,
            b'\\' => match *src.get(i + 1)? {
                b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => i += 2,
                b'u' => {
                    let hex = src.get(i + 2..i + 6)?;
                    let canonical = matches!(hex, b"003c" | b"003e" | b"0026" | b"2028" | b"2029")
                        || (hex.starts_with(b"00")
                            && matches!(hex[2], b'0' | b'1')
                            && matches!(hex[3], b'0'..=b'9' | b'a'..=b'f')
                            && !matches!(&hex[2..], b"08" | b"09" | b"0a" | b"0c" | b"0d"));
                    if !canonical {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            _ => i += 1,
        }
    }
}

/// True when Go's float64 round trip writes the number exactly as given.
fn number_is_canonical(lit: &[u8]) -> bool {
    let digits = lit.strip_prefix(b"-").unwrap_or(lit);
    if digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        // The grammar already excludes leading zeros; these are exact in f64.
        return true;
    }
    let Some(f) = std::str::from_utf8(lit).ok().and_then(|s| s.parse::<f64>().ok()) else {
        return false;
    };
    let mut out = Vec::with_capacity(24);
    write::float(&mut out, f).is_ok() && out == lit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_output_is_canonical() {
        for s in [
            r#"{"a":[1,2.5,-0,1e+21,1e-7,"x\u003c\n"],"b":{"c":null,"d":true}}"#,
            r#"[]"#,
            r#"{}"#,
            r#"[false,true,null,{"f":false}]"#,
            "5",
            "-0.5",
            "true",
            "false",
            "null",
            "[\"\u{20ac}\u{2027}\u{202a}\u{e000}\"]",
            r#"{"":1," ":2,"a":3}"#,
            "[\"\\u0000\\u001f\"]",
        ] {
            assert!(is_canonical(s.as_bytes(), false), "{s}");
        }
    }

    #[test]
    fn anything_go_would_rewrite_is_not() {
        for s in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"[1.0]"#,
            r#"[1E5]"#,
            r#"[9007199254740993]"#,
            r#"["\/"]"#,
            r#"["\u0041"]"#,
            r#"["\u0008"]"#,
            r#"["<"]"#,
            "[\"\u{2028}\"]",
            "[\"\u{2029}\"]",
            r#"[1, 2]"#,
            r#"{"\u0061":1}"#,
            r#"[1e400]"#,
        ] {
            assert!(!is_canonical(s.as_bytes(), false), "{s}");
        }
        assert!(!is_canonical(b"[\"\xff\"]", false));
    }
}
