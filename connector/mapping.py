"""The declarative mapping: config ``mapping:`` + the reader schema → a per-record function.

``compile_mapping`` walks the schema once, at start-up: every path must exist (through
records and nullable unions) and have a type the API field can use, or it raises
MappingError naming the path. What it returns, ``Mapper``, does no schema walking per
record: each API field is a prebuilt getter plus, where needed, a converter.

The contract is ``transform.to_event``'s: an optional field whose value is null is
omitted, never sent as null; ``uuid`` falls back to the record's position (or the
``event-sink.uuid`` header of a replayed record); NaN and infinities are refused; every
refusal is a TransformError naming the field, never its value. Pure.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import uuid as uuid_module
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from connector.config import (
    ConfigError,
    ConstValue,
    FromPosition,
    IdentityRule,
    KafkaTimestamp,
    LookupValue,
    MappingSettings,
)
from connector.decode import RAW_LOGICAL_TYPE_KEY
from connector.transform import TransformError, encode_event

Getter = Callable[[Mapping[str, Any]], Any]
Converter = Callable[[Any], Any]

DEFAULT_MAPPING_FILE = (
    Path(__file__).resolve().parent.parent / "config" / "mappings" / "user_behavior_event.yaml"
)

# The default mapping for schemas/user_behavior_event.avsc, in the mapping language. The
# same text is config/mappings/user_behavior_event.yaml (a test keeps them equal); it is
# built in so an installed connector without that file still has it.
DEFAULT_MAPPING: dict[str, Any] = {
    "event_key": "event_key",
    "time": "event_time",
    "uuid": "event_id",
    "intid": "interaction_id",
    "identities": [
        {
            "each": "identities",
            "value": "value",
            "type": "type",
            "platform": "platform",
            "mpid": "mpid",
            "is_wechat_ecosystem": "is_wechat_ecosystem",
        }
    ],
    "eventargs": {"map": "properties"},
}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)
_MILLIS = {"timestamp-millis", "local-timestamp-millis"}
_MICROS = {"timestamp-micros", "local-timestamp-micros"}
_STRINGY = {"string", "enum"}


class MappingError(ConfigError):
    """The mapping does not fit the schema; the message names the mapping key and the path."""


def default_mapping() -> MappingSettings:
    return MappingSettings.model_validate(DEFAULT_MAPPING)


# -- the schema, walked once ------------------------------------------------------------


class _Type:
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


class _Schema:
    def __init__(self, parsed: Mapping[str, Any]) -> None:
        self.named: dict[str, Any] = dict(parsed.get("__named_schemas") or {})
        self.root = self.resolve(parsed)

    def resolve(self, node: Any, nullable: bool = False) -> _Type:
        if isinstance(node, str):
            if node in self.named:
                return self.resolve(self.named[node], nullable)
            suffix = "." + node
            for name, named in self.named.items():
                if name.endswith(suffix):
                    return self.resolve(named, nullable)
            return _Type(node, None, node, nullable or node == "null")
        if isinstance(node, list):
            branches = [branch for branch in node if branch != "null"]
            if len(branches) == 1:
                return self.resolve(branches[0], nullable or len(node) > 1)
            return _Type("union", None, node, nullable or len(branches) < len(node))
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, (dict, list)) or (
                isinstance(kind, str) and kind not in _COMPLEX and "fields" not in node
            ):
                inner = self.resolve(kind, nullable)
                logical = node.get("logicalType") or node.get(RAW_LOGICAL_TYPE_KEY)
                if logical and inner.logical is None:
                    return _Type(inner.kind, str(logical), node, inner.nullable)
                return inner
            logical = node.get("logicalType") or node.get(RAW_LOGICAL_TYPE_KEY)
            return _Type(str(kind), str(logical) if logical else None, node, nullable)
        raise MappingError(f"unsupported schema node {node!r}")

    def field(self, record: _Type, name: str) -> _Type | None:
        for field in record.node.get("fields", ()):
            if field["name"] == name:
                return self.resolve(field["type"])
        return None

    def path(self, start: _Type, path: str, key: str) -> _Type:
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
        return _Type(current.kind, current.logical, current.node, current.nullable or nullable)


_COMPLEX = {"record", "error", "enum", "array", "map", "fixed"}


def _getter(path: str) -> Getter:
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


def _require(typ: _Type, allowed: set[str], key: str, path: str, what: str) -> None:
    if typ.kind not in allowed:
        raise MappingError(
            f"mapping.{key}: path {path!r} is {typ.describe()}; {what} needs "
            + " or ".join(sorted(allowed))
        )


# -- eventargs values: faithful JSON -----------------------------------------------------


# A decimal travels as its exact text between two lone surrogates: no decoded Avro string
# can hold one (they are not valid UTF-8), so after json encoding the marked text is
# unambiguous, and ``encode`` unquotes it into a JSON number with the decimal's own digits.
_MARK = "\ud800"
_MARKED_NUMBER = re.compile('"' + _MARK + "([-+.0-9E]+)" + _MARK + '"')


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


def _converter(schema: _Schema, typ: _Type, depth: int = 0) -> tuple[Converter | None, bool]:
    """(converter or None when the value is JSON as it is, whether it may hold a decimal)."""
    if depth > 32:  # a recursive schema: convert by runtime type below this depth
        return _generic, True
    conv: Converter | None
    raw = False
    if typ.logical == "decimal":
        conv, raw = _decimal, True
    elif typ.logical in _MICROS:
        conv = _micros_to_ms
    elif typ.logical in {"date", "time-millis", "time-micros"}:
        conv = _isoformat
    elif typ.logical == "uuid":
        conv = str
    elif typ.kind in {"bytes", "fixed"}:
        conv = _b64
    elif typ.kind == "union":
        branches = [_converter(schema, schema.resolve(b), depth + 1) for b in typ.node]
        if any(inner is not None for inner, _ in branches):
            conv, raw = _generic, True
        else:
            conv = None
    elif typ.kind == "record":
        fields = []
        for field in typ.node.get("fields", ()):
            inner, inner_raw = _converter(schema, schema.resolve(field["type"]), depth + 1)
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
        inner_conv, raw = _converter(schema, schema.resolve(typ.node[key]), depth + 1)
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


_ENCODE: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode


# -- the compiled mapping ----------------------------------------------------------------


class Mapper:
    """One record → the API's event. Built by ``compile_mapping``; no schema work per record."""

    def __init__(
        self,
        *,
        identity_rules: list[Callable[[Mapping[str, Any], list[dict[str, Any]]], None]],
        event_key: Callable[[Mapping[str, Any]], str],
        time: Callable[[Mapping[str, Any], int | None], int | None] | None,
        uuid: Getter | None,
        intid: Getter | None,
        eventargs: Getter | None,
        raw_numbers: bool,
        sample_hints: dict[str, Any],
    ) -> None:
        self._identity_rules = identity_rules
        self._event_key = event_key
        self._time = time
        self._uuid = uuid
        self._intid = intid
        self._eventargs = eventargs
        self._raw_numbers = raw_numbers
        self.sample_hints = sample_hints  # path → a value that makes a good sample

    def to_event(
        self,
        record: Mapping[str, Any],
        fallback_uuid: str | Callable[[], str],
        timestamp_ms: int | None = None,
    ) -> dict[str, Any]:
        """The API event; TransformError names the field when the record cannot be one.

        ``fallback_uuid`` may be a function: it is called only for a record without a
        uuid of its own (most records have one; the fallback costs an allocation).

        Decimals in eventargs are held as marked exact text; ``encode`` writes them as
        JSON numbers.
        """
        identities: list[dict[str, Any]] = []
        for rule in self._identity_rules:
            rule(record, identities)
        if not identities:
            raise TransformError("identities: at least one identity is required")
        event: dict[str, Any] = {"identities": identities}
        if self._time is not None:
            moment = self._time(record, timestamp_ms)
            if moment is not None:
                event["time"] = moment
        if self._uuid is not None:
            uuid = self._uuid(record)
            event["uuid"] = uuid if uuid else _resolve(fallback_uuid)
        else:
            event["uuid"] = _resolve(fallback_uuid)
        event["eventKey"] = self._event_key(record)
        if self._intid is not None:
            intid = self._intid(record)
            if intid is not None:
                event["intid"] = intid
        if self._eventargs is not None:
            args = self._eventargs(record)
            if args:
                event["eventargs"] = args
        return event

    def encode(
        self,
        record: Mapping[str, Any],
        fallback_uuid: str | Callable[[], str],
        timestamp_ms: int | None = None,
    ) -> bytes:
        """The event as compact UTF-8 JSON (what goes into a batch)."""
        event = self.to_event(record, fallback_uuid, timestamp_ms)
        if not self._raw_numbers:
            return encode_event(event)
        try:
            text = _ENCODE(event)
        except ValueError as exc:
            raise TransformError(f"eventargs: {exc}") from None
        return _MARKED_NUMBER.sub(r"\1", text).encode("utf-8")


