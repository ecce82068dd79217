//! The fast path against the tree, on the default mapping's plan.

use super::*;

/// The default mapping's plan on its schema, as connector/mapping/plan.py writes it.
const PLAN: &str = r#"{"version": 1, "schema": {"nodes": [{"t": "record", "names": ["event_id", "event_key", "event_time", "interaction_id", "identities", "properties"], "types": [1, 1, 2, 4, 10, 13]}, {"t": "string"}, {"t": "long"}, {"t": "null"}, {"t": "union", "branches": [3, 1]}, {"t": "record", "names": ["type", "value", "platform", "mpid", "is_wechat_ecosystem"], "types": [1, 1, 6, 7, 9]}, {"t": "union", "branches": [3, 1]}, {"t": "union", "branches": [3, 1]}, {"t": "boolean"}, {"t": "union", "branches": [3, 8]}, {"t": "array", "items": 5}, {"t": "double"}, {"t": "union", "branches": [3, 1, 2, 11, 8]}, {"t": "map", "values": 12}], "root": 0}, "fallback_uuid": {"header": "event-sink.uuid"}, "identities": [{"each": [4], "value": {"path": [1]}, "type": {"path": [0]}, "optional": [["platform", {"path": [2]}], ["mpid", {"path": [3]}], ["isWeChatEcosystem", {"path": [4]}]], "requires": [["mpid", "isWeChatEcosystem"]]}], "time": {"path": [2], "divisor": 1}, "uuid": {"path": [0]}, "event_key": {"src": {"path": [1]}}, "intid": {"path": [3]}, "eventargs": {"map": {"path": [5], "conversion": null}, "picks": [], "numbers": "orjson"}}"#;

struct NoMessage;

impl Message for NoMessage {
    fn topic(&self) -> Res<String> {
        Ok("t".into())
    }
    fn partition(&self) -> Res<i64> {
        Ok(0)
    }
    fn offset(&self) -> Res<i64> {
        Ok(7)
    }
    fn timestamp(&self) -> Res<Option<i64>> {
        Ok(None)
    }
    fn key(&self) -> Res<Option<Vec<u8>>> {
        Ok(None)
    }
    fn header(&self, _: &str) -> Res<Option<Option<Vec<u8>>>> {
        Ok(None)
    }
    fn non_empty_header(&self, _: &str) -> Res<Option<Vec<u8>>> {
        Ok(None)
    }
}

fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => long(out, 0),
        Some(s) => {
            long(out, 1);
            string(out, s);
        }
    }
}

enum Prop {
    Null,
    Str(&'static str),
    Long(i64),
    Double(f64),
    Bool(bool),
}

type Identity = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<bool>,
);

fn record(identities: &[(&str, Identity)], props: &[(&str, Prop)]) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, "evt-1");
    string(&mut out, "c_buy");
    long(&mut out, 1_700_000_000_000);
    opt(&mut out, Some("int-1"));
    if !identities.is_empty() {
        long(&mut out, identities.len() as i64);
        for (kind, (value, platform, mpid, wechat)) in identities {
            string(&mut out, kind);
            string(&mut out, value);
            opt(&mut out, *platform);
            opt(&mut out, *mpid);
            match wechat {
                None => long(&mut out, 0),
                Some(b) => {
                    long(&mut out, 1);
                    out.push(u8::from(*b));
                }
            }
        }
    }
    long(&mut out, 0);
    if !props.is_empty() {
        long(&mut out, props.len() as i64);
        for (name, prop) in props {
            string(&mut out, name);
            match prop {
                Prop::Null => long(&mut out, 0),
                Prop::Str(s) => {
                    long(&mut out, 1);
                    string(&mut out, s);
                }
                Prop::Long(v) => {
                    long(&mut out, 2);
                    long(&mut out, *v);
                }
                Prop::Double(v) => {
                    long(&mut out, 3);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Prop::Bool(b) => {
                    long(&mut out, 4);
                    out.push(u8::from(*b));
                }
            }
        }
    }
    long(&mut out, 0);
    out
}

/// The fast path's event, if it gives one, and the tree's outcome.
fn both(plan: &Plan, buf: &[u8]) -> (Option<Vec<u8>>, Result<Vec<u8>, Defer>) {
    let fast = plan
        .fast
        .as_ref()
        .expect("the default plan has a fast path");
    let (mut tree, mut args, mut out) = (Tree::default(), Vec::new(), Vec::new());
    let quick = run(plan, fast, buf, &mut tree, &mut args, &NoMessage, &mut out)
        .ok()
        .map(|()| out.clone());
    let slow = crate::avro::decode(&plan.schema, buf, &mut tree)
        .and_then(|record| crate::mapping::map_record(plan, &tree, &record, &NoMessage, &mut out));
    (quick, slow.map(|()| out))
}

