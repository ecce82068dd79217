//! The plan's fast path, chosen when the plan is loaded: the event written while its
//! record is read, for a plan whose identity rules each take the records of an array field
//! of the root, and whose eventargs are a map field of the root as it is. Those fields
//! leave nothing in the tree: their elements are mapped (by the same code as the tree's)
//! as soon as each is read, and the map's entries written straight to the JSON.
//!
//! Only ever a shortcut: whatever it does not take as it comes (a repeated map key, any
//! record or value the mapping refuses, bytes it cannot read) makes it give up, and that
//! message is decoded and mapped again on the tree, which decides. So its outcome is the
//! tree's whenever it has one, and it only needs to be right when it succeeds.

use crate::avro::{blocks, read, string, Defer, Reader, Res, Span, Tree, Value};
use crate::eventargs::natural_entry;
use crate::json;
use crate::leaf::Leaf;
use crate::mapping::{self, identity, key, middle, Got, Message};
use crate::plan::{EventKey, IdentityRule, Node, Plan, Src, TimePlan};

/// What the fast path does with each field of the root record.
pub struct Fast {
    fields: Vec<Field>,
}

enum Field {
    /// Read into the tree, as `decode` does.
    Keep(Leaf),
    /// An array of flat records, the elements of identity rule `rule`; `direct` when the
    /// rule reads only the element's own fields, in the order the event writes them.
    Identities {
        items: usize,
        rule: usize,
        direct: Option<Vec<(Leaf, Role)>>,
    },
    /// A map of leaves, the eventargs as they are.
    Eventargs { values: Leaf },
}

/// What an element's field is to its identity rule.
enum Role {
    Unread,
    Type,
    Value,
    /// Optional field `at` of the rule.
    Optional(usize),
}

/// The element's fields with their roles, when the rule's type, value and optional fields
/// are distinct fields of the element in that order (and it has `requires_masks`).
fn direct(nodes: &[Node], rule: &IdentityRule, types: &[usize]) -> Option<Vec<(Leaf, Role)>> {
    rule.requires_masks.as_ref()?;
    let field = |src: &Src| match src {
        Src::Path { path } => match path.as_slice() {
            &[at] if at < types.len() => Some(at),
            _ => None,
        },
        _ => None,
    };
    let mut order = vec![field(&rule.kind)?, field(&rule.value)?];
    for (_, src) in &rule.optional {
        order.push(field(src)?);
    }
    if !order.windows(2).all(|pair| pair[0] < pair[1]) {
        return None;
    }
    let mut roles: Vec<Role> = types.iter().map(|_| Role::Unread).collect();
    for (nth, at) in order.into_iter().enumerate() {
        *roles.get_mut(at)? = match nth {
            0 => Role::Type,
            1 => Role::Value,
            n => Role::Optional(n - 2),
        };
    }
    let leaves = types.iter().map(|&id| Leaf::of(nodes, id));
    Some(leaves.zip(roles).collect())
}

/// The plan's fast path, when its shape has one: every identity rule's `each` a field of
/// the root that holds an array of flat records (the rules in the fields' order, one rule
/// a field), the eventargs none or a root map of leaves without conversion or picks, and
/// no other path of the plan reading those fields.
pub fn compile(plan: &Plan) -> Option<Fast> {
    let nodes = &plan.schema.nodes;
    let Some(Node::Record { types, .. }) = nodes.get(plan.schema.root) else {
        return None;
    };
    let mut fields: Vec<Field> = types
        .iter()
        .map(|&id| Field::Keep(Leaf::of(nodes, id)))
        .collect();
    let mut last: Option<usize> = None;
    for (at, rule) in plan.identities.iter().enumerate() {
        let &[field] = rule.each.as_deref()? else {
            return None;
        };
        if last.is_some_and(|before| field <= before) {
            return None;
        }
        last = Some(field);
        let Some(Node::Array { items }) = nodes.get(*types.get(field)?) else {
            return None;
        };
        let Some(Node::Record {
            types: item_types,
            flat: true,
            ..
        }) = nodes.get(*items)
        else {
            return None;
        };
        *fields.get_mut(field)? = Field::Identities {
            items: *items,
            rule: at,
            direct: direct(nodes, rule, item_types),
        };
    }
    if let Some(args) = &plan.eventargs {
        let base = args.map.as_ref()?;
        if !args.picks.is_empty() || base.conversion.is_some() {
            return None;
        }
        let &[field] = base.path.as_slice() else {
            return None;
        };
        let Some(Node::Map { values, flat: true }) = nodes.get(*types.get(field)?) else {
            return None;
        };
        let slot = fields.get_mut(field)?;
        if !matches!(slot, Field::Keep(_)) {
            return None;
        }
        *slot = Field::Eventargs {
            values: Leaf::of(nodes, *values),
        };
    }
    if fields.iter().all(|f| matches!(f, Field::Keep(_))) {
        return None;
    }
    // The other sources read the root's fields from the tree: none may read one of these.
    let mut paths: Vec<&[usize]> = Vec::new();
    if let Some(TimePlan::Path { path, .. }) = &plan.time {
        paths.push(path);
    }
    let srcs = [plan.uuid.as_ref(), plan.intid.as_ref()];
    let event_key = match &plan.event_key {
        EventKey::Src { src } => src,
        EventKey::Lookup { lookup } => &lookup.src,
    };
    for src in srcs.into_iter().flatten().chain([event_key]) {
        if let Src::Path { path } = src {
            paths.push(path);
        }
    }
    let read_here = |path: &[usize]| match path.first() {
        None => true,
        Some(field) => !matches!(fields.get(*field), Some(Field::Keep(_)) | None),
    };
    if paths.into_iter().any(read_here) {
        return None;
    }
    Some(Fast { fields })
}

