"""The native plan: the compiled mapping and the reader schema as plain data (JSON), for the
optional native extension (``native/``, driven by ``connector/adapters/native.py``).

The Python compiler stays the one place that decides: ``build_plan`` first compiles the
mapping (so the plan exists only for a mapping the Python path accepts), then writes down
what the compiler decided, using the compiler's own helpers (``Schema.path``,
``time_source``, ``conversion_for``). The extension executes generic operations on it:
read a path of field indices, apply conversion X, look a value up in a table, emit a key.
It holds no mapping rule of its own.

The plan's shape (version 1)::

    schema:      {nodes: [node, ...], root: id}   node: {t: kind, ...} (see _SchemaWriter)
    fallback_uuid: {header: name}                 then "<topic>-<partition>-<offset>"
    identities:  [{each: path|null, value: src, type: src, optional: [[api name, src]],
                   requires: [[api name, api name]]}]
    time:        null | {kafka_timestamp: true} | {path: path, divisor: 1|1000}
    uuid:        null (the fallback) | src
    event_key:   {src: src} | {lookup: {src: src, table: [[key, value]], default: s|null}}
    intid:       null | src
    eventargs:   null | {map: {path: path, conversion: c} | null,
                         picks: [[name, src, conversion]], numbers: orjson|repr}

    path: [field index, ...] from the record the rule reads (null at any step: null)
    src:  {path: path} | {const: value} | {kafka: topic|key|partition|header, name: s|null}
    conversion: values.Conversion

What the plan cannot express is :class:`NotNative`, with the reason the route stays on
the Python path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.config_mapping import (
    ConstValue,
    FromPosition,
    IdentityRule,
    KafkaValue,
    LookupValue,
    MappingSettings,
)
from connector.core.records import UUID_HEADER
from connector.mapping.compiler import compile_mapping
from connector.mapping.schema import Schema, SchemaType, is_any
from connector.mapping.times import time_source
from connector.mapping.values import conversion_for

PLAN_VERSION = 1

# Logical types the Avro decoder (fastavro) turns into Python objects, by base type: the
# extension decodes exactly these into the same values. tests/test_native.py holds this
# table equal to fastavro's own, with the timestamp ones below.
DECODED_LOGICAL = {
    ("bytes", "decimal"): "decimal",
    ("fixed", "decimal"): "decimal",
    ("string", "uuid"): "uuid",
    ("int", "date"): "date",
    ("int", "time-millis"): "time-millis",
    ("long", "time-micros"): "time-micros",
}
# The decoder reads these as raw numbers only once load_schema has moved the annotation
# aside (RAW_LOGICAL_TYPE_KEY); left in place, fastavro would make datetime objects.
TIMESTAMP_LOGICAL = {
    ("long", "timestamp-millis"),
    ("long", "timestamp-micros"),
    ("long", "local-timestamp-millis"),
    ("long", "local-timestamp-micros"),
}
MAX_DEPTH = 24  # schema nesting the extension follows (Python's converters go to 32)
MAX_DECIMAL_PRECISION = 300

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_INT64 = (-(2**63), 2**63 - 1)


class NotNative(Exception):  # a verdict with its reason, not a failure
    """This schema or mapping stays on the Python path; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Plan:
    """A mapping compiled for the extension; ``text`` is what it parses."""

    data: dict[str, Any]

    @property
    def text(self) -> str:
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)


