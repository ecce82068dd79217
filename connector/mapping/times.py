"""The API's ``time``: from a path (epoch milliseconds or microseconds, or an ISO 8601
string) or the Kafka timestamp, compiled once against the reader schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from connector.config_mapping import KafkaTimestamp
from connector.mapping.schema import (
    ANY,
    EPOCH,
    MICROS,
    MILLIS,
    ONE_MS,
    MappingError,
    Schema,
    require_kind,
)
from connector.mapping.transform import TransformError


@dataclass(frozen=True, slots=True)
class TimeSource:
    """Where ``time`` comes from, as the compiler decided it (also the native plan's input):
    the Kafka timestamp, an ISO 8601 string, epoch numbers divided by ``divisor`` (1 for
    milliseconds, 1000 for microseconds), or a JSON value of either kind (``any``)."""

    kind: Literal["kafka_timestamp", "iso", "epoch", "any"]
    path: str | None = None
    divisor: int = 1


def time_source(
    schema: Schema, spec: str | KafkaTimestamp | None, hints: dict[str, Any]
) -> TimeSource | None:
    """The checked source of ``time``; MappingError when the path cannot be one."""
    if spec is None:
        return None
    if isinstance(spec, KafkaTimestamp):
        return TimeSource("kafka_timestamp")
    typ = schema.path(schema.root, spec, "time")
    require_kind(typ, {"long", "int", "string"}, "time", spec, "time")
    if typ.kind == "string":
        hints[spec] = "2023-11-14T22:13:20.123Z"
        return TimeSource("iso", spec)
    if typ.kind == ANY:
        return TimeSource("any", spec)
    if typ.logical is not None and typ.logical not in MILLIS | MICROS:
        raise MappingError(
            f"mapping.time: path {spec!r} is {typ.describe()}; time needs epoch "
            "milliseconds or microseconds (timestamp-millis, timestamp-micros, long) "
            "or an ISO 8601 string"
        )
    return TimeSource("epoch", spec, 1000 if typ.logical in MICROS else 1)


def compile_time(
    schema: Schema, spec: str | KafkaTimestamp | None, hints: dict[str, Any]
) -> Callable[[Mapping[str, Any], int | None], int | None] | None:
    source = time_source(schema, spec, hints)
    if source is None:
        return None
    if source.kind == "kafka_timestamp":

        def kafka_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            return timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else None

        return kafka_time
    path = source.path
    assert path is not None  # every other source reads a path
    get = schema.getter(path)
    if source.kind == "iso":

        def iso_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            value = get(record)
            return None if value is None else _iso_ms(value, path)

        return iso_time
    if source.kind == "any":  # JSON without a schema: epoch ms or ISO 8601, per record

        def any_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            value = get(record)
            if value is None:
                return None
            if type(value) is str:
                return _iso_ms(value, path)
            return _epoch_ms(value, path, 1)

        return any_time
    divisor = source.divisor

    def epoch_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
        value = get(record)
        return None if value is None else _epoch_ms(value, path, divisor)

    return epoch_time


def _iso_ms(value: Any, spec: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise TransformError(f"{spec}: not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    millis = (moment - EPOCH) // ONE_MS
    if millis < 0:
        raise TransformError(f"{spec}: before 1970")
    return millis


def _epoch_ms(value: Any, spec: str, divisor: int) -> int:
    if type(value) is not int or value < 0:
        raise TransformError(f"{spec}: must be epoch milliseconds (a non-negative long)")
    return value // divisor if divisor != 1 else value
