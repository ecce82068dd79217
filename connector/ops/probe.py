"""``check-config --probe``: can this config reach what it names? One line per thing.

The brokers (a metadata request), each of ``kafka.topics``, the dead-letter topic (exists,
and this principal may WRITE to it), the Schema Registry (``GET /schemas/types`` with the
configured credentials) and the API host: a TCP connection, and the TLS handshake with the
configured CA and client certificate, through the proxy the connector would use. It sends
no event and commits nothing: the API sees a connection, never a request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from connector.adapters.dlq import check_topic
from connector.adapters.http_setup import Proxy, proxy_for, tls_context
from connector.adapters.registry import RegistryClient
from connector.config import Settings


@dataclass(frozen=True)
class Line:
    ok: bool
    what: str
    detail: str

    def render(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}: {self.detail}"


def kafka_lines(settings: Settings, timeout_s: float) -> list[Line]:
    """Brokers, topics and the dead-letter topic, from one admin client (blocking)."""
    kafka = settings.kafka
    conf: dict[str, Any] = {**kafka.properties, "bootstrap.servers": kafka.bootstrap_servers}
    admin = AdminClient(conf)
    brokers = f"brokers {kafka.bootstrap_servers}"
    try:
        metadata = admin.list_topics(timeout=timeout_s)  # all topics: never creates one
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if isinstance(error, KafkaError) else str(error)
        lines = [Line(False, brokers, f"no answer within {timeout_s:.0f} s ({reason})")]
        names = [*kafka.topics, *([settings.dlq.topic] if settings.dlq.topic else [])]
        return lines + [Line(False, f"topic {t}", "not checked: no broker answered") for t in names]
    lines = [Line(True, brokers, f"{len(metadata.brokers)} broker(s) answered")]
    for topic in kafka.topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            why = found.error.str() if found is not None and found.error is not None else None
            detail = why or "does not exist (or this principal may not DESCRIBE it)"
            lines.append(Line(False, f"topic {topic}", detail))
        else:
            lines.append(Line(True, f"topic {topic}", f"{len(found.partitions)} partitions"))
    if settings.dlq.topic is not None:
        check = check_topic(admin, settings.dlq.topic, timeout_s)
        what = f"dead-letter topic {settings.dlq.topic}"
        if check.fatal is not None or check.retry is not None:
            lines.append(Line(False, what, check.fatal or check.retry or ""))
        else:
            lines.append(Line(True, what, "exists, and this principal may write to it"))
    return lines


async def api_line(settings: Settings, environ: Mapping[str, str], timeout_s: float) -> Line:
    """A TCP connection to the API host (and TLS, for https), sending nothing over it."""
    url = urlsplit(settings.http.url)
    https = url.scheme == "https"
    host = url.hostname or ""
    port = url.port or (443 if https else 80)
    proxy = proxy_for(settings.http.url, settings.http.proxy, environ)
    context: ssl.SSLContext | None = None
    if https:
        configured = tls_context(settings.http)
        context = (
            configured if isinstance(configured, ssl.SSLContext) else ssl.create_default_context()
        )
    what = f"API {host}:{port}" + (f" via {proxy.describe()}" if proxy.url is not None else "")
    try:
        detail = await asyncio.wait_for(_connect(host, port, proxy, context), timeout_s)
    except TimeoutError:
        return Line(False, what, f"no connection within {timeout_s:.0f} s")
    except ssl.SSLError as exc:
        return Line(False, what, f"TLS handshake failed: {exc.reason or exc}")
    except (OSError, ConnectionError, ValueError) as exc:
        return Line(False, what, f"{type(exc).__name__}: {exc}")
    return Line(True, what, detail)


async def _connect(host: str, port: int, proxy: Proxy, context: ssl.SSLContext | None) -> str:
    if proxy.url is None:
        _, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context is not None else None
        )
        return _close(writer, "TCP" if context is None else "TCP and TLS")
    through = urlsplit(proxy.url)
    reader, writer = await asyncio.open_connection(through.hostname, through.port or 80)
    if context is None:  # plain HTTP goes to the proxy as absolute-URI requests
        return _close(writer, "TCP to the proxy")
    headers = "".join(f"{k}: {v}\r\n" for k, v in (proxy.headers or {}).items())
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode())
    status = (await reader.readline()).decode("latin-1").split()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    if len(status) < 2 or status[1] != "200":
        writer.close()
        raise ValueError(f"the proxy refused the tunnel: {' '.join(status) or 'no answer'}")
    await writer.start_tls(context, server_hostname=host)
    return _close(writer, "a tunnel through the proxy, and TLS")


def _close(writer: asyncio.StreamWriter, how: str) -> str:
    tls = writer.get_extra_info("ssl_object")
    writer.close()
    version = f" ({tls.version()})" if tls is not None else ""
    return f"connected: {how}{version}; nothing sent"


async def registry_line(client: RegistryClient, url: str) -> Line:
    async with aiohttp.ClientSession() as session:
        problem = await client.probe(session)
    if problem is None:
        return Line(True, f"schema registry {url}", "answered with these credentials")
    return Line(False, f"schema registry {url}", problem)


async def probe(
    settings: Settings,
    registry: RegistryClient | None,
    environ: Mapping[str, str],
    timeout_s: float = 10.0,
) -> list[Line]:
    """Every line, in the order of the config: Kafka, the registry, the API."""
    lines = await asyncio.get_running_loop().run_in_executor(None, kafka_lines, settings, timeout_s)
    if registry is not None:
        lines.append(await registry_line(registry, settings.source.schema_registry.url or ""))
    lines.append(await api_line(settings, environ, timeout_s))
    return lines
