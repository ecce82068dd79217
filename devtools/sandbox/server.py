"""The sandbox served over HTTP: the aiohttp app, a server for ``async with``, ``serve``.

``POST <path>`` is the import path (answered by :class:`~devtools.sandbox.state.SandboxState`);
the control endpoints (no token; loopback use only) are ``GET /stats``, ``GET /events``,
``GET /uuids``, ``GET /order``, ``GET /requests[?since=EPOCH_S]``, ``POST /reset``,
``GET /faults`` and ``POST /faults``. With ``Faults.slots`` set, an import request holds one
of the state's slots for its whole handling (body, decision, ``latency_ms``, answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from devtools.sandbox import world
from devtools.sandbox.bodies import read_body
from devtools.sandbox.faults import Faults
from devtools.sandbox.flow import Clock
from devtools.sandbox.state import SandboxState

__all__ = ["DEFAULT_PATH", "STATE_KEY", "SandboxServer", "build_app", "serve"]

log = logging.getLogger("devtools.sandbox")

DEFAULT_PATH = "/v1/events/import"
# The vendor names no body limit; aiohttp's 1 MiB default could reject a legal 500-event batch
# with large eventargs, so the sandbox must not be the one to impose a limit.
_CLIENT_MAX_SIZE = 64 * 1024 * 1024
STATE_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)


def build_app(
    token: str,
    *,
    path: str = DEFAULT_PATH,
    faults: Faults | None = None,
    rng: random.Random | None = None,
    keep_events: bool = True,
    clock: Clock = time.monotonic,
) -> web.Application:
    """The sandbox app; its :class:`SandboxState` is ``app[STATE_KEY]`` (``clock``: the
    quota's, see :class:`SandboxState`)."""
    state = SandboxState(faults, rng, keep_events=keep_events, clock=clock)
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    app[STATE_KEY] = state

    async def import_events(request: web.Request) -> web.StreamResponse:
        arrived = time.time()
        # Slots as of arrival; a request beyond them waits here, before its body is read.
        async with state.slots.hold(state.faults.slots):
            return await handle_import(request, arrived)

    async def handle_import(request: web.Request, arrived: float) -> web.StreamResponse:
        body, gzipped, body_error = await read_body(request, _CLIENT_MAX_SIZE)
        latency_ms = state.faults.latency_ms  # settings as of its turn (a slot's, if any)
        token_ok = request.headers.get("X-Token") == token
        answer = state.handle(
            token_ok,
            request.content_type,
            request.charset,
            body,
            arrived,
            gzipped=gzipped,
            body_error=body_error,
        )
        # After recording: a client that times out here has in fact been accepted, which is
        # exactly the at-least-once duplicate case worth exercising. aiohttp does not cancel
        # a handler whose client went away; the answer then goes nowhere, silently.
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)
        if answer.odd is not None:
            return await answer.odd.write(request)
        headers = {"Retry-After": answer.retry_after} if answer.retry_after is not None else None
        return web.json_response(answer.body, status=answer.status, headers=headers)

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats_json())

    async def get_events(request: web.Request) -> web.Response:
        if not state.keep_events:
            return web.json_response(
                {"error": "events are not kept (keep_events=False)"}, status=409
            )
        return web.json_response(state.events)

    async def get_uuids(request: web.Request) -> web.Response:
        return web.json_response(sorted(state.seen_uuids))

    async def get_order(request: web.Request) -> web.Response:
        return web.json_response(state.order)

    async def get_requests(request: web.Request) -> web.Response:
        raw = request.query.get("since")
        since: float | None = None
        if raw is not None:
            try:
                since = float(raw)
            except ValueError:
                return web.json_response({"error": "since must be a number"}, status=400)
        return web.json_response(state.requests_log(since))

    async def post_reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response(state.stats_json())

    def faults_json() -> dict[str, Any]:
        return {
            **state.faults.to_json(),
            "script_remaining": [step.to_json() for step in state.script_remaining],
        }

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(faults_json())

    async def post_faults(request: web.Request) -> web.Response:
        try:
            faults = Faults.from_json(json.loads(await request.read() or b"{}"))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        odd = faults.world_fault
        if isinstance(odd, world.GzipBomb):
            await odd.prepare()  # built before it is switched on, not by the first request
        state.faults = faults
        log.info("fault settings replaced: %s", state.faults.to_json())
        return web.json_response(faults_json())

    app.router.add_post(path, import_events)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/events", get_events)
    app.router.add_get("/uuids", get_uuids)
    app.router.add_get("/order", get_order)
    app.router.add_get("/requests", get_requests)
    app.router.add_post("/reset", post_reset)
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", post_faults)
    return app


class SandboxServer:
    """Serves :func:`build_app` on ``host:port`` (port 0 picks a free one) for ``async with``;
    HTTPS with ``ssl_context`` (e.g. :func:`devtools.sandbox.tls.server_ssl_context`)."""

    def __init__(
        self,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = DEFAULT_PATH,
        faults: Faults | None = None,
        rng: random.Random | None = None,
        keep_events: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._path = path
        self._ssl_context = ssl_context
        self._app = build_app(
            token, path=path, faults=faults, rng=rng, keep_events=keep_events, clock=clock
        )
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def state(self) -> SandboxState:
        return self._app[STATE_KEY]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("sandbox server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The full import URL, what the connector's config takes."""
        return self.base_url + self._path

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("sandbox server is already started")
        # No access log: the demo sends thousands of requests; shutdown waits briefly for
        # in-flight (possibly latency-delayed) answers instead of aiohttp's default 60 s.
        # auto_decompress off: the sandbox inflates gzip bodies itself, bounded, and
        # refuses other codings in the vendor's body shape.
        runner = web.AppRunner(
            self._app, access_log=None, shutdown_timeout=1.0, auto_decompress=False
        )
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self._host, self._requested_port, ssl_context=self._ssl_context
            )
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("sandbox event import API listening on %s", self.url)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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


async def serve(
    host: str,
    port: int,
    token: str,
    faults: Faults,
    path: str = DEFAULT_PATH,
    *,
    keep_events: bool = True,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run the sandbox until cancelled (``event-sink sandbox``); HTTPS with ``ssl_context``."""
    async with SandboxServer(
        token,
        host=host,
        port=port,
        path=path,
        faults=faults,
        keep_events=keep_events,
        ssl_context=ssl_context,
    ):
        await asyncio.Event().wait()
