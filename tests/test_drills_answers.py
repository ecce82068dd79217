"""Drills of "read every answer of the API right": the connector as its own process, the
real broker, the sandbox as its own process answering as real gateways and busy vendors
do. Each drill switches one fault mode on while events flow, then back to normal, and
checks what a user would: nothing lost, committed equals the end offsets, the process
still running, and (for redirects) not one token handed to another host.

Every drill's row goes to ``$EVENT_SINK_DRILL_REPORT`` when that is set (tests/drills.py).
"""

from __future__ import annotations

import email.utils
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from drills import (
    Drill,
    DrillResult,
    SandboxProcess,
    read_topic,
    wait_until,
)
from net_fixtures import ForwardProxy, RedirectTarget, private_ca

from devtools.kafka import KafkaCluster

EVENTS = 3_000
# Halts probe at least every second, so a drill's recovery is quick.
FAST_PROBE = {"retry": {"halt_probe_max_ms": 1000}}


def faulted_requests(sandbox: SandboxProcess) -> int:
    return sandbox.stats()["faults"]


def run_fault(
    d: Drill,
    *,
    faults: Mapping[str, Any],
    hold_s: float,
    partitions: int = 3,
    events: int = EVENTS,
    seed: int,
    http: Mapping[str, Any] | None = None,
    dlq: bool = False,
    env: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    during: Callable[[], None] | None = None,
) -> DrillResult:
    """Produce, switch ``faults`` on, start the connector; once the first faulted answer went
    out, keep the fault ``hold_s`` longer, switch back to normal, wait until every end offset
    is committed; the connector must still be running then and stop cleanly."""
    topic = d.topic(partitions=partitions)
    produced = d.produce(topic, events, seed=seed)
    sandbox = d.sandbox or d.start_sandbox(latency_ms=5)
    sandbox.set_faults(latency_ms=5, **faults)
    sections: dict[str, Any] = {"http": {**FAST_PROBE, **(http or {})}}
    dlq_topic = None
    if dlq:
        dlq_topic = d.topic(partitions=1, stem="dlq")
        sections["dlq"] = {"topic": dlq_topic, "on_invalid": "dlq"}
    config = d.config(topic, **sections)
    connector = d.start_connector(config, env=env)
    wait_until(
        lambda: faulted_requests(sandbox) > 0,
        timeout_s=60,
        what="the first faulted answer",
        watch=[connector],
        context=d.context,
    )
    time.sleep(hold_s)
    if during is not None:
        during()
    sandbox.set_faults(latency_ms=5)
    d.wait_committed(produced, watch=[connector], timeout_s=120)
    alive = connector.alive
    figures = {"alive": alive, "faulted_answers": faulted_requests(sandbox)}
    for key, value in (extra or {}).items():  # a callable is read now, at the end
        figures[key] = value() if callable(value) else value
    assert connector.terminate() == 0, d.context()
    result = d.result(produced, dlq_topic=dlq_topic, extra=figures)
    assert alive, d.context()
    assert result.lost == 0, result.row()
    return result


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_gets_no_token_and_delivers_nothing_there(
    kafka: KafkaCluster, tmp_path: Path, status: int
) -> None:
    with RedirectTarget() as elsewhere, Drill(f"redirect-{status}", tmp_path,
                                              kafka.bootstrap_servers) as d:  # fmt: skip
        redirect = {"status": status, "location": elsewhere.url + "/steal?session=abc"}
        result = run_fault(d, faults={"redirect": redirect}, hold_s=3.0, seed=1100 + status,
                           extra={"tokens_at_target": lambda: elsewhere.tokens_seen})  # fmt: skip
        tokens, requests = elsewhere.tokens_seen, elsewhere.requests
        target_origin = elsewhere.origin
        log = d.connectors[0].log_text()
    assert tokens == 0, result.row()
    assert requests == 0, result.row()  # not followed at all: no batch, no GET
    assert result.delivered == EVENTS, result.row()
    halts = [line for line in log.splitlines() if "the endpoint redirects" in line]
    assert len(halts) == 1, halts
    assert f"HTTP {status} to {target_origin}" in halts[0]
    assert "steal" not in log
    assert "session=abc" not in log


def test_an_html_page_with_status_200_is_not_delivery(kafka: KafkaCluster, tmp_path: Path) -> None:
    with Drill("html-200", tmp_path, kafka.bootstrap_servers) as d:
        result = run_fault(d, faults={"html_200": True}, hold_s=3.0, seed=1201)
    assert result.delivered == EVENTS, result.row()


