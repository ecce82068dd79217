"""Log set-up: JSON lines (default) or plain lines, through one redaction point.

Callers attach only bounded, non-personal fields with ``extra=`` (topic, partition,
offsets, batch size, status, attempt, duration), and only those listed in FIELDS are
printed. Every finished line then passes ``Redactor.scrub``, which replaces each
registered secret (the API token, Kafka passwords) wherever it appears, tracebacks and
third-party messages included. Nothing logs an event's field values or a request body.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["json", "plain"]

# The structured fields the connector attaches with ``extra=``, in print order.
FIELDS = (
    "worker",  # the worker's index under `workers: N`
    "topic",
    "partition",
    "offset",
    "batch_id",
    "batch_size",
    "status",
    "reason",
    "body_code",
    "error_code",
    "attempt",
    "duration_s",
)
REDACTED = "***"


class Redactor:
    """Knows the secrets; removes them from any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        # Very short values would blank out ordinary words; secrets are never that short.
        if len(secret) >= 4:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        # Longest first, so a secret containing another is replaced whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None
    }


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = json.dumps(entry, ensure_ascii=False, default=str)
        return self._redactor.scrub(line)


class _WorkerField(logging.Filter):
    def __init__(self, worker: int) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._worker
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{name}={value}" for name, value in _fields(record).items())
        return self._redactor.scrub(f"{line} {extras}" if extras else line)


def configure(level: str, fmt: LogFormat, redactor: Redactor, worker: int | None = None) -> None:
    """Route every logger (librdkafka's and aiohttp's too) through one formatter.

    ``worker``: under ``workers: N``, every line of that process carries its index.
    """
    handler = logging.StreamHandler(sys.stderr)
    if worker is not None:
        handler.addFilter(_WorkerField(worker))
    formatter = JsonFormatter(redactor) if fmt == "json" else PlainFormatter(redactor)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every access at INFO; the sandbox would print one line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
