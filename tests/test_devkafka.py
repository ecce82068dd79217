"""The development broker: a real round trip through it, and the jar cache without a network."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

import devtools.kafka.broker
from devtools.kafka import (
    DEPENDENCY_PLUGIN_VERSION,
    KAFKA_VERSION,
    ExternalKafka,
    KafkaCluster,
    LocalKafka,
    external_or_local,
    kafka_libs,
    require_tools,
)
from devtools.kafka.jvm import accepts


def test_produce_consume_commit(kafka: KafkaCluster, topic_factory: Callable[[int], str]) -> None:
    topic = topic_factory(3)
    sent = {f"message-{i}".encode() for i in range(30)}
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "acks": "all"})
    try:
        for i, payload in enumerate(sorted(sent)):
            # Explicit partitions, so every partition has messages and offsets to commit.
            producer.produce(topic, payload, partition=i % 3, on_delivery=delivered)
        assert producer.flush(30) == 0
    finally:
        producer.close()
    assert failures == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        received: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=100, timeout=0.5):
                assert message.error() is None, message.error()
                value = message.value()
                assert isinstance(value, bytes)
                received.append(value)
        assert sorted(received) == sorted(sent)

        consumer.commit(asynchronous=False)
        partitions = [TopicPartition(topic, p) for p in range(3)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions
        }
        assert ends == {0: 10, 1: 10, 2: 10}
        assert committed == ends
    finally:
        consumer.close()


def test_create_topic_is_usable_at_once(kafka: KafkaCluster) -> None:
    name = f"fresh-{uuid.uuid4().hex}"
    kafka.create_topic(name, partitions=4)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    try:
        metadata = producer.list_topics(name, timeout=10)
        partitions = metadata.topics[name].partitions
        assert sorted(partitions) == [0, 1, 2, 3]
        assert all(p.leader >= 0 for p in partitions.values())
    finally:
        producer.close()


class FakeMaven:
    """Stands in for ``mvn``: writes the jar the real one would, counts calls."""

    def __init__(self, *, delay: float = 0.0, fail_with: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.poms: list[str] = []
        self.delay = delay
        self.fail_with = fail_with

    def __call__(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        self.poms.append(Path(cmd[cmd.index("-f") + 1]).read_text())
        time.sleep(self.delay)
        if self.fail_with is not None:
            return subprocess.CompletedProcess(cmd, 1, stdout=self.fail_with)
        out = Path(next(a for a in cmd if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
        out.mkdir(parents=True)
        (out / f"kafka_2.13-{KAFKA_VERSION}.jar").write_bytes(b"jar")
        return subprocess.CompletedProcess(cmd, 0, stdout="")


def refuse(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    raise AssertionError(f"ran {cmd} although the cache was complete")


def test_fetch_once_then_reuse_cache(tmp_path: Path) -> None:
    maven = FakeMaven()
    libs = kafka_libs(cache=tmp_path, runner=maven)

    assert libs == tmp_path / "kafka" / KAFKA_VERSION / "libs"
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert (libs / ".complete").is_file()
    assert len(maven.calls) == 1
    assert maven.calls[0][:3] == ["mvn", "-B", "-q"]
    assert "dependency:copy-dependencies" in maven.calls[0]
    assert f"<version>{KAFKA_VERSION}</version>" in maven.poms[0]
    assert f"<version>{DEPENDENCY_PLUGIN_VERSION}</version>" in maven.poms[0]
    # Only the cache and its lock remain; the download's temporary directory is gone.
    assert sorted(p.name for p in libs.parent.iterdir()) == [".lock", "libs"]

    assert kafka_libs(cache=tmp_path, runner=refuse) == libs


def test_interrupted_download_is_fetched_again(tmp_path: Path) -> None:
    libs = tmp_path / "kafka" / KAFKA_VERSION / "libs"
    libs.mkdir(parents=True)
    (libs / "half-written.jar").write_bytes(b"")  # no .complete marker: a killed download

    maven = FakeMaven()
    assert kafka_libs(cache=tmp_path, runner=maven) == libs
    assert len(maven.calls) == 1
    assert not (libs / "half-written.jar").exists()


def test_marker_from_another_pom_is_fetched_again(tmp_path: Path) -> None:
    libs = kafka_libs(cache=tmp_path, runner=FakeMaven())
    (libs / ".complete").write_text("digest of some older pom\n")

    maven = FakeMaven()
    kafka_libs(cache=tmp_path, runner=maven)
    assert len(maven.calls) == 1


def test_concurrent_fetches_download_once(tmp_path: Path) -> None:
    maven = FakeMaven(delay=0.3)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(kafka_libs(cache=tmp_path, runner=maven)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert len(set(results)) == 1
    assert len(maven.calls) == 1


def test_failed_maven_raises_with_its_output(tmp_path: Path) -> None:
    output = "\n".join(f"line {i}" for i in range(100)) + "\n[ERROR] Could not resolve kafka"
    with pytest.raises(RuntimeError, match="Could not resolve kafka") as info:
        kafka_libs(cache=tmp_path, runner=FakeMaven(fail_with=output))
    assert "line 0\n" not in str(info.value)  # only the tail
    base = tmp_path / "kafka" / KAFKA_VERSION
    assert sorted(p.name for p in base.iterdir()) == [".lock"]


def test_missing_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"JDK 17.*Maven"):
        require_tools("java", "mvn")


def test_external_broker_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.invalid:9092")
    monkeypatch.setattr(devtools.kafka.broker, "LocalKafka", None)  # starting one would fail loudly
    with external_or_local() as cluster:
        assert isinstance(cluster, ExternalKafka)
        assert cluster.bootstrap_servers == "kafka.invalid:9092"


def test_broker_that_cannot_start_raises_with_its_output(tmp_path: Path) -> None:
    empty_libs = tmp_path / "libs"
    empty_libs.mkdir()
    broker = LocalKafka(libs=empty_libs, startup_timeout=30)
    with pytest.raises(RuntimeError, match=r"kafka\.tools\.StorageTool"), broker:
        pass
    with pytest.raises(RuntimeError, match="not running"):
        _ = broker.bootstrap_servers


def _produce_one(bootstrap: str, topic: str, payload: bytes) -> None:
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    try:
        producer.produce(topic, payload, partition=0, on_delivery=delivered)
        assert producer.flush(30) == 0
    finally:
        producer.close()
    assert failures == []


def _read_all(bootstrap: str, topic: str, group: str, expected: int) -> list[bytes]:
    """Read ``expected`` messages of partition 0 as ``group``, committing what was read."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10, timeout=0.5):
                assert message.error() is None, message.error()
                value = message.value()
                assert isinstance(value, bytes)
                received.append(value)
        if received:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return received


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, 0)], timeout=30)
    finally:
        consumer.close()
    return int(found[0].offset)


