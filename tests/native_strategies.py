"""Schemas, mappings and hypothesis strategies of the native path's tests: every shipped
schema with its shipped mapping, and schemas and mappings that use every construct the
extension runs (records of a schema come from tests/avro_strategies.py)."""

from __future__ import annotations

import io
import os
import types
from pathlib import Path
from typing import Any

import fastavro
import pytest
from avro_strategies import records
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from hypothesis import strategies as st
from test_avro_compiled import EVERY_CONSTRUCT as AVRO_EVERY_CONSTRUCT
from test_kafka_metadata import MAPPING as KAFKA_METADATA_MAPPING

from connector.adapters.avro import load_schema, strip_logical_types
from connector.adapters.native import Fallback, load_extension
from connector.config_mapping import MappingSettings
from connector.core.records import UUID_HEADER, SourceRecord
from connector.mapping import default_mapping, load_mapping_file
from connector.mapping.schema import RAW_LOGICAL_TYPE_KEY

ROOT = Path(__file__).resolve().parent.parent


def require_extension() -> types.ModuleType:
    """The extension, or a skip naming why it is missing (a failure under CI=true)."""
    module = load_extension()
    if isinstance(module, Fallback):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs the native extension: {module.reason}")
        # A machine without cargo runs (and tests) the Python path only; CI never skips.
        pytest.skip(f"{module.reason}; the Python path, the reference, is tested without it")
    return module


# test_avro_compiled's schema of every construct, and more the mapping can read.
EVERY_CONSTRUCT: dict[str, Any] = {
    **AVRO_EVERY_CONSTRUCT,
    "fields": [
        *AVRO_EVERY_CONSTRUCT["fields"],
        {
            # A several-type union of converting branches: converted by each value's type.
            "name": "mixed",
            "type": {
                "type": "map",
                "values": [
                    "null",
                    "bytes",
                    {"type": "long", "logicalType": "timestamp-micros"},
                    {"type": "int", "logicalType": "date"},
                    {
                        "type": "fixed",
                        "name": "Cents",
                        "size": 4,
                        "logicalType": "decimal",
                        "precision": 9,
                        "scale": 2,
                    },
                    {"type": "array", "items": "double"},
                ],
            },
        },
        {"name": "who", "type": ["null", "string"]},
        {
            "name": "people",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Person",
                    "fields": [
                        {"name": "id", "type": "string"},
                        {"name": "app", "type": ["null", "string"]},
                        {"name": "wechat", "type": ["null", "boolean"]},
                    ],
                },
            },
        },
    ],
}

SCHEMAS: dict[str, dict[str, Any]] = {
    path.name: load_schema(path) for path in sorted((ROOT / "schemas").glob("*.avsc"))
}
SCHEMAS["every-construct"] = fastavro.parse_schema(strip_logical_types(EVERY_CONSTRUCT))

# tests/test_kafka_metadata.py's mapping: metadata where paths stand.
KAFKA_METADATA: dict[str, Any] = KAFKA_METADATA_MAPPING

POSITIONS: dict[str, Any] = {
    "event_key": {"source": "partition", "lookup": {0: "c_zero", 1: "c_one"},
                  "unmapped": "default", "default": "c_many"},
    "time": {"source": "kafka_timestamp"},
    "uuid": {"source": "position"},
    "intid": {"const": "campaign"},
    "identities": [{"each": "identities", "value": "value", "type": {"const": "openid"},
                    "mpid": "mpid", "is_wechat_ecosystem": "is_wechat_ecosystem"}],
    "eventargs": {"pick": {"k": {"source": "key"}, "when": "event_time", "p": "properties"}},
}  # fmt: skip

_EVERY_FIELDS = [f["name"] for f in EVERY_CONSTRUCT["fields"] if f["name"] != "mixed"]
EVERY: dict[str, Any] = {
    "event_key": {"path": "color", "lookup": {"R": "c_red", "G": "c_green"}},
    "time": "at",
    "uuid": "id",
    "intid": {"source": "key"},
    "identities": [
        {"value": "who", "type": {"const": "phone"}},
        {"each": "people", "value": "id", "type": {"source": "topic"}, "platform": {"const": "mp"},
         "mpid": "app", "is_wechat_ecosystem": "wechat"},
        {"value": {"source": "header", "name": "user"}, "type": "s"},
    ],
    "eventargs": {"map": "mixed",
                  "pick": {**{name: name for name in _EVERY_FIELDS}, "p": {"source": "partition"},
                           "d": "d"}},
}  # fmt: skip

FLAG: dict[str, Any] = {
    "event_key": {"path": "flag", "lookup": {True: "c_yes"}},
    "uuid": "s",
    "intid": "color",
    "identities": [{"value": "s", "type": "color", "is_wechat_ecosystem": "flag"}],
    "eventargs": {"pick": {"tags": "tags", "again": "again"}},
}  # fmt: skip

