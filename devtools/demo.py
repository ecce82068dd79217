"""``event-sink demo``: the main job end to end on an embedded default.

Starts a local single-node Kafka (or uses ``$KAFKA_BOOTSTRAP_SERVERS``), the local API
sandbox, produces sample events, runs the connector until every event is delivered and
every partition's committed offset equals its end offset, then prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connector.adapters.avro import AvroDecoder, load_schema
from connector.adapters.http_setup import make_session
from connector.config import Settings
from connector.core.records import TopicPartition
from connector.ops.runtime import run_async
from connector.pipeline.connector import Connector
from devtools import samples
from devtools.kafka import external_or_local
from devtools.sandbox import Faults, SandboxServer

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "user_behavior_event.avsc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` command's flags (dests: events, partitions, seed, latency_ms,
    failure_rate, max_in_flight, timeout_s), read by :func:`main`."""
    parser.add_argument("--events", type=int, default=20_000, help="events to produce")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topic")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample events")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="sandbox answer latency, milliseconds"
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="share of requests answered 503"
    )
    parser.add_argument("--max-in-flight", type=int, default=8, help="concurrent requests")
    parser.add_argument(
        "--timeout-s", type=float, default=300.0, help="give up if not all delivered by then"
    )


@dataclass
class DemoResult:
    produced: int
    delivered_unique: int
    duplicates: int
    batches: int
    requests: int
    seconds: float  # connector start to the last commit, group join included
    assigned_seconds: float  # first partition assignment to the last commit
    offsets_committed: bool

    @property
    def events_per_second(self) -> float:
        """Throughput once the group had assigned partitions (join time excluded)."""
        seconds = self.assigned_seconds
        return self.delivered_unique / seconds if seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.delivered_unique == self.produced and self.offsets_committed

    def summary(self) -> str:
        rows = [
            ("events produced", f"{self.produced}"),
            ("events delivered", f"{self.delivered_unique} (unique uuids the API accepted)"),
            ("duplicates", f"{self.duplicates}"),
            ("batches", f"{self.batches} accepted, {self.requests} requests in all"),
            ("time", f"{self.seconds:.2f} s from connector start (group join included)"),
            (
                "events per second",
                f"{self.events_per_second:,.0f} (over {self.assigned_seconds:.2f} s from the "
                "first assignment to the last commit)",
            ),
            ("committed = end offsets", "yes" if self.offsets_committed else "NO"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def produce_samples(
    bootstrap: str, topic: str, count: int, seed: int, parsed_schema: dict[str, Any]
) -> dict[TopicPartition, int]:
    """Produce ``count`` sample events; returns each partition's end offset."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
        }
    )
    end_offsets: dict[TopicPartition, int] = {}
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error.str())
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            failures.append("delivery report without a position")
            return
        end_offsets[(topic, partition)] = max(end_offsets.get((topic, partition), 0), offset + 1)

    base_time = int(time.time() * 1000)
    for record in samples.sample_events(count, seed, base_time):
        value = samples.encode(parsed_schema, record)
        while True:
            try:
                producer.produce(
                    topic, value=value, key=record["event_id"].encode(), on_delivery=delivered
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failures:
        raise RuntimeError(
            f"producing samples failed: {remaining} undelivered, errors: {failures[:3]}"
        )
    return end_offsets


async def run_until_delivered(
    settings: Settings,
    token: str,
    sandbox: SandboxServer,
    produced: int,
    end_offsets: dict[TopicPartition, int],
    timeout_s: float,
) -> DemoResult:
    """Run the connector until the API holds every event and every commit reached the end."""
    decoder = AvroDecoder(load_schema(settings.source.schema_file))
    stop = asyncio.Event()
    async with make_session(settings.http.max_in_flight) as session:
        connector = Connector(settings, decoder=decoder, session=session, token=lambda: token)
        started = time.monotonic()
        task = asyncio.create_task(connector.run(stop))
        deadline = started + timeout_s
        committed_all = False
        while not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if sandbox.state.stats.unique_uuids >= produced:
                committed_all = connector.committed() == end_offsets
                if committed_all:
                    break
        finished = time.monotonic()
        assigned_at = connector.first_assigned_at or started
        stop.set()
        await task
    stats = sandbox.state.stats
    return DemoResult(
        produced=produced,
        delivered_unique=stats.unique_uuids,
        duplicates=stats.duplicates,
        batches=stats.accepted_requests,
        requests=stats.requests,
        seconds=finished - started,
        assigned_seconds=finished - assigned_at,
        offsets_committed=committed_all,
    )


async def _demo(args: argparse.Namespace, bootstrap: str, topic: str, end: dict[Any, int]) -> int:
    token = f"demo-{uuid.uuid4().hex}"
    faults = Faults(failure_rate=args.failure_rate, latency_ms=args.latency_ms)
    async with SandboxServer(
        token, faults=faults, rng=random.Random(args.seed), keep_events=False
    ) as sandbox:
        settings = Settings.model_validate(
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "group_id": f"event-sink-demo-{uuid.uuid4().hex[:8]}",
                    "topics": [topic],
                    # Reach the end quickly when the run is short.
                    "commit_interval_ms": 500,
                },
                "source": {"schema_file": str(DEFAULT_SCHEMA)},
                "batch": {"linger_ms": 100},
                "http": {"url": sandbox.url, "max_in_flight": args.max_in_flight},
            }
        )
        print(f"sandbox at {sandbox.url}; connector starting", file=sys.stderr)
        result = await run_until_delivered(
            settings, token, sandbox, args.events, end, args.timeout_s
        )
    print(result.summary())
    return 0 if result.ok else 1


def main(args: argparse.Namespace) -> int:
    parsed_schema = load_schema(DEFAULT_SCHEMA)
    with external_or_local() as kafka:
        topic = f"user-behavior-events-demo-{uuid.uuid4().hex[:8]}"
        kafka.create_topic(topic, partitions=args.partitions)
        print(
            f"kafka at {kafka.bootstrap_servers}; producing {args.events} events", file=sys.stderr
        )
        end_offsets = produce_samples(
            kafka.bootstrap_servers, topic, args.events, args.seed, parsed_schema
        )
        return run_async(_demo(args, kafka.bootstrap_servers, topic, end_offsets))
