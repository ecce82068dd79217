"""The compiled Avro reader against fastavro, the reference: on every record of every
shipped schema and of a schema with every construct, on corrupted and on random bytes.

The rule under test: whatever the compiled reader accepts, fastavro accepts as the very
same value (types, key order, float bits); whatever it refuses, ``decode_many`` hands to
fastavro, so its verdict and error are fastavro's.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest
from avro_strategies import records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.adapters.avro import AvroDecoder, DecodeError, load_schema, strip_logical_types
from connector.adapters.avro_compiled import RefusedBytesError, compile_reader

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "schemas").glob("*.avsc"))

EVERY_CONSTRUCT = {
    "type": "record",
    "name": "Every",
    "namespace": "t",
    "fields": [
        {"name": "n", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": {"type": "long"}},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "s", "type": "string"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["R", "G", "B"]}},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 3}},
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [{"name": "x", "type": ["null", "long", "string", "Color"]}],
            },
        },
        {"name": "again", "type": "Inner"},  # a named type used a second time
        {"name": "tags", "type": {"type": "array", "items": {"type": "map", "values": "int"}}},
        {"name": "nested", "type": {"type": "map", "values": {"type": "array", "items": "Hash"}}},
        {"name": "maybe_hash", "type": ["Hash", "null"]},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3},
        },
        {
            "name": "fixed_amount",
            "type": {
                "type": "fixed",
                "name": "Money",
                "size": 8,
                "logicalType": "decimal",
                "precision": 12,
                "scale": 2,
            },
        },
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "clock_ms", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "clock_us", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "unknown_logical", "type": {"type": "int", "logicalType": "no-such-type"}},
    ],
}

SCHEMAS = {path.name: load_schema(path) for path in SHIPPED}
SCHEMAS["every-construct"] = fastavro.parse_schema(strip_logical_types(EVERY_CONSTRUCT))


def same(a: Any, b: Any) -> bool:
    """Equal as values and as types, dict key order and float bits (NaN too) included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    return bool(a == b)


def encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def fastavro_reads(schema: dict[str, Any], value: bytes) -> tuple[Any, int] | None:
    buffer = io.BytesIO(value)
    try:
        return fastavro.schemaless_reader(buffer, schema, None), buffer.tell()
    except Exception:
        return None


def check_agrees(schema: dict[str, Any], value: bytes) -> bool:
    """The rule; returns whether the compiled reader accepted the value."""
    read = compile_reader(schema)
    assert read is not None
    try:
        got = read(value, 0)
    except Exception:
        got = None
    if got is not None:
        reference = fastavro_reads(schema, value)
        assert reference is not None, "compiled reader accepted what fastavro refuses"
        assert same(got[0], reference[0]), (got, reference)
        assert got[1] == reference[1]
    # The decoder as the pipeline runs it: the same verdicts as fastavro alone.
    fast = AvroDecoder(schema).decode_many([value])[0]
    slow = AvroDecoder(schema, compiled=False).decode_many([value])[0]
    if isinstance(slow, DecodeError):
        assert isinstance(fast, DecodeError)
        assert str(fast) == str(slow)
    else:
        assert not isinstance(fast, DecodeError)
        assert same(fast, slow)
    return got is not None


@st.composite
def record_bytes(draw: st.DrawFn, schema_name: str) -> bytes:
    return encode(SCHEMAS[schema_name], draw(records(SCHEMAS[schema_name])))


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
def test_every_shipped_schema_and_construct_is_compiled(schema_name: str) -> None:
    assert compile_reader(SCHEMAS[schema_name]) is not None
    assert AvroDecoder(SCHEMAS[schema_name]).compiled


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_records_read_exactly_as_fastavro_reads_them(
    schema_name: str, data: st.DataObject
) -> None:
    value = data.draw(record_bytes(schema_name))
    assert check_agrees(SCHEMAS[schema_name], value), "a valid record was refused"


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_records_get_fastavros_verdict(schema_name: str, data: st.DataObject) -> None:
    value = bytearray(data.draw(record_bytes(schema_name)))
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "truncate", "append", "insert"]))
        if action == "flip" and value:
            value[data.draw(st.integers(0, len(value) - 1))] = data.draw(st.integers(0, 255))
        elif action == "truncate":
            del value[data.draw(st.integers(0, len(value))) :]
        elif action == "append":
            value += data.draw(st.binary(min_size=1, max_size=4))
        else:
            at = data.draw(st.integers(0, len(value)))
            value[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    check_agrees(SCHEMAS[schema_name], bytes(value))


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
@settings(max_examples=200, deadline=None)
@given(value=st.binary(max_size=64))
def test_random_bytes_get_fastavros_verdict(schema_name: str, value: bytes) -> None:
    check_agrees(SCHEMAS[schema_name], value)


@pytest.mark.parametrize(
    ("field_type", "value"),
    [
        ("boolean", b"\x02"),  # fastavro reads any non-zero byte as true
        ("long", b"\xff" * 10 + b"\x01"),  # 11 bytes: fastavro wraps it to 64 bits
        ("long", b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x7f"),  # bits past 64
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]}, b"\x01"),  # index -1
        (["null", "string"], b"\x01"),  # branch -1
        ({"type": "array", "items": "null"}, b"\x08\x00"),  # 4 items of no bytes each
    ],
)
def test_what_fastavro_reads_loosely_is_left_to_fastavro(field_type: Any, value: bytes) -> None:
    schema = fastavro.parse_schema(
        {"type": "record", "name": "R", "fields": [{"name": "f", "type": field_type}]}
    )
    read = compile_reader(schema)
    assert read is not None
    with pytest.raises(RefusedBytesError):
        read(value, 0)
    check_agrees(schema, value)


def test_a_recursive_schema_falls_back_to_fastavro() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Node",
            "fields": [
                {"name": "label", "type": "string"},
                {"name": "next", "type": ["null", "Node"]},
            ],
        }
    )
    assert compile_reader(schema) is None
    decoder = AvroDecoder(schema)
    assert not decoder.compiled
    record = {"label": "a", "next": {"label": "b", "next": None}}
    assert decoder.decode_many([encode(schema, record), b"\x01"])[0] == record
    assert isinstance(decoder.decode_many([b"\x01"])[0], DecodeError)
