"""The reader schema, walked once at start-up: what a field path leads to, and the
getters that read it per record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from connector.config import (
    ConfigError,
)
from connector.mapping.transform import TransformError

# Where the Avro decoder keeps a timestamp annotation it stripped (it reads raw numbers),
# so the mapping still knows millis from micros.
RAW_LOGICAL_TYPE_KEY = "event-sink.logicalType"

Getter = Callable[[Mapping[str, Any]], Any]
Converter = Callable[[Any], Any]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_MS = dt.timedelta(milliseconds=1)
MILLIS = {"timestamp-millis", "local-timestamp-millis"}
MICROS = {"timestamp-micros", "local-timestamp-micros"}
STRINGY = {"string", "enum"}


class MappingError(ConfigError):
    """The mapping does not fit the schema; the message names the mapping key and the path."""


# -- the schema, walked once ------------------------------------------------------------


class SchemaType:
    """One schema node with nullable unions unwrapped: what a path leads to."""

    __slots__ = ("kind", "logical", "node", "nullable")

    def __init__(self, kind: str, logical: str | None, node: Any, nullable: bool) -> None:
        self.kind = kind  # record, enum, array, map, fixed, string, bytes, long, ...
        self.logical = logical
        self.node = node
        self.nullable = nullable

    def describe(self) -> str:
        """With its article: 'a nullable string', 'an enum', 'a long (timestamp-micros)'."""
        text = f"{self.kind} ({self.logical})" if self.logical else self.kind
        text = f"nullable {text}" if self.nullable else text
        return ("an " if text[0] in "aeiou" else "a ") + text


class Schema:
    # True for a schema whose types are known before the first record; AnySchema's are not.
    typed = True

    def __init__(self, parsed: Mapping[str, Any]) -> None:
        self.named: dict[str, Any] = dict(parsed.get("__named_schemas") or {})
        self.root = self.resolve(parsed)

    def getter(self, path: str) -> Getter:
        """The accessor for ``path``: a path of a typed schema goes through records only."""
        return getter(path)

    def resolve(self, node: Any, nullable: bool = False) -> SchemaType:
        if isinstance(node, str):
            if node in self.named:
                return self.resolve(self.named[node], nullable)
            suffix = "." + node
            for name, named in self.named.items():
                if name.endswith(suffix):
                    return self.resolve(named, nullable)
            return SchemaType(node, None, node, nullable or node == "null")
        if isinstance(node, list):
            branches = [branch for branch in node if branch != "null"]
            if len(branches) == 1:
                return self.resolve(branches[0], nullable or len(node) > 1)
            return SchemaType("union", None, node, nullable or len(branches) < len(node))
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, (dict, list)) or (
                isinstance(kind, str) and kind not in _COMPLEX and "fields" not in node
            ):
                inner = self.resolve(kind, nullable)
                logical = node.get("logicalType") or node.get(RAW_LOGICAL_TYPE_KEY)
                if logical and inner.logical is None:
                    return SchemaType(inner.kind, str(logical), node, inner.nullable)
                return inner
            logical = node.get("logicalType") or node.get(RAW_LOGICAL_TYPE_KEY)
            return SchemaType(str(kind), str(logical) if logical else None, node, nullable)
        raise MappingError(f"unsupported schema node {node!r}")

    def field(self, record: SchemaType, name: str) -> SchemaType | None:
        for field in record.node.get("fields", ()):
            if field["name"] == name:
                return self.resolve(field["type"])
        return None

    def path(self, start: SchemaType, path: str, key: str) -> SchemaType:
        """Follow a dotted path; MappingError names the mapping key and the path."""
        current = start
        nullable = False
        walked: list[str] = []
        for step in path.split("."):
            where = ".".join(walked) or "the record"
            if current.kind != "record":
                raise MappingError(
                    f"mapping.{key}: path {path!r}: {where} is {current.describe()}, "
                    f"not a record, so it has no field {step!r}"
                )
            found = self.field(current, step)
            if found is None:
                names = ", ".join(f["name"] for f in current.node.get("fields", ()))
                raise MappingError(
                    f"mapping.{key}: path {path!r}: {where} has no field {step!r} (it has: {names})"
                )
            nullable = nullable or current.nullable
            walked.append(step)
            current = found
        if current.kind == "union":
            raise MappingError(
                f"mapping.{key}: path {path!r} is a union of several types; "
                "only unions of null and one type can be mapped"
            )
        return SchemaType(current.kind, current.logical, current.node, current.nullable or nullable)


_COMPLEX = {"record", "error", "enum", "array", "map", "fixed"}

# JSON without a schema: whatever a path leads to is known only per record.
ANY = "any"
ANY_SCHEMA: dict[str, Any] = {"type": "record", "name": "AnyJson", "fields": [], ANY: True}


class AnySchema(Schema):
    """Records of no declared schema (``source.format: json`` without a schema file): every
    path exists and may hold anything, so the compiler checks types per record instead."""

    typed = False

    def __init__(self) -> None:
        super().__init__(ANY_SCHEMA)

    def path(self, start: SchemaType, path: str, key: str) -> SchemaType:
        return SchemaType(ANY, None, None, True)

    def getter(self, path: str) -> Getter:
        return safe_getter(path)


def is_any(parsed: Mapping[str, Any]) -> bool:
    return parsed.get(ANY) is True


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "enum": (str,), "boolean": (bool,), "int": (int,), "long": (int,),
    "array": (list,), "map": (dict,), "record": (dict,),
}  # fmt: skip


def checked(get: Getter, path: str, allowed: set[str]) -> Getter:
    """``get`` with the type check a schema would have made at start-up, made per record:
    a value of another JSON type makes the record invalid, naming the path."""
    types = {t for kind in allowed for t in _PYTHON_TYPES.get(kind, ())}
    wanted = " or ".join(sorted(allowed))

    def get_checked(record: Mapping[str, Any]) -> Any:
        value = get(record)
        if value is None or type(value) in types:  # exact: a boolean is no integer here
            return value
        found = _JSON_TYPES.get(type(value), type(value).__name__)
        raise TransformError(f"{path}: {found} where {wanted} is needed")

    return get_checked


_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "an object"}  # fmt: skip


def json_type(value: Any) -> str:
    """What a JSON value is, in a reader's words ("a string", "an integer", ...)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def safe_getter(path: str) -> Getter:
    """A dotted path through objects of unknown shape: None when a step is missing or
    null; TransformError when a step is not an object."""
    steps = path.split(".")

    def get(record: Mapping[str, Any]) -> Any:
        value: Any = record
        for index, step in enumerate(steps):
            if type(value) is not dict:
                where = ".".join(steps[:index])
                raise TransformError(f"{path}: {where} is not an object")
            value = value.get(step)
            if value is None:
                return None
        return value

    return get


def getter(path: str) -> Getter:
    """A fast accessor for a dotted path; None when any step is null."""
    steps = path.split(".")
    if len(steps) == 1:
        (name,) = steps

        def get1(record: Mapping[str, Any]) -> Any:
            return record.get(name)

        return get1
    if len(steps) == 2:
        first, second = steps

        def get2(record: Mapping[str, Any]) -> Any:
            inner = record.get(first)
            return None if inner is None else inner.get(second)

        return get2

    def get_n(record: Mapping[str, Any]) -> Any:
        value: Any = record
        for step in steps:
            value = value.get(step)
            if value is None:
                return None
        return value

    return get_n


def require_kind(typ: SchemaType, allowed: set[str], key: str, path: str, what: str) -> None:
    if typ.kind not in allowed and typ.kind != ANY:
        raise MappingError(
            f"mapping.{key}: path {path!r} is {typ.describe()}; {what} needs "
            + " or ".join(sorted(allowed))
        )
