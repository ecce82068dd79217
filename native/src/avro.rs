//! Avro binary → values, strictly. Whatever is unusual is refused (`Defer`): the caller then
//! hands that message to the Python path (fastavro), which decides. So this reader can
//! only speed a record up, never change what it becomes.
//!
//! Bounded: every length and count is checked against the bytes that remain before anything
//! is allocated, the elements of one record are budgeted by its size, and nesting is
//! limited. Every read is a checked slice access: no index can panic.

use std::collections::HashMap;

use crate::plan::{Node, SchemaPlan};
use crate::text;

/// Why a message was not decoded or mapped here (the Python path decides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defer(pub &'static str);

pub type Res<T> = Result<T, Defer>;

const MAX_NESTING: usize = 64;
/// Python's `date.fromordinal` range, as days from 1970-01-01 (years 1 to 9999).
const DATE_MIN: i64 = -719_162;
const DATE_MAX: i64 = 2_932_896;
const MAX_DECIMAL_BYTES: usize = 128;

/// One decoded value. Unions are transparent: a union's value is its branch's value.
#[derive(Debug)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(&'a [u8]),
    Str(&'a str),
    Enum(&'a str),
    /// `str(Decimal)`: the exact text Python's Decimal gives.
    Decimal(String),
    Uuid(u128),
    /// Days since 1970-01-01, within Python's date range.
    Date(i64),
    /// Microseconds since midnight, below one day.
    Time(i64),
    Array(Vec<Value<'a>>),
    /// Entries in first-seen key order; a repeated key keeps its place, the last value wins
    /// (what building a Python dict does).
    Map(Vec<(&'a str, Value<'a>)>),
    Record(&'a [String], Vec<Value<'a>>),
}

pub static NULL: Value<'static> = Value::Null;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Elements (array items, map entries) this record may still hold.
    budget: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Res<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(Defer("decode: past the end"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if n > self.remaining() {
            return Err(Defer("decode: a length past the end"));
        }
        let out = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or(Defer("decode: past the end"))?;
        self.pos += n;
        Ok(out)
    }

    /// A zigzag varint of at most 10 bytes and 64 bits (fastavro wraps longer ones: deferred).
    fn long(&mut self) -> Res<i64> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(Defer("decode: a varint past 64 bits"));
            }
            value |= bits << shift;
            if b < 0x80 {
                let magnitude = (value >> 1) as i64;
                return Ok(if value & 1 == 0 {
                    magnitude
                } else {
                    !magnitude
                });
            }
            shift += 7;
            if shift > 63 {
                return Err(Defer("decode: a varint longer than 10 bytes"));
            }
        }
    }

    fn size(&mut self) -> Res<usize> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| Defer("decode: a negative length"))
    }
}

/// The record in `buf`, which must be exactly one record of `schema`'s root.
pub fn decode<'a>(schema: &'a SchemaPlan, buf: &'a [u8]) -> Res<Value<'a>> {
    let mut reader = Reader {
        buf,
        pos: 0,
        budget: 8 * buf.len() + 1024,
    };
    let value = read(schema, schema.root, &mut reader, 0)?;
    if reader.pos != buf.len() {
        return Err(Defer("decode: trailing bytes after the record"));
    }
    Ok(value)
}

fn node(schema: &SchemaPlan, id: usize) -> Res<&Node> {
    schema
        .nodes
        .get(id)
        .ok_or(Defer("plan: a node id past the schema"))
}

