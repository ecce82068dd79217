"""Drills of "deliver at the pace the API allows": the connector as its own processes, the
real broker, the sandbox as its own process. Each asserts its figures, not a loose
constant, and reports its row to ``$EVENT_SINK_DRILL_REPORT`` when set (tests/drills.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from drills import Drill, DrillResult, SandboxProcess

from connector.config import KafkaSettings
from devtools.kafka import KafkaCluster


def accepted_events(sandbox: SandboxProcess, since: float, until: float) -> int:
    """Events the sandbox accepted in requests that arrived within [since, until]."""
    return sum(
        entry["events"]
        for entry in sandbox.requests(since=since)
        if entry["t"] <= until and entry["status"] == 200 and entry["code"] == "200"
    )


def kill_9_mid_backlog(d: Drill, interval_s: float) -> tuple[DrillResult, int]:
    """120,000 events on 6 partitions and an API answering in 50 ms, fast enough that the
    pending cap is never reached: every consume call comes back full, the loop is never
    caught up, and only the periodic commit runs (the load where the interval matters). No
    failed requests. The connector is SIGKILLed once half arrived; a second process
    finishes. Returns the result and the duplicate bound: the events of unanswered
    requests (max_in_flight * max_events) plus those accepted in the last commit interval
    before the kill, widened by the answer's latency and one loop turn (the commit
    acknowledged last was sent up to that long before and covered what was answered)."""
    events, in_flight, batch, latency_ms = 120_000, 8, 250, 50
    topic = d.topic(partitions=6)
    produced = d.produce(topic, events, seed=133)
    sandbox = d.start_sandbox(latency_ms=latency_ms)
    config = d.config(
        topic,
        commit_interval_ms=int(interval_s * 1000),
        max_in_flight=in_flight,
        kafka={"properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}},
        batch={"max_events": batch},
    )
    first = d.start_connector(config)
    d.wait_delivered(events // 2, watch=[first])
    killed_at = time.time()
    assert first.kill() == -9
    delivered_at_kill = sandbox.stats()["unique_uuids"]
    window_s = interval_s + latency_ms / 1000 + 0.5
    in_window = accepted_events(sandbox, killed_at - window_s, killed_at)
    unanswered = in_flight * batch
    second = d.start_connector(config)
    d.wait_committed(produced, watch=[second])
    assert second.terminate() == 0, d.context()
    bound = unanswered + in_window
    result = d.result(
        produced,
        extra={
            "delivered_at_kill": delivered_at_kill,
            "commit_interval_s": interval_s,
            "unanswered_bound": unanswered,
            "accepted_in_window": in_window,
            "window_s": window_s,
            "duplicate_bound": bound,
        },
    )
    assert delivered_at_kill < events, "the kill came after the work was done"
    return result, bound


def test_kill_9_under_load_redelivers_at_most_the_unanswered_and_one_commit_interval(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    interval_s = KafkaSettings().commit_interval_ms / 1000
    assert interval_s == 1.0  # the default this drill stands for
    with Drill("kill9-bound", tmp_path, kafka.bootstrap_servers) as d:
        result, bound = kill_9_mid_backlog(d, interval_s)
        context = d.context()
    assert result.lost == 0, f"{result.row()}\n{context}"
    assert result.delivered == result.produced, result.row()
    assert result.duplicates <= bound, f"{result.row()}\n{context}"
