"""The compiled mapping: one record → the API's event, with no schema work per record."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connector.core.records import SourceRecord
from connector.mapping.kafka_meta import CurrentMessage
from connector.mapping.schema import Getter
from connector.mapping.transform import TransformError, encode_event
from connector.mapping.values import ENCODE, MARKED_NUMBER

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
        current: CurrentMessage | None = None,
        headers: tuple[str, ...] = (),
    ) -> None:
        self._identity_rules = identity_rules
        self._event_key = event_key
        self._time = time
        self._uuid = uuid
        self._intid = intid
        self._eventargs = eventargs
        self._raw_numbers = raw_numbers
        self.sample_hints = sample_hints  # path → a value that makes a good sample
        self._current = current if current is not None else CurrentMessage()
        self.headers_used = headers  # header names the mapping reads

    @property
    def raw_numbers(self) -> bool:
        """Whether events are written by the json module (eventargs may hold a decimal,
        written as a JSON number with its own digits) instead of orjson."""
        return self._raw_numbers

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
            event["uuid"] = uuid if uuid else resolve_uuid(fallback_uuid)
        else:
            event["uuid"] = resolve_uuid(fallback_uuid)
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
        message: SourceRecord | None = None,
    ) -> bytes:
        """The event as compact UTF-8 JSON (what goes into a batch). ``message`` is the
        Kafka message ``record`` was decoded from: Kafka metadata in the mapping reads it."""
        self._current.record = message
        event = self.to_event(record, fallback_uuid, timestamp_ms)
        if not self._raw_numbers:
            return encode_event(event)
        try:
            text = ENCODE(event)
        except ValueError as exc:
            raise TransformError(f"eventargs: {exc}") from None
        return MARKED_NUMBER.sub(r"\1", text).encode("utf-8")


def resolve_uuid(fallback_uuid: str | Callable[[], str]) -> str:
    return fallback_uuid if isinstance(fallback_uuid, str) else fallback_uuid()
