"""A sample record built from the schema, with every optional field set (check-config)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid as uuid_module
from collections.abc import Mapping
from typing import Any

from connector.mapping.schema import MICROS, MILLIS, Schema, SchemaType


def sample_record(parsed_schema: Mapping[str, Any], hints: Mapping[str, Any]) -> dict[str, Any]:
    """A record of the schema with every optional field set, as the decoder returns it."""
    schema = Schema(parsed_schema)
    value = _sample(schema, schema.root, "", hints, 0)
    assert isinstance(value, dict)
    return value


def _sample(
    schema: Schema, typ: SchemaType, path: str, hints: Mapping[str, Any], depth: int
) -> Any:
    if path in hints:
        return hints[path]
    name = path.rsplit(".", 1)[-1] or "value"
    logical = typ.logical
    if logical == "decimal":
        scale = int(typ.node.get("scale", 0))
        return decimal.Decimal(1234567).scaleb(-scale)
    if logical in MILLIS:
        return 1_700_000_000_123
    if logical in MICROS:
        return 1_700_000_000_123_456
    if logical == "date":
        return dt.date(2023, 11, 14)
    if logical in {"time-millis", "time-micros"}:
        return dt.time(22, 13, 20)
    if logical == "uuid":
        return uuid_module.UUID(int=0x5EED)
    kind = typ.kind
    if kind == "record":
        if depth > 8:
            return None
        return {
            field["name"]: _sample(
                schema,
                schema.resolve(field["type"]),
                f"{path}.{field['name']}" if path else field["name"],
                hints,
                depth + 1,
            )
            for field in typ.node.get("fields", ())
        }
    if kind == "enum":
        return typ.node["symbols"][0]
    if kind == "array":
        return [_sample(schema, schema.resolve(typ.node["items"]), path, hints, depth + 1)]
    if kind == "map":
        return {f"{name}_key": _sample(schema, schema.resolve(typ.node["values"]), "", {}, depth)}
    if kind == "union":
        branches = [b for b in typ.node if b != "null"]
        return _sample(schema, schema.resolve(branches[0]), path, hints, depth)
    return {
        "string": f"{name}-sample",
        "bytes": b"\x01\x02\x03",
        "fixed": b"\x00" * int(typ.node.get("size", 1)) if isinstance(typ.node, dict) else b"",
        "int": 42,
        "long": 4242,
        "float": 1.5,
        "double": 2.25,
        "boolean": True,
        "null": None,
    }.get(kind)
