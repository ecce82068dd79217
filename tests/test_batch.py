"""Batching: count, bytes and linger limits, with a fake clock."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.batch import Batcher, PartitionedBatcher, body_overhead, render_body
from connector.core.records import Batch, EncodedEvent, EventRun, Events

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


@given(runs=st.lists(st.lists(st.integers(min_value=0, max_value=40), max_size=6), max_size=4))
def test_the_body_holds_every_event_of_every_run_in_order_and_leaves_them_as_they_were(
    runs: list[list[int]],
) -> None:
    offsets = itertools.count()
    events = Events(
        EventRun.of([event(next(offsets), size) for size in sizes])[0]
        if sizes
        else EventRun("t", 0, 1, [], [], [], [])
        for sizes in runs
    )
    bodies_before = [e.body for e in events]
    body = render_body(PUBLIC, events)
    assert body == render_body(PUBLIC, events)  # the events' own bodies are not changed
    assert [e.body for e in events] == bodies_before
    parsed = json.loads(body)
    assert parsed["publicParams"] == {"isMatching": 1, "matchingType": 1}
    assert parsed["data"] == [json.loads(b) for b in bodies_before]
    assert len(body) == body_overhead(PUBLIC) + sum(len(b) + 1 for b in bodies_before) - (
        1 if bodies_before else 0
    )


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


def tp_event(partition: int, offset: int, size: int = 10) -> EncodedEvent:
    body = json.dumps({"uuid": f"{partition}-{offset}", "pad": "x" * size}).encode()
    return EncodedEvent("t", partition, offset, 1, body)


@given(
    stream=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 800)), min_size=1, max_size=300),
    max_events=st.integers(min_value=1, max_value=40),
    chunk=st.integers(min_value=1, max_value=50),
)
def test_partitioned_batches_hold_one_partition_each_in_order(
    stream: list[tuple[int, int]], max_events: int, chunk: int
) -> None:
    # delivery.ordering: partition — no request mixes partitions; within a partition the
    # batches hold its events in read order, every event exactly once.
    clock = FakeClock()
    b = PartitionedBatcher(
        lambda ids: Batcher(
            max_events=max_events,
            max_bytes=4000,
            linger_s=0.5,
            overhead_bytes=body_overhead(PUBLIC),
            clock=clock,
            ids=ids,
        )
    )
    next_offset = [0, 0, 0, 0]
    events = []
    for partition, size in stream:
        events.append(tp_event(partition, next_offset[partition], size))
        next_offset[partition] += 1
    batches: list[Batch] = []
    for start in range(0, len(events), chunk):
        batches += b.add_many(events[start : start + chunk])
    clock.now += 1.0
    while (batch := b.poll()) is not None:
        batches.append(batch)
    assert b.flush() is None
    per_partition: dict[int, list[int]] = {}
    for batch in batches:
        assert len({e.partition for e in batch.events}) == 1
        assert 1 <= len(batch.events) <= max_events
        assert batch.size_bytes == len(render_body(PUBLIC, batch.events))
        for e in batch.events:
            per_partition.setdefault(e.partition, []).append(e.offset)
    assert per_partition == {p: list(range(n)) for p, n in enumerate(next_offset) if n}
    assert len({batch.batch_id for batch in batches}) == len(batches)


class ModelBatcher:
    """The batching rules, event by event, written plainly: what Batcher's arithmetic on
    runs must reproduce."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events, self.max_bytes = max_events, max_bytes
        self.open: list[EncodedEvent] = []
        self.size = body_overhead(PUBLIC)

    def add(self, event: EncodedEvent) -> list[tuple[list[int], int]]:
        closed = []
        if self.open and self.size + 1 + len(event.body) > self.max_bytes:
            closed.append(self.close())
        self.size += len(event.body) + (1 if self.open else 0)
        self.open.append(event)
        if len(self.open) >= self.max_events or self.size >= self.max_bytes:
            closed.append(self.close())
        return closed

    def close(self) -> tuple[list[int], int]:
        done = ([e.offset for e in self.open], self.size)
        self.open, self.size = [], body_overhead(PUBLIC)
        return done


@given(
    runs=st.lists(
        st.lists(st.integers(min_value=0, max_value=2500), max_size=60), min_size=1, max_size=12
    ),
    max_events=st.integers(min_value=1, max_value=40),
    max_bytes=st.one_of(
        st.integers(min_value=64, max_value=5000), st.integers(min_value=5000, max_value=200_000)
    ),
)
def test_runs_batch_as_the_rules_say_event_by_event(
    runs: list[list[int]], max_events: int, max_bytes: int
) -> None:
    # Runs of any length and body sizes (oversized ones too, and an empty run): the same
    # cuts and exact sizes as the rules applied to one event at a time.
    model, b = ModelBatcher(max_events, max_bytes), batcher(FakeClock(), max_events, max_bytes)
    expected, got, offset = [], [], 0
    for sizes in runs:
        events = [event(offset + i, size) for i, size in enumerate(sizes)]
        offset += len(sizes)
        expected += [batch for e in events for batch in model.add(e)]
        got += [
            ([e.offset for e in batch.events], batch.size_bytes)
            for batch in b.add_runs(EventRun.of(events))
        ]
        assert len(b) == len(model.open)
    assert got == expected
    tail = b.flush()
    if model.open:
        assert tail is not None
        assert ([e.offset for e in tail.events], tail.size_bytes) == model.close()
    else:
        assert tail is None
    for offsets, size in got:
        assert size <= max_bytes or len(offsets) == 1


@given(
    lengths=st.lists(st.integers(min_value=0, max_value=6), max_size=6),
    start=st.integers(min_value=-40, max_value=40),
    stop=st.integers(min_value=-40, max_value=40),
)
def test_events_index_and_slice_like_a_list(lengths: list[int], start: int, stop: int) -> None:
    plain, offset = [], 0
    for partition, length in enumerate(lengths):
        plain += [tp_event(partition, offset + i) for i in range(length)]
        offset += length
    events = Events.of(plain)
    assert len(events) == len(plain)
    assert list(events) == plain
    assert list(events[start:stop]) == plain[start:stop]
    assert b",".join(events[start:stop].bodies()) == b",".join(e.body for e in plain[start:stop])
    for index in (start, stop):
        if -len(plain) <= index < len(plain):
            assert events[index] == plain[index]
        else:
            with pytest.raises(IndexError):
                events[index]
