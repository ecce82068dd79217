"""Backpressure decisions: which partitions must wait. Pure; the pipeline applies them.

A partition waits while its own pending records are at their cap; every partition waits
while the total is at its cap or while the API halts every sender. Each resumes only once
its pending count drained to a fraction of the cap, so it does not flap between pause and
resume on every batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from connector.core.records import TopicPartition

RESUME_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class PendingCaps:
    total: int
    per_partition: int
    resume_fraction: float = RESUME_FRACTION


@dataclass(frozen=True, slots=True)
class Decision:
    wanted: frozenset[TopicPartition]  # the partitions that should be paused now
    over_total_cap: bool  # remembered for the next decision (hysteresis)


def decide(
    caps: PendingCaps,
    *,
    pending_total: int,
    pending_by_partition: Mapping[TopicPartition, int],
    assigned: Iterable[TopicPartition],
    paused: frozenset[TopicPartition] | set[TopicPartition],
    over_total_cap: bool,
    halted: bool,
) -> Decision:
    """The partitions to hold, given what is pending and what is paused already."""
    if pending_total >= caps.total:
        over_total_cap = True
    elif pending_total <= caps.total * caps.resume_fraction:
        over_total_cap = False
    if halted or over_total_cap:
        return Decision(frozenset(assigned), over_total_cap)
    cap, resume_at = caps.per_partition, caps.per_partition * caps.resume_fraction
    wanted = frozenset(
        tp
        for tp, count in pending_by_partition.items()
        if count >= cap or (tp in paused and count > resume_at)
    )
    return Decision(wanted, over_total_cap)


class PartitionHolds(Protocol):
    """How a stage asks for partitions to wait (the pipeline's pausing room answers):
    each reason holds its own set; a partition is paused while any reason holds it."""

    async def hold(self, reason: str, tps: Iterable[TopicPartition]) -> None: ...

    async def release(self, reason: str) -> None: ...
