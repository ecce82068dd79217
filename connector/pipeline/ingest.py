"""Ingest: one consume chunk → API events and invalid records, in the chunk's order. Pure.

The hot path: per record only decoding, the mapping and what cannot be shared; events
go on as runs of one partition (columns), not one object each. The caller tracks the
chunk's offsets (one receipt per partition) before it batches or resolves anything, so
an invalid record that stops the connector leaves itself and what follows it
uncommitted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from connector.adapters.avro import DecodeError
from connector.adapters.native import TOMBSTONE, MessageRun, Outcome, Rejected
from connector.core.errors import DataError, Stage
from connector.core.offsets import Receipt
from connector.core.records import (
    EncodedEvent,
    EventRun,
    Events,
    Origin,
    SourceRecord,
    TopicPartition,
    record_of,
)
from connector.mapping.transform import TransformError

_TOMBSTONE = "a null value (tombstone) carries no event"

DecodeMany = Callable[[list[bytes | None]], Sequence[dict[str, Any] | DecodeError]]
Encode = Callable[[dict[str, Any], Callable[[], str], int | None, SourceRecord], bytes]


class InvalidRecordError(DataError):
    """A record cannot be turned into an API event. Nothing at or after it is committed."""

    def __init__(
        self,
        record: SourceRecord,
        stage: Stage,
        kind: str,
        reason: str,
        *,
        may_dead_letter: bool = True,
    ) -> None:
        super().__init__(
            f"{stage} failed for {record.topic}[{record.partition}]@{record.offset}: {reason}. "
            "The connector stops here; offsets at and after this record stay uncommitted."
        )
        self.record = record
        self.stage = stage
        self.kind = kind  # bounded: a metric label
        self.reason = reason
        # False: it stops the run even with a DLQ (source.on_tombstone: fail).
        self.may_dead_letter = may_dead_letter


Part = EventRun | InvalidRecordError


@dataclass(slots=True)
class Ingested:
    """One chunk in read order: runs of events and invalid records, as they came (the
    caller batches and handles them in that order); and its skipped tombstones."""

    parts: list[Part]
    skipped: list[SourceRecord]  # tombstones under on_tombstone: skip (no event, done)

    @property
    def events(self) -> list[EncodedEvent]:
        """Every event, as objects (tests and tools: the pipeline batches ``parts``)."""
        return [event for part in self.parts if type(part) is EventRun for event in Events((part,))]

    @property
    def invalid(self) -> list[tuple[int, InvalidRecordError]]:
        """Each invalid record, with how many events came before it."""
        out, before = [], 0
        for part in self.parts:
            if isinstance(part, InvalidRecordError):
                out.append((before, part))
            else:
                before += len(part)
        return out


def ingest(
    records: Sequence[SourceRecord],
    receipts: Mapping[TopicPartition, Receipt],
    decode_many: DecodeMany,
    encode: Encode,
    on_tombstone: str = "skip",
) -> Ingested:
    """Each record as its encoded event, or as the reason it cannot be one. A tombstone
    (a null value) is skipped, or invalid when ``on_tombstone`` is ``dlq`` or ``fail``."""
    return collect(records, receipts, python_path(records, decode_many, encode), on_tombstone)


def ingest_runs(
    runs: Sequence[MessageRun],
    receipts: Mapping[TopicPartition, Receipt],
    on_tombstone: str = "skip",
) -> Ingested:
    """:func:`ingest` of the native path's runs (connector/adapters/native.py's
    ``NativeChunk.messages``): the same events, invalid records and skipped tombstones, in
    the same order. A run of nothing but events is handed on as it is, its columns
    untouched; no SourceRecord is made for a record that became an event."""
    parts: list[Part] = []
    skipped: list[SourceRecord] = []
    for run in runs:
        topic, partition = run.topic, run.partition
        receipt = receipts[topic, partition]
        origins = cast("list[Origin]", run.messages)
        whole = EventRun(
            topic,
            partition,
            receipt,
            run.offsets,
            cast("list[bytes]", run.outcomes),  # but at run.others
            run.timestamps,
            origins,
        )
        start = 0
        for other in run.others:
            if other > start:
                parts.append(whole.cut(start, other))
            record = record_of(run.messages[other])
            error = _invalid(record, run.outcomes[other], on_tombstone)
            if error is None:
                skipped.append(record)
            else:
                parts.append(error)
            start = other + 1
        if start < len(whole):
            parts.append(whole.cut(start, len(whole)))  # the whole run, when no others
    return Ingested(parts, skipped)


def _invalid(
    record: SourceRecord, outcome: Outcome, on_tombstone: str
) -> InvalidRecordError | None:
    """What a message that is no event is: None for a tombstone to skip, else the error."""
    if outcome is TOMBSTONE:
        if on_tombstone == "skip":
            return None
        return InvalidRecordError(
            record, Stage.DECODE, "tombstone", _TOMBSTONE, may_dead_letter=on_tombstone == "dlq"
        )
    assert isinstance(outcome, Rejected)
    return InvalidRecordError(record, outcome.stage, outcome.kind, outcome.reason)


def python_path(
    records: Sequence[SourceRecord], decode_many: DecodeMany, encode: Encode
) -> list[Outcome]:
    """The reference: decode the chunk, then map each record (the fallback uuid is made
    only for a record that has no uuid of its own)."""
    outcomes: list[Outcome] = []
    append = outcomes.append
    decoded_all = decode_many([record.value for record in records])
    for record, decoded in zip(records, decoded_all, strict=True):
        if type(decoded) is not dict:
            if record.value is None:
                append(TOMBSTONE)
            else:
                append(Rejected(Stage.DECODE, "undecodable", str(decoded)))
            continue
        try:
            append(encode(decoded, record.fallback_uuid, record.timestamp_ms, record))
        except TransformError as exc:
            append(Rejected(Stage.TRANSFORM, "unmappable", str(exc)))
    return outcomes


def collect(
    records: Sequence[SourceRecord],
    receipts: Mapping[TopicPartition, Receipt],
    outcomes: Sequence[Outcome],
    on_tombstone: str,
) -> Ingested:
    """The chunk's runs of events and invalid records in read order, and its skipped
    tombstones."""
    parts: list[Part] = []
    skipped: list[SourceRecord] = []
    run: EventRun | None = None
    for record, outcome in zip(records, outcomes, strict=True):
        if type(outcome) is not bytes:
            error = _invalid(record, outcome, on_tombstone)
            if error is None:
                skipped.append(record)
            else:
                parts.append(error)
                run = None  # what follows it starts a run of its own
            continue
        # Consume calls hand over runs of one partition: a run per partition change.
        if run is None or run.partition != record.partition or run.topic != record.topic:
            tp = (record.topic, record.partition)
            run = EventRun(record.topic, record.partition, receipts[tp], [], [], [], [])
            parts.append(run)
        run.offsets.append(record.offset)
        run.bodies.append(outcome)
        run.timestamps.append(record.timestamp_ms)
        run.records.append(record)
    return Ingested(parts, skipped)