def _resolve(fallback_uuid: str | Callable[[], str]) -> str:
    return fallback_uuid if isinstance(fallback_uuid, str) else fallback_uuid()


def _value_spec(
    schema: _Schema,
    start: _Type,
    spec: str | ConstValue | None,
    key: str,
    allowed: set[str],
    what: str,
    const_type: type,
) -> tuple[Getter | None, Any, _Type | None]:
    """(getter, constant, type) of a path-or-constant spec."""
    if spec is None:
        return None, None, None
    if isinstance(spec, ConstValue):
        if type(spec.const) is not const_type:
            raise MappingError(f"mapping.{key}: the constant must be a {const_type.__name__}")
        return None, spec.const, None
    typ = schema.path(start, spec, key)
    _require(typ, allowed, key, spec, what)
    return _getter(spec), None, typ


def _compile_event_key(
    schema: _Schema, spec: str | ConstValue | LookupValue, hints: dict[str, Any]
) -> Callable[[Mapping[str, Any]], str]:
    if isinstance(spec, ConstValue):
        if type(spec.const) is not str:
            raise MappingError("mapping.event_key: the constant must be a str")
        constant = spec.const

        def const_key(record: Mapping[str, Any]) -> str:
            return constant

        return const_key
    if isinstance(spec, str):
        typ = schema.path(schema.root, spec, "event_key")
        _require(typ, _STRINGY, "event_key", spec, "eventKey")
        get = _getter(spec)
        message = f"{spec}: required, a non-empty string"

        def path_key(record: Mapping[str, Any]) -> str:
            value = get(record)
            if type(value) is not str or not value:
                raise TransformError(message)
            return value

        return path_key
    path = spec.path
    typ = schema.path(schema.root, path, "event_key")
    _require(typ, _STRINGY | {"int", "long", "boolean"}, "event_key", path, "a lookup")
    key_type: type = {"int": int, "long": int, "boolean": bool}.get(typ.kind, str)
    for value in spec.lookup:
        if type(value) is not key_type:
            raise MappingError(
                f"mapping.event_key.lookup: key {value!r} is a {type(value).__name__}, "
                f"but {path!r} is {typ.describe()}"
            )
    if typ.kind == "enum":
        symbols = list(typ.node.get("symbols", ()))
        unknown = [value for value in spec.lookup if value not in symbols]
        if unknown:
            raise MappingError(
                f"mapping.event_key.lookup: {', '.join(map(str, unknown))} "
                f"not a symbol of the enum at {path!r} ({', '.join(symbols)})"
            )
    table = dict(spec.lookup)
    default = spec.default
    get = _getter(path)
    hints[path] = next(iter(table))
    missing = f"{path}: value not in mapping.event_key.lookup and no default"

    def lookup_key(record: Mapping[str, Any]) -> str:
        found = table.get(get(record))
        if found is None:
            if default is None:
                raise TransformError(missing)
            return default
        return found

    return lookup_key


