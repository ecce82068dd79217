"""Tombstones on the real broker: skipped and counted by default, their offsets committed."""

from __future__ import annotations

from pathlib import Path

import pytest
from drills import Drill, produce_tombstones

from connector.config import ConfigError, load_settings
from devtools.kafka import KafkaCluster


def test_tombstones_are_skipped_counted_and_committed(kafka: KafkaCluster, tmp_path: Path) -> None:
    with Drill("tombstones", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=2)
        produced = d.produce(topic, 1_000, seed=171)
        produce_tombstones(d.bootstrap, produced, 30)
        d.start_sandbox(latency_ms=5)
        connector = d.start_connector(d.config(topic))
        d.wait_committed(produced, watch=[connector])
        skipped = connector.metric("event_sink_records_skipped_total", reason="tombstone")
        failed = connector.metric("event_sink_records_failed_total")
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, extra={"tombstones_skipped": skipped})
    assert result.lost == 0, result.row()
    assert result.delivered == 1_000, result.row()
    assert skipped == 30
    assert failed == 0


def test_a_tombstone_policy_of_dlq_needs_the_dead_letter_topic(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source:\n  on_tombstone: dlq\n")
    with pytest.raises(ConfigError, match=r"on_tombstone is 'dlq' but dlq\.on_invalid"):
        load_settings(path, environ={})
