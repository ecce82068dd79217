"""Which path a route runs: the shipped schemas and mappings run native, and every route the
extension cannot run falls back to the Python path with its reason (JSON and confluent
input, no extension or another plan version, schemas and mappings past what it supports);
the package runs without the extension.

Where the extension is not installed these tests skip with the reason, except under
``CI=true``, where a missing extension (or cargo to build it) fails them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.read import LOGICAL_READERS
from native_strategies import (
    MAPPINGS,
    SCHEMAS,
    require_extension,
)

from connector.adapters.avro import strip_logical_types
from connector.adapters.native import (
    EXTENSION,
    Fallback,
    NativeChunk,
    native_chunk_for,
)
from connector.config_mapping import MappingSettings
from connector.mapping import default_mapping
from connector.mapping.plan import DECODED_LOGICAL, TIMESTAMP_LOGICAL, NotNative, build_plan
from connector.mapping.schema import MappingError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = SCHEMAS["user_behavior_event.avsc"]
CLICKS = SCHEMAS["clickstream_event.avsc"]


@pytest.fixture
def ext() -> types.ModuleType:
    return require_extension()


# -- which path a route runs ------------------------------------------------------------


def test_the_shipped_schemas_and_mappings_run_native(ext: types.ModuleType) -> None:
    for name, (schema_name, settings_) in MAPPINGS.items():
        chunk = native_chunk_for(SCHEMAS[schema_name], settings_)
        assert isinstance(chunk, NativeChunk), (name, chunk)
        assert chunk.path == "native"


@pytest.mark.parametrize(
    ("source_format", "reason"),
    [("json", "JSON input is decoded and mapped in Python"), ("confluent", "writer's schema")],
)
def test_json_and_confluent_formats_stay_on_python(source_format: str, reason: str) -> None:
    chunk = native_chunk_for(DEFAULT, None, source_format=source_format)
    assert isinstance(chunk, Fallback)
    assert chunk.path == "python"
    assert reason in chunk.reason


def test_without_the_extension_a_route_falls_back_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, EXTENSION, None)  # import event_sink_native fails
    chunk = native_chunk_for(DEFAULT, None)
    assert isinstance(chunk, Fallback)
    assert "not installed" in chunk.reason
    assert "scripts/native" in chunk.reason


def test_an_extension_of_another_plan_version_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stale = types.ModuleType(EXTENSION)
    stale.PLAN_VERSION = 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, EXTENSION, stale)
    chunk = native_chunk_for(DEFAULT, None)
    assert isinstance(chunk, Fallback)
    assert "plan version 0" in chunk.reason


def test_the_package_runs_on_the_python_path_without_the_extension() -> None:
    """A fresh interpreter where the extension cannot be imported: the connector's
    modules import, the route falls back, and the Python path still maps a record."""
    script = """
import io, json, sys
sys.modules["event_sink_native"] = None
from pathlib import Path
import fastavro
from connector.adapters.avro import AvroDecoder, load_schema
from connector.adapters.native import Fallback, native_chunk_for
from connector.mapping import mapper_for
schema = load_schema(Path("schemas/user_behavior_event.avsc"))
choice = native_chunk_for(schema, None)
assert isinstance(choice, Fallback), choice
record = {"event_id": "e", "event_key": "k", "event_time": 1, "interaction_id": None,
          "identities": [{"type": "t", "value": "v", "platform": None, "mpid": None,
                          "is_wechat_ecosystem": None}], "properties": {}}
out = io.BytesIO(); fastavro.schemaless_writer(out, schema, record)
decoded = AvroDecoder(schema).decode_many([out.getvalue()])[0]
print(json.loads(mapper_for(None, schema).encode(decoded, "f"))["uuid"], choice.reason)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("e the native extension (event_sink_native) is not installed")


def _schema(*fields: dict[str, Any], strip: bool = True) -> dict[str, Any]:
    raw = {"type": "record", "name": "R", "fields": list(fields)}
    parsed: dict[str, Any] = fastavro.parse_schema(strip_logical_types(raw) if strip else raw)
    return parsed


_PHONE = {"name": "phone", "type": "string"}
_MINIMAL = {"event_key": {"const": "c"}, "identities": [{"value": "phone", "type": {"const": "p"}}]}


@pytest.mark.parametrize(
    ("schema", "mapping", "reason"),
    [
        (
            _schema(_PHONE, {"name": "next", "type": ["null", "R"]}),
            _MINIMAL,
            "the schema is recursive (type R contains itself)",
        ),
        (
            _schema(_PHONE, {"name": "at", "type": "string"}),
            {**_MINIMAL, "time": "at"},
            "mapping.time reads an ISO 8601 string, which only Python parses",
        ),
        (
            _schema(_PHONE, {"name": "at", "type": {"type": "long",
                                                   "logicalType": "timestamp-millis"}},
                    strip=False),
            _MINIMAL,
            "the schema's timestamp-millis is not read as raw numbers",
        ),
        (
            _schema(_PHONE, {"name": "deep", "type": {"type": "array", "items": {"type": "array",
                    "items": {"type": "array", "items": {"type": "array", "items": {"type": "array",
                    "items": {"type": "array", "items": {"type": "array", "items": {"type": "array",
                    "items": {"type": "array", "items": {"type": "array", "items": {"type": "array",
                    "items": {"type": "array", "items": {"type": "array", "items": "long"}}}}}}}}}}}}}}),  # noqa: E501
            _MINIMAL,
            None,  # 14 levels: still native
        ),
        (
            _schema(_PHONE, {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                                       "precision": 400, "scale": 2}}),
            _MINIMAL,
            "a decimal's precision 400 is outside 1..300",
        ),
    ],
)  # fmt: skip
def test_what_the_extension_cannot_run_falls_back_with_its_reason(
    schema: dict[str, Any], mapping: dict[str, Any], reason: str | None
) -> None:
    settings_ = MappingSettings.model_validate(mapping)
    if reason is None:
        build_plan(settings_, schema)
        return
    with pytest.raises(NotNative) as caught:
        build_plan(settings_, schema)
    assert caught.value.reason.startswith(reason)


def test_schemas_nested_past_the_limit_fall_back() -> None:
    node: Any = "long"
    for _ in range(30):
        node = {"type": "array", "items": node}
    with pytest.raises(NotNative, match="nests deeper than 24 levels"):
        build_plan(
            MappingSettings.model_validate(_MINIMAL), _schema(_PHONE, {"name": "d", "type": node})
        )


def test_a_mapping_that_does_not_fit_raises_what_the_python_path_raises() -> None:
    bad = MappingSettings.model_validate({**_MINIMAL, "time": "nowhere"})
    with pytest.raises(MappingError, match=r"mapping\.time: path 'nowhere'"):
        native_chunk_for(_schema(_PHONE), bad)


def test_the_extension_refuses_a_plan_that_does_not_hold_together(ext: types.ModuleType) -> None:
    data = build_plan(default_mapping(), DEFAULT).data
    data["schema"]["nodes"][0]["types"][0] = 999
    with pytest.raises(ValueError, match="node id 999 past the schema"):
        ext.Plan(json.dumps(data))
    with pytest.raises(ValueError, match="plan version 7"):
        ext.Plan(json.dumps({**data, "version": 7}))


def test_the_decoded_logical_types_are_fastavros() -> None:
    """A fastavro that converts another logical type must not go unnoticed: the plan
    decodes exactly fastavro's logical readers (and the timestamps read raw)."""
    ours = {f"{kind}-{logical}" for kind, logical in [*DECODED_LOGICAL, *TIMESTAMP_LOGICAL]}
    assert ours == set(LOGICAL_READERS)
