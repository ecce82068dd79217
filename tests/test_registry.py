"""Schema Registry: the Confluent wire format, writer → reader resolution, error classes,
and v1/v2 writers interleaved on one topic, end to end (real broker, sandbox, and the
registry stand-in of tests/registry_fixture.py over real HTTP)."""

from __future__ import annotations

import asyncio
import copy
import decimal
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import fastavro
import pytest
import yaml
from aiohttp import web
from confluent_kafka import Consumer, Producer
from net_fixtures import ForwardProxy, RedirectTarget
from registry_fixture import RegistryServer, framed
from test_mapping_end_to_end import click_record, expected_event

from connector.adapters.avro import DecodeError, load_schema
from connector.adapters.dlq import DeadLetterWriter
from connector.adapters.http_setup import proxy_for
from connector.adapters.registry import (
    ConfluentDecoder,
    RegistryClient,
    RegistryUnavailable,
    SchemaNotFetched,
)
from connector.config import (
    REGISTRY_PASSWORD_ENV,
    REGISTRY_TOKEN_ENV,
    ConfigError,
    SchemaRegistrySettings,
    Settings,
)
from connector.core.records import SourceRecord
from connector.pipeline.connector import Connector
from devtools.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "clickstream_event.avsc"
MAPPING = ROOT / "config" / "mappings" / "clickstream.yaml"
TOKEN = "test-token"
SUBJECT = "clicks-value"

V2: dict[str, Any] = json.loads(SCHEMA.read_text())  # the reader schema is the latest writer


def v1_schema() -> dict[str, Any]:
    """An older writer: no coupon, no session_id (added later with defaults), quantity an
    int (promoted to long), and a referrer field the reader no longer has."""
    schema = copy.deepcopy(V2)
    fields = [f for f in schema["fields"] if f["name"] not in {"coupon", "session_id"}]
    for field in fields:
        if field["name"] == "quantity":
            field["type"] = "int"
    fields.append({"name": "referrer", "type": "string"})
    schema["fields"] = fields
    return schema


def as_v1(record: dict[str, Any]) -> dict[str, Any]:
    old = {k: v for k, v in record.items() if k not in {"coupon", "session_id"}}
    old["referrer"] = "https://example.invalid/"
    return old


def resolved(record: dict[str, Any]) -> dict[str, Any]:
    """A v1 record as the reader sees it: the added fields take their defaults."""
    return {**record, "coupon": None, "session_id": None}


