//! JSON numbers and strings as the Python path's encoders write them.

pub use crate::float::{write_f64, FloatStyle};
use crate::tree::Text;

pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    put(out, itoa::Buffer::new().format(value).as_bytes());
}

/// `out.extend_from_slice(bytes)`, a short slice (most strings and numbers here) without
/// a call: its first and last word (or half-word), overlapping, put together in place and
/// appended whole, then cut back to the slice's length.
#[inline(always)]
pub fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    let at = out.len();
    if n > 16 {
        if let (true, Some(head), Some(tail)) =
            (n <= 32, bytes.first_chunk::<16>(), bytes.last_chunk::<16>())
        {
            let mut both = [0u8; 32];
            both[..16].copy_from_slice(head);
            if let Some(end) = both.get_mut(n - 16..n) {
                end.copy_from_slice(tail);
            }
            out.extend_from_slice(&both);
            out.truncate(at + n);
            return;
        }
    } else if n >= 8 {
        if let (Some(head), Some(tail)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            let mut both = [0u8; 16];
            both[..8].copy_from_slice(head);
            if let Some(end) = both.get_mut(n - 8..n) {
                end.copy_from_slice(tail);
            }
            out.extend_from_slice(&both);
            out.truncate(at + n);
            return;
        }
    } else if n >= 4 {
        if let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            let mut both = [0u8; 8];
            both[..4].copy_from_slice(head);
            if let Some(end) = both.get_mut(n - 4..n) {
                end.copy_from_slice(tail);
            }
            out.extend_from_slice(&both);
            out.truncate(at + n);
            return;
        }
    }
    out.extend_from_slice(bytes);
}

/// `"bytes"` appended as one write when `bytes` (that need no escape) are at most 30:
/// put together in place between quotes (its first and last word, or half-word, that may
/// overlap), appended whole, then cut back. Whether it was written.
#[inline(always)]
fn put_quoted(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    fn ends<const W: usize>(all: &mut [u8; 32], bytes: &[u8]) {
        let n = bytes.len();
        if let (Some(head), Some(tail)) = (bytes.first_chunk::<W>(), bytes.last_chunk::<W>()) {
            if let Some(to) = all.get_mut(1..).and_then(|to| to.first_chunk_mut::<W>()) {
                *to = *head;
            }
            let end = (n + 1).saturating_sub(W);
            if let Some(to) = all.get_mut(end..).and_then(|to| to.first_chunk_mut::<W>()) {
                *to = *tail;
            }
        }
    }
    let n = bytes.len();
    // Quotes all along: the one after the string is there already.
    let mut all = [b'"'; 32];
    match n {
        0 => {}
        1..=3 => {
            for (at, from) in [(1, 0), (1 + n / 2, n / 2), (n, n - 1)] {
                if let (Some(to), Some(b)) = (all.get_mut(at), bytes.get(from)) {
                    *to = *b;
                }
            }
        }
        4..=7 => ends::<4>(&mut all, bytes),
        8..=15 => ends::<8>(&mut all, bytes),
        16..=30 => ends::<16>(&mut all, bytes),
        _ => return false,
    }
    let at = out.len();
    out.extend_from_slice(&all);
    out.truncate(at + n + 2);
    true
}

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as short
/// escapes or `\u00XX`, everything else (non-ASCII included) as UTF-8. `bytes` must be
/// UTF-8 (a `str`'s, or a decoded string's, validated once when it was read).
#[inline(always)]
pub fn write_json_str(out: &mut Vec<u8>, text: impl JsonText) {
    let (bytes, plain) = text.parts();
    if plain {
        if put_quoted(out, bytes) {
            return;
        }
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        write_json_bytes(out, bytes);
    }
}

/// A string's UTF-8 bytes, and whether they are known to need no escape.
pub trait JsonText {
    fn parts(&self) -> (&[u8], bool);
}

impl JsonText for Text<'_> {
    fn parts(&self) -> (&[u8], bool) {
        (self.as_bytes(), self.is_plain())
    }
}

impl JsonText for &Text<'_> {
    fn parts(&self) -> (&[u8], bool) {
        (self.as_bytes(), self.is_plain())
    }
}

impl<T: AsRef<[u8]> + ?Sized> JsonText for T {
    fn parts(&self) -> (&[u8], bool) {
        (self.as_ref(), false)
    }
}