def test_broker_stop_and_start_keep_ports_topics_messages_and_commits() -> None:
    """A dedicated broker (never the session's): stopped (controlled, then SIGKILL) and
    started again on the same ports with the same storage."""
    with LocalKafka() as broker:
        bootstrap = broker.bootstrap_servers
        pid = broker.pid
        assert broker.broker_running
        assert pid is not None
        topic = f"restart-{uuid.uuid4().hex[:8]}"
        group = f"restart-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic)
        _produce_one(bootstrap, topic, b"before the outage")
        assert _read_all(bootstrap, topic, group, 1) == [b"before the outage"]

        broker.stop_broker()
        assert not broker.broker_running
        assert broker.pid is None
        assert broker.bootstrap_servers == bootstrap  # still the address to come back on
        port = int(bootstrap.rsplit(":", 1)[1])
        assert not accepts(port)
        broker.stop_broker()  # stopping a stopped broker does nothing

        broker.start_broker()
        assert broker.broker_running
        assert broker.pid not in (None, pid)
        assert broker.bootstrap_servers == bootstrap
        assert _committed(bootstrap, group, topic) == 1
        _produce_one(bootstrap, topic, b"after the restart")
        assert _read_all(bootstrap, topic, f"{group}-2", 2) == [
            b"before the outage",
            b"after the restart",
        ]
        with pytest.raises(RuntimeError, match="already running"):
            broker.start_broker()

        broker.stop_broker(kill=True)  # a crash: no controlled shutdown
        assert not broker.broker_running
        broker.start_broker()
        assert _read_all(bootstrap, topic, f"{group}-3", 2) == [
            b"before the outage",
            b"after the restart",
        ]
        log = broker.log_path.read_text(errors="replace")
        assert log.count("broker restarted") == 2
    with pytest.raises(RuntimeError, match="not running"):
        broker.stop_broker()
    with pytest.raises(RuntimeError, match="not running"):
        broker.start_broker()
