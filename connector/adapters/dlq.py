"""The dead-letter topic: records that cannot be delivered as data, with why, in headers.

A record written here keeps its original key and value bytes. Its offset counts as done
only once the broker acknowledged the write (idempotent producer, ``acks=all``); a write
that fails is retried, forever, with backoff: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import AclOperation  # not re-exported for type checkers

from connector.config import KafkaSettings
from connector.config_routes import DEFAULT_ROUTE
from connector.core.backoff import Backoff
from connector.core.errors import Stage
from connector.core.records import SourceRecord
from connector.metrics import Metrics

log = logging.getLogger(__name__)

HEADER_PREFIX = "event-sink."
# Header names, also read back by `event-sink replay-dlq`.
H_TOPIC = HEADER_PREFIX + "original.topic"
H_PARTITION = HEADER_PREFIX + "original.partition"
H_OFFSET = HEADER_PREFIX + "original.offset"
H_TIMESTAMP = HEADER_PREFIX + "original.timestamp"
H_STAGE = HEADER_PREFIX + "stage"
H_ERROR_CLASS = HEADER_PREFIX + "error.class"
H_ERROR_MESSAGE = HEADER_PREFIX + "error.message"
H_HTTP_STATUS = HEADER_PREFIX + "http.status"
H_HTTP_CODE = HEADER_PREFIX + "http.body_code"
H_HTTP_ERROR_CODE = HEADER_PREFIX + "http.error_code"
H_HTTP_MSG = HEADER_PREFIX + "http.msg"
H_ATTEMPTS = HEADER_PREFIX + "attempts"
H_ROUTE = HEADER_PREFIX + "route"

_MESSAGE_LIMIT = 300


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a record is dead-lettered. ``message`` names fields, never their values."""

    stage: Stage
    error_class: str
    message: str
    status: int | None = None
    body_code: str | None = None
    attempts: int = 0
    error_code: str | None = None  # the answer's errorCode (at most 64 characters)
    api_message: str | None = None  # the answer's msg: may echo field values, so headers only


def dead_letter_headers(
    record: SourceRecord, failure: Failure, route: str = DEFAULT_ROUTE
) -> list[tuple[str, str | bytes | None]]:
    """The record's own headers, then ours (pure; tested on its own)."""
    headers: list[tuple[str, str | bytes | None]] = list(record.headers)
    ours: list[tuple[str, object]] = [
        (H_ROUTE, route),
        (H_TOPIC, record.topic),
        (H_PARTITION, record.partition),
        (H_OFFSET, record.offset),
        (H_TIMESTAMP, record.timestamp_ms if record.timestamp_ms is not None else ""),
        (H_STAGE, failure.stage),
        (H_ERROR_CLASS, failure.error_class),
        (H_ERROR_MESSAGE, failure.message[:_MESSAGE_LIMIT]),
        (H_ATTEMPTS, failure.attempts),
    ]
    if failure.status is not None:
        ours.append((H_HTTP_STATUS, failure.status))
    if failure.body_code is not None:
        ours.append((H_HTTP_CODE, failure.body_code))
    if failure.error_code is not None:
        ours.append((H_HTTP_ERROR_CODE, failure.error_code))
    if failure.api_message is not None:
        ours.append((H_HTTP_MSG, failure.api_message[:_MESSAGE_LIMIT]))
    headers.extend((name, str(value).encode()) for name, value in ours)
    return headers


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Producer settings: the same brokers and security settings as the consumer, the
    guarantee's settings last so nothing overrides them."""
    conf: dict[str, Any] = dict(kafka.properties)
    conf.update(
        {"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": True, "acks": "all"}
    )
    return conf


@dataclass(frozen=True, slots=True)
class TopicCheck:
    """What the brokers say of the dead-letter topic: usable, wrong for good (``fatal``:
    start-up stops) or not known yet (``retry``: brokers unreachable)."""

    fatal: str | None = None
    retry: str | None = None


_WRITABLE = {AclOperation.WRITE, AclOperation.ALL}


