"""Wiring and lifecycle: consume → decode → transform → batch → send → resolve → commit.

The loop owns the batcher; the offset tracker owns what may be committed; the sink only
sends. A partition's commit moves only over records whose batch was delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from connector.batch import Batcher, body_overhead
from connector.config import Settings
from connector.decode import AvroDecoder, DecodeError
from connector.health import Check
from connector.metrics import Metrics
from connector.offsets import OffsetTracker
from connector.records import Batch, EncodedEvent, SourceRecord, TopicPartition
from connector.sink import HttpSink
from connector.source import CommitError, ConsumerFactory, KafkaSource
from connector.transform import TransformError, encode_event, fallback_uuid, to_event

log = logging.getLogger(__name__)

_PROGRESS_INTERVAL_S = 10.0
_GAUGE_INTERVAL_S = 2.0
# The consume loop may legitimately stand still while a revoke drains in-flight batches
# (up to shutdown.drain_timeout_s); liveness allows that much and this margin on top.
_LIVENESS_MARGIN_S = 60.0
# Resume a paused source only once pending work has drained to this share of the cap,
# so it does not flap between pause and resume on every batch.
_RESUME_FRACTION = 0.5


class InvalidRecordError(Exception):
    """A record cannot be turned into an API event. Nothing at or after it is committed."""

    def __init__(self, record: SourceRecord, stage: str, kind: str, reason: str) -> None:
        super().__init__(
            f"{stage} failed for {record.topic}[{record.partition}]@{record.offset}: {reason}. "
            "The connector stops here; offsets at and after this record stay uncommitted."
        )
        self.record = record
        self.stage = stage
        self.kind = kind  # bounded: a metric label


@dataclass
class RunStats:
    """Counters of one run, read by the demo and the progress log."""

    consumed: int = 0
    delivered: int = 0
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
    ) -> None:
        self._settings = settings
        self._decoder = decoder
        self._clock = clock
        self._wall_clock = wall_clock
        self.metrics = metrics if metrics is not None else Metrics(CollectorRegistry())
        self.tracker = OffsetTracker()
        self.stats = RunStats(started_at=clock())
        public_params = json.dumps(
            settings.http.public_params, separators=(",", ":"), ensure_ascii=False
        ).encode()
        self._batcher = Batcher(
            max_events=settings.batch.max_events,
            max_bytes=settings.batch.max_bytes,
            linger_s=settings.batch.linger_ms / 1000,
            overhead_bytes=body_overhead(public_params),
            clock=clock,
        )
        self._sink = HttpSink(
            session,
            url=settings.http.url,
            token=token,
            public_params_json=public_params,
            timeout_s=settings.http.timeout_s,
            initial_backoff_s=settings.http.retry.initial_backoff_ms / 1000,
            max_backoff_s=settings.http.retry.max_backoff_ms / 1000,
            rng=rng,
            metrics=self.metrics,
        )
        source_kwargs: dict[str, Any] = {}
        if consumer_factory is not None:
            source_kwargs["consumer_factory"] = consumer_factory
        self._source = KafkaSource(
            settings.kafka,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
            **source_kwargs,
        )
        self._slots = asyncio.Semaphore(settings.http.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._paused: set[TopicPartition] = set()
        # Committed positions found on the broker at assignment, until we commit our own.
        self._committed_at_assign: dict[TopicPartition, int] = {}
        self._last_turn: float | None = None

    # -- the main loop -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        kafka = self._settings.kafka
        commit_every = kafka.commit_interval_ms / 1000
        await self._source.start()
        next_commit = self._clock() + commit_every
        next_progress = next_gauges = self._clock()
        try:
            while not stop.is_set():
                self._last_turn = self._clock()
                if self._failure is not None:
                    raise self._failure
                await self._apply_backpressure()
                records = await self._source.consume(kafka.consume_max_messages, self._wait_s())
                try:
                    for record in records:
                        self._ingest(record)
                finally:
                    self._count_consumed(records)
                batch = self._batcher.poll()
                if batch is not None:
                    self._dispatch(batch)
                now = self._clock()
                if now >= next_commit:
                    await self._commit()
                    next_commit = now + commit_every
                if now >= next_gauges:
                    await self._refresh_gauges()
                    next_gauges = now + _GAUGE_INTERVAL_S
                if now >= next_progress:
                    self._log_progress()
                    next_progress = now + _PROGRESS_INTERVAL_S
        except InvalidRecordError as exc:
            self.metrics.records_failed.labels(exc.stage, exc.kind).inc()
            raise
        finally:
            await self._shutdown()

    def _wait_s(self) -> float:
        """How long consume may block: not past the open batch's linger deadline."""
        deadline = self._batcher.deadline()
        if deadline is None:
            return 0.5
        return min(0.5, max(0.0, deadline - self._clock()))

    def _ingest(self, record: SourceRecord) -> None:
        tp = (record.topic, record.partition)
        epoch = self.tracker.track(tp, record.offset)
        try:
            decoded = self._decoder.decode(record.value)
        except DecodeError as exc:
            raise InvalidRecordError(record, "decode", "undecodable", str(exc)) from None
        try:
            event = to_event(decoded, fallback_uuid(record.topic, record.partition, record.offset))
            body = encode_event(event)
        except TransformError as exc:
            raise InvalidRecordError(record, "transform", "unmappable", str(exc)) from None
        for batch in self._batcher.add(
            EncodedEvent(
                record.topic, record.partition, record.offset, epoch, body, record.timestamp_ms
            )
        ):
            self._dispatch(batch)

    def _count_consumed(self, records: list[SourceRecord]) -> None:
        """Per partition, once per consume call: a labelled counter per record costs too much."""
        if not records:
            return
        counts: dict[TopicPartition, int] = {}
        for record in records:
            tp = (record.topic, record.partition)
            counts[tp] = counts.get(tp, 0) + 1
        for (topic, partition), count in counts.items():
            self.metrics.records_consumed.labels(topic, str(partition)).inc(count)
        self.stats.consumed += len(records)

    # -- sending ---------------------------------------------------------------------

    def _dispatch(self, batch: Batch) -> None:
        task = asyncio.create_task(self._deliver(batch), name=f"batch-{batch.batch_id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def _deliver(self, batch: Batch) -> None:
        async with self._slots:
            result = await self._sink.send(batch)
        now_s = self._wall_clock()
        latency = self.metrics.end_to_end_latency
        by_partition: dict[tuple[str, int, int], list[int]] = {}
        for event in batch.events:
            key = (event.topic, event.partition, event.epoch)
            by_partition.setdefault(key, []).append(event.offset)
            if event.timestamp_ms is not None:
                latency.observe(max(0.0, now_s - event.timestamp_ms / 1000))
        for (topic, partition, epoch), offsets in by_partition.items():
            self.tracker.resolve((topic, partition), epoch, offsets)
            self.metrics.records_delivered.labels(topic, str(partition)).inc(len(offsets))
        self.stats.delivered += len(batch.events)
        self.stats.batches += 1
        self.stats.attempts += result.attempts
        log.log(
            logging.INFO if result.attempts > 1 else logging.DEBUG,
            "batch delivered",
            extra={
                "batch_id": batch.batch_id,
                "batch_size": len(batch.events),
                "attempt": result.attempts,
                "duration_s": round(result.duration_s, 3),
            },
        )

    async def _drain(self, timeout_s: float) -> int:
        """Wait for in-flight batches; returns how many were still undelivered."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        return len(pending)

    # -- offsets -------------------------------------------------------------------

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        positions = self.tracker.committable()
        if only is not None:
            positions = {tp: pos for tp, pos in positions.items() if tp in only}
        if not positions:
            return
        try:
            await self._source.commit(positions)
        except CommitError as exc:
            self.stats.commit_failures += 1
            self.metrics.offset_commits.labels("failure").inc()
            log.warning("offset commit failed, will retry: %s", exc)
            return
        self.tracker.mark_committed(positions)
        self.stats.commits += 1
        self.metrics.offset_commits.labels("success").inc()

    def committed(self) -> dict[TopicPartition, int]:
        """Positions the broker acknowledged, for assigned partitions."""
        return self.tracker.committed()

    # -- backpressure and rebalances -----------------------------------------------

    async def _apply_backpressure(self) -> None:
        cap = self._settings.kafka.max_pending_events
        pending = self.tracker.pending
        if pending >= cap:
            to_pause = set(self.tracker.assigned()) - self._paused
            if to_pause:
                if not self._paused:
                    self.stats.pauses += 1
                    log.info("pausing consumption: %d events pending (cap %d)", pending, cap)
                await self._source.pause(to_pause)
                self._paused |= to_pause
                self.metrics.paused.labels("backpressure").set(1)
        elif self._paused and pending <= cap * _RESUME_FRACTION:
            log.info("resuming consumption: %d events pending", pending)
            await self._source.resume(self._paused)
            self._paused.clear()
            self.metrics.paused.labels("backpressure").set(0)

    async def _on_assign(self, tps: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _fmt(tps))
        if tps and self.stats.first_assigned_at is None:
            self.stats.first_assigned_at = self._clock()
        self.tracker.assign(tps)
        self.metrics.rebalances.labels("assign").inc()
        self.metrics.partitions_assigned.set(len(self.tracker.assigned()))
        # Lag is end offset minus committed offset: learn where the group stands now,
        # so an idle partition reports its lag before this member commits anything.
        self._committed_at_assign.update(await self._source.committed(tps))

    async def _on_revoke(self, tps: list[TopicPartition]) -> None:
        """Hand partitions over cleanly: send what is open, wait, commit, forget."""
        log.info("partitions revoked: %s", _fmt(tps))
        batch = self._batcher.flush()
        if batch is not None:
            self._dispatch(batch)
        undelivered = await self._drain(self._settings.shutdown.drain_timeout_s)
        if undelivered:
            log.warning(
                "%d batches still undelivered at revoke; their events will be read again "
                "by the partitions' next owner",
                undelivered,
            )
        await self._commit(only=set(tps))
        self._forget(tps, "revoke")

    async def _on_lost(self, tps: list[TopicPartition]) -> None:
        # Another member may already own them: committing now could move its offsets.
        log.warning("partitions lost (not revoked cleanly): %s", _fmt(tps))
        self._forget(tps, "lost")

    def _forget(self, tps: list[TopicPartition], kind: str) -> None:
        self.tracker.revoke(tps)
        self._paused -= set(tps)
        for topic, partition in tps:
            self._committed_at_assign.pop((topic, partition), None)
            self.metrics.forget_partition(topic, partition)
        self.metrics.rebalances.labels(kind).inc()
        self.metrics.partitions_assigned.set(len(self.tracker.assigned()))
        if not self._paused:
            self.metrics.paused.labels("backpressure").set(0)

    # -- gauges and health -----------------------------------------------------------

    async def _refresh_gauges(self) -> None:
        """Per-partition committed offset, lag and pending records; idle partitions too."""
        metrics = self.metrics
        committed = {**self._committed_at_assign, **self.tracker.committed()}
        for tp, pending in self.tracker.pending_by_partition().items():
            topic, partition = tp[0], str(tp[1])
            metrics.pending_records.labels(topic, partition).set(pending)
            watermarks = await self._source.watermarks(tp)
            position = committed.get(tp)
            if position is not None:
                metrics.committed_offset.labels(topic, partition).set(position)
            if watermarks is not None:
                low, high = watermarks
                # Never committed: the group starts at the earliest offset (the low mark).
                metrics.consumer_lag.labels(topic, partition).set(
                    max(0, high - (position if position is not None else low))
                )

    def liveness(self) -> Check:
        if self._last_turn is None:
            return Check(True, "starting")
        limit = self._settings.shutdown.drain_timeout_s + _LIVENESS_MARGIN_S
        idle = self._clock() - self._last_turn
        if idle > limit:
            return Check(False, f"consume loop has not turned for {idle:.0f} s")
        return Check(True, "consume loop running")

    def readiness(self) -> Check:
        if self._failure is not None:
            return Check(False, "stopping on an error")
        if self._source.brokers_down:
            return Check(False, "Kafka brokers unreachable")
        if self._sink.auth_failing:
            return Check(False, "the API refuses the token or the URL (401/403/404)")
        assigned = len(self.tracker.assigned())
        if assigned:
            return Check(True, f"{assigned} partitions assigned")
        return Check(True, "waiting for a partition assignment")

    # -- shutdown ------------------------------------------------------------------

    async def _shutdown(self) -> None:
        batch = self._batcher.flush()
        if batch is not None:
            self._dispatch(batch)
        undelivered = await self._drain(self._settings.shutdown.drain_timeout_s)
        if undelivered:
            log.warning(
                "drain timeout: %d batches undelivered; they stay uncommitted and are "
                "delivered again after restart",
                undelivered,
            )
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._commit()
        await self._source.close()
        self._log_progress()

    def _log_progress(self) -> None:
        stats = self.stats
        log.info(
            "progress: %d consumed, %d delivered in %d batches, %d pending, %d in flight",
            stats.consumed,
            stats.delivered,
            stats.batches,
            self.tracker.pending,
            len(self._tasks),
        )


def _fmt(tps: list[TopicPartition]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "none"
