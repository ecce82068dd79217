"""The Kafka side: the only importer of confluent_kafka's consumer.

Consumer group with cooperative-sticky assignment, auto commit and auto offset store
off, earliest reset. Offsets are committed only with explicit positions that the offset
tracker handed out, synchronously, so a commit is known to have landed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.aio import AIOConsumer

from connector.config import KafkaSettings
from connector.core.errors import InfrastructureError
from connector.core.records import SourceRecord, TopicPartition, message_record

log = logging.getLogger(__name__)

RebalanceCallback = Callable[[list[TopicPartition]], Awaitable[None]]
# (acknowledged positions, failed partitions with the reason) of one asynchronous commit.
CommitCallback = Callable[[dict[TopicPartition, int], dict[TopicPartition, str]], None]


class SourceError(InfrastructureError):
    """The consumer hit an error it cannot recover from."""

    retriable = False


class CommitError(InfrastructureError):
    """The broker did not accept a commit; the positions stay uncommitted."""


class ConsumerFactory(Protocol):
    """Builds the consumer from librdkafka settings and the executor its blocking calls
    run in, as ``AIOConsumer(conf, executor=executor)``; tests may wrap the real one."""

    def __call__(self, conf: dict[str, Any], /, *, executor: Executor) -> Any: ...


# Threads for the consumer's blocking calls. AIOConsumer serializes them, but a rebalance
# callback that commits is a re-entrant call and needs a second thread; more are spare.
_CLIENT_THREADS = 4


def consumer_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka settings: the guarantee's settings last, so nothing overrides them."""
    conf: dict[str, Any] = {
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": "earliest",
        # A rebalance reaches a member with its next heartbeat, and a cooperative one
        # takes two rounds: at the client's 3 s default, adding a member (a worker of
        # `workers: N`, a new pod) stalls the partitions that move for about 6 s.
        "heartbeat.interval.ms": 500,
        # librdkafka prefetches up to 64 MiB by default. 4 MiB is still about a second of
        # work at 20,000 records a second, and it is cheaper than 16 MiB: the queue stays
        # in memory already touched, where 16 MiB kept faulting in fresh pages (librdkafka's
        # fetch thread: 0.6 s against 0.3 s of CPU per 200,000 records; peak RSS 142 MiB
        # against 107 MiB in the benchmark's backlog).
        "queued.max.messages.kbytes": 4096,
    }
    conf.update(settings.properties)
    conf.update(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    return conf


def _tps(partitions: Iterable[Any]) -> list[TopicPartition]:
    return [(p.topic, p.partition) for p in partitions]


class KafkaSource:
    """Consumes records, pauses/resumes partitions, commits given positions."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
        on_commit: CommitCallback = lambda _done, _failed: None,
        consumer_factory: ConsumerFactory = AIOConsumer,
    ) -> None:
        self._settings = settings
        self._callbacks = (on_assign, on_revoke, on_lost)
        self._factory = consumer_factory
        self._on_commit_result = on_commit
        self._consumer: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._reported: set[tuple[int, str]] = set()
        # Set by the client's "all brokers down" error, cleared by any broker answer.
        self.brokers_down = False

    async def start(self) -> None:
        conf = consumer_config(self._settings)
        conf["error_cb"] = self._on_error
        conf["on_commit"] = self._on_commit
        # librdkafka's own log lines go through Python logging, so through the redactor.
        conf["logger"] = logging.getLogger("librdkafka")
        # Ours, not AIOConsumer's: an AIOConsumer that owns its executor joins it at the end
        # of close(), so a close stuck in librdkafka (brokers gone) could not be abandoned
        # when the shutdown's leave budget runs out; it would hold the process.
        self._executor = ThreadPoolExecutor(_CLIENT_THREADS, thread_name_prefix="kafka-client")
        self._consumer = self._factory(conf, executor=self._executor)
        on_assign, on_revoke, on_lost = self._callbacks

        async def assigned(_consumer: Any, partitions: list[Any]) -> None:
            await on_assign(_tps(partitions))

        async def revoked(_consumer: Any, partitions: list[Any]) -> None:
            await on_revoke(_tps(partitions))

        async def lost(_consumer: Any, partitions: list[Any]) -> None:
            await on_lost(_tps(partitions))

        await self._consumer.subscribe(
            list(self._settings.topics), on_assign=assigned, on_revoke=revoked, on_lost=lost
        )

    async def _on_error(self, error: KafkaError) -> None:
        # AIOConsumer runs client callbacks as coroutines on the event loop.
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_down = True
        if error.fatal():
            log.error("fatal Kafka client error: %s", error.str())
        else:
            log.warning("Kafka client error: %s", error.str())

    async def consume(self, max_messages: int, timeout_s: float) -> list[SourceRecord]:
        """Up to ``max_messages`` records; per-message errors are logged or raised."""
        messages = await self.consume_messages(max_messages, timeout_s)
        records: list[SourceRecord] = []
        append = records.append  # per message: keep the loop lean
        for message in messages:
            error = message.error()
            if error is not None:
                self._message_error(error)
                continue
            append(message_record(message))
        return records

    async def consume_messages(self, max_messages: int, timeout_s: float) -> list[Any]:
        """Up to ``max_messages`` of the consumer's own messages, errors among them (the
        native path reads them as they are; hand the errors to :meth:`report_errors`)."""
        try:
            messages: list[Any] = await self._consumer.consume(
                num_messages=max_messages, timeout=timeout_s
            )
        except KafkaException as exc:  # raised for fatal client errors only
            raise SourceError(f"consumer failed: {exc}") from None
        if messages:
            self.brokers_down = False
        return messages

    def report_errors(self, messages: Iterable[Any]) -> None:
        """Log (once each) or raise the errors these messages carry."""
        for message in messages:
            self._message_error(message.error())

    def _message_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise SourceError(f"fatal consumer error: {error.str()}")
        # e.g. a subscribed topic that does not exist yet: say it once, keep polling.
        key = (error.code(), error.str())
        if key not in self._reported:
            self._reported.add(key)
            log.warning("consumer error (will keep polling): %s", error.str())

    async def _on_commit(self, error: KafkaError | None, partitions: list[Any]) -> None:
        # Served by consume(): the outcome of an asynchronous commit, per partition.
        done: dict[TopicPartition, int] = {}
        failed: dict[TopicPartition, str] = {}
        for tp in partitions or []:
            if tp.error is not None:
                failed[(tp.topic, tp.partition)] = tp.error.str()
            elif error is not None:
                failed[(tp.topic, tp.partition)] = error.str()
            else:
                done[(tp.topic, tp.partition)] = tp.offset
        self._on_commit_result(done, failed)

    async def commit_async(self, positions: Mapping[TopicPartition, int]) -> None:
        """Send a commit and return at once; its outcome comes to ``on_commit`` later, from
        ``consume``. The run loop never waits on the group coordinator this way."""
        offsets = [KafkaTopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            await self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            raise CommitError(str(exc.args[0].str() if exc.args else exc)) from None

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        """Commit these positions synchronously; CommitError if the broker refused."""
        offsets = [KafkaTopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            result = await self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise CommitError(str(exc.args[0].str() if exc.args else exc)) from None
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            raise CommitError(
                ", ".join(f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in failed)
            )

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed positions on the broker (partitions without one omitted)."""
        request = [KafkaTopicPartition(t, p) for t, p in tps]
        try:
            found = await self._consumer.committed(request, timeout=10)
        except KafkaException as exc:
            log.warning("could not read committed offsets: %s", exc)
            return {}
        self.brokers_down = False
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}

    async def watermarks(self, tp: TopicPartition) -> tuple[int, int] | None:
        """(low, high) offsets of a partition: from the last fetch if known, else asked."""
        request = KafkaTopicPartition(*tp)
        try:
            found = await self._consumer.get_watermark_offsets(request, cached=True)
            if found is None or found[1] < 0:
                found = await self._consumer.get_watermark_offsets(request, timeout=2, cached=False)
                if found is not None:
                    self.brokers_down = False
        except KafkaException:
            return None
        if found is None or found[1] < 0:
            return None
        return int(found[0]), int(found[1])

    async def partition_count(self, topics: Iterable[str]) -> int | None:
        """Partitions of these topics together, from the brokers' metadata (a pattern:
        of every topic it matches); None when a topic is unknown or the brokers do not
        answer."""
        total = 0
        for topic in topics:
            pattern = topic.startswith("^")  # a regex subscription (a route's topic_pattern)
            try:
                metadata = await self._consumer.list_topics(None if pattern else topic, timeout=5)
            except KafkaException:
                return None
            if pattern:
                total += sum(
                    len(found.partitions)
                    for name, found in metadata.topics.items()
                    if re.search(topic, name) and found.error is None
                )
                continue
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                return None
            total += len(found.partitions)
        return total

    async def pause(self, tps: Iterable[TopicPartition]) -> None:
        await self._consumer.pause([KafkaTopicPartition(t, p) for t, p in tps])

    async def resume(self, tps: Iterable[TopicPartition]) -> None:
        await self._consumer.resume([KafkaTopicPartition(t, p) for t, p in tps])

    async def close(self) -> None:
        """Leave the group (this runs the revoke callback for what is still assigned).

        The consumer stays in place until close returns: the revoke callback it runs
        commits what was delivered since the last commit, through this source.
        """
        if self._consumer is not None and not self._closing:
            self._closing = True
            try:
                await self._consumer.close()
            finally:
                self._consumer = None
                if self._executor is not None:
                    # Not waiting: a call cancelled by a timeout may still be stuck in a
                    # thread; the process then exits without joining it (connector/ops/cli.py).
                    self._executor.shutdown(wait=False)
