"""Hypothesis strategies for any record of a parsed Avro schema (as fastavro writes it)."""

from __future__ import annotations

import decimal
from typing import Any

from hypothesis import strategies as st

from connector.mapping.schema import RAW_LOGICAL_TYPE_KEY

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_LOGICAL_RANGES = {
    "date": (-719_162, 2_932_896),  # days from 1970-01-01 to years 1 and 9999
    "time-millis": (0, 86_399_999),
    "time-micros": (0, 86_399_999_999),
}


def records(parsed_schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    named: dict[str, Any] = dict(parsed_schema.get("__named_schemas") or {})
    return _for(parsed_schema, named, 0)


def _lookup(name: str, named: dict[str, Any]) -> Any:
    if name in named:
        return named[name]
    return next(node for full, node in named.items() if full.endswith("." + name))


def _for(node: Any, named: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if isinstance(node, list):
        return st.one_of([_for(branch, named, depth) for branch in node])
    if isinstance(node, str):
        primitive = _PRIMITIVES.get(node)
        if primitive is not None:
            return primitive
        return _for(_lookup(node, named), named, depth)
    kind = node["type"]
    logical = node.get("logicalType") or node.get(RAW_LOGICAL_TYPE_KEY)
    if logical == "decimal":
        precision, scale = int(node["precision"]), int(node.get("scale", 0))
        bound = decimal.Decimal(10**precision - 1).scaleb(-scale)
        return st.decimals(
            min_value=-bound, max_value=bound, places=scale, allow_nan=False, allow_infinity=False
        )
    if logical == "uuid":
        return st.uuids()
    if logical in _LOGICAL_RANGES:  # what fastavro's readers can turn into a date or time
        return st.integers(*_LOGICAL_RANGES[logical])
    if kind == "record":
        return st.fixed_dictionaries(
            {field["name"]: _for(field["type"], named, depth + 1) for field in node["fields"]}
        )
    if kind == "enum":
        return st.sampled_from(node["symbols"])
    if kind == "array":
        return st.lists(_for(node["items"], named, depth + 1), max_size=4)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=8), _for(node["values"], named, depth + 1), max_size=5
        )
    if kind == "fixed":
        return st.binary(min_size=node["size"], max_size=node["size"])
    return _for(kind, named, depth)


_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(*_INT32),
    "long": st.one_of(st.integers(*_INT64), st.integers(0, 2**45)),
    "float": st.floats(width=32),
    "double": st.floats(),
    "string": st.text(max_size=12),
    "bytes": st.binary(max_size=12),
}
