"""Drills of tracker issue 3, "never lose an event", on today's connector.

Each drill runs the connector as a separate process against a real broker and the sandbox
(a process too), breaks something, and counts by uuid what was produced, delivered,
dead-lettered and duplicated (``tests/drills.py``). Pass means nothing was lost. Each one
prints its figures as one row (``pytest -s``) and appends them to
``$EVENT_SINK_DRILL_REPORT`` when set.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from drills import (
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_TOPIC_HEADER,
    TOKEN,
    ConnectorProcess,
    Drill,
    connector_config,
    count_results,
    produce_raw,
    read_topic,
    wait_until,
    write_config,
)

from connector.config import load_settings
from devtools.kafka import KafkaCluster, LocalKafka
from devtools.samples import sample_events

# Bounds of the connector's peak resident memory (VmHWM), about 1.5 times what was measured
# on a 2-core machine (2026-11-29, five runs each): hung endpoint 78 to 87 MiB, 200,000-event
# backlog 150 to 154 MiB. About 75 MiB is the idle process (Python, librdkafka, aiohttp,
# pydantic); of the backlog's peak, ~30 MiB is librdkafka's prefetch queue (122 MiB with
# queued.max.messages.kbytes=8192) and most of the rest the 20,000 pending records.
HUNG_RSS_BOUND_MIB = 128
BACKLOG_RSS_BOUND_MIB = 230

# The sandbox's latency in drills that must break something while the work is under way:
# with 8 requests of 250 events in flight, at most ~5,000 events/s get through.
PACED_LATENCY_MS = 400


def _hold(seconds: float, watch: list[ConnectorProcess], d: Drill, what: str) -> None:
    """Let ``seconds`` pass while the watched connectors must stay up."""
    until = time.monotonic() + seconds
    wait_until(
        lambda: time.monotonic() >= until,
        timeout_s=seconds + 5,
        what=what,
        watch=watch,
        context=d.context,
    )


def test_drill_1_kill_9_mid_flight_then_restart(kafka: KafkaCluster, tmp_path: Path) -> None:
    """20,000 events on 6 partitions; the sandbox answers after 400 ms with up to 8 batches
    of 250 in flight, so at most ~5,000 events/s arrive (unpaced, the connector delivers
    all 20,000 within a second: the kill would come after the work). The connector is
    SIGKILLed once 30 % have arrived and a new process takes over the group. Nothing is
    lost.

    Duplicates are what the first process delivered past its last commit. The pending cap
    (``kafka.max_pending_events``) does not bound that alone: it counts records read and
    not yet *delivered*, while records delivered since the last commit (up to one
    ``commit_interval_ms`` of throughput) are not pending any more. So the bound checked is
    measured: the records the first process had read (its ``records_consumed_total`` per
    partition, scraped just before the kill) minus the group's committed offsets after
    the kill, plus one ``consume_max_messages`` for a consume call between scrape and kill.
    """
    events, cap, consume_max = 20_000, 4_000, 500
    with Drill("kill9", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, events, seed=101)
        d.start_sandbox(latency_ms=PACED_LATENCY_MS)
        config = d.config(
            topic,
            commit_interval_ms=500,
            max_in_flight=8,
            kafka={
                "max_pending_events": cap,
                "consume_max_messages": consume_max,
                # The killed member keeps its partitions until its session times out: 6 s
                # (the broker's minimum) rather than the default 45 s keeps the drill short.
                "properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
            },
            batch={"max_events": 250},
        )
        first = d.start_connector(config)
        d.wait_delivered(events * 3 // 10, watch=[first])
        consumed = first.consumed_by_partition(topic)
        assert first.kill() == -9
        delivered_at_kill = d.sandbox.stats()["unique_uuids"] if d.sandbox else 0
        time.sleep(1.0)  # a commit already on the wire lands before we read the offsets
        committed = d.committed(produced)
        read_uncommitted = sum(
            max(0, consumed.get(p, 0) - committed.get((t, p), 0)) for t, p in produced.end_offsets
        )
        bound = read_uncommitted + consume_max

        second = d.start_connector(config)
        d.wait_committed(produced, watch=[second])
        assert second.terminate() == 0, d.context()
        result = d.result(
            produced,
            extra={
                "consumed_at_kill": sum(consumed.values()),
                "read_uncommitted_at_kill": read_uncommitted,
                "duplicate_bound": bound,
                "max_pending_events": cap,
                "delivered_at_kill": delivered_at_kill,
            },
        )
        context = d.context()
        assert d.sandbox is not None
        assert d.sandbox.log_problems() == []
    assert delivered_at_kill < events, "the kill came after the work was done"
    assert result.lost == 0, f"{result.row()}\n{context}"
    assert result.delivered == events, result.row()
    assert result.duplicates <= bound, f"{result.row()}\n{context}"


def test_drill_2_sigterm_under_load_then_restart(kafka: KafkaCluster, tmp_path: Path) -> None:
    """20,000 events on 6 partitions, the sandbox answering after 400 ms with up to 8 batches
    of 250 in flight (at most ~5,000 events/s), at most 4,000 pending. SIGTERM once 30 %
    have arrived: the process drains (open batch sent, in-flight batches answered, offsets
    committed) and exits 0 within ``shutdown.drain_timeout_s`` (10 s); a new process
    finishes the job. Nothing lost, nothing delivered twice."""
    events, drain_s = 20_000, 10.0
    with Drill("sigterm", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, events, seed=102)
        d.start_sandbox(latency_ms=PACED_LATENCY_MS)
        config = d.config(
            topic,
            commit_interval_ms=500,
            max_in_flight=8,
            drain_timeout_s=drain_s,
            batch={"max_events": 250},
            # Without a cap the first process reads all 20,000 at once and its drain
            # delivers them all, leaving the second nothing to take over.
            kafka={"max_pending_events": 4_000},
        )
        first = d.start_connector(config)
        d.wait_delivered(events * 3 // 10, watch=[first])
        code = first.terminate(timeout_s=drain_s + 30)
        exit_s = first.exited_after_s
        assert code == 0, d.context()
        assert exit_s is not None
        assert exit_s <= drain_s, f"exit took {exit_s:.1f} s\n{d.context()}"
        assert "stopped cleanly" in first.log_text(), d.context()
        delivered_by_first = d.sandbox.stats()["unique_uuids"] if d.sandbox else 0

        second = d.start_connector(config)
        d.wait_committed(produced, watch=[second])
        assert second.terminate() == 0, d.context()
        result = d.result(
            produced,
            extra={"first_exit_s": round(exit_s, 2), "delivered_by_first": delivered_by_first},
        )
        context = d.context()
    assert delivered_by_first < events, "the SIGTERM came after the work was done"
    assert result.lost == 0, f"{result.row()}\n{context}"
    assert result.delivered == events, result.row()
    assert result.duplicates == 0, f"{result.row()}\n{context}"


def test_drill_4_hung_endpoint_then_healthy(kafka: KafkaCluster, tmp_path: Path) -> None:
    """20,000 events on 4 partitions; ``http.timeout_s`` 1 s, retries 100 ms..1 s; the
    sandbox takes one request at a time, 100 ms each. Once 20 % have arrived it hangs
    (answers after 600 s) for 6 s, then answers at once again. Requests time out (the
    connector counts them as ``code="error"``), every event arrives, and the connector's
    peak resident memory stays under ``HUNG_RSS_BOUND_MIB``. Requests that hung had been
    recorded at arrival, so their events arrive twice: duplicates are expected here."""
    events, hang_s = 20_000, 6.0
    with Drill("hung", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=4)
        produced = d.produce(topic, events, seed=104)
        # One request at a time, 100 ms each (at most 5,000 events/s): the backlog is still
        # there when the hang starts, however fast the connector reads.
        sandbox = d.start_sandbox(latency_ms=100, slots=1)
        config = d.config(
            topic,
            timeout_s=1.0,
            initial_backoff_ms=100,
            max_backoff_ms=1000,
            max_in_flight=8,
            commit_interval_ms=500,
        )
        connector = d.start_connector(config)
        d.wait_delivered(events // 5, watch=[connector])
        delivered_at_hang = sandbox.stats()["unique_uuids"]
        hang_started = time.time()
        sandbox.set_faults(latency_ms=600_000)
        _hold(hang_s, [connector], d, "the hang to last")
        sandbox.set_faults()
        hang_ended = time.time()
        d.wait_committed(produced, watch=[connector])
        timeouts = connector.metric("event_sink_http_requests_total", code="error")
        hung_requests = sum(1 for r in sandbox.requests(since=hang_started) if r["t"] < hang_ended)
        assert connector.terminate() == 0, d.context()
        result = d.result(
            produced,
            extra={
                "timeouts": int(timeouts),
                "requests_during_hang": hung_requests,
                "delivered_at_hang": delivered_at_hang,
            },
        )
        context = d.context()
        assert sandbox.log_problems() == [], context
    assert delivered_at_hang < events, "the hang came after the work was done"
    assert result.lost == 0, f"{result.row()}\n{context}"
    assert result.delivered == events, result.row()
    assert timeouts > 0, f"no request timed out\n{context}"
    assert hung_requests > 0, context
    assert connector.peak_rss_mib < HUNG_RSS_BOUND_MIB, result.row()


@pytest.fixture(scope="module")
def outage_broker() -> Iterator[LocalKafka]:
    """A broker of the broker-outage drills' own, never the session's (nor an external one
    given by ``KAFKA_BOOTSTRAP_SERVERS``): these drills stop it. Each drill leaves it up."""
    with LocalKafka() as broker:
        yield broker


def test_drill_8_broker_stopped_and_restarted_under_load(
    outage_broker: LocalKafka, tmp_path: Path
) -> None:
    """20,000 events on 6 partitions of a dedicated broker (always a local one, even when
    ``KAFKA_BOOTSTRAP_SERVERS`` is set: the drill stops it). The sandbox answers after
    100 ms with 2 requests of 200 events in flight (at most ~4,000 events/s), and up to
    6,000 records may be pending: when, at 20 % delivered, the broker is stopped (a
    controlled shutdown) for 5 s, the connector holds read and undelivered records, keeps
    delivering them and tries to commit while the broker is away. The broker then starts
    again with the same log dir; the connector stays up, resumes and delivers everything,
    and its offsets reach the end."""
    events, outage_s = 20_000, 5.0
    broker = outage_broker
    with Drill("broker", tmp_path, broker.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, events, seed=108)
        d.start_sandbox(latency_ms=100)
        config = d.config(
            topic,
            commit_interval_ms=500,
            max_in_flight=2,
            batch={"max_events": 200},
            kafka={"max_pending_events": 6_000, "consume_max_messages": 500},
        )
        connector = d.start_connector(config)
        d.wait_delivered(events // 5, watch=[connector])
        consumed = sum(connector.consumed_by_partition(topic).values())
        undelivered = consumed - connector.metric("event_sink_records_delivered_total")
        broker.stop_broker()
        stopped_at_delivered = d.sandbox.stats()["unique_uuids"] if d.sandbox else 0
        _hold(outage_s, [connector], d, "the broker outage to last")
        broker.start_broker()
        d.wait_committed(produced, watch=[connector], timeout_s=180)
        commit_failures = connector.metric("event_sink_offset_commits_total", outcome="failure")
        assert connector.terminate() == 0, d.context()
        result = d.result(
            produced,
            extra={
                "outage_s": outage_s,
                "stopped_at_delivered": stopped_at_delivered,
                "read_undelivered_at_stop": int(undelivered),
                "commit_failures": int(commit_failures),
            },
        )
        context = d.context()
    assert stopped_at_delivered < events, "the outage came after the work was done"
    assert undelivered > 0, "the broker stopped while the connector held no undelivered work"
    assert result.lost == 0, f"{result.row()}\n{context}"
    assert result.delivered == events, result.row()


def test_drill_8b_sigterm_while_the_broker_is_down(
    outage_broker: LocalKafka, tmp_path: Path
) -> None:
    """10,000 events on 6 partitions of the outage broker; the sandbox answers after 100 ms.
    At 20 % delivered the broker stops; 2 s later the connector gets SIGTERM. It should exit
    0 within what the README promises, ``shutdown.drain_timeout_s`` (5 s) + 10 s for the
    final commit and leaving the group (+ 2 s of slack for this shared machine), leaving
    uncommitted what it could not commit. If it has not, it is SIGKILLed. Then the broker
    returns and a new process (session timeout 6 s) delivers the rest: nothing lost, in
    any case.

    The periodic commit is asynchronous, so the run loop sees SIGTERM during the outage;
    the final commit and leaving the group get a bounded time, then the process exits.
    """
    # grace_s: the leave budget (LEAVE_TIMEOUT_S, connector/pipeline/lifecycle.py) + slack
    events, drain_s, grace_s = 10_000, 5.0, 10.0 + 2.0
    broker = outage_broker
    with Drill("broker-sigterm", tmp_path, broker.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, events, seed=118)
        d.start_sandbox(latency_ms=100)
        config = d.config(
            topic,
            commit_interval_ms=500,
            max_in_flight=2,
            drain_timeout_s=drain_s,
            batch={"max_events": 200},
            kafka={
                "max_pending_events": 6_000,
                "consume_max_messages": 500,
                "properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
            },
        )
        first = d.start_connector(config)
        d.wait_delivered(events // 5, watch=[first])
        broker.stop_broker()
        try:
            _hold(2.0, [first], d, "the broker outage to begin")
            code = first.terminate(timeout_s=drain_s + grace_s)  # SIGKILL after that
            exit_s = first.exited_after_s
        finally:
            broker.start_broker()
        second = d.start_connector(config)
        d.wait_committed(produced, watch=[second])
        assert second.terminate() == 0, d.context()
        result = d.result(
            produced,
            extra={"sigterm_exit_code": code, "sigterm_exit_s": round(exit_s or 0.0, 1)},
        )
        context = d.context()
    assert result.lost == 0, f"{result.row()}\n{context}"
    assert result.delivered == events, result.row()
    assert code == 0, f"SIGTERM during a broker outage: exit code {code}\n{context}"
    assert exit_s is not None
    assert exit_s < drain_s + grace_s


@pytest.mark.timeout(300)
def test_drill_m_200000_event_backlog_slow_and_failing_api(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """200,000 events of backlog on 6 partitions; the sandbox answers after 50 ms and with
    503 to everything for the first 10 s; default ``kafka.max_pending_events`` (20,000),
    ``http.max_in_flight`` 8, retries 100 ms..2 s. Everything arrives, and the connector's
    peak resident memory (VmHWM) stays under ``BACKLOG_RSS_BOUND_MIB``."""
    events, failing_s = 200_000, 10.0
    with Drill("backlog", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, events, seed=109)
        sandbox = d.start_sandbox(latency_ms=50, failure_rate=1.0, failure_status=503)
        config = d.config(topic, commit_interval_ms=1000, max_in_flight=8)
        connector = d.start_connector(config)
        _hold(failing_s, [connector], d, "the failing period to end")
        failed = sandbox.stats()["faults"]
        sandbox.set_faults(latency_ms=50)
        d.wait_committed(produced, watch=[connector], timeout_s=240)
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, extra={"faults_503": failed})
        context = d.context()
    assert failed > 0, context
    assert result.lost == 0, f"{result.row()}\n{context}"
    assert result.delivered == events, result.row()
    assert connector.peak_rss_mib < BACKLOG_RSS_BOUND_MIB, result.row()


# --------------------------------------------------------------------------- the harness itself


def test_harness_config_is_what_the_connector_accepts(tmp_path: Path) -> None:
    config = connector_config(
        bootstrap="127.0.0.1:9092",
        group="g",
        topics=["t"],
        url="http://127.0.0.1:1/v1/events/import",
        extra={"kafka": {"max_pending_events": 123}, "batch": {"max_events": 7}},
    )
    settings = load_settings(write_config(tmp_path / "c.yaml", config), environ={})
    assert settings.kafka.max_pending_events == 123
    assert settings.kafka.commit_interval_ms == 500  # defaults kept next to the override
    assert settings.batch.max_events == 7
    assert settings.batch.linger_ms == 50
    assert settings.metrics.port == 0
    assert settings.http.retry.max_backoff_ms == 2000


def test_harness_counts_delivered_dead_lettered_and_lost(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """3 sample events and 1 undecodable record produced; the sandbox accepted sample 1;
    the DLQ holds sample 0 (its original bytes), the undecodable record (attributed by
    its position headers) and one record with neither: sample 2 is the one lost."""
    bootstrap = kafka.bootstrap_servers
    with Drill("harness", tmp_path, bootstrap) as d:
        topic = d.topic(partitions=1)
        produced = d.produce(topic, 3, seed=7)
        (junk_position,) = produce_raw(bootstrap, produced, [b"not avro"])
        assert produced.count == 4
        assert produced.end_offsets == {(topic, 0): 4}
        values = [value for _, _, value, _ in read_topic(bootstrap, topic)]
        ids = [record["event_id"] for record in sample_events(3, 7, 0)]

        dlq = d.topic(partitions=1, stem="dlq")
        producer = Producer({"bootstrap.servers": bootstrap})

        def position_headers(t: str, p: int, o: int) -> list[tuple[str, bytes]]:
            return [
                (DLQ_TOPIC_HEADER, t.encode()),
                (DLQ_PARTITION_HEADER, str(p).encode()),
                (DLQ_OFFSET_HEADER, str(o).encode()),
            ]

        sample0 = next(v for v in values if v and ids[0].encode() in v)
        producer.produce(dlq, value=sample0, headers=position_headers(topic, 0, 0))
        producer.produce(dlq, value=b"not avro", headers=position_headers(*junk_position))
        producer.produce(dlq, value=b"lost in transit")
        assert producer.flush(30) == 0

        sandbox = d.start_sandbox()
        body = {
            "publicParams": {},
            "data": [
                {
                    "identities": [{"identityType": "phone", "identityValue": "1"}],
                    "eventKey": "c_buy",
                    "uuid": ids[1],
                }
            ],
        }
        request = urllib.request.Request(
            sandbox.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-Token": TOKEN},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        # Not d.result(): a harness check is no drill figure for the report.
        result = count_results(
            "harness", produced, sandbox, bootstrap=bootstrap, seconds=0.0, dlq_topic=dlq
        )
    assert (result.produced, result.delivered, result.dlq) == (4, 1, 3)
    assert result.lost == 1
    assert result.lost_sample == [ids[2]]
    assert result.extra["dlq_unattributed"] == 1
    assert result.duplicates == 0
    assert "lost 1" in result.row()