#[test]
fn the_fast_path_gives_the_trees_event_or_none() {
    let plan = crate::plan::parse(PLAN).expect("the plan parses");
    let phone: Identity = ("123", None, None, None);
    let full: Identity = ("o1", Some("gzh"), Some("wx1"), Some(true));
    let no_value_type = ("", ("", None, None, None));
    let cases: Vec<(Vec<u8>, bool)> = vec![
        // (record, whether the fast path must take it)
        (
            record(
                &[("phone", phone), ("openid", full)],
                &[
                    ("a", Prop::Str("x\"y")),
                    ("b", Prop::Long(-3)),
                    ("c", Prop::Null),
                ],
            ),
            true,
        ),
        (record(&[("phone", phone)], &[]), true),
        (
            record(&[("phone", phone)], &[("p", Prop::Double(2914.36))]),
            true,
        ),
        (
            record(&[("é\n", ("v\u{1}", Some("ü"), None, Some(false)))], &[]),
            true,
        ),
        // A repeated key: the tree keeps the first place and the last value.
        (
            record(
                &[("phone", phone)],
                &[
                    ("a", Prop::Long(1)),
                    ("b", Prop::Bool(true)),
                    ("a", Prop::Long(2)),
                ],
            ),
            false,
        ),
        (record(&[], &[("a", Prop::Long(1))]), false),
        (
            record(&[("phone", ("123", None, Some("wx"), None))], &[]),
            false,
        ),
        (
            record(&[("phone", phone)], &[("nan", Prop::Double(f64::NAN))]),
            false,
        ),
        (record(&[no_value_type, ("phone", phone)], &[]), false),
        (record(&[("phone", ("", None, None, None))], &[]), false),
    ];
    // Many keys: all distinct (taken) but for the last (never taken).
    let names: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    for count in [20, 100] {
        let mut props: Vec<(&str, Prop)> = names[..count]
            .iter()
            .map(|n| (n.as_str(), Prop::Long(1)))
            .collect();
        let buf = record(&[("phone", phone)], &props);
        let (quick, slow) = both(&plan, &buf);
        assert!(count > 64 || quick.is_some(), "{count} keys");
        if let Some(event) = quick {
            assert_eq!(Ok(event), slow, "{count} keys");
        }
        props.push(("k3", Prop::Long(2)));
        let (quick, slow) = both(&plan, &record(&[("phone", phone)], &props));
        assert!(
            quick.is_none() && slow.is_ok(),
            "{count} keys and a repeated one"
        );
    }
    for (at, (buf, taken)) in cases.iter().enumerate() {
        let (quick, slow) = both(&plan, buf);
        assert_eq!(quick.is_some(), *taken, "case {at}: {slow:?}");
        if let Some(event) = quick {
            assert_eq!(Ok(event), slow, "case {at}");
        }
        let mut trailing = buf.clone();
        trailing.push(0);
        assert_eq!(
            both(&plan, &trailing).0,
            None,
            "case {at} with a trailing byte"
        );
    }
    // The repeated key, and the empty type with a null value, as the tree takes them.
    let (_, slow) = both(&plan, &cases[4].0);
    let slow = String::from_utf8(slow.expect("an event")).expect("UTF-8");
    assert!(slow.ends_with(r#""eventargs":{"a":2,"b":true}}"#), "{slow}");
}

#[test]
fn varints_read_as_zigzag_longs_of_at_most_ten_bytes() {
    for v in [
        0,
        1,
        -1,
        63,
        -64,
        64,
        1 << 40,
        -(1 << 40),
        i64::MAX,
        i64::MIN,
    ] {
        let mut buf = Vec::new();
        long(&mut buf, v);
        buf.push(0x55);
        let mut tree = Tree::default();
        let mut r = Reader::new(&buf, &mut tree);
        assert_eq!(r.long(), Ok(v));
        assert_eq!(r.long(), Ok(!(0x55 >> 1)), "the next one after {v}");
        assert!(r.at_end());
    }
    let eleven = [0x80u8; 11];
    let cut = [0x80u8; 5];
    let wide = [0xFFu8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02];
    let mut tree = Tree::default();
    assert_eq!(
        Reader::new(&eleven, &mut tree).long(),
        Err(Defer("decode: a varint longer than 10 bytes"))
    );
    assert_eq!(
        Reader::new(&cut, &mut tree).long(),
        Err(Defer("decode: past the end"))
    );
    assert_eq!(
        Reader::new(&wide, &mut tree).long(),
        Err(Defer("decode: a varint past 64 bits"))
    );
}
