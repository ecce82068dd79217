"""The optional native hot path: a consume chunk's Avro values → the API's encoded events
in one pass of the Rust extension ``event_sink_native`` (built from native/ by
scripts/native), driven by the plan the Python mapping compiler writes
(connector/mapping/plan.py).

The Python path (``AvroDecoder`` + ``Mapper.encode``) stays the reference, and this module
holds the chunk to it: the extension returns an event only for a message it vouches for
(a plain valid record); every other message (corrupt or truncated bytes, an encoding
fastavro reads loosely, a record the mapping refuses) comes back as a deferral, and
:class:`NativeChunk` runs the Python path on it, so its verdict, stage, kind and wording
are exactly the reference's. A differential test (tests/test_native_differential.py)
holds the events equal.

:func:`native_chunk_for` decides the path of a route once, at start-up: a
:class:`NativeChunk`, or a :class:`Fallback` that says why the route stays on Python.
"""

from __future__ import annotations

import enum
import importlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, NamedTuple

from connector.adapters.avro import AvroDecoder, DecodeError
from connector.config_mapping import MappingSettings
from connector.core.errors import Stage
from connector.core.records import KafkaMessage, SourceRecord, record_of
from connector.mapping.compiler import mapper_for
from connector.mapping.default import default_mapping
from connector.mapping.mapper import Mapper
from connector.mapping.plan import PLAN_VERSION, NotNative, build_plan
from connector.mapping.transform import TransformError

EXTENSION = "event_sink_native"


class Rejected(NamedTuple):
    """A message that cannot be an event: the stage and kind ingest gives it
    (``decode``/``undecodable`` or ``transform``/``unmappable``) and the reason."""

    stage: Stage
    kind: str
    reason: str


class Marker(enum.Enum):
    TOMBSTONE = "tombstone"


TOMBSTONE = Marker.TOMBSTONE
"""A null value: no event in it; ingest applies ``source.on_tombstone``."""

Outcome = bytes | Rejected | Literal[Marker.TOMBSTONE]


def columns(records: Sequence[SourceRecord]) -> tuple[list[Any], ...]:
    """The records as the columns ``Plan.run`` takes: values, topics, partitions,
    offsets, timestamps, keys, headers."""
    return (
        [r.value for r in records],
        [r.topic for r in records],
        [r.partition for r in records],
        [r.offset for r in records],
        [r.timestamp_ms for r in records],
        [r.key for r in records],
        [r.headers for r in records],
    )


class MessageRun(NamedTuple):
    """Consecutive consumed messages of one partition, as :meth:`NativeChunk.messages`
    gives them: ``offsets``, ``timestamps``, ``outcomes`` and ``messages`` are aligned, and
    ``others`` are the indexes of the outcomes that are not an event's bytes."""

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[int | None]
    outcomes: list[Outcome]
    messages: list[KafkaMessage]
    others: list[int]


@dataclass(frozen=True, slots=True)
class Fallback:
    """The route runs on the Python path; ``reason`` says why (for the start-up log)."""

    reason: str
    path: Literal["python"] = "python"


def load_extension() -> ModuleType | Fallback:
    """The extension module, or the Fallback that says why it cannot be used."""
    try:
        module = importlib.import_module(EXTENSION)
    except ImportError as exc:
        return Fallback(
            f"the native extension ({EXTENSION}) is not installed: {exc} "
            "(scripts/native builds it; it needs cargo)"
        )
    version = getattr(module, "PLAN_VERSION", None)
    if version != PLAN_VERSION:
        return Fallback(
            f"the installed native extension runs plan version {version}, this connector "
            f"writes version {PLAN_VERSION} (rebuild it with scripts/native)"
        )
    return module


