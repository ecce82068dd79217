"""``source.format: json``: one UTF-8 JSON object per message, parsed with orjson, checked
against a JSON Schema subset (``source.json_schema_file``). Pure after set-up.

The subset: ``type`` (object, array, string, integer, number, boolean, null, or a list
of one of them and ``"null"``), ``properties``, ``required``, ``additionalProperties``
(a schema: the object is a map), ``items``, ``enum`` (strings), ``format: date-time`` and
``{}`` (any value: a map's values, say).
The schema is also turned into the Avro shape the mapping compiler reads, so mapping paths
are checked at start-up the way Avro paths are: an object with ``properties`` is a record
whose optional properties are nullable, an object with only ``additionalProperties`` a map,
an integer a long, a number a double, an ``enum`` an enum.

A message is invalid at stage ``decode`` when it is not UTF-8, not JSON, not an object,
does not match the schema (the reason names the property), or holds an integer outside
the signed 64-bit range anywhere: it is never turned into a float. Numbers keep their JSON
form: an integer stays an integer, a float stays a float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from connector.adapters.avro import DecodeError, SchemaError, read_json_file
from connector.mapping.schema import ANY_SCHEMA

Check = Callable[[Any, str], str | None]  # (value, where) -> why it does not fit, or None

_INT64 = (-(2**63), 2**63 - 1)
_SCALARS: dict[str, tuple[str, tuple[type, ...]]] = {
    "string": ("string", (str,)),
    "integer": ("long", (int,)),
    "number": ("double", (int, float)),
    "boolean": ("boolean", (bool,)),
}
_KNOWN_KEYS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "format",
    "$schema", "$id", "title", "description", "default", "examples", "$comment",
}  # fmt: skip


def load_json_schema(path: Path) -> dict[str, Any]:
    """Read a JSON Schema file; SchemaError names the file and the problem."""
    doc = read_json_file(path, "source.json_schema_file")
    if not isinstance(doc, dict) or doc.get("type") != "object" or "properties" not in doc:
        raise SchemaError(
            f"source.json_schema_file: {path}: the top level must be an object with properties"
        )
    return doc


class _Compiler:
    """One pass over the schema: its Avro shape and the per-record check, together."""

    def __init__(self, path: Path) -> None:
        self._file = path
        self._records = 0

    def fail(self, pointer: str, what: str) -> SchemaError:
        return SchemaError(f"source.json_schema_file: {self._file}: at {pointer or '/'}: {what}")

    def node(self, schema: Any, pointer: str) -> tuple[Any, Check]:
        if not isinstance(schema, dict):
            raise self.fail(pointer, "a schema must be an object")
        unknown = sorted(set(schema) - _KNOWN_KEYS)
        if unknown:
            raise self.fail(pointer, f"{', '.join(unknown)} not supported (see the README)")
        kind = schema.get("type")
        if kind is None and "enum" not in schema:  # {}: any JSON value (inside maps)
            return ["null", "string", "long", "double", "boolean"], _any_check
        nullable = False
        if isinstance(kind, list):
            others = [k for k in kind if k != "null"]
            if len(others) != 1 or len(kind) != 2:
                raise self.fail(pointer, 'a type list must be [X, "null"]')
            kind, nullable = others[0], True
        shape, check = self.typed(schema, kind, pointer)
        if not nullable:
            return shape, check

        def nullable_check(value: Any, where: str) -> str | None:
            return None if value is None else check(value, where)

        return ["null", shape], nullable_check

    def typed(self, schema: dict[str, Any], kind: Any, pointer: str) -> tuple[Any, Check]:
        if "enum" in schema:
            symbols = schema["enum"]
            if kind not in (None, "string") or not all(isinstance(s, str) for s in symbols):
                raise self.fail(pointer, "only enums of strings are supported")
            self._records += 1
            allowed = set(symbols)

            def enum_check(value: Any, where: str) -> str | None:
                if value in allowed and type(value) is str:
                    return None
                return f"{where}: {_show(value)} is not one of {', '.join(symbols)}"

            return {"type": "enum", "name": f"Enum{self._records}", "symbols": symbols}, enum_check
        if kind == "object":
            return self.object(schema, pointer)
        if kind == "array":
            if "items" not in schema:
                raise self.fail(pointer, "an array needs items")
            items, item_check = self.node(schema["items"], pointer + "/items")

            def array_check(value: Any, where: str) -> str | None:
                if type(value) is not list:
                    return f"{where}: {_show(value)} is not an array"
                for index, item in enumerate(value):
                    problem = item_check(item, f"{where}[{index}]")
                    if problem is not None:
                        return problem
                return None

            return {"type": "array", "items": items}, array_check
        if kind == "null":
            return "null", _null_check
        if kind not in _SCALARS:
            raise self.fail(pointer, f"type {kind!r} not supported")
        avro, types = _SCALARS[kind]
        if kind == "number":

            def number_check(value: Any, where: str) -> str | None:
                ok = type(value) in types
                return None if ok else f"{where}: {_show(value)} is not a number"

            return avro, number_check
        exact = types[0]

        def scalar_check(value: Any, where: str) -> str | None:
            return None if type(value) is exact else f"{where}: {_show(value)} is not {kind}"

        return avro, scalar_check

    def object(self, schema: dict[str, Any], pointer: str) -> tuple[Any, Check]:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties is None:
            if not isinstance(extra, dict):
                raise self.fail(pointer, "an object needs properties or additionalProperties")
            values, value_check = self.node(extra, pointer + "/additionalProperties")

            def map_check(value: Any, where: str) -> str | None:
                if type(value) is not dict:
                    return f"{where}: {_show(value)} is not an object"
                for name, item in value.items():
                    problem = value_check(item, f"{where}.{name}")
                    if problem is not None:
                        return problem
                return None

            return {"type": "map", "values": values}, map_check
        required = schema.get("required", [])
        if not isinstance(properties, dict) or not isinstance(required, list):
            raise self.fail(pointer, "properties must be an object and required a list")
        missing = [name for name in required if name not in properties]
        if missing:
            raise self.fail(pointer, f"required names {', '.join(missing)}, not in properties")
        fields, checks = [], []
        for name, sub in properties.items():
            shape, check = self.node(sub, f"{pointer}/properties/{name}")
            must = name in required
            fields.append({"name": name, "type": shape if must else ["null", shape]})
            checks.append((name, must, check))
        self._records += 1

        def record_check(value: Any, where: str) -> str | None:
            if type(value) is not dict:
                return f"{where or 'the value'}: {_show(value)} is not an object"
            for name, must, check in checks:
                item = value.get(name)
                if item is None:
                    if must and name not in value:
                        return f"{where}{'.' if where else ''}{name}: required, missing"
                    if must:
                        return f"{where}{'.' if where else ''}{name}: required, null"
                    continue
                problem = check(item, f"{where}{'.' if where else ''}{name}")
                if problem is not None:
                    return problem
            return None

        name = f"Record{self._records}"
        return {"type": "record", "name": name, "fields": fields}, record_check


def _any_check(value: Any, where: str) -> str | None:
    return None


def _null_check(value: Any, where: str) -> str | None:
    return None if value is None else f"{where}: {_show(value)} is not null"


def _show(value: Any) -> str:
    """A value's JSON type, never the value itself (it may be personal data)."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


