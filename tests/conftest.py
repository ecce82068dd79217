"""Shared pytest fixtures."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from devtools.kafka import KafkaCluster, external_or_local


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaCluster]:
    """One broker for the whole session: ``$KAFKA_BOOTSTRAP_SERVERS`` if set, else a local one.

    A broker that cannot start raises here, so every test that needs it errors: never a skip.
    """
    with external_or_local() as cluster:
        yield cluster


@pytest.fixture
def topic_factory(kafka: KafkaCluster, request: pytest.FixtureRequest) -> Callable[[int], str]:
    """Create a topic with N partitions, named after the test plus a random suffix.

    Unique names keep tests independent on the shared session broker, including an external
    one that outlives the run.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-")

    def make(partitions: int = 1) -> str:
        name = f"{stem}-{uuid.uuid4().hex[:12]}"
        kafka.create_topic(name, partitions)
        return name

    return make