async def register(registry_url: str, subject: str, schema: dict[str, Any]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{registry_url}/subjects/{subject}/versions", json={"schema": json.dumps(schema)}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        body = await response.json()
    return int(body["id"])


def registry_settings(url: str, **extra: Any) -> SchemaRegistrySettings:
    return SchemaRegistrySettings.model_validate({"url": url, **extra})


# -- the decoder and the client ---------------------------------------------------------


async def test_v1_and_v2_writers_resolve_to_the_reader_schema() -> None:
    rng = random.Random(3)
    async with RegistryServer() as registry, aiohttp.ClientSession() as session:
        v1_id = await register(registry.url, SUBJECT, v1_schema())
        v2_id = await register(registry.url, SUBJECT, V2)
        assert await register(registry.url, SUBJECT, V2) == v2_id  # same schema, same id
        decoder = ConfluentDecoder(
            load_schema(SCHEMA), RegistryClient(registry_settings(registry.url))
        )
        new, old = click_record(rng, 1), click_record(rng, 2)
        new_bytes = framed(v2_id, fastavro.parse_schema(V2), new)
        old_bytes = framed(v1_id, fastavro.parse_schema(v1_schema()), as_v1(old))
        with pytest.raises(SchemaNotFetched):
            decoder.decode(new_bytes)  # decode never goes to the network
        chunk = [
            SourceRecord("t", 0, i, None, v, None) for i, v in enumerate((new_bytes, old_bytes))
        ]
        assert decoder.missing(chunk) == {v1_id, v2_id}
        await decoder.prefetch(session, decoder.missing(chunk))
        assert decoder.missing(chunk) == set()
        await decoder.prefetch(session, {v1_id, v2_id})
        assert registry.state.fetches == {v1_id: 1, v2_id: 1}  # one fetch per id, ever
        assert decoder.decode(new_bytes) == new
        got = decoder.decode(old_bytes)
        assert got == resolved(old)
        assert "referrer" not in got


async def test_unknown_ids_bad_magic_and_garbage_are_decode_errors() -> None:
    async with RegistryServer() as registry, aiohttp.ClientSession() as session:
        v2_id = await register(registry.url, SUBJECT, V2)
        decoder = ConfluentDecoder(
            load_schema(SCHEMA), RegistryClient(registry_settings(registry.url))
        )
        await decoder.prefetch(session, {v2_id, 999})
        with pytest.raises(DecodeError, match=r"schema id 999 is unknown to the registry \(404\)"):
            decoder.decode(b"\x00\x00\x00\x03\xe7" + b"\x02")
        with pytest.raises(DecodeError, match="bad magic byte"):
            decoder.decode(b"\x01\x00\x00\x00\x01payload")
        with pytest.raises(DecodeError, match="bad magic byte or too short"):
            decoder.decode(b"\x00\x00")
        with pytest.raises(DecodeError, match=f"not a record of schema id {v2_id}"):
            decoder.decode(b"\x00" + v2_id.to_bytes(4, "big") + b"\xff\xff\xff")
        good = framed(v2_id, fastavro.parse_schema(V2), click_record(random.Random(1), 0))
        with pytest.raises(DecodeError, match="trailing bytes"):
            decoder.decode(good + b"\x00")
        with pytest.raises(DecodeError, match="empty message"):
            decoder.decode(None)


async def test_an_unavailable_registry_is_retryable_never_a_decode_error() -> None:
    async with RegistryServer() as registry, aiohttp.ClientSession() as session:
        v2_id = await register(registry.url, SUBJECT, V2)
        decoder = ConfluentDecoder(
            load_schema(SCHEMA), RegistryClient(registry_settings(registry.url))
        )
        registry.state.down = True
        with pytest.raises(RegistryUnavailable, match="HTTP 503"):
            await decoder.prefetch(session, {v2_id})
        registry.state.down = False
        await decoder.prefetch(session, {v2_id})
        gone = ConfluentDecoder(
            load_schema(SCHEMA),
            RegistryClient(registry_settings("http://127.0.0.1:9", timeout_s=2)),
        )
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            await gone.prefetch(session, {v2_id})


async def test_basic_auth_and_bearer_tokens_come_from_the_environment() -> None:
    async with RegistryServer() as registry, aiohttp.ClientSession() as session:
        v2_id = await register(registry.url, SUBJECT, V2)
        registry.state.basic = ("sink", "s3cret")
        settings = registry_settings(registry.url, username="sink")
        with pytest.raises(ConfigError, match=REGISTRY_PASSWORD_ENV):
            RegistryClient(settings, environ={})
        wrong = RegistryClient(settings, environ={REGISTRY_PASSWORD_ENV: "nope"})
        with pytest.raises(RegistryUnavailable, match="HTTP 401"):
            await wrong.schema(session, v2_id)
        right = RegistryClient(settings, environ={REGISTRY_PASSWORD_ENV: "s3cret"})
        assert await right.schema(session, v2_id) is not None
        registry.state.basic, registry.state.bearer = None, "tok-1"
        bearer = RegistryClient(
            registry_settings(registry.url), environ={REGISTRY_TOKEN_ENV: "tok-1"}
        )
        assert await bearer.schema(session, v2_id) is not None


async def test_each_routes_registry_secret_may_come_from_mounted_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "user").write_text("sink\n")
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "token").write_text("tok-2")
    (tmp_path / "empty").write_text("")
    async with RegistryServer() as registry, aiohttp.ClientSession() as session:
        v2_id = await register(registry.url, SUBJECT, V2)
        registry.state.basic = ("sink", "s3cret")
        files = registry_settings(
            registry.url,
            username_file=tmp_path / "user",
            password_file=tmp_path / "password",
        )
        # The files win over the environment.
        client = RegistryClient(files, environ={REGISTRY_PASSWORD_ENV: "nope"})
        assert await client.schema(session, v2_id) is not None
        registry.state.basic, registry.state.bearer = None, "tok-2"
        bearer = RegistryClient(registry_settings(registry.url, token_file=tmp_path / "token"))
        assert await bearer.schema(session, v2_id) is not None
    empty = registry_settings(registry.url, token_file=tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"schema_registry.token_file: .*empty is empty"):
        RegistryClient(empty)
    with pytest.raises(ValueError, match="password_file is set but username is not"):
        registry_settings(registry.url, password_file=tmp_path / "password")
    with pytest.raises(ValueError, match="token_file"):
        registry_settings(registry.url, username="u", token_file=tmp_path / "token")
    settings = Settings.model_validate(
        {
            "routes": [
                {
                    "name": "orders",
                    "topics": ["o"],
                    "source": {"format": "confluent", "schema_registry": {
                        "url": "http://r:8081", "token_file": str(tmp_path / "token")}},
                }
            ]
        }
    )  # fmt: skip
    assert "tok-2" in settings.secret_values()  # redacted from the logs


