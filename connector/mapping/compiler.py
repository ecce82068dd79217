"""``compile_mapping``: the config's ``mapping:`` checked against the reader schema and
compiled, once at start-up, into a :class:`Mapper`; every path must exist (through records
and nullable unions) and have a type the API field can use, or MappingError names it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connector.config_mapping import (
    ConstValue,
    FromPosition,
    IdentityRule,
    KafkaValue,
    LookupValue,
    MappingSettings,
)
from connector.mapping.default import default_mapping
from connector.mapping.kafka_meta import CurrentMessage, describe, meta_getter, meta_type
from connector.mapping.mapper import Mapper
from connector.mapping.schema import (
    ANY,
    STRINGY,
    AnySchema,
    Converter,
    Getter,
    MappingError,
    Schema,
    SchemaType,
    checked,
    getter,
    is_any,
    json_type,
    require_kind,
)
from connector.mapping.times import compile_time
from connector.mapping.transform import TransformError
from connector.mapping.values import converter_for


def _field(
    schema: Schema,
    start: SchemaType,
    spec: str | KafkaValue,
    key: str,
    allowed: set[str],
    what: str,
    current: CurrentMessage,
) -> tuple[Getter, SchemaType]:
    """(getter, type) of a path, or of Kafka metadata, checked against ``allowed``."""
    if isinstance(spec, KafkaValue):
        typ = meta_type(spec)
        if typ.kind not in allowed:
            raise MappingError(
                f"mapping.{key}: {describe(spec)} is {typ.describe()}; {what} needs "
                + " or ".join(sorted(allowed))
            )
        return meta_getter(spec, current), typ
    typ = schema.path(start, spec, key)
    require_kind(typ, allowed, key, spec, what)
    if typ.kind == ANY:
        return checked(schema.getter(spec), spec, allowed), typ
    return getter(spec), typ


def _value_spec(
    schema: Schema,
    start: SchemaType,
    spec: str | ConstValue | KafkaValue | None,
    key: str,
    allowed: set[str],
    what: str,
    const_type: type,
    current: CurrentMessage,
) -> tuple[Getter | None, Any, SchemaType | None]:
    """(getter, constant, type) of a path-, metadata- or constant spec."""
    if spec is None:
        return None, None, None
    if isinstance(spec, ConstValue):
        if type(spec.const) is not const_type:
            raise MappingError(f"mapping.{key}: the constant must be a {const_type.__name__}")
        return None, spec.const, None
    get, typ = _field(schema, start, spec, key, allowed, what, current)
    return get, None, typ


def _compile_event_key(
    schema: Schema,
    spec: str | ConstValue | LookupValue | KafkaValue,
    hints: dict[str, Any],
    current: CurrentMessage,
) -> Callable[[Mapping[str, Any]], str]:
    if isinstance(spec, ConstValue):
        if type(spec.const) is not str:
            raise MappingError("mapping.event_key: the constant must be a str")
        constant = spec.const

        def const_key(record: Mapping[str, Any]) -> str:
            return constant

        return const_key
    if isinstance(spec, (str, KafkaValue)):
        get, _ = _field(schema, schema.root, spec, "event_key", STRINGY, "eventKey", current)
        label = spec if isinstance(spec, str) else describe(spec)
        message = f"{label}: required, a non-empty string"

        def path_key(record: Mapping[str, Any]) -> str:
            value = get(record)
            if type(value) is not str or not value:
                raise TransformError(message)
            return value

        return path_key
    field = spec.field
    path = field if isinstance(field, str) else describe(field)
    kinds = STRINGY | {"int", "long", "boolean"}
    get, typ = _field(schema, schema.root, field, "event_key", kinds, "a lookup", current)
    key_type: type = {"int": int, "long": int, "boolean": bool}.get(typ.kind, str)
    for value in spec.lookup:
        if type(value) is not key_type and typ.kind != ANY:  # no schema: keys of any type
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
    if isinstance(field, str):
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


def _compile_identity(
    schema: Schema, rule: IdentityRule, index: int, current: CurrentMessage
) -> Callable[[Mapping[str, Any], list[dict[str, Any]]], None]:
    key = f"identities[{index}]"
    start = schema.root
    each = rule.each
    if each is not None:
        typ = schema.path(schema.root, each, f"{key}.each")
        require_kind(typ, {"array"}, f"{key}.each", each, "each")
        start = schema.root if typ.kind == ANY else schema.resolve(typ.node["items"])
        if start.kind != "record":
            raise MappingError(
                f"mapping.{key}.each: path {each!r} is an array whose items are "
                f"{start.describe()}; each needs an array of records"
            )
    value_get, _, _ = _value_spec(
        schema, start, rule.value, f"{key}.value", STRINGY, "identityValue", str, current
    )
    assert value_get is not None
    type_get, type_const, _ = _value_spec(
        schema, start, rule.type, f"{key}.type", STRINGY, "identityType", str, current
    )
    optionals: list[tuple[str, Getter | None, Any]] = []
    for api, spec, allowed, const_type in (
        ("platform", rule.platform, STRINGY, str),
        ("mpid", rule.mpid, STRINGY, str),
        ("isWeChatEcosystem", rule.is_wechat_ecosystem, {"boolean"}, bool),
    ):
        name = {"isWeChatEcosystem": "is_wechat_ecosystem"}.get(api, api)
        get, const, _ = _value_spec(
            schema, start, spec, f"{key}.{name}", allowed, api, const_type, current
        )
        if get is not None or const is not None:
            optionals.append((api, get, const))
    if rule.mpid is not None and rule.is_wechat_ecosystem is None:
        raise MappingError(
            f"mapping.{key}.is_wechat_ecosystem: required when mpid is mapped "
            "(the API needs isWeChatEcosystem whenever mpid is sent)"
        )

    def name_of(spec: str | ConstValue | KafkaValue | None, fallback: str) -> str:
        if isinstance(spec, KafkaValue):
            return describe(spec)
        return spec if isinstance(spec, str) else fallback

    value_name = name_of(rule.value, "value")
    typed = schema.typed
    type_name = name_of(rule.type, "type")
    wechat_name = name_of(rule.is_wechat_ecosystem, "is_wechat_ecosystem")

    def where(position: int | None) -> str:
        return "" if position is None else f"{each}[{position}]."

    def one(element: Mapping[str, Any], position: int | None, out: list[dict[str, Any]]) -> None:
        value = value_get(element)
        if value is None:
            if not typed:  # no schema says it may be null: the API needs it
                raise TransformError(f"{where(position)}{value_name}: required, missing")
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
    each_get = getter(each) if schema.typed else checked(schema.getter(each), each, {"array"})

    def apply_each(record: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        elements = each_get(record)
        if not elements:
            return
        for position, element in enumerate(elements):
            if element is None:  # a null item (items of a nullable record): no identity
                continue
            if type(element) is not dict:  # JSON without a schema: checked here
                raise TransformError(
                    f"{each}[{position}]: {json_type(element)} where an object is needed"
                )
            one(element, position, out)

    return apply_each


def _compile_eventargs(
    schema: Schema, settings: MappingSettings, current: CurrentMessage
) -> tuple[Getter | None, bool]:
    spec = settings.eventargs
    raw = False
    map_get: Getter | None = None
    map_conv: Converter | None = None
    if spec.map is not None:
        typ = schema.path(schema.root, spec.map, "eventargs.map")
        require_kind(typ, {"map"}, "eventargs.map", spec.map, "eventargs.map")
        if typ.kind == ANY:
            map_get = checked(schema.getter(spec.map), spec.map, {"map"})
        else:
            map_get = getter(spec.map)
            map_conv, raw = converter_for(schema, typ)
    picks: list[tuple[str, Getter, Converter | None]] = []
    for name, path in spec.pick.items():
        if isinstance(path, KafkaValue):
            picks.append((name, meta_getter(path, current), None))
            continue
        if not schema.typed:  # JSON values go out as they are
            picks.append((name, schema.getter(path), None))
            continue
        typ = schema.path(schema.root, path, f"eventargs.pick.{name}")
        conv, inner_raw = converter_for(schema, typ)
        raw = raw or inner_raw
        picks.append((name, getter(path), conv))
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
        schema = AnySchema() if is_any(parsed_schema) else Schema(parsed_schema)
    except MappingError as exc:
        raise MappingError(f"mapping: {exc}") from None
    if schema.root.kind != "record":
        raise MappingError("mapping: the schema's top level must be a record")
    hints: dict[str, Any] = {}
    current = CurrentMessage()
    event_key = _compile_event_key(schema, settings.event_key, hints, current)
    time = compile_time(schema, settings.time, hints)
    uuid: Getter | None = None
    if isinstance(settings.uuid, KafkaValue):
        uuid, _ = _field(schema, schema.root, settings.uuid, "uuid", {"string"}, "uuid", current)
    elif not isinstance(settings.uuid, FromPosition):
        uuid, typ = _field(schema, schema.root, settings.uuid, "uuid", {"string"}, "uuid", current)
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
        intid, _ = _field(schema, schema.root, settings.intid, "intid", STRINGY, "intid", current)
    rules = [
        _compile_identity(schema, rule, i, current) for i, rule in enumerate(settings.identities)
    ]
    eventargs, raw = _compile_eventargs(schema, settings, current)
    return Mapper(
        identity_rules=rules,
        event_key=event_key,
        time=time,
        uuid=uuid,
        intid=intid,
        eventargs=eventargs,
        raw_numbers=raw,
        sample_hints=hints,
        current=current,
        headers=_headers_used(settings),
    )


def _headers_used(settings: MappingSettings) -> tuple[str, ...]:
    """Header names the mapping reads (check-config's sample message carries them)."""
    specs: list[Any] = [settings.event_key, settings.uuid, settings.intid]
    specs += list(settings.eventargs.pick.values())
    for rule in settings.identities:
        specs += [rule.value, rule.type, rule.platform, rule.mpid]
    if isinstance(settings.event_key, LookupValue):
        specs.append(settings.event_key.field)
    names = [s.name for s in specs if isinstance(s, KafkaValue) and s.name is not None]
    return tuple(dict.fromkeys(names))


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
