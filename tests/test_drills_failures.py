"""Drills 3, 5, 6, 7 and 9 of "never lose an event": the connector as a separate process,
the real broker, the sandbox as a process. Each counts produced, delivered, dead-lettered
and duplicated by uuid; pass means lost = 0. (Drills 1, 2, 4, 8 and the memory drill are in
test_drills.py; the harness is tests/drills.py.)"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

from drills import (
    TOKEN,
    Drill,
    produce_events,
    produce_raw,
    produce_records,
    read_topic,
    readyz,
    wait_until,
)

from devtools import samples
from devtools.kafka import KafkaCluster


def test_drill_3_a_503_storm_then_429_with_retry_after(kafka: KafkaCluster, tmp_path: Path) -> None:
    """10,000 events on 3 partitions. The first 20 requests answer 503, the 21st 429 with
    `Retry-After: 2`: after it, no request reaches the API before the 2 s are up (every
    sender holds, not only the one that got it). Nothing lost."""
    with Drill("retry-after", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, 10_000, seed=301)
        script = [503] * 20 + [{"status": 429, "retry_after": "2"}]
        sandbox = d.start_sandbox(script=script, latency_ms=5)
        config = d.config(topic, initial_backoff_ms=20, max_backoff_ms=200, max_in_flight=8)
        connector = d.start_connector(config)
        d.wait_committed(produced, watch=[connector])
        assert connector.terminate() == 0, d.context()
        requests = sandbox.requests()
        result = d.result(produced)
    throttled_at = next(r["t"] for r in requests if r["status"] == 429)
    # Requests already on the wire when the 429 was answered may land just after it.
    during_hold = [r for r in requests if throttled_at + 0.25 < r["t"] < throttled_at + 1.95]
    assert during_hold == [], during_hold[:5]
    assert sum(r["status"] == 503 for r in requests) == 20
    assert result.lost == 0, result.row()
    assert result.delivered == 10_000, result.row()


def test_drill_5_401_until_the_token_file_is_rotated(kafka: KafkaCluster, tmp_path: Path) -> None:
    """5,000 events; the token file holds a stale token, so the API answers 401. The
    connector halts: /readyz fails, event_sink_paused{reason="auth"} is 1, nothing is
    committed. Once the file is rotated it resumes by itself, without a restart."""
    token_file = tmp_path / "token"
    token_file.write_text("stale-token-000000\n")
    with Drill("auth", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, 5_000, seed=501)
        d.start_sandbox()
        config = d.config(
            topic, http={"token_file": str(token_file), "retry": {"halt_probe_max_ms": 2000}}
        )
        connector = d.start_connector(config)
        port = connector.metrics_port()
        deadline = time.monotonic() + 60
        while readyz(port)[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        not_ready = readyz(port)
        time.sleep(3)  # several probes, several commit intervals
        committed_while_halted = d.committed(produced)
        paused_auth = connector.metric("event_sink_paused", reason="auth")
        unauthorized = d._sandbox().stats()["unauthorized"]
        token_file.write_text(TOKEN + "\n")  # the rotation
        d.wait_committed(produced, watch=[connector])
        ready_again = readyz(port)
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, extra={"unauthorized_answers": unauthorized})
    assert not_ready[0] == 503, not_ready
    assert "401/403/404" in not_ready[1], not_ready
    assert committed_while_halted == {}
    assert paused_auth == 1
    assert unauthorized >= 2
    assert ready_again[0] == 200, ready_again
    assert result.lost == 0, result.row()
    assert result.delivered == 5_000, result.row()


def _unmappable(rng: random.Random, base_ms: int) -> list[dict[str, Any]]:
    """Records of the schema that the mapping refuses, one per reason."""
    records = []
    for index, breakage in enumerate(("no_identities", "no_event_key", "mpid_without_flag")):
        record = samples.sample_event(rng, 900_000 + index, base_ms)
        if breakage == "no_identities":
            record["identities"] = []
        elif breakage == "no_event_key":
            record["event_key"] = ""
        else:
            record["identities"][0].update(mpid="wx123", is_wechat_ecosystem=None)
        records.append(record)
    return records


def test_drill_6_poison_bytes_and_invalid_events_go_to_the_dlq(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """4,000 valid events, then 3 undecodable messages and 3 unmappable records, then
    4,000 more valid ones, on 2 partitions: exactly those 6 land in the DLQ topic with
    their original bytes and headers; the 8,000 others are delivered."""
    with Drill("poison", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=2)
        dlq = d.topic(partitions=1, stem="dlq")
        produced = d.produce(topic, 4_000, seed=601)
        poison = [b"", b"\x00\x00\x00\x00\x07 confluent-framed?", b"\xff" * 40]
        poison_positions = produce_raw(kafka.bootstrap_servers, produced, poison)
        bad = _unmappable(random.Random(6), int(time.time() * 1000))
        bad_positions = produce_records(kafka.bootstrap_servers, produced, bad)
        produce_events(kafka.bootstrap_servers, topic, 4_000, seed=602, into=produced)
        d.start_sandbox()
        config = d.config(topic, dlq={"topic": dlq, "on_invalid": "dlq"})
        connector = d.start_connector(config)
        d.wait_committed(produced, watch=[connector])
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, dlq_topic=dlq)
        letters = [dict(headers) for _, _, _, headers in read_topic(kafka.bootstrap_servers, dlq)]
    assert result.lost == 0, result.row()
    assert result.dlq == 6, result.row()
    assert result.delivered == 8_000, result.row()
    stages = {
        (h["event-sink.original.partition"], h["event-sink.original.offset"]): h["event-sink.stage"]
        for h in ({k: (v or b"").decode() for k, v in letter.items()} for letter in letters)
    }
    for _, partition, offset in poison_positions:
        assert stages[(str(partition), str(offset))] == "decode"
    for _, partition, offset in bad_positions:
        assert stages[(str(partition), str(offset))] == "transform"


def test_drill_7_refused_events_inside_full_batches_are_bisected_out(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """10,000 events in batches of 500 on 2 partitions, 20 of them with an eventKey the
    API refuses (the whole request is answered 400). Bisection isolates exactly those 20
    into the DLQ; the other 10,000 are delivered, none twice."""
    with Drill("bisect", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=2)
        dlq = d.topic(partitions=1, stem="dlq")
        produced = d.produce(topic, 5_000, seed=701)
        rng = random.Random(7)
        refused = []
        for index in range(20):
            record = samples.sample_event(rng, 800_000 + index, int(time.time() * 1000))
            record["event_key"] = "c_refused"
            refused.append(record)
        produce_records(kafka.bootstrap_servers, produced, refused)
        produce_events(kafka.bootstrap_servers, topic, 5_000, seed=702, into=produced)
        d.start_sandbox(refuse_event_keys=["c_refused"])
        config = d.config(topic, dlq={"topic": dlq, "on_invalid": "dlq"}, batch={"max_events": 500})
        connector = d.start_connector(config)
        d.wait_committed(produced, watch=[connector])
        assert connector.terminate() == 0, d.context()
        stats = d._sandbox().stats()
        result = d.result(produced, dlq_topic=dlq, extra={"refused_requests": stats["refused"]})
    assert result.lost == 0, result.row()
    assert result.dlq == 20, result.row()
    assert result.delivered == 10_000, result.row()
    assert result.duplicates == 0, result.row()
    # Bisection, not one request per event: about log2(500) refusals per poison event.
    assert 20 <= stats["refused"] <= 20 * 10


_OWNERSHIP = re.compile(r"partitions (assigned|revoked|lost): (.*)")
# Logged (at DEBUG) right before a commit request goes out, synchronous or not.
_COMMITTED = re.compile(r"committing offsets(?: \(asynchronously\))?: (.*)")


def _commits_outside_ownership(records: list[dict[str, Any]]) -> list[str]:
    """Commits a member made for a partition it did not own at that moment (its own log)."""
    owned: set[str] = set()
    wrong = []
    for record in records:
        message = record.get("msg", "")
        if match := _OWNERSHIP.fullmatch(message):
            kind, parts = match.groups()
            names = set() if parts == "none" else set(parts.split(", "))
            owned = owned | names if kind == "assigned" else owned - names
            continue
        if (match := _COMMITTED.fullmatch(message)) is not None:
            for item in match.group(1).split(", "):
                partition = item.rsplit("=", 1)[0]
                if partition not in owned:
                    wrong.append(f"{record.get('ts')}: {item}")
    return wrong


def test_drill_9_a_third_member_joins_and_leaves_under_load(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """30,000 events on 6 partitions, the sandbox answering after 20 ms. Two members share
    the group; a third joins at 20 % and leaves (SIGTERM) at 60 %. Nothing lost, and no
    member ever commits a partition it does not own at that moment (from its own log)."""
    with Drill("rebalance", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, 30_000, seed=901)
        d.start_sandbox(latency_ms=20)
        config = d.config(
            topic,
            commit_interval_ms=300,
            log={"level": "DEBUG"},
            batch={"max_events": 200},
        )
        first, second = d.start_connector(config), d.start_connector(config)
        d.wait_delivered(6_000, watch=[first, second])
        third = d.start_connector(config)
        wait_until(
            lambda: any(
                r.get("msg", "").startswith("partitions assigned: drill")
                for r in third.log_records()
            ),
            timeout_s=60,
            what="the third member to be given partitions",
            watch=[first, second, third],
            context=d.context,
        )
        d.wait_delivered(18_000, watch=[first, second, third])
        assert third.terminate() == 0, d.context()
        d.wait_committed(produced, watch=[first, second])
        assert first.terminate() == 0, d.context()
        assert second.terminate() == 0, d.context()
        result = d.result(produced)
        wrong = {p.name: _commits_outside_ownership(p.log_records()) for p in d.connectors}
        revokes = sum(
            1
            for p in d.connectors
            for r in p.log_records()
            if r.get("msg", "").startswith("partitions revoked")
        )
    assert result.lost == 0, result.row()
    assert result.delivered == 30_000, result.row()
    assert revokes >= 2  # the join and the leave both moved partitions
    assert wrong == {"c1": [], "c2": [], "c3": []}


def test_ownership_check_catches_a_commit_after_revoke() -> None:
    log = [
        {"msg": "partitions assigned: t[0], t[1]"},
        {"msg": "committing offsets (asynchronously): t[0]=5, t[1]=7"},
        {"msg": "committing offsets: t[1]=8"},
        {"msg": "partitions revoked: t[1]"},
        {"msg": "committing offsets: t[1]=9", "ts": "x"},
    ]
    assert _commits_outside_ownership(log) == ["x: t[1]=9"]
