"""Wiring: the rooms of the pipeline built from the settings, once, at start-up, and
connected to each other (the loop only composes them)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from connector.adapters.avro import AvroDecoder, Decoder
from connector.adapters.dlq import DeadLetterWriter
from connector.adapters.http_setup import HttpEnv, resolve
from connector.adapters.http_sink import Endpoint, HttpSink, RetryBudget
from connector.adapters.kafka_source import ConsumerFactory, KafkaSource, RebalanceCallback
from connector.adapters.native import Fallback, NativeChunk, native_chunk_for
from connector.adapters.rate_limit import RateLimiter
from connector.adapters.registry import ConfluentDecoder, SchemaGatedSource
from connector.config import ConfigError, Settings
from connector.core import backpressure
from connector.core.batch import Batcher, PartitionedBatcher, body_overhead
from connector.core.classify import OVERRIDABLE
from connector.core.concurrency import AdaptiveLimit, AimdSettings
from connector.core.records import TopicPartition
from connector.mapping import Mapper, mapper_for
from connector.metrics import Metrics
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.delivery import Delivery
from connector.pipeline.lifecycle import Health
from connector.pipeline.pausing import Backpressure, Pausing
from connector.pipeline.share import GroupShare
from connector.pipeline.slots import Slots

log = logging.getLogger(__name__)


def public_params(settings: Settings) -> bytes:
    """``http.public_params`` as the body's ``publicParams``, encoded once."""
    return json.dumps(
        settings.http.public_params, separators=(",", ":"), ensure_ascii=False
    ).encode()


def batcher(
    settings: Settings, clock: Callable[[], float] = time.monotonic
) -> Batcher | PartitionedBatcher:
    overhead = body_overhead(public_params(settings))

    def make(ids: Iterator[int] | None = None) -> Batcher:
        return Batcher(
            max_events=settings.batch.max_events,
            max_bytes=settings.batch.max_bytes,
            linger_s=settings.batch.linger_ms / 1000,
            overhead_bytes=overhead,
            clock=clock,
            ids=ids,
        )

    return PartitionedBatcher(make) if settings.delivery.ordering == "partition" else make()


def sink(
    settings: Settings,
    session: aiohttp.ClientSession,
    token: Callable[[], str],
    http_env: HttpEnv | None,
    rng: random.Random | None,
    metrics: Metrics,
    limiter: RateLimiter | None = None,
    slots: Slots | None = None,
) -> HttpSink:
    """The API's client: endpoint, network, classification overrides, retry budget."""
    http = settings.http
    net = http_env if http_env is not None else resolve(http)
    return HttpSink(
        session,
        url=Endpoint(
            http.url,
            proxy=net.proxy,
            tls=net.tls,
            headers=net.headers,
            gzip=http.compression == "gzip",
        ),
        token=token,
        public_params_json=public_params(settings),
        timeout_s=http.timeout_s,
        initial_backoff_s=http.retry.initial_backoff_ms / 1000,
        max_backoff_s=http.retry.max_backoff_ms / 1000,
        halt_probe_max_s=http.retry.halt_probe_max_ms / 1000,
        max_retry_after_s=http.retry.max_retry_after_s,
        overrides={status: OVERRIDABLE[policy] for status, policy in http.status_overrides.items()},
        body_overrides={
            code: OVERRIDABLE[policy] for code, policy in http.body_code_overrides.items()
        },
        budget=RetryBudget(http.retry.max_attempts, http.retry.give_up_after_s),
        limiter=limiter,
        observer=slots.observe if slots is not None else None,
        rng=rng,
        metrics=metrics,
    )


def in_flight_slots(settings: Settings, metrics: Metrics, clock: Callable[[], float]) -> Slots:
    http = settings.http
    adaptive = None
    if http.concurrency == "adaptive":
        knobs = http.adaptive
        adaptive = AdaptiveLimit(
            AimdSettings(
                initial=knobs.initial,
                maximum=http.max_in_flight,
                decrease_ratio=knobs.decrease_ratio,
                rtt_deviation_scale=knobs.rtt_deviation_scale,
                ewma_alpha=knobs.ewma_alpha,
                queue_tolerance=knobs.queue_tolerance,
                probe_interval_s=knobs.probe_interval_s,
            )
        )
    return Slots(http.max_in_flight, adaptive=adaptive, metrics=metrics, clock=clock)


class TopicGuard:
    """Refuses a topic that another route claims too (two ``topic_pattern`` routes that a
    new topic both match): the assignment is noted, and the loop stops on it before any
    record of that topic is tracked, so nothing of it is committed."""

    def __init__(self, foreign: Callable[[str], str | None]) -> None:
        self._foreign = foreign
        self.conflict: str | None = None

    def wrap(self, on_assign: RebalanceCallback) -> RebalanceCallback:
        async def guarded(tps: list[TopicPartition]) -> None:
            for topic in sorted({topic for topic, _ in tps}):
                why = self._foreign(topic)
                if why is not None and self.conflict is None:
                    self.conflict = why
            await on_assign(tps)

        return guarded

    def check(self) -> None:
        if self.conflict is not None:
            raise RouteConflictError(self.conflict)


class RouteConflictError(ConfigError):
    """A topic is claimed by two routes (found at assignment time)."""


