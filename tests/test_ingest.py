"""Ingest: a consume chunk becomes events and invalid records, in order, without I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.adapters.avro import DecodeError
from connector.core.errors import Stage
from connector.core.offsets import OffsetTracker
from connector.core.records import EncodedEvent, SourceRecord
from connector.mapping.transform import TransformError
from connector.pipeline.ingest import InvalidRecordError, ingest


def decode_many(values: list[bytes | None]) -> list[dict[str, Any] | DecodeError]:
    return [DecodeError("not Avro") if v == b"junk" else {"v": v} for v in values]


def encode(
    record: dict[str, Any],
    fallback: Callable[[], str],
    timestamp_ms: int | None,
    message: SourceRecord,
) -> bytes:
    assert message.value == record["v"]  # the mapping sees the message it came from
    if record["v"] == b"unmappable":
        raise TransformError("identities: at least one")
    return b'{"uuid":"' + fallback().encode() + b'"}'


def test_a_chunk_keeps_its_order_and_names_why_a_record_is_invalid() -> None:
    values = [b"a", b"junk", b"b", b"unmappable", b"c"]
    records = [SourceRecord("t", 0, 10 + i, None, v, 1000 + i) for i, v in enumerate(values)]
    tracker = OffsetTracker()
    receipts = {("t", 0): tracker.track_run(("t", 0), [r.offset for r in records])}
    got = ingest(records, receipts, decode_many, encode)
    # Three events, and each invalid record placed after the events read before it.
    assert [event.offset for event in got.events] == [10, 12, 14]
    assert [(before, error.record.offset) for before, error in got.invalid] == [(1, 11), (2, 13)]
    first = got.events[0]
    (_, bad_bytes), (_, bad_map) = got.invalid
    assert isinstance(first, EncodedEvent)
    assert first.body == b'{"uuid":"t-0-10"}'  # the position-derived uuid
    assert first.receipt is receipts["t", 0]
    assert isinstance(bad_bytes, InvalidRecordError)
    assert (bad_bytes.stage, bad_bytes.kind, bad_bytes.record.offset) == (
        Stage.DECODE,
        "undecodable",
        11,
    )
    assert isinstance(bad_map, InvalidRecordError)
    assert (bad_map.stage, bad_map.kind) == (Stage.TRANSFORM, "unmappable")
    assert "identities" in bad_map.reason
    assert tracker.pending == 5  # ingest resolves nothing: delivery does


def test_a_tombstone_is_skipped_by_default_or_invalid_in_its_place() -> None:
    values: list[bytes | None] = [b"a", None, b"b"]
    records = [SourceRecord("t", 0, 10 + i, None, v, 1000 + i) for i, v in enumerate(values)]

    def decode_none(vals: list[bytes | None]) -> list[dict[str, Any] | DecodeError]:
        return [DecodeError("empty") if v is None else {"v": v} for v in vals]

    tracker = OffsetTracker()
    receipts = {("t", 0): tracker.track_run(("t", 0), [r.offset for r in records])}
    skipped = ingest(records, receipts, decode_none, encode)
    assert [e.offset for e in skipped.events] == [10, 12]
    assert [r.offset for r in skipped.skipped] == [11]
    assert skipped.invalid == []
    for policy in ("dlq", "fail"):
        got = ingest(records, receipts, decode_none, encode, policy)
        assert got.skipped == []
        ((before, error),) = got.invalid
        assert (before, error.record.offset, error.kind, error.stage) == (
            1,
            11,
            "tombstone",
            Stage.DECODE,
        )
        assert error.may_dead_letter is (policy == "dlq")
