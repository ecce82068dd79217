"""KafkaSource's own duties, around a stand-in consumer (delivery is tested on a real broker)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition as KafkaTopicPartition

from connector.config import KafkaSettings
from connector.records import TopicPartition
from connector.source import KafkaSource


class _LeavingConsumer:
    """Like AIOConsumer.close(): leaving the group runs the revoke callback first."""

    def __init__(self, _conf: dict[str, Any]) -> None:
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

    def factory(conf: dict[str, Any]) -> _LeavingConsumer:
        consumers.append(_LeavingConsumer(conf))
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
