"""Drills of "deliver at the pace the API allows": the connector as its own processes, the
real broker, the sandbox as its own process. Each asserts its figures, not a loose
constant, and reports its row to ``$EVENT_SINK_DRILL_REPORT`` when set (tests/drills.py).
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupState, Producer
from drills import SCHEMA, Drill, DrillResult, Produced, SandboxProcess

from connector.adapters.avro import load_schema
from connector.config import KafkaSettings
from devtools.kafka import KafkaCluster
from devtools.samples import encode, sample_events

POISON = "c_poison"  # an event key the sandbox refuses: bisection isolates it


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


def wait_members(d: Drill, members: int, partitions: int, timeout_s: float = 60.0) -> None:
    """Until the group is stable with every member owning partitions and all of them owned:
    the shares of the cap are then the steady ones."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = d.admin.describe_consumer_groups([d.group])[d.group].result(timeout=10)
            owners = [m for m in found.members if m.assignment and m.assignment.topic_partitions]
            owned = sum(len(m.assignment.topic_partitions) for m in owners)
            if (
                found.state == ConsumerGroupState.STABLE
                and len(owners) == members
                and owned == partitions
            ):
                return
        except Exception:  # the group does not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"{members} members did not share {partitions} partitions\n{d.context()}")


def capped_group_run(d: Drill, *, quota: float, cap: float | None) -> dict[str, float]:
    """Three members of one group against a sandbox whose quota is ``quota`` events/s for
    all clients together, each member capped by ``http.rate_limit.events_per_s: cap``
    (scope group), or uncapped. 40,000 events are produced once the three share the six
    partitions. Returns the 429 share and the aggregate rate in steady state (after the
    first second, which a full bucket may spend as a burst)."""
    topic = d.topic(partitions=6)
    sandbox = d.start_sandbox(latency_ms=20, quota_events_per_s=quota)
    http: dict[str, Any] = {"retry": {"initial_backoff_ms": 200}}
    if cap is not None:
        http["rate_limit"] = {"events_per_s": cap}
    config = d.config(topic, max_in_flight=8, http=http)
    members = [d.start_connector(config) for _ in range(3)]
    wait_members(d, 3, 6)
    started = time.time()
    produced = d.produce(topic, 40_000, seed=141)
    d.wait_committed(produced, watch=members, timeout_s=180)
    for member in members:
        assert member.terminate() == 0, d.context()
    log = sandbox.requests(since=started)
    accepted = [e for e in log if e["status"] == 200 and e["code"] == "200"]
    first, last = accepted[0]["t"], accepted[-1]["t"]
    steady = [e for e in accepted if e["t"] > first + 1.0]
    result = d.result(produced)
    assert result.lost == 0, result.row()
    return {
        "requests": len(log),
        "share_429": sum(1 for e in log if e["status"] == 429) / len(log),
        "steady_rate": sum(e["events"] for e in steady) / (last - first - 1.0),
        "duplicates": result.duplicates,
    }


