"""``workers: N``: N worker processes in one group, one port for their metrics and health.

The end-to-end tests run the real ``event-sink run`` against the real broker and the
sandbox, each as its own process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drills import ConnectorProcess, Drill, wait_until
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connector.ops.workers import (
    MAX_GAUGES,
    Supervisor,
    combined_check,
    merge_metrics,
    render_metrics,
)
from devtools.kafka import KafkaCluster

README = Path(__file__).resolve().parent.parent / "README.md"


def _worker_text(
    delivered: dict[str, float], lag: dict[str, float], paused: float, in_flight: float
) -> str:
    """What one worker's /metrics could say, made with the library the connector uses."""
    registry = CollectorRegistry()
    records = Counter("event_sink_records_delivered", "d", ("partition",), registry=registry)
    for partition, value in delivered.items():
        records.labels(partition).inc(value)
    lag_gauge = Gauge("event_sink_consumer_lag", "l", ("partition",), registry=registry)
    for partition, value in lag.items():
        lag_gauge.labels(partition).set(value)
    Gauge("event_sink_paused", "p", registry=registry).set(paused)
    Gauge("event_sink_http_requests_in_flight", "f", registry=registry).set(in_flight)
    histogram = Histogram("event_sink_batch_events", "b", buckets=(10, 500), registry=registry)
    for _ in range(int(in_flight)):
        histogram.observe(100)
    return generate_latest(registry).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_merged_metrics_add_up_counters_and_take_the_owner_of_a_partition() -> None:
    first = _worker_text({"0": 10, "1": 5}, {"0": 7}, paused=0, in_flight=2)
    second = _worker_text({"1": 1, "2": 3}, {"0": 4, "2": 9}, paused=1, in_flight=3)
    merged = _samples(render_metrics(merge_metrics([first, second]), CollectorRegistry()).decode())
    assert merged[("event_sink_records_delivered_total", (("partition", "0"),))] == 10
    assert merged[("event_sink_records_delivered_total", (("partition", "1"),))] == 6
    assert merged[("event_sink_records_delivered_total", (("partition", "2"),))] == 3
    # Per-partition gauges and flags: the largest value, never a sum.
    assert merged[("event_sink_consumer_lag", (("partition", "0"),))] == 7
    assert merged[("event_sink_consumer_lag", (("partition", "2"),))] == 9
    assert merged[("event_sink_paused", ())] == 1
    # Other gauges and histograms add up.
    assert merged[("event_sink_http_requests_in_flight", ())] == 5
    assert merged[("event_sink_batch_events_count", ())] == 5
    assert merged[("event_sink_batch_events_bucket", (("le", "500.0"),))] == 5
    assert merged[("event_sink_batch_events_bucket", (("le", "10.0"),))] == 0


def test_one_worker_merged_is_that_worker() -> None:
    text = _worker_text({"0": 3}, {"0": 1}, paused=0, in_flight=1)
    merged = render_metrics(merge_metrics([text]), CollectorRegistry()).decode()
    assert _samples(merged) == _samples(text)
    types = {f.name: f.type for f in text_string_to_metric_families(merged)}
    assert types == {f.name: f.type for f in text_string_to_metric_families(text)}


def test_the_readme_documents_the_workers_metric_and_the_merge_rules() -> None:
    section = README.read_text().split("## Workers", 1)[1].split("\n## ", 1)[0]

    for name in [*MAX_GAUGES, "event_sink_workers"]:
        assert f"`{name}`" in section, name


def _get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _worker_pids(supervisor_pid: int) -> list[int]:
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text()
    return [int(pid) for pid in children.split()]


def _owners(process: ConnectorProcess) -> set[int]:
    """The workers that own partitions now, from the log (which says which worker said
    what). Cooperative rebalances are incremental: each line names what was added or taken
    away."""
    owned: dict[int, set[str]] = {}
    for record in process.log_records():
        msg, worker = record.get("msg", ""), record.get("worker")
        kind, _, listed = msg.partition(": ")
        if worker is None:
            continue
        names = set() if listed == "none" else set(listed.split(", "))
        if kind == "partitions assigned":
            owned.setdefault(worker, set()).update(names)
        elif kind in ("partitions revoked", "partitions lost (not revoked cleanly)"):
            owned.setdefault(worker, set()).difference_update(names)
    return {worker for worker, tps in owned.items() if tps}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_the_partitions_and_one_port(kafka: KafkaCluster, tmp_path: Path) -> None:
    events = 6_000
    with Drill("workers", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=4)
        d.start_sandbox(latency_ms=20)
        config = d.config(topic, workers=2)
        process = d.start_connector(config)
        port = process.metrics_port()
        workers = _worker_pids(process.pid)
        assert len(workers) == 2, d.context()

        # Both members of the group get partitions (the events come once they have).
        wait_until(
            lambda: _owners(process) == {0, 1},
            timeout_s=60,
            what="both workers own partitions",
            watch=[process],
            context=d.context,
        )
        produced = d.produce(topic, events, seed=201)
        d.wait_committed(produced, watch=[process])

        # One port: every worker's series, added up.
        assert process.metric("event_sink_workers") == 2
        assert process.metric("event_sink_records_delivered_total") == events
        assert process.metric("event_sink_partitions_assigned") == 4
        assert process.metric("event_sink_end_to_end_latency_seconds_count") == events
        assert _get(port, "/readyz") == (200, {"ok": True, "reason": "2 workers"})
        assert _get(port, "/healthz")[0] == 200

        assert process.terminate() == 0, d.context()
        assert not any(_alive(pid) for pid in workers)
        stopped = [r for r in process.log_records() if r.get("msg") == "stopped cleanly"]
        assert len(stopped) == 3  # both workers and the supervisor
        # Each worker's last progress line: both delivered a share.
        delivered: dict[int, int] = {}
        for record in process.log_records():
            match = re.match(r"progress: \d+ consumed, (\d+) delivered", record.get("msg", ""))
            if match and "worker" in record:
                delivered[record["worker"]] = int(match.group(1))
        assert sum(delivered.values()) == events, delivered
        assert min(delivered.values()) > 0, delivered
        result = d.result(produced)
    assert result.lost == 0, result.row()
    assert result.delivered == events, result.row()
    assert result.duplicates == 0, result.row()