def test_confluent_needs_a_registry_url_and_its_secrets_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match=r"source.schema_registry.url is not set"):
        Settings.model_validate({"source": {"format": "confluent"}})
    monkeypatch.setenv(REGISTRY_PASSWORD_ENV, "pw-123")
    monkeypatch.setenv(REGISTRY_TOKEN_ENV, "tok-456")
    settings = Settings.model_validate(
        {"source": {"format": "confluent", "schema_registry": {"url": "http://r:8081"}}}
    )
    assert {"pw-123", "tok-456"} <= set(settings.secret_values())
    with pytest.raises(ConfigError, match="ca_file: cannot load"):
        RegistryClient(registry_settings("https://r:8081", ca_file="/nonexistent/ca.pem"))


# -- end to end --------------------------------------------------------------------------


def read_all(bootstrap: str, topic: str, expected: int) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return out


def connector_settings(
    bootstrap: str, topic: str, url: str, registry_url: str, **more: Any
) -> Settings:
    data: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "topics": [topic],
            "commit_interval_ms": 200,
        },
        "source": {
            "format": "confluent",
            "schema_file": str(SCHEMA),
            "schema_registry": {"url": registry_url, "timeout_s": 2},
        },
        "batch": {"linger_ms": 50},
        "http": {"url": url, "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 200}},
        "mapping": yaml.safe_load(MAPPING.read_text())["mapping"],
    }
    for key, value in more.items():
        data.setdefault(key, {}).update(value)
    return Settings.model_validate(data)


async def run_until(
    settings: Settings,
    end: dict[Any, int],
    registry: RegistryServer,
    *,
    dead_letters: DeadLetterWriter | None = None,
    while_running: Any = None,
) -> dict[Any, int]:
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        decoder = ConfluentDecoder(
            load_schema(SCHEMA), RegistryClient(settings.source.schema_registry)
        )
        connector = Connector(
            settings,
            decoder=decoder,
            session=session,
            token=lambda: TOKEN,
            dead_letters=dead_letters,
        )
        task = asyncio.create_task(connector.run(stop))
        if while_running is not None:
            await while_running(connector)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and connector.committed() != end:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.1)
        committed = connector.committed()
        stop.set()
        await task
    return committed


