//! The plan executed on one decoded record: the API event's JSON, in the key order and with
//! the omissions of connector/mapping/mapper.py (`Mapper.to_event`).
//!
//! Every case the Python path would refuse (a missing identity, an empty event key, a
//! negative time, metadata that is not UTF-8, a NaN) is a `Defer` here: that message goes
//! to the Python path, which gives the error its exact stage, kind and wording.

use crate::avro::{Defer, Res, Text, Tree, Value, NULL};
use crate::json;
use crate::plan::{Const, EventKey, IdentityRule, KafkaSource, Plan, Src, TimePlan};
use crate::text;

/// The Kafka message a record came from, read only when the plan needs it.
pub trait Message {
    fn topic(&self) -> Res<String>;
    fn partition(&self) -> Res<i64>;
    fn offset(&self) -> Res<i64>;
    fn timestamp(&self) -> Res<Option<i64>>;
    fn key(&self) -> Res<Option<Vec<u8>>>;
    /// The first header called `name`: None when there is none, Some(None) for a null value.
    fn header(&self, name: &str) -> Res<Option<Option<Vec<u8>>>>;
    /// The first header called `name` whose value is not null or empty.
    fn non_empty_header(&self, name: &str) -> Res<Option<Vec<u8>>>;
}

/// What a source gave: a value of the record, Kafka metadata, or a constant.
pub(crate) enum Got<'r, 'a> {
    Null,
    Val(&'r Value<'a>),
    Text(String),
    Int(i64),
    Str(&'r str),
    Bool(bool),
}

impl Got<'_, '_> {
    /// The value when Python holds it as a `str` (an enum symbol is one; a UUID is not).
    pub(crate) fn text(&self) -> Option<Text<'_>> {
        match self {
            Got::Val(Value::Str(s)) => Some(*s),
            Got::Val(Value::Enum(s)) => Some(Text::of_str(s)),
            Got::Text(s) => Some(Text::of_str(s)),
            Got::Str(s) => Some(Text::of_str(s)),
            _ => None,
        }
    }
}

#[inline(always)]
pub(crate) fn at_path<'r, 'a>(
    tree: &'r Tree<'a>,
    start: &'r Value<'a>,
    path: &[usize],
) -> Res<&'r Value<'a>> {
    let mut value = start;
    for &index in path {
        value = match value {
            Value::Null => return Ok(&NULL),
            Value::Record(_, fields) => tree
                .values(*fields)
                .get(index)
                .ok_or(Defer("plan: a path past a record"))?,
            _ => return Err(Defer("plan: a path through a value that is not a record")),
        };
    }
    Ok(value)
}

fn utf8(raw: Vec<u8>) -> Res<String> {
    String::from_utf8(raw).map_err(|_| Defer("transform: Kafka metadata that is not UTF-8"))
}

/// What `src` gives. A path (most sources) inline; the others out of line.
#[inline(always)]
pub(crate) fn eval<'r, 'a>(
    src: &'r Src,
    tree: &'r Tree<'a>,
    start: &'r Value<'a>,
    msg: &dyn Message,
) -> Res<Got<'r, 'a>> {
    match src {
        Src::Path { path } => Ok(match at_path(tree, start, path)? {
            Value::Null => Got::Null,
            value => Got::Val(value),
        }),
        _ => eval_other(src, msg),
    }
}

#[inline(never)]
fn eval_other<'r, 'a>(src: &'r Src, msg: &dyn Message) -> Res<Got<'r, 'a>> {
    Ok(match src {
        Src::Path { .. } => return Err(Defer("plan: a path read out of line")),
        Src::Const {
            value: Const::Str(s),
        } => Got::Str(s),
        Src::Const {
            value: Const::Bool(b),
        } => Got::Bool(*b),
        Src::Kafka { kafka, name } => match kafka {
            KafkaSource::Topic => Got::Text(msg.topic()?),
            KafkaSource::Partition => Got::Int(msg.partition()?),
            KafkaSource::Key => match msg.key()? {
                None => Got::Null,
                Some(raw) => Got::Text(utf8(raw)?),
            },
            KafkaSource::Header => {
                let name = name
                    .as_deref()
                    .ok_or(Defer("plan: a header without a name"))?;
                match msg.header(name)? {
                    None | Some(None) => Got::Null,
                    Some(Some(raw)) => Got::Text(utf8(raw)?),
                }
            }
        },
    })
}

/// `,"name":` (no comma first).
#[inline(always)]
pub(crate) fn key(out: &mut Vec<u8>, first: &mut bool, name: impl json::JsonText) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    json::write_json_str(out, name);
    out.push(b':');
}

