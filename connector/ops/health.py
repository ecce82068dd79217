"""One HTTP port (``metrics.port``): ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` is liveness: it answers at all only if the event loop runs, and 200 only if
the consume loop turned recently. ``/readyz`` is readiness: assigned partitions or waiting
for an assignment, the brokers reachable, deliveries not failing on authentication.
Both answer a short JSON object saying why.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from connector.core.checks import Check


class HealthSource(Protocol):
    def liveness(self) -> Check: ...

    def readiness(self) -> Check: ...


class HealthServer:
    """Serves metrics and the checks on ``host:port`` (port 0 picks a free one).

    What it serves comes as coroutines, so the ``workers: N`` supervisor can gather its
    answers from its workers; ``for_connector`` serves one process's registry and checks.
    """

    def __init__(
        self,
        metrics: Callable[[], Awaitable[bytes]],
        *,
        liveness: Callable[[], Awaitable[Check]],
        readiness: Callable[[], Awaitable[Check]],
        host: str,
        port: int,
    ) -> None:
        self._render = metrics
        self._liveness = liveness
        self._readiness = readiness
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    @classmethod
    def for_connector(
        cls, registry: CollectorRegistry, health: HealthSource, *, host: str, port: int
    ) -> HealthServer:
        async def metrics() -> bytes:
            return generate_latest(registry)

        async def liveness() -> Check:
            return health.liveness()

        async def readiness() -> Check:
            return health.readiness()

        return cls(metrics, liveness=liveness, readiness=readiness, host=host, port=port)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await self._render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @staticmethod
    def _answer(check: Check) -> web.Response:
        status = 200 if check.ok else 503
        answer: dict[str, object] = {"ok": check.ok, "reason": check.reason}
        if check.halted:
            answer["halted_routes"] = list(check.halted)
        body = json.dumps(answer)
        return web.Response(status=status, text=body, content_type="application/json")

    async def _healthz(self, _request: web.Request) -> web.Response:
        return self._answer(await self._liveness())

    async def _readyz(self, _request: web.Request) -> web.Response:
        return self._answer(await self._readiness())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
