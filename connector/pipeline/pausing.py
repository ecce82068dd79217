"""Pausing: the only caller of the consumer's pause and resume.

Backpressure (pending caps and the API's halt) and the Schema Registry gate each ask for
partitions to wait under a reason of their own; a partition is paused while any reason
holds it and resumed when none does. One owner, so no stage resumes what another holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from connector.core.records import TopicPartition


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