def _compile_time(
    schema: _Schema, spec: str | KafkaTimestamp | None, hints: dict[str, Any]
) -> Callable[[Mapping[str, Any], int | None], int | None] | None:
    if spec is None:
        return None
    if isinstance(spec, KafkaTimestamp):

        def kafka_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            return timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else None

        return kafka_time
    typ = schema.path(schema.root, spec, "time")
    _require(typ, {"long", "int", "string"}, "time", spec, "time")
    get = _getter(spec)
    if typ.kind == "string":
        hints[spec] = "2023-11-14T22:13:20.123Z"
        bad = f"{spec}: not an ISO 8601 time"

        def iso_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            value = get(record)
            if value is None:
                return None
            try:
                moment = dt.datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise TransformError(bad) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            millis = (moment - _EPOCH) // _ONE_MS
            if millis < 0:
                raise TransformError(f"{spec}: before 1970")
            return millis

        return iso_time
    if typ.logical is not None and typ.logical not in _MILLIS | _MICROS:
        raise MappingError(
            f"mapping.time: path {spec!r} is {typ.describe()}; time needs epoch "
            "milliseconds or microseconds (timestamp-millis, timestamp-micros, long) "
            "or an ISO 8601 string"
        )
    divisor = 1000 if typ.logical in _MICROS else 1
    message = f"{spec}: must be epoch milliseconds (a non-negative long)"

    def epoch_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
        value = get(record)
        if value is None:
            return None
        if type(value) is not int or value < 0:
            raise TransformError(message)
        return value // divisor if divisor != 1 else value

    return epoch_time


