"""Each route of the settings as a whole, effective settings object (its subscription,
source, mapping and merged http), so every room below a route is built exactly as for
one stream; and which route a topic belongs to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from connector.config import Settings
from connector.config_routes import DEFAULT_ROUTE

STATIC_MEMBER = "group.instance.id"  # librdkafka's static group membership


@dataclass(frozen=True)
class Route:
    """One route's effective settings: ``settings.kafka.topics`` is its subscription (a
    pattern stands alone there), and ``source``, ``mapping`` and ``http`` are its own."""

    name: str
    settings: Settings
    pattern: str | None = None

    def claims(self, topic: str) -> bool:
        if self.pattern is not None:
            return re.search(self.pattern, topic) is not None
        return topic in self.settings.kafka.topics


def routes_of(settings: Settings) -> tuple[Route, ...]:
    """Every route of ``settings``: the configured ones, or ``default`` without ``routes:``."""
    if settings.routes is None:
        return (Route(DEFAULT_ROUTE, settings),)
    routes = []
    for route in settings.routes:
        properties = dict(settings.kafka.properties)
        if STATIC_MEMBER in properties and len(settings.routes) > 1:
            # Each route's consumer is a member of its own: one static id each.
            properties[STATIC_MEMBER] = f"{properties[STATIC_MEMBER]}-{route.name}"
        kafka = settings.kafka.model_copy(
            update={"topics": route.subscription, "properties": properties}
        )
        effective = settings.model_copy(
            update={
                "kafka": kafka,
                "source": route.source,
                "mapping": route.mapping,
                "http": route.http,
                "routes": None,
            }
        )
        routes.append(Route(route.name, effective, route.topic_pattern))
    return tuple(routes)


def conflict(routes: Sequence[Route], name: str, topic: str) -> str | None:
    """Why route ``name`` must not consume ``topic`` (another route claims it too), or None."""
    others = [route.name for route in routes if route.name != name and route.claims(topic)]
    if not others:
        return None
    return (
        f"route {name!r} was assigned topic {topic!r}, which route {others[0]!r} also "
        "matches; a topic belongs to one route. Nothing of that topic is committed: "
        "fix the routes' topics or topic_pattern and restart"
    )


def describe_routes(routes: Sequence[Route]) -> str:
    """For the start-up log: each route and what it subscribes to."""
    return "; ".join(
        f"route {route.name}: "
        + (f"topic_pattern {route.pattern}" if route.pattern else "topics ")
        + ("" if route.pattern else ", ".join(route.settings.kafka.topics))
        for route in routes
    )
