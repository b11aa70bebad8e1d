//! Word-at-a-time scanning of string bodies (eight bytes per step, no
//! `unsafe`): the hot loops of decoding and of the canonical-form check.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` equal to `c` (exact for the lowest one).
#[inline(always)]
fn eq_mask(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x
}

/// High bit set in each byte of `w` below `n` (n <= 128; exact for the lowest one).
#[inline(always)]
fn lt_mask(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w
}

#[inline(always)]
fn scan(s: &[u8], mask: impl Fn(u64) -> u64, stop: impl Fn(u8) -> bool) -> usize {
    let mut chunks = s.chunks_exact(8);
    let mut i = 0;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        let m = mask(w) & HIGH;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let tail = chunks.remainder();
    i + tail.iter().position(|&b| stop(b)).unwrap_or(tail.len())
}

/// Offset of the first `"`, `\` or control byte (the end of a plain run in a
/// JSON string), or `s.len()`.
#[inline]
pub(crate) fn string_stop(s: &[u8]) -> usize {
    scan(s, |w| eq_mask(w, b'"') | eq_mask(w, b'\\') | lt_mask(w, 0x20), |b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Offset of the first byte Go's writer would not copy as is inside a string
/// (`"`, `\`, `<`, `>`, `&`, a control byte) or any non-ASCII byte, or `s.len()`.
#[inline]
pub(crate) fn canonical_stop(s: &[u8]) -> usize {
    scan(
        s,
        |w| {
            eq_mask(w, b'"')
                | eq_mask(w, b'\\')
                | eq_mask(w, b'<')
                | eq_mask(w, b'>')
                | eq_mask(w, b'&')
                | lt_mask(w, 0x20)
                | w
        },
        |b| matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&') || !(0x20..0x80).contains(&b),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(s: &[u8], stop: impl Fn(u8) -> bool) -> usize {
        s.iter().position(|&b| stop(b)).unwrap_or(s.len())
    }

    #[test]
    fn word_scans_agree_with_byte_scans() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in 0..80 {
            for _ in 0..200 {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        // Mostly plain ASCII, sometimes a stop byte.
                        match rng % 23 {
                            0 => b'"',
                            1 => b'\\',
                            2 => (rng >> 8) as u8 % 0x20,
                            3 => 0x80 | (rng >> 8) as u8,
                            4 => b"<>&"[(rng >> 8) as usize % 3],
                            _ => 0x20 + (rng >> 8) as u8 % 0x5f,
                        }
                    })
                    .collect();
                assert_eq!(string_stop(&s), naive(&s, |b| b == b'"' || b == b'\\' || b < 0x20), "{s:?}");
                assert_eq!(
                    canonical_stop(&s),
                    naive(&s, |b| matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&') || !(0x20..0x80).contains(&b)),
                    "{s:?}"
                );
            }
        }
    }
}
