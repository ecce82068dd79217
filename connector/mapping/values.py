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


# A conversion, as data: what ``converter_for`` turns into a function, and what the native
# extension's plan carries (connector/mapping/plan.py), so both paths run the one decision.
# None: the value is JSON as it is; a name: one of ``_LEAF_CONVERTERS``; a dict:
# {"record": [[field name, conversion], ...]} (only the fields that convert),
# {"array": conversion} or {"map": conversion} (applied to every non-null element).
Conversion = str | dict[str, Any] | None

_LEAF_CONVERTERS: dict[str, Converter] = {
    "decimal": _decimal,
    "micros_to_ms": _micros_to_ms,
    "isoformat": _isoformat,
    "uuid_text": str,
    "base64": _b64,
    "generic": _generic,
}


def conversion_for(schema: Schema, typ: SchemaType, depth: int = 0) -> tuple[Conversion, bool]:
    """(the conversion of a value of ``typ``, whether it may hold a decimal)."""
    if depth > 32:  # a recursive schema: convert by runtime type below this depth
        return "generic", True
    if typ.logical == "decimal":
        return "decimal", True
    if typ.logical in MICROS:
        return "micros_to_ms", False
    if typ.logical in {"date", "time-millis", "time-micros"}:
        return "isoformat", False
    if typ.logical == "uuid":
        return "uuid_text", False
    if typ.kind in {"bytes", "fixed"}:
        return "base64", False
    if typ.kind == "union":
        branches = [conversion_for(schema, schema.resolve(b), depth + 1) for b in typ.node]
        if any(inner is not None for inner, _ in branches):
            return "generic", True
        return None, False
    if typ.kind == "record":
        raw = False
        fields: list[list[Any]] = []
        for field in typ.node.get("fields", ()):
            inner, inner_raw = conversion_for(schema, schema.resolve(field["type"]), depth + 1)
            raw = raw or inner_raw
            if inner is not None:
                fields.append([field["name"], inner])
        return ({"record": fields} if fields else None), raw
    if typ.kind in {"array", "map"}:
        key = "items" if typ.kind == "array" else "values"
        inner, raw = conversion_for(schema, schema.resolve(typ.node[key]), depth + 1)
        return (None if inner is None else {typ.kind: inner}), raw
    return None, False


def converter_for(schema: Schema, typ: SchemaType, depth: int = 0) -> tuple[Converter | None, bool]:
    """(converter or None when the value is JSON as it is, whether it may hold a decimal)."""
    conversion, raw = conversion_for(schema, typ, depth)
    return converter_of(conversion), raw


def converter_of(conversion: Conversion) -> Converter | None:
    """The function that applies ``conversion`` (None: the value stays as it is)."""
    if conversion is None:
        return None
    if isinstance(conversion, str):
        return _LEAF_CONVERTERS[conversion]
    if "record" in conversion:
        fields: list[tuple[str, Converter]] = []
        for name, inner in conversion["record"]:
            field_conv = converter_of(inner)
            assert field_conv is not None  # only fields that convert are listed
            fields.append((name, field_conv))

        def conv_record(value: Any) -> Any:
            out = dict(value)
            for name, inner in fields:
                item = out.get(name)
                if item is not None:
                    out[name] = inner(item)
            return out

        return conv_record
    if "array" in conversion:
        element = converter_of(conversion["array"])
        assert element is not None

        def conv_array(value: Any) -> Any:
            return [None if v is None else element(v) for v in value]

        return conv_array
    element_of_map = converter_of(conversion["map"])
    assert element_of_map is not None

    def conv_map(value: Any) -> Any:
        return {k: None if v is None else element_of_map(v) for k, v in value.items()}

    return conv_map


ENCODE: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode
