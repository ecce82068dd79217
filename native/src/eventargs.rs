//! `eventargs`: the map (converted per value) with the picked fields set over it, in the
//! order and with the replacements of a Python dict, omitted when empty
//! (connector/mapping/compiler.py's `_compile_eventargs`).

use crate::avro::{Defer, Res, Value};
use crate::json;
use crate::mapping::{at_path, eval, key, Got, Message};
use crate::plan::{Conversion, Eventargs};
use crate::render::{natural, render};

enum Item<'r, 'a> {
    Entry(&'r Value<'a>, Option<&'r Conversion>),
    Pick(Got<'r, 'a>, Option<&'r Conversion>),
}

pub fn write(args: &Eventargs, record: &Value, msg: &dyn Message, out: &mut Vec<u8>) -> Res<()> {
    let style = args.numbers;
    let mut entries: Vec<(&str, Item)> = Vec::new();
    if let Some(base) = &args.map {
        let element = match &base.conversion {
            None => None,
            Some(Conversion::Map { map }) => Some(map.as_ref()),
            Some(_) => return Err(Defer("plan: a map conversion that is not per value")),
        };
        match at_path(record, &base.path)? {
            Value::Null => {}
            Value::Map(map) => {
                // Decoded maps hold each key once already.
                entries.extend(map.iter().map(|(k, v)| (*k, Item::Entry(v, element))));
            }
            _ => return Err(Defer("plan: eventargs.map reads a value that is not a map")),
        }
    }
    for (name, src, conversion) in &args.picks {
        let got = eval(src, record, msg)?;
        if matches!(got, Got::Null) {
            continue; // a null pick is omitted
        }
        let item = Item::Pick(got, conversion.as_ref());
        match entries.iter_mut().find(|(k, _)| *k == name.as_str()) {
            Some(slot) => slot.1 = item,
            None => entries.push((name.as_str(), item)),
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
            Item::Entry(value, conversion) => match value {
                Value::Null => natural(out, value, style)?,
                _ => render(out, value, *conversion, style)?,
            },
            Item::Pick(Got::Val(value), conversion) => render(out, value, *conversion, style)?,
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
