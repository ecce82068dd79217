"""``routes:``: several streams in one deployment, each with its own topics, source,
mapping and endpoint.

A route's ``http`` is merged over the top-level ``http`` key by key (nested maps are
merged; lists and scalars are replaced) before it is validated, so an error names the
route's key. Without ``routes:`` the top-level ``kafka.topics``, ``source`` and ``mapping``
are one route named ``default``. connector/routing.py gives each route as a whole, effective
settings object, so every room below the route is built exactly as for one stream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.config_http import HttpSettings
from connector.config_mapping import MappingSettings
from connector.config_source import SourceSettings

DEFAULT_ROUTE = "default"
MAX_ROUTES = 64
# Top-level keys that a route owns once ``routes:`` is set.
ROUTE_OWNED = ("source", "mapping")

Topic = Annotated[str, Field(min_length=1)]
RouteName = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=63)]


def merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``: maps merged key by key, anything else replaced."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return over


def with_merged_http(data: Any) -> Any:
    """Raw settings with each route's ``http`` merged over the top-level one; refuses the
    top-level keys a route owns (the message names them)."""
    if not isinstance(data, Mapping) or data.get("routes") is None:
        return data
    clashing = [key for key in ROUTE_OWNED if key in data]
    kafka = data.get("kafka")
    if isinstance(kafka, Mapping) and "topics" in kafka:
        clashing.insert(0, "kafka.topics")
    if clashing:
        raise ValueError(
            f"{', '.join(clashing)}: not allowed next to routes; each route names its own "
            "(routes[].topics or topic_pattern, routes[].source, routes[].mapping)"
        )
    routes = data["routes"]
    top = data.get("http") or {}
    if not isinstance(routes, list) or not isinstance(top, Mapping):
        return data  # validation names what is wrong
    merged = [
        {**route, "http": merge(top, route.get("http") or {})}
        if isinstance(route, Mapping)
        else route
        for route in routes
    ]
    return {**data, "routes": merged}


class RouteSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RouteName
    topics: Annotated[tuple[Topic, ...], Field(min_length=1)] | None = None
    # A Kafka regex subscription (librdkafka reads a leading "^" as a pattern).
    topic_pattern: Annotated[str, Field(min_length=2)] | None = None
    source: SourceSettings = SourceSettings()
    mapping: MappingSettings | None = None
    http: HttpSettings = HttpSettings()

    @field_validator("topic_pattern")
    @classmethod
    def _is_a_pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("^"):
            raise ValueError("a topic pattern starts with '^' (Kafka's regex subscription)")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_subscription(self) -> RouteSettings:
        if (self.topics is None) == (self.topic_pattern is None):
            raise ValueError(f"route {self.name!r}: set exactly one of topics and topic_pattern")
        return self

    def claims(self, topic: str) -> bool:
        """This route subscribes to ``topic``."""
        if self.topics is not None:
            return topic in self.topics
        assert self.topic_pattern is not None  # one of the two is set
        return re.search(self.topic_pattern, topic) is not None

    @property
    def subscription(self) -> tuple[str, ...]:
        return self.topics if self.topics is not None else (str(self.topic_pattern),)


def check_routes(routes: Sequence[RouteSettings], dlq_topic: str | None) -> None:
    """1 to 64 routes (a metric label), names unique; no topic claimed by two routes; the
    DLQ topic claimed by none."""
    if not 1 <= len(routes) <= MAX_ROUTES:
        raise ValueError(f"routes: give 1 to {MAX_ROUTES} routes, or leave routes out")
    seen: set[str] = set()
    for route in routes:
        if route.name in seen:
            raise ValueError(f"routes: the name {route.name!r} is used twice")
        seen.add(route.name)
    for index, route in enumerate(routes):
        for other in routes[index + 1 :]:
            for topic in (route.topics or ()) + (other.topics or ()):
                if route.claims(topic) and other.claims(topic):
                    raise ValueError(
                        f"routes: topic {topic!r} is matched by two routes, "
                        f"{route.name!r} and {other.name!r}; a topic belongs to one route"
                    )
        if dlq_topic is not None and route.claims(dlq_topic):
            raise ValueError(
                f"routes[{route.name}]: matches dlq.topic {dlq_topic!r}; the dead-letter "
                "topic must not be consumed"
            )
