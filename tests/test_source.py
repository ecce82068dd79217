"""KafkaSource's own duties, around stand-in consumers (delivery is tested on a real broker)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.aio import AIOConsumer

from connector.adapters.kafka_source import KafkaSource
from connector.config import KafkaSettings
from connector.core.records import TopicPartition


class _LeavingConsumer:
    """Like AIOConsumer.close(): leaving the group runs the revoke callback first."""

    def __init__(self, _conf: dict[str, Any], executor: Any = None) -> None:
        self.committed: list[tuple[str, int, int]] = []
        self._on_revoke: Any = None

    async def subscribe(self, _topics: list[str], **callbacks: Any) -> None:
        self._on_revoke = callbacks["on_revoke"]

    async def close(self) -> None:
        await self._on_revoke(self, [KafkaTopicPartition("events", 0)])

    async def commit(self, offsets: list[Any], asynchronous: bool) -> list[Any]:
        assert asynchronous is False
        self.committed += [(tp.topic, tp.partition, tp.offset) for tp in offsets]
        return offsets


async def test_the_revoke_run_by_close_can_still_commit() -> None:
    # A member that leaves commits what it delivered since its last commit (e.g. after
    # a failed final commit) inside the revoke that leaving runs.
    consumers: list[_LeavingConsumer] = []

    def factory(conf: dict[str, Any], executor: Any) -> _LeavingConsumer:
        consumers.append(_LeavingConsumer(conf, executor))
        return consumers[-1]

    async def on_revoke(tps: list[TopicPartition]) -> None:
        await source.commit(dict.fromkeys(tps, 42))

    async def nothing(_tps: list[TopicPartition]) -> None:
        return None

    source = KafkaSource(
        KafkaSettings(topics=["events"]),
        on_assign=nothing,
        on_revoke=on_revoke,
        on_lost=nothing,
        consumer_factory=factory,
    )
    await source.start()
    await source.close()
    assert consumers[0].committed == [("events", 0, 42)]
    await source.close()  # a second close does nothing
    assert consumers[0].committed == [("events", 0, 42)]


class _CloseStuckInTheClient:
    """The librdkafka consumer, except that close() hangs (as with the brokers gone)
    until ``release`` is set or ``hang_s`` passed."""

    def __init__(self, real: Any, hang_s: float) -> None:
        self._real, self._hang_s = real, hang_s
        self.release, self.closed = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def close(self) -> None:
        self.release.wait(self._hang_s)
        try:
            self._real.close()
        finally:
            self.closed.set()


async def test_a_close_stuck_in_the_client_can_be_abandoned() -> None:
    # The shutdown gives the final commit and leaving the group a bounded time; when it
    # runs out, close() must give up at once rather than wait for the stuck thread.
    hang_s = 10.0
    stuck: list[_CloseStuckInTheClient] = []

    def factory(conf: dict[str, Any], executor: Any) -> AIOConsumer:
        consumer = AIOConsumer(conf, executor=executor)
        stuck.append(_CloseStuckInTheClient(consumer._consumer, hang_s))
        consumer._consumer = stuck[-1]
        return consumer

    async def nothing(_tps: list[TopicPartition]) -> None:
        return None

    source = KafkaSource(
        KafkaSettings(topics=["events"], bootstrap_servers="127.0.0.1:9"),
        on_assign=nothing,
        on_revoke=nothing,
        on_lost=nothing,
        consumer_factory=factory,
    )
    await source.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await source.close()
        gave_up_after_s = time.monotonic() - started
    finally:
        stuck[0].release.set()  # let the thread finish while the loop still runs
        await asyncio.to_thread(stuck[0].closed.wait, 30)
    assert gave_up_after_s < hang_s / 2
