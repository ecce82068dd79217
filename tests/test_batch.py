"""Batching: count, bytes and linger limits, with a fake clock."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from connector.core.batch import Batcher, body_overhead, render_body
from connector.core.records import Batch, EncodedEvent

PUBLIC = b'{"isMatching":1,"matchingType":1}'


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(offset: int, size: int = 10) -> EncodedEvent:
    body = json.dumps({"uuid": f"{offset}", "pad": "x" * size}).encode()
    return EncodedEvent("t", 0, offset, 1, body)


def batcher(clock: FakeClock, max_events: int = 500, max_bytes: int = 10_000) -> Batcher:
    return Batcher(
        max_events=max_events,
        max_bytes=max_bytes,
        linger_s=0.5,
        overhead_bytes=body_overhead(PUBLIC),
        clock=clock,
    )


def test_closes_at_max_events() -> None:
    b = batcher(FakeClock(), max_events=3)
    assert b.add(event(0)) == []
    assert b.add(event(1)) == []
    [closed] = b.add(event(2))
    assert [e.offset for e in closed.events] == [0, 1, 2]
    assert len(b) == 0


def test_closes_after_linger_and_not_before() -> None:
    clock = FakeClock()
    b = batcher(clock)
    b.add(event(0))
    clock.now += 0.3
    b.add(event(1))
    assert b.deadline() == 100.5  # from the first event, not the last
    clock.now = 100.49
    assert b.poll() is None
    clock.now = 100.5
    closed = b.poll()
    assert closed is not None
    assert len(closed.events) == 2
    assert b.poll() is None
    assert b.deadline() is None


def test_size_is_the_exact_request_body_size() -> None:
    b = batcher(FakeClock(), max_events=4)
    closed = [batch for i in range(4) for batch in b.add(event(i, size=i * 7))]
    [batch] = closed
    body = render_body(PUBLIC, batch.events)
    assert batch.size_bytes == len(body)
    parsed = json.loads(body)
    assert parsed["publicParams"] == {"isMatching": 1, "matchingType": 1}
    assert [e["uuid"] for e in parsed["data"]] == ["0", "1", "2", "3"]


def test_an_oversized_event_goes_alone_and_is_never_dropped() -> None:
    b = batcher(FakeClock(), max_bytes=1024)
    assert b.add(event(0)) == []
    closed = b.add(event(1, size=5000))
    assert [[e.offset for e in batch.events] for batch in closed] == [[0], [1]]
    assert b.flush() is None


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=300),
    max_events=st.integers(min_value=1, max_value=500),
    max_bytes=st.integers(min_value=1024, max_value=6000),
)
def test_batches_keep_every_event_in_order_within_limits(
    sizes: list[int], max_events: int, max_bytes: int
) -> None:
    b = batcher(FakeClock(), max_events=max_events, max_bytes=max_bytes)
    batches: list[Batch] = []
    for offset, size in enumerate(sizes):
        batches.extend(b.add(event(offset, size)))
    last = b.flush()
    if last is not None:
        batches.append(last)
    offsets = [e.offset for batch in batches for e in batch.events]
    assert offsets == list(range(len(sizes)))
    for batch in batches:
        assert 1 <= len(batch.events) <= max_events
        assert batch.size_bytes == len(render_body(PUBLIC, batch.events))
        assert batch.size_bytes <= max_bytes or len(batch.events) == 1
    assert len({batch.batch_id for batch in batches}) == len(batches)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=20),
    max_events=st.integers(min_value=1, max_value=50),
    max_bytes=st.integers(min_value=1024, max_value=6000),
)
def test_chunks_batch_exactly_as_events_one_by_one(
    sizes: list[int], cuts: list[int], max_events: int, max_bytes: int
) -> None:
    # The pipeline adds a consume chunk at once; how the stream is cut must not matter.
    events = [event(offset, size) for offset, size in enumerate(sizes)]
    one_by_one, chunked = (
        batcher(FakeClock(), max_events, max_bytes),
        batcher(FakeClock(), max_events, max_bytes),
    )
    expected = [batch for e in events for batch in one_by_one.add(e)]
    got: list[Batch] = []
    bounds = sorted({0, len(events), *(min(cut, len(events)) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        got.extend(chunked.add_many(events[start:end]))
    assert [(b.events, b.size_bytes) for b in got] == [(b.events, b.size_bytes) for b in expected]
    assert len(chunked) == len(one_by_one)
    tail, expected_tail = chunked.flush(), one_by_one.flush()
    assert (tail is None) == (expected_tail is None)
    if tail is not None and expected_tail is not None:
        assert (tail.events, tail.size_bytes) == (expected_tail.events, expected_tail.size_bytes)