def test_a_worker_killed_stops_the_pod_and_a_restart_loses_nothing(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    events = 20_000
    with Drill("worker-killed", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=4)
        produced = d.produce(topic, events, seed=202)
        # About 5,000 events/s per worker (2 requests of 500 in flight, 200 ms each), so
        # the kill lands mid-flight.
        d.start_sandbox(latency_ms=200)
        config = d.config(
            topic,
            workers=2,
            max_in_flight=2,
            # The killed member keeps its partitions until its session times out: 6 s
            # (the broker's minimum) keeps the restart short.
            kafka={"properties": {"session.timeout.ms": 6000}},
        )
        first = d.start_connector(config)
        # Killed once the group is settled and both deliver (a member that dies in the
        # middle of a rebalance leaves the survivor's last commit waiting for the group).
        wait_until(
            lambda: _owners(first) == {0, 1},
            timeout_s=60,
            what="both workers own partitions",
            watch=[first],
            context=d.context,
        )
        d.wait_delivered(events // 5, watch=[first])
        victim, survivor = _worker_pids(first.pid)
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        code = first.process.wait(timeout=60)
        stopped_after_s = time.monotonic() - started
        assert code == 1, d.context()  # a worker killed by a signal: exit 1
        assert not _alive(survivor)
        log = [r.get("msg", "") for r in first.log_records()]
        assert any("exited with signal SIGKILL" in m for m in log), d.context()
        assert "stopped cleanly" in log, d.context()  # the survivor drained

        second = d.start_connector(config)
        d.wait_committed(produced, watch=[second])
        assert second.terminate() == 0, d.context()
        result = d.result(produced, extra={"supervisor_stopped_after_s": stopped_after_s})
    assert result.lost == 0, result.row()
    assert result.delivered == events, result.row()


def _fake_workers(code: str) -> Callable[[list[str], dict[str, str]], subprocess.Popen[bytes]]:
    """Stand-in worker processes running ``code``: the supervisor's own logic, no Kafka."""

    def launch(_argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        assert env["EVENT_SINK__WORKERS"] == "1"
        assert env["EVENT_SINK__METRICS__PORT"] == "0"
        return subprocess.Popen([sys.executable, "-c", code])

    return launch


def _supervisor(code: str) -> Supervisor:
    return Supervisor(
        2,
        config=None,
        passthrough=[],
        host="127.0.0.1",
        port=0,
        stop_timeout_s=10,
        launch=_fake_workers(code),
    )


async def test_a_worker_exiting_on_its_own_ends_the_supervisor_with_its_code() -> None:
    supervisor = _supervisor("import sys; sys.exit(3)")
    assert await asyncio.wait_for(supervisor.run(asyncio.Event()), 30) == 3


async def test_a_worker_that_fails_its_drain_shows_in_the_supervisor_exit_code() -> None:
    # Asked to stop, this worker exits 5 (as a worker stopping on an error would).
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))\n"
        "time.sleep(60)\n"
    )
    supervisor = _supervisor(code)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, stop.set)
    assert await asyncio.wait_for(supervisor.run(stop), 30) == 5


def test_the_supervisors_health_names_failing_workers_and_every_halted_route() -> None:
    ready = json.dumps({"ok": True, "reason": "1 of 2 routes can deliver; halted: orders",
                        "halted_routes": ["orders"]})  # fmt: skip
    stuck = json.dumps({"ok": False, "reason": "no route can deliver",
                        "halted_routes": ["clicks", "orders"]})  # fmt: skip
    both = combined_check([0, 1], [(200, ready), (200, json.dumps({"ok": True, "reason": "ok"}))])
    assert (both.ok, both.reason, both.halted) == (True, "2 workers", ("orders",))
    one_down = combined_check([0, 1, 2], [(200, ready), (503, stuck), None])
    assert not one_down.ok
    assert one_down.reason == "worker 1: no route can deliver; worker 2: no answer"
    assert one_down.halted == ("orders", "clicks")
    garbled = combined_check([0], [(503, "<html>Bad Gateway</html>")])
    assert (garbled.ok, garbled.reason, garbled.halted) == (
        False,
        "worker 0: <html>Bad Gateway</html>",
        (),
    )
