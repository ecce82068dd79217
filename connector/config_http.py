"""The ``http`` section of the settings: the API endpoint, how answers are read, retries,
and the network in between (proxy, private CA, client certificate, extra headers).

Secrets never sit in the file: a header's secret value comes from a mounted file or an
environment variable; proxy credentials come from the environment only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    field_validator,
    model_validator,
)

StatusPolicy = Literal["retry", "refuse", "halt"]

# Headers the connector sets itself, or that would change how a body is framed or read.
RESERVED_HEADERS = {
    "x-token": "the token comes from EVENT_SINK_TOKEN or http.token_file",
    "content-type": "the connector always sends application/json",
    "content-length": "the connector frames the body itself",
    "content-encoding": "use http.compression",
    "host": "the host is http.url's",
    "accept-encoding": "the connector reads only the encodings it can bound (gzip, deflate)",
    "transfer-encoding": "the connector frames the body itself",
    "connection": "the connector manages its connections",
}
_TOKEN_CHARS = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # RFC 9110 token: a valid header name
_URL = r"^https?://[^\s/]+(/\S*)?$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_url_port(url: str | None) -> str | None:
    """A URL's port, when it names one, must be a TCP port (1..65535)."""
    if url is None:
        return None
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    if netloc.startswith("["):  # an IPv6 literal: the port follows the bracket
        rest = netloc.partition("]")[2]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        port = netloc.partition(":")[2]
    if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise ValueError(f"port {port!r} is not a TCP port (1..65535)")
    return url


class RetrySettings(_Section):
    initial_backoff_ms: Annotated[int, Field(ge=1)] = 200
    max_backoff_ms: Annotated[int, Field(ge=1)] = 30_000
    halt_probe_max_ms: Annotated[int, Field(ge=1000)] = 60_000
    max_retry_after_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    # The retry budget, off by default (retry forever). The first limit reached wins; then
    # the batch is bisected, each part tried once, and what still fails is dead-lettered.
    give_up_after_s: Annotated[float, Field(gt=0, le=7 * 86_400)] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class SecretHeaderValue(_Section):
    """A header value that is a secret: read from a mounted file or the environment."""

    value_file: Path | None = None
    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SecretHeaderValue:
        if (self.value_file is None) == (self.env is None):
            raise ValueError("set exactly one of 'value_file' and 'env'")
        return self


HeaderValue = Annotated[StrictStr, Field(pattern=r"^[^\r\n\x00]*$")]


class RateLimitSettings(_Section):
    """A cap on what is sent, off unless a rate is set. Every request takes tokens
    (retries, bisected parts and halt probes too) before it is sent. ``scope: group``
    gives each member the cap * (partitions it owns / partitions of its topics)."""

    events_per_s: Annotated[float, Field(gt=0, le=10_000_000)] | None = None
    requests_per_s: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    burst_s: Annotated[float, Field(gt=0, le=60)] = 1.0  # the bucket holds this much of the rate
    scope: Literal["group", "process"] = "group"

    @property
    def enabled(self) -> bool:
        return self.events_per_s is not None or self.requests_per_s is not None


class AdaptiveSettings(_Section):
    """``http.concurrency: adaptive``: the limit moves between 1 and ``http.max_in_flight``
    by AIMD (see connector/core/concurrency.py)."""

    initial: Annotated[int, Field(ge=1, le=256)] = 1
    decrease_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.9
    rtt_deviation_scale: Annotated[float, Field(gt=0, le=100)] = 2.5
    ewma_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.4
    queue_tolerance: Annotated[float, Field(gt=0, le=10)] | None = 0.3
    probe_interval_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