/// Whether `bytes` are ASCII, and (if so) whether none needs a JSON escape: a word at a
/// time. A last partial word is read overlapping the word before; in a string shorter
/// than a word, from `spill` when it holds 8 bytes (those past the string masked off as a
/// letter), else a byte at a time.
#[inline(always)]
pub fn classify(bytes: &[u8], spill: Option<&[u8]>) -> (bool, bool) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut high = 0u64;
    let mut escapes = 0u64;
    // Strings are short: a plain loop, a word a turn (not vectorized: no set-up to pay).
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let x = word(chunk);
        high |= x;
        escapes |= word_escapes(x);
        at += 8;
    }
    let rest = bytes.len() - at;
    if rest > 0 {
        // The last word whole: overlapping the one before, or from the spill masked.
        let last = match bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) {
            Some(last) => Some(word(last)),
            None => spill.and_then(|spill| spill.get(..8)).map(|spill| {
                let keep = u64::MAX >> (64 - 8 * rest);
                (word(spill) & keep) | (u64::from_le_bytes([b'A'; 8]) & !keep)
            }),
        };
        match last {
            Some(x) => {
                high |= x;
                escapes |= word_escapes(x);
            }
            None => {
                for &b in bytes.get(at..).unwrap_or_default() {
                    high |= u64::from(b);
                    escapes |= u64::from(escape_of(b));
                }
            }
        }
    }
    (high & HIGH == 0, escapes == 0)
}

#[inline]
fn word(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// The high bit of some byte set when a byte of `x` is below 0x20, `"` or `\`: exactly
/// when one is, these bit tricks leave one set (a borrow can mark a byte after a true one,
/// never make one up).
#[inline]
fn word_escapes(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = x.wrapping_sub(0x20 * ONES);
    let quote = x ^ (u64::from(b'"') * ONES);
    let slash = x ^ (u64::from(b'\\') * ONES);
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    (below | zero(quote) | zero(slash)) & !x & HIGH
}

/// What each byte becomes in a JSON string: 0 itself, `u` a `\u00XX` escape, any other
/// the letter of its short escape (`\n`, `\"`, ...).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0C] = b'f';
    table
};

fn escape_of(b: u8) -> u8 {
    ESCAPE.get(usize::from(b)).copied().unwrap_or_default()
}

fn write_json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: checked a word at a time, then copied at once.
    if !any_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (at, &b) in bytes.iter().enumerate() {
        let escape = escape_of(b);
        if escape == 0 {
            continue;
        }
        // Runs of bytes that need no escape are copied whole.
        out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        if escape == b'u' {
            write_hex_escape(out, b);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = at + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Whether a byte of `bytes` needs an escape. Eight bytes or more: a word at a time, the
/// last word overlapping the one before rather than copied into a padded one; fewer: a
/// byte at a time, by the table.
pub fn any_escape(bytes: &[u8]) -> bool {
    let Some(last) = bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) else {
        return bytes.iter().any(|&b| escape_of(b) != 0);
    };
    let mut found = word_escapes(word(last));
    for chunk in bytes.chunks_exact(8) {
        found |= word_escapes(word(chunk));
    }
    found != 0
}

fn write_hex_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |nibble: u8| HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
    out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 15)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }

    /// `classify` against a byte-at-a-time answer, with the tail read whole from a spill
    /// (whatever bytes follow) or byte by byte.
    #[test]
    fn classify_matches_the_bytes_whatever_follows() {
        for b in 0..=255u8 {
            for len in 1..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let ascii = b < 0x80;
                    let plain = !needs_escape(b);
                    for after in [
                        &b""[..],
                        b"\x00\x00\x00\x00\x00\x00\x00\x00",
                        b"\xff\"\\\x01zzzz",
                    ] {
                        let mut record = bytes.clone();
                        record.extend_from_slice(after);
                        let spill = record.get(len & !7..);
                        let (a, p) = classify(&record[..len], spill);
                        assert_eq!(a, ascii, "{b} at {at} of {len}");
                        if ascii {
                            assert_eq!(p, plain, "{b} at {at} of {len}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn plain_strings_are_quoted_whatever_their_length() {
        let bytes: Vec<u8> = (b'0'..=b'z').collect();
        for start in 0..3 {
            for n in 0..=bytes.len() {
                let mut out = vec![b'x'; start];
                write_json_str(&mut out, Text::checked(&bytes[..n], None).expect("ASCII"));
                let mut expected = vec![b'x'; start];
                write_json_bytes(&mut expected, &bytes[..n]);
                assert_eq!(out, expected, "{n} after {start}");
            }
        }
    }

    #[test]
    fn put_appends_any_slice() {
        let bytes: Vec<u8> = (0..70).collect();
        for start in 0..3 {
            for n in 0..=bytes.len() {
                let mut out = vec![b'x'; start];
                put(&mut out, &bytes[..n]);
                assert_eq!(out[..start], vec![b'x'; start][..]);
                assert_eq!(out[start..], bytes[..n], "{n} after {start}");
            }
        }
    }

    #[test]
    fn the_word_scan_finds_every_byte_to_escape_wherever_it_is() {
        for b in 0..=255u8 {
            for len in 1..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    bytes.push(0xC3); // non-ASCII around it must not count
                    assert_eq!(any_escape(&bytes), needs_escape(b), "{b} at {at} of {len}");
                    assert_eq!(escape_of(b) != 0, needs_escape(b));
                }
            }
        }
    }
}