def source(
    settings: Settings,
    decoder: Decoder,
    session: aiohttp.ClientSession,
    checkpoint: Checkpoint,
    pausing: Pausing,
    consumer_factory: ConsumerFactory | None,
    guard: TopicGuard | None = None,
) -> KafkaSource:
    """The Kafka source; its rebalance and commit callbacks go to the checkpoint."""
    on_assign = checkpoint.on_assign if guard is None else guard.wrap(checkpoint.on_assign)
    kwargs: dict[str, Any] = {
        "on_assign": on_assign,
        "on_revoke": checkpoint.on_revoke,
        "on_lost": checkpoint.on_lost,
        "on_commit": checkpoint.acknowledged,
    }
    if consumer_factory is not None:
        kwargs["consumer_factory"] = consumer_factory
    if isinstance(decoder, ConfluentDecoder):
        # Fetches each new writer schema before its chunk is decoded; while the registry
        # is down it holds the chunk and pauses those partitions, never skips.
        return SchemaGatedSource(
            settings.kafka, decoder=decoder, session=session, holds=pausing, **kwargs
        )
    return KafkaSource(settings.kafka, **kwargs)


def hot_path(settings: Settings, decoder: Decoder, metrics: Metrics) -> NativeChunk | None:
    """The route's native path, or None for the Python path; says which at start-up (the
    log and ``event_sink_hot_path``), and why a route stays on Python."""
    source = settings.source
    if source.hot_path == "python":
        chosen: NativeChunk | Fallback = Fallback("source.hot_path is python")
    elif isinstance(decoder, AvroDecoder):
        chosen = native_chunk_for(
            decoder.schema, settings.mapping, source_format=source.format, decoder=decoder
        )
    else:
        chosen = Fallback(f"source.format {source.format} is decoded in Python")
    for path in ("native", "python"):
        metrics.hot_path.labels(path).set(1 if chosen.path == path else 0)
    if isinstance(chosen, Fallback):
        log.info("route %s: decode and map on the Python path: %s", metrics.route, chosen.reason)
        return None
    log.info("route %s: decode and map on the native path", metrics.route)
    return chosen


@dataclass(frozen=True)
class Rooms:
    mapper: Mapper
    native: NativeChunk | None  # None: the Python path (decoder and mapper)
    dead_letters: DeadLetterWriter | None  # None unless dlq.on_invalid is "dlq"
    checkpoint: Checkpoint
    pausing: Pausing
    backpressure: Backpressure
    batcher: Batcher | PartitionedBatcher
    sink: HttpSink
    source: KafkaSource
    delivery: Delivery
    health: Health
    guard: TopicGuard | None


def build(
    settings: Settings,
    *,
    decoder: Decoder,
    session: aiohttp.ClientSession,
    token: Callable[[], str],
    consumer_factory: ConsumerFactory | None,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
    rng: random.Random | None,
    metrics: Metrics,
    dead_letters: DeadLetterWriter | None,
    http_env: HttpEnv | None,
    drain: Callable[[], Awaitable[int]],
    foreign: Callable[[str], str | None] | None = None,
) -> Rooms:
    """Every room, connected; ``drain`` is the loop's (flush the open batch, then wait);
    ``foreign`` says why a topic belongs to another route (see TopicGuard)."""
    if settings.dlq.on_invalid == "dlq" and dead_letters is None:
        raise ValueError("dlq.on_invalid is 'dlq' but no dead-letter writer was given")
    writer = dead_letters if settings.dlq.on_invalid == "dlq" else None
    kafka = settings.kafka
    checkpoint = Checkpoint(metrics, clock, commit_interval_s=kafka.commit_interval_ms / 1000)
    pausing = Pausing()
    cap = settings.http.rate_limit
    limiter = RateLimiter(cap, metrics=metrics, clock=clock) if cap.enabled else None
    slots = in_flight_slots(settings, metrics, clock)
    http_sink = sink(settings, session, token, http_env, rng, metrics, limiter, slots)
    guard = TopicGuard(foreign) if foreign is not None else None
    kafka_source = source(settings, decoder, session, checkpoint, pausing, consumer_factory, guard)
    if limiter is not None and cap.scope == "group":
        share = GroupShare(limiter, kafka.topics, kafka_source.partition_count)
        checkpoint.on_rebalanced(share.rebalanced)
    delivery = Delivery(
        http_sink,
        writer,
        metrics,
        slots=slots,
        drain_timeout_s=settings.shutdown.drain_timeout_s,
        ordered=settings.delivery.ordering == "partition",
        clock=clock,
        wall_clock=wall_clock,
    )
    checkpoint.attach(kafka_source, drain=drain, release=pausing.forget, unpause=pausing.assigned)
    pausing.attach(kafka_source)
    caps = backpressure.PendingCaps(kafka.max_pending_events, kafka.max_pending_per_partition)
    return Rooms(
        # Compiled once against the reader schema; MappingError here names the bad path.
        mapper=mapper_for(settings.mapping, decoder.schema),
        native=hot_path(settings, decoder, metrics),
        dead_letters=writer,
        checkpoint=checkpoint,
        pausing=pausing,
        backpressure=Backpressure(pausing, caps, metrics),
        batcher=batcher(settings, clock),
        sink=http_sink,
        source=kafka_source,
        delivery=delivery,
        health=Health(
            delivery=delivery,
            checkpoint=checkpoint,
            source=kafka_source,
            sink=http_sink,
            dead_letters=writer,
            drain_timeout_s=settings.shutdown.drain_timeout_s,
            clock=clock,
        ),
        guard=guard,
    )
