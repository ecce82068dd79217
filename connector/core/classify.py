"""What one answer of the event import API means: the one table, pure, tested row by row.

The HTTP status decides, except for an HTTP 200, whose body ``code`` is the vendor's own
status and is read exactly like one:

=================  ==================================  =========================
HTTP status        body ``code``                       verdict (reason)
=================  ==================================  =========================
200                ``"200"``                           delivered (``ok``)
200                5xx, 429, 408, other 1xx/2xx        retry (``body_code_NNN``)
200                401, 403, 404, 3xx                  halt (``body_code_NNN``)
200                413                                 too large (``body_code_413``)
200                any other 4xx                       refused (``body_code_NNN``)
200                not three digits, or missing        retry (``body_code_unknown``)
200                body not a JSON object (HTML, …)    retry (``malformed_body``)
200                longer than the read bound          retry (``body_too_large``)
3xx                (not read; never followed)          halt (``http_3NN``)
401, 403, 404      (not read)                          halt (``http_NNN``)
413                (not read)                          too large (``http_413``)
408, 429, 5xx      (not read)                          retry (``http_NNN``)
other 4xx          (not read)                          refused (``http_NNN``)
1xx, other 2xx     (not read)                          retry (``http_NNN``)
no answer          timeout, reset, refused, TLS        retry (``timeout``, ``connection:…``)
=================  ==================================  =========================

A code we do not know is no proof that the data is bad, so it is retried, not refused.
``http.status_overrides`` (by status) and ``http.body_code_overrides`` (by body code, for
an HTTP 200) give the operator the last word. Reasons are bounded: safe as metric labels.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

import orjson


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: the same request may succeed later
    REFUSED = "refused"  # the API refused the data: bisect, dead-letter the refused events
    TOO_LARGE = "too_large"  # 413: split by size
    AUTH = "auth"  # not the data's fault: token or endpoint (401/403/404, 3xx); halt and probe


# Verdicts that config may assign to a status or a body code.
OVERRIDABLE = {"retry": Verdict.RETRY, "refuse": Verdict.REFUSED, "halt": Verdict.AUTH}

# Bounds on what an answer may put into logs and dead-letter headers.
ERROR_CODE_LIMIT = 64
MESSAGE_LIMIT = 256
_CODE_LIMIT = 16


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str  # short, bounded: safe for logs and metric labels
    status: int | None = None
    code: str | None = None  # the body's `code`, where there was one (cut to 16 characters)
    error_code: str | None = None  # cut to 64: logs and DLQ headers, never a metric label
    retry_after_s: float | None = None
    message: str | None = None  # the body's `msg`, cut to 256: DLQ headers only (may echo data)
    location: str | None = None  # a redirect's target origin (scheme://host:port), never a path


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    A date in the past means "now" (0), never a negative wait."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now_s
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def status_verdict(status: int) -> Verdict:
    """The default verdict of an HTTP status, or of an HTTP 200's three-digit body code."""
    if status in (401, 403, 404) or 300 <= status < 400:
        return Verdict.AUTH
    if status == 413:
        return Verdict.TOO_LARGE
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    if 400 <= status < 500:
        return Verdict.REFUSED
    # 1xx and 2xx other than 200 (the vendor names 201): not the contract's success.
    return Verdict.RETRY


def three_digit(code: object) -> int | None:
    """The code as a number when it is exactly three digits ("500", or the JSON number 500)."""
    if type(code) is int:
        return code if 100 <= code <= 999 else None
    if type(code) is str and len(code) == 3 and code.isascii() and code.isdigit():
        return int(code)
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL: what may be logged of a redirect target (its path
    and query may hold secrets)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "(unparsable)"
    if not parts.scheme or not parts.hostname:
        return "(relative)"
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port if port is not None else _DEFAULT_PORTS.get(scheme, 0)}"


def _body_fields(body: bytes) -> tuple[bool, object, str | None, str | None]:
    """(is a JSON object, raw code, errorCode, msg) of an answer's body."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None, None, None
    if not isinstance(parsed, dict):
        return False, None, None, None
    raw_error, raw_msg = parsed.get("errorCode"), parsed.get("msg")
    error_code = str(raw_error)[:ERROR_CODE_LIMIT] if raw_error is not None else None
    message = str(raw_msg)[:MESSAGE_LIMIT] if raw_msg is not None else None
    return True, parsed.get("code"), error_code, message


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    now_s: float,
    overrides: Mapping[int, Verdict] | None = None,
    body_overrides: Mapping[str, Verdict] | None = None,
) -> Outcome:
    """Decide what one HTTP answer means (see the module's table).

    ``body`` is None when the body was longer than the read bound (it was not read whole).
    ``now_s`` is the wall clock, for a Retry-After given as a date.
    """
    retry_after = parse_retry_after(headers.get("Retry-After"), now_s)
    is_object, raw_code, error_code, message = (
        _body_fields(body) if body is not None else (False, None, None, None)
    )
    code = None if raw_code is None else str(raw_code)[:_CODE_LIMIT]
    if status != 200:
        location = None
        if 300 <= status < 400:
            target = headers.get("Location")
            location = origin(target) if target is not None else "(none)"
        verdict = overrides[status] if overrides and status in overrides else None
        return Outcome(
            verdict or status_verdict(status), f"http_{status}", status, code, error_code,
            retry_after, message, location,
        )  # fmt: skip
    if body is None:
        return Outcome(Verdict.RETRY, "body_too_large", status, retry_after_s=retry_after)
    if not is_object:
        return Outcome(Verdict.RETRY, "malformed_body", status, retry_after_s=retry_after)
    number = three_digit(raw_code)
    if body_overrides and code is not None and code in body_overrides:
        reason = f"body_code_{number}" if number is not None else "body_code_unknown"
        return Outcome(body_overrides[code], reason, status, code, error_code, retry_after, message)
    if number is None:
        return Outcome(
            Verdict.RETRY, "body_code_unknown", status, code, error_code, retry_after, message
        )
    if number == 200:
        return Outcome(Verdict.DELIVERED, "ok", status, code, error_code)
    verdict = status_verdict(number)
    return Outcome(verdict, f"body_code_{number}", status, code, error_code, retry_after, message)
