//! Doubles as the Python path's encoders write them: orjson, or Python's json module.

use crate::json::write_i64;

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
    if value.is_sign_negative() {
        out.push(b'-');
    }
    // The shortest digits that read back to the value, re-laid out as the encoders do.
    let mut digits = Digits::default();
    let exp = match hundredths(value.abs()) {
        Some(n) => digits.of_hundredths(n),
        None => {
            let mut buf = ryu::Buffer::new();
            digits.read(buf.format_finite(value.abs()).as_bytes())
        }
    }?;
    let (&first, fraction) = digits.as_bytes().split_first()?;
    let lowest = if style == FloatStyle::Repr { -4 } else { -5 };
    if !(lowest..16).contains(&exp) {
        out.push(first);
        if !fraction.is_empty() {
            out.push(b'.');
            out.extend_from_slice(fraction);
        }
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
    if exp < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', usize::try_from(-exp - 1).ok()?));
        out.push(first);
        out.extend_from_slice(fraction);
        return Some(());
    }
    let int_len = usize::try_from(exp + 1).ok()?;
    let all = digits.as_bytes();
    match all.get(..int_len) {
        Some(int) => out.extend_from_slice(int),
        None => {
            out.extend_from_slice(all);
            out.extend(std::iter::repeat_n(b'0', int_len - all.len()));
        }
    }
    out.push(b'.');
    match all.get(int_len..) {
        Some(rest) if !rest.is_empty() => out.extend_from_slice(rest),
        _ => out.push(b'0'),
    }
    Some(())
}

/// `value` (not negative) as a count of hundredths, when that count read back is `value`
/// and `value` is below 2^45. Its digits are then the shortest that read back to it, the
/// ones ryu finds: any other decimal of as few digits is a multiple of 0.01 as well, and
/// those are further apart than two doubles are below 2^45 (2^-8), so none reads back to
/// the same double. Most prices and measures are such values: no search for digits.
fn hundredths(value: f64) -> Option<u64> {
    if !(0.01..35_184_372_088_832.0).contains(&value) {
        return None;
    }
    let n = (value * 100.0).round();
    (n / 100.0 == value).then_some(n as u64)
}

/// A double's significant digits, without leading or trailing zeros ("0" for zero).
#[derive(Default)]
struct Digits {
    bytes: [u8; 24],
    len: usize,
}

impl Digits {
    /// Reads ryu's text of a non-negative double ("0.001", "123.45", "1.5e300", "1e-7"):
    /// keeps its digits, gives the decimal exponent of the first one.
    fn read(&mut self, text: &[u8]) -> Option<i64> {
        let (mantissa, exp) = match text.iter().position(|&b| b == b'e') {
            Some(at) => {
                let exp = std::str::from_utf8(text.get(at + 1..)?).ok()?;
                (text.get(..at)?, exp.parse::<i64>().ok()?)
            }
            None => (text, 0),
        };
        // The exponent of the first digit written, then one less per digit after it.
        let mut point = exp - 1;
        let mut seen_point = false;
        for &b in mantissa {
            if b == b'.' {
                seen_point = true;
                continue;
            }
            if !seen_point {
                point += 1;
            }
            if b == b'0' && self.len == 0 {
                point -= 1; // a leading zero: the first significant digit is further on
                continue;
            }
            *self.bytes.get_mut(self.len)? = b;
            self.len += 1;
        }
        while self.len > 1 && self.bytes.get(self.len - 1) == Some(&b'0') {
            self.len -= 1;
        }
        if self.len == 0 {
            *self.bytes.get_mut(0)? = b'0';
            self.len = 1;
            return Some(0);
        }
        Some(point)
    }

    /// The digits of `n` hundredths (`n` > 0); the decimal exponent of the first one.
    fn of_hundredths(&mut self, n: u64) -> Option<i64> {
        let mut buf = itoa::Buffer::new();
        let text = buf.format(n).as_bytes();
        let mut kept = text.len();
        while kept > 1 && text.get(kept - 1) == Some(&b'0') {
            kept -= 1;
        }
        let kept = text.get(..kept)?;
        self.bytes.get_mut(..kept.len())?.copy_from_slice(kept);
        self.len = kept.len();
        i64::try_from(text.len()).ok().map(|len| len - 3)
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
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

    /// ryu's digits are as few as `{:e}`'s (the shortest round trip) and read back to the
    /// same double. They differ only on a tie, which ryu rounds to even as Python does:
    /// 1010.43829345703125 is 1010.4382934570312 there (and in orjson), ...313 in `{:e}`.
    #[test]
    fn ryu_digits_are_the_shortest_round_trip_ones() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let check = |value: f64| {
            if !value.is_finite() {
                return;
            }
            let sci = format!("{:e}", value.abs());
            let shortest = sci.split_once('e').unwrap().0.replace('.', "");
            let mut buf = ryu::Buffer::new();
            let mut digits = Digits::default();
            let exp = digits
                .read(buf.format_finite(value.abs()).as_bytes())
                .unwrap();
            let text = std::str::from_utf8(digits.as_bytes()).unwrap();
            assert_eq!(text.len(), shortest.len(), "{value:e}");
            let back: f64 = format!("0.{text}e{}", exp + 1).parse().unwrap();
            assert_eq!(back, value.abs(), "{value:e}");
        };
        // Hundredths take the short way: the same digits as ryu's.
        let ryu_way = |value: f64| {
            let mut buf = ryu::Buffer::new();
            let mut digits = Digits::default();
            let exp = digits.read(buf.format_finite(value).as_bytes()).unwrap();
            (digits.as_bytes().to_vec(), exp)
        };
        let mut y: u64 = 12345;
        for _ in 0..200_000 {
            y = y
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let scale = [1.0, 10.0, 100.0, 1000.0][(y >> 62) as usize];
            let value = ((y >> 11) % 100_000_000_000) as f64 / scale;
            if let Some(n) = hundredths(value) {
                let mut digits = Digits::default();
                let exp = digits.of_hundredths(n).unwrap();
                assert_eq!((digits.as_bytes().to_vec(), exp), ryu_way(value), "{value}");
            }
        }
        let mut tie = Vec::new();
        let value: f64 = "-1010.43829345703125".parse().unwrap();
        write_f64(&mut tie, value, FloatStyle::Orjson).unwrap();
        assert_eq!(tie, b"-1010.4382934570312");
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check(f64::from_bits(x));
            check(f64::from(f32::from_bits(x as u32)));
            check((x % 10_000_000) as f64 / 100.0);
        }
        for value in [
            0.0,
            1.0,
            10.0,
            1e16,
            1e15,
            1e-5,
            1e-7,
            5e-324,
            f64::MAX,
            1e22,
            1e23,
        ] {
            check(value);
        }
    }
}