def test_three_members_capped_at_90_percent_of_the_quota_stay_under_it(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    quota = 6_000.0
    cap = 0.9 * quota
    with Drill("group-cap", tmp_path, kafka.bootstrap_servers) as d:
        figures = capped_group_run(d, quota=quota, cap=cap)
        print(f"\ngroup cap {cap:.0f}/s under a quota of {quota:.0f}/s: {figures}")
    assert figures["share_429"] <= 0.01, figures
    assert abs(figures["steady_rate"] - cap) <= 0.1 * cap, figures


def test_adaptive_concurrency_settles_near_the_apis_slots_and_backs_off_under_429s(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """The sandbox handles K = 4 requests at once (the rest queue, so latency grows with
    concurrency), answering each after 50 ms. The connector may have 32 in flight, with
    ``concurrency: adaptive`` at its defaults. It climbs from 1 and over the last 20 s of
    normal load its median lies between K/2 and 2K: it uses the API's slots, and the
    queueing guard keeps it from creeping on as requests queue at the API; then 3 s of 429s
    (every answer) at least halve it; then everything is delivered and committed. The drill
    prints the limit over time."""
    slots, latency_ms = 4, 50
    with Drill("adaptive", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, 45_000, seed=151)
        sandbox = d.start_sandbox(latency_ms=latency_ms, slots=slots)
        config = d.config(
            topic,
            max_in_flight=32,
            batch={"max_events": 20},
            http={"concurrency": "adaptive", "retry": {"initial_backoff_ms": 50}},
        )
        connector = d.start_connector(config)
        started = time.monotonic()
        samples: list[tuple[float, float]] = []

        def sample_for(seconds: float) -> list[float]:
            until, got = time.monotonic() + seconds, []
            while time.monotonic() < until and connector.alive:
                limit = connector.metric("event_sink_http_concurrency_limit")
                samples.append((time.monotonic() - started, limit))
                got.append(limit)
                time.sleep(0.25)
            return got

        sample_for(5.0)  # the climb from 1
        steady = sample_for(20.0)
        sandbox.set_faults(latency_ms=latency_ms, slots=slots, failure_rate=1.0, failure_status=429)
        storm = sample_for(3.0)
        sandbox.set_faults(latency_ms=latency_ms, slots=slots)
        d.wait_committed(produced, watch=[connector], timeout_s=180)
        stats = sandbox.stats()
        assert connector.terminate() == 0, d.context()
        result = d.result(produced)
    by_second: dict[int, list[float]] = {}
    for at, limit in samples:
        by_second.setdefault(int(at // 2) * 2, []).append(limit)
    table = ", ".join(f"{s}s:{statistics.median(v):.0f}" for s, v in sorted(by_second.items()))
    print(
        f"\nadaptive limit (median per 2 s): {table}; sandbox max_concurrent "
        f"{stats['max_concurrent']}, max_queued {stats['max_queued']}"
    )
    assert len(steady) >= 40, "the run ended before 20 s of steady load"
    median = statistics.median(steady)
    assert slots / 2 <= median <= 2 * slots, (median, table)
    assert storm[-1] <= storm[0] / 2, (storm, table)  # at least halved within 3 s
    assert result.lost == 0, result.row()
    assert result.delivered == produced.count, result.row()


def produce_keyed(
    d: Drill, topic: str, count: int, *, users: int, poison_every: int, seed: int
) -> tuple[Produced, dict[str, list[str]]]:
    """``count`` sample events keyed by user (the Kafka key and the first identity's
    value, which the sandbox orders by); every ``poison_every``-th has the event key the
    sandbox refuses. Returns what was produced and, per user, the uuids the API should get,
    in the order produced (the poison ones are dead-lettered instead)."""
    schema = load_schema(SCHEMA)
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": d.bootstrap, "enable.idempotence": True})
    produced, expected = Produced(topic), {}
    ends: dict[tuple[str, int], int] = {}
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            key = (message.topic(), message.partition())
            ends[key] = max(ends.get(key, 0), message.offset() + 1)

    for index, record in enumerate(sample_events(count, seed, int(time.time() * 1000))):
        user = f"user-{rng.randrange(users):03d}"
        record["identities"] = [
            {"type": "phone", "value": user, "platform": None, "mpid": None,
             "is_wechat_ecosystem": None}
        ]  # fmt: skip
        if index % poison_every == poison_every - 1:
            record["event_key"] = POISON
        else:
            expected.setdefault(user, []).append(record["event_id"])
        produced.uuids.add(record["event_id"])
        producer.produce(
            topic, key=user.encode(), value=encode(schema, record), on_delivery=delivered
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not failures, failures
    produced.end_offsets.update(ends)
    return produced, expected


def order_violations(got: dict[str, list[str]], expected: dict[str, list[str]]) -> int:
    """Per user, the accepted uuids that arrived after one produced later than them."""
    violations = 0
    for user, uuids in got.items():
        rank = {uuid: index for index, uuid in enumerate(expected.get(user, []))}
        latest = -1
        for uuid in uuids:
            if rank[uuid] < latest:
                violations += 1
            latest = max(latest, rank[uuid])
    return violations


def ordered_run(d: Drill, ordering: str, failure_rate: float = 0.3) -> dict[str, float]:
    """``failure_rate`` of the requests answered 503, a refused event every 500 (bisected
    out, to the DLQ); 10,000 events of 50 users on 6 partitions."""
    topic = d.topic(partitions=6)
    dlq = d.topic(partitions=1, stem="dlq")
    produced, expected = produce_keyed(d, topic, 10_000, users=50, poison_every=500, seed=161)
    sandbox = d.start_sandbox(latency_ms=20, failure_rate=failure_rate, refuse_event_keys=[POISON])
    config = d.config(
        topic,
        max_in_flight=8,
        batch={"max_events": 100},
        delivery={"ordering": ordering},
        dlq={"topic": dlq, "on_invalid": "dlq"},
    )
    connector = d.start_connector(config)
    d.wait_committed(produced, watch=[connector], timeout_s=180)
    assert connector.terminate() == 0, d.context()
    log = [e for e in sandbox.requests() if e["status"] == 200 and e["code"] == "200"]
    result = d.result(produced, dlq_topic=dlq)
    assert result.lost == 0, result.row()
    assert result.dlq == 10_000 // 500, result.row()
    return {
        "violations": order_violations(sandbox.order(), expected),
        "events_per_s": sum(e["events"] for e in log) / (log[-1]["t"] - log[0]["t"]),
        "requests": len(sandbox.requests()),
    }


def test_ordering_by_partition_keeps_every_users_order_through_503s_and_bisection(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("ordering", tmp_path, kafka.bootstrap_servers) as d:
        figures = ordered_run(d, "partition")
    print(f"\nordering: partition under 30 % 503s and a bisection: {figures}")
    assert figures["violations"] == 0, figures