class _SchemaWriter:
    """The reader schema as a table of nodes; a named type used twice is one node."""

    def __init__(self, parsed: Mapping[str, Any]) -> None:
        self.nodes: list[dict[str, Any]] = []
        self._named: dict[str, Any] = dict(parsed.get("__named_schemas") or {})
        self._ids: dict[str, int] = {}
        self._open: set[str] = set()
        self._primitive_ids: dict[str, int] = {}

    def _add(self, node: dict[str, Any]) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def node(self, node: Any, depth: int = 0) -> int:
        if depth > MAX_DEPTH:
            raise NotNative(f"the schema nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            return self._add({"t": "union", "branches": [self.node(b, depth + 1) for b in node]})
        if isinstance(node, str):
            if node in _PRIMITIVES:
                if node not in self._primitive_ids:
                    self._primitive_ids[node] = self._add({"t": node})
                return self._primitive_ids[node]
            if node in self._open:
                raise NotNative(f"the schema is recursive (type {node} contains itself)")
            if node in self._ids:
                return self._ids[node]
            return self.node(self._lookup(node), depth)
        if not isinstance(node, dict):
            raise NotNative(f"the schema has a node the extension cannot read: {node!r}")
        return self._complex(node, depth)

    def _lookup(self, name: str) -> Any:
        """A named type, by full name or (like Schema.resolve) by its last part."""
        if name in self._named:
            return self._named[name]
        for full, named in self._named.items():
            if full.endswith("." + name):
                return named
        raise NotNative(f"the schema names an unknown type {name!r}")

    def _complex(self, node: dict[str, Any], depth: int) -> int:
        kind = node.get("type")
        logical = node.get("logicalType")
        if logical is not None and isinstance(kind, str):
            if (kind, logical) in TIMESTAMP_LOGICAL:
                raise NotNative(
                    f"the schema's {logical} is not read as raw numbers (schemas are "
                    "loaded with load_schema, which moves the annotation aside)"
                )
            decoded = DECODED_LOGICAL.get((kind, logical))
            if decoded is not None:
                return self._logical(node, kind, decoded)
        elif logical is not None:
            raise NotNative(f"the schema has a logical type on a nested type: {node!r}")
        name = node.get("name")
        if kind in ("record", "error"):
            assert isinstance(name, str)  # fastavro's parsed schemas name every record
            self._open.add(name)
            node_id = self._add({"t": "record"})
            self._ids[name] = node_id
            fields = node.get("fields", ())
            self.nodes[node_id]["names"] = [field["name"] for field in fields]
            self.nodes[node_id]["types"] = [self.node(f["type"], depth + 1) for f in fields]
            self._open.discard(name)
            return node_id
        if kind == "enum":
            return self._named_node(name, {"t": "enum", "symbols": list(node["symbols"])})
        if kind == "fixed":
            return self._named_node(name, {"t": "fixed", "size": int(node["size"])})
        if kind == "array":
            return self._add({"t": "array", "items": self.node(node["items"], depth + 1)})
        if kind == "map":
            return self._add({"t": "map", "values": self.node(node["values"], depth + 1)})
        if isinstance(kind, (str, list, dict)):
            return self.node(kind, depth)  # {"type": "string"}, {"type": "Name"}, ...
        raise NotNative(f"the schema has a node the extension cannot read: {node!r}")

    def _named_node(self, name: Any, node: dict[str, Any]) -> int:
        node_id = self._add(node)
        if isinstance(name, str):
            self._ids[name] = node_id
        return node_id

    def _logical(self, node: dict[str, Any], kind: str, decoded: str) -> int:
        if decoded != "decimal":
            return self._add({"t": decoded})
        precision = node.get("precision")
        scale = node.get("scale", 0)
        if type(precision) is not int or not 0 < precision <= MAX_DECIMAL_PRECISION:
            raise NotNative(f"a decimal's precision {precision!r} is outside 1..300")
        if type(scale) is not int or not 0 <= scale <= precision:
            raise NotNative(f"a decimal's scale {scale!r} is outside 0..precision")
        out: dict[str, Any] = {"t": "decimal", "precision": precision, "scale": scale}
        if kind == "fixed":
            out["size"] = int(node["size"])
            return self._named_node(node.get("name"), out)
        return self._add(out)


class _Builder:
    """Writes the plan of one compiled mapping."""

    def __init__(self, schema: Schema, writer: _SchemaWriter, root: int) -> None:
        self.schema = schema
        self.writer = writer
        self.root = root

    def _strip_union(self, node_id: int) -> int:
        node = self.writer.nodes[node_id]
        if node["t"] == "union":
            branches = [b for b in node["branches"] if self.writer.nodes[b]["t"] != "null"]
            assert len(branches) == 1  # compile_mapping let only nullable unions through
            return int(branches[0])
        return node_id

    def path(self, start: int, path: str) -> tuple[list[int], int]:
        """The field indices of a dotted path (checked by compile_mapping) and its node."""
        indices: list[int] = []
        node_id = start
        for step in path.split("."):
            record = self.writer.nodes[self._strip_union(node_id)]
            index = record["names"].index(step)
            indices.append(index)
            node_id = record["types"][index]
        return indices, self._strip_union(node_id)

    def src(self, spec: str | ConstValue | KafkaValue, start: int) -> dict[str, Any]:
        if isinstance(spec, ConstValue):
            return {"const": spec.const}
        if isinstance(spec, KafkaValue):
            return {"kafka": spec.source, "name": spec.name}
        return {"path": self.path(start, spec)[0]}

    def identity(self, rule: IdentityRule) -> dict[str, Any]:
        start = self.root
        each: list[int] | None = None
        if rule.each is not None:
            each, array = self.path(self.root, rule.each)
            start = self._strip_union(self.writer.nodes[array]["items"])
        optional: list[list[Any]] = []
        for api, spec in (
            ("platform", rule.platform),
            ("mpid", rule.mpid),
            ("isWeChatEcosystem", rule.is_wechat_ecosystem),
        ):
            if spec is not None:
                optional.append([api, self.src(spec, start)])
        return {
            "each": each,
            "value": self.src(rule.value, start),
            "type": self.src(rule.type, start),
            "optional": optional,
            "requires": [["mpid", "isWeChatEcosystem"]],
        }

    def event_key(self, spec: str | ConstValue | LookupValue | KafkaValue) -> dict[str, Any]:
        if not isinstance(spec, LookupValue):
            return {"src": self.src(spec, self.root)}
        # Keys are typed like the field (compile_mapping checked it); an integer past 64
        # bits can match no Avro long, so it is left out rather than overflowing the plan.
        table = [
            [key, value]
            for key, value in spec.lookup.items()
            if type(key) is not int or _INT64[0] <= key <= _INT64[1]
        ]
        src = self.src(spec.field, self.root)
        return {"lookup": {"src": src, "table": table, "default": spec.default}}

    def time(self, settings: MappingSettings) -> dict[str, Any] | None:
        source = time_source(self.schema, settings.time, {})
        if source is None:
            return None
        if source.kind == "kafka_timestamp":
            return {"kafka_timestamp": True}
        if source.kind != "epoch":
            raise NotNative("mapping.time reads an ISO 8601 string, which only Python parses")
        assert source.path is not None
        return {"path": self.path(self.root, source.path)[0], "divisor": source.divisor}

    def conversion(self, path: str) -> Any:
        typ: SchemaType = self.schema.path(self.schema.root, path, "eventargs")
        return conversion_for(self.schema, typ)[0]

    def eventargs(self, settings: MappingSettings) -> dict[str, Any] | None:
        spec = settings.eventargs
        base = None
        if spec.map is not None:
            base = {
                "path": self.path(self.root, spec.map)[0],
                "conversion": self.conversion(spec.map),
            }
        picks: list[list[Any]] = []
        for name, pick in spec.pick.items():
            conversion = None if isinstance(pick, KafkaValue) else self.conversion(pick)
            picks.append([name, self.src(pick, self.root), conversion])
        if base is None and not picks:
            return None
        return {"map": base, "picks": picks}


def build_plan(settings: MappingSettings, parsed_schema: Mapping[str, Any]) -> Plan:
    """The plan of ``settings`` (already resolved: the configured or the default mapping)
    against a fastavro-parsed reader schema.

    MappingError when the mapping does not fit the schema (exactly compile_mapping's);
    NotNative with the reason when the extension cannot run it.
    """
    if is_any(parsed_schema):
        raise NotNative("records of no declared schema (JSON) are mapped in Python")
    mapper = compile_mapping(settings, parsed_schema)  # the reference decides what is valid
    writer = _SchemaWriter(parsed_schema)
    root = writer.node(dict(parsed_schema))
    builder = _Builder(Schema(parsed_schema), writer, root)
    uuid = None if isinstance(settings.uuid, FromPosition) else builder.src(settings.uuid, root)
    intid = None if settings.intid is None else builder.src(settings.intid, root)
    data: dict[str, Any] = {
        "version": PLAN_VERSION,
        "schema": {"nodes": writer.nodes, "root": root},
        "fallback_uuid": {"header": UUID_HEADER},
        "identities": [builder.identity(rule) for rule in settings.identities],
        "time": builder.time(settings),
        "uuid": uuid,
        "event_key": builder.event_key(settings.event_key),
        "intid": intid,
        "eventargs": builder.eventargs(settings),
    }
    if data["eventargs"] is not None:  # doubles appear in eventargs only
        data["eventargs"]["numbers"] = "repr" if mapper.raw_numbers else "orjson"
    return Plan(data)


__all__ = ["PLAN_VERSION", "NotNative", "Plan", "build_plan"]
