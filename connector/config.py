"""Typed, frozen settings: a YAML file, overridden by the environment, validated once.

Every key may be overridden as ``EVENT_SINK__SECTION__KEY`` (lists and maps as JSON).
The API token never sits in the file: it comes from ``EVENT_SINK_TOKEN`` or from the
file named by ``http.token_file``. Unknown keys and bad values fail with the key's path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.config_errors import format_errors
from connector.config_http import (  # noqa: F401  (re-exported)
    DeliverySettings,
    HttpSettings,
    RetrySettings,
    SecretHeaderValue,
    StatusPolicy,
    check_url_port,
)
from connector.config_mapping import (  # noqa: F401  (re-exported)
    ConstValue,
    EventargsMapping,
    FromPosition,
    IdentityRule,
    KafkaTimestamp,
    LookupValue,
    MappingSettings,
)
from connector.config_routes import RouteSettings, check_routes, with_merged_http
from connector.config_source import (  # noqa: F401  (re-exported)
    REGISTRY_PASSWORD_ENV,
    REGISTRY_TOKEN_ENV,
    SchemaRegistrySettings,
    SourceSettings,
)
from connector.core.errors import EventSinkError

ENV_PREFIX = "EVENT_SINK__"
TOKEN_ENV = "EVENT_SINK_TOKEN"
REDACTED = "***"

# librdkafka settings that would let the client commit offsets of undelivered events,
# or that have a key of their own in this file.
_FORBIDDEN_KAFKA_PROPERTIES = {
    "enable.auto.commit": "the connector commits only delivered offsets itself",
    "enable.auto.offset.store": "the connector stores only delivered offsets itself",
    "auto.commit.enable": "the connector commits only delivered offsets itself",
    "bootstrap.servers": "use kafka.bootstrap_servers",
    "group.id": "use kafka.group_id",
    "enable.partition.eof": "the connector does not use partition EOF events",
}
# Substrings of property names whose values are secrets, redacted when printed.
_SECRET_MARKERS = ("password", "secret", "token", "sasl.oauthbearer.config", "key.pem")


class ConfigError(EventSinkError):
    """The configuration is invalid; the message names the key's path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


KafkaPropertyValue = StrictStr | StrictInt | StrictFloat | StrictBool


class KafkaSettings(_Section):
    bootstrap_servers: Annotated[str, Field(min_length=1)] = "localhost:9092"
    group_id: Annotated[str, Field(min_length=1)] = "event-sink"
    topics: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)] = (
        "user-behavior-events",
    )
    properties: dict[str, KafkaPropertyValue] = Field(default_factory=dict)
    # 1 s: after a crash, what was delivered since the last commit comes again; commits
    # stay asynchronous, coalesced and one at a time, so a shorter interval costs little.
    commit_interval_ms: Annotated[int, Field(ge=100, le=600_000)] = 1000
    consume_max_messages: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_pending_events: Annotated[int, Field(ge=1)] = 20_000
    max_pending_per_partition: Annotated[int, Field(ge=1)] = 5_000

    @field_validator("properties")
    @classmethod
    def _refuse_guarantee_breakers(
        cls, value: dict[str, KafkaPropertyValue]
    ) -> dict[str, KafkaPropertyValue]:
        for key in value:
            reason = _FORBIDDEN_KAFKA_PROPERTIES.get(key)
            if reason is not None:
                raise ValueError(f"{key!r} may not be set here: {reason}")
        return value


class BatchSettings(_Section):
    max_events: Annotated[int, Field(ge=1, le=500)] = 500
    max_bytes: Annotated[int, Field(ge=1024)] = 4_000_000
    # Bounds a record's wait for its batch at modest rates (p99 under 1 s at 1 to 10k/s).
    linger_ms: Annotated[int, Field(ge=0, le=600_000)] = 200


class DlqSettings(_Section):
    topic: Annotated[str, Field(min_length=1)] | None = None
    on_invalid: Literal["fail", "dlq"] = "fail"


class MetricsSettings(_Section):
    host: Annotated[str, Field(min_length=1)] = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 9400


