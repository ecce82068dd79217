"""Kafka metadata where a mapping path can stand: ``{source: topic}``, ``{source: key}``,
``{source: header, name: H}`` and ``{source: partition}``.

Getters take the decoded record like path getters do, and read the message being mapped
from a :class:`CurrentMessage` that the mapper sets before each record. The key and
headers are UTF-8 text: a null key or a missing header is a null value, like a null path;
bytes that are not UTF-8 make the record invalid (TransformError names them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.config_mapping import KafkaValue
from connector.core.records import SourceRecord
from connector.mapping.schema import Getter, SchemaType
from connector.mapping.transform import TransformError


class CurrentMessage:
    """The Kafka message the mapper works on now (None: a sample, or a test's record)."""

    __slots__ = ("record",)

    def __init__(self) -> None:
        self.record: SourceRecord | None = None


def describe(spec: KafkaValue) -> str:
    return f"{{source: header, name: {spec.name}}}" if spec.name else f"{{source: {spec.source}}}"


def meta_type(spec: KafkaValue) -> SchemaType:
    """What the metadata is, for the compiler's type checks: a partition is an int, the
    rest strings; the key and a header may be null."""
    if spec.source == "partition":
        return SchemaType("int", None, "int", False)
    return SchemaType("string", None, "string", spec.source in ("key", "header"))


def _text(raw: bytes | None, what: str) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TransformError(f"{what}: not UTF-8") from None


def meta_getter(spec: KafkaValue, current: CurrentMessage) -> Getter:
    if spec.source == "topic":

        def topic(_record: Mapping[str, Any]) -> Any:
            message = current.record
            return None if message is None else message.topic

        return topic
    if spec.source == "partition":

        def partition(_record: Mapping[str, Any]) -> Any:
            message = current.record
            return None if message is None else message.partition

        return partition
    if spec.source == "key":

        def key(_record: Mapping[str, Any]) -> Any:
            message = current.record
            return None if message is None else _text(message.key, "the Kafka key")

        return key
    name = spec.name
    what = f"Kafka header {name!r}"

    def header(_record: Mapping[str, Any]) -> Any:
        message = current.record
        if message is None:
            return None
        for found, raw in message.headers:
            if found == name:
                return _text(raw, what)
        return None

    return header
