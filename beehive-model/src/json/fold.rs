//! Go's case-insensitive matching of JSON object keys to struct fields.
//!
//! Go (`encoding/json`, fold.go) folds every rune of a key to the smallest
//! rune of its simple case-folding orbit and compares the results. Every
//! beehive field name is lower-case ASCII letters and `_`, and the only
//! non-ASCII runes whose orbit contains such a letter are U+017F LATIN SMALL
//! LETTER LONG S (orbit `S s ſ`) and U+212A KELVIN SIGN (orbit `K k K`). Any
//! other non-ASCII rune — including U+FFFD from invalid UTF-8 — matches
//! nothing, so folding reduces to ASCII case folding plus those two runes.

/// Folds one character onto the lower-case ASCII letter it matches, if any.
fn fold_char(c: char) -> Option<u8> {
    match c {
        '\u{017F}' => Some(b's'),
        '\u{212A}' => Some(b'k'),
        c if c.is_ascii() => Some((c as u8).to_ascii_lowercase()),
        _ => None,
    }
}

/// True when `key` (the unescaped key text) folds to `field`, a lower-case
/// ASCII name.
pub(crate) fn key_matches(key: &str, field: &str) -> bool {
    let field = field.as_bytes();
    let mut i = 0;
    for c in key.chars() {
        match fold_char(c) {
            Some(b) if i < field.len() && field[i] == b => i += 1,
            _ => return false,
        }
    }
    i == field.len()
}

/// Whether `key` is exactly `field`'s bytes. The length and first byte
/// are compared before the rest, which rules out most other fields of a
/// struct without a call to `memcmp` (measured: cheaper than comparing
/// short keys as words).
#[inline]
pub(crate) fn is_exactly(key: &[u8], field: &str) -> bool {
    let f = field.as_bytes();
    key.len() == f.len() && key.first() == f.first() && key == f
}

/// The index of the field in `fields` whose name `key` is exactly.
#[inline]
pub(crate) fn exact_field(key: &[u8], fields: &[&str]) -> Option<usize> {
    fields.iter().position(|f| is_exactly(key, f))
}

/// The index of the field in `fields` that `key` matches, Go's way.
pub(crate) fn match_field(key: &[u8], fields: &[&str]) -> Option<usize> {
    // Exact names first (what Go and we write); folding only otherwise.
    if let Some(i) = exact_field(key, fields) {
        return Some(i);
    }
    let key = std::str::from_utf8(key).ok()?;
    fields.iter().position(|f| key_matches(key, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_case_variants_match() {
        for k in ["msg_id", "MSG_ID", "Msg_Id", "mSg_iD"] {
            assert!(key_matches(k, "msg_id"), "{k}");
        }
    }

    #[test]
    fn long_s_and_kelvin_fold() {
        assert!(key_matches("m\u{017F}g_id", "msg_id"));
        assert!(key_matches("\u{212A}ey", "key"));
    }

    #[test]
    fn other_unicode_lookalikes_do_not_fold() {
        for k in ["msg_\u{0131}d", "msg_\u{0130}d", "\u{FF2D}sg_id", "\u{00DF}ource", "\u{03C2}ource", "msg_id\u{FFFD}"]
        {
            assert!(!key_matches(k, "msg_id") && !key_matches(k, "source"), "{k}");
        }
    }

    #[test]
    fn different_lengths_do_not_match() {
        assert!(!key_matches("msg_i", "msg_id"));
        assert!(!key_matches("msg_idd", "msg_id"));
        assert!(!key_matches("msgid", "msg_id"));
    }
}