def _compile_identity(
    schema: _Schema, rule: IdentityRule, index: int
) -> Callable[[Mapping[str, Any], list[dict[str, Any]]], None]:
    key = f"identities[{index}]"
    start = schema.root
    each = rule.each
    if each is not None:
        typ = schema.path(schema.root, each, f"{key}.each")
        _require(typ, {"array"}, f"{key}.each", each, "each")
        start = schema.resolve(typ.node["items"])
        if start.kind != "record":
            raise MappingError(
                f"mapping.{key}.each: path {each!r} is an array whose items are "
                f"{start.describe()}; each needs an array of records"
            )
    value_get, _, _ = _value_spec(
        schema, start, rule.value, f"{key}.value", _STRINGY, "identityValue", str
    )
    assert value_get is not None
    type_get, type_const, _ = _value_spec(
        schema, start, rule.type, f"{key}.type", _STRINGY, "identityType", str
    )
    optionals: list[tuple[str, Getter | None, Any]] = []
    for api, spec, allowed, const_type in (
        ("platform", rule.platform, _STRINGY, str),
        ("mpid", rule.mpid, _STRINGY, str),
        ("isWeChatEcosystem", rule.is_wechat_ecosystem, {"boolean"}, bool),
    ):
        name = {"isWeChatEcosystem": "is_wechat_ecosystem"}.get(api, api)
        get, const, _ = _value_spec(schema, start, spec, f"{key}.{name}", allowed, api, const_type)
        if get is not None or const is not None:
            optionals.append((api, get, const))
    if rule.mpid is not None and rule.is_wechat_ecosystem is None:
        raise MappingError(
            f"mapping.{key}.is_wechat_ecosystem: required when mpid is mapped "
            "(the API needs isWeChatEcosystem whenever mpid is sent)"
        )

    def name_of(spec: str | ConstValue | None, fallback: str) -> str:
        return spec if isinstance(spec, str) else fallback

    value_name = rule.value
    type_name = name_of(rule.type, "type")
    wechat_name = name_of(rule.is_wechat_ecosystem, "is_wechat_ecosystem")

    def where(position: int | None) -> str:
        return "" if position is None else f"{each}[{position}]."

    def one(element: Mapping[str, Any], position: int | None, out: list[dict[str, Any]]) -> None:
        value = value_get(element)
        if value is None:
            return  # a rule whose value is null is skipped
        if type(value) is not str or not value:
            raise TransformError(f"{where(position)}{value_name}: required, a non-empty string")
        kind = type_const if type_get is None else type_get(element)
        if type(kind) is not str or not kind:
            raise TransformError(f"{where(position)}{type_name}: required, a non-empty string")
        identity: dict[str, Any] = {"identityType": kind, "identityValue": value}
        for api, get, const in optionals:
            found = const if get is None else get(element)
            if found is not None:
                identity[api] = found
        if "mpid" in identity and "isWeChatEcosystem" not in identity:
            raise TransformError(f"{where(position)}{wechat_name}: required when mpid is set")
        out.append(identity)

    if each is None:

        def apply_one(record: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
            one(record, None, out)

        return apply_one
    each_get = _getter(each)

    def apply_each(record: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        elements = each_get(record)
        if not elements:
            return
        for position, element in enumerate(elements):
            one(element, position, out)

    return apply_each


def _compile_eventargs(schema: _Schema, settings: MappingSettings) -> tuple[Getter | None, bool]:
    spec = settings.eventargs
    raw = False
    map_get: Getter | None = None
    map_conv: Converter | None = None
    if spec.map is not None:
        typ = schema.path(schema.root, spec.map, "eventargs.map")
        _require(typ, {"map"}, "eventargs.map", spec.map, "eventargs.map")
        map_get = _getter(spec.map)
        map_conv, raw = _converter(schema, typ)
    picks: list[tuple[str, Getter, Converter | None]] = []
    for name, path in spec.pick.items():
        typ = schema.path(schema.root, path, f"eventargs.pick.{name}")
        conv, inner_raw = _converter(schema, typ)
        raw = raw or inner_raw
        picks.append((name, _getter(path), conv))
    if map_get is None and not picks:
        return None, False
    if not picks:
        assert map_get is not None
        if map_conv is None:
            return map_get, raw  # the map as it is, like to_event
        whole_get, whole_conv = map_get, map_conv

        def converted_map(record: Mapping[str, Any]) -> Any:
            value = whole_get(record)
            return None if value is None else whole_conv(value)

        return converted_map, raw
    base_get, base_conv = map_get, map_conv

    def build(record: Mapping[str, Any]) -> Any:
        args: dict[str, Any] = {}
        if base_get is not None:
            base = base_get(record)
            if base:
                args.update(base if base_conv is None else base_conv(base))
        for name, get, conv in picks:
            value = get(record)
            if value is not None:
                args[name] = value if conv is None else conv(value)
        return args

    return build, raw


def compile_mapping(settings: MappingSettings, parsed_schema: Mapping[str, Any]) -> Mapper:
    """Check ``settings`` against the schema and build the per-record function.

    MappingError names the mapping key and the path that does not fit.
    """
    try:
        schema = _Schema(parsed_schema)
    except MappingError as exc:
        raise MappingError(f"mapping: {exc}") from None
    if schema.root.kind != "record":
        raise MappingError("mapping: the schema's top level must be a record")
    hints: dict[str, Any] = {}
    event_key = _compile_event_key(schema, settings.event_key, hints)
    time = _compile_time(schema, settings.time, hints)
    uuid: Getter | None = None
    if not isinstance(settings.uuid, FromPosition):
        typ = schema.path(schema.root, settings.uuid, "uuid")
        _require(typ, {"string"}, "uuid", settings.uuid, "uuid")
        uuid = _getter(settings.uuid)
        if typ.logical == "uuid":
            raw_uuid = uuid

            def uuid_text(record: Mapping[str, Any]) -> Any:
                value = raw_uuid(record)
                return None if value is None else str(value)

            uuid = uuid_text
    intid: Getter | None = None
    if isinstance(settings.intid, ConstValue):
        if type(settings.intid.const) is not str:
            raise MappingError("mapping.intid: the constant must be a str")
        constant = settings.intid.const

        def const_intid(record: Mapping[str, Any]) -> Any:
            return constant

        intid = const_intid
    elif settings.intid is not None:
        typ = schema.path(schema.root, settings.intid, "intid")
        _require(typ, _STRINGY, "intid", settings.intid, "intid")
        intid = _getter(settings.intid)
    rules = [_compile_identity(schema, rule, i) for i, rule in enumerate(settings.identities)]
    eventargs, raw = _compile_eventargs(schema, settings)
    return Mapper(
        identity_rules=rules,
        event_key=event_key,
        time=time,
        uuid=uuid,
        intid=intid,
        eventargs=eventargs,
        raw_numbers=raw,
        sample_hints=hints,
    )


def load_mapping_file(path: Path) -> MappingSettings:
    """A YAML file whose top level holds ``mapping:`` (as in config/mappings/)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return MappingSettings.model_validate(data["mapping"])


# -- a sample record built from the schema (check-config) --------------------------------


def sample_record(parsed_schema: Mapping[str, Any], hints: Mapping[str, Any]) -> dict[str, Any]:
    """A record of the schema with every optional field set, as the decoder returns it."""
    schema = _Schema(parsed_schema)
    value = _sample(schema, schema.root, "", hints, 0)
    assert isinstance(value, dict)
    return value


def _sample(schema: _Schema, typ: _Type, path: str, hints: Mapping[str, Any], depth: int) -> Any:
    if path in hints:
        return hints[path]
    name = path.rsplit(".", 1)[-1] or "value"
    logical = typ.logical
    if logical == "decimal":
        scale = int(typ.node.get("scale", 0))
        return decimal.Decimal(1234567).scaleb(-scale)
    if logical in _MILLIS:
        return 1_700_000_000_123
    if logical in _MICROS:
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


def mapper_for(settings: MappingSettings | None, parsed_schema: Mapping[str, Any]) -> Mapper:
    """The configured mapping, or the default one, compiled against the reader schema."""
    if settings is not None:
        return compile_mapping(settings, parsed_schema)
    try:
        return compile_mapping(default_mapping(), parsed_schema)
    except MappingError as exc:
        raise MappingError(
            f"{exc}\n(the config has no mapping: section, so the default mapping for "
            "schemas/user_behavior_event.avsc applies; write one for this schema)"
        ) from None