class LogSettings(_Section):
    format: Literal["json", "plain"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ShutdownSettings(_Section):
    drain_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


class Settings(_Section):
    # Consumer processes in this pod (members of one group; see connector/ops/workers.py).
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    kafka: KafkaSettings = KafkaSettings()
    source: SourceSettings = SourceSettings()
    batch: BatchSettings = BatchSettings()
    http: HttpSettings = HttpSettings()
    delivery: DeliverySettings = DeliverySettings()
    dlq: DlqSettings = DlqSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    # None: the default mapping (connector/mapping/user_behavior_event.yaml, package data).
    mapping: MappingSettings | None = None
    # Several streams, each with its own topics, source, mapping and http (merged over the
    # top-level http); None: the top-level keys are one route, "default".
    routes: tuple[RouteSettings, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _routes_own_their_keys(cls, data: Any) -> Any:
        return with_merged_http(data)

    @model_validator(mode="after")
    def _dlq_needs_a_topic(self) -> Settings:
        if self.dlq.on_invalid == "dlq" and self.dlq.topic is None:
            raise ValueError("dlq.on_invalid is 'dlq' but dlq.topic is not set")
        for where, source in self._sources():
            if source.on_tombstone == "dlq" and self.dlq.on_invalid != "dlq":
                raise ValueError(
                    f"{where}.on_tombstone is 'dlq' but dlq.on_invalid is not: set "
                    "dlq.on_invalid to 'dlq' (and dlq.topic), or on_tombstone to 'skip' or "
                    "'fail'"
                )
        if self.routes is not None:
            check_routes(self.routes, self.dlq.topic)  # also: 1 to 64 of them
        elif self.dlq.topic is not None and self.dlq.topic in self.kafka.topics:
            raise ValueError("dlq.topic must not be one of kafka.topics")
        return self

    def _sources(self) -> list[tuple[str, SourceSettings]]:
        if self.routes is None:
            return [("source", self.source)]
        return [(f"routes[{route.name}].source", route.source) for route in self.routes]

    def secret_values(self) -> list[str]:
        """Values in this config that must never be printed (for the log redactor)."""
        values = [str(value) for key, value in self.kafka.properties.items() if _is_secret_key(key)]
        for _, source in self._sources():
            if source.format == "confluent":
                # An unreadable file: the registry client says so at start.
                with contextlib.suppress(ValueError):
                    values += [v for v in source.schema_registry.secrets(os.environ) if v]
        return values

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data, with every secret replaced by ``***``."""
        data = self.model_dump(mode="json")
        props = data["kafka"]["properties"]
        for key in props:
            if _is_secret_key(key):
                props[key] = REDACTED
        return data


def _is_secret_key(key: str) -> bool:
    return any(marker in key.lower() for marker in _SECRET_MARKERS)


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any, str]]:
    overrides = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise ConfigError(f"{name}: malformed override name (empty path segment)")
        value: Any = raw
        # A single librdkafka property is a scalar: a password may well start with "{".
        is_one_property = path[:2] == ["kafka", "properties"] and len(path) > 2
        if raw.lstrip().startswith(("[", "{")) and not is_one_property:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{'.'.join(path)} (from {name}): invalid JSON: {exc}") from None
        overrides.append((path, value, name))
    return sorted(overrides)


def _set_path(data: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node = data
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(f"{where} (from {origin}): is not a section")
        node = child
    node[path[-1]] = value


def unset_required(settings: Settings) -> list[str]:
    """Keys ``run`` needs given explicitly (file or environment): their built-in defaults
    point at a developer's machine, never at a real cluster or API."""
    keys = ("bootstrap_servers",) if settings.routes else ("bootstrap_servers", "topics")
    missing = [f"kafka.{key}" for key in keys if key not in settings.kafka.model_fields_set]
    if settings.routes is None:
        if "url" not in settings.http.model_fields_set:
            missing.append("http.url")
        return missing
    for route in settings.routes:  # its own, or the top level's (merged in)
        if "url" not in route.http.model_fields_set:
            missing.append(f"routes[{route.name}].http.url")
    return missing


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (if any), apply environment overrides, validate.

    Raises ConfigError with every bad key's dotted path.
    """
    env = os.environ if environ is None else environ
    data: Any = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
    for where, http in _http_sections(data):
        if isinstance(http, dict) and "token" in http:
            raise ConfigError(
                f"{where}.token: the token must not be in the config file; "
                f"set {TOKEN_ENV} or point {where}.token_file at a mounted secret"
            )
    origins: dict[str, str] = {}
    for key_path, value, origin in _env_overrides(env):
        _set_path(data, key_path, value, origin)
        origins[".".join(key_path)] = origin
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origins, Settings)) from None


def _http_sections(data: dict[str, Any]) -> list[tuple[str, Any]]:
    sections = [("http", data.get("http"))]
    routes = data.get("routes")
    if isinstance(routes, list):
        sections += [
            (f"routes[{index}].http", route.get("http"))
            for index, route in enumerate(routes)
            if isinstance(route, dict)
        ]
    return sections


def load_token(settings: Settings, environ: Mapping[str, str] | None = None) -> SecretStr:
    """The API token: the file ``http.token_file`` if set, else ``EVENT_SINK_TOKEN``."""
    env = os.environ if environ is None else environ
    token_file = settings.http.token_file
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"http.token_file: cannot read {token_file}: {exc.strerror}"
            ) from None
        if not token:
            raise ConfigError(f"http.token_file: {token_file} is empty")
        return SecretStr(token)
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"no API token: set {TOKEN_ENV} or http.token_file")
    return SecretStr(token)


class TokenSource:
    """The token for each request: ``http.token_file`` re-read when it changes (rotation
    without a restart), else ``EVENT_SINK_TOKEN``. A file that turns unreadable or empty
    keeps the last good token and says so once."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
        on_token: Callable[[str], None] = lambda _token: None,
    ) -> None:
        self._file = settings.http.token_file
        self._on_token = on_token  # e.g. the log redactor learns every token it may see
        self._token = load_token(settings, environ).get_secret_value()
        on_token(self._token)
        self._stamp = self._file_stamp()
        self._complained = False

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            stat = self._file.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def __call__(self) -> str:
        if self._file is not None:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    token = self._file.read_text(encoding="utf-8").strip()
                except OSError:
                    token = ""
                if token:
                    self._on_token(token)
                    self._token = token
                    self._complained = False
                elif not self._complained:
                    self._complained = True
                    logging.getLogger(__name__).error(
                        "http.token_file %s is unreadable or empty; keeping the last token",
                        self._file,
                    )
        return self._token
