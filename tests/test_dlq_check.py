"""The dead-letter topic is checked at start-up, on the real broker, before any record.

A missing topic and a topic this principal may only DESCRIBE (an ACL on the test broker,
whose StandardAuthorizer leaves resources without ACLs open) stop ``event-sink run`` with
exit 2 and a message naming ``dlq.topic``, having consumed and committed nothing. Brokers
that do not answer keep it running, not ready, retrying with backoff, until SIGTERM.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from drills import Drill, admin_client, committed_offsets, readyz

from devtools.kafka import KafkaCluster
from devtools.kafka.jvm import free_ports


def committed_anything(d: Drill, topic: str) -> bool:
    return bool(committed_offsets(d.bootstrap, d.group, [(topic, 0)]))


def test_a_missing_dead_letter_topic_stops_start_up(kafka: KafkaCluster, tmp_path: Path) -> None:
    with Drill("dlq-missing", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=1)
        d.produce(topic, 50, seed=191)
        d.start_sandbox(latency_ms=1)
        missing = f"{topic}-dlq-never-created"
        connector = d.start_connector(d.config(topic, dlq={"topic": missing, "on_invalid": "dlq"}))
        code = connector.process.wait(timeout=60)
        log = connector.log_text()
        assert code == 2, connector.describe()
        assert f"dlq.topic '{missing}' does not exist" in log
        assert d.sandbox is not None
        assert d.sandbox.stats()["events"] == 0
        assert not committed_anything(d, topic)


def test_a_dead_letter_topic_we_may_not_write_stops_start_up(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("dlq-denied", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=1)
        dlq = d.topic(partitions=1, stem="dlq")
        # DESCRIBE only: once a topic has an ACL, what it does not allow is denied.
        acl = (
            ResourceType.TOPIC, dlq, ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
            AclOperation.DESCRIBE, AclPermissionType.ALLOW,
        )  # fmt: skip
        describe_only = AclBinding(*acl)
        admin = admin_client(d.bootstrap)
        try:
            admin.create_acls([describe_only])[describe_only].result(timeout=30)
        except KafkaException as exc:
            # The suite's own broker has an authorizer; KAFKA_BOOTSTRAP_SERVERS may not.
            if exc.args[0].code() != KafkaError.SECURITY_DISABLED:
                raise
            pytest.skip(
                f"the broker at {d.bootstrap} has no authorizer, so no ACL can deny WRITE "
                "there; the suite's own broker has one (unset KAFKA_BOOTSTRAP_SERVERS)"
            )
        try:
            d.produce(topic, 50, seed=192)
            d.start_sandbox(latency_ms=1)
            connector = d.start_connector(d.config(topic, dlq={"topic": dlq, "on_invalid": "dlq"}))
            code = connector.process.wait(timeout=60)
            log = connector.log_text()
        finally:
            admin.delete_acls([AclBindingFilter(*acl)])
        assert code == 2, connector.describe()
        assert f"dlq.topic '{dlq}': this principal may not WRITE to it" in log
        assert not committed_anything(d, topic)


def test_unreachable_brokers_at_start_keep_it_waiting_not_ready(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("dlq-unreachable", tmp_path, kafka.bootstrap_servers) as d:
        d.start_sandbox(latency_ms=1)
        config = d.config(
            "some-topic",
            dlq={"topic": "some-dlq", "on_invalid": "dlq"},
            kafka={"bootstrap_servers": f"127.0.0.1:{free_ports(1)[0]}"},
        )
        connector = d.start_connector(config)
        port = connector.metrics_port()
        deadline = time.monotonic() + 30
        while "not checked yet" not in readyz(port)[1] and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = readyz(port)
        assert status == 503, body
        assert "the dead-letter topic some-dlq is not checked yet" in body
        assert connector.alive
        assert "cannot check dead-letter topic some-dlq" in connector.log_text()
        assert connector.terminate(timeout_s=30) == 0, connector.describe()
        assert connector.exited_after_s is not None
        assert connector.exited_after_s < 20
