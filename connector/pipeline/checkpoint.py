"""The checkpoint: the one owner of the offset tracker, of commit scheduling, and of what
an assignment, a revoke and a loss do to offsets (Benthos' checkpointer, quix-streams'
checkpoint). The pipeline hands it records to track and receipts to resolve; nothing else
commits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from connector.adapters.kafka_source import CommitError
from connector.core.offsets import OffsetTracker, Receipt
from connector.core.records import SourceRecord, TopicPartition
from connector.metrics import Metrics

log = logging.getLogger(__name__)

# An asynchronous commit is always answered (success or error); if no answer came in this
# long, something is wrong with the client, and another commit may go out.
_COMMIT_STALL_S = 300.0
# When caught up, commit at once, but not more often than this.
_IDLE_COMMIT_GAP_S = 0.2
_GAUGE_INTERVAL_S = 2.0


class Committer(Protocol):
    """What the checkpoint needs of the Kafka source."""

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None: ...
    async def commit_async(self, positions: Mapping[TopicPartition, int]) -> None: ...
    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def watermarks(self, tp: TopicPartition) -> tuple[int, int] | None: ...


async def _nothing_to_unpause(_tps: list[TopicPartition]) -> None:
    return None


class Checkpoint:
    """Tracks what was read, commits what was delivered, follows the assignment."""

    def __init__(
        self, metrics: Metrics, clock: Callable[[], float], *, commit_interval_s: float
    ) -> None:
        self.tracker = OffsetTracker()
        self.metrics = metrics
        self._clock = clock
        self._committer: Committer | None = None
        self._drain: Callable[[], Awaitable[int]] | None = None
        self._release: Callable[[list[TopicPartition]], None] = lambda _tps: None
        self._unpause: Callable[[list[TopicPartition]], Awaitable[None]] = _nothing_to_unpause
        self._rebalanced: list[Callable[[int], Awaitable[None]]] = []
        # Committed positions found on the broker at assignment, until we commit our own.
        self._committed_at_assign: dict[TopicPartition, int] = {}
        self._sent_at: float | None = None  # the asynchronous commit awaiting its answer
        self.failing = False  # the last commit answer was a failure
        self.first_assigned_at: float | None = None  # when this member first got partitions
        self._every_s = commit_interval_s
        self._idle_gap_s = min(commit_interval_s, _IDLE_COMMIT_GAP_S)
        self.start()

    def attach(
        self,
        committer: Committer,
        *,
        drain: Callable[[], Awaitable[int]],
        release: Callable[[list[TopicPartition]], None],
        unpause: Callable[[list[TopicPartition]], Awaitable[None]],
    ) -> None:
        """The source commits; it is built after the checkpoint (it calls back into it).
        A revoke first runs ``drain`` (send what is open, wait for what is in flight);
        ``release`` tells the pausing room which partitions are no longer ours, ``unpause``
        which are ours again (it resumes what the client may still hold paused)."""
        self._committer = committer
        self._drain = drain
        self._release = release
        self._unpause = unpause

    def on_rebalanced(self, listener: Callable[[int], Awaitable[None]]) -> None:
        """``listener(partitions now owned)`` after every assignment change."""
        self._rebalanced.append(listener)

    async def _tell_rebalanced(self) -> None:
        owned = len(self.tracker.assigned())
        for listener in self._rebalanced:
            await listener(owned)

    def start(self) -> None:
        """Start the commit and gauge schedules (the source has started)."""
        now = self._clock()
        self._next_commit, self._last_commit, self._next_gauges = now + self._every_s, now, now

    async def tick(self, *, consumed: bool, brokers_down: bool) -> None:
        """One turn of the loop: the periodic commit, the commit at the end of a backlog,
        the partition gauges."""
        now = self._clock()
        # Also commit as soon as the consumer is caught up (nothing came back): the end of
        # a backlog is committed at once, not up to an interval later. Not while commits
        # fail or the brokers are away: then the interval rules, and nothing piles up in
        # the client for the shutdown to wait on.
        caught_up = (
            not consumed
            and now >= self._last_commit + self._idle_gap_s
            and not self.failing
            and not brokers_down
        )
        if now >= self._next_commit or (caught_up and self.tracker.committable()):
            await self.commit_in_background()
            self._next_commit, self._last_commit = now + self._every_s, now
        if now >= self._next_gauges:
            await self.refresh_gauges()
            self._next_gauges = now + _GAUGE_INTERVAL_S

    def _source(self) -> Committer:
        if self._committer is None:
            raise RuntimeError("the checkpoint has no source attached")
        return self._committer

    async def commit_in_background(self) -> None:
        """The periodic commit: sent asynchronously, acknowledged in :meth:`acknowledged`.

        One at a time: a commit is last-write-wins on the broker, and commits queued during
        an outage are answered (and applied) in no promised order, so an older position
        could land after a newer one and move the group back.
        """
        now = self._clock()
        if self._sent_at is not None and now - self._sent_at < _COMMIT_STALL_S:
            return
        positions = self.tracker.committable()
        if not positions:
            return
        _log_commit("committing offsets (asynchronously)", positions)
        try:
            await self._source().commit_async(positions)
        except CommitError as exc:
            self.acknowledged({}, dict.fromkeys(positions, str(exc)))
            return
        self._sent_at = now

    def acknowledged(
        self, done: dict[TopicPartition, int], failed: dict[TopicPartition, str]
    ) -> None:
        if self._sent_at is not None:
            self.metrics.commit_duration.observe(self._clock() - self._sent_at)
        self._sent_at = None
        self.failing = bool(failed) and not done
        if failed:
            self.metrics.offset_commits.labels("failure").inc()
            reasons = sorted(set(failed.values()))
            log.warning("offset commit failed, will retry: %s", "; ".join(reasons))
        if done:
            self.tracker.mark_committed(done)
            self.metrics.offset_commits.labels("success").inc()
            _log_commit("offsets committed", done)

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        """A synchronous commit (revoke, shutdown): returns once the broker answered."""
        positions = self.tracker.committable()
        if only is not None:
            positions = {tp: pos for tp, pos in positions.items() if tp in only}
        if not positions:
            return
        _log_commit("committing offsets", positions)
        self._sent_at = self._clock()  # timed like an asynchronous one, in acknowledged()
        try:
            await self._source().commit(positions)
        except CommitError as exc:
            self.acknowledged({}, dict.fromkeys(positions, str(exc)))
            return
        self.acknowledged(dict(positions), {})

    def track(self, records: list[SourceRecord]) -> dict[TopicPartition, Receipt]:
        """Hand the records' offsets to the tracker and count them, per partition;
        returns each partition's receipt. Called before any record is decoded, so a record
        that stops the connector leaves itself and those after it pending (uncommitted)."""
        runs: dict[TopicPartition, list[int]] = {}
        for record in records:
            tp = (record.topic, record.partition)
            offsets = runs.get(tp)
            if offsets is None:
                runs[tp] = offsets = []
            offsets.append(record.offset)
        return self.track_runs(runs.items())

    def track_runs(
        self, runs: Iterable[tuple[TopicPartition, list[int]]]
    ) -> dict[TopicPartition, Receipt]:
        """``track`` for runs of one partition's offsets, in read order (a partition may
        come in more than one run)."""
        receipts = {}
        for tp, offsets in runs:
            receipts[tp] = self.tracker.track_run(tp, offsets)
            self.metrics.records_consumed.labels(tp[0], str(tp[1])).inc(len(offsets))
        return receipts

    def committed(self) -> dict[TopicPartition, int]:
        """Positions the broker acknowledged, for assigned partitions."""
        return self.tracker.committed()

    # -- rebalances: the source's callbacks ------------------------------------------

    async def on_assign(self, tps: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", fmt_partitions(tps))
        if tps and self.first_assigned_at is None:
            self.first_assigned_at = self._clock()
        await self.assign(tps)
        await self._tell_rebalanced()

    async def on_revoke(self, tps: list[TopicPartition]) -> None:
        """Hand partitions over cleanly: send what is open, wait, commit, forget."""
        log.info("revoking partitions: %s", fmt_partitions(tps))
        undelivered = await self._drain() if self._drain is not None else 0
        if undelivered:
            log.warning(
                "%d batches still undelivered at revoke; their events will be read again "
                "by the partitions' next owner",
                undelivered,
            )
        await self.commit(only=set(tps))
        log.info("partitions revoked: %s", fmt_partitions(tps))
        self.forget(tps, "revoke")
        await self._tell_rebalanced()

    async def on_lost(self, tps: list[TopicPartition]) -> None:
        # Another member may already own them: committing now could move its offsets.
        log.warning("partitions lost (not revoked cleanly): %s", fmt_partitions(tps))
        self.forget(tps, "lost")
        await self._tell_rebalanced()

    async def assign(self, tps: list[TopicPartition]) -> None:
        self.tracker.assign(tps)
        if tps:
            await self._unpause(tps)
        self.metrics.rebalances.labels("assign").inc()
        self.metrics.partitions_assigned.set(len(self.tracker.assigned()))
        # Lag is end offset minus committed offset: learn where the group stands now,
        # so an idle partition reports its lag before this member commits anything.
        self._committed_at_assign.update(await self._source().committed(tps))

    def forget(self, tps: list[TopicPartition], kind: str) -> None:
        """Revoked or lost: later resolutions of their records are ignored."""
        self.tracker.revoke(tps)
        self._release(tps)
        for topic, partition in tps:
            self._committed_at_assign.pop((topic, partition), None)
            self.metrics.forget_partition(topic, partition)
        self.metrics.rebalances.labels(kind).inc()
        self.metrics.partitions_assigned.set(len(self.tracker.assigned()))

    async def refresh_gauges(self) -> None:
        """Per-partition committed offset, lag and pending records; idle partitions too."""
        metrics = self.metrics
        committed = {**self._committed_at_assign, **self.tracker.committed()}
        for tp, pending in self.tracker.pending_by_partition().items():
            topic, partition = tp[0], str(tp[1])
            metrics.pending_records.labels(topic, partition).set(pending)
            watermarks = await self._source().watermarks(tp)
            position = committed.get(tp)
            if position is not None:
                metrics.committed_offset.labels(topic, partition).set(position)
            if watermarks is not None:
                low, high = watermarks
                # Never committed: the group starts at the earliest offset (the low mark).
                metrics.consumer_lag.labels(topic, partition).set(
                    max(0, high - (position if position is not None else low))
                )


def fmt_partitions(tps: list[TopicPartition]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "none"


def _log_commit(what: str, positions: dict[TopicPartition, int]) -> None:
    if log.isEnabledFor(logging.DEBUG):
        text = ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(positions.items()))
        log.debug("%s: %s", what, text)
