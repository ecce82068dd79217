"""Small frozen values passed between the stages."""

from __future__ import annotations

from dataclasses import dataclass

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka message as the source hands it on."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


# Set by `event-sink replay-dlq` on a re-injected record whose uuid was derived from its
# original position, so the replayed event keeps that uuid.
UUID_HEADER = "event-sink.uuid"


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """One API event, already JSON-encoded, and where it came from."""

    topic: str
    partition: int
    offset: int
    epoch: int  # the offset tracker's assignment epoch of the partition when it was read
    body: bytes
    timestamp_ms: int | None = None  # the Kafka record's timestamp, for end-to-end latency
    record: SourceRecord | None = None  # the original message, for the dead-letter topic


@dataclass(frozen=True, slots=True)
class Batch:
    """Events that go out in one request, in the order they were consumed."""

    batch_id: int
    events: tuple[EncodedEvent, ...]
    size_bytes: int  # the exact size of the request body