# An integer of 19 digits or more may be outside the signed 64-bit range, and orjson reads
# those beyond 64 bits as floats: such a message is read again, exactly (rare, and slow).
_LONG_DIGITS = re.compile(rb"\d{19}")


def _check_int(text: str) -> int:
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError("wide integer")
    return value


def _wide_int(value: bytes) -> bool:
    """Whether an integer outside the signed 64-bit range is anywhere in the JSON text."""
    if _LONG_DIGITS.search(value) is None:
        return False
    try:
        json.loads(value, parse_int=_check_int)
    except ValueError:
        return True
    return False


class JsonDecoder:
    """Parses and checks JSON messages against one schema, reused for every record."""

    def __init__(self, doc: dict[str, Any] | None, path: Path | None) -> None:
        """``doc`` None: no schema; paths are checked per record by the mapping."""
        self._check: Check | None = None
        self._schema: dict[str, Any] = ANY_SCHEMA
        if doc is not None and path is not None:
            shape, self._check = _Compiler(path).node(doc, "")
            assert isinstance(shape, dict)
            self._schema = shape

    @property
    def schema(self) -> dict[str, Any]:
        """The schema in the Avro shape the mapping is compiled against."""
        return self._schema

    def decode(self, value: bytes | None) -> dict[str, Any]:
        if not value:
            raise DecodeError("empty message value (tombstone or no payload)")
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            reason = str(exc)
            if "utf-8" in reason.lower() or "surrogate" in reason.lower():
                raise DecodeError("not UTF-8") from None
            raise DecodeError(f"not JSON: {reason.split(':', 1)[0]}") from None
        if type(record) is not dict:
            raise DecodeError(f"not a JSON object: {_show(record)}")
        if _wide_int(value):
            raise DecodeError("an integer outside the signed 64-bit range")
        problem = None if self._check is None else self._check(record, "")
        if problem is not None:
            raise DecodeError(f"does not match source.json_schema_file: {problem}")
        return record

    def decode_many(self, values: list[bytes | None]) -> list[dict[str, Any] | DecodeError]:
        out: list[dict[str, Any] | DecodeError] = []
        for value in values:
            try:
                out.append(self.decode(value))
            except DecodeError as exc:
                out.append(exc)
        return out