def test_a_body_of_hundreds_of_mib_is_not_read_and_memory_stays_bounded(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("huge-body", tmp_path, kafka.bootstrap_servers) as d:
        result = run_fault(d, faults={"huge_body_mib": 256}, hold_s=4.0, seed=1202)
    assert result.extra["peak_rss_mib"] < 256, result.row()


def test_a_gzip_answer_that_inflates_to_1_gib_is_not_read_and_memory_stays_bounded(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("gzip-bomb", tmp_path, kafka.bootstrap_servers) as d:
        d.start_sandbox(latency_ms=5)
        result = run_fault(d, faults={"gzip_bomb_mib": 1024}, hold_s=4.0, seed=1203)
    assert result.extra["peak_rss_mib"] < 256, result.row()


@pytest.mark.parametrize("code", ["500", "503", "429", "401", "OOPS"])
def test_a_body_code_storm_then_normal_loses_nothing_and_dead_letters_nothing(
    kafka: KafkaCluster, tmp_path: Path, code: str
) -> None:
    with Drill(f"body-code-{code}", tmp_path, kafka.bootstrap_servers) as d:
        faults = {"failure_rate": 1.0, "failure_status": 200, "failure_code": code}
        # A DLQ is configured: a busy vendor must never push good data aside.
        result = run_fault(d, faults=faults, hold_s=3.0, seed=1300 + len(code) + ord(code[0]),
                           dlq=True)  # fmt: skip
    assert result.dlq == 0, result.row()
    assert result.delivered == EVENTS, result.row()


def test_a_connection_dropped_mid_answer_is_retried(kafka: KafkaCluster, tmp_path: Path) -> None:
    with Drill("dropped", tmp_path, kafka.bootstrap_servers) as d:
        result = run_fault(d, faults={"drop_connection": True}, hold_s=3.0, seed=1401)
    assert result.delivered == EVENTS, result.row()


def test_an_answer_after_the_timeout_is_retried(kafka: KafkaCluster, tmp_path: Path) -> None:
    """The sandbox accepts, then answers after the connector's 1 s timeout: the batch is sent
    again (duplicates, recognisable by uuid), never lost."""
    with Drill("late-answer", tmp_path, kafka.bootstrap_servers) as d:
        sandbox = d.start_sandbox(latency_ms=5)
        topic = d.topic(partitions=3)
        produced = d.produce(topic, EVENTS, seed=1402)
        sandbox.set_faults(latency_ms=1500)
        config = d.config(topic, timeout_s=1.0, http=FAST_PROBE)
        connector = d.start_connector(config)
        wait_until(
            lambda: sandbox.stats()["accepted_requests"] > 0,
            timeout_s=60,
            what="a late-answered request",
            watch=[connector],
        )
        time.sleep(3.0)
        sandbox.set_faults(latency_ms=5)
        d.wait_committed(produced, watch=[connector], timeout_s=120)
        alive = connector.alive
        retries = connector.metric("event_sink_http_retries_total", reason="timeout")
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, extra={"alive": alive, "timeouts": retries})
    assert result.lost == 0, result.row()
    assert retries > 0, result.row()


def test_retry_after_as_a_date_in_the_past_means_now(kafka: KafkaCluster, tmp_path: Path) -> None:
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    with Drill("retry-after-past", tmp_path, kafka.bootstrap_servers) as d:
        script = [{"status": 503, "retry_after": past}] * 10
        started = time.monotonic()
        result = run_fault(d, faults={"script": script}, hold_s=0.0, seed=1403)
        took = time.monotonic() - started
    assert result.delivered == EVENTS, result.row()
    assert took < 60, result.row()  # a date in the past holds nobody (it is not 3600 s)


def test_a_spent_retry_budget_dead_letters_only_the_event_that_always_fails(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """One event of 3,000 is answered 500 whenever it is in a request. With a budget of 3
    attempts, its batch is bisected: only that event ends in the DLQ, `retries_exhausted`."""
    with Drill("retry-budget", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, EVENTS, seed=1501)
        bad = sorted(produced.uuids)[17]
        d.start_sandbox(latency_ms=5, fail_uuids=[bad])
        dlq_topic = d.topic(partitions=1, stem="dlq")
        config = d.config(
            topic,
            http={"retry": {"max_attempts": 3}},
            dlq={"topic": dlq_topic, "on_invalid": "dlq"},
        )
        connector = d.start_connector(config)
        d.wait_committed(produced, watch=[connector], timeout_s=120)
        exhausted = connector.metric("event_sink_retry_budget_exhausted_total")
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, dlq_topic=dlq_topic, extra={"budgets_spent": exhausted})
        [(_, _, _, letter_headers)] = list(read_topic(d.bootstrap, dlq_topic))
    assert result.lost == 0, result.row()
    assert result.dlq == 1, result.row()
    assert result.delivered == EVENTS - 1, result.row()
    assert exhausted >= 1, result.row()
    headers = dict(letter_headers)
    assert headers["event-sink.error.class"] == b"retries_exhausted"
    assert headers["event-sink.http.status"] == b"500"
    assert headers["event-sink.http.error_code"] == b"SYSTEM_ERROR"


def test_a_private_ca_is_refused_without_ca_file_and_delivers_with_it(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    certs = private_ca(tmp_path / "certs")
    with Drill("private-ca", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, EVENTS, seed=1601)
        tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
        sandbox = d.start_sandbox(extra_args=tls, cafile=str(certs.ca), latency_ms=5)
        assert sandbox.url.startswith("https://")
        # A refused certificate is retried: the drain would wait it out, so keep it short.
        refusing = d.start_connector(d.config(topic, name="no-ca", drain_timeout_s=2.0))
        wait_until(
            lambda: (
                refusing.metric(
                    "event_sink_http_retries_total",
                    reason="connection:ClientConnectorCertificateError",
                )
                > 0
            ),
            timeout_s=60,
            what="the certificate to be refused",
            watch=[refusing],
        )
        assert sandbox.stats()["requests"] == 0  # no request got through the TLS handshake
        assert refusing.terminate() == 0, d.context()
        trusting = d.start_connector(d.config(topic, name="ca", http={"ca_file": str(certs.ca)}))
        d.wait_committed(produced, watch=[trusting], timeout_s=120)
        assert trusting.terminate() == 0, d.context()
        result = d.result(produced)
    assert result.lost == 0, result.row()
    assert result.delivered == EVENTS, result.row()


def test_plain_requests_go_through_http_proxy(kafka: KafkaCluster, tmp_path: Path) -> None:
    with ForwardProxy() as proxy, Drill("proxy-http", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, EVENTS, seed=1701)
        d.start_sandbox(latency_ms=5)
        env = {"HTTP_PROXY": proxy.url, "NO_PROXY": "", "no_proxy": ""}
        connector = d.start_connector(d.config(topic), env=env)
        d.wait_committed(produced, watch=[connector], timeout_s=120)
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, extra={"relayed": proxy.plain_requests})
    assert result.lost == 0, result.row()
    assert proxy.plain_requests >= result.extra["relayed"] > 0, result.row()
    assert proxy.connect_tunnels == 0


def test_tls_goes_through_an_https_proxy_tunnel(kafka: KafkaCluster, tmp_path: Path) -> None:
    certs = private_ca(tmp_path / "certs")
    with ForwardProxy() as proxy, Drill("proxy-connect", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, EVENTS, seed=1702)
        tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
        d.start_sandbox(extra_args=tls, cafile=str(certs.ca), latency_ms=5)
        env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "", "no_proxy": ""}
        config = d.config(topic, http={"ca_file": str(certs.ca)})
        connector = d.start_connector(config, env=env)
        d.wait_committed(produced, watch=[connector], timeout_s=120)
        assert connector.terminate() == 0, d.context()
        result = d.result(produced, extra={"tunnels": proxy.connect_tunnels})
    assert result.lost == 0, result.row()
    assert proxy.connect_tunnels > 0, result.row()
    assert proxy.plain_requests == 0


