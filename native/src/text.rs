//! The text forms Python gives decoded values: `str(Decimal)`, `str(UUID)`,
//! `date.isoformat()`, `time.isoformat()`, base64, and JSON strings and numbers.

use std::fmt::Write as _;

/// `uuid.UUID(text)`'s value when the text is plain hex once Python's own clean-up is done
/// (`urn:` and `uuid:` removed, braces stripped at the ends, hyphens removed); None for
/// anything else, which Python then decides.
pub fn parse_uuid(b: &[u8]) -> Option<u128> {
    if b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b.get(i) == Some(&b'-')) {
        let mut value: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                continue;
            }
            value = (value << 4) | u128::from(hex_digit(c)?);
        }
        return Some(value);
    }
    let text = std::str::from_utf8(b).ok()?;
    let cleaned = text.replace("urn:", "").replace("uuid:", "");
    let hex: String = cleaned
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .filter(|&c| c != '-')
        .collect();
    if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `str(UUID)`: lowercase, hyphenated.
pub fn write_uuid(out: &mut String, value: u128) {
    let hex = format!("{value:032x}");
    for (i, c) in hex.chars().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(c);
    }
}

/// `str(Decimal)` of fastavro's decimal: the big-endian two's complement `raw` scaled by
/// `10^-scale`. None when the digits exceed `precision` (the decimal context would round).
pub fn decimal(raw: &[u8], precision: u32, scale: u32) -> Option<String> {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = raw.to_vec();
    if negative {
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    let digits = decimal_digits(&magnitude);
    if digits.len() > precision as usize {
        return None;
    }
    let exp = -i64::from(scale);
    let count = digits.len() as i64;
    let left = exp + count;
    let dot = if exp <= 0 && left > -6 { left } else { 1 };
    let mut out = String::with_capacity(digits.len() + 8);
    if negative && digits != "0" {
        out.push('-');
    }
    if dot <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', usize::try_from(-dot).ok()?));
        out.push_str(&digits);
    } else if dot >= count {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', usize::try_from(dot - count).ok()?));
    } else {
        let split = usize::try_from(dot).ok()?;
        out.push_str(digits.get(..split)?);
        out.push('.');
        out.push_str(digits.get(split..)?);
    }
    if left != dot {
        let _ = write!(out, "E{:+}", left - dot);
    }
    Some(out)
}

/// The unsigned big-endian `bytes` in decimal digits, no leading zeros ("0" for zero).
fn decimal_digits(bytes: &[u8]) -> String {
    // Base 10^9 limbs, least significant first: multiply in each byte.
    let mut limbs: Vec<u32> = Vec::new();
    for &b in bytes {
        let mut carry = u64::from(b);
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * 256 + carry;
            *limb = (v % 1_000_000_000) as u32;
            carry = v / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push((carry % 1_000_000_000) as u32);
            carry /= 1_000_000_000;
        }
    }
    let mut out = String::new();
    match limbs.split_last() {
        None => out.push('0'),
        Some((top, rest)) => {
            let _ = write!(out, "{top}");
            for limb in rest.iter().rev() {
                let _ = write!(out, "{limb:09}");
            }
        }
    }
    out
}

/// `date.isoformat()` of a day count from 1970-01-01 (within years 1 to 9999).
pub fn write_date(out: &mut String, days: i64) {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(out, "{year:04}-{month:02}-{day:02}");
}

/// `time.isoformat()` of microseconds since midnight (below one day).
pub fn write_time(out: &mut String, micros: i64) {
    let (h, m, s, frac) = (
        micros / 3_600_000_000,
        (micros / 60_000_000) % 60,
        (micros / 1_000_000) % 60,
        micros % 1_000_000,
    );
    let _ = write!(out, "{h:02}:{m:02}:{s:02}");
    if frac != 0 {
        let _ = write!(out, ".{frac:06}");
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (`base64.b64encode`).
pub fn write_base64(out: &mut Vec<u8>, data: &[u8]) {
    let sym = |i: u32| B64.get((i & 63) as usize).copied().unwrap_or(b'=');
    for chunk in data.chunks(3) {
        let b0 = chunk.first().map_or(0, |&b| u32::from(b));
        let b1 = chunk.get(1).map_or(0, |&b| u32::from(b));
        let b2 = chunk.get(2).map_or(0, |&b| u32::from(b));
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { b'=' });
        out.push(if chunk.len() > 2 { sym(n) } else { b'=' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(raw: &[u8], precision: u32, scale: u32) -> Option<String> {
        decimal(raw, precision, scale)
    }

    #[test]
    fn decimals_read_as_python_prints_them() {
        assert_eq!(dec(&[0x04, 0xD2], 9, 2).as_deref(), Some("12.34"));
        assert_eq!(dec(&[0xFB, 0x2E], 9, 2).as_deref(), Some("-12.34"));
        assert_eq!(dec(&[], 9, 2).as_deref(), Some("0.00"));
        assert_eq!(dec(&[0x00], 9, 8).as_deref(), Some("0E-8"));
        assert_eq!(dec(&[0x01], 9, 8).as_deref(), Some("1E-8"));
        assert_eq!(dec(&[0x01], 9, 0).as_deref(), Some("1"));
        assert_eq!(dec(&[0xFF], 9, 3).as_deref(), Some("-0.001"));
        assert_eq!(dec(&[0x27, 0x10], 4, 0), None); // 10000: five digits, precision 4
    }

    #[test]
    fn uuids_dates_and_times() {
        let v = parse_uuid(b"{urn:uuid:12345678-1234-5678-1234-567812345678}").unwrap();
        let mut s = String::new();
        write_uuid(&mut s, v);
        assert_eq!(s, "12345678-1234-5678-1234-567812345678");
        assert_eq!(parse_uuid(b"+2345678123456781234567812345678"), None);
        let mut d = String::new();
        write_date(&mut d, -719_162);
        d.push(' ');
        write_date(&mut d, 2_932_896);
        d.push(' ');
        write_date(&mut d, 19_000);
        assert_eq!(d, "0001-01-01 9999-12-31 2022-01-08");
        let mut t = String::new();
        write_time(&mut t, 86_399_999_999);
        t.push(' ');
        write_time(&mut t, 3_600_000_000);
        assert_eq!(t, "23:59:59.999999 01:00:00");
    }

    #[test]
    fn base64_and_strings() {
        let mut out = Vec::new();
        write_base64(&mut out, b"\x00\xffhi");
        out.push(b' ');
        crate::json::write_json_str(&mut out, "a\"\\\n\x01é");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "AP9oaQ== \"a\\\"\\\\\\n\\u0001é\""
        );
    }
}
