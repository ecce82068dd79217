"""Small values passed between the stages; treat them as immutable.

Events travel as :class:`EventRun`s, aligned columns of one partition's consecutive
events, and a batch holds slices of runs (:class:`Events`): no object is made per event
on the way from the consumer to the request body, since each costs real money at tens
of thousands of records a second. An :class:`EncodedEvent` is made only where one event
is looked at on its own (a refused event, a dead letter). SourceRecord is a plain slotted
dataclass: a frozen one costs five times as much to create.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

TopicPartition = tuple[str, int]


class Resolver(Protocol):
    """What resolves an event's offset once it is done: the tracker's Receipt
    (connector.core.offsets). A protocol here, so records need not import the tracker."""

    @property
    def tp(self) -> TopicPartition: ...

    def resolve(self, offsets: Iterable[int]) -> None: ...


def fallback_uuid(topic: str, partition: int, offset: int) -> str:
    """A stable id for a record without one, from where it sits in Kafka."""
    return f"{topic}-{partition}-{offset}"


@dataclass(slots=True)
class SourceRecord:
    """One Kafka message as the source hands it on."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def fallback_uuid(self) -> str:
        """The uuid of an event without event_id: kept through a replay, else from the
        record's position (the same message always gets the same id)."""
        for name, value in self.headers:
            if name == UUID_HEADER and value:
                return value.decode("utf-8", "replace")
        return fallback_uuid(self.topic, self.partition, self.offset)


class KafkaMessage(Protocol):
    """A message as the consumer hands it over (confluent_kafka's ``Message``). The
    native path reads it directly, so no SourceRecord is made for a record that becomes an
    event; :func:`record_of` makes one when it is needed (the dead-letter topic, an
    invalid record)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> Sequence[tuple[str, bytes | None]] | None: ...


def record_of(origin: SourceRecord | KafkaMessage) -> SourceRecord:
    """The SourceRecord of a consumed message (itself, when it already is one)."""
    return origin if isinstance(origin, SourceRecord) else message_record(origin)


def message_record(message: KafkaMessage) -> SourceRecord:
    """The SourceRecord of one of the consumer's own messages (one without an error)."""
    timestamp_type, timestamp = message.timestamp()
    headers = message.headers()
    return SourceRecord(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        message.key(),
        message.value(),
        timestamp if timestamp_type else None,  # 0: TIMESTAMP_NOT_AVAILABLE
        tuple(headers) if headers else (),
    )


# Set by `event-sink replay-dlq` on a re-injected record whose uuid was derived from its
# original position, so the replayed event keeps that uuid.
UUID_HEADER = "event-sink.uuid"


@dataclass(slots=True)
class EncodedEvent:
    """One API event, already JSON-encoded, and where it came from."""

    topic: str
    partition: int
    offset: int
    receipt: Resolver  # resolves this event's offset in the tracker once it is done
    body: bytes
    timestamp_ms: int | None = None  # the Kafka record's timestamp, for end-to-end latency
    # The original message, for the dead-letter topic (record_of gives its SourceRecord).
    record: SourceRecord | KafkaMessage | None = None


Origin = SourceRecord | KafkaMessage | None


@dataclass(slots=True)
class EventRun:
    """Consecutive encoded events of one partition (one assignment: one receipt), as
    aligned columns: ``offsets[i]``, ``bodies[i]``, ``timestamps[i]`` and ``records[i]``
    are one event's (what :class:`EncodedEvent` holds)."""

    topic: str
    partition: int
    receipt: Resolver
    offsets: list[int]
    bodies: list[bytes]
    timestamps: list[int | None]
    records: list[Origin]

    def __len__(self) -> int:
        return len(self.offsets)

    def event(self, index: int) -> EncodedEvent:
        return EncodedEvent(
            self.topic,
            self.partition,
            self.offsets[index],
            self.receipt,
            self.bodies[index],
            self.timestamps[index],
            self.records[index],
        )

    def cut(self, start: int, stop: int) -> EventRun:
        """The events ``start:stop`` (list slices: pointer copies, no per-event work)."""
        if start == 0 and stop >= len(self.offsets):
            return self
        return EventRun(
            self.topic,
            self.partition,
            self.receipt,
            self.offsets[start:stop],
            self.bodies[start:stop],
            self.timestamps[start:stop],
            self.records[start:stop],
        )

    @classmethod
    def of(cls, events: Iterable[EncodedEvent]) -> list[EventRun]:
        """Events grouped into runs of one partition and receipt, in order."""
        runs: list[EventRun] = []
        for (topic, partition, receipt), group in itertools.groupby(
            events, lambda event: (event.topic, event.partition, event.receipt)
        ):
            grouped = list(group)
            runs.append(
                EventRun(
                    topic,
                    partition,
                    receipt,
                    [event.offset for event in grouped],
                    [event.body for event in grouped],
                    [event.timestamp_ms for event in grouped],
                    [event.record for event in grouped],
                )
            )
        return runs


class Events(Sequence[EncodedEvent]):
    """A batch's events, in consume order, as slices of runs. Indexing makes an
    :class:`EncodedEvent`; slicing gives Events (the sink's bisection); ``runs`` and
    :meth:`bodies` are what the hot path reads."""

    __slots__ = ("_starts", "runs")

    def __init__(self, runs: Iterable[EventRun]) -> None:
        self.runs = tuple(run for run in runs if len(run))
        # _starts[k]: the index of run k's first event; the last entry is the length.
        self._starts = list(itertools.accumulate(map(len, self.runs), initial=0))

    @classmethod
    def of(cls, events: Iterable[EncodedEvent]) -> Events:
        return cls(EventRun.of(events))

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, index: int) -> EncodedEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Events: ...
    def __getitem__(self, index: int | slice) -> EncodedEvent | Events:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("Events slices take a step of 1")
            return Events(self._cut(start, stop))
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"event {index} of {len(self)}")
        run = bisect.bisect_right(self._starts, position) - 1
        return self.runs[run].event(position - self._starts[run])

    def _cut(self, start: int, stop: int) -> Iterator[EventRun]:
        for run, first in zip(self.runs, self._starts, strict=False):
            low, high = max(start - first, 0), min(stop - first, len(run))
            if low < high:
                yield run.cut(low, high)

    def __iter__(self) -> Iterator[EncodedEvent]:
        for run in self.runs:
            yield from map(run.event, range(len(run)))

    def bodies(self) -> Iterator[bytes]:
        """Every event's encoded JSON, in order."""
        return itertools.chain.from_iterable(run.bodies for run in self.runs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Events):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal by content, and not immutable

    def __repr__(self) -> str:
        return f"Events({len(self)} in {len(self.runs)} runs)"


@dataclass(frozen=True, slots=True)
class Batch:
    """Events that go out in one request, in the order they were consumed."""

    batch_id: int
    events: Events
    size_bytes: int  # the exact size of the request body
