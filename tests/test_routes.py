"""Routes: several streams in one connector, each with its own topics, source, mapping and
endpoint, isolated from each other, on the real broker (the config checks are in
test_routes_config.py)."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import fastavro
import orjson
from drills import (
    ROOT,
    SCHEMA,
    ConnectorProcess,
    Drill,
    Produced,
    SandboxProcess,
    _produce,
    committed_offsets,
    connector_config,
    create_topic,
    produce_events,
    produce_raw,
    read_topic,
    wait_committed,
    wait_until,
    write_config,
)

from connector.adapters.avro import load_schema
from connector.adapters.json_decoder import JsonDecoder, load_json_schema
from connector.mapping import mapper_for
from devtools import samples
from devtools.kafka import KafkaCluster

JSON_SCHEMA = ROOT / "schemas" / "user_behavior_event.schema.json"


def _routes_config(
    d: Drill,
    avro: tuple[str, SandboxProcess, Path],
    json_route: tuple[str, SandboxProcess, Path],
    **extra: Any,
) -> Path:
    """Two routes: ``behaviour`` (Avro) and ``orders`` (JSON), each its own endpoint and
    token file; EVENT_SINK_TOKEN (the drill's) is accepted by neither endpoint."""
    config = connector_config(
        bootstrap=d.bootstrap, group=d.group, topics=["unused"], url=avro[1].url, extra=extra
    )
    del config["kafka"]["topics"], config["source"], config["http"]["url"]
    config["routes"] = [
        {
            "name": "behaviour",
            "topics": [avro[0]],
            "source": {"schema_file": str(SCHEMA)},
            "http": {"url": avro[1].url, "token_file": str(avro[2])},
        },
        {
            "name": "orders",
            "topics": [json_route[0]],
            "source": {"format": "json", "json_schema_file": str(JSON_SCHEMA)},
            "http": {"url": json_route[1].url, "token_file": str(json_route[2])},
        },
    ]
    return write_config(d.dir / "routes.yaml", config)


def _token(d: Drill, name: str) -> tuple[str, Path]:
    token = f"{name}-token-{uuid.uuid4().hex}"
    path = d.dir / f"{name}.token"
    path.write_text(token)
    return token, path


def _records(
    d: Drill, topic: str, count: int, seed: int, *, avro: bool = False
) -> tuple[Produced, list[dict[str, Any]]]:
    """Sample records (a fixed time base, so the expected events are known), as JSON or
    Avro binary."""
    records = list(samples.sample_events(count, seed, 1_700_000_000_000))
    schema = load_schema(SCHEMA)

    def encode(record: dict[str, Any]) -> bytes:
        if not avro:
            return orjson.dumps(record)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, record)
        return out.getvalue()

    produced = Produced(topic)
    positions = _produce(d.bootstrap, topic, [encode(r) for r in records], None)
    produced._advance({(t, p): o + 1 for t, p, o in positions})
    produced.uuids |= {str(r["event_id"]) for r in records}
    return produced, records