async def test_v1_and_v2_interleaved_on_one_topic_are_all_delivered_exactly(kafka: Any) -> None:
    topic = f"evolve-{uuid.uuid4().hex[:8]}"
    dlq_topic = f"{topic}-dlq"
    kafka.create_topic(topic, partitions=2)
    kafka.create_topic(dlq_topic, partitions=1)
    rng = random.Random(8)
    async with RegistryServer() as registry, SandboxServer(TOKEN) as sandbox:
        v1_id = await register(registry.url, SUBJECT, v1_schema())
        v2_id = await register(registry.url, SUBJECT, V2)
        writers = {v1_id: fastavro.parse_schema(v1_schema()), v2_id: fastavro.parse_schema(V2)}
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
        want: dict[str, dict[str, Any]] = {}
        bad = 0
        for index in range(1_500):
            record = click_record(rng, index)
            if index % 500 == 250:  # an id the registry never issued, and a bad magic byte
                producer.produce(topic, value=b"\x00\x00\x00\x7f\xff" + b"\x02", partition=0)
                producer.produce(topic, value=b"\x07not-framed", partition=1)
                bad += 2
            if rng.random() < 0.5:
                value = framed(v1_id, writers[v1_id], as_v1(record))
                record = resolved(record)
            else:
                value = framed(v2_id, writers[v2_id], record)
            producer.produce(topic, value=value, partition=index % 2)
            want[str(record["click_id"])] = expected_event(record)
        assert producer.flush(30) == 0
        end = {(topic, p): n for p, n in ((0, 750 + bad // 2), (1, 750 + bad // 2))}
        settings = connector_settings(
            kafka.bootstrap_servers,
            topic,
            sandbox.url,
            registry.url,
            dlq={"topic": dlq_topic, "on_invalid": "dlq"},
        )
        writer = DeadLetterWriter(settings.kafka, dlq_topic)
        writer.start()
        try:
            committed = await run_until(settings, end, registry, dead_letters=writer)
        finally:
            await writer.close()
        received = list(sandbox.state.events)
        rejects = sandbox.state.stats.rejects
        fetches = dict(registry.state.fetches)
    assert committed == end
    assert rejects == 0
    assert len(received) == len({e["uuid"] for e in received}) == len(want)
    for event in received:
        expected = want[event["uuid"]]
        price = expected["eventargs"].pop("c_price", None)
        got_price = event["eventargs"].pop("c_price", None)
        assert event == expected
        assert (got_price is None) == (price is None)
        if price is not None:
            assert decimal.Decimal(repr(got_price)) == price
    assert fetches[v1_id] == fetches[v2_id] == 1  # the first fetch per id is the only one
    letters = read_all(kafka.bootstrap_servers, dlq_topic, bad)
    assert len(letters) == bad
    reasons = sorted(dict(m.headers())["event-sink.error.message"].decode() for m in letters)
    assert reasons.count("schema id 32767 is unknown to the registry (404)") == bad // 2
    assert sum("bad magic byte" in r for r in reasons) == bad // 2


async def test_a_registry_outage_holds_and_pauses_then_everything_is_delivered(
    kafka: Any,
) -> None:
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=2)
    rng = random.Random(9)
    async with RegistryServer() as registry, SandboxServer(TOKEN, keep_events=False) as sandbox:
        v2_id = await register(registry.url, SUBJECT, V2)
        schema = fastavro.parse_schema(V2)
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
        for index in range(600):
            producer.produce(
                topic, value=framed(v2_id, schema, click_record(rng, index)), partition=index % 2
            )
        assert producer.flush(30) == 0
        end = {(topic, 0): 300, (topic, 1): 300}
        registry.state.down = True
        settings = connector_settings(kafka.bootstrap_servers, topic, sandbox.url, registry.url)

        async def outage(connector: Connector) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and registry.state.fetches.get(v2_id, 0) < 3:
                await asyncio.sleep(0.05)
            assert registry.state.fetches.get(v2_id, 0) >= 3  # it retried
            assert sandbox.state.stats.unique_uuids == 0  # nothing went past the gate
            assert connector.committed() == {}  # nothing was committed
            assert connector.metrics.total(connector.metrics.records_dead_lettered) == 0
            registry.state.down = False

        committed = await run_until(settings, end, registry, while_running=outage)
        delivered = sandbox.state.stats.unique_uuids
    assert committed == end
    assert delivered == 600


def test_any_bytes_decode_to_a_record_or_a_decode_error() -> None:
    """Whatever a producer wrote, decoding dead-letters it or returns a record: never
    another exception (which would stop the connector instead)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    async def prepared() -> ConfluentDecoder:
        async with RegistryServer() as registry, aiohttp.ClientSession() as session:
            v1_id = await register(registry.url, SUBJECT, v1_schema())
            v2_id = await register(registry.url, SUBJECT, V2)
            decoder = ConfluentDecoder(
                load_schema(SCHEMA), RegistryClient(registry_settings(registry.url))
            )
            await decoder.prefetch(session, {v1_id, v2_id, 3})
        return decoder

    decoder = asyncio.run(prepared())

    @settings(max_examples=400, deadline=None)
    @given(st.sampled_from([1, 2, 3]), st.binary(max_size=80))
    def check(schema_id: int, body: bytes) -> None:
        try:
            record = decoder.decode(b"\x00" + schema_id.to_bytes(4, "big") + body)
        except DecodeError:
            return
        assert isinstance(record, dict)

    check()


async def test_chunks_held_during_an_outage_are_dropped_on_revoke_and_read_by_the_new_owner(
    kafka: Any,
) -> None:
    topic = f"handover-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=4)
    rng = random.Random(10)
    async with RegistryServer() as registry, SandboxServer(TOKEN) as sandbox:
        v2_id = await register(registry.url, SUBJECT, V2)
        schema = fastavro.parse_schema(V2)
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
        for index in range(800):
            value = framed(v2_id, schema, click_record(rng, index))
            producer.produce(topic, value=value, partition=index % 4)
        assert producer.flush(30) == 0
        end = {(topic, p): 200 for p in range(4)}
        registry.state.down = True
        settings = connector_settings(kafka.bootstrap_servers, topic, sandbox.url, registry.url)
        stops = [asyncio.Event(), asyncio.Event()]
        async with aiohttp.ClientSession() as session:

            def member() -> Connector:
                decoder = ConfluentDecoder(
                    load_schema(SCHEMA), RegistryClient(settings.source.schema_registry)
                )
                return Connector(settings, decoder=decoder, session=session, token=lambda: TOKEN)

            first, second = member(), member()
            tasks = [asyncio.create_task(first.run(stops[0]))]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and registry.state.fetches.get(v2_id, 0) < 2:
                await asyncio.sleep(0.05)
            assert len(first.tracker.assigned()) == 4  # holding all four, registry down
            tasks.append(asyncio.create_task(second.run(stops[1])))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not second.tracker.assigned():
                await asyncio.sleep(0.05)
            assert second.tracker.assigned()
            assert len(first.tracker.assigned()) < 4  # some were revoked while held
            assert sandbox.state.stats.unique_uuids == 0
            registry.state.down = False
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                together = {**first.committed(), **second.committed()}
                if together == end:
                    break
                for task in tasks:
                    assert not task.done(), task.exception()
                await asyncio.sleep(0.1)
            for stop in stops:
                stop.set()
            await asyncio.gather(*tasks)
        events = list(sandbox.state.events)
    assert together == end
    assert len({event["uuid"] for event in events}) == 800
    assert len(events) == 800  # a held record is read once, by whoever owns it at the end


# -- no redirects, bounded answers, the proxy ---------------------------------------------


async def test_a_redirecting_registry_is_unavailable_and_is_not_followed() -> None:
    with RedirectTarget() as elsewhere:

        async def moved(request: web.Request) -> web.Response:
            return web.Response(status=307, headers={"Location": elsewhere.url + "/secret?x=1"})

        app = web.Application()
        app.router.add_get("/{tail:.*}", moved)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        settings = registry_settings(url, username="reader")
        client = RegistryClient(settings, {"EVENT_SINK_REGISTRY_PASSWORD": "pw-secret"})
        try:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(RegistryUnavailable, match="redirects") as info:
                    await client.schema(session, 1)
        finally:
            await runner.cleanup()
        seen = elsewhere.requests
        target = elsewhere.origin
    assert seen == 0  # neither the request nor its credentials went there
    assert f"HTTP 307 to {target}" in str(info.value)
    assert "secret" not in str(info.value)


async def test_the_registry_goes_through_the_same_proxy() -> None:
    with ForwardProxy() as proxy:
        async with RegistryServer() as registry, aiohttp.ClientSession() as session:
            schema_id = await register(registry.url, SUBJECT, V2)
            client = RegistryClient(
                registry_settings(registry.url),
                {},
                proxy=proxy_for(registry.url, None, {"HTTP_PROXY": proxy.url}),
            )
            answer = await client.schema(session, schema_id)
        relayed = proxy.plain_requests
    assert answer is not None
    assert relayed == 1
