"""Ingest: one consume chunk → API events and invalid records, in the chunk's order. Pure.

The hot path: per record only decoding, the mapping and what cannot be shared. The
caller tracks the chunk's offsets (one receipt per partition) before it batches or
resolves anything, so an invalid record that stops the connector leaves itself and what
follows it uncommitted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from connector.adapters.avro import DecodeError
from connector.adapters.native import TOMBSTONE, MessageRun, Outcome, Rejected
from connector.core.errors import DataError, Stage
from connector.core.offsets import Receipt
from connector.core.records import EncodedEvent, SourceRecord, TopicPartition, record_of
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


@dataclass(slots=True)
class Ingested:
    """One chunk's events in read order, and its invalid records: each with how many of
    ``events`` came before it, so the caller handles both in the chunk's order."""

    events: list[EncodedEvent]
    invalid: list[tuple[int, InvalidRecordError]]
    skipped: list[SourceRecord]  # tombstones under on_tombstone: skip (no event, done)


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
    the same order, with no SourceRecord made for a record that became an event."""
    events: list[EncodedEvent] = []
    invalid: list[tuple[int, InvalidRecordError]] = []
    skipped: list[SourceRecord] = []
    for run in runs:
        topic, partition = run.topic, run.partition
        receipt = receipts[topic, partition]
        offsets, stamps, messages = run.offsets, run.timestamps, run.messages
        bodies = cast("list[bytes]", run.outcomes)  # but at run.others
        if not run.others:  # the common case: every message is an event
            events += [
                EncodedEvent(topic, partition, offset, receipt, body, stamp, message)
                for offset, body, stamp, message in zip(
                    offsets, bodies, stamps, messages, strict=True
                )
            ]
            continue
        start = 0
        for other in [*run.others, len(offsets)]:
            events += [
                EncodedEvent(
                    topic, partition, offsets[i], receipt, bodies[i], stamps[i], messages[i]
                )
                for i in range(start, other)
            ]
            if other == len(offsets):
                break
            start = other + 1
            record = record_of(messages[other])
            error = _invalid(record, run.outcomes[other], on_tombstone)
            if error is None:
                skipped.append(record)
            else:
                invalid.append((len(events), error))
    return Ingested(events, invalid, skipped)


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
    """The chunk's events in read order, its invalid records and its skipped tombstones."""
    events: list[EncodedEvent] = []
    invalid: list[tuple[int, InvalidRecordError]] = []
    skipped: list[SourceRecord] = []
    append = events.append
    # Consume calls hand over runs of one partition: its receipt is looked up per run.
    last_tp: TopicPartition | None = None
    receipt: Receipt | None = None
    for record, outcome in zip(records, outcomes, strict=True):
        if type(outcome) is not bytes:
            error = _invalid(record, outcome, on_tombstone)
            if error is None:
                skipped.append(record)
            else:
                invalid.append((len(events), error))
            continue
        tp = (record.topic, record.partition)
        if tp != last_tp:
            last_tp, receipt = tp, receipts[tp]
        assert receipt is not None  # set with last_tp
        append(
            EncodedEvent(
                record.topic,
                record.partition,
                record.offset,
                receipt,
                outcome,
                record.timestamp_ms,
                record,
            )
        )
    return Ingested(events, invalid, skipped)