def test_two_routes_deliver_each_to_its_own_endpoint_with_its_own_token(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("routes", tmp_path, kafka.bootstrap_servers) as d:
        avro_topic, json_topic = d.topic(3, "avro"), d.topic(3, "json")
        dlq = d.topic(1, "dlq")
        token_a, file_a = _token(d, "behaviour")
        token_b, file_b = _token(d, "orders")
        sandbox_a = SandboxProcess(d.dir / "a.log", token=token_a, keep_events=True)
        sandbox_b = SandboxProcess(d.dir / "b.log", token=token_b, keep_events=True)
        try:
            avro_produced, avro_records = _records(d, avro_topic, 1500, 31, avro=True)
            json_produced, json_records = _records(d, json_topic, 1200, 32)
            bad = produce_raw(d.bootstrap, json_produced, [b'{"event_id": "x", '])
            config = _routes_config(
                d,
                (avro_topic, sandbox_a, file_a),
                (json_topic, sandbox_b, file_b),
                dlq={"topic": dlq, "on_invalid": "dlq"},
            )
            connector = d.start_connector(config)
            ends = {**avro_produced.end_offsets, **json_produced.end_offsets}
            wait_committed(d.bootstrap, d.group, ends, timeout_s=180, watch=[connector])
            per_route = {
                route: (
                    connector.metric("event_sink_records_delivered_total", route=route),
                    connector.metric("event_sink_records_dead_lettered_total", route=route),
                )
                for route in ("behaviour", "orders")
            }
            assert connector.terminate() == 0, d.context()
            events_a, events_b = sandbox_a.events(), sandbox_b.events()
            requests = sandbox_a.requests() + sandbox_b.requests()
            letters = list(read_topic(d.bootstrap, dlq))
        finally:
            sandbox_a.close()
            sandbox_b.close()
    print(f"routes: delivered/dead-lettered per route {per_route}; committed = end offsets")
    # Every event at its own route's endpoint: no request mixed routes.
    assert {e["uuid"] for e in events_a} == avro_produced.uuids
    assert {e["uuid"] for e in events_b} == json_produced.uuids
    assert all(r["status"] == 200 for r in requests)  # every token was the route's own
    assert per_route == {"behaviour": (1500, 0), "orders": (1200, 1)}
    # The exact body: what each route's own mapping makes of the record.
    avro_mapper = mapper_for(None, load_schema(SCHEMA))
    json_mapper = mapper_for(None, JsonDecoder(load_json_schema(JSON_SCHEMA), JSON_SCHEMA).schema)
    for events, mapper, records in (
        (events_a, avro_mapper, {str(r["event_id"]): r for r in avro_records}),
        (events_b, json_mapper, {str(r["event_id"]): r for r in json_records}),
    ):
        for event in events:
            record = records[event["uuid"]]
            expected = json.loads(mapper.encode(record, lambda: "unused", None))
            assert event == expected
    # The one bad JSON record is the one dead letter, and its header names its route.
    assert len(letters) == 1
    headers = dict(letters[0][3])
    assert headers["event-sink.route"] == b"orders"
    position = (json_topic, int(headers["event-sink.original.partition"] or b""))
    assert (*position, int(headers["event-sink.original.offset"] or b"")) == bad[0]


def _readyz(connector: ConnectorProcess) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{connector.metrics_port()}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_route_refused_401_halts_alone_while_the_other_keeps_delivering(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("route-halt", tmp_path, kafka.bootstrap_servers) as d:
        avro_topic, json_topic = d.topic(3, "avro"), d.topic(3, "json")
        token_a, file_a = _token(d, "behaviour")
        token_b, file_b = _token(d, "orders")
        sandbox_a = SandboxProcess(d.dir / "a.log", token=token_a)
        sandbox_b = SandboxProcess(d.dir / "b.log", token=token_b)
        try:
            avro_produced = produce_events(d.bootstrap, avro_topic, 500, seed=41)
            json_produced, _ = _records(d, json_topic, 800, 42)
            sandbox_b.set_faults(failure_rate=1.0, failure_status=401)  # orders: refused
            config = _routes_config(
                d, (avro_topic, sandbox_a, file_a), (json_topic, sandbox_b, file_b)
            )
            connector = d.start_connector(config)
            wait_committed(
                d.bootstrap, d.group, avro_produced.end_offsets, timeout_s=120, watch=[connector]
            )
            wait_until(
                lambda: connector.metric("event_sink_route_halted", route="orders") == 1,
                timeout_s=30,
                what="orders halted",
            )
            # The halt lasts 10 s from here; behaviour gets a new batch every 0.5 s.
            halted_at, before = time.monotonic(), len(sandbox_a.uuids())
            stop = threading.Event()

            def produce_while_halted() -> None:
                seed = 100
                while not stop.is_set():
                    produce_events(d.bootstrap, avro_topic, 100, seed=seed, into=avro_produced)
                    seed += 1
                    stop.wait(0.5)

            producer = threading.Thread(target=produce_while_halted)
            producer.start()
            status, ready = _readyz(connector)
            time.sleep(max(0.0, 10 - (time.monotonic() - halted_at)))
            stop.set()
            producer.join()
            during = len(sandbox_a.uuids()) - before
            json_committed = committed_offsets(
                d.bootstrap, d.group, json_produced.end_offsets, admin=d.admin
            )
            halted_metric = (
                connector.metric("event_sink_route_halted", route="orders"),
                connector.metric("event_sink_route_halted", route="behaviour"),
            )
            paused_auth = connector.metric("event_sink_paused", route="orders", reason="auth")
            sandbox_b.set_faults()  # the token is accepted again
            ends = {**avro_produced.end_offsets, **json_produced.end_offsets}
            wait_committed(d.bootstrap, d.group, ends, timeout_s=180, watch=[connector])
            assert connector.terminate() == 0, d.context()
            delivered_a, delivered_b = sandbox_a.uuids(), sandbox_b.uuids()
        finally:
            sandbox_a.close()
            sandbox_b.close()
    produced_during = avro_produced.count - 500
    print(
        f"route halt: behaviour delivered {during} events during orders' 10 s halt "
        f"(produced {produced_during} then); orders committed {json_committed} meanwhile"
    )
    assert status == 200, ready  # one route can deliver: ready
    assert ready["halted_routes"] == ["orders"]
    assert "1 of 2 routes can deliver; halted: orders (the API refuses" in ready["reason"]
    assert halted_metric == (1, 0)
    assert paused_auth == 1
    assert json_committed == {}  # the halted route committed nothing
    assert during >= produced_during // 2  # the healthy route kept delivering
    assert delivered_a == avro_produced.uuids
    assert delivered_b == json_produced.uuids


def test_a_new_topic_two_patterns_match_stops_the_connector_and_commits_none_of_it(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("route-clash", tmp_path, kafka.bootstrap_servers) as d:
        stem = f"clash-{uuid.uuid4().hex[:8]}"
        sandbox = d.start_sandbox()
        mine = f"{stem}-a1"
        create_topic(d.bootstrap, mine, 1)
        produced = produce_events(d.bootstrap, mine, 50, seed=51)
        config = connector_config(
            bootstrap=d.bootstrap,
            group=d.group,
            topics=["unused"],
            url=sandbox.url,
            extra={"kafka": {"properties": {"topic.metadata.refresh.interval.ms": 1000}}},
        )
        del config["kafka"]["topics"], config["source"]
        config["routes"] = [
            {"name": "a", "topic_pattern": f"^{stem}-a.*", "source": {"schema_file": str(SCHEMA)}},
            {
                "name": "b",
                "topic_pattern": f"^{stem}-.*-b$",
                "source": {"schema_file": str(SCHEMA)},
            },
        ]
        connector = d.start_connector(write_config(d.dir / "clash.yaml", config))
        d.wait_committed(produced, watch=[connector])
        both = f"{stem}-a-b"  # a new topic both patterns match
        create_topic(d.bootstrap, both, 2)
        clash = produce_events(d.bootstrap, both, 40, seed=52)
        wait_until(lambda: not connector.alive, timeout_s=60, what="the connector to stop")
        code = connector.terminate()
        log = connector.log_text()
        committed = committed_offsets(d.bootstrap, d.group, clash.end_offsets, admin=d.admin)
        delivered = sandbox.uuids()
    assert code == 2, log
    assert f"was assigned topic '{both}', which route" in log
    assert committed == {}
    assert not delivered & clash.uuids
