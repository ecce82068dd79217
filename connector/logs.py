"""Log set-up: one line per message, structured fields appended as key=value.

Callers pass only bounded, non-personal fields (topic, partition, offsets, batch size,
status, attempt); never the token, an event's field values or a request body.
"""

from __future__ import annotations

import logging
import sys

# The structured fields the connector attaches with ``extra=``, in print order.
FIELDS = (
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
)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{name}={getattr(record, name)}"
            for name in FIELDS
            if getattr(record, name, None) is not None
        ]
        return f"{line} {' '.join(extras)}" if extras else line


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every access at INFO; the sandbox would print one line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
