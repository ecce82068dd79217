"""Delivery: batches sent to the API with at most the slots' limit in flight, the
delivered events' receipts resolved, the refused ones dead-lettered (or the run stopped),
and the drain of a revoke or a shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from connector.adapters.dlq import DeadLetterWriter, Failure
from connector.adapters.http_sink import HttpSink
from connector.core.classify import Outcome
from connector.core.errors import DataError, Stage
from connector.core.records import (
    Batch,
    EncodedEvent,
    Events,
    Resolver,
    SourceRecord,
    TopicPartition,
    record_of,
)
from connector.metrics import Metrics
from connector.pipeline.slots import Slots

log = logging.getLogger(__name__)

# How often a drain checks whether the API halted (then waiting is pointless).
_DRAIN_POLL_S = 0.2


class RefusedByApiError(DataError):
    """The API refused an event and no dead-letter topic is configured."""

    def __init__(self, event: EncodedEvent, outcome: Outcome) -> None:
        super().__init__(
            f"the API refused the event at {event.topic}[{event.partition}]@{event.offset} "
            f"(HTTP {outcome.status}, body code {outcome.code}, {outcome.reason}) and "
            "dlq.on_invalid is 'fail': the connector stops here; offsets at and after it "
            "stay uncommitted"
        )
        self.stage = Stage.HTTP


def settled(
    events: Events, refused: set[tuple[Resolver, int]]
) -> tuple[dict[Resolver, list[int]], list[int | None]]:
    """What a delivered batch resolves: the offsets per receipt of every event but the
    refused ones (by receipt and offset), and their Kafka timestamps (for the end-to-end
    latency; None where the broker gave none)."""
    by_receipt: dict[Resolver, list[int]] = {}
    timestamps: list[int | None] = []
    for run in events.runs:  # runs of one partition, in consume order
        receipt, offsets, stamps = run.receipt, run.offsets, run.timestamps
        if refused:
            kept = [i for i, offset in enumerate(offsets) if (receipt, offset) not in refused]
            offsets, stamps = [offsets[i] for i in kept], [stamps[i] for i in kept]
            if not offsets:
                continue
        resolves = by_receipt.get(receipt)
        if resolves is None:
            by_receipt[receipt] = resolves = []
        resolves += offsets
        timestamps += stamps
    return by_receipt, timestamps


class Delivery:
    """The one owner of in-flight work. A task that fails stores its error in
    ``failure``, which stops the loop."""

    def __init__(
        self,
        sink: HttpSink,
        dead_letters: DeadLetterWriter | None,
        metrics: Metrics,
        *,
        slots: Slots,
        drain_timeout_s: float,
        ordered: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._dead_letters = dead_letters
        self.metrics = metrics
        self._slots = slots
        self._drain_timeout_s = drain_timeout_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        # delivery.ordering: partition — each partition's batches wait in its queue, and
        # one task per partition sends them one after the other.
        self._ordered = ordered
        self._queues: dict[TopicPartition, deque[Batch]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def dispatch(self, batch: Batch) -> None:
        """Send a batch in the background, at most the slots' limit at once; with
        ordering, after the partition's batches before it are done."""
        if not self._ordered:
            self._spawn(self._deliver(batch), f"batch-{batch.batch_id}")
            return
        first = batch.events.runs[0]
        tp = (first.topic, first.partition)
        queue = self._queues.get(tp)
        if queue is not None:
            queue.append(batch)  # its partition's sender picks it up in turn
            return
        self._queues[tp] = deque([batch])
        self._spawn(self._send_in_order(tp), f"partition-{tp[0]}-{tp[1]}")

    async def _send_in_order(self, tp: TopicPartition) -> None:
        queue = self._queues[tp]
        try:
            while queue:
                await self._deliver(queue[0])  # retried and bisected before the next one
                queue.popleft()
        finally:
            del self._queues[tp]  # what is left (a failure, a cancel) stays uncommitted

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run tracked work: shutdown and revoke wait for it; its failure stops the loop."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def dead_letter(self, record: SourceRecord, receipt: Resolver, failure: Failure) -> None:
        """Write a record to the DLQ in the background; its offset resolves once acked."""
        self._spawn(self._write_dead_letter(record, receipt, failure), "dlq")

    async def _write_dead_letter(
        self, record: SourceRecord, receipt: Resolver, failure: Failure
    ) -> None:
        assert self._dead_letters is not None  # only called with a writer configured
        await self._dead_letters.write(record, failure, self.metrics)
        receipt.resolve((record.offset,))
        self.metrics.records_dead_lettered.labels(failure.stage, failure.error_class).inc()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    async def _deliver(self, batch: Batch) -> None:
        async with self._slots:
            result = await self._sink.send(batch)
        refused = {(event.receipt, event.offset) for event, _ in result.refused}
        now_ms = self._wall_clock() * 1000
        by_receipt, timestamps = settled(batch.events, refused)
        self.metrics.end_to_end_latency.observe_ages(timestamps, now_ms)
        if len(refused) < len(batch.events):
            self.metrics.last_delivery.set(now_ms / 1000)
        for receipt, offsets in by_receipt.items():
            receipt.resolve(offsets)
            topic, partition = receipt.tp
            self.metrics.records_delivered.labels(topic, str(partition)).inc(len(offsets))
        log.log(
            logging.INFO if result.attempts > 1 else logging.DEBUG,
            "batch delivered" + (f", {len(refused)} events refused" if refused else ""),
            extra={
                "batch_id": batch.batch_id,
                "batch_size": len(batch.events),
                "attempt": result.attempts,
                "duration_s": round(result.duration_s, 3),
            },
        )
        # Only now, with everything delivered resolved, deal with what was refused.
        for event, outcome in result.refused:
            if self._dead_letters is None or event.record is None:
                raise RefusedByApiError(event, outcome)
            record = record_of(event.record)
            why = (
                "retries exhausted: the retry budget ran out and the event still failed alone"
                if outcome.reason == "retries_exhausted"
                else "refused by the API after bisection"
            )
            failure = Failure(
                Stage.HTTP,
                outcome.reason,
                f"{why} (HTTP {outcome.status}, body code {outcome.code})",
                outcome.status,
                outcome.code,
                result.attempts,
                outcome.error_code,
                outcome.message,
            )
            self.dead_letter(record, event.receipt, failure)

    async def drain(self) -> int:
        """Wait for in-flight work up to the drain timeout; returns how many batches (or
        dead-letter writes) were still unfinished."""
        if not self._tasks:
            return 0
        # While the API refuses the token (or redirects), nothing in flight can be
        # delivered: stop waiting at once instead of sitting out the drain timeout.
        deadline = self._clock() + self._drain_timeout_s
        while self._tasks and not self._sink.halted:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=min(remaining, _DRAIN_POLL_S))
        return len(self._tasks)

    async def cancel(self) -> None:
        """Give up on what is still in flight: it stays uncommitted, delivered again later."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
