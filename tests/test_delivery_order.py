"""delivery.ordering: one request of a partition at a time, in order; others in parallel."""

from __future__ import annotations

import asyncio
import random
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from connector.adapters.http_sink import HttpSink, SendReport
from connector.core.offsets import OffsetTracker
from connector.core.records import Batch, EncodedEvent, Events
from connector.metrics import Metrics
from connector.pipeline.delivery import Delivery, settled
from connector.pipeline.slots import Slots


class SlowSink:
    """Answers each batch after a random delay (a retried batch takes longest) and records
    what was on the wire at once."""

    halted = False

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.on_wire: dict[int, int] = {}  # partition -> requests in flight now
        self.most_at_once: dict[int, int] = {}
        self.sent: dict[int, list[int]] = {}  # partition -> batch ids, in send order
        self.parallel = 0
        self.most_parallel = 0

    async def send(self, batch: Batch) -> SendReport:
        partition = batch.events[0].partition
        self.on_wire[partition] = self.on_wire.get(partition, 0) + 1
        self.most_at_once[partition] = max(
            self.most_at_once.get(partition, 0), self.on_wire[partition]
        )
        self.parallel += 1
        self.most_parallel = max(self.most_parallel, self.parallel)
        self.sent.setdefault(partition, []).append(batch.batch_id)
        await asyncio.sleep(self._rng.choice([0.001, 0.002, 0.02]))
        self.on_wire[partition] -= 1
        self.parallel -= 1
        return SendReport(attempts=1, requests_delivered=1)


def batches(tracker: OffsetTracker, partitions: int, per_partition: int) -> list[Batch]:
    tracker.assign([("t", p) for p in range(partitions)])
    out, batch_id = [], 0
    for index in range(per_partition):
        for partition in range(partitions):
            receipt = tracker.track(("t", partition), index)
            event = EncodedEvent("t", partition, index, receipt, b"{}")
            out.append(Batch(batch_id, Events.of((event,)), 2))
            batch_id += 1
    return out


async def run(ordered: bool, seed: int) -> tuple[SlowSink, OffsetTracker, list[Batch]]:
    sink, tracker = SlowSink(seed), OffsetTracker()
    delivery = Delivery(
        cast(HttpSink, sink),
        None,
        Metrics(CollectorRegistry()),
        slots=Slots(8),
        drain_timeout_s=30,
        ordered=ordered,
    )
    work = batches(tracker, partitions=4, per_partition=25)
    for batch in work:
        delivery.dispatch(batch)
    assert await delivery.drain() == 0
    return sink, tracker, work


async def test_ordered_delivery_sends_a_partitions_batches_one_at_a_time_in_order() -> None:
    sink, tracker, work = await run(ordered=True, seed=3)
    expected: dict[int, list[int]] = {}
    for batch in work:
        expected.setdefault(batch.events[0].partition, []).append(batch.batch_id)
    assert sink.sent == expected
    assert set(sink.most_at_once.values()) == {1}
    assert sink.most_parallel > 1  # the partitions still went in parallel
    assert tracker.pending == 0
    assert tracker.committable() == {("t", p): 25 for p in range(4)}


async def test_without_ordering_a_partitions_batches_race() -> None:
    sink, tracker, _ = await run(ordered=False, seed=3)
    assert max(sink.most_at_once.values()) > 1
    assert tracker.pending == 0


@settings(max_examples=300, deadline=None)
@given(picks=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans()), max_size=40))
def test_a_delivered_batch_resolves_each_partitions_offsets_but_the_refused(
    picks: list[tuple[int, bool, bool]],
) -> None:
    """Partitions interleaved in any way, events refused anywhere: each receipt gets its
    delivered offsets in order, and the timestamps of the delivered events, in order."""
    tracker = OffsetTracker()
    receipts = [tracker.track(("t", p), 0) for p in range(3)]
    events = [
        EncodedEvent("t", p, i + 1, receipts[p], b"{}", 1_000 if stamped else None)
        for i, (p, _, stamped) in enumerate(picks)
    ]
    refused = {
        (e.receipt, e.offset) for e, (_, refuse, _) in zip(events, picks, strict=True) if refuse
    }
    by_receipt, timestamps = settled(Events.of(events), refused)
    kept = [e for e in events if (e.receipt, e.offset) not in refused]
    assert by_receipt == {
        r: [e.offset for e in kept if e.receipt is r]
        for r in receipts
        if any(e.receipt is r for e in kept)
    }
    assert timestamps == [e.timestamp_ms for e in kept]
