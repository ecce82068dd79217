//! `eventargs`: the map (converted per value) with the picked fields set over it, in the
//! order and with the replacements of a Python dict, omitted when empty
//! (connector/mapping/compiler.py's `_compile_eventargs`).

use crate::avro::{Defer, Res, Text, Tree, Value};
use crate::json;
use crate::mapping::{at_path, eval, key, Got, Message};
use crate::plan::{Conversion, Eventargs};
use crate::render::{natural, render};

enum Item<'r, 'a> {
    Entry(&'r Value<'a>, Option<&'r Conversion>),
    Pick(Got<'r, 'a>, Option<&'r Conversion>),
}

pub fn write(
    args: &Eventargs,
    tree: &Tree,
    record: &Value,
    msg: &dyn Message,
    out: &mut Vec<u8>,
) -> Res<()> {
    let style = args.numbers;
    let mut map: &[(Text, Value)] = &[];
    let mut element = None;
    if let Some(base) = &args.map {
        element = match &base.conversion {
            None => None,
            Some(Conversion::Map { map }) => Some(map.as_ref()),
            Some(_) => return Err(Defer("plan: a map conversion that is not per value")),
        };
        match at_path(tree, record, &base.path)? {
            Value::Null => {}
            Value::Map(span) => map = tree.entries(*span),
            _ => return Err(Defer("plan: eventargs.map reads a value that is not a map")),
        }
    }
    if args.picks.is_empty() {
        // The map alone (the default mapping): written as it is, no list to build.
        if map.is_empty() {
            return Ok(());
        }
        out.extend_from_slice(b",\"eventargs\":{");
        let mut first = true;
        for (name, value) in map {
            key(out, &mut first, name);
            match element {
                None => natural_entry(out, tree, value, style)?,
                Some(_) => entry(out, tree, value, element, style)?,
            }
        }
        out.push(b'}');
        return Ok(());
    }
    // Decoded maps hold each key once already.
    let mut entries: Vec<(&[u8], Item)> = Vec::with_capacity(map.len() + args.picks.len());
    entries.extend(
        map.iter()
            .map(|(k, v)| (k.as_bytes(), Item::Entry(v, element))),
    );
    for (name, src, conversion) in &args.picks {
        let got = eval(src, tree, record, msg)?;
        if matches!(got, Got::Null) {
            continue; // a null pick is omitted
        }
        let item = Item::Pick(got, conversion.as_ref());
        match entries.iter_mut().find(|(k, _)| *k == name.as_bytes()) {
            Some(slot) => slot.1 = item,
            None => entries.push((name.as_bytes(), item)),
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    out.extend_from_slice(b",\"eventargs\":{");
    let mut first = true;
    for (name, item) in &entries {
        key(out, &mut first, name);
        match item {
            Item::Entry(value, conversion) => entry(out, tree, value, *conversion, style)?,
            Item::Pick(Got::Val(value), conversion) => {
                render(out, tree, value, *conversion, style)?
            }
            Item::Pick(Got::Text(s), _) => json::write_json_str(out, s),
            Item::Pick(Got::Str(s), _) => json::write_json_str(out, s),
            Item::Pick(Got::Int(v), _) => json::write_i64(out, *v),
            Item::Pick(Got::Bool(b), _) => {
                out.extend_from_slice(if *b { b"true" } else { b"false" })
            }
            Item::Pick(Got::Null, _) => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    Ok(())
}

/// A map entry's value without a conversion: in its natural form (what `render` gives),
/// the common leaves without a call.
#[inline(always)]
pub(crate) fn natural_entry(
    out: &mut Vec<u8>,
    tree: &Tree,
    value: &Value,
    style: crate::json::FloatStyle,
) -> Res<()> {
    match value {
        Value::Str(s) => json::write_json_str(out, s),
        Value::Long(v) => json::write_i64(out, *v),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Double(v) => {
            json::write_f64(out, *v, style).ok_or(Defer("transform: NaN or infinity"))?
        }
        _ => natural(out, tree, value, style)?,
    }
    Ok(())
}

/// A map entry's value: a null as null, else after the map's per-value conversion.
fn entry(
    out: &mut Vec<u8>,
    tree: &Tree,
    value: &Value,
    conversion: Option<&Conversion>,
    style: crate::json::FloatStyle,
) -> Res<()> {
    match value {
        Value::Null => natural(out, tree, value, style),
        _ => render(out, tree, value, conversion, style),
    }
}
