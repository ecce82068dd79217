//! A schema's leaves compiled for the fast path: what `avro::read` does for a leaf (and a
//! union of leaves), without looking its node up per value. Any other node is read by
//! `avro::read` itself, so a compiled leaf gives the very value `decode` gives.

use crate::avro::{read, string, Defer, Reader, Res, Value};
use crate::plan::{Node, SchemaPlan};

pub(crate) enum Leaf {
    Null,
    Bool,
    Long,
    Double,
    Str,
    /// A union: its branches by index (a union among them as a `Node`).
    Union(Vec<Leaf>),
    /// Any other node, read as `decode` reads it.
    Node(usize),
}

impl Leaf {
    /// Node `id` of `nodes` as a leaf.
    pub(crate) fn of(nodes: &[Node], id: usize) -> Leaf {
        match nodes.get(id) {
            Some(Node::Union { branches }) => {
                Leaf::Union(branches.iter().map(|&b| Leaf::plain(nodes, b)).collect())
            }
            _ => Leaf::plain(nodes, id),
        }
    }

    fn plain(nodes: &[Node], id: usize) -> Leaf {
        match nodes.get(id) {
            Some(Node::Null) => Leaf::Null,
            Some(Node::Boolean) => Leaf::Bool,
            Some(Node::Int | Node::Long) => Leaf::Long,
            Some(Node::Double) => Leaf::Double,
            Some(Node::String) => Leaf::Str,
            _ => Leaf::Node(id),
        }
    }

    /// The value, read at `depth` (what `read` would be given for this node).
    #[inline(always)]
    pub(crate) fn read<'a>(
        &self,
        schema: &'a SchemaPlan,
        r: &mut Reader<'a, '_>,
        depth: usize,
    ) -> Res<Value<'a>> {
        let (leaf, depth) = match self {
            Leaf::Union(branches) => {
                let index = r.long()?;
                let branch = usize::try_from(index).ok().and_then(|i| branches.get(i));
                let branch = branch.ok_or(Defer("decode: a union branch out of range"))?;
                (branch, depth + 1)
            }
            plain => (plain, depth),
        };
        Ok(match leaf {
            Leaf::Null => Value::Null,
            Leaf::Bool => Value::Bool(r.boolean()?),
            Leaf::Long => Value::Long(r.long()?),
            Leaf::Double => Value::Double(r.double()?),
            Leaf::Str => Value::Str(string(r)?),
            Leaf::Node(id) => node(schema, *id, r, depth)?,
            // Never made: a branch's union is a `Node`.
            Leaf::Union(_) => return Err(Defer("plan: a union compiled in a union")),
        })
    }
}

#[inline(never)]
fn node<'a>(
    schema: &'a SchemaPlan,
    id: usize,
    r: &mut Reader<'a, '_>,
    depth: usize,
) -> Res<Value<'a>> {
    read(schema, id, r, depth)
}
