"""The API's ``time``: from a path (epoch milliseconds or microseconds, or an ISO 8601
string) or the Kafka timestamp, compiled once against the reader schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

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


def compile_time(
    schema: Schema, spec: str | KafkaTimestamp | None, hints: dict[str, Any]
) -> Callable[[Mapping[str, Any], int | None], int | None] | None:
    if spec is None:
        return None
    if isinstance(spec, KafkaTimestamp):

        def kafka_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            return timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else None

        return kafka_time
    typ = schema.path(schema.root, spec, "time")
    require_kind(typ, {"long", "int", "string"}, "time", spec, "time")
    get = schema.getter(spec)
    if typ.kind == "string":
        hints[spec] = "2023-11-14T22:13:20.123Z"

        def iso_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            value = get(record)
            return None if value is None else _iso_ms(value, spec)

        return iso_time
    if typ.kind == ANY:  # JSON without a schema: epoch ms or ISO 8601, per record

        def any_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
            value = get(record)
            if value is None:
                return None
            if type(value) is str:
                return _iso_ms(value, spec)
            return _epoch_ms(value, spec, 1)

        return any_time
    if typ.logical is not None and typ.logical not in MILLIS | MICROS:
        raise MappingError(
            f"mapping.time: path {spec!r} is {typ.describe()}; time needs epoch "
            "milliseconds or microseconds (timestamp-millis, timestamp-micros, long) "
            "or an ISO 8601 string"
        )
    divisor = 1000 if typ.logical in MICROS else 1

    def epoch_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
        value = get(record)
        return None if value is None else _epoch_ms(value, spec, divisor)

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
