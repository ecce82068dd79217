"""Avro binary (schemaless, one record per message) → dict. Pure after set-up."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Protocol

import fastavro
from fastavro.schema import SchemaParseException

from connector.adapters.avro_compiled import compile_reader
from connector.config import ConfigError
from connector.core.errors import DataError, Stage
from connector.mapping.schema import RAW_LOGICAL_TYPE_KEY

# Logical types fastavro would turn into datetime/date objects. The connector wants the
# raw numbers (epoch milliseconds go straight into the API's `time`); dropping the
# annotation does not change the binary encoding, so the schema still reads the same bytes.
_RAW_LOGICAL_TYPES = {
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
}


class SchemaError(ConfigError):
    """The configured schema cannot be read or parsed."""


class DecodeError(DataError):
    """A message's bytes are not one record of the schema."""

    stage = Stage.DECODE


class Decoder(Protocol):
    """What the pipeline needs of a decoder: Avro, Confluent-framed Avro or JSON."""

    @property
    def schema(self) -> dict[str, Any]:
        """The reader schema, in the Avro shape the mapping is compiled against."""
        ...

    def decode_many(self, values: list[bytes | None]) -> list[dict[str, Any] | DecodeError]:
        """Each value decoded, with the error in place of a record it refuses."""
        ...


def strip_logical_types(node: Any) -> Any:
    """The schema with timestamp annotations moved aside: those fields read as raw longs."""
    if isinstance(node, dict):
        stripped = {k: strip_logical_types(v) for k, v in node.items()}
        if stripped.get("logicalType") in _RAW_LOGICAL_TYPES:
            stripped[RAW_LOGICAL_TYPE_KEY] = stripped.pop("logicalType")
        return stripped
    if isinstance(node, list):
        return [strip_logical_types(item) for item in node]
    return node


def read_json_file(path: Path, key: str) -> Any:
    """A schema file's JSON; SchemaError names the config key, the file and the problem."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"{key}: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{key}: {path} is not valid JSON: {exc}") from None


def load_schema(path: Path) -> dict[str, Any]:
    """Read and parse an .avsc file; SchemaError names the file and the problem."""
    raw = read_json_file(path, "source.schema_file")
    try:
        parsed = fastavro.parse_schema(strip_logical_types(raw))
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"source.schema_file: {path} is not a valid Avro schema: {exc}") from None
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaError(f"source.schema_file: {path}: the top level must be a record")
    return parsed


class AvroDecoder:
    """Decodes schemaless Avro with one parsed schema, reused for every record."""

    def __init__(self, parsed_schema: dict[str, Any], *, compiled: bool = True) -> None:
        self._schema = parsed_schema
        # None when the schema has a construct the compiler does not cover (recursion).
        self._read = compile_reader(parsed_schema) if compiled else None

    @property
    def compiled(self) -> bool:
        """Whether ``decode_many`` runs the reader compiled from the schema."""
        return self._read is not None

    @property
    def schema(self) -> dict[str, Any]:
        """The parsed schema records are read as (the mapping is compiled against it)."""
        return self._schema

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """The record as a dict; DecodeError if the bytes are not exactly one record."""
        if not value:
            raise DecodeError("empty message value (tombstone or no payload)")
        buffer = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(buffer, self._schema, None)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(f"not a record of the schema: {type(exc).__name__}") from None
        if buffer.tell() != len(value):
            # e.g. a Confluent-framed message read as schemaless: refuse rather than guess.
            raise DecodeError(
                f"{len(value) - buffer.tell()} trailing bytes after the record "
                "(wrong schema or framed message?)"
            )
        if not isinstance(record, dict):
            raise DecodeError("the schema's top level is not a record")
        return record

    def decode_many(self, values: list[bytes | None]) -> list[dict[str, Any] | DecodeError]:
        """``decode`` for each value, with the error in place of a record it refuses.

        The hot path: values go through the reader compiled from the schema. A value it
        does not vouch for (corrupt, trailing bytes, anything unusual) is decoded again
        by ``decode``, with fastavro, so the verdict and the error are exactly fastavro's.
        """
        read = self._read
        if read is None:
            return [self._verdict(value) for value in values]
        out: list[dict[str, Any] | DecodeError] = []
        append = out.append
        for value in values:
            if value:
                try:
                    record, end = read(value, 0)
                except Exception:  # refused or corrupt: fastavro decides below
                    end = -1
                if end == len(value):
                    append(record)
                    continue
            append(self._verdict(value))
        return out

    def _verdict(self, value: bytes | None) -> dict[str, Any] | DecodeError:
        try:
            return self.decode(value)
        except DecodeError as exc:
            return exc