fn read<'a>(schema: &'a SchemaPlan, id: usize, r: &mut Reader<'a>, depth: usize) -> Res<Value<'a>> {
    if depth > MAX_NESTING {
        return Err(Defer("decode: nested too deep"));
    }
    Ok(match node(schema, id)? {
        Node::Null => Value::Null,
        Node::Boolean => match r.byte()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            _ => return Err(Defer("decode: a boolean byte that is neither 0 nor 1")),
        },
        Node::Int | Node::Long => Value::Long(r.long()?),
        Node::Float => {
            let raw = r.take(4)?;
            let bytes: [u8; 4] = raw.try_into().map_err(|_| Defer("decode: float"))?;
            Value::Float(f32::from_le_bytes(bytes))
        }
        Node::Double => {
            let raw = r.take(8)?;
            let bytes: [u8; 8] = raw.try_into().map_err(|_| Defer("decode: double"))?;
            Value::Double(f64::from_le_bytes(bytes))
        }
        Node::Bytes => {
            let n = r.size()?;
            Value::Bytes(r.take(n)?)
        }
        Node::String => Value::Str(string(r)?),
        Node::Uuid => {
            let text = string(r)?;
            Value::Uuid(
                text::parse_uuid(text).ok_or(Defer("decode: a uuid not in plain hex form"))?,
            )
        }
        Node::Date => {
            let days = r.long()?;
            if !(DATE_MIN..=DATE_MAX).contains(&days) {
                return Err(Defer("decode: a date outside years 1 to 9999"));
            }
            Value::Date(days)
        }
        Node::TimeMillis => {
            let ms = r.long()?;
            if !(0..86_400_000).contains(&ms) {
                return Err(Defer("decode: a time-millis outside one day"));
            }
            Value::Time(ms * 1000)
        }
        Node::TimeMicros => {
            let us = r.long()?;
            if !(0..86_400_000_000).contains(&us) {
                return Err(Defer("decode: a time-micros outside one day"));
            }
            Value::Time(us)
        }
        Node::Decimal {
            precision,
            scale,
            size,
        } => {
            let raw = match size {
                Some(n) => r.take(*n)?,
                None => {
                    let n = r.size()?;
                    r.take(n)?
                }
            };
            if raw.len() > MAX_DECIMAL_BYTES {
                return Err(Defer("decode: a decimal of too many bytes"));
            }
            let text = text::decimal(raw, *precision, *scale).ok_or(Defer(
                "decode: a decimal with more digits than its precision",
            ))?;
            Value::Decimal(text)
        }
        Node::Enum { symbols } => {
            let index = r.long()?;
            let symbol = usize::try_from(index).ok().and_then(|i| symbols.get(i));
            Value::Enum(
                symbol
                    .ok_or(Defer("decode: an enum index out of range"))?
                    .as_str(),
            )
        }
        Node::Fixed { size } => Value::Bytes(r.take(*size)?),
        Node::Array { items } => {
            let mut out = Vec::new();
            blocks(r, |r| {
                out.push(read(schema, *items, r, depth + 1)?);
                Ok(())
            })?;
            Value::Array(out)
        }
        Node::Map { values } => {
            let mut out = DictBuilder::default();
            blocks(r, |r| {
                let key = string(r)?;
                let value = read(schema, *values, r, depth + 1)?;
                out.insert(key, value);
                Ok(())
            })?;
            Value::Map(out.entries)
        }
        Node::Record { names, types } => {
            let mut fields = Vec::with_capacity(types.len());
            for id in types {
                fields.push(read(schema, *id, r, depth + 1)?);
            }
            Value::Record(names.as_slice(), fields)
        }
        Node::Union { branches } => {
            let index = r.long()?;
            let branch = usize::try_from(index).ok().and_then(|i| branches.get(i));
            let branch = *branch.ok_or(Defer("decode: a union branch out of range"))?;
            read(schema, branch, r, depth + 1)?
        }
    })
}

fn string<'a>(r: &mut Reader<'a>) -> Res<&'a str> {
    let n = r.size()?;
    std::str::from_utf8(r.take(n)?).map_err(|_| Defer("decode: a string that is not UTF-8"))
}

/// Array and map blocks: a count, then that many items, until a count of zero. A negative
/// count is followed by the block's size in bytes.
fn blocks<'a>(r: &mut Reader<'a>, mut item: impl FnMut(&mut Reader<'a>) -> Res<()>) -> Res<()> {
    loop {
        let mut count = r.long()?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            count = count
                .checked_neg()
                .ok_or(Defer("decode: a block count out of range"))?;
            r.long()?; // the block's size in bytes: not needed to read it
        }
        let count = usize::try_from(count).map_err(|_| Defer("decode: a block count"))?;
        // Every item takes a byte at least here (fastavro reads zero-byte items: deferred).
        if count > r.remaining() || count > r.budget {
            return Err(Defer("decode: a block count past the bytes left"));
        }
        r.budget -= count;
        for _ in 0..count {
            item(r)?;
        }
    }
}

/// What building a Python dict does: a new key goes last, a repeated one keeps its place
/// and takes the new value. Small maps are scanned; larger ones get an index, so a map of
/// many keys costs linear time, not quadratic.
#[derive(Default)]
struct DictBuilder<'a> {
    entries: Vec<(&'a str, Value<'a>)>,
    index: Option<HashMap<&'a str, usize>>,
}

const SCAN_LIMIT: usize = 16;

impl<'a> DictBuilder<'a> {
    fn insert(&mut self, key: &'a str, value: Value<'a>) {
        if self.index.is_none() && self.entries.len() >= SCAN_LIMIT {
            let index = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (*k, i))
                .collect();
            self.index = Some(index);
        }
        let found = match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| *k == key),
        };
        match found.and_then(|i| self.entries.get_mut(i)) {
            Some(slot) => slot.1 = value,
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(key, self.entries.len());
                }
                self.entries.push((key, value));
            }
        }
    }
}
