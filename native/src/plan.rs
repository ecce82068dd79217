//! The plan that connector/mapping/plan.py writes, parsed and checked once.
//!
//! Everything the mapping decides is in here as data; this crate only executes it. A plan
//! that does not parse or does not hold together (a node id past the table, an unknown
//! conversion) is refused at load, so the per-record code never meets one.

use std::collections::HashMap;

use serde::Deserialize;

pub const PLAN_VERSION: u32 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub version: u32,
    pub schema: SchemaPlan,
    pub fallback_uuid: FallbackUuid,
    pub identities: Vec<IdentityRule>,
    pub time: Option<TimePlan>,
    pub uuid: Option<Src>,
    pub event_key: EventKey,
    pub intid: Option<Src>,
    pub eventargs: Option<Eventargs>,
    /// The fast path of this plan's shape, if it has one: set by `parse`.
    #[serde(skip)]
    pub fast: Option<crate::fast::Fast>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaPlan {
    pub nodes: Vec<Node>,
    pub root: usize,
}

/// One schema node; ids index `SchemaPlan::nodes`.
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Uuid,
    Date,
    TimeMillis,
    TimeMicros,
    Decimal {
        precision: u32,
        scale: u32,
        size: Option<usize>,
    },
    Enum {
        symbols: Vec<String>,
    },
    Fixed {
        size: usize,
    },
    Array {
        items: usize,
    },
    Map {
        values: usize,
        /// Its values are leaves, whatever union branch: set by `parse`.
        #[serde(skip)]
        flat: bool,
    },
    Record {
        names: Vec<String>,
        types: Vec<usize>,
        /// No field holds a composite, whatever union branch: set by `parse`.
        #[serde(skip)]
        flat: bool,
    },
    Union {
        branches: Vec<usize>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackUuid {
    pub header: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaSource {
    Topic,
    Key,
    Partition,
    Header,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Const {
    Bool(bool),
    Str(String),
}

/// Where a value comes from: a path of field indices, a constant or Kafka metadata.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Src {
    Path {
        path: Vec<usize>,
    },
    Const {
        #[serde(rename = "const")]
        value: Const,
    },
    Kafka {
        kafka: KafkaSource,
        name: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    pub each: Option<Vec<usize>>,
    pub value: Src,
    #[serde(rename = "type")]
    pub kind: Src,
    pub optional: Vec<(String, Src)>,
    pub requires: Vec<(String, String)>,
    /// Each optional field's `,"api":` in JSON, filled by `parse`.
    #[serde(skip)]
    pub keys: Vec<Vec<u8>>,
    /// `requires` as masks of the optional fields' bits (each name's every index), when
    /// there are at most 64 of them; filled by `parse`.
    #[serde(skip)]
    pub requires_masks: Option<Vec<(u64, u64)>>,
}

impl IdentityRule {
    fn prepare(&mut self) {
        self.keys = self
            .optional
            .iter()
            .map(|(api, _)| {
                let mut key = vec![b','];
                crate::json::write_json_str(&mut key, api);
                key.push(b':');
                key
            })
            .collect();
        if self.optional.len() <= 64 {
            let mask = |name: &str| {
                (self.optional.iter().enumerate())
                    .filter(|(_, (api, _))| api == name)
                    .fold(0u64, |mask, (at, _)| mask | 1u64 << at)
            };
            let masks = self.requires.iter().map(|(a, b)| (mask(a), mask(b)));
            self.requires_masks = Some(masks.collect());
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum TimePlan {
    Kafka { kafka_timestamp: bool },
    Path { path: Vec<usize>, divisor: i64 },
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum LookupKey {
    Bool(bool),
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub src: Src,
    pub table: Vec<(LookupKey, String)>,
    pub default: Option<String>,
    /// The table indexed by key type, filled by `parse`.
    #[serde(skip)]
    pub index: LookupIndex,
}

#[derive(Default)]
pub struct LookupIndex {
    pub strs: HashMap<String, String>,
    pub ints: HashMap<i64, String>,
    pub bools: [Option<String>; 2],
}

impl Lookup {
    fn build_index(&mut self) {
        for (key, value) in &self.table {
            match key {
                LookupKey::Str(k) => {
                    self.index
                        .strs
                        .entry(k.clone())
                        .or_insert_with(|| value.clone());
                }
                LookupKey::Int(k) => {
                    self.index.ints.entry(*k).or_insert_with(|| value.clone());
                }
                LookupKey::Bool(k) => {
                    let slot = &mut self.index.bools[usize::from(*k)];
                    if slot.is_none() {
                        *slot = Some(value.clone());
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum EventKey {
    Src { src: Src },
    Lookup { lookup: Lookup },
}

/// connector/mapping/values.py's `Conversion`, as data.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Conversion {
    Leaf(Leaf),
    Record { record: Vec<(String, Conversion)> },
    Array { array: Box<Conversion> },
    Map { map: Box<Conversion> },
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Leaf {
    Decimal,
    MicrosToMs,
    Isoformat,
    UuidText,
    Base64,
    Generic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapBase {
    pub path: Vec<usize>,
    pub conversion: Option<Conversion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eventargs {
    /// How doubles are written: the encoder the Python mapping uses for this event.
    pub numbers: crate::json::FloatStyle,
    pub map: Option<MapBase>,
    pub picks: Vec<(String, Src, Option<Conversion>)>,
}

/// The plan of `text`, or why it cannot be run.
pub fn parse(text: &str) -> Result<Plan, String> {
    let mut plan: Plan =
        serde_json::from_str(text).map_err(|e| format!("the plan does not parse: {e}"))?;
    if plan.version != PLAN_VERSION {
        return Err(format!(
            "plan version {} (this extension runs version {PLAN_VERSION})",
            plan.version
        ));
    }
    check_schema(&plan.schema)?;
    mark_flat_records(&mut plan.schema);
    for rule in &mut plan.identities {
        rule.prepare();
    }
    if let EventKey::Lookup { lookup } = &mut plan.event_key {
        lookup.build_index();
    }
    match &plan.time {
        Some(TimePlan::Path { divisor, .. }) if *divisor < 1 => {
            return Err("a time divisor below 1".into());
        }
        Some(TimePlan::Kafka {
            kafka_timestamp: false,
        }) => {
            return Err("time: kafka_timestamp must be true".into());
        }
        _ => {}
    }
    plan.fast = crate::fast::compile(&plan);
    Ok(plan)
}

fn check_schema(schema: &SchemaPlan) -> Result<(), String> {
    let count = schema.nodes.len();
    let known = |id: usize| -> Result<(), String> {
        if id < count {
            Ok(())
        } else {
            Err(format!("node id {id} past the schema's {count} nodes"))
        }
    };
    known(schema.root)?;
    if !matches!(schema.nodes[schema.root], Node::Record { .. }) {
        return Err("the schema's root is not a record".into());
    }
    for node in &schema.nodes {
        match node {
            Node::Array { items } => known(*items)?,
            Node::Map { values, .. } => known(*values)?,
            Node::Record { names, types, .. } => {
                if names.len() != types.len() {
                    return Err("a record with as many names as types is needed".into());
                }
                for id in types {
                    known(*id)?;
                }
            }
            Node::Union { branches } => {
                for id in branches {
                    known(*id)?;
                }
            }
            Node::Enum { symbols } if symbols.is_empty() => {
                return Err("an enum without symbols".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Marks the records whose fields and the maps whose values are all leaves (through
/// unions): decoding one then adds nothing to the arena between its children, which can
/// be pushed as they are read.
fn mark_flat_records(schema: &mut SchemaPlan) {
    fn leaf(nodes: &[Node], id: usize, depth: usize) -> bool {
        match nodes.get(id) {
            Some(Node::Union { branches }) => {
                depth < 8 && branches.iter().all(|&b| leaf(nodes, b, depth + 1))
            }
            Some(Node::Record { .. } | Node::Array { .. } | Node::Map { .. }) | None => false,
            Some(_) => true,
        }
    }
    let flags: Vec<bool> = schema
        .nodes
        .iter()
        .map(|node| match node {
            Node::Record { types, .. } => types.iter().all(|&id| leaf(&schema.nodes, id, 0)),
            Node::Map { values, .. } => leaf(&schema.nodes, *values, 0),
            _ => false,
        })
        .collect();
    for (node, is_flat) in schema.nodes.iter_mut().zip(flags) {
        if let Node::Record { flat, .. } | Node::Map { flat, .. } = node {
            *flat = is_flat;
        }
    }
}
