"""Wiring and lifecycle: consume → decode → transform → batch → send → resolve → commit.

The loop owns the batcher; the offset tracker owns what may be committed; the sink only
sends. A partition's commit moves only over records whose batch was delivered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from connector.adapters.avro import AvroDecoder
from connector.adapters.dlq import DeadLetterWriter, Failure
from connector.adapters.http_setup import HttpEnv
from connector.adapters.kafka_source import ConsumerFactory, KafkaSource
from connector.adapters.registry import ConfluentDecoder, SchemaGatedSource
from connector.config import Settings
from connector.core import backpressure
from connector.core.checks import Check
from connector.core.offsets import Receipt
from connector.core.records import Batch, EncodedEvent, SourceRecord, TopicPartition
from connector.mapping import mapper_for
from connector.metrics import Metrics
from connector.pipeline import lifecycle, wiring
from connector.pipeline.checkpoint import Checkpoint, fmt_partitions
from connector.pipeline.delivery import Delivery
from connector.pipeline.ingest import InvalidRecordError, ingest
from connector.pipeline.pausing import BACKPRESSURE, Backpressure, Pausing

log = logging.getLogger(__name__)


_PROGRESS_INTERVAL_S = 10.0
_GAUGE_INTERVAL_S = 2.0
# The consume loop may legitimately stand still while a revoke drains in-flight batches
# (up to shutdown.drain_timeout_s); liveness allows that much and this margin on top.
_LIVENESS_MARGIN_S = 60.0
# The longest a consume call waits to fill up (see _wait_s).
_MAX_CONSUME_WAIT_S = 0.1
# When caught up, commit at once, but not more often than this.
_IDLE_COMMIT_GAP_S = 0.2


@dataclass
class RunStats:
    """Counters of one run, read by the demo and the progress log."""

    consumed: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    attempts: int = 0
    commits: int = 0
    commit_failures: int = 0
    pauses: int = 0  # times the source was paused because too much was pending
    started_at: float = field(default_factory=time.monotonic)
    first_assigned_at: float | None = None  # when the group first gave this member partitions


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
        decoder: AvroDecoder,
        session: aiohttp.ClientSession,
        token: Callable[[], str],
        consumer_factory: ConsumerFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        dead_letters: DeadLetterWriter | None = None,
        http_env: HttpEnv | None = None,
    ) -> None:
        if settings.dlq.on_invalid == "dlq" and dead_letters is None:
            raise ValueError("dlq.on_invalid is 'dlq' but no dead-letter writer was given")
        self._settings = settings
        self._dead_letters = dead_letters if settings.dlq.on_invalid == "dlq" else None
        self._decoder = decoder
        # Compiled once against the reader schema; MappingError here names the bad path.
        self._mapper = mapper_for(settings.mapping, decoder.schema)
        self._clock = clock
        self._wall_clock = wall_clock
        self.metrics = metrics if metrics is not None else Metrics(CollectorRegistry())
        self.stats = RunStats(started_at=clock())
        self._checkpoint = Checkpoint(self.metrics, self.stats, clock)
        self._pausing = Pausing()  # the only caller of pause/resume
        self.tracker = self._checkpoint.tracker
        self._batcher = wiring.batcher(settings, clock)
        self._sink = wiring.sink(settings, session, token, http_env, rng, self.metrics)
        source_kwargs: dict[str, Any] = {}
        if consumer_factory is not None:
            source_kwargs["consumer_factory"] = consumer_factory
        self._source: KafkaSource
        if isinstance(decoder, ConfluentDecoder):
            # Fetches each new writer schema before its chunk is decoded; while the
            # registry is down it holds the chunk and pauses those partitions, never skips.
            self._source = SchemaGatedSource(
                settings.kafka,
                decoder=decoder,
                session=session,
                holds=self._pausing,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
                on_commit=self._checkpoint.acknowledged,
                **source_kwargs,
            )
        else:
            self._source = KafkaSource(
                settings.kafka,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
                on_commit=self._checkpoint.acknowledged,
                **source_kwargs,
            )
        self._delivery = Delivery(
            self._sink,
            self._dead_letters,
            self.metrics,
            self.stats,
            max_in_flight=settings.http.max_in_flight,
            drain_timeout_s=settings.shutdown.drain_timeout_s,
            clock=clock,
            wall_clock=wall_clock,
        )
        kafka = settings.kafka
        caps = backpressure.PendingCaps(kafka.max_pending_events, kafka.max_pending_per_partition)
        self._backpressure = Backpressure(self._pausing, caps)
        self._last_turn: float | None = None
        # False when shutdown gave up on committing or leaving the group (brokers down): a
        # consumer call may still be stuck in a client thread, so the process must not wait
        # for those threads on exit.
        self.left_cleanly = True
        self._checkpoint.attach(self._source)
        self._pausing.attach(self._source)

    # -- the main loop -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        kafka = self._settings.kafka
        commit_every = kafka.commit_interval_ms / 1000
        await self._source.start()
        idle_commit_gap = min(commit_every, _IDLE_COMMIT_GAP_S)
        next_commit = self._clock() + commit_every
        last_commit = self._clock()
        next_progress = next_gauges = self._clock()
        try:
            while not stop.is_set():
                self._last_turn = self._clock()
                if self._delivery.failure is not None:
                    raise self._delivery.failure
                await self._apply_backpressure()
                records = await self._source.consume(kafka.consume_max_messages, self._wait_s())
                if records:
                    self._ingest(records)
                batch = self._batcher.poll()
                if batch is not None:
                    self._dispatch(batch)
                now = self._clock()
                # Also commit as soon as the consumer is caught up (nothing came back):
                # the end of a backlog is committed at once, not up to an interval later.
                # Not while commits fail or the brokers are away: then the interval rules,
                # and nothing piles up in the client for the shutdown to wait on.
                caught_up = (
                    not records
                    and now >= last_commit + idle_commit_gap
                    and not self._checkpoint.failing
                    and not self._source.brokers_down
                )
                if now >= next_commit or (caught_up and self.tracker.committable()):
                    await self._checkpoint.commit_in_background()
                    next_commit, last_commit = now + commit_every, now
                if now >= next_gauges:
                    await self._checkpoint.refresh_gauges()
                    next_gauges = now + _GAUGE_INTERVAL_S
                if now >= next_progress:
                    self._log_progress()
                    next_progress = now + _PROGRESS_INTERVAL_S
        finally:
            await self._shutdown()

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

    def _ingest(self, records: list[SourceRecord]) -> None:
        """Track, decode, map and batch one consume call's records, in their order."""
        receipts = self._checkpoint.track(records)
        self.stats.consumed += len(records)
        got = ingest(records, receipts, self._decoder.decode_many, self._mapper.encode)
        events, start = got.events, 0
        for before, error in got.invalid:  # rare: what came before it is batched first
            self._batch(events[start:before])
            start = before
            self._invalid(error, receipts[error.record.topic, error.record.partition])
        self._batch(events[start:] if start else events)

    def _batch(self, events: list[EncodedEvent]) -> None:
        for batch in self._batcher.add_many(events):
            self._dispatch(batch)

    def _invalid(self, error: InvalidRecordError, receipt: Receipt) -> None:
        """A record that cannot become an event: dead-letter it, or stop (on_invalid)."""
        self.metrics.records_failed.labels(error.stage, error.kind).inc()
        if self._dead_letters is None:
            raise error
        failure = Failure(error.stage, error.kind, error.reason)
        self._delivery.dead_letter(error.record, receipt, failure)

    # -- sending ---------------------------------------------------------------------

    def _dispatch(self, batch: Batch) -> None:
        self._delivery.dispatch(batch)

    async def _flush_and_drain(self) -> int:
        """Send the open batch, then wait for in-flight work (see Delivery.drain)."""
        batch = self._batcher.flush()
        if batch is not None:
            self._delivery.dispatch(batch)
        return await self._delivery.drain()

    def committed(self) -> dict[TopicPartition, int]:
        """Positions the broker acknowledged, for assigned partitions."""
        return self._checkpoint.committed()

    # -- backpressure and rebalances -----------------------------------------------

    async def _apply_backpressure(self) -> None:
        """Pause what must wait, resume what may go on; keep polling either way."""
        tracker, halted = self.tracker, self._sink.halted
        if await self._backpressure.apply(tracker, halted=halted):
            self.stats.pauses += 1
        held = bool(self._pausing.held(BACKPRESSURE))
        self.metrics.paused.labels("backpressure").set(1 if held and not halted else 0)
        self.metrics.paused.labels("auth").set(1 if halted else 0)
        self.metrics.paused.labels("throttle").set(1 if self._sink.gate.throttled() else 0)

    async def _on_assign(self, tps: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", fmt_partitions(tps))
        if tps and self.stats.first_assigned_at is None:
            self.stats.first_assigned_at = self._clock()
        await self._checkpoint.assign(tps)

    async def _on_revoke(self, tps: list[TopicPartition]) -> None:
        """Hand partitions over cleanly: send what is open, wait, commit, forget."""
        log.info("revoking partitions: %s", fmt_partitions(tps))
        undelivered = await self._flush_and_drain()
        if undelivered:
            log.warning(
                "%d batches still undelivered at revoke; their events will be read again "
                "by the partitions' next owner",
                undelivered,
            )
        await self._checkpoint.commit(only=set(tps))
        log.info("partitions revoked: %s", fmt_partitions(tps))
        self._forget(tps, "revoke")

    async def _on_lost(self, tps: list[TopicPartition]) -> None:
        # Another member may already own them: committing now could move its offsets.
        log.warning("partitions lost (not revoked cleanly): %s", fmt_partitions(tps))
        self._forget(tps, "lost")

    def _forget(self, tps: list[TopicPartition], kind: str) -> None:
        self._checkpoint.forget(tps, kind)
        self._pausing.forget(tps)

    # -- health --------------------------------------------------------------------

    def liveness(self) -> Check:
        if self._last_turn is None:
            return Check(True, "starting")
        limit = self._settings.shutdown.drain_timeout_s + _LIVENESS_MARGIN_S
        idle = self._clock() - self._last_turn
        if idle > limit:
            return Check(False, f"consume loop has not turned for {idle:.0f} s")
        return Check(True, "consume loop running")

    def readiness(self) -> Check:
        registry_down = isinstance(self._source, SchemaGatedSource) and self._source.registry_down
        return lifecycle.readiness(
            failed=self._delivery.failure is not None,
            brokers_down=self._source.brokers_down,
            registry_down=registry_down,
            dlq_failing=self._dead_letters is not None and self._dead_letters.failing,
            halt_cause=self._sink.halt_cause if self._sink.halted else None,
            assigned=len(self.tracker.assigned()),
        )

    # -- shutdown ------------------------------------------------------------------

    async def _shutdown(self) -> None:
        undelivered = await self._flush_and_drain()
        self.left_cleanly = await lifecycle.finish(
            undelivered, self._delivery, self._checkpoint, self._source
        )
        self._log_progress()

    def _log_progress(self) -> None:
        stats = self.stats
        log.info(
            "progress: %d consumed, %d delivered in %d batches, %d pending, %d in flight",
            stats.consumed,
            stats.delivered,
            stats.batches,
            self.tracker.pending,
            self._delivery.in_flight,
        )
