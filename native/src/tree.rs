//! A decoded record as a flat tree: a composite value (record, array, map) names the span of
//! its children in one arena, so decoding a record allocates nothing once the arena has
//! grown to fit, and the arena is reused from one message to the next.

use std::collections::HashMap;

use crate::avro::{Defer, Res};

/// One decoded value. Unions are transparent: a union's value is its branch's value.
#[derive(Debug)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(&'a [u8]),
    Str(Text<'a>),
    Enum(&'a str),
    /// `str(Decimal)`: the exact text Python's Decimal gives.
    Decimal(String),
    Uuid(u128),
    /// Days since 1970-01-01, within Python's date range.
    Date(i64),
    /// Microseconds since midnight, below one day.
    Time(i64),
    /// Its items: `Tree::values`.
    Array(Span),
    /// Its entries (`Tree::entries`) in first-seen key order; a repeated key keeps its
    /// place, the last value wins (what building a Python dict does).
    Map(Span),
    /// Its field names, and its fields' values: `Tree::values`.
    Record(&'a [String], Span),
}

pub static NULL: Value<'static> = Value::Null;

/// A string of the record: its bytes, checked to be UTF-8 once, when read. Kept as bytes
/// because they are only copied into the JSON or compared: no second check, ever. The same
/// scan finds whether it is `plain`, JSON as it is (no escape), so most strings are
/// written without a second look either. Equal and hashed by their bytes.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a> {
    bytes: &'a [u8],
    plain: bool,
}

impl<'a> Text<'a> {
    /// The bytes when they are UTF-8. `spill`: the record's bytes from where the last
    /// partial word of `bytes` starts, if any; 8 of them let that word be read whole.
    #[inline]
    pub fn checked(bytes: &'a [u8], spill: Option<&[u8]>) -> Option<Text<'a>> {
        let (ascii, plain) = crate::json::classify(bytes, spill);
        if ascii {
            return Some(Text { bytes, plain });
        }
        Self::checked_utf8(bytes)
    }

    #[inline(never)]
    fn checked_utf8(bytes: &'a [u8]) -> Option<Text<'a>> {
        std::str::from_utf8(bytes).ok()?;
        Some(Text {
            bytes,
            plain: !crate::json::any_escape(bytes),
        })
    }

    /// A str's text, to be scanned for escapes when written.
    pub fn of_str(text: &'a str) -> Text<'a> {
        Text {
            bytes: text.as_bytes(),
            plain: false,
        }
    }

    pub fn as_bytes(self) -> &'a [u8] {
        self.bytes
    }

    pub fn is_plain(self) -> bool {
        self.plain
    }

    pub fn is_empty(self) -> bool {
        self.bytes.is_empty()
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Text<'_> {}

impl std::hash::Hash for Text<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

/// Where a composite's children are in the arena. u32: keeps a `Value` at 32 bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Res<Span> {
        let too_many = Defer("decode: a record of too many values");
        let start = u32::try_from(start).map_err(|_| too_many)?;
        let end = u32::try_from(end).map_err(|_| too_many)?;
        Ok(Span {
            start,
            len: end.saturating_sub(start),
        })
    }

    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// The arena of one decoded record. `pending*` hold the items of the arrays and maps being
/// read (their blocks can interleave with their items' own children), moved to the arena
/// once complete so that every composite's children are contiguous.
#[derive(Default)]
pub struct Tree<'a> {
    pub(crate) values: Vec<Value<'a>>,
    pub(crate) entries: Vec<(Text<'a>, Value<'a>)>,
    pub(crate) pending: Vec<Value<'a>>,
    pub(crate) pending_entries: Vec<(Text<'a>, Value<'a>)>,
    /// The keys of the map the fast path writes.
    pub(crate) seen: Seen<'a>,
}

impl<'a> Tree<'a> {
    /// The items of an array or the fields of a record (empty for a span past the arena,
    /// which decoding never makes).
    pub fn values(&self, span: Span) -> &[Value<'a>] {
        self.values.get(span.range()).unwrap_or_default()
    }

    pub fn entries(&self, span: Span) -> &[(Text<'a>, Value<'a>)] {
        self.entries.get(span.range()).unwrap_or_default()
    }
}

/// A map's keys so far: what building a Python dict does, on the entries from `mark` on.
/// A new key goes last, a repeated one keeps its place and takes the new value.
#[derive(Default)]
pub struct Keys<'a> {
    /// A bit per hash of each key seen: a key whose bit is clear is new, no search needed
    /// (an encoder's maps hold each key once).
    seen: u64,
    /// Larger maps get an index, so a map of many keys costs linear time, not quadratic.
    index: Option<HashMap<Text<'a>, usize>>,
}

impl<'a> Keys<'a> {
    #[inline(always)]
    pub fn insert(
        &mut self,
        entries: &mut Vec<(Text<'a>, Value<'a>)>,
        mark: usize,
        key: Text<'a>,
        value: Value<'a>,
    ) {
        let bit = key_bit(key.as_bytes());
        let new = self.seen & bit == 0 && self.index.is_none();
        self.seen |= bit;
        if new {
            entries.push((key, value));
        } else {
            self.insert_seen(entries, mark, key, value);
        }
    }

    /// A key that may be there already: searched (or looked up, in a larger map).
    #[inline(never)]
    fn insert_seen(
        &mut self,
        entries: &mut Vec<(Text<'a>, Value<'a>)>,
        mark: usize,
        key: Text<'a>,
        value: Value<'a>,
    ) {
        let len = entries.len().saturating_sub(mark);
        let own = entries.get(mark..).unwrap_or_default();
        if self.index.is_none() && len >= SCAN_LIMIT {
            self.index = Some(own.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect());
        }
        let found = match &self.index {
            Some(index) => index.get(&key).copied(),
            None => own.iter().position(|(k, _)| *k == key),
        };
        match found.and_then(|i| entries.get_mut(mark + i)) {
            Some(slot) => slot.1 = value,
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(key, len);
                }
                entries.push((key, value));
            }
        }
    }
}

