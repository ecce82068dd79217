"""Every route of the config in one process: one :class:`Connector` each.

A route is a whole pipeline of its own (consumer, batches, gates, pending caps, in-flight
slots, retry budget, rate cap, offsets), so a route whose endpoint refuses its token or is
down pauses only its own partitions while the others deliver and commit. The routes share
the process's HTTP session, its dead-letter writer (one topic; a header names the route),
its metrics registry (a ``route`` label) and the consumer group (``kafka.group_id``: each
route's consumer is a member subscribed to that route's topics).

If one route stops on an error, the others are stopped too (each drains and commits what
it delivered) and the error is raised: Kubernetes restarts the pod, nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

import aiohttp

from connector.adapters.decoders import decoder_for
from connector.adapters.dlq import DeadLetterWriter
from connector.adapters.http_setup import HttpEnv
from connector.adapters.kafka_source import ConsumerFactory
from connector.core.checks import Check
from connector.core.records import TopicPartition
from connector.metrics import Metrics
from connector.pipeline.connector import Connector
from connector.routing import Route, conflict

log = logging.getLogger(__name__)


class RouteSet:
    """The routes' connectors, run together; liveness and readiness over all of them."""

    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        if not connectors:
            raise ValueError("a route set needs at least one route")
        self.connectors = dict(connectors)
        self.left_cleanly = True

    @classmethod
    def build(
        cls,
        routes: tuple[Route, ...],
        *,
        session: aiohttp.ClientSession,
        tokens: Mapping[str, Callable[[], str]],
        metrics: Metrics,
        dead_letters: DeadLetterWriter | None,
        http_envs: Mapping[str, HttpEnv] | None = None,
        consumer_factory: ConsumerFactory | None = None,
    ) -> RouteSet:
        """One connector per route, each with its own view of the shared metrics."""
        connectors = {}
        for route in routes:

            def foreign(topic: str, name: str = route.name) -> str | None:
                return conflict(routes, name, topic)

            connectors[route.name] = Connector(
                route.settings,
                decoder=decoder_for(route.settings),
                session=session,
                token=tokens[route.name],
                consumer_factory=consumer_factory,
                metrics=metrics.for_route(route.name),
                dead_letters=dead_letters,
                http_env=None if http_envs is None else http_envs[route.name],
                foreign=foreign if len(routes) > 1 else None,
            )
        return cls(connectors)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``, or until a route stops on an error (then every route drains and
        the first error is raised)."""
        stops = {name: asyncio.Event() for name in self.connectors}
        tasks = {
            name: asyncio.create_task(connector.run(stops[name]), name=f"route-{name}")
            for name, connector in self.connectors.items()
        }
        stopping = asyncio.create_task(stop.wait())
        try:
            waiting: set[asyncio.Task[Any]] = {*tasks.values(), stopping}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            ended = [name for name, task in tasks.items() if task in done]
            if ended and not stop.is_set():
                log.error("route %s stopped; stopping the other routes", ", ".join(ended))
        finally:
            for event in stops.values():
                event.set()
            stopping.cancel()
            with suppress(asyncio.CancelledError):
                await stopping
            await asyncio.wait(tasks.values())
            self.left_cleanly = all(c.left_cleanly for c in self.connectors.values())
        errors = [task.exception() for task in tasks.values() if not task.cancelled()]
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first

    def committed(self) -> dict[TopicPartition, int]:
        merged: dict[TopicPartition, int] = {}
        for connector in self.connectors.values():
            merged.update(connector.committed())
        return merged

    # -- health ---------------------------------------------------------------------

    def liveness(self) -> Check:
        """Alive while every route's loop turns."""
        checks = {name: c.liveness() for name, c in self.connectors.items()}
        if len(checks) == 1:
            return next(iter(checks.values()))
        dead = [f"{name}: {check.reason}" for name, check in checks.items() if not check.ok]
        if dead:
            return Check(False, "; ".join(dead))
        return Check(True, f"{len(checks)} routes running")

    def readiness(self) -> Check:
        """Ready while any route can deliver; the reason names the halted routes."""
        checks = {name: c.readiness() for name, c in self.connectors.items()}
        if len(checks) == 1:
            return next(iter(checks.values()))
        halted = {name: check.reason for name, check in checks.items() if not check.ok}
        ready = len(checks) - len(halted)
        reason = f"{ready} of {len(checks)} routes can deliver"
        if halted:
            reason += "; halted: " + "; ".join(f"{n} ({why})" for n, why in halted.items())
        return Check(ready > 0, reason, halted=tuple(halted))
