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


class LookupValue(_Section):
    """A table from a field's values (enum symbols, strings, ints, bools) to API values."""

    path: FieldPath
    lookup: Annotated[dict[StrictStr | StrictBool | StrictInt, NonEmptyStr], Field(min_length=1)]
    # dead_letter: a value not in the table makes the record invalid; default: use `default`.
    unmapped: Literal["dead_letter", "default"] = "dead_letter"
    default: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _default_goes_with_its_policy(self) -> LookupValue:
        if (self.unmapped == "default") != (self.default is not None):
            raise ValueError("set 'default' exactly when 'unmapped' is 'default'")
        return self


class KafkaTimestamp(_Section):
    source: Literal["kafka_timestamp"]


class FromPosition(_Section):
    source: Literal["position"]


class IdentityRule(_Section):
    """One identity per record, or one per element of the array ``each``."""

    each: FieldPath | None = None
    value: FieldPath
    type: FieldPath | ConstValue
    platform: FieldPath | ConstValue | None = None
    mpid: FieldPath | ConstValue | None = None
    is_wechat_ecosystem: FieldPath | ConstValue | None = None


class EventargsMapping(_Section):
    map: FieldPath | None = None  # a map field, passed through (null values included)
    pick: dict[NonEmptyStr, FieldPath] = Field(default_factory=dict)  # API name → path


class MappingSettings(_Section):
    event_key: FieldPath | ConstValue | LookupValue
    time: FieldPath | KafkaTimestamp | None = None
    uuid: FieldPath | FromPosition = FromPosition(source="position")
    intid: FieldPath | ConstValue | None = None
    identities: Annotated[tuple[IdentityRule, ...], Field(min_length=1)]
    eventargs: EventargsMapping = EventargsMapping()
