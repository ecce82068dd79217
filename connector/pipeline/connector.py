"""The loop: consume → ingest → batch → deliver, turn after turn, composed of the rooms.

The checkpoint owns what may be committed, the pausing room what waits, delivery what is
in flight; the loop owns only the batcher and the turn. A partition's commit moves only
over records whose batch was delivered.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping

import aiohttp
from prometheus_client import CollectorRegistry

from connector.adapters.avro import Decoder
from connector.adapters.dlq import DeadLetterWriter, Failure
from connector.adapters.http_setup import HttpEnv
from connector.adapters.kafka_source import ConsumerFactory
from connector.config import Settings
from connector.core.checks import Check
from connector.core.offsets import OffsetTracker, Receipt
from connector.core.records import TopicPartition
from connector.metrics import Metrics
from connector.pipeline import lifecycle, wiring
from connector.pipeline.ingest import Ingested, InvalidRecordError, ingest, ingest_runs

_PROGRESS_INTERVAL_S = 10.0
# The longest a consume call waits to fill up (see _wait_s).
_MAX_CONSUME_WAIT_S = 0.1


class Connector:
    """One consumer-group member delivering its partitions to the API.

    ``run(stop)`` returns after ``stop`` is set and the shutdown drain finished: open
    batch flushed, in-flight batches awaited (up to ``shutdown.drain_timeout_s``),
    delivered offsets committed, group left. It raises InvalidRecordError (after the same
    drain) when a record cannot be decoded or mapped.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        decoder: Decoder,
        session: aiohttp.ClientSession,
        token: Callable[[], str],
        consumer_factory: ConsumerFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        dead_letters: DeadLetterWriter | None = None,
        http_env: HttpEnv | None = None,
        foreign: Callable[[str], str | None] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self.metrics = metrics if metrics is not None else Metrics(CollectorRegistry())
        self._decoder = decoder
        rooms = wiring.build(
            settings,
            decoder=decoder,
            session=session,
            token=token,
            consumer_factory=consumer_factory,
            clock=clock,
            wall_clock=wall_clock,
            rng=rng,
            metrics=self.metrics,
            dead_letters=dead_letters,
            http_env=http_env,
            drain=self._flush_and_drain,
            foreign=foreign,
        )
        self._mapper, self._dead_letters = rooms.mapper, rooms.dead_letters
        self._native = rooms.native
        self._checkpoint, self._backpressure = rooms.checkpoint, rooms.backpressure
        self._batcher, self._sink, self._source = rooms.batcher, rooms.sink, rooms.source
        self._delivery, self._health, self._guard = rooms.delivery, rooms.health, rooms.guard
        # False when shutdown gave up on committing or leaving the group (brokers down): a
        # consumer call may still be stuck in a client thread, so the process must not wait
        # for those threads on exit.
        self.left_cleanly = True

    @property
    def tracker(self) -> OffsetTracker:
        return self._checkpoint.tracker

    @property
    def first_assigned_at(self) -> float | None:
        """When the group first gave this member partitions (the demo's clock)."""
        return self._checkpoint.first_assigned_at

    def committed(self) -> dict[TopicPartition, int]:
        """Positions the broker acknowledged, for assigned partitions."""
        return self._checkpoint.committed()

    # -- the loop --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        writer = self._dead_letters
        if writer is not None and not await lifecycle.verify_dead_letters(
            writer, stop, self._health
        ):
            return  # stopped before the check passed: nothing consumed, nothing to commit
        await self._source.start()
        self._checkpoint.start()
        next_progress = self._clock()
        try:
            while not stop.is_set():
                self._health.turned()
                if self._delivery.failure is not None:
                    raise self._delivery.failure
                await self._backpressure.apply(
                    self.tracker, halted=self._sink.halted, throttled=self._sink.gate.throttled()
                )
                self.metrics.route_halted.set(0 if self._health.readiness().ok else 1)
                consumed = await self._consume()
                while (batch := self._batcher.poll()) is not None:
                    self._delivery.dispatch(batch)
                await self._checkpoint.tick(
                    consumed=consumed, brokers_down=self._source.brokers_down
                )
                if self._clock() >= next_progress:
                    self._log_progress()
                    next_progress = self._clock() + _PROGRESS_INTERVAL_S
        finally:
            undelivered = await self._flush_and_drain()
            self.left_cleanly = await lifecycle.finish(
                undelivered, self._delivery, self._checkpoint, self._source
            )
            self._log_progress()

    def _wait_s(self) -> float:
        """How long consume may block: not past the open batch's linger deadline.

        A consume call returns when it has ``consume_max_messages`` or when this time is
        up, so at a modest rate every record waits for it: it is kept short. Under a
        backlog the call returns at once, full.
        """
        deadline = self._batcher.deadline()
        if deadline is None:
            return _MAX_CONSUME_WAIT_S
        return min(_MAX_CONSUME_WAIT_S, max(0.0, deadline - self._clock()))

    async def _consume(self) -> bool:
        """One consume call, tracked, decoded, mapped and batched; whether it read any."""
        max_messages, wait_s = self._settings.kafka.consume_max_messages, self._wait_s()
        on_tombstone = self._settings.source.on_tombstone
        if self._native is None:
            records = await self._source.consume(max_messages, wait_s)
            if self._guard is not None:
                self._guard.check()  # before a record of a foreign topic is tracked
            if not records:
                return False
            receipts = self._checkpoint.track(records)
            decode, encode = self._decoder.decode_many, self._mapper.encode
            self._take(ingest(records, receipts, decode, encode, on_tombstone), receipts)
            return True
        messages = await self._source.consume_messages(max_messages, wait_s)
        if self._guard is not None:
            self._guard.check()
        if not messages:
            return False
        # Decoded before they are tracked, in the same step: nothing commits in between.
        runs, errors = self._native.messages(messages)
        self._source.report_errors(errors)
        receipts = self._checkpoint.track_runs(
            ((run.topic, run.partition), run.offsets) for run in runs
        )
        self._take(ingest_runs(runs, receipts, on_tombstone), receipts)
        return bool(runs)

    def _take(self, got: Ingested, receipts: Mapping[TopicPartition, Receipt]) -> None:
        """Batch one chunk's events, in their order, and deal with what is no event."""
        for record in got.skipped:  # tombstones: no event, their offsets are done
            receipts[record.topic, record.partition].resolve((record.offset,))
        if got.skipped:
            self.metrics.records_skipped.labels("tombstone").inc(len(got.skipped))
        for part in got.parts:  # in read order: what came before an invalid record first
            if isinstance(part, InvalidRecordError):
                self._invalid(part, receipts[part.record.topic, part.record.partition])
            else:
                for batch in self._batcher.add_runs((part,)):
                    self._delivery.dispatch(batch)

    def _invalid(self, error: InvalidRecordError, receipt: Receipt) -> None:
        """A record that cannot become an event: dead-letter it, or stop (dlq.on_invalid,
        and what ingest said of it: source.on_tombstone: fail stops)."""
        self.metrics.records_failed.labels(error.stage, error.kind).inc()
        if self._dead_letters is None or not error.may_dead_letter:
            raise error
        failure = Failure(error.stage, error.kind, error.reason)
        self._delivery.dead_letter(error.record, receipt, failure)

    async def _flush_and_drain(self) -> int:
        """Send the open batch, then wait for in-flight work (see Delivery.drain)."""
        while (batch := self._batcher.flush()) is not None:
            self._delivery.dispatch(batch)
        return await self._delivery.drain()

    def _log_progress(self) -> None:
        lifecycle.log_progress(
            self.metrics, pending=self.tracker.pending, in_flight=self._delivery.in_flight
        )

    # -- health (see lifecycle.Health) ------------------------------------------------

    def liveness(self) -> Check:
        return self._health.liveness()

    def readiness(self) -> Check:
        return self._health.readiness()
