//! Avro binary → values, strictly. Whatever is unusual is refused (`Defer`): the caller then
//! hands that message to the Python path (fastavro), which decides. So this reader can
//! only speed a record up, never change what it becomes.
//!
//! Bounded: every length and count is checked against the bytes that remain before anything
//! is allocated, the elements of one record are budgeted by its size, and nesting is
//! limited. Every read is a checked slice access: no index can panic.

use crate::plan::{Node, SchemaPlan};
use crate::text;
use crate::tree::Keys;
pub use crate::tree::{Span, Text, Tree, Value, NULL};

/// Why a message was not decoded or mapped here (the Python path decides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defer(pub &'static str);

pub type Res<T> = Result<T, Defer>;

const MAX_NESTING: usize = 64;
/// Python's `date.fromordinal` range, as days from 1970-01-01 (years 1 to 9999).
const DATE_MIN: i64 = -719_162;
const DATE_MAX: i64 = 2_932_896;
const MAX_DECIMAL_BYTES: usize = 128;

pub(crate) struct Reader<'a, 't> {
    buf: &'a [u8],
    pos: usize,
    /// Elements (array items, map entries) this record may still hold.
    budget: usize,
    pub(crate) tree: &'t mut Tree<'a>,
}

impl<'a, 't> Reader<'a, 't> {
    /// A reader of the record in `buf`, its composites' children to `tree` (emptied).
    pub(crate) fn new(buf: &'a [u8], tree: &'t mut Tree<'a>) -> Self {
        tree.values.clear();
        tree.entries.clear();
        tree.pending.clear();
        tree.pending_entries.clear();
        Reader {
            buf,
            pos: 0,
            budget: 8 * buf.len() + 1024,
            tree,
        }
    }

    /// Whether the record took every byte.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
}

impl<'a> Reader<'a, '_> {
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

    /// The next `n` bytes: one check (`pos` never passes the end, so only `n` can).
    #[inline]
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let out = self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.get(..n))
            .ok_or(Defer("decode: a length past the end"))?;
        self.pos += n;
        Ok(out)
    }

    /// A zigzag varint of at most 10 bytes and 64 bits (fastavro wraps longer ones: deferred).
    #[inline]
    pub(crate) fn long(&mut self) -> Res<i64> {
        // One byte (most lengths, counts, indexes) inline, without the loop.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                let magnitude = i64::from(b >> 1);
                return Ok(if b & 1 == 0 { magnitude } else { !magnitude });
            }
        }
        self.long_slow()
    }

    #[inline(never)]
    fn long_slow(&mut self) -> Res<i64> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let mut value: u64 = 0;
        for (at, &b) in rest.iter().take(10).enumerate() {
            let bits = u64::from(b & 0x7F);
            if at == 9 && bits > 1 {
                return Err(Defer("decode: a varint past 64 bits"));
            }
            value |= bits << (7 * at);
            if b < 0x80 {
                self.pos += at + 1;
                let magnitude = (value >> 1) as i64;
                return Ok(if value & 1 == 0 {
                    magnitude
                } else {
                    !magnitude
                });
            }
        }
        Err(Defer(if rest.len() >= 10 {
            "decode: a varint longer than 10 bytes"
        } else {
            "decode: past the end"
        }))
    }

    #[inline]
    pub(crate) fn double(&mut self) -> Res<f64> {
        let raw = self.take(8)?;
        let bytes: [u8; 8] = raw.try_into().map_err(|_| Defer("decode: double"))?;
        Ok(f64::from_le_bytes(bytes))
    }

    #[inline]
    pub(crate) fn boolean(&mut self) -> Res<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Defer("decode: a boolean byte that is neither 0 nor 1")),
        }
    }

    fn size(&mut self) -> Res<usize> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| Defer("decode: a negative length"))
    }
}

/// The record in `buf`, which must be exactly one record of `schema`'s root; its
/// composites' children go to `tree` (emptied first).
pub fn decode<'a>(schema: &'a SchemaPlan, buf: &'a [u8], tree: &mut Tree<'a>) -> Res<Value<'a>> {
    let mut reader = Reader::new(buf, tree);
    let value = read(schema, schema.root, &mut reader, 0)?;
    if !reader.at_end() {
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

/// The value of node `id`: the common nodes (strings, longs, doubles, unions) inline, in
/// the loop of the record, array or map being read; the composites and the rarer nodes
/// out of line, so that a field costs no call of its own.
#[inline(always)]
pub(crate) fn read<'a>(
    schema: &'a SchemaPlan,
    mut id: usize,
    r: &mut Reader<'a, '_>,
    mut depth: usize,
) -> Res<Value<'a>> {
    // A union's value is its branch's: followed here, a level deeper, without a call.
    loop {
        if depth > MAX_NESTING {
            return Err(Defer("decode: nested too deep"));
        }
        return Ok(match node(schema, id)? {
            Node::Union { branches } => {
                let index = r.long()?;
                let branch = usize::try_from(index).ok().and_then(|i| branches.get(i));
                id = *branch.ok_or(Defer("decode: a union branch out of range"))?;
                depth += 1;
                continue;
            }
            Node::Null => Value::Null,
            Node::Int | Node::Long => Value::Long(r.long()?),
            Node::String => Value::Str(string(r)?),
            Node::Double => Value::Double(r.double()?),
            Node::Boolean => Value::Bool(r.boolean()?),
            Node::Record { names, types, flat } => record(schema, names, types, *flat, r, depth)?,
            Node::Array { items } => array(schema, *items, r, depth)?,
            Node::Map { values, flat } => map(schema, *values, *flat, r, depth)?,
            other => scalar(other, r)?,
        });
    }
}