def test_sigterm_while_the_api_refuses_the_token_exits_promptly(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """Halted on 401, nothing can be delivered: a SIGTERM must not wait out the 30 s drain
    timeout. It exits 0 within 10 s, having committed nothing it did not deliver."""
    with Drill("halt-sigterm", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, EVENTS, seed=1801)
        sandbox = d.start_sandbox(latency_ms=5)
        config = d.config(topic, drain_timeout_s=30.0, http=FAST_PROBE)
        connector = d.start_connector(config, env={"EVENT_SINK_TOKEN": "a-wrong-token-0000"})
        wait_until(
            lambda: sandbox.stats()["unauthorized"] >= 2,
            timeout_s=60,
            what="the API to refuse the token",
            watch=[connector],
        )
        started = time.monotonic()
        code = connector.terminate(timeout_s=40, sig=signal.SIGTERM)
        took = time.monotonic() - started
        committed = d.committed(produced)
        delivered_before = sandbox.stats()["unique_uuids"]
        # The rollout's new pod has the right token and delivers everything.
        fixed = d.start_connector(config)
        d.wait_committed(produced, watch=[fixed], timeout_s=120)
        assert fixed.terminate() == 0, d.context()
        result = d.result(produced, extra={"exit_s": round(took, 1)})
    assert code == 0, d.context()
    assert took < 10, result.row()
    assert committed == {}  # nothing was delivered, so nothing is committed
    assert delivered_before == 0
    assert result.lost == 0, result.row()
