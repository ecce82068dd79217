"""The pausing room: one owner of pause/resume, several reasons to wait."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from connector.core.records import TopicPartition
from connector.pipeline.pausing import Pausing

A, B, C = ("t", 0), ("t", 1), ("t", 2)


class Consumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, set[TopicPartition]]] = []

    async def pause(self, tps: Iterable[TopicPartition]) -> None:
        self.calls.append(("pause", set(tps)))

    async def resume(self, tps: Iterable[TopicPartition]) -> None:
        self.calls.append(("resume", set(tps)))


async def test_a_partition_resumes_only_when_no_reason_holds_it() -> None:
    consumer, pausing = Consumer(), Pausing()
    pausing.attach(consumer)
    await pausing.want("backpressure", {A, B})
    await pausing.hold("registry", {B, C})
    await pausing.release("registry")  # B stays: backpressure still holds it
    assert pausing.paused == {A, B}
    await pausing.want("backpressure", set())
    assert pausing.paused == set()
    assert consumer.calls == [
        ("pause", {A, B}),
        ("pause", {C}),
        ("resume", {C}),
        ("resume", {A, B}),
    ]


async def test_revoked_partitions_are_forgotten_and_nothing_is_called_twice() -> None:
    consumer, pausing = Consumer(), Pausing()
    pausing.attach(consumer)
    await pausing.hold("registry", {A, B})
    await pausing.hold("registry", {A})  # already paused: no call
    pausing.forget([A])
    await pausing.release("registry")
    assert consumer.calls == [("pause", {A, B}), ("resume", {B})]


async def test_without_a_consumer_it_says_so() -> None:
    with pytest.raises(RuntimeError, match="no consumer"):
        await Pausing().hold("registry", {A})


async def test_a_partition_assigned_again_is_resumed_unless_a_reason_holds_it() -> None:
    """librdkafka keeps a pause through a revoke and a later assignment to this member, so
    a partition revoked while paused would never be fetched again: assigning resumes it."""
    consumer, pausing = Consumer(), Pausing()
    pausing.attach(consumer)
    await pausing.want("backpressure", {A, B})
    pausing.forget([A, B])  # revoked while paused: the client still holds them paused
    await pausing.hold("registry", {B})
    await pausing.assigned([A, B, C])
    assert consumer.calls[-1] == ("resume", {A, C})
    assert pausing.paused == {B}
