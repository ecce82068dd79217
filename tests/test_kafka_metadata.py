"""Kafka metadata in the mapping: topic, key, headers and partition where a path can
stand, type-checked at start-up, and read from the real message on the real broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Producer
from pydantic import ValidationError

from connector.adapters.avro import AvroDecoder, load_schema
from connector.config import Settings
from connector.config_mapping import MappingSettings
from connector.core.records import SourceRecord
from connector.mapping import mapper_for
from connector.mapping.schema import MappingError
from connector.mapping.transform import TransformError
from connector.pipeline.connector import Connector
from devtools import samples
from devtools.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"
TOKEN = "test-token"
MAPPING: dict[str, Any] = {
    "event_key": {"source": "topic", "lookup": {"shop-orders": "c_buy"}, "unmapped": "default",
                  "default": "c_other"},
    "uuid": "event_id",
    "identities": [
        {"value": {"source": "key"}, "type": {"const": "kafka_key"}},
        {"each": "identities", "value": "value", "type": "type"},
    ],
    "eventargs": {"map": "properties",
                  "pick": {"tenant": {"source": "header", "name": "tenant"},
                           "partition": {"source": "partition"}}},
}  # fmt: skip


def message(
    topic: str = "shop-orders",
    key: bytes | None = b"user-7",
    headers: tuple[tuple[str, bytes | None], ...] = (("tenant", b"acme"),),
) -> SourceRecord:
    return SourceRecord(topic, 2, 10, key, None, None, headers)


def encode(settings: dict[str, Any], record: dict[str, Any], msg: SourceRecord) -> dict[str, Any]:
    mapper = mapper_for(MappingSettings.model_validate(settings), load_schema(SCHEMA))
    return dict(json.loads(mapper.encode(record, "fallback", None, msg)))


def sample() -> dict[str, Any]:
    return next(iter(samples.sample_events(1, 3, 1_700_000_000_000)))


def test_topic_key_header_and_partition_stand_where_paths_do() -> None:
    record = sample()
    event = encode(MAPPING, record, message())
    assert event["eventKey"] == "c_buy"
    assert event["identities"][0] == {"identityType": "kafka_key", "identityValue": "user-7"}
    assert event["eventargs"]["tenant"] == "acme"
    assert event["eventargs"]["partition"] == 2
    other = encode(MAPPING, record, message(topic="returns"))
    assert other["eventKey"] == "c_other"  # not in the lookup: its default


def test_a_null_key_and_a_missing_header_are_null_values() -> None:
    event = encode(MAPPING, sample(), message(key=None, headers=()))
    assert all(i["identityType"] != "kafka_key" for i in event["identities"])  # skipped
    assert "tenant" not in event["eventargs"]  # a null pick is omitted
    keyed = {**MAPPING, "event_key": {"source": "header", "name": "kind"}}
    with pytest.raises(TransformError, match=r"\{source: header, name: kind\}: required"):
        encode(keyed, sample(), message())


def test_metadata_that_is_not_utf8_makes_the_record_invalid() -> None:
    with pytest.raises(TransformError, match="the Kafka key: not UTF-8"):
        encode(MAPPING, sample(), message(key=b"\xff\xfe"))
    with pytest.raises(TransformError, match="Kafka header 'tenant': not UTF-8"):
        encode(MAPPING, sample(), message(headers=(("tenant", b"\xc3"),)))


def test_metadata_is_type_checked_at_start() -> None:
    wrong = {**MAPPING, "event_key": {"source": "partition"}}
    with pytest.raises(MappingError, match=r"event_key: \{source: partition\} is an int; eventKey"):
        mapper_for(MappingSettings.model_validate(wrong), load_schema(SCHEMA))
    lookup = {**MAPPING, "event_key": {"source": "partition", "lookup": {"shop": "c_buy"}}}
    with pytest.raises(MappingError, match="key 'shop' is a str"):
        mapper_for(MappingSettings.model_validate(lookup), load_schema(SCHEMA))
    for bad in ({"source": "header"}, {"source": "topic", "name": "x"},
                {"source": "topic", "path": "event_key", "lookup": {"a": "b"}}):  # fmt: skip
        with pytest.raises(ValidationError):
            MappingSettings.model_validate({**MAPPING, "event_key": bad})


async def test_the_real_messages_metadata_reaches_the_event(kafka: Any) -> None:
    topic = f"shop-orders-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=2)
    schema = load_schema(SCHEMA)
    records = list(samples.sample_events(200, 5, 1_700_000_000_000))
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    ends: dict[tuple[str, int], int] = {}
    where: dict[str, int] = {}

    def delivered(error: Any, msg: Any) -> None:
        assert error is None, error
        ends[(msg.topic(), msg.partition())] = max(ends.get((msg.topic(), msg.partition()), 0),
                                                   msg.offset() + 1)  # fmt: skip
        where[msg.key().decode()] = msg.partition()

    for index, record in enumerate(records):
        producer.produce(
            topic,
            key=f"user-{index}".encode(),
            value=samples.encode(schema, record),
            headers=[("tenant", f"t{index % 3}".encode())],
            on_delivery=delivered,
        )
    assert producer.flush(30) == 0
    mapping = {**MAPPING, "event_key": {"source": "topic", "lookup": {topic: "c_buy"}}}
    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap_servers, "topics": [topic],
                      "group_id": f"g-{uuid.uuid4().hex[:8]}", "commit_interval_ms": 200},
            "source": {"schema_file": str(SCHEMA)},
            "batch": {"linger_ms": 20},
            "mapping": mapping,
        }
    )  # fmt: skip
    async with SandboxServer(TOKEN) as sandbox:
        http = settings.http.model_copy(update={"url": sandbox.url})
        settings = settings.model_copy(update={"http": http})
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            connector = Connector(settings, decoder=AvroDecoder(schema), session=session,
                                  token=lambda: TOKEN)  # fmt: skip
            task = asyncio.create_task(connector.run(stop))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and connector.committed() != ends:
                assert not task.done()
                await asyncio.sleep(0.1)
            committed = connector.committed()
            stop.set()
            await task
        received = {event["uuid"]: event for event in sandbox.state.events}
    assert committed == ends
    assert len(received) == len(records)
    for index, record in enumerate(records):
        event = received[record["event_id"]]
        assert event["eventKey"] == "c_buy"
        assert event["identities"][0] == {"identityType": "kafka_key",
                                          "identityValue": f"user-{index}"}  # fmt: skip
        assert event["eventargs"]["tenant"] == f"t{index % 3}"
        assert event["eventargs"]["partition"] == where[f"user-{index}"]