class NativeChunk:
    """A route's compiled hot path. ``run`` (or calling it with SourceRecords) gives one
    outcome per message, in order: the event's bytes (what ``Mapper.encode`` returns for
    it, equal as parsed JSON), :data:`TOMBSTONE` for a null value, or :class:`Rejected`.

    Never raises for a message's content: what the extension does not vouch for goes to
    the Python path, which decides (only an error the Python path itself would raise
    outside DecodeError and TransformError goes through, as it does in ingest).
    """

    path: Literal["native"] = "native"

    def __init__(self, plan: Any, decoder: AvroDecoder, mapper: Mapper) -> None:
        self._plan = plan
        self._decoder = decoder
        self._mapper = mapper
        # Why messages went to the Python path, by the extension's reason (bounded: the
        # reasons are the extension's fixed texts).
        self.deferred: Counter[str] = Counter()

    @property
    def plan(self) -> Any:
        """The extension's compiled plan: ``plan.run`` gives the raw outcomes (bytes, None
        or the reason a message is deferred), for tests and benchmarks."""
        return self._plan

    def __call__(self, records: Sequence[SourceRecord]) -> list[Outcome]:
        """One outcome per record, in order (tests and benchmarks; the pipeline hands over
        the consumer's own messages, see :meth:`messages`)."""
        batch = list(records)
        raw: list[bytes | str | None] = self._plan.run(*columns(batch))
        return [
            outcome if type(outcome) is bytes else self._decide(outcome, record)
            for outcome, record in zip(raw, batch, strict=True)
        ]

    def messages(self, messages: list[Any]) -> tuple[list[MessageRun], list[Any]]:
        """A consume call's own messages (confluent_kafka's), in runs of one partition,
        and the messages that carry an error instead of a record (for the source to
        report). No SourceRecord is made, but for a message the Python path decides."""
        raw_runs, errors = self._plan.run_messages(messages)
        runs = [MessageRun(*raw) for raw in raw_runs]
        for run in runs:
            outcomes, batch = run.outcomes, run.messages
            for index in run.others:
                outcomes[index] = self._decide(outcomes[index], batch[index])
        return runs, errors

    def _decide(self, raw: object, message: SourceRecord | KafkaMessage) -> Outcome:
        """A message the extension returned no event for: a tombstone (None), or a
        deferral (the reason, a str) that the Python path decides."""
        if raw is None:
            return TOMBSTONE
        self.deferred[str(raw)] += 1
        return self.python_path(record_of(message))

    def python_path(self, message: SourceRecord) -> bytes | Rejected:
        """The reference's outcome for one message (what ingest makes of it)."""
        decoded = self._decoder.decode_many([message.value])[0]
        if isinstance(decoded, DecodeError):
            return Rejected(Stage.DECODE, "undecodable", str(decoded))
        try:
            return self._mapper.encode(
                decoded, message.fallback_uuid, message.timestamp_ms, message
            )
        except TransformError as exc:
            return Rejected(Stage.TRANSFORM, "unmappable", str(exc))


def native_chunk_for(
    parsed_schema: Mapping[str, Any],
    mapping: MappingSettings | None,
    *,
    source_format: str = "avro",
    decoder: AvroDecoder | None = None,
) -> NativeChunk | Fallback:
    """The native path of a route, or the Fallback with the reason it runs on Python.

    ``parsed_schema`` is the reader schema as ``load_schema`` parses it; ``mapping`` the
    configured mapping (None: the default one). MappingError when the mapping does not
    fit the schema, exactly as the Python path's ``mapper_for`` raises it.
    """
    mapper = mapper_for(mapping, parsed_schema)  # the reference: raises what it raises
    if source_format == "json":
        return Fallback("source.format json: JSON input is decoded and mapped in Python")
    if source_format == "confluent":
        return Fallback(
            "source.format confluent: the writer's schema can differ per message, and the "
            "extension does not resolve a writer's schema to the reader's"
        )
    if source_format != "avro":
        return Fallback(f"source.format {source_format}: not a format the extension reads")
    module = load_extension()
    if isinstance(module, Fallback):
        return module
    try:
        plan = build_plan(mapping if mapping is not None else default_mapping(), parsed_schema)
    except NotNative as exc:
        return Fallback(exc.reason)
    try:
        compiled = module.Plan(plan.text)
    except ValueError as exc:
        return Fallback(f"the native extension refused the plan: {exc}")
    schema = dict(parsed_schema)
    return NativeChunk(compiled, decoder if decoder is not None else AvroDecoder(schema), mapper)
