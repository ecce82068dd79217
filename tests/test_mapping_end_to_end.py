"""The second schema (click stream) and its mapping, end to end: real broker, sandbox."""

from __future__ import annotations

import asyncio
import decimal
import io
import random
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import fastavro
import yaml
from confluent_kafka import Producer

from connector.adapters.avro import AvroDecoder, load_schema
from connector.config import Settings
from connector.core.records import TopicPartition
from connector.pipeline.connector import Connector
from devtools.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "clickstream_event.avsc"
MAPPING = ROOT / "config" / "mappings" / "clickstream.yaml"
TOKEN = "test-token"
ACTIONS = {"VIEW": "c_view", "CLICK": "c_click", "ADD_TO_CART": "c_add_cart", "PURCHASE": "c_buy"}


def click_record(rng: random.Random, index: int) -> dict[str, Any]:
    """A click with at least one identity; every optional field sometimes null."""
    user: dict[str, Any] = {
        "phone": f"1{rng.randrange(10**9, 10**10)}" if rng.random() < 0.6 else None,
        "wx_openid": f"o{rng.getrandbits(48):x}" if rng.random() < 0.6 else None,
        "wx_unionid": f"u{rng.getrandbits(48):x}" if rng.random() < 0.4 else None,
        "app_id": f"wx{rng.getrandbits(32):x}" if rng.random() < 0.5 else None,
    }
    if user["phone"] is None and user["wx_openid"] is None and user["wx_unionid"] is None:
        user["phone"] = f"1{index:010d}"
    cents = rng.randrange(0, 10**11)
    return {
        "click_id": uuid.UUID(int=rng.getrandbits(128)),
        "action": rng.choice([*ACTIONS, "SHARE"]),
        "occurred_at": 1_700_000_000_000_000 + index * 1_001 + rng.randrange(1000),
        "user": user,
        "page": rng.choice(["/", "/item/7", "/cart", "/checkout", "/搜索"]),
        "price": decimal.Decimal(cents).scaleb(-2) if rng.random() < 0.7 else None,
        "coupon": rng.choice([None, "SPRING", "VIP-10"]),
        "quantity": rng.randint(-3, 99),
        "session_id": f"s-{rng.getrandbits(32):x}" if rng.random() < 0.5 else None,
    }


def expected_event(record: dict[str, Any]) -> dict[str, Any]:
    """The API event, written out by hand from the mapping's meaning (not by the mapper)."""
    user = record["user"]
    identities: list[dict[str, Any]] = []
    if user["phone"] is not None:
        identities.append({"identityType": "phone", "identityValue": user["phone"]})
    if user["wx_openid"] is not None:
        openid = {
            "identityType": "openid",
            "identityValue": user["wx_openid"],
            "platform": "miniprogram",
        }
        if user["app_id"] is not None:
            openid["mpid"] = user["app_id"]
        openid["isWeChatEcosystem"] = True
        identities.append(openid)
    if user["wx_unionid"] is not None:
        identities.append({"identityType": "unionid", "identityValue": user["wx_unionid"]})
    event: dict[str, Any] = {
        "identities": identities,
        "time": record["occurred_at"] // 1000,
        "uuid": str(record["click_id"]),
        "eventKey": ACTIONS.get(record["action"], "c_other"),
    }
    if record["session_id"] is not None:
        event["intid"] = record["session_id"]
    args: dict[str, Any] = {"c_page": record["page"]}
    if record["price"] is not None:
        args["c_price"] = record["price"]
    if record["coupon"] is not None:
        args["c_coupon"] = record["coupon"]
    args["c_quantity"] = record["quantity"]
    event["eventargs"] = args
    return event


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> dict[TopicPartition, int]:
    schema = load_schema(SCHEMA)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    ends: dict[TopicPartition, int] = {}

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        tp = (message.topic(), message.partition())
        ends[tp] = max(ends.get(tp, 0), message.offset() + 1)

    for record in records:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        producer.produce(topic, value=buffer.getvalue(), on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return ends


async def test_click_stream_events_arrive_valid_and_exact(kafka: Any) -> None:
    topic = f"clicks-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=3)
    rng = random.Random(21)
    records = [click_record(rng, index) for index in range(3_000)]
    end = produce(kafka.bootstrap_servers, topic, records)
    mapping = yaml.safe_load(MAPPING.read_text())["mapping"]
    settings = Settings.model_validate(
        {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap_servers,
                "group_id": f"g-{uuid.uuid4().hex[:8]}",
                "topics": [topic],
                "commit_interval_ms": 200,
            },
            "source": {"schema_file": str(SCHEMA)},
            "batch": {"linger_ms": 50},
            "http": {"retry": {"initial_backoff_ms": 10, "max_backoff_ms": 200}},
            "mapping": mapping,
        }
    )
    async with SandboxServer(TOKEN) as sandbox:
        settings = settings.model_copy(
            update={"http": settings.http.model_copy(update={"url": sandbox.url})}
        )
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            connector = Connector(
                settings,
                decoder=AvroDecoder(load_schema(SCHEMA)),
                session=session,
                token=lambda: TOKEN,
            )
            task = asyncio.create_task(connector.run(stop))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and connector.committed() != end:
                assert not task.done()
                await asyncio.sleep(0.1)
            committed = connector.committed()
            stop.set()
            await task
        received = list(sandbox.state.events)
        stats = sandbox.state.stats
    assert stats.rejects == 0  # every body met the contract
    assert committed == end
    by_uuid = {event["uuid"]: event for event in received}
    assert len(by_uuid) == len(records)
    for record in records:
        want = expected_event(record)
        got = by_uuid[want["uuid"]]
        price = want["eventargs"].pop("c_price", None)
        got_price = got["eventargs"].pop("c_price", None)
        assert got == want
        if price is None:
            assert got_price is None
        else:  # the sandbox parsed a JSON number; its shortest repr is the decimal's value
            assert decimal.Decimal(repr(got_price)) == price