# name → (schema name, mapping); the first two are the shipped ones.
MAPPINGS: dict[str, tuple[str, MappingSettings]] = {
    "default": ("user_behavior_event.avsc", default_mapping()),
    "clickstream.yaml": (
        "clickstream_event.avsc",
        load_mapping_file(ROOT / "config" / "mappings" / "clickstream.yaml"),
    ),
    "kafka-metadata": ("user_behavior_event.avsc", MappingSettings.model_validate(KAFKA_METADATA)),
    "positions": ("user_behavior_event.avsc", MappingSettings.model_validate(POSITIONS)),
    "every-construct": ("every-construct", MappingSettings.model_validate(EVERY)),
    "flag-lookup": ("every-construct", MappingSettings.model_validate(FLAG)),
}


def encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


_TEXT_BYTES = st.one_of(
    st.none(),
    st.text(max_size=6).map(str.encode),
    st.binary(max_size=4),  # often not UTF-8: the Python path refuses it, naming the field
)
_HEADERS = st.lists(
    st.tuples(st.sampled_from(["tenant", "user", UUID_HEADER, "other"]), _TEXT_BYTES),
    max_size=3,
).map(tuple)


@st.composite
def metadata(draw: st.DrawFn, value: bytes | None, offset: int) -> SourceRecord:
    """A message around ``value`` with any topic, partition, key, headers and timestamp."""
    return SourceRecord(
        topic=draw(st.sampled_from(["shop-orders", "clicks", "t.ü-1"])),
        partition=draw(st.integers(0, 3)),
        offset=offset,
        key=draw(_TEXT_BYTES),
        value=value,
        timestamp_ms=draw(st.one_of(st.none(), st.integers(-5, 2**41))),
        headers=draw(_HEADERS),
    )


def as_message(record: SourceRecord) -> Message:
    """The record as the consumer hands it over (confluent_kafka's own Message): the form
    the native path reads in the pipeline. No headers are None, no timestamp is type 0."""
    stamp = record.timestamp_ms
    return Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        timestamp=(TIMESTAMP_CREATE_TIME, stamp) if stamp is not None else (0, -1),
        headers=list(record.headers) if record.headers else None,
    )


@st.composite
def mutated(draw: st.DrawFn, value: bytes) -> bytes:
    """``value`` flipped, truncated, extended or with bytes inserted, one to three times."""
    out = bytearray(value)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["flip", "truncate", "append", "insert"]))
        if action == "flip" and out:
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        elif action == "truncate":
            del out[draw(st.integers(0, len(out))) :]
        elif action == "append":
            out += draw(st.binary(min_size=1, max_size=4))
        else:
            at = draw(st.integers(0, len(out)))
            out[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(out)


def mappable_records(parsed_schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Records like avro_strategies.records, with strings mostly non-empty and numbers
    mostly finite and non-negative: most of them are valid events under the mappings, so
    the differential test compares many events, not only refusals."""
    named: dict[str, Any] = dict(parsed_schema.get("__named_schemas") or {})
    return _mappable(parsed_schema, named)


_MAPPABLE_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(0, 2**31 - 1),
    "long": st.integers(0, 2**62),
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "string": st.text(min_size=1, max_size=12),
    "bytes": st.binary(max_size=12),
}


def _mappable(node: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    if isinstance(node, list):
        # Nullable unions: the value, mostly (a null identity value skips its rule).
        branches = [_mappable(b, named) for b in node if b != "null"]
        return st.one_of(*branches, *branches, *(st.none() for b in node if b == "null"))
    if isinstance(node, str):
        primitive = _MAPPABLE_PRIMITIVES.get(node)
        if primitive is not None:
            return primitive
        found = named.get(node)
        if found is None:
            found = next(n for full, n in named.items() if full.endswith("." + node))
        return _mappable(found, named)
    kind = node["type"]
    if kind == "record":
        return st.fixed_dictionaries(
            {field["name"]: _mappable(field["type"], named) for field in node["fields"]}
        )
    if kind == "array":
        return st.lists(_mappable(node["items"], named), min_size=1, max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=6), _mappable(node["values"], named), max_size=4)
    if RAW_LOGICAL_TYPE_KEY in node:  # a timestamp, read raw: mostly a valid time
        return st.integers(0, 2**52)
    if isinstance(kind, str) and kind in _MAPPABLE_PRIMITIVES and "logicalType" not in node:
        return _MAPPABLE_PRIMITIVES[kind]
    return records({**node, "__named_schemas": named})  # logical types, enums, fixed
