//! A value of the record as JSON: after the conversion the plan names for it
//! (connector/mapping/values.py's converters), or in its natural form.

use crate::avro::{Defer, Res, Tree, Value};
use crate::json::{self, FloatStyle};
use crate::mapping::key;
use crate::plan::{Conversion, Leaf};
use crate::text;

/// A value as JSON after its conversion (connector/mapping/values.py's converters).
pub fn render(
    out: &mut Vec<u8>,
    tree: &Tree,
    value: &Value,
    conversion: Option<&Conversion>,
    style: FloatStyle,
) -> Res<()> {
    match (conversion, value) {
        (Some(Conversion::Leaf(Leaf::MicrosToMs)), Value::Long(v)) => {
            json::write_i64(out, v.div_euclid(1000));
            Ok(())
        }
        (Some(Conversion::Record { record }), Value::Record(names, fields)) => {
            out.push(b'{');
            let mut first = true;
            for (name, field) in names.iter().zip(tree.values(*fields)) {
                key(out, &mut first, name);
                let inner = record.iter().find(|(n, _)| n == name).map(|(_, c)| c);
                render(
                    out,
                    tree,
                    field,
                    if matches!(field, Value::Null) {
                        None
                    } else {
                        inner
                    },
                    style,
                )?;
            }
            out.push(b'}');
            Ok(())
        }
        (Some(Conversion::Array { array }), Value::Array(items)) => {
            out.push(b'[');
            for (i, item) in tree.values(*items).iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                render(out, tree, item, Some(array), style)?;
            }
            out.push(b']');
            Ok(())
        }
        (Some(Conversion::Map { map }), Value::Map(entries)) => {
            out.push(b'{');
            let mut first = true;
            for (name, item) in tree.entries(*entries) {
                key(out, &mut first, name);
                render(out, tree, item, Some(map), style)?;
            }
            out.push(b'}');
            Ok(())
        }
        // Every other conversion gives a value its natural JSON form: the decoded value
        // already is the decimal, the UUID, the date or the bytes Python converts.
        _ => natural(out, tree, value, style),
    }
}

/// The JSON form Python's converters give a value by its own type (`_generic`).
pub fn natural(out: &mut Vec<u8>, tree: &Tree, value: &Value, style: FloatStyle) -> Res<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Long(v) => json::write_i64(out, *v),
        Value::Float(v) => {
            json::write_f64(out, f64::from(*v), style).ok_or(Defer("transform: NaN or infinity"))?
        }
        Value::Double(v) => {
            json::write_f64(out, *v, style).ok_or(Defer("transform: NaN or infinity"))?
        }
        Value::Str(s) => json::write_json_str(out, s),
        Value::Enum(s) => json::write_json_str(out, s),
        Value::Bytes(b) => {
            out.push(b'"');
            text::write_base64(out, b);
            out.push(b'"');
        }
        Value::Decimal(digits) => out.extend_from_slice(digits.as_bytes()),
        Value::Uuid(v) => {
            let mut s = String::with_capacity(36);
            text::write_uuid(&mut s, *v);
            json::write_json_str(out, s);
        }
        Value::Date(days) => {
            let mut s = String::with_capacity(10);
            text::write_date(&mut s, *days);
            json::write_json_str(out, s);
        }
        Value::Time(micros) => {
            let mut s = String::with_capacity(15);
            text::write_time(&mut s, *micros);
            json::write_json_str(out, s);
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in tree.values(*items).iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                natural(out, tree, item, style)?;
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            out.push(b'{');
            let mut first = true;
            for (name, item) in tree.entries(*entries) {
                key(out, &mut first, name);
                natural(out, tree, item, style)?;
            }
            out.push(b'}');
        }
        Value::Record(names, fields) => {
            out.push(b'{');
            let mut first = true;
            for (name, field) in names.iter().zip(tree.values(*fields)) {
                key(out, &mut first, name);
                natural(out, tree, field, style)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}
