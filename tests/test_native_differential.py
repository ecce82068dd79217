"""The native path against the Python path, the reference, as the pipeline runs it
(``ingest`` with ``AvroDecoder.decode_many`` and ``Mapper.encode``): on hypothesis-generated
records of every shipped schema under every shipped mapping (and of a schema and mappings
with every construct), with any Kafka metadata, and on corrupted, truncated and random
bytes.

The rule under test: each message gets the same outcome on both paths. An event is equal
as parsed JSON (numbers compared exactly, as decimals); an invalid record has the same
stage and kind (and, since the extension defers those to the reference, the same reason);
a tombstone stays a tombstone. And a record the reference turns into an event is mapped
natively, never deferred: the native path is not the Python path in disguise.

The counts of what was checked are printed at the end (``-s`` shows them).
"""

from __future__ import annotations

import decimal
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from avro_strategies import records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_strategies import (
    MAPPINGS,
    SCHEMAS,
    as_message,
    encode,
    mappable_records,
    metadata,
    mutated,
    require_extension,
)

from connector.adapters.avro import AvroDecoder
from connector.adapters.native import (
    TOMBSTONE,
    Fallback,
    NativeChunk,
    Outcome,
    Rejected,
    columns,
    native_chunk_for,
)
from connector.core.offsets import OffsetTracker
from connector.core.records import SourceRecord
from connector.mapping import Mapper, mapper_for
from connector.pipeline.ingest import ingest

COUNTS: Counter[str] = Counter()
SEEN: dict[str, set[str]] = {"schemas": set(), "mappings": set()}


@pytest.fixture(scope="module", autouse=True)
def _extension() -> None:
    require_extension()


_CHUNKS: dict[str, NativeChunk] = {}


def chunk_of(mapping: str) -> NativeChunk:
    if mapping not in _CHUNKS:
        schema_name, settings_ = MAPPINGS[mapping]
        chunk = native_chunk_for(SCHEMAS[schema_name], settings_)
        assert not isinstance(chunk, Fallback), chunk.reason
        _CHUNKS[mapping] = chunk
    return _CHUNKS[mapping]


_PYTHON: dict[str, tuple[AvroDecoder, Mapper]] = {}


def reference(mapping: str, messages: list[SourceRecord]) -> list[Outcome]:
    """Each message's outcome on the Python path, through the pipeline's own ingest."""
    if mapping not in _PYTHON:
        schema_name, settings_ = MAPPINGS[mapping]
        schema = SCHEMAS[schema_name]
        _PYTHON[mapping] = AvroDecoder(schema), mapper_for(settings_, schema)
    decoder, mapper = _PYTHON[mapping]
    tracker = OffsetTracker()
    receipts = {}
    for message in messages:
        tp = (message.topic, message.partition)
        if tp not in receipts:
            offsets = [m.offset for m in messages if (m.topic, m.partition) == tp]
            receipts[tp] = tracker.track_run(tp, offsets)
    got = ingest(messages, receipts, decoder.decode_many, mapper.encode)
    by_offset: dict[int, Outcome] = {event.offset: event.body for event in got.events}
    for _, error in got.invalid:
        by_offset[error.record.offset] = Rejected(error.stage, error.kind, error.reason)
    for skipped in got.skipped:
        by_offset[skipped.offset] = TOMBSTONE
    return [by_offset[m.offset] for m in messages]


def parsed(body: bytes) -> Any:
    # Decimals: numbers compare exactly (a decimal's digits, a double's shortest form).
    return json.loads(body, parse_float=decimal.Decimal)


def check(mapping: str, messages: list[SourceRecord], what: str) -> None:
    chunk = chunk_of(mapping)
    SEEN["mappings"].add(mapping)
    SEEN["schemas"].add(MAPPINGS[mapping][0])
    expected = reference(mapping, messages)
    raw = chunk.plan.run(*columns(messages))
    got = chunk(messages)
    # The pipeline's own form: the consumer's messages, in runs of one partition.
    runs, errors = chunk.messages([as_message(m) for m in messages])
    assert errors == []
    assert [o for run in runs for o in run.offsets] == [m.offset for m in messages]
    assert [(run.topic, run.partition, o) for run in runs for o in run.offsets] == [
        (m.topic, m.partition, m.offset) for m in messages
    ]
    assert [t for run in runs for t in run.timestamps] == [m.timestamp_ms for m in messages]
    assert [o for run in runs for o in run.outcomes] == got
    for message, want, have, native in zip(messages, expected, got, raw, strict=True):
        COUNTS[what] += 1
        if isinstance(want, bytes):
            assert isinstance(have, bytes), (message, want, have)
            assert parsed(have) == parsed(want), (message, want, have)
            if what == "records":
                # A record the reference maps is mapped natively, not deferred.
                assert type(native) is bytes, (message, native)
            COUNTS[f"{what}: events"] += 1
            COUNTS[f"{what}: events byte-equal"] += have == want
            COUNTS[f"{what}: mapped natively"] += type(native) is bytes
        else:
            assert have == want, (message, want, have)
            COUNTS[f"{what}: invalid or tombstone"] += 1


@st.composite
def chunks(draw: st.DrawFn, mapping: str, corrupt: bool) -> list[SourceRecord]:
    schema = SCHEMAS[MAPPINGS[mapping][0]]
    out: list[SourceRecord] = []
    for offset in range(draw(st.integers(1, 10))):
        strategy = st.one_of(records(schema), mappable_records(schema), mappable_records(schema))
        value: bytes | None = encode(schema, draw(strategy))
        if corrupt:
            value = draw(mutated(value))
        elif draw(st.integers(0, 20)) == 0:
            value = None  # a tombstone now and then
        out.append(draw(metadata(value, offset)))
    return out


@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_records_give_the_same_events(mapping: str, data: st.DataObject) -> None:
    check(mapping, data.draw(chunks(mapping, corrupt=False)), "records")


@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_records_get_the_same_verdict(mapping: str, data: st.DataObject) -> None:
    check(mapping, data.draw(chunks(mapping, corrupt=True)), "corrupt inputs")


@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.binary(max_size=48), min_size=1, max_size=4))
def test_random_bytes_get_the_same_verdict(mapping: str, values: list[bytes]) -> None:
    messages = [SourceRecord("t", 0, i, None, v, None) for i, v in enumerate(values)]
    check(mapping, messages, "random inputs")


def _every_prefix(value: bytes) -> Iterator[bytes]:
    for end in range(len(value)):
        yield value[:end]


@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_truncation_of_a_record_gets_the_same_verdict(
    mapping: str, data: st.DataObject
) -> None:
    schema = SCHEMAS[MAPPINGS[mapping][0]]
    sample = data.draw(records(schema))
    prefixes = list(_every_prefix(encode(schema, sample)))
    messages = [SourceRecord("t", 0, i, None, v, None) for i, v in enumerate(prefixes)]
    check(mapping, messages, "corrupt inputs")


def test_zz_the_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last (file order): prints what the differential test checked."""
    assert SEEN["mappings"] == set(MAPPINGS)
    assert SEEN["schemas"] == set(SCHEMAS)
    assert COUNTS["records: events"] > 0
    assert COUNTS["records: mapped natively"] == COUNTS["records: events"]
    with capsys.disabled():
        print(
            f"\nnative differential: {len(SEEN['schemas'])} schemas, "
            f"{len(SEEN['mappings'])} mappings; "
            + ", ".join(f"{key} {count}" for key, count in sorted(COUNTS.items()))
        )
