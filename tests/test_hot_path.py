"""The connector on each hot path, end to end on the real broker: the native extension
(where it is installed) and the Python path (``source.hot_path: python``) deliver the same
events, commit the same offsets and say which path they run."""

from __future__ import annotations

import asyncio
import os
import uuid
from types import ModuleType
from typing import Any

import pytest
from test_end_to_end import SCHEMA, TOKEN, broker_committed, settings_for

from connector.adapters.avro import AvroDecoder, load_schema
from connector.adapters.http_setup import make_session
from connector.adapters.native import load_extension
from connector.config import Settings
from connector.pipeline.connector import Connector
from devtools.demo import produce_samples
from devtools.sandbox import SandboxServer

EVENTS = 3000


def _native_available() -> bool:
    found = load_extension()
    if not isinstance(found, ModuleType) and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the native path cannot run: {found}")
    return isinstance(found, ModuleType)


async def _deliver(
    settings: Settings, end: dict[Any, int]
) -> tuple[list[dict[str, Any]], dict[str, float], Any]:
    """Run until every event arrived and every offset is committed; the sandbox's events
    (by uuid), the hot_path gauge by path, and the committed positions."""
    async with SandboxServer(TOKEN) as sandbox:
        settings = settings.model_copy(
            update={"http": settings.http.model_copy(update={"url": sandbox.url})}
        )
        stop = asyncio.Event()
        async with make_session(8) as session:
            decoder = AvroDecoder(load_schema(SCHEMA))
            connector = Connector(settings, decoder=decoder, session=session, token=lambda: TOKEN)
            task = asyncio.create_task(connector.run(stop))
            for _ in range(1200):
                await asyncio.sleep(0.1)
                if sandbox.state.stats.unique_uuids >= EVENTS and len(connector.committed()) == 3:
                    break
            stop.set()
            await task
        registry = connector.metrics.registry
        paths = {
            path: registry.get_sample_value(
                "event_sink_hot_path", {"route": "default", "path": path}
            )
            or 0.0
            for path in ("native", "python")
        }
        events = sorted(sandbox.state.events, key=lambda event: str(event["uuid"]))
    kafka = settings.kafka
    return events, paths, broker_committed(kafka.bootstrap_servers, kafka.group_id, list(end))


async def test_the_native_and_the_python_path_deliver_the_same_events(kafka: Any) -> None:
    native = _native_available()
    topic = f"hot-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=3)
    end = produce_samples(kafka.bootstrap_servers, topic, EVENTS, 17, load_schema(SCHEMA))
    runs = {}
    for hot_path in ("auto", "python"):
        settings = settings_for(
            kafka.bootstrap_servers, topic, "http://127.0.0.1:9/", source={"hot_path": hot_path}
        )
        runs[hot_path] = await _deliver(settings, end)
    (auto_events, auto_paths, auto_committed) = runs["auto"]
    (py_events, py_paths, py_committed) = runs["python"]
    assert py_paths == {"native": 0.0, "python": 1.0}
    assert auto_paths == ({"native": 1.0, "python": 0.0} if native else py_paths)
    assert len(auto_events) == len(py_events) == EVENTS
    assert auto_events == py_events  # the same events, field for field
    assert auto_committed == py_committed == end