#[inline(never)]
fn record<'a>(
    schema: &'a SchemaPlan,
    names: &'a [String],
    types: &[usize],
    flat: bool,
    r: &mut Reader<'a, '_>,
    depth: usize,
) -> Res<Value<'a>> {
    let start = r.tree.values.len();
    if flat {
        // No field puts values of its own in the arena: the fields go straight after.
        for id in types {
            let field = read(schema, *id, r, depth + 1)?;
            r.tree.values.push(field);
        }
    } else {
        // Its fields' slots first, so they are contiguous whatever the fields hold.
        r.tree
            .values
            .resize_with(start + types.len(), || Value::Null);
        for (at, id) in (start..).zip(types) {
            let field = read(schema, *id, r, depth + 1)?;
            if let Some(slot) = r.tree.values.get_mut(at) {
                *slot = field;
            }
        }
    }
    Ok(Value::Record(names, Span::new(start, start + types.len())?))
}

#[inline(never)]
fn array<'a>(
    schema: &'a SchemaPlan,
    items: usize,
    r: &mut Reader<'a, '_>,
    depth: usize,
) -> Res<Value<'a>> {
    let mark = r.tree.pending.len();
    blocks(r, |r| {
        let item = read(schema, items, r, depth + 1)?;
        r.tree.pending.push(item);
        Ok(())
    })?;
    // Moved to the arena whole: an item's own children went there meanwhile.
    let Tree {
        values, pending, ..
    } = &mut *r.tree;
    let start = values.len();
    values.extend(pending.drain(mark.min(pending.len())..));
    Ok(Value::Array(Span::new(start, values.len())?))
}

#[inline(never)]
fn map<'a>(
    schema: &'a SchemaPlan,
    values: usize,
    flat: bool,
    r: &mut Reader<'a, '_>,
    depth: usize,
) -> Res<Value<'a>> {
    let mut keys = Keys::default();
    // Values that add no entries of their own let the map's entries go straight to the
    // arena; others gather them aside first, so the map's entries stay contiguous.
    let mark = if flat {
        r.tree.entries.len()
    } else {
        r.tree.pending_entries.len()
    };
    blocks(r, |r| {
        let key = string(r)?;
        let value = read(schema, values, r, depth + 1)?;
        let target = if flat {
            &mut r.tree.entries
        } else {
            &mut r.tree.pending_entries
        };
        keys.insert(target, mark, key, value);
        Ok(())
    })?;
    if flat {
        return Ok(Value::Map(Span::new(mark, r.tree.entries.len())?));
    }
    let Tree {
        entries,
        pending_entries,
        ..
    } = &mut *r.tree;
    let start = entries.len();
    entries.extend(pending_entries.drain(mark.min(pending_entries.len())..));
    Ok(Value::Map(Span::new(start, entries.len())?))
}

/// The nodes without children that `read` does not inline.
#[inline(never)]
fn scalar<'a>(node: &'a Node, r: &mut Reader<'a, '_>) -> Res<Value<'a>> {
    Ok(match node {
        Node::Float => {
            let raw = r.take(4)?;
            let bytes: [u8; 4] = raw.try_into().map_err(|_| Defer("decode: float"))?;
            Value::Float(f32::from_le_bytes(bytes))
        }
        Node::Bytes => {
            let n = r.size()?;
            Value::Bytes(r.take(n)?)
        }
        Node::Uuid => {
            let text = string(r)?;
            Value::Uuid(
                text::parse_uuid(text.as_bytes())
                    .ok_or(Defer("decode: a uuid not in plain hex form"))?,
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
        // `read` reads the others (and follows unions): never met here.
        _ => return Err(Defer("decode: a union branch out of range")),
    })
}

#[inline(always)]
pub(crate) fn string<'a>(r: &mut Reader<'a, '_>) -> Res<Text<'a>> {
    let n = r.size()?;
    let start = r.pos;
    let bytes = r.take(n)?;
    let spill = r.buf.get(start + (n & !7)..);
    Text::checked(bytes, spill).ok_or(Defer("decode: a string that is not UTF-8"))
}

/// Array and map blocks: a count, then that many items, until a count of zero. A negative
/// count is followed by the block's size in bytes.
pub(crate) fn blocks<'a, 't>(
    r: &mut Reader<'a, 't>,
    mut item: impl FnMut(&mut Reader<'a, 't>) -> Res<()>,
) -> Res<()> {
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
