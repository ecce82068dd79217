"""The whole pipeline against a real Kafka broker and the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.aio import AIOConsumer
from drills import Drill, catches_signal

from connector.adapters.avro import AvroDecoder, load_schema
from connector.config import Settings
from connector.core.records import TopicPartition
from connector.ops.cli import build_parser
from connector.ops.entry import GLOBAL_OPTIONS_WITH_VALUE, command_of
from connector.pipeline.connector import Connector, InvalidRecordError
from devtools.demo import produce_samples, run_until_delivered
from devtools.sandbox import Faults, SandboxServer

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"
TOKEN = "test-token"


def settings_for(bootstrap: str, topic: str, url: str, **sections: dict[str, Any]) -> Settings:
    data: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "topics": [topic],
            "commit_interval_ms": 200,
        },
        "source": {"schema_file": str(SCHEMA)},
        "batch": {"linger_ms": 50},
        "http": {"url": url, "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 200}},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings.model_validate(data)


def broker_committed(bootstrap: str, group: str, tps: list[TopicPartition]) -> dict[Any, int]:
    """The group's committed offsets as the broker reports them (not the connector's view)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([KafkaTopicPartition(t, p) for t, p in tps], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}


def uuids_by_position(bootstrap: str, topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) → the event_id the producer wrote there, read back from Kafka."""
    decoder = AvroDecoder(load_schema(SCHEMA))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: dict[tuple[int, int], str] = {}
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < 5:
            messages = consumer.consume(1000, timeout=0.5)
            if messages:
                idle_since = time.monotonic()
            for m in messages:
                if m.error() is None:
                    out[(m.partition(), m.offset())] = decoder.decode(m.value())["event_id"]
    finally:
        consumer.close()
    return out


async def test_20000_events_on_6_partitions_arrive_once_each_and_commits_reach_the_end(
    kafka: Any,
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=6)
    end = produce_samples(kafka.bootstrap_servers, topic, 20_000, 11, load_schema(SCHEMA))
    assert sum(end.values()) == 20_000
    async with SandboxServer(TOKEN, keep_events=False) as sandbox:
        settings = settings_for(kafka.bootstrap_servers, topic, sandbox.url)
        result = await run_until_delivered(settings, TOKEN, sandbox, 20_000, end, timeout_s=180)
        stats = sandbox.state.stats
    assert stats.unique_uuids == 20_000
    assert stats.max_batch <= 500
    assert stats.rejects == 0  # every body met the contract
    assert stats.unauthorized == 0
    assert result.offsets_committed
    committed = broker_committed(kafka.bootstrap_servers, settings.kafka.group_id, list(end))
    assert committed == end


class CommitWatcher:
    """Wraps the real AIOConsumer and checks every commit at the moment it is made:
    every record below a committed position must already be accepted by the sandbox."""

    def __init__(self, sandbox: SandboxServer, positions: dict[tuple[int, int], str]) -> None:
        self.sandbox = sandbox
        self.positions = positions
        self.violations: list[str] = []
        self.commits = 0

    def factory(self, conf: dict[str, Any], executor: Any) -> Any:
        consumer = AIOConsumer(conf, executor=executor)
        real_commit = consumer.commit

        async def commit(*args: Any, **kwargs: Any) -> Any:
            accepted = self.sandbox.state.seen_uuids
            for tp in kwargs["offsets"]:
                missing = [
                    offset
                    for (partition, offset), event_id in self.positions.items()
                    if partition == tp.partition and offset < tp.offset
                    if event_id not in accepted
                ]
                if missing:
                    self.violations.append(f"{tp.partition}@{tp.offset}: {missing[:5]}")
            self.commits += 1
            return await real_commit(*args, **kwargs)

        consumer.commit = commit  # type: ignore[method-assign]
        return consumer


async def test_while_the_api_fails_no_offset_is_committed_past_an_undelivered_event(
    kafka: Any,
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=3)
    end = produce_samples(kafka.bootstrap_servers, topic, 6_000, 12, load_schema(SCHEMA))
    positions = uuids_by_position(kafka.bootstrap_servers, topic)
    assert len(positions) == 6_000
    # The first 12 requests fail, then a quarter of the rest at random.
    faults = Faults(script=[503] * 12, failure_rate=0.25)
    async with SandboxServer(TOKEN, faults=faults, rng=random.Random(5)) as sandbox:
        watcher = CommitWatcher(sandbox, positions)
        settings = settings_for(
            kafka.bootstrap_servers, topic, sandbox.url, batch={"max_events": 200}
        )
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            connector = Connector(
                settings,
                decoder=AvroDecoder(load_schema(SCHEMA)),
                session=session,
                token=lambda: TOKEN,
                consumer_factory=watcher.factory,
            )
            task = asyncio.create_task(connector.run(stop))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and connector.committed() != end:
                await asyncio.sleep(0.1)
            stop.set()
            await task
        stats = sandbox.state.stats
    assert stats.faults >= 12
    assert stats.unique_uuids == 6_000
    assert watcher.commits > 0
    assert watcher.violations == []
    assert broker_committed(kafka.bootstrap_servers, settings.kafka.group_id, list(end)) == end


async def test_backpressure_pauses_and_resumes_without_losing_anything(kafka: Any) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=2)
    end = produce_samples(kafka.bootstrap_servers, topic, 5_000, 13, load_schema(SCHEMA))
    async with SandboxServer(TOKEN, faults=Faults(latency_ms=30), keep_events=False) as sandbox:
        settings = settings_for(
            kafka.bootstrap_servers,
            topic,
            sandbox.url,
            kafka={"max_pending_events": 400, "consume_max_messages": 100},
            batch={"max_events": 100},
            http={"max_in_flight": 2},
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
            peak = 0
            while time.monotonic() < deadline and connector.committed() != end:
                peak = max(peak, connector.tracker.pending)
                await asyncio.sleep(0.02)
            stop.set()
            await task
        stats = sandbox.state.stats
    assert connector.metrics.total(connector.metrics.backpressure_pauses) >= 1
    # The cap holds to within one consume call of the limit.
    assert peak <= 400 + 100
    assert stats.unique_uuids == 5_000
    assert broker_committed(kafka.bootstrap_servers, settings.kafka.group_id, list(end)) == end


async def test_an_undecodable_record_stops_the_connector_and_nothing_past_it_is_committed(
    kafka: Any,
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=1)
    schema = load_schema(SCHEMA)
    produce_samples(kafka.bootstrap_servers, topic, 10, 14, schema)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(topic, value=b"\xff\xfe not avro")
    producer.flush(10)
    produce_samples(kafka.bootstrap_servers, topic, 10, 15, schema)
    async with SandboxServer(TOKEN, keep_events=False) as sandbox:
        settings = settings_for(kafka.bootstrap_servers, topic, sandbox.url)
        async with aiohttp.ClientSession() as session:
            connector = Connector(
                settings, decoder=AvroDecoder(schema), session=session, token=lambda: TOKEN
            )
            with pytest.raises(InvalidRecordError, match=rf"decode failed for {topic}\[0\]@10"):
                await asyncio.wait_for(connector.run(asyncio.Event()), timeout=60)
        delivered = sandbox.state.stats.unique_uuids
    assert delivered == 10  # the records before the bad one were still delivered
    committed = broker_committed(kafka.bootstrap_servers, settings.kafka.group_id, [(topic, 0)])
    assert committed == {(topic, 0): 10}


def test_event_sink_run_drains_and_exits_0_on_sigterm(kafka: Any, tmp_path: Path) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=2)
    end = produce_samples(kafka.bootstrap_servers, topic, 2_000, 16, load_schema(SCHEMA))
    group = f"g-{uuid.uuid4().hex[:8]}"
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "connector", "sandbox", "--port", "0", "--token", TOKEN],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        url = _sandbox_url(sandbox)
        config = tmp_path / "config.yaml"
        config.write_text(
            f"kafka:\n  bootstrap_servers: '{kafka.bootstrap_servers}'\n  group_id: {group}\n"
            f"  topics: [{topic}]\n  commit_interval_ms: 200\n"
            f"http:\n  url: '{url}'\nbatch:\n  linger_ms: 50\n"
        )
        code, log = _run_until_sigterm(
            config,
            lambda _pid: broker_committed(kafka.bootstrap_servers, group, list(end)) == end,
            timeout_s=90,
        )
        assert code == 0, log
        assert "stopped cleanly" in log
        assert TOKEN not in log
    finally:
        sandbox.send_signal(signal.SIGINT)
        sandbox.communicate(timeout=30)
    assert broker_committed(kafka.bootstrap_servers, group, list(end)) == end


@pytest.mark.parametrize("delay_s", [0.0, 0.3, 1.0, 3.0])
def test_event_sink_run_exits_0_on_sigterm_at_any_moment_of_start_up(
    kafka: Any, tmp_path: Path, delay_s: float
) -> None:
    """Kubernetes may stop a pod right after it started. A SIGTERM during the imports
    (0.0 s after the first handler is in place: importing takes ~0.4 s), while the consumer
    joins the group, or once it runs ends ``event-sink run`` with exit code 0 and no
    traceback."""
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=1)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"kafka:\n  bootstrap_servers: '{kafka.bootstrap_servers}'\n"
        f"  group_id: g-{uuid.uuid4().hex[:8]}\n  topics: [{topic}]\n"
        "http:\n  url: 'http://127.0.0.1:9/v1/events/import'\n"
    )
    code, log = _run_until_sigterm(
        config,
        lambda pid: catches_signal(pid, signal.SIGTERM),
        timeout_s=30,
        poll_s=0.001,
        then_s=delay_s,
    )
    assert code == 0, log
    assert "Traceback" not in log, log
    if delay_s == 0.0:
        assert "SIGTERM before start-up finished" in log, log


def _run_until_sigterm(
    config: Path,
    ready: Callable[[int], bool],
    *,
    timeout_s: float,
    poll_s: float = 0.5,
    then_s: float = 0.0,
) -> tuple[int, str]:
    """Run ``event-sink run --config config`` until ``ready(pid)`` (or ``timeout_s``), wait
    ``then_s``, send SIGTERM; return the exit code and what it wrote to stderr."""
    run = subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "EVENT_SINK_TOKEN": TOKEN},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready(run.pid) and time.monotonic() < deadline:
            time.sleep(poll_s)
        time.sleep(then_s)
        run.send_signal(signal.SIGTERM)
        _, log = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    return run.returncode, log


def _sandbox_url(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "listening on " in line:
            return line.split("listening on ", 1)[1].strip()
    raise AssertionError("the sandbox did not say where it listens")


def test_the_end_of_a_backlog_is_committed_at_once_not_an_interval_later(
    kafka: Any, tmp_path: Path
) -> None:
    # commit_interval_ms is a minute: only the commit made once the consumer is caught up
    # can bring the group's offsets to the end within the wait below.
    events = 3_000
    with Drill("caught-up", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, events, seed=203)
        d.start_sandbox()
        process = d.start_connector(d.config(topic, commit_interval_ms=60_000))
        took = d.wait_committed(produced, timeout_s=30, watch=[process])
        assert process.terminate() == 0, d.context()
        result = d.result(produced, extra={"committed_after_s": round(took, 1)})
    assert result.lost == 0, result.row()
    assert result.delivered == events, result.row()


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["run", "--config", "c.yaml"], "run"),
        (["--log-level", "DEBUG", "run"], "run"),
        (["--log-format=plain", "--log-level", "INFO", "run"], "run"),
        (["--log-level", "run", "demo"], "demo"),
        (["check-config", "--config", "run"], "check-config"),
        (["--version"], None),
    ],
)
def test_the_early_signal_handlers_find_the_command_past_global_options(
    argv: list[str], command: str | None
) -> None:
    assert command_of(argv) == command


def test_the_early_signal_handlers_know_every_global_option_that_takes_a_value() -> None:
    # connector/ops/entry.py cannot import the parser (that is the heavy import it runs
    # before), so it keeps its own list; this keeps the two the same.
    takes_value = {
        option
        for action in build_parser()._actions
        if action.option_strings and action.nargs != 0 and action.dest not in {"help", "version"}
        for option in action.option_strings
    }
    assert takes_value == set(GLOBAL_OPTIONS_WITH_VALUE)
