//! JSON numbers and strings as the Python path's encoders write them.

use std::fmt::Write as _;

/// How doubles are written: as orjson writes them, or as Python's json module does (the
/// mapping's encoder when eventargs may hold a decimal).
#[derive(Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FloatStyle {
    Orjson,
    Repr,
}

/// A finite double with the shortest digits that read back to the same double: positional
/// from 1e-5 (orjson; `repr`: 1e-4) up to 1e16, with ".0" when integral, else `1.5e+300`
/// and `2.5e-7` (`repr`: `2.5e-07`). None for NaN and infinities: no JSON form.
pub fn write_f64(out: &mut Vec<u8>, value: f64, style: FloatStyle) -> Option<()> {
    if !value.is_finite() {
        return None;
    }
    // Shortest round-trip digits, "-1.5e300" or "1e16", into a stack buffer: no allocation.
    let mut buf = StackBuf::default();
    write!(buf, "{value:e}").ok()?;
    let sci = buf.as_bytes();
    let e_at = sci.iter().position(|&b| b == b'e')?;
    let (mantissa, exp_text) = (sci.get(..e_at)?, sci.get(e_at + 1..)?);
    let exp: i64 = std::str::from_utf8(exp_text).ok()?.parse().ok()?;
    let mantissa = match mantissa.strip_prefix(b"-") {
        Some(rest) => {
            out.push(b'-');
            rest
        }
        None => mantissa,
    };
    let lowest = if style == FloatStyle::Repr { -4 } else { -5 };
    if !(lowest..16).contains(&exp) {
        out.extend_from_slice(mantissa);
        match style {
            FloatStyle::Orjson => out.extend_from_slice(if exp > 0 { b"e+" } else { b"e" }),
            FloatStyle::Repr => out.extend_from_slice(if exp > 0 { b"e+" } else { b"e-" }),
        }
        if style == FloatStyle::Repr && exp.abs() < 10 {
            out.push(b'0');
        }
        write_i64(
            out,
            if style == FloatStyle::Repr {
                exp.abs()
            } else {
                exp
            },
        );
        return Some(());
    }
    let (first, rest) = mantissa.split_first()?;
    let fraction = rest.strip_prefix(b".").unwrap_or(rest);
    let digit = |i: usize| {
        if i == 0 {
            Some(*first)
        } else {
            fraction.get(i - 1).copied()
        }
    };
    let count = 1 + fraction.len();
    if exp < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', usize::try_from(-exp - 1).ok()?));
        out.push(*first);
        out.extend_from_slice(fraction);
        return Some(());
    }
    let int_len = usize::try_from(exp + 1).ok()?;
    for i in 0..int_len {
        out.push(digit(i).unwrap_or(b'0'));
    }
    out.push(b'.');
    if count <= int_len {
        out.push(b'0');
    } else {
        out.extend_from_slice(fraction.get(int_len - 1..)?);
    }
    Some(())
}

/// A small fixed buffer for `write!` (a double's text is at most 24 bytes).
struct StackBuf {
    bytes: [u8; 40],
    len: usize,
}

impl Default for StackBuf {
    fn default() -> Self {
        StackBuf {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl StackBuf {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        if let Some(slot) = digits.get_mut(at) {
            *slot = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || at == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as short
/// escapes or `\u00XX`, everything else (non-ASCII included) as UTF-8. `bytes` must be
/// UTF-8 (a `str`'s, or a decoded string's, validated once when it was read).
#[inline]
pub fn write_json_str(out: &mut Vec<u8>, text: impl AsRef<[u8]>) {
    write_json_bytes(out, text.as_ref());
}

fn write_json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: checked 8 bytes at a time, then copied at once.
    if !any_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    // Runs of bytes that need no escape are copied whole.
    while let Some(found) = bytes
        .get(start..)
        .and_then(|rest| rest.iter().position(|&b| needs_escape(b)))
    {
        let at = start + found;
        out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        let b = bytes.get(at).copied().unwrap_or_default();
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            _ => {
                let _ = write_hex_escape(out, b);
            }
        }
        start = at + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Whether a byte of `bytes` needs an escape, a word at a time (SWAR): a word has a byte
/// below 0x20, or equal to `"` or `\`, exactly when these bit tricks leave a high bit set.
fn any_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word_escapes = |x: u64| {
        let below = x.wrapping_sub(0x20 * ONES);
        let quote = x ^ (u64::from(b'"') * ONES);
        let slash = x ^ (u64::from(b'\\') * ONES);
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        (below | zero(quote) | zero(slash)) & !x & HIGH != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut found = false;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        found |= word_escapes(u64::from_le_bytes(word));
    }
    // The tail, padded with a byte that needs no escape.
    let mut tail = [b'a'; 8];
    let rest = chunks.remainder();
    if let Some(slot) = tail.get_mut(..rest.len()) {
        slot.copy_from_slice(rest);
    }
    found | word_escapes(u64::from_le_bytes(tail))
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn write_hex_escape(out: &mut Vec<u8>, b: u8) -> Option<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u00");
    out.push(*HEX.get(usize::from(b >> 4))?);
    out.push(*HEX.get(usize::from(b & 15))?);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(value: f64, style: FloatStyle) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, value, style).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn doubles_as_orjson_and_as_repr_write_them() {
        let cases = [
            (1e16, "1e+16", "1e+16"),
            (1e15, "1000000000000000.0", "1000000000000000.0"),
            (1e-5, "0.00001", "1e-05"),
            (1e-4, "0.0001", "0.0001"),
            (2.5e-7, "2.5e-7", "2.5e-07"),
            (-1.5e300, "-1.5e+300", "-1.5e+300"),
            (5e-324, "5e-324", "5e-324"),
            (-0.0, "-0.0", "-0.0"),
            (123456789.125, "123456789.125", "123456789.125"),
            (
                9999999999999998.0,
                "9999999999999998.0",
                "9999999999999998.0",
            ),
            (0.1, "0.1", "0.1"),
            (100.0, "100.0", "100.0"),
        ];
        for (value, orjson, repr) in cases {
            assert_eq!(float(value, FloatStyle::Orjson), orjson);
            assert_eq!(float(value, FloatStyle::Repr), repr);
        }
        assert!(write_f64(&mut Vec::new(), f64::NAN, FloatStyle::Orjson).is_none());
        let mut ints = Vec::new();
        for v in [0, -1, 42, i64::MIN, i64::MAX] {
            write_i64(&mut ints, v);
            ints.push(b' ');
        }
        assert_eq!(ints, b"0 -1 42 -9223372036854775808 9223372036854775807 ");
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
                }
            }
        }
    }
}
