"""Pausing: the only caller of the consumer's pause and resume.

Backpressure (pending caps and the API's halt) and the Schema Registry gate each ask for
partitions to wait under a reason of their own; a partition is paused while any reason
holds it and resumed when none does. One owner, so no stage resumes what another holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from connector.core import backpressure
from connector.core.offsets import OffsetTracker
from connector.core.records import TopicPartition
from connector.metrics import Metrics

log = logging.getLogger(__name__)

BACKPRESSURE = "backpressure"  # the reason of the pending caps and of the API's halt


class Pauser(Protocol):
    async def pause(self, tps: Iterable[TopicPartition]) -> None: ...
    async def resume(self, tps: Iterable[TopicPartition]) -> None: ...


class Pausing:
    def __init__(self) -> None:
        self._consumer: Pauser | None = None
        self._by_reason: dict[str, set[TopicPartition]] = {}
        self._paused: set[TopicPartition] = set()  # what the consumer has paused

    def attach(self, consumer: Pauser) -> None:
        """The source pauses; it is built after this room (its gate asks this room)."""
        self._consumer = consumer

    @property
    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self._paused)

    def held(self, reason: str) -> frozenset[TopicPartition]:
        return frozenset(self._by_reason.get(reason, ()))

    async def want(self, reason: str, tps: Iterable[TopicPartition]) -> None:
        """Replace what ``reason`` holds."""
        self._by_reason[reason] = set(tps)
        await self._apply()

    async def hold(self, reason: str, tps: Iterable[TopicPartition]) -> None:
        """Add to what ``reason`` holds."""
        self._by_reason.setdefault(reason, set()).update(tps)
        await self._apply()

    async def release(self, reason: str) -> None:
        self._by_reason.pop(reason, None)
        await self._apply()

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Revoked or lost: the consumer forgets their pause state, so do we."""
        gone = set(tps)
        self._paused -= gone
        for held in self._by_reason.values():
            held -= gone

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Newly assigned: resumed, unless a reason holds them. librdkafka keeps a
        partition's pause through its revoke and a later assignment to this member
        (librdkafka #1849), and :meth:`forget` dropped it from ours: without this, a
        partition paused when it was revoked would never be fetched here again."""
        if self._consumer is None:
            raise RuntimeError("the pausing room has no consumer attached")
        held: set[TopicPartition] = set().union(*self._by_reason.values())
        fresh = [tp for tp in tps if tp not in held and tp not in self._paused]
        if fresh:
            await self._consumer.resume(fresh)

    async def _apply(self) -> None:
        if self._consumer is None:
            raise RuntimeError("the pausing room has no consumer attached")
        target: set[TopicPartition] = set().union(*self._by_reason.values())
        to_pause, to_resume = target - self._paused, self._paused - target
        if to_pause:
            await self._consumer.pause(to_pause)
            self._paused |= to_pause
        if to_resume:
            await self._consumer.resume(to_resume)
            self._paused -= to_resume


class Backpressure:
    """Asks the pausing room to hold what the pending caps (or the API's halt) say must
    wait; see :func:`connector.core.backpressure.decide`."""

    def __init__(self, pausing: Pausing, caps: backpressure.PendingCaps, metrics: Metrics) -> None:
        self._pausing = pausing
        self._caps = caps
        self._metrics = metrics
        self._over_total_cap = False

    async def apply(self, tracker: OffsetTracker, *, halted: bool, throttled: bool) -> None:
        """Hold or release partitions, and show why consumption waits."""
        started = await self._decide(tracker, halted=halted)
        if started:
            self._metrics.backpressure_pauses.inc()
        held = bool(self._pausing.held(BACKPRESSURE))
        self._metrics.paused.labels("backpressure").set(1 if held and not halted else 0)
        self._metrics.paused.labels("auth").set(1 if halted else 0)
        self._metrics.paused.labels("throttle").set(1 if throttled else 0)

    async def _decide(self, tracker: OffsetTracker, *, halted: bool) -> bool:
        """True when consumption just started to wait."""
        pending = tracker.pending
        before = self._pausing.held(BACKPRESSURE)
        decision = backpressure.decide(
            self._caps,
            pending_total=pending,
            pending_by_partition=tracker.pending_by_partition(),
            assigned=tracker.assigned(),
            paused=before,
            over_total_cap=self._over_total_cap,
            halted=halted,
        )
        self._over_total_cap = decision.over_total_cap
        if decision.wanted == before:
            return False
        started = bool(decision.wanted) and not before
        if started:
            why = "the API refuses the token" if halted else f"{pending} events pending"
            log.info("pausing consumption of %d partitions: %s", len(decision.wanted), why)
        elif before and not decision.wanted:
            log.info("resuming consumption: %d events pending", pending)
        await self._pausing.want(BACKPRESSURE, decision.wanted)
        return started
