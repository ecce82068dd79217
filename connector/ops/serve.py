"""``event-sink run``'s process: every route of the config, its metrics and health port,
the shared HTTP session and dead-letter producer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from connector.adapters.decoders import decoder_for
from connector.adapters.dlq import DeadLetterWriter
from connector.adapters.http_setup import HttpEnv, make_session, resolve
from connector.config import ConfigError, Settings, TokenSource, load_settings
from connector.core.errors import EventSinkError
from connector.mapping import mapper_for
from connector.metrics import Metrics
from connector.ops.health import HealthServer
from connector.ops.workers import write_port_file
from connector.pipeline.routes import RouteSet
from connector.routing import routes_of

log = logging.getLogger("connector")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def exit_code(error: EventSinkError) -> int:
    """The one map from the project's errors to exit codes."""
    if isinstance(error, ConfigError):
        return EXIT_CONFIG  # includes a schema or mapping that cannot be used
    return EXIT_FAILED  # DataError (a record that stops the run), InfrastructureError


@dataclass
class RunOutcome:
    left_cleanly: bool = True  # False: a Kafka client call may still hang in a thread


def load_checked(config: Path | None) -> Settings:
    """The settings, and what start-up would refuse, found now: each route's schema
    parses, its mapping fits it, its registry's credentials and CA file are there, the
    network's files and secrets."""
    settings = load_settings(config)
    for route in routes_of(settings):
        mapper_for(route.settings.mapping, decoder_for(route.settings).schema)
        resolve(route.settings.http)
    return settings


async def run_connector(
    settings: Settings,
    tokens: Mapping[str, TokenSource],
    stop: asyncio.Event,
    outcome: RunOutcome,
    port_file: Path | None = None,
    http_envs: Mapping[str, HttpEnv] | None = None,
) -> None:
    """Run every route until ``stop`` is set, with one metrics and health endpoint.

    The HTTP session, the dead-letter producer and the health server live exactly as long
    as the routes' connectors. ``tokens`` and ``http_envs`` are by route name.
    """
    routes = routes_of(settings)
    metrics = Metrics(CollectorRegistry(), routes[0].name)
    dead_letters = None
    if settings.dlq.topic is not None:
        dead_letters = DeadLetterWriter(settings.kafka, settings.dlq.topic, metrics=metrics)
        dead_letters.start()
    try:
        connections = sum(route.settings.http.max_in_flight for route in routes)
        async with make_session(connections) as session:
            fleet = RouteSet.build(
                routes,
                session=session,
                tokens=tokens,
                metrics=metrics,
                dead_letters=dead_letters,
                http_envs=http_envs,
            )
            health = HealthServer.for_connector(
                metrics.registry, fleet, host=settings.metrics.host, port=settings.metrics.port
            )
            async with health:
                log.info("metrics and health on port %d", health.port)
                if port_file is not None:  # a worker of `workers: N`: tell the supervisor
                    write_port_file(port_file, health.port)
                try:
                    await fleet.run(stop)
                finally:
                    outcome.left_cleanly = fleet.left_cleanly
    finally:
        if dead_letters is not None:
            await dead_letters.close()
