"""The API's ``time``: from a path (epoch milliseconds or microseconds, or an ISO 8601
string) or the Kafka timestamp, compiled once against the reader schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from connector.config_mapping import KafkaTimestamp
from connector.mapping.schema import (
    EPOCH,
    MICROS,
    MILLIS,
    ONE_MS,
    MappingError,
    Schema,
    getter,
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
    get = getter(spec)
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
            millis = (moment - EPOCH) // ONE_MS
            if millis < 0:
                raise TransformError(f"{spec}: before 1970")
            return millis

        return iso_time
    if typ.logical is not None and typ.logical not in MILLIS | MICROS:
        raise MappingError(
            f"mapping.time: path {spec!r} is {typ.describe()}; time needs epoch "
            "milliseconds or microseconds (timestamp-millis, timestamp-micros, long) "
            "or an ISO 8601 string"
        )
    divisor = 1000 if typ.logical in MICROS else 1
    message = f"{spec}: must be epoch milliseconds (a non-negative long)"

    def epoch_time(record: Mapping[str, Any], timestamp_ms: int | None) -> int | None:
        value = get(record)
        if value is None:
            return None
        if type(value) is not int or value < 0:
            raise TransformError(message)
        return value // divisor if divisor != 1 else value

    return epoch_time
