"""``event-sink replay-dlq``: put dead letters back into their source topic.

Once the cause is fixed (a mapping, the API's metadata), the records the connector
dead-lettered can be re-injected: original key and value bytes, to the original topic (or
``--to-topic``), filtered by when they were dead-lettered and by stage. Each keeps its
uuid: a record whose uuid came from its original position carries it along in the
``event-sink.uuid`` header, which the connector honours.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from connector.adapters.dlq import H_OFFSET, H_PARTITION, H_STAGE, H_TOPIC, HEADER_PREFIX
from connector.config import Settings
from connector.core.errors import InfrastructureError
from connector.core.records import UUID_HEADER, fallback_uuid


class ReplayError(InfrastructureError):
    """The replay could not read or write the topics; nothing was committed past it."""

    retriable = False


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    since_ms: int | None = None  # dead-lettered at or after (the DLQ record's timestamp)
    until_ms: int | None = None  # dead-lettered before
    stages: frozenset[str] = frozenset()  # empty: every stage

    def accepts(self, timestamp_ms: int | None, stage: str | None) -> bool:
        if self.stages and stage not in self.stages:
            return False
        if timestamp_ms is None:
            return self.since_ms is None and self.until_ms is None
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms < self.until_ms


@dataclass
class ReplaySummary:
    read: int = 0
    replayed: int = 0
    skipped: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


def replay_headers(headers: list[tuple[str, bytes | None]]) -> tuple[str | None, list[Any]]:
    """The original topic, and the headers to send: the record's own (ours dropped), plus
    the uuid it had (pure)."""
    own = [(name, value) for name, value in headers if not name.startswith(HEADER_PREFIX)]
    found = {name: value for name, value in headers if name.startswith(HEADER_PREFIX)}
    topic = _text(found.get(H_TOPIC))
    partition, offset = _text(found.get(H_PARTITION)), _text(found.get(H_OFFSET))
    if not any(name == UUID_HEADER for name, _ in own) and topic and partition and offset:
        own.append((UUID_HEADER, fallback_uuid(topic, int(partition), int(offset)).encode()))
    return topic, own


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value else None


def _read_all(consumer: Consumer, topic: str, timeout_s: float) -> Iterator[Message]:
    """Every message in the topic up to its end offsets as of now."""
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
    ends: dict[int, int] = {}
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(
            KafkaTopicPartition(topic, partition), timeout=timeout_s
        )
        if high > low:
            ends[partition] = high
    if not ends:
        return
    consumer.assign([KafkaTopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    deadline = time.monotonic() + timeout_s
    while ends and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=1.0):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise ReplayError(f"reading {topic}: {error.str()}")
                continue
            deadline = time.monotonic() + timeout_s
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None or partition not in ends:
                continue
            if offset + 1 >= ends[partition]:
                del ends[partition]
            yield message
    if ends:
        raise ReplayError(f"reading {topic}: no progress for {timeout_s}s, stopped early")


def replay(
    settings: Settings,
    keep: ReplayFilter,
    *,
    to_topic: str | None = None,
    dry_run: bool = False,
    timeout_s: float = 30.0,
    progress: Callable[[str], None] = lambda _line: None,
) -> ReplaySummary:
    """Copy matching dead letters back; returns once every copy is acknowledged."""
    if settings.dlq.topic is None:
        raise ValueError("dlq.topic is not set: there is no dead-letter topic to replay")
    connection = dict(settings.kafka.properties)
    connection["bootstrap.servers"] = settings.kafka.bootstrap_servers
    consumer = Consumer(
        {
            **connection,
            "group.id": f"event-sink-replay-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    producer = Producer({**connection, "enable.idempotence": True, "acks": "all"})
    summary = ReplaySummary()
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    try:
        for message in _read_all(consumer, settings.dlq.topic, timeout_s):
            summary.read += 1
            headers = [
                (str(header[0]), header[1] if isinstance(header[1], bytes) else None)
                for header in message.headers() or []
            ]
            stage = _text(dict(headers).get(H_STAGE))
            timestamp_type, timestamp = message.timestamp()
            if not keep.accepts(timestamp if timestamp_type else None, stage):
                summary.skipped += 1
                continue
            original_topic, send_headers = replay_headers(headers)
            target = to_topic or original_topic
            if target is None:
                summary.skipped += 1
                progress(f"skipped a record without {H_TOPIC} at offset {message.offset()}")
                continue
            summary.replayed += 1
            summary.by_topic[target] = summary.by_topic.get(target, 0) + 1
            if not dry_run:
                producer.produce(
                    target,
                    key=message.key(),
                    value=message.value(),
                    headers=send_headers,
                    on_delivery=delivered,
                )
                producer.poll(0)
        remaining = producer.flush(timeout_s)
    finally:
        consumer.close()
    if remaining or failures:
        raise ReplayError(
            f"replay incomplete: {remaining} unacknowledged, errors: {failures[:3]}; "
            "records may have been replayed in part (their uuids make repeats recognisable)"
        )
    return summary


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch milliseconds nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