const SCAN_LIMIT: usize = 16;

/// A key's bit among 64: a map's keys whose bits are all clear are new to it.
#[inline(always)]
pub(crate) fn key_bit(bytes: &[u8]) -> u64 {
    let first = bytes.first().map_or(0, |&b| u32::from(b));
    let last = bytes.last().map_or(0, |&b| u32::from(b));
    1u64 << ((last ^ (bytes.len() as u32) << 2 ^ first >> 1) & 63)
}

/// The keys of a map being written as it is read (the fast path's), to find a repeated
/// one: `false` for a key that may have come before. Past `FEW_KEYS` keys, any key whose
/// bit is taken is taken for one (the tree, with its index, then decides).
#[derive(Default)]
pub(crate) struct Seen<'a> {
    bits: u64,
    keys: Vec<&'a [u8]>,
}

const FEW_KEYS: usize = 64;

impl<'a> Seen<'a> {
    pub(crate) fn clear(&mut self) {
        self.bits = 0;
        self.keys.clear();
    }

    #[inline(always)]
    pub(crate) fn first_time(&mut self, key: &'a [u8]) -> bool {
        let bit = key_bit(key);
        if self.bits & bit != 0 && (self.keys.len() > FEW_KEYS || self.keys.contains(&key)) {
            return false;
        }
        self.bits |= bit;
        self.keys.push(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_checked_and_values_stay_small() {
        assert!(Text::checked(b"x", None).is_some_and(|t| t.is_plain()));
        assert!(Text::checked(b"\xff", None).is_none());
        assert!(Text::checked("\"é".as_bytes(), None).is_some_and(|t| !t.is_plain()));
        assert_eq!(std::mem::size_of::<Value<'_>>(), 32);
    }
}