/// The event of `record`, as compact JSON, into `out` (emptied first).
pub fn map_record(
    plan: &Plan,
    tree: &Tree,
    record: &Value,
    msg: &dyn Message,
    out: &mut Vec<u8>,
) -> Res<()> {
    out.clear();
    out.extend_from_slice(b"{\"identities\":[");
    let mut any = false;
    for rule in &plan.identities {
        identities(rule, tree, record, msg, out, &mut any)?;
    }
    if !any {
        return Err(Defer("transform: no identity"));
    }
    out.push(b']');
    middle(plan, tree, record, msg, out)?;
    if let Some(args) = &plan.eventargs {
        crate::eventargs::write(args, tree, record, msg, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// What follows the identities, up to the eventargs: the time, uuid, event key and intid.
pub(crate) fn middle(
    plan: &Plan,
    tree: &Tree,
    record: &Value,
    msg: &dyn Message,
    out: &mut Vec<u8>,
) -> Res<()> {
    if let Some(time) = &plan.time {
        let moment = match time {
            TimePlan::Kafka { .. } => msg.timestamp()?.filter(|t| *t >= 0),
            TimePlan::Path { path, divisor } => match at_path(tree, record, path)? {
                Value::Null => None,
                Value::Long(v) if *v >= 0 => Some(v / divisor),
                _ => return Err(Defer("transform: a time that is not a non-negative long")),
            },
        };
        if let Some(moment) = moment {
            out.extend_from_slice(b",\"time\":");
            json::write_i64(out, moment);
        }
    }
    out.extend_from_slice(b",\"uuid\":");
    uuid(plan, tree, record, msg, out)?;
    out.extend_from_slice(b",\"eventKey\":");
    event_key(&plan.event_key, tree, record, msg, out)?;
    if let Some(src) = &plan.intid {
        let got = eval(src, tree, record, msg)?;
        if !matches!(got, Got::Null) {
            let value = got
                .text()
                .ok_or(Defer("transform: an intid that is not a string"))?;
            out.extend_from_slice(b",\"intid\":");
            json::write_json_str(out, value);
        }
    }
    Ok(())
}

fn identities(
    rule: &IdentityRule,
    tree: &Tree,
    record: &Value,
    msg: &dyn Message,
    out: &mut Vec<u8>,
    any: &mut bool,
) -> Res<()> {
    let Some(each) = &rule.each else {
        return identity(rule, tree, record, msg, out, any);
    };
    match at_path(tree, record, each)? {
        Value::Null => Ok(()),
        Value::Array(elements) => {
            for element in tree.values(*elements) {
                if !matches!(element, Value::Record(..)) {
                    return Err(Defer(
                        "transform: an identities element that is not a record",
                    ));
                }
                identity(rule, tree, element, msg, out, any)?;
            }
            Ok(())
        }
        _ => Err(Defer("plan: each reads a value that is not an array")),
    }
}

pub(crate) const IDENTITY_TYPE: &[u8] = b"{\"identityType\":";
pub(crate) const IDENTITY_VALUE: &[u8] = b",\"identityValue\":";
pub(crate) const NOT_A_VALUE: &str = "transform: an identity value that is not a non-empty string";
pub(crate) const NOT_A_TYPE: &str = "transform: an identity type that is not a non-empty string";
pub(crate) const REQUIRED_MISSING: &str =
    "transform: an identity field required with another is missing";

/// An identity's value or type: a str (an enum's symbol is one), not empty.
#[inline(always)]
pub(crate) fn identity_text<'g>(got: &'g Got, reason: &'static str) -> Res<Text<'g>> {
    got.text().filter(|s| !s.is_empty()).ok_or(Defer(reason))
}

/// An identity's optional field after its `,"api":` (`name`, written when the plan was
/// parsed), unless it is null: whether it was written.
#[inline(always)]
pub(crate) fn identity_field(out: &mut Vec<u8>, name: &[u8], got: &Got) -> Res<bool> {
    match got {
        Got::Null => return Ok(false),
        Got::Bool(b) | Got::Val(Value::Bool(b)) => {
            json::put(out, name);
            out.extend_from_slice(if *b { b"true" } else { b"false" });
        }
        other => {
            let value = other
                .text()
                .ok_or(Defer("transform: an identity field of another type"))?;
            json::put(out, name);
            json::write_json_str(out, value);
        }
    }
    Ok(true)
}

/// Whether the optional fields present (a bit each) meet the rule's `requires` masks.
#[inline(always)]
pub(crate) fn requires_met(masks: &[(u64, u64)], present: u64) -> bool {
    !masks
        .iter()
        .any(|&(needs, needed)| present & needs != 0 && present & needed == 0)
}

pub(crate) fn identity(
    rule: &IdentityRule,
    tree: &Tree,
    element: &Value,
    msg: &dyn Message,
    out: &mut Vec<u8>,
    any: &mut bool,
) -> Res<()> {
    let value = eval(&rule.value, tree, element, msg)?;
    if matches!(value, Got::Null) {
        return Ok(()); // a rule whose value is null is skipped
    }
    let value = identity_text(&value, NOT_A_VALUE)?;
    let kind = eval(&rule.kind, tree, element, msg)?;
    let kind = identity_text(&kind, NOT_A_TYPE)?;
    if *any {
        out.push(b',');
    }
    *any = true;
    out.extend_from_slice(IDENTITY_TYPE);
    json::write_json_str(out, kind);
    out.extend_from_slice(IDENTITY_VALUE);
    json::write_json_str(out, value);
    // Which optional fields are present, by index: a bit each for the first 64, no list.
    let mut present: u64 = 0;
    let mut present_more: Vec<usize> = Vec::new();
    for (at, ((_, src), name)) in rule.optional.iter().zip(&rule.keys).enumerate() {
        let got = eval(src, tree, element, msg)?;
        if !identity_field(out, name, &got)? {
            continue;
        }
        match u32::try_from(at).ok().and_then(|at| 1u64.checked_shl(at)) {
            Some(bit) => present |= bit,
            None => present_more.push(at),
        }
    }
    if let Some(masks) = &rule.requires_masks {
        // The fields by bit (at most 64 of them): no name compared per record.
        if !requires_met(masks, present) {
            return Err(Defer(REQUIRED_MISSING));
        }
        out.push(b'}');
        return Ok(());
    }
    let has = |name: &str| {
        rule.optional.iter().enumerate().any(|(at, (api, _))| {
            let bit = u32::try_from(at).ok().and_then(|at| 1u64.checked_shl(at));
            api == name
                && match bit {
                    Some(bit) => present & bit != 0,
                    None => present_more.contains(&at),
                }
        })
    };
    for (needs, needed) in &rule.requires {
        if has(needs) && !has(needed) {
            return Err(Defer(REQUIRED_MISSING));
        }
    }
    out.push(b'}');
    Ok(())
}

fn uuid(plan: &Plan, tree: &Tree, record: &Value, msg: &dyn Message, out: &mut Vec<u8>) -> Res<()> {
    if let Some(src) = &plan.uuid {
        match eval(src, tree, record, msg)? {
            Got::Null => {}
            Got::Val(Value::Uuid(value)) => {
                let mut s = String::with_capacity(36);
                text::write_uuid(&mut s, *value);
                json::write_json_str(out, s);
                return Ok(());
            }
            got => {
                let value = got
                    .text()
                    .ok_or(Defer("transform: a uuid that is not a string"))?;
                if !value.is_empty() {
                    json::write_json_str(out, value);
                    return Ok(());
                }
            }
        }
    }
    // connector/core/records.py's SourceRecord.fallback_uuid: a replayed record's header,
    // else the record's position.
    let fallback = match msg.non_empty_header(&plan.fallback_uuid.header)? {
        // Python decodes it with errors="replace": each maximal invalid subpart becomes
        // U+FFFD, as from_utf8_lossy does (tests/test_native.py holds them equal).
        Some(raw) => String::from_utf8_lossy(&raw).into_owned(),
        None => format!("{}-{}-{}", msg.topic()?, msg.partition()?, msg.offset()?),
    };
    json::write_json_str(out, fallback);
    Ok(())
}

fn event_key(
    spec: &EventKey,
    tree: &Tree,
    record: &Value,
    msg: &dyn Message,
    out: &mut Vec<u8>,
) -> Res<()> {
    match spec {
        EventKey::Src { src } => {
            let got = eval(src, tree, record, msg)?;
            let value = got.text().filter(|s| !s.is_empty());
            json::write_json_str(
                out,
                value.ok_or(Defer(
                    "transform: an event key that is not a non-empty string",
                ))?,
            );
        }
        EventKey::Lookup { lookup } => {
            let got = eval(&lookup.src, tree, record, msg)?;
            let index = &lookup.index;
            let found = match &got {
                Got::Null => None,
                Got::Int(v) | Got::Val(Value::Long(v)) => index.ints.get(v),
                Got::Bool(b) | Got::Val(Value::Bool(b)) => {
                    index.bools.get(usize::from(*b)).and_then(Option::as_ref)
                }
                other => {
                    let value = other
                        .text()
                        .ok_or(Defer("transform: a lookup key of another type"))?;
                    // Always UTF-8 (what `text` gives is): the check only makes it a str.
                    std::str::from_utf8(value.as_bytes())
                        .ok()
                        .and_then(|value| index.strs.get(value))
                }
            };
            let found = found.or(lookup.default.as_ref());
            json::write_json_str(
                out,
                found.ok_or(Defer("transform: a value not in the lookup table"))?,
            );
        }
    }
    Ok(())
}
