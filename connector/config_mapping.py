"""The ``mapping`` section of the settings: the declarative mapping from a record of the
reader schema to the API's event (checked against the schema at start-up by
connector/mapping/compiler.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FieldPath = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]
NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]


class ConstValue(_Section):
    """A constant instead of a field path."""

    const: NonEmptyStr | StrictBool


class KafkaValue(_Section):
    """The Kafka message's own metadata where a path can stand: its topic, its key or a
    header (UTF-8 text; a null key or a missing header is a null value) or its partition."""

    source: Literal["topic", "key", "header", "partition"]
    name: NonEmptyStr | None = None  # the header's name (source: header only)

    @model_validator(mode="after")
    def _a_header_has_a_name(self) -> KafkaValue:
        if (self.source == "header") != (self.name is not None):
            raise ValueError("set 'name' exactly when 'source' is 'header'")
        return self


class LookupValue(_Section):
    """A table from a field's values (enum symbols, strings, ints, bools) to API values;
    the field is a path, or Kafka metadata (``source: topic`` and the others)."""

    path: FieldPath | None = None
    source: Literal["topic", "key", "header", "partition"] | None = None
    name: NonEmptyStr | None = None  # the header's name (source: header only)
    lookup: Annotated[dict[StrictStr | StrictBool | StrictInt, NonEmptyStr], Field(min_length=1)]
    # dead_letter: a value not in the table makes the record invalid; default: use `default`.
    unmapped: Literal["dead_letter", "default"] = "dead_letter"
    default: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _default_goes_with_its_policy(self) -> LookupValue:
        if (self.unmapped == "default") != (self.default is not None):
            raise ValueError("set 'default' exactly when 'unmapped' is 'default'")
        if (self.path is None) == (self.source is None):
            raise ValueError("set exactly one of 'path' and 'source'")
        if (self.source == "header") != (self.name is not None):
            raise ValueError("set 'name' exactly when 'source' is 'header'")
        return self

    @property
    def field(self) -> str | KafkaValue:
        """What the table is looked up by: the path, or the Kafka metadata."""
        if self.path is not None:
            return self.path
        assert self.source is not None
        return KafkaValue(source=self.source, name=self.name)


class KafkaTimestamp(_Section):
    source: Literal["kafka_timestamp"]


class FromPosition(_Section):
    source: Literal["position"]


class IdentityRule(_Section):
    """One identity per record, or one per element of the array ``each``."""

    each: FieldPath | None = None
    value: FieldPath | KafkaValue
    type: FieldPath | ConstValue | KafkaValue
    platform: FieldPath | ConstValue | KafkaValue | None = None
    mpid: FieldPath | ConstValue | KafkaValue | None = None
    is_wechat_ecosystem: FieldPath | ConstValue | None = None


class EventargsMapping(_Section):
    map: FieldPath | None = None  # a map field, passed through (null values included)
    # API name → a path, or Kafka metadata
    pick: dict[NonEmptyStr, FieldPath | KafkaValue] = Field(default_factory=dict)


class MappingSettings(_Section):
    event_key: FieldPath | ConstValue | LookupValue | KafkaValue
    time: FieldPath | KafkaTimestamp | None = None
    uuid: FieldPath | FromPosition | KafkaValue = FromPosition(source="position")
    intid: FieldPath | ConstValue | KafkaValue | None = None
    identities: Annotated[tuple[IdentityRule, ...], Field(min_length=1)]
    eventargs: EventargsMapping = EventargsMapping()