/// The event of the record in `buf` into `out`, or an error when the fast path gives up
/// on it (the tree then decides). `args`: where the eventargs' entries go meanwhile.
pub fn run<'a>(
    plan: &'a Plan,
    fast: &Fast,
    buf: &'a [u8],
    tree: &mut Tree<'a>,
    args: &mut Vec<u8>,
    msg: &dyn Message,
    out: &mut Vec<u8>,
) -> Res<()> {
    let schema = &plan.schema;
    let Some(Node::Record { names, types, .. }) = schema.nodes.get(schema.root) else {
        return Err(Defer("plan: a root that is not a record"));
    };
    let mut r = Reader::new(buf, tree);
    // The root's fields' slots first, as `decode` makes them.
    r.tree.values.resize_with(types.len(), || Value::Null);
    out.clear();
    out.extend_from_slice(b"{\"identities\":[");
    args.clear();
    let mut any = false;
    for (at, field) in fast.fields.iter().enumerate() {
        match field {
            Field::Keep(leaf) => {
                let value = leaf.read(schema, &mut r, 1)?;
                if let Some(slot) = r.tree.values.get_mut(at) {
                    *slot = value;
                }
            }
            Field::Identities {
                items,
                rule,
                direct,
            } => {
                let rule = plan
                    .identities
                    .get(*rule)
                    .ok_or(Defer("plan: a rule past the rules"))?;
                if let Some(fields) = direct {
                    blocks(&mut r, |r| element(schema, fields, rule, r, out, &mut any))?;
                    continue;
                }
                blocks(&mut r, |r| {
                    let mark = r.tree.values.len();
                    let element = read(schema, *items, r, 2)?;
                    identity(rule, r.tree, &element, msg, out, &mut any)?;
                    r.tree.values.truncate(mark);
                    Ok(())
                })?;
            }
            Field::Eventargs { values } => {
                let style = plan
                    .eventargs
                    .as_ref()
                    .ok_or(Defer("plan: eventargs without eventargs"))?
                    .numbers;
                r.tree.seen.clear();
                let mut first = true;
                blocks(&mut r, |r| {
                    let name = string(r)?;
                    let value = values.read(schema, r, 2)?;
                    // Only the keys are kept, to find a repeated one (the tree takes that).
                    if !r.tree.seen.first_time(name.as_bytes()) {
                        return Err(Defer("fast: a map key that may be repeated"));
                    }
                    key(args, &mut first, name);
                    natural_entry(args, r.tree, &value, style)
                })?;
            }
        }
    }
    if !r.at_end() {
        return Err(Defer("decode: trailing bytes after the record"));
    }
    if !any {
        return Err(Defer("transform: no identity"));
    }
    out.push(b']');
    let record = Value::Record(names, Span::new(0, types.len())?);
    middle(plan, r.tree, &record, msg, out)?;
    if !args.is_empty() {
        out.extend_from_slice(b",\"eventargs\":{");
        out.extend_from_slice(args);
        out.push(b'}');
    }
    out.push(b'}');
    Ok(())
}

/// What `eval` gives for a field's value.
#[inline(always)]
fn got<'r, 'a>(value: &'r Value<'a>) -> Got<'r, 'a> {
    match value {
        Value::Null => Got::Null,
        value => Got::Val(value),
    }
}

/// One element of a direct rule, mapped as `mapping::identity` maps it, written while its
/// fields are read. Its type comes first: one that is not a non-empty string gives up
/// (even when a null value would skip the element: the tree decides that).
#[inline(always)]
fn element<'a>(
    schema: &'a crate::plan::SchemaPlan,
    fields: &[(Leaf, Role)],
    rule: &IdentityRule,
    r: &mut Reader<'a, '_>,
    out: &mut Vec<u8>,
    any: &mut bool,
) -> Res<()> {
    let start = out.len();
    let mut skipped = false;
    let mut present = 0u64;
    // The fields of an element (a record in an array in the root) are read at depth 3.
    for (leaf, role) in fields {
        let value = leaf.read(schema, r, 3)?;
        if skipped {
            continue; // read all the same
        }
        match role {
            Role::Unread => {}
            Role::Type => {
                let kind = got(&value);
                let kind = mapping::identity_text(&kind, mapping::NOT_A_TYPE)?;
                if *any {
                    out.push(b',');
                }
                out.extend_from_slice(mapping::IDENTITY_TYPE);
                json::write_json_str(out, kind);
            }
            Role::Value => {
                let value = got(&value);
                if matches!(value, Got::Null) {
                    out.truncate(start); // a rule whose value is null is skipped
                    skipped = true;
                    continue;
                }
                let value = mapping::identity_text(&value, mapping::NOT_A_VALUE)?;
                out.extend_from_slice(mapping::IDENTITY_VALUE);
                json::write_json_str(out, value);
            }
            Role::Optional(at) => {
                let name = rule.keys.get(*at).ok_or(Defer("plan: an optional field"))?;
                if mapping::identity_field(out, name, &got(&value))? {
                    let bit = u32::try_from(*at).ok().and_then(|at| 1u64.checked_shl(at));
                    present |= bit.ok_or(Defer("plan: more than 64 optional fields"))?;
                }
            }
        }
    }
    if skipped {
        return Ok(());
    }
    let masks = rule.requires_masks.as_deref().unwrap_or_default();
    if !mapping::requires_met(masks, present) {
        return Err(Defer(mapping::REQUIRED_MISSING));
    }
    out.push(b'}');
    *any = true;
    Ok(())
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