def check_topic(admin: AdminClient, topic: str, timeout_s: float) -> TopicCheck:
    """Whether ``topic`` exists and this principal may write to it (blocking).

    DescribeTopics never creates a topic, and its authorized operations are what the
    broker's ACLs grant us; without an authorizer every operation is granted."""
    futures = admin.describe_topics(
        TopicCollection([topic]), request_timeout=timeout_s, include_authorized_operations=True
    )
    try:
        description = futures[topic].result(timeout=timeout_s + 5)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else KafkaError(KafkaError._FAIL)
        code = error.code() if isinstance(error, KafkaError) else None
        if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return TopicCheck(
                fatal=f"dlq.topic {topic!r} does not exist; create it (the connector never "
                "creates topics), or unset dlq.topic"
            )
        if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return TopicCheck(
                fatal=f"dlq.topic {topic!r}: not authorized to describe it; grant this "
                "principal DESCRIBE and WRITE on the topic"
            )
        return TopicCheck(retry=str(error.str() if isinstance(error, KafkaError) else error))
    except TimeoutError:
        return TopicCheck(retry=f"no answer from the brokers within {timeout_s:.0f} s")
    granted = description.authorized_operations
    if granted is not None and not _WRITABLE & set(granted):
        return TopicCheck(
            fatal=f"dlq.topic {topic!r}: this principal may not WRITE to it (ACL); grant "
            "WRITE on the topic, or unset dlq.topic"
        )
    return TopicCheck()


class DeadLetterWriter:
    """Writes to the DLQ topic and returns once the broker acknowledged.

    A background thread serves the producer's delivery reports; ``write`` awaits its own.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.topic = topic
        self._metrics = metrics
        self._conf = producer_config(kafka)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff = Backoff(initial_backoff_s, max_backoff_s)
        self._producer: Producer | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing = False  # the last write attempt failed
        self._admin: AdminClient | None = None
        self._admin_conf: dict[str, Any] = {
            **kafka.properties,
            "bootstrap.servers": kafka.bootstrap_servers,
        }

    def start(self) -> None:
        self._conf["logger"] = logging.getLogger("librdkafka.dlq")
        self._producer = Producer(self._conf)
        self._thread = threading.Thread(target=self._serve, name="dlq-delivery", daemon=True)
        self._thread.start()

    async def check(self, timeout_s: float = 10.0) -> TopicCheck:
        """:func:`check_topic` for this writer's topic, off the event loop; retries reuse
        one admin client (made at the first check, dropped once the topic is usable)."""
        if self._admin is None:
            conf = {**self._admin_conf, "logger": logging.getLogger("librdkafka.dlq")}
            self._admin = AdminClient(conf)
        admin = self._admin
        result = await asyncio.get_running_loop().run_in_executor(
            None, check_topic, admin, self.topic, timeout_s
        )
        if result.retry is None:
            self._admin = None  # checked for good: the client is not needed any more
        return result

    def _serve(self) -> None:
        producer = self._producer
        assert producer is not None  # start() sets it before the thread runs
        while not self._stopping.is_set():
            producer.poll(0.1)

    async def write(
        self, record: SourceRecord, failure: Failure, metrics: Metrics | None = None
    ) -> int:
        """Write one dead letter; returns the number of attempts it took. ``metrics`` is
        the route's (its name goes in a header, failed attempts are counted on it); the
        writer's own by default. The routes of a process share one writer and topic."""
        if self._producer is None:
            raise RuntimeError("DeadLetterWriter.start() was not called")
        loop = asyncio.get_running_loop()
        metrics = metrics if metrics is not None else self._metrics
        route = metrics.route if metrics is not None else DEFAULT_ROUTE
        headers = dead_letter_headers(record, failure, route)
        attempt = 0
        while True:
            attempt += 1
            done: asyncio.Future[KafkaError | None] = loop.create_future()

            def report(error: KafkaError | None, _message: Message, done: Any = done) -> None:
                loop.call_soon_threadsafe(_settle, done, error)

            try:
                self._producer.produce(
                    self.topic,
                    key=record.key,
                    value=record.value,
                    headers=headers,
                    on_delivery=report,
                )
                error = await done
            except BufferError:
                error = KafkaError(KafkaError._QUEUE_FULL)  # local queue full: wait, again
            except KafkaException as exc:
                error = exc.args[0] if exc.args else KafkaError(KafkaError._FAIL)
            if error is None:
                self.failing = False
                return attempt
            self.failing = True
            if metrics is not None:
                metrics.dlq_write_failures.inc()
            delay = self._backoff.delay(attempt, self._rng)
            log.error(
                "dead-letter write to %s failed (%s); retrying in %.1fs, nothing is skipped",
                self.topic,
                error.str() if isinstance(error, KafkaError) else error,
                delay,
                extra={"topic": record.topic, "partition": record.partition,
                       "offset": record.offset, "attempt": attempt},
            )  # fmt: skip
            await self._sleep(delay)

    async def close(self, timeout_s: float = 10.0) -> None:
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        remaining = await asyncio.get_running_loop().run_in_executor(
            None, producer.flush, timeout_s
        )
        self._stopping.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        if remaining:
            log.warning("%d dead letters unacknowledged at close", remaining)


def _settle(done: asyncio.Future[KafkaError | None], error: KafkaError | None) -> None:
    if not done.done():
        done.set_result(error)
