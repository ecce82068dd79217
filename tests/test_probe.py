"""``check-config --probe`` against the real broker, the sandbox (HTTPS with a private CA)
and a forward proxy: one line per thing it reaches, exit 1 when any fails, and no request
ever reaches the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from drills import TOKEN, Drill
from net_fixtures import ForwardProxy, private_ca
from registry_fixture import RegistryServer

from connector.adapters.registry import RegistryClient
from connector.config_source import SchemaRegistrySettings
from connector.ops.probe import registry_line
from devtools.kafka import KafkaCluster
from devtools.kafka.jvm import free_ports

ROOT = Path(__file__).resolve().parent.parent


def probe(config: Path, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "check-config", "--config", str(config), "--probe"],
        cwd=ROOT,
        env={**os.environ, "EVENT_SINK_TOKEN": TOKEN, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = proc.stdout.split("# probe: what this config reaches (no event is sent)\n")[-1]
    return proc.returncode, lines.splitlines()


def test_everything_reachable_is_one_ok_line_each_and_nothing_is_sent(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    certs = private_ca(tmp_path / "certs")
    with Drill("probe-ok", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        dlq = d.topic(partitions=1, stem="dlq")
        tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
        sandbox = d.start_sandbox(extra_args=tls, cafile=str(certs.ca), latency_ms=1)
        config = d.config(topic, dlq={"topic": dlq}, http={"ca_file": str(certs.ca)})
        code, lines = probe(config)
        with ForwardProxy() as proxy:
            env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "", "no_proxy": ""}
            proxied_code, proxied = probe(config, env)
            tunnels, proxy_url = proxy.connect_tunnels, proxy.url
        requests = sandbox.stats()["requests"]
    assert code == 0, lines
    assert lines[0].startswith(f"ok   brokers {d.bootstrap}: 1 broker(s) answered")
    assert lines[1] == f"ok   topic {topic}: 3 partitions"
    assert lines[2] == f"ok   dead-letter topic {dlq}: exists, and this principal may write to it"
    assert lines[3].startswith("ok   API 127.0.0.1:")
    assert "connected: TCP and TLS (TLSv1.3); nothing sent" in lines[3]
    assert len(lines) == 4
    assert proxied_code == 0, proxied
    assert "via " + proxy_url in proxied[3]
    assert "a tunnel through the proxy, and TLS" in proxied[3]
    assert tunnels == 1
    assert requests == 0  # a connection and a handshake, never a request


def test_each_unreachable_thing_is_a_fail_line_and_exit_1(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    certs = private_ca(tmp_path / "certs")
    with Drill("probe-fail", tmp_path, kafka.bootstrap_servers) as d:
        tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
        d.start_sandbox(extra_args=tls, cafile=str(certs.ca), latency_ms=1)
        # No ca_file: the private CA's certificate is refused.
        config = d.config("no-such-topic", dlq={"topic": "no-such-dlq"})
        code, lines = probe(config)
        closed = free_ports(1)[0]
        down = d.config(
            "no-such-topic",
            name="down",
            kafka={"bootstrap_servers": f"127.0.0.1:{closed}"},
            http={"url": f"http://127.0.0.1:{closed}/v1/events/import", "timeout_s": 5},
        )
        down_code, down_lines = probe(down)
    assert code == 1, lines
    assert lines[0].startswith("ok   brokers")
    assert lines[1].startswith("FAIL topic no-such-topic: ")
    assert lines[2].startswith(
        "FAIL dead-letter topic no-such-dlq: dlq.topic 'no-such-dlq' does not exist"
    )
    assert lines[3].startswith("FAIL API 127.0.0.1:")
    assert "TLS handshake failed: CERTIFICATE_VERIFY_FAILED" in lines[3]
    assert down_code == 1, down_lines
    assert down_lines[0].startswith(f"FAIL brokers 127.0.0.1:{closed}: no answer within")
    assert down_lines[1] == "FAIL topic no-such-topic: not checked: no broker answered"
    assert down_lines[2].startswith(f"FAIL API 127.0.0.1:{closed}: ConnectionRefusedError")


async def test_the_registry_line_says_whether_it_answers_these_credentials() -> None:
    async with RegistryServer() as registry:
        registry.state.basic = ("svc", "right")
        settings = SchemaRegistrySettings(url=registry.url, username="svc")
        good = RegistryClient(settings, {"EVENT_SINK_REGISTRY_PASSWORD": "right"})
        bad = RegistryClient(settings, {"EVENT_SINK_REGISTRY_PASSWORD": "wrong"})
        answered = await registry_line(good, registry.url)
        refused = await registry_line(bad, registry.url)
        registry.state.down = True
        down = await registry_line(good, registry.url)
    gone = await registry_line(good, registry.url)  # the server is closed now
    assert (
        answered.render() == f"ok   schema registry {registry.url}: answered with these credentials"
    )
    assert refused.render() == (
        f"FAIL schema registry {registry.url}: HTTP 401: the credentials are refused"
    )
    assert down.render() == f"FAIL schema registry {registry.url}: HTTP 503"
    assert not gone.ok
    assert "unreachable (ClientConnectorError" in gone.detail
