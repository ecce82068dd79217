"""The project's own errors, under one base.

- ``ConfigError`` (in ``connector.config``): the configuration cannot be used; exit 2.
- :class:`DataError`: a record that cannot be delivered as data; it carries the
  :class:`Stage` where it failed (a dead letter's ``event-sink.stage`` header).
- :class:`InfrastructureError`: something outside the data failed; ``retriable`` says
  whether waiting and trying again can help.

``connector.ops.cli.exit_code`` maps them to exit codes, in one place.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    DECODE = "decode"
    TRANSFORM = "transform"
    HTTP = "http"


class EventSinkError(Exception):
    """Base of every error the connector raises on purpose."""


class DataError(EventSinkError):
    """A record (or event) that cannot be delivered as data."""

    stage: Stage


class InfrastructureError(EventSinkError):
    """A broker, registry or endpoint failed; ``retriable`` says whether to try again."""

    retriable: bool = True
