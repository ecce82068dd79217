"""Ingest: a consume chunk becomes events and invalid records, in order, without I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.adapters.avro import DecodeError
from connector.adapters.native import MessageRun, Outcome
from connector.core.errors import Stage
from connector.core.offsets import OffsetTracker
from connector.core.records import EncodedEvent, SourceRecord
from connector.mapping.transform import TransformError
from connector.pipeline.ingest import Ingested, InvalidRecordError, ingest, ingest_runs, python_path


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


def runs_of(records: list[SourceRecord], outcomes: list[Outcome]) -> list[MessageRun]:
    """The chunk as the native path hands it over: runs of one partition."""
    runs: list[MessageRun] = []
    for record, outcome in zip(records, outcomes, strict=True):
        if not runs or (runs[-1].topic, runs[-1].partition) != (record.topic, record.partition):
            runs.append(MessageRun(record.topic, record.partition, [], [], [], [], []))
        run = runs[-1]
        if type(outcome) is not bytes:
            run.others.append(len(run.offsets))
        run.offsets.append(record.offset)
        run.timestamps.append(record.timestamp_ms)
        run.outcomes.append(outcome)
        run.messages.append(record)
    return runs


@settings(max_examples=300, deadline=None)
@given(
    chunk=st.lists(
        st.tuples(st.sampled_from([b"a", b"junk", b"unmappable", None]), st.integers(0, 2)),
        max_size=30,
    ),
    on_tombstone=st.sampled_from(["skip", "dlq", "fail"]),
)
def test_the_native_paths_runs_ingest_as_the_python_path_does(
    chunk: list[tuple[bytes | None, int]], on_tombstone: str
) -> None:
    """Whatever mix of events, invalid records and tombstones, over partitions coming
    back to back or in turns: the same events, invalid records and skips, in order."""
    next_offset = [0, 0, 0]
    records = []
    for value, partition in chunk:
        next_offset[partition] += 1 + len(records) % 2  # gaps, as compacted topics have
        records.append(SourceRecord("t", partition, next_offset[partition], None, value, 7))
    tracker = OffsetTracker()
    receipts = {
        tp: tracker.track_run(tp, [r.offset for r in records if (r.topic, r.partition) == tp])
        for tp in {(r.topic, r.partition) for r in records}
    }
    want = ingest(records, receipts, decode_many, encode, on_tombstone)
    runs = runs_of(records, python_path(records, decode_many, encode))
    got = ingest_runs(runs, receipts, on_tombstone)

    def events(ingested: Ingested) -> list[tuple[Any, ...]]:
        return [
            (e.topic, e.partition, e.offset, e.receipt, e.body, e.timestamp_ms, e.record)
            for e in ingested.events
        ]

    def invalid(ingested: Ingested) -> list[tuple[Any, ...]]:
        return [(n, e.record, e.stage, e.kind, e.may_dead_letter) for n, e in ingested.invalid]

    assert events(got) == events(want)
    assert invalid(got) == invalid(want)
    assert got.skipped == want.skipped
