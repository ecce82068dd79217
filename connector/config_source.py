"""The ``source`` section: how message values are read (Avro with a local schema or a
Schema Registry, JSON), and what a null value (a tombstone) means."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.config_http import check_url_port


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


REGISTRY_PASSWORD_ENV = "EVENT_SINK_REGISTRY_PASSWORD"
REGISTRY_TOKEN_ENV = "EVENT_SINK_REGISTRY_TOKEN"


class SchemaRegistrySettings(_Section):
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")] | None = None
    # Basic auth: the user here, the password from password_file (a mounted secret) or
    # EVENT_SINK_REGISTRY_PASSWORD. Bearer: token_file or EVENT_SINK_REGISTRY_TOKEN. The
    # files let each route have its own registry secret. Secrets never sit in the config.
    username: Annotated[str, Field(min_length=1)] | None = None
    username_file: Path | None = None  # the user from a mounted secret instead
    password_file: Path | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    @field_validator("url")
    @classmethod
    def _port_is_a_tcp_port(cls, value: str | None) -> str | None:
        return check_url_port(value)

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> SchemaRegistrySettings:
        if self.username is not None and self.username_file is not None:
            raise ValueError("set username or username_file, not both")
        basic = self.username is not None or self.username_file is not None
        if self.password_file is not None and not basic:
            raise ValueError("password_file is set but username is not (basic auth needs both)")
        if self.token_file is not None and basic:
            raise ValueError("set username (basic auth) or token_file (bearer), not both")
        return self

    def user(self) -> str | None:
        """The basic-auth user: ``username``, or read from ``username_file``."""
        return self.username or _secret(self.username_file, None, "username_file")

    def secrets(self, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
        """(password, token): from the files when set, else the environment. Raises
        ValueError naming the file when it cannot be read or is empty."""
        return (
            _secret(self.password_file, environ.get(REGISTRY_PASSWORD_ENV), "password_file"),
            _secret(self.token_file, environ.get(REGISTRY_TOKEN_ENV), "token_file"),
        )


def _secret(path: Path | None, fallback: str | None, key: str) -> str | None:
    if path is None:
        return fallback or None
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"schema_registry.{key}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"schema_registry.{key}: {path} is empty")
    return value


class SourceSettings(_Section):
    format: Literal["avro", "confluent", "json"] = "avro"
    schema_file: Path = Path("schemas/user_behavior_event.avsc")
    # format json: the JSON Schema (a subset) the messages follow and the mapping is checked
    # against at start (without it, per record); refused with the Avro formats.
    json_schema_file: Path | None = None
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    # A null value (a tombstone) carries no event: skip it (counted, its offset done), or
    # treat it as an invalid record (dlq: dead-letter it; fail: stop).
    on_tombstone: Literal["skip", "dlq", "fail"] = "skip"
    # auto: decode and map in one pass of the native extension when it is installed and
    # covers this schema and mapping (start-up logs which path runs, and why); python:
    # always the Python path (the reference).
    hot_path: Literal["auto", "python"] = "auto"

    @model_validator(mode="after")
    def _confluent_needs_a_registry(self) -> SourceSettings:
        if self.format == "confluent" and self.schema_registry.url is None:
            raise ValueError(
                "source.format is 'confluent' but source.schema_registry.url is not set"
            )
        if self.format != "json" and self.json_schema_file is not None:
            raise ValueError(
                f"source.json_schema_file is set but source.format is {self.format!r}; "
                "it is read only with format json"
            )
        return self