class HttpSettings(_Section):
    url: Annotated[str, Field(pattern=_URL)] = "http://127.0.0.1:8080/v1/events/import"
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    max_in_flight: Annotated[int, Field(ge=1, le=256)] = 8
    public_params: dict[str, Any] = Field(
        default_factory=lambda: {"isMatching": 1, "matchingType": 1}
    )
    token_file: Path | None = None
    retry: RetrySettings = RetrySettings()
    status_overrides: dict[Annotated[int, Field(ge=100, le=599)], StatusPolicy] = Field(
        default_factory=dict
    )
    # By the body `code` of an HTTP 200 ("500", "OOPS", ...): the operator's last word.
    body_code_overrides: dict[
        Annotated[StrictStr, Field(min_length=1, max_length=16)], StatusPolicy
    ] = Field(default_factory=dict)
    # An explicit forward proxy for the API and the Schema Registry; wins over
    # HTTPS_PROXY / HTTP_PROXY / NO_PROXY. Credentials: EVENT_SINK_PROXY_USERNAME/PASSWORD.
    proxy: Annotated[str, Field(pattern=r"^https?://[^\s/]+/?$")] | None = None
    ca_file: Path | None = None  # a private CA bundle for the API's certificate
    client_cert_file: Path | None = None  # mTLS: both or neither
    client_key_file: Path | None = None
    headers: dict[Annotated[str, Field(pattern=_TOKEN_CHARS)], HeaderValue | SecretHeaderValue] = (
        Field(default_factory=dict)
    )
    compression: Literal["none", "gzip"] = "none"
    rate_limit: RateLimitSettings = RateLimitSettings()
    concurrency: Literal["fixed", "adaptive"] = "fixed"
    adaptive: AdaptiveSettings = AdaptiveSettings()

    @field_validator("status_overrides")
    @classmethod
    def _keep_success_success(cls, value: dict[int, StatusPolicy]) -> dict[int, StatusPolicy]:
        if 200 in value:
            raise ValueError("200 cannot be overridden: it is the contract's success")
        return value

    @field_validator("body_code_overrides")
    @classmethod
    def _keep_body_success(cls, value: dict[str, StatusPolicy]) -> dict[str, StatusPolicy]:
        if "200" in value:
            raise ValueError('"200" cannot be overridden: it is the contract\'s success')
        return value

    @field_validator("url", "proxy")
    @classmethod
    def _ports_are_tcp_ports(cls, value: str | None) -> str | None:
        return check_url_port(value)

    @field_validator("proxy")
    @classmethod
    def _no_credentials_in_file(cls, value: str | None) -> str | None:
        if value is not None and "@" in value:
            raise ValueError(
                "must not carry credentials: set EVENT_SINK_PROXY_USERNAME and "
                "EVENT_SINK_PROXY_PASSWORD in the environment"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(
        cls, value: dict[str, str | SecretHeaderValue]
    ) -> dict[str, str | SecretHeaderValue]:
        seen: set[str] = set()
        for name in value:
            lower = name.lower()
            reason = RESERVED_HEADERS.get(lower)
            if reason is not None:
                raise ValueError(f"{name!r} may not be set here: {reason}")
            if lower in seen:
                raise ValueError(f"{name!r} is given twice (header names ignore case)")
            seen.add(lower)
        return value

    @model_validator(mode="after")
    def _initial_within_max(self) -> HttpSettings:
        if self.adaptive.initial > self.max_in_flight:
            raise ValueError(
                f"http.adaptive.initial ({self.adaptive.initial}) is above "
                f"http.max_in_flight ({self.max_in_flight}), the adaptive limit's maximum"
            )
        return self

    @model_validator(mode="after")
    def _client_cert_pairs(self) -> HttpSettings:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("set both http.client_cert_file and http.client_key_file, or neither")
        return self


class DeliverySettings(_Section):
    """``delivery.ordering``: ``none`` sends batches in parallel whatever they hold (a
    retried batch is overtaken); ``partition`` keeps one open batch per partition and at
    most one request of a partition on the wire, so events of one Kafka key keep their
    order (other partitions still go in parallel)."""

    ordering: Literal["none", "partition"] = "none"
