"""Dead letters: bad records and refused events go to the DLQ topic, the rest is delivered,
and `replay-dlq` puts them back with their uuids. Real broker, real HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry
from test_end_to_end import SCHEMA, TOKEN, broker_committed, settings_for, uuids_by_position
from test_sink import OK, Answer, ScriptedApi, serve

from connector.adapters.avro import AvroDecoder, load_schema
from connector.adapters.dlq import DeadLetterWriter, Failure, dead_letter_headers
from connector.config import Settings
from connector.core.records import UUID_HEADER, SourceRecord
from connector.metrics import Metrics
from connector.ops.replay import ReplayFilter, replay
from connector.pipeline.connector import Connector
from connector.pipeline.delivery import RefusedByApiError
from devtools.demo import produce_samples
from devtools.samples import encode, sample_events
from devtools.sandbox import SandboxServer


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
        # Anything beyond what was expected would be a bug: look a little longer.
        messages.extend(m for m in consumer.consume(100, timeout=1.0) if m.error() is None)
    finally:
        consumer.close()
    return messages


def headers_of(message: Any) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in message.headers() or []}


async def run_until_committed(
    settings: Settings, end: dict[Any, int], metrics: Metrics | None = None
) -> Connector:
    writer = DeadLetterWriter(settings.kafka, settings.dlq.topic or "")
    writer.start()
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:
            connector = Connector(
                settings,
                decoder=AvroDecoder(load_schema(SCHEMA)),
                session=session,
                token=lambda: TOKEN,
                metrics=metrics,
                dead_letters=writer,
            )
            task = asyncio.create_task(connector.run(stop))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and connector.committed() != end:
                if task.done():
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await task
    finally:
        await writer.close()
    return connector


def test_dead_letter_headers_keep_the_origin_and_never_a_value() -> None:
    record = SourceRecord("events", 3, 42, b"k", b"v", 1700000000000, (("trace", b"abc"),))
    failure = Failure("http", "body_code", "refused by the API", 200, "500", 4)
    headers = dict(dead_letter_headers(record, failure, "orders"))
    assert headers == {
        "trace": b"abc",
        "event-sink.route": b"orders",
        "event-sink.original.topic": b"events",
        "event-sink.original.partition": b"3",
        "event-sink.original.offset": b"42",
        "event-sink.original.timestamp": b"1700000000000",
        "event-sink.stage": b"http",
        "event-sink.error.class": b"body_code",
        "event-sink.error.message": b"refused by the API",
        "event-sink.attempts": b"4",
        "event-sink.http.status": b"200",
        "event-sink.http.body_code": b"500",
    }


async def test_bad_records_are_dead_lettered_with_their_bytes_and_the_rest_delivered(
    kafka: Any,
) -> None:
    topic, dlq = f"dl-{uuid.uuid4().hex[:8]}", f"dl-{uuid.uuid4().hex[:8]}-dlq"
    kafka.create_topic(topic, partitions=1)
    kafka.create_topic(dlq, partitions=1)
    schema = load_schema(SCHEMA)
    produce_samples(kafka.bootstrap_servers, topic, 20, 31, schema)
    poison = b"\x00\x01 not avro at all"
    invalid = next(sample_events(1, 32, int(time.time() * 1000)))
    invalid["identities"][0].update(mpid="wx-personal", is_wechat_ecosystem=None)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(topic, key=b"poison-key", value=poison)
    producer.produce(topic, key=b"invalid-key", value=encode(schema, invalid))
    producer.flush(10)
    end = produce_samples(kafka.bootstrap_servers, topic, 20, 33, schema)
    assert end == {(topic, 0): 42}
    async with SandboxServer(TOKEN, keep_events=False) as sandbox:
        settings = settings_for(
            kafka.bootstrap_servers, topic, sandbox.url, dlq={"topic": dlq, "on_invalid": "dlq"}
        )
        metrics = Metrics(CollectorRegistry())
        await run_until_committed(settings, end, metrics)
        assert sandbox.state.stats.unique_uuids == 40
    assert broker_committed(kafka.bootstrap_servers, settings.kafka.group_id, list(end)) == end
    letters = read_topic(kafka.bootstrap_servers, dlq, expected=2)
    assert [(m.key(), m.value()) for m in letters] == [
        (b"poison-key", poison),
        (b"invalid-key", encode(schema, invalid)),
    ]
    first, second = (headers_of(m) for m in letters)
    assert (first["event-sink.stage"], first["event-sink.original.offset"]) == ("decode", "20")
    assert (second["event-sink.stage"], second["event-sink.original.offset"]) == ("transform", "21")
    assert second["event-sink.original.topic"] == topic
    assert "is_wechat_ecosystem: required when mpid is set" in second["event-sink.error.message"]
    assert "wx-personal" not in repr(letters[1].headers())
    dead = metrics.records_dead_lettered
    assert dead.labels("decode", "undecodable")._value.get() == 1
    assert dead.labels("transform", "unmappable")._value.get() == 1

    # Once the cause is fixed, replay-dlq puts them back (here: into a fresh topic).
    target = f"dl-{uuid.uuid4().hex[:8]}-replayed"
    kafka.create_topic(target, partitions=1)
    summary = replay(settings, ReplayFilter(stages=frozenset({"transform"})), to_topic=target)
    assert (summary.read, summary.replayed, summary.skipped) == (2, 1, 1)
    [replayed] = read_topic(kafka.bootstrap_servers, target, expected=1)
    assert (replayed.key(), replayed.value()) == (b"invalid-key", encode(schema, invalid))
    assert headers_of(replayed)[UUID_HEADER] == f"{topic}-0-21"
    assert not any(k.startswith("event-sink.original") for k in headers_of(replayed))


POISON_OFFSETS = {7, 250, 251, 499}


async def test_events_the_api_refuses_are_isolated_by_bisection_and_dead_lettered(
    kafka: Any,
) -> None:
    topic, dlq = f"dl-{uuid.uuid4().hex[:8]}", f"dl-{uuid.uuid4().hex[:8]}-dlq"
    kafka.create_topic(topic, partitions=1)
    kafka.create_topic(dlq, partitions=1)
    end = produce_samples(kafka.bootstrap_servers, topic, 1000, 34, load_schema(SCHEMA))
    by_position = uuids_by_position(kafka.bootstrap_servers, topic)
    poison = {by_position[(0, offset)] for offset in POISON_OFFSETS}

    def answer(events: list[dict[str, Any]]) -> Answer:
        if any(e["uuid"] in poison for e in events):
            return 400, {}, b'{"code":"400","errorCode":"INVALID_PARAMS","msg":"refused"}'
        return 200, {}, OK

    api = ScriptedApi(answer)
    async with serve(api) as url:
        settings = settings_for(
            kafka.bootstrap_servers,
            topic,
            url,
            dlq={"topic": dlq, "on_invalid": "dlq"},
            batch={"max_events": 500, "linger_ms": 200},
        )
        await run_until_committed(settings, end)
    delivered = {u for _, status, uuids in api.seen if status == 200 for u in uuids}
    assert delivered == set(by_position.values()) - poison
    letters = read_topic(kafka.bootstrap_servers, dlq, expected=len(POISON_OFFSETS))
    assert sorted(int(headers_of(m)["event-sink.original.offset"]) for m in letters) == sorted(
        POISON_OFFSETS
    )
    for message in letters:
        headers = headers_of(message)
        assert (headers["event-sink.stage"], headers["event-sink.http.status"]) == ("http", "400")
        assert headers["event-sink.http.body_code"] == "400"
    assert broker_committed(kafka.bootstrap_servers, settings.kafka.group_id, list(end)) == end


async def test_without_a_dlq_a_refused_event_stops_the_connector_before_it(kafka: Any) -> None:
    topic = f"dl-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=1)
    produce_samples(kafka.bootstrap_servers, topic, 30, 35, load_schema(SCHEMA))
    by_position = uuids_by_position(kafka.bootstrap_servers, topic)
    poison = by_position[(0, 12)]

    def answer(events: list[dict[str, Any]]) -> Answer:
        if any(e["uuid"] == poison for e in events):
            return 422, {}, b'{"code":"422","errorCode":"UNPROCESSABLE","msg":"refused"}'
        return 200, {}, OK

    api = ScriptedApi(answer)
    async with serve(api) as url, aiohttp.ClientSession() as session:
        settings = settings_for(kafka.bootstrap_servers, topic, url)
        connector = Connector(
            settings,
            decoder=AvroDecoder(load_schema(SCHEMA)),
            session=session,
            token=lambda: TOKEN,
        )
        with pytest.raises(RefusedByApiError, match=rf"{topic}\[0\]@12 \(HTTP 422"):
            await asyncio.wait_for(connector.run(asyncio.Event()), timeout=60)
    committed = broker_committed(kafka.bootstrap_servers, settings.kafka.group_id, [(topic, 0)])
    assert committed == {(topic, 0): 12}
