"""Values of a record turned into faithful JSON for ``eventargs`` (decimals with their
own digits, bytes as base64, timestamps in milliseconds).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from connector.mapping.schema import MICROS, Converter, Schema, SchemaType
from connector.mapping.transform import TransformError

# -- eventargs values: faithful JSON -----------------------------------------------------


# A decimal travels as its exact text between two lone surrogates: no decoded Avro string
# can hold one (they are not valid UTF-8), so after json encoding the marked text is
# unambiguous, and ``encode`` unquotes it into a JSON number with the decimal's own digits.
_MARK = "\ud800"
MARKED_NUMBER = re.compile('"' + _MARK + "([-+.0-9E]+)" + _MARK + '"')


def _decimal(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise TransformError("eventargs: a decimal is not finite")
        return _MARK + str(value) + _MARK
    return value


def _b64(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value


def _micros_to_ms(value: Any) -> Any:
    return value // 1000 if type(value) is int else value


def _isoformat(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.date, dt.time)) else value


def _generic(value: Any) -> Any:
    """For several-type unions: convert by the value's own type."""
    if isinstance(value, dict):
        return {k: _generic(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_generic(v) for v in value]
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid_module.UUID):
        return str(value)
    return value


def converter_for(schema: Schema, typ: SchemaType, depth: int = 0) -> tuple[Converter | None, bool]:
    """(converter or None when the value is JSON as it is, whether it may hold a decimal)."""
    if depth > 32:  # a recursive schema: convert by runtime type below this depth
        return _generic, True
    conv: Converter | None
    raw = False
    if typ.logical == "decimal":
        conv, raw = _decimal, True
    elif typ.logical in MICROS:
        conv = _micros_to_ms
    elif typ.logical in {"date", "time-millis", "time-micros"}:
        conv = _isoformat
    elif typ.logical == "uuid":
        conv = str
    elif typ.kind in {"bytes", "fixed"}:
        conv = _b64
    elif typ.kind == "union":
        branches = [converter_for(schema, schema.resolve(b), depth + 1) for b in typ.node]
        if any(inner is not None for inner, _ in branches):
            conv, raw = _generic, True
        else:
            conv = None
    elif typ.kind == "record":
        fields = []
        for field in typ.node.get("fields", ()):
            inner, inner_raw = converter_for(schema, schema.resolve(field["type"]), depth + 1)
            raw = raw or inner_raw
            if inner is not None:
                fields.append((field["name"], inner))
        if not fields:
            conv = None
        else:

            def conv_record(value: Any) -> Any:
                out = dict(value)
                for name, inner in fields:
                    item = out.get(name)
                    if item is not None:
                        out[name] = inner(item)
                return out

            conv = conv_record
    elif typ.kind in {"array", "map"}:
        key = "items" if typ.kind == "array" else "values"
        inner_conv, raw = converter_for(schema, schema.resolve(typ.node[key]), depth + 1)
        if inner_conv is None:
            conv = None
        elif typ.kind == "array":
            element = inner_conv

            def conv_array(value: Any) -> Any:
                return [None if v is None else element(v) for v in value]

            conv = conv_array
        else:
            element = inner_conv

            def conv_map(value: Any) -> Any:
                return {k: None if v is None else element(v) for k, v in value.items()}

            conv = conv_map
    else:
        conv = None
    return conv, raw


ENCODE: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode
