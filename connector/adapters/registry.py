"""Schema Registry: the Confluent wire format, writer schemas fetched by id, and the gate
that fetches them before a chunk of records is decoded.

Wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body. Each writer
schema is fetched once (``GET /schemas/ids/{id}``) and cached for the life of the
process; every record is then read with Avro schema resolution into the one reader schema
(``source.schema_file``), so the mapping sees one shape whatever the writer version.

What goes wrong, and what happens:

* the registry unreachable, timing out, answering 5xx (or 401/403, not the data's
  fault), redirecting (never followed: its credentials stay with the configured origin),
  or answering more than :data:`MAX_SCHEMA_ANSWER_BYTES`: ``RegistryUnavailable``. The
  gate holds the chunk, pauses its partitions and retries with capped backoff while the
  consume loop keeps turning (commits, health, group membership); nothing is skipped or
  dead-lettered;
* an unknown id (404), a bad magic byte, a non-Avro schema, bytes that do not decode:
  ``DecodeError`` at decode time, so the record is dead-lettered with that reason (or
  stops the connector, per ``dlq.on_invalid``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import random
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
import fastavro

from connector.adapters.avro import AvroDecoder, DecodeError, strip_logical_types
from connector.adapters.http_setup import DIRECT, Proxy, UnreadableBody, read_bounded
from connector.adapters.kafka_source import (
    CommitCallback,
    ConsumerFactory,
    KafkaSource,
    RebalanceCallback,
)
from connector.config import ConfigError, KafkaSettings
from connector.config_source import REGISTRY_PASSWORD_ENV, SchemaRegistrySettings
from connector.core.backoff import Backoff
from connector.core.backpressure import PartitionHolds
from connector.core.classify import origin
from connector.core.errors import InfrastructureError
from connector.core.records import SourceRecord, TopicPartition

log = logging.getLogger(__name__)

MAGIC = 0
_HEADER = struct.Struct(">bI")
_BACKOFF = Backoff(0.2, 10.0)
REGISTRY_HOLD = "registry"  # the reason the gate holds partitions under
# A schema is text of a few KiB; a very large one still fits. Longer answers are not read.
MAX_SCHEMA_ANSWER_BYTES = 8 << 20


class RegistryUnavailable(InfrastructureError):
    """The registry could not answer (down, timeout, 5xx, auth): retry, never skip."""


class SchemaNotFetched(InfrastructureError):
    """A record's schema id was not fetched before decoding: a wiring bug, not bad data.

    Deliberately not a DecodeError, so it can never turn into a dead letter."""

    retriable = False


class RegistryClient:
    """``GET /schemas/ids/{id}`` over the connector's aiohttp session."""

    def __init__(
        self,
        settings: SchemaRegistrySettings,
        environ: Mapping[str, str] | None = None,
        *,
        proxy: Proxy = DIRECT,
    ) -> None:
        env = os.environ if environ is None else environ
        self.proxy = proxy
        if settings.url is None:
            raise ConfigError("source.schema_registry.url is not set")
        self._base = settings.url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._headers = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        try:
            password, token = settings.secrets(env)
            user = settings.user()
        except ValueError as exc:
            raise ConfigError(f"source.{exc}") from None
        if user is not None:
            if not password:
                raise ConfigError(
                    "source.schema_registry.username is set but neither "
                    f"schema_registry.password_file nor {REGISTRY_PASSWORD_ENV} is"
                )
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {basic}"
        elif token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=str(settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"source.schema_registry.ca_file: cannot load {settings.ca_file}: {exc}"
                ) from None

    async def probe(self, session: aiohttp.ClientSession) -> str | None:
        """``GET /schemas/types``, which every registry answers: None when it answered 200
        with these credentials, else what went wrong (``check-config --probe``)."""
        try:
            async with session.get(
                f"{self._base}/schemas/types",
                headers=self._headers,
                timeout=self._timeout,
                ssl=self._ssl,
                allow_redirects=False,
                proxy=self.proxy.url,
                proxy_headers=self.proxy.headers,
            ) as response:
                if response.status in (401, 403):
                    return f"HTTP {response.status}: the credentials are refused"
                if response.status != 200:
                    return f"HTTP {response.status}"
                return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"unreachable ({type(exc).__name__}: {exc})"

    async def schema(self, session: aiohttp.ClientSession, schema_id: int) -> dict[str, Any] | None:
        """The registry's answer for an id: its JSON object, or None for 404 (unknown id)."""
        url = f"{self._base}/schemas/ids/{schema_id}"
        try:
            async with session.get(
                url,
                headers=self._headers,
                timeout=self._timeout,
                ssl=self._ssl,
                allow_redirects=False,  # the credentials go to the configured origin only
                auto_decompress=False,  # read_bounded inflates, within its bound
                proxy=self.proxy.url,
                proxy_headers=self.proxy.headers,
            ) as response:
                if response.status == 404:
                    return None
                if 300 <= response.status < 400:
                    target = origin(response.headers.get("Location", ""))
                    raise RegistryUnavailable(
                        f"schema registry redirects (HTTP {response.status} to {target}) for "
                        f"schema id {schema_id}; redirects are not followed: fix its url"
                    )
                if response.status != 200:
                    raise RegistryUnavailable(
                        f"schema registry answered HTTP {response.status} for schema id {schema_id}"
                    )
                raw = await read_bounded(response, MAX_SCHEMA_ANSWER_BYTES)
                if raw is None:
                    response.close()
                    raise RegistryUnavailable(
                        f"schema registry's answer for id {schema_id} is longer than "
                        f"{MAX_SCHEMA_ANSWER_BYTES} bytes"
                    )
                body = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError, ValueError, UnreadableBody) as exc:
            raise RegistryUnavailable(
                f"schema registry unreachable fetching schema id {schema_id}: {type(exc).__name__}"
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise RegistryUnavailable(f"schema registry's answer for id {schema_id} has no schema")
        return body


class ConfluentDecoder(AvroDecoder):
    """Decodes Confluent-framed Avro into the reader schema. ``decode`` is synchronous and
    never touches the network: ``prefetch`` (async) must have seen each id first."""

    def __init__(self, reader_schema: dict[str, Any], client: RegistryClient) -> None:
        # Records are read writer → reader schema, by fastavro: nothing to compile.
        super().__init__(reader_schema, compiled=False)
        self._client = client
        # id → parsed writer schema, or the reason the id can only be dead-lettered.
        self._writers: dict[int, dict[str, Any] | str] = {}

    def missing(self, records: Iterable[SourceRecord]) -> set[int]:
        """Schema ids in these records not fetched yet (cheap: five bytes each)."""
        ids: set[int] = set()
        writers = self._writers
        for record in records:
            value = record.value
            if value is not None and len(value) >= 5 and value[0] == MAGIC:
                schema_id = int.from_bytes(value[1:5], "big")
                if schema_id not in writers:
                    ids.add(schema_id)
        return ids

    async def prefetch(self, session: aiohttp.ClientSession, ids: Iterable[int]) -> None:
        """Fetch and parse each id once. RegistryUnavailable leaves the rest for a retry."""
        for schema_id in sorted(ids):
            if schema_id in self._writers:
                continue
            answer = await self._client.schema(session, schema_id)
            self._writers[schema_id] = _writer_schema(schema_id, answer)

    def decode(self, value: bytes | None) -> dict[str, Any]:
        if not value:
            raise DecodeError("empty message value (tombstone or no payload)")
        if len(value) < 5 or value[0] != MAGIC:
            raise DecodeError("not the Confluent wire format (bad magic byte or too short)")
        schema_id = int.from_bytes(value[1:5], "big")
        writer = self._writers.get(schema_id)
        if writer is None:
            raise SchemaNotFetched(f"schema id {schema_id} was not fetched before decoding")
        if isinstance(writer, str):
            raise DecodeError(writer)
        buffer = io.BytesIO(value)
        buffer.seek(5)
        try:
            record = fastavro.schemaless_reader(buffer, writer, self.schema)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(
                f"not a record of schema id {schema_id}: {type(exc).__name__}"
            ) from None
        if buffer.tell() != len(value):
            raise DecodeError(
                f"{len(value) - buffer.tell()} trailing bytes after the record "
                f"(schema id {schema_id})"
            )
        if not isinstance(record, dict):
            raise DecodeError("the writer schema's top level is not a record")
        return record

    def decode_many(self, values: list[bytes | None]) -> list[dict[str, Any] | DecodeError]:
        # Each value names its own writer schema: no joined buffer here.
        return [self._verdict(value) for value in values]


def _writer_schema(schema_id: int, answer: dict[str, Any] | None) -> dict[str, Any] | str:
    """The parsed writer schema, or why records with this id can only be dead-lettered."""
    if answer is None:
        return f"schema id {schema_id} is unknown to the registry (404)"
    kind = answer.get("schemaType", "AVRO")
    if kind != "AVRO":
        return f"schema id {schema_id} is a {kind} schema, not Avro"
    if answer.get("references"):
        return f"schema id {schema_id} uses schema references, which are not supported"
    try:
        parsed = fastavro.parse_schema(strip_logical_types(json.loads(answer["schema"])))
    except Exception as exc:  # a registry that holds an invalid schema
        return f"schema id {schema_id} is not a valid Avro schema: {type(exc).__name__}"
    if not isinstance(parsed, dict):
        return f"schema id {schema_id} is not a record schema"
    return parsed


class SchemaGatedSource(KafkaSource):
    """A KafkaSource whose ``consume`` returns a chunk only once every schema id in it is
    fetched. While the registry is unavailable it holds the chunk (unread by the app, so
    never tracked or committed), pauses those partitions, keeps polling, and retries with
    capped exponential backoff and jitter. Held records of a revoked or lost partition
    are dropped: its next owner reads them again from the committed offset."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        decoder: ConfluentDecoder,
        session: aiohttp.ClientSession,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
        on_commit: CommitCallback = lambda _done, _failed: None,
        holds: PartitionHolds,
        consumer_factory: ConsumerFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        async def revoked(tps: list[TopicPartition]) -> None:
            self._drop(tps)
            await on_revoke(tps)

        async def lost(tps: list[TopicPartition]) -> None:
            self._drop(tps)
            await on_lost(tps)

        kwargs: dict[str, Any] = {}
        if consumer_factory is not None:
            kwargs["consumer_factory"] = consumer_factory
        super().__init__(
            settings,
            on_assign=on_assign,
            on_revoke=revoked,
            on_lost=lost,
            on_commit=on_commit,
            **kwargs,
        )
        self._decoder = decoder
        self._session = session
        self._holds = holds  # the pipeline pauses; this gate asks it to
        self._clock = clock
        self._rng = rng or random.Random()
        self._held: list[SourceRecord] = []
        self._failures = 0
        self._retry_at = 0.0
        self.registry_down = False

    def _drop(self, tps: list[TopicPartition]) -> None:
        gone = set(tps)
        self._held = [r for r in self._held if (r.topic, r.partition) not in gone]

    async def consume(self, max_messages: int, timeout_s: float) -> list[SourceRecord]:
        if self._held:
            if self._clock() >= self._retry_at and await self._fetch(self._held):
                records, self._held = self._held, []
                await self._ungate()
                return records
            # Keep polling (group membership, rebalances); gated partitions deliver nothing,
            # anything that still arrives queues behind what is held, in order.
            more = await super().consume(max_messages, timeout_s)
            if more:
                self._held.extend(more)
                await self._gate(more)
            return []
        records = await super().consume(max_messages, timeout_s)
        if records and not await self._fetch(records):
            self._held = records
            await self._gate(records)
            return []
        return records

    async def _fetch(self, records: list[SourceRecord]) -> bool:
        missing = self._decoder.missing(records)
        if not missing:
            return True
        try:
            await self._decoder.prefetch(self._session, missing)
        except RegistryUnavailable as exc:
            self._failures += 1
            self._retry_at = self._clock() + _BACKOFF.delay(self._failures, self._rng)
            if not self.registry_down:
                log.warning("%s; pausing the partitions concerned and retrying", exc)
            self.registry_down = True
            return False
        if self.registry_down:
            log.info("schema registry reachable again after %d failed attempts", self._failures)
        self.registry_down = False
        self._failures = 0
        return True

    async def _gate(self, records: list[SourceRecord]) -> None:
        await self._holds.hold(REGISTRY_HOLD, {(r.topic, r.partition) for r in records})

    async def _ungate(self) -> None:
        # Only the gate's own hold ends: a partition backpressure holds stays paused.
        await self._holds.release(REGISTRY_HOLD)
