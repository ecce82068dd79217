"""A strict stand-in of the vendor's event import API, served by aiohttp on loopback.

Tests and the demo talk to it over real HTTP. It is deliberately stricter than the vendor's
page, so that a connector that passes against it sends only what the contract allows
(see ``shared/reference/event-import-api.md``).

``POST <path>`` (default ``/v1/events/import``) is checked in this order; the first failing
check answers and nothing of the request is recorded:

1. fault injection (:class:`Faults`): a world fault (below), else a scripted or random
   fault, answers before any validation;
2. header ``X-Token`` must equal the configured token, else 401;
3. ``Content-Encoding``: none, ``identity`` or ``gzip`` (inflated once, bounded: above 64 MiB
   inflated it is 400 ``body: gzip inflates beyond the limit``; never inflated unbounded),
   anything else (``br``, ``zstd``, ``deflate``, ...) 400 ``Content-Encoding: ...``;
   ``Content-Type`` must be ``application/json`` (charset, if any, utf-8), the body UTF-8
   JSON (no ``NaN``/``Infinity``) holding an object, else 400;
4. the contract, else 400 with ``msg`` = ``<path>: <reason>``, e.g.
   ``data[3].identities[0].isWeChatEcosystem: required when mpid is sent``:

   - top level: exactly ``publicParams`` (object, required) and ``data`` (array of 1..500
     events, required);
   - ``publicParams``: ``matchingType`` int 1 or 2; ``isMatching`` int 1 or 2, or a bool;
     both optional;
   - event: ``identities`` (non-empty array, required), ``eventKey`` (non-empty string,
     required), ``time`` (int epoch milliseconds in 0..2**63-1, optional), ``uuid``
     (non-empty string, optional), ``intid`` (string, optional), ``eventargs`` (object whose
     values are string, number, bool or null, optional);
   - identity: ``identityValue`` and ``identityType`` (strings, required), ``platform`` and
     ``mpid`` (strings, optional), ``isWeChatEcosystem`` (bool, optional but required when
     ``mpid`` is sent);
   - JSON ``true``/``false`` never count as integers; an unknown key at any level (including
     the deprecated identity ``appid``) is rejected; an explicit ``null`` for an optional field
     is rejected (absent fields must be omitted), except as an ``eventargs`` value.

5. refusal (:attr:`Faults.refuse_event_keys`): a valid request holding an event whose
   ``eventKey`` is listed is refused whole, like the real API refusing data: 400 with ``msg``
   ``data[i].eventKey: refused by the sandbox`` (``i`` the first such event), or HTTP 200 with
   body code ``"400"`` when :attr:`Faults.refuse_with_200` is set;
6. server error (:attr:`Faults.fail_uuids`): a valid request holding an event whose ``uuid``
   is listed is answered 500 ``{"code":"500","errorCode":"SYSTEM_ERROR","msg":"system busy"}``
   and nothing of it is recorded (stat ``failed_uuid_requests``).

A request that passes is answered 200 ``{"code":"200","errorCode":"SUCCESS","msg":"ok"}`` and
its events are recorded. Every answer of the import path uses the vendor body shape
``{"code": str, "errorCode": str, "msg": str}``; a scripted step or a random fault may add a
``Retry-After`` header (sent verbatim).

``latency_ms`` delays the answer *after* the request was decided and recorded: a client that
times out or disconnects during the delay has in fact been accepted, and sends the batch again
(the realistic source of at-least-once duplicates). Such a client leaves no error in the log.
A very large latency (e.g. 600000, set at runtime through ``POST /faults``) is a hung endpoint.

Random faults answer body code ``failure_code`` when it is set (default: the status), so
``failure_status=200, failure_code="500"`` is HTTP 200 with body
``{"code":"500","errorCode":"SYSTEM_ERROR","msg":"system busy"}`` (a 5xx code reads like a
busy vendor; a non-numeric code such as ``"OOPS"`` has errorCode ``INJECTED_FAULT``). A
``Retry-After`` HTTP-date (even one in the past) is set with a script step's ``retry_after``
in the JSON form of ``POST /faults``.

World faults (:mod:`connector.sandbox_world`, at most one set at a time) answer *every*
request while set, before the script (which they do not consume) and random faults;
nothing is recorded, each counts in ``faults`` and is logged (status, code or null, events):

- ``redirect``: ``{"status": 301|302|303|307|308, "location": "<absolute URL>"}`` (or null):
  that status, a ``Location`` header and an HTML "Moved" page (log code null);
- ``html_200``: HTTP 200 ``text/html``, a gateway's ``502 Bad Gateway`` page (code null);
- ``huge_body_mib``: HTTP 200 JSON of that many MiB of spaces and then
  ``{"code":"503","errorCode":"SERVICE_UNAVAILABLE","msg":"busy"}``, streamed with a
  ``Content-Length`` (code "503");
- ``gzip_bomb_mib``: HTTP 200 JSON, ``Content-Encoding: gzip``, about that many KiB that
  inflate to that many MiB of spaces and then ``{"code":"200",...}`` (code "200": a client
  that inflates it whole reads "delivered"; compressed once per size, cached);
- ``drop_connection``: status 200, ``Content-Length: 60``, 10 bytes of body, then the
  connection is closed (code null).

A client that goes away during one of them leaves no error in the log. ``POST /faults {}``
switches every fault off.

Control endpoints (no token; loopback use only): ``GET /stats``, ``GET /events``,
``GET /uuids`` (accepted uuids, unique, sorted; kept even when events are not),
``GET /requests[?since=EPOCH_S]`` (the last 100,000 requests of the import path:
``{"t": arrival time.time(), "status", "code", "events", "retry_after"}``), ``POST /reset``
(clears stats, events, uuids and the request log, keeps the fault settings), ``GET /faults``
and ``POST /faults`` (replaces the fault settings; the script restarts from its first entry).

``GET /stats`` also counts ``gzip_requests`` (import requests with a gzip body, any answer).

``python -m connector.sandbox`` takes the flags of ``event-sink sandbox`` plus
``--no-keep-events`` (count and keep uuids only, for long runs) and ``--tls-cert FILE
--tls-key FILE [--tls-client-ca FILE]`` (HTTPS, optionally requiring client certificates);
then it says ``listening on https://...``. In process: ``SandboxServer(...,
ssl_context=...)``. Fault flags: ``--failure-code CODE``, ``--fail-uuids U1,U2``, and one of
``--redirect STATUS:URL``, ``--html-200``, ``--huge-body-mib N``, ``--gzip-bomb-mib N``,
``--drop-connection``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from connector import sandbox_world as world
from connector.runtime import run_async

__all__ = [
    "DEFAULT_PATH",
    "MAX_EVENTS_PER_REQUEST",
    "REQUEST_LOG_SIZE",
    "STATE_KEY",
    "ContractError",
    "Faults",
    "SandboxServer",
    "SandboxState",
    "SandboxStats",
    "ScriptStep",
    "add_arguments",
    "build_app",
    "faults_from_args",
    "main",
    "parse_script",
    "serve",
    "validate_request",
]

log = logging.getLogger("connector.sandbox")

DEFAULT_PATH = "/v1/events/import"
MAX_EVENTS_PER_REQUEST = 500
REQUEST_LOG_SIZE = 100_000  # entries kept by GET /requests (the newest)
# The vendor names no body limit; aiohttp's 1 MiB default could reject a legal 500-event batch
# with large eventargs, so the sandbox must not be the one to impose a limit.
_CLIENT_MAX_SIZE = 64 * 1024 * 1024
_MAX_LONG = 2**63 - 1  # `time` is a Java long on the vendor's side

_TOP_KEYS = frozenset({"publicParams", "data"})
_PUBLIC_KEYS = frozenset({"matchingType", "isMatching"})
_EVENT_KEYS = frozenset({"identities", "time", "uuid", "eventKey", "intid", "eventargs"})
_IDENTITY_KEYS = frozenset(
    {"identityValue", "identityType", "platform", "mpid", "isWeChatEcosystem"}
)
# Exact types, not isinstance: json.loads only builds these, and `type(x) is int` keeps bool out.
_EVENTARG_TYPES = frozenset({str, int, float, bool, type(None)})
_MISSING: Any = object()

Event = dict[str, Any]


# --------------------------------------------------------------------------- validation


class ContractError(ValueError):
    """A request that breaks the contract; ``str()`` is the 400 answer's ``msg``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _kind(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages (never the value itself)."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "bool"
    if type(value) is int:
        return "integer"
    if type(value) is float:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return type(value).__name__


def _unknown_key(obj: dict[str, Any], allowed: frozenset[str], path: str) -> ContractError:
    key = min(obj.keys() - allowed)
    return ContractError(_join(path, key), "unknown field")


def _join(path: str, key: str) -> str:
    # Keys of eventargs are free text; quote the ones that would make the path ambiguous.
    name = key if key.isidentifier() else json.dumps(key, ensure_ascii=False)
    return f"{path}.{name}" if path else name


def _absent_optional(obj: dict[str, Any], key: str, path: str) -> bool:
    """True when the optional ``key`` is absent; an explicit null is an error."""
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        return True
    if value is None:
        raise ContractError(_join(path, key), "null is not allowed; omit the field instead")
    return False


def _required(obj: dict[str, Any], key: str, path: str, expected: str) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise ContractError(_join(path, key), "required")
    if value is None:
        raise ContractError(_join(path, key), f"required, must be {expected}, got null")
    return value


def _optional_str(obj: dict[str, Any], key: str, path: str, *, non_empty: bool = False) -> None:
    if _absent_optional(obj, key, path):
        return
    value = obj[key]
    if type(value) is not str:
        raise ContractError(_join(path, key), f"must be a string, got {_kind(value)}")
    if non_empty and not value:
        raise ContractError(_join(path, key), "must be a non-empty string")


def _check_public_params(params: object) -> None:
    path = "publicParams"
    if type(params) is not dict:
        raise ContractError(path, f"must be an object, got {_kind(params)}")
    if not params.keys() <= _PUBLIC_KEYS:
        raise _unknown_key(params, _PUBLIC_KEYS, path)
    if not _absent_optional(params, "matchingType", path):
        value = params["matchingType"]
        if type(value) is not int or value not in (1, 2):
            raise ContractError(
                f"{path}.matchingType", f"must be the integer 1 or 2, got {_kind(value)}"
            )
    if not _absent_optional(params, "isMatching", path):
        value = params["isMatching"]
        if type(value) is not bool and (type(value) is not int or value not in (1, 2)):
            raise ContractError(
                f"{path}.isMatching", f"must be the integer 1 or 2 or a bool, got {_kind(value)}"
            )


def _check_identity(identity: object, path: str) -> None:
    if type(identity) is not dict:
        raise ContractError(path, f"must be an object, got {_kind(identity)}")
    if not identity.keys() <= _IDENTITY_KEYS:
        raise _unknown_key(identity, _IDENTITY_KEYS, path)
    for key in ("identityValue", "identityType"):
        value = _required(identity, key, path, "a string")
        if type(value) is not str:
            raise ContractError(f"{path}.{key}", f"must be a string, got {_kind(value)}")
    _optional_str(identity, "platform", path)
    _optional_str(identity, "mpid", path)
    if _absent_optional(identity, "isWeChatEcosystem", path):
        if "mpid" in identity:
            raise ContractError(f"{path}.isWeChatEcosystem", "required when mpid is sent")
    elif type(identity["isWeChatEcosystem"]) is not bool:
        kind = _kind(identity["isWeChatEcosystem"])
        raise ContractError(f"{path}.isWeChatEcosystem", f"must be a bool, got {kind}")


def _check_event(event: object, path: str) -> None:
    if type(event) is not dict:
        raise ContractError(path, f"must be an object, got {_kind(event)}")
    if not event.keys() <= _EVENT_KEYS:
        raise _unknown_key(event, _EVENT_KEYS, path)

    identities = _required(event, "identities", path, "a non-empty array")
    if type(identities) is not list:
        raise ContractError(f"{path}.identities", f"must be an array, got {_kind(identities)}")
    if not identities:
        raise ContractError(f"{path}.identities", "must hold at least one identity")
    for j, identity in enumerate(identities):
        _check_identity(identity, f"{path}.identities[{j}]")

    event_key = _required(event, "eventKey", path, "a non-empty string")
    if type(event_key) is not str:
        raise ContractError(f"{path}.eventKey", f"must be a string, got {_kind(event_key)}")
    if not event_key:
        raise ContractError(f"{path}.eventKey", "must be a non-empty string")

    if not _absent_optional(event, "time", path):
        value = event["time"]
        if type(value) is not int:
            raise ContractError(
                f"{path}.time", f"must be an integer (epoch milliseconds), got {_kind(value)}"
            )
        if not 0 <= value <= _MAX_LONG:
            raise ContractError(f"{path}.time", "must be epoch milliseconds in 0..2**63-1")

    _optional_str(event, "uuid", path, non_empty=True)
    _optional_str(event, "intid", path)

    if not _absent_optional(event, "eventargs", path):
        args = event["eventargs"]
        if type(args) is not dict:
            raise ContractError(f"{path}.eventargs", f"must be an object, got {_kind(args)}")
        for key, value in args.items():
            if type(value) not in _EVENTARG_TYPES:
                raise ContractError(
                    _join(f"{path}.eventargs", key),
                    f"must be a string, number, bool or null, got {_kind(value)}",
                )


def validate_request(body: object) -> list[Event]:
    """Check a parsed request body against the contract; return its events.

    Raises :class:`ContractError` naming the first offending path.
    """
    if type(body) is not dict:
        raise ContractError("body", f"must be a JSON object, got {_kind(body)}")
    if not body.keys() <= _TOP_KEYS:
        raise _unknown_key(body, _TOP_KEYS, "")
    _check_public_params(_required(body, "publicParams", "", "an object"))
    data = _required(body, "data", "", "an array")
    if type(data) is not list:
        raise ContractError("data", f"must be an array, got {_kind(data)}")
    if not data:
        raise ContractError("data", f"must hold 1..{MAX_EVENTS_PER_REQUEST} events, got 0")
    if len(data) > MAX_EVENTS_PER_REQUEST:
        raise ContractError(
            "data",
            f"at most {MAX_EVENTS_PER_REQUEST} events per request, got {len(data)}",
        )
    for i, event in enumerate(data):
        _check_event(event, f"data[{i}]")
    return data


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity by default; they are not JSON.
    raise ValueError(f"{name} is not valid JSON")


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class ScriptStep:
    """One scripted answer: HTTP ``status``, with body ``code`` (default: the status).

    ``ScriptStep(200)`` means "go on to normal handling"; ``ScriptStep(200, "500")`` answers
    HTTP 200 with body code "500", which the contract says is *not* a delivery.
    ``retry_after``, when set, is sent verbatim as the ``Retry-After`` header of this answer
    (whatever the answer is, normal handling included), e.g. ``ScriptStep(429, retry_after="2")``.
    """

    status: int
    code: str | None = None
    retry_after: str | None = None

    def __post_init__(self) -> None:
        _check_status(self.status, "script status")
        if self.code is not None and (type(self.code) is not str or not self.code):
            raise ValueError("script code must be a non-empty string")
        _check_retry_after(self.retry_after, "script retry_after")

    @property
    def passes(self) -> bool:
        """True when this step lets the request through to normal handling."""
        return self.status == 200 and self.code in (None, "200")

    def to_json(self) -> int | dict[str, Any]:
        if self.code is None and self.retry_after is None:
            return self.status
        out: dict[str, Any] = {"status": self.status}
        if self.code is not None:
            out["code"] = self.code
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


def _check_status(status: object, what: str) -> None:
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"{what} must be an HTTP status 100..599, got {status!r}")


def _check_retry_after(value: object, what: str) -> None:
    # Sent verbatim, so junk values (to test the client) are allowed; only what cannot be a
    # header value at all is refused.
    if value is None:
        return
    if type(value) is not str or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} must not hold control characters")


def _as_step(item: int | ScriptStep) -> ScriptStep:
    return item if isinstance(item, ScriptStep) else ScriptStep(item)


@dataclass(frozen=True)
class Faults:
    """Fault settings of the import path.

    Per request, the next ``script`` entry (an HTTP status, or a :class:`ScriptStep` for a body
    code that differs from the status) decides: 200 goes on to normal handling, anything else is
    answered as an injected fault. Once the script is exhausted, a fault with
    ``failure_status`` is injected with probability ``failure_rate`` (drawn from the state's
    ``random.Random``, only when the rate is above 0). ``latency_ms`` delays every answer of
    the import path, faults and rejections included. Frozen so that changing faults always goes
    through :attr:`SandboxState.faults`, which restarts the script.

    ``retry_after`` is the ``Retry-After`` header of random faults (scripted steps carry their
    own). ``refuse_event_keys``: a request that passed validation but holds an event whose
    ``eventKey`` is listed is refused whole (nothing recorded): 400, or HTTP 200 with body
    code "400" when ``refuse_with_200`` is set (the API refusing data inside a 200).
    ``failure_code`` is the body code of random faults (default: the status; a 5xx code
    reads ``SYSTEM_ERROR``/"system busy"). ``fail_uuids``: a valid request holding an event
    with a listed ``uuid`` is answered 500 (nothing recorded).

    World faults (:mod:`connector.sandbox_world`; at most one at a time): ``redirect``,
    ``html_200``, ``huge_body_mib``, ``gzip_bomb_mib``, ``drop_connection`` answer every
    request while set, before the script and random faults (the script is not consumed).
    """

    failure_rate: float = 0.0
    failure_status: int = 503
    latency_ms: float = 0.0
    script: Sequence[int | ScriptStep] = ()
    retry_after: str | None = None
    refuse_event_keys: Sequence[str] = ()
    refuse_with_200: bool = False
    failure_code: str | None = None
    redirect: world.Redirect | None = None
    html_200: bool = False
    huge_body_mib: int = 0
    gzip_bomb_mib: int = 0
    drop_connection: bool = False
    fail_uuids: Sequence[str] = ()

    def __post_init__(self) -> None:
        rate = self.failure_rate
        if type(rate) not in (int, float) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"failure_rate must be a number in 0..1, got {rate!r}")
        _check_status(self.failure_status, "failure_status")
        latency = self.latency_ms
        if type(latency) not in (int, float) or not 0.0 <= latency < float("inf"):
            raise ValueError(f"latency_ms must be a number >= 0, got {latency!r}")
        # Normalise (JSON may give ints; a caller may pass a list) so that equal settings
        # compare and serialise equal; ScriptStep validates each step itself.
        object.__setattr__(self, "failure_rate", float(rate))
        object.__setattr__(self, "latency_ms", float(latency))
        object.__setattr__(self, "script", tuple(_as_step(item) for item in self.script))
        _check_retry_after(self.retry_after, "retry_after")
        keys = self.refuse_event_keys
        # A bare string would be taken letter by letter.
        if isinstance(keys, str | bytes) or not all(type(k) is str and k for k in keys):
            raise ValueError(f"refuse_event_keys must be a list of non-empty strings, got {keys!r}")
        object.__setattr__(self, "refuse_event_keys", tuple(keys))
        if type(self.refuse_with_200) is not bool:
            raise ValueError(f"refuse_with_200 must be a bool, got {self.refuse_with_200!r}")
        self._check_world_settings()

    def _check_world_settings(self) -> None:
        code = self.failure_code
        if code is not None and (type(code) is not str or not code):
            raise ValueError(f"failure_code must be null or a non-empty string, got {code!r}")
        if self.redirect is not None and not isinstance(self.redirect, world.Redirect):
            raise ValueError(f"redirect must be a Redirect, got {self.redirect!r}")
        for name in ("html_200", "drop_connection"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        world.HugeBody(self.huge_body_mib)  # validates the size
        world.GzipBomb(self.gzip_bomb_mib)
        uuids = self.fail_uuids
        if isinstance(uuids, str | bytes) or not all(type(u) is str and u for u in uuids):
            raise ValueError(f"fail_uuids must be a list of non-empty strings, got {uuids!r}")
        object.__setattr__(self, "fail_uuids", tuple(uuids))
        active = [name for name in _WORLD_KEYS if getattr(self, name)]
        if len(active) > 1:
            raise ValueError(f"set at most one of {', '.join(_WORLD_KEYS)}, got {active}")

    @property
    def world_fault(self) -> world.WorldFault | None:
        """The odd answer that replaces every answer while it is set, if any."""
        if self.redirect is not None:
            return self.redirect
        if self.html_200:
            return world.Html200()
        if self.huge_body_mib:
            return world.HugeBody(self.huge_body_mib)
        if self.gzip_bomb_mib:
            return world.GzipBomb(self.gzip_bomb_mib)
        if self.drop_connection:
            return world.DropConnection()
        return None

    @property
    def steps(self) -> tuple[ScriptStep, ...]:
        return tuple(_as_step(item) for item in self.script)

    def to_json(self) -> dict[str, Any]:
        return {
            "failure_rate": self.failure_rate,
            "failure_status": self.failure_status,
            "latency_ms": self.latency_ms,
            "script": [step.to_json() for step in self.steps],
            "retry_after": self.retry_after,
            "refuse_event_keys": list(self.refuse_event_keys),
            "refuse_with_200": self.refuse_with_200,
            "failure_code": self.failure_code,
            "redirect": None if self.redirect is None else self.redirect.to_json(),
            "html_200": self.html_200,
            "huge_body_mib": self.huge_body_mib,
            "gzip_bomb_mib": self.gzip_bomb_mib,
            "drop_connection": self.drop_connection,
            "fail_uuids": list(self.fail_uuids),
        }

    @classmethod
    def from_json(cls, obj: object) -> Faults:
        """Build from the ``POST /faults`` body; absent keys take their defaults."""
        if type(obj) is not dict:
            raise ValueError("faults must be a JSON object")
        unknown = obj.keys() - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        kwargs: dict[str, Any] = {k: v for k, v in obj.items() if k != "script"}
        script = obj.get("script", [])
        if type(script) is not list:
            raise ValueError("script must be an array")
        kwargs["script"] = [_step_from_json(item) for item in script]
        for key in ("refuse_event_keys", "fail_uuids"):
            if type(kwargs.get(key, [])) is not list:
                raise ValueError(f"{key} must be an array of strings")
        if kwargs.get("redirect") is not None:
            kwargs["redirect"] = world.Redirect.from_json(kwargs["redirect"])
        return cls(**kwargs)


_FAULT_KEYS = frozenset(
    {
        "failure_rate",
        "failure_status",
        "latency_ms",
        "script",
        "retry_after",
        "refuse_event_keys",
        "refuse_with_200",
        "failure_code",
        "redirect",
        "html_200",
        "huge_body_mib",
        "gzip_bomb_mib",
        "drop_connection",
        "fail_uuids",
    }
)
_WORLD_KEYS = ("redirect", "html_200", "huge_body_mib", "gzip_bomb_mib", "drop_connection")
_STEP_KEYS = frozenset({"status", "code", "retry_after"})


def _step_from_json(item: object) -> ScriptStep:
    if type(item) is int:
        return ScriptStep(item)
    if type(item) is dict and "status" in item and item.keys() <= _STEP_KEYS:
        return ScriptStep(item["status"], item.get("code"), item.get("retry_after"))
    raise ValueError(
        'script entries are statuses or {"status": int, "code": str, "retry_after": str}, '
        f"got {item!r}"
    )


def parse_script(text: str) -> list[ScriptStep]:
    """Parse the CLI form ``503,429@2,200:500,200`` (comma-separated
    ``STATUS[:BODY_CODE][@RETRY_AFTER]``; a Retry-After value here cannot hold a comma, so
    HTTP-dates need the JSON form of ``POST /faults``)."""
    steps: list[ScriptStep] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        head, at, retry_after = part.partition("@")
        status, sep, code = head.partition(":")
        try:
            steps.append(
                ScriptStep(int(status), code if sep else None, retry_after if at else None)
            )
        except ValueError as exc:
            raise ValueError(f"bad script entry {part!r}: {exc}") from None
    return steps


# --------------------------------------------------------------------------- state


@dataclass
class SandboxStats:
    """Counters of the import path; ``asdict()`` of it is the ``GET /stats`` answer."""

    requests: int = 0  # every POST to the import path
    accepted_requests: int = 0
    events: int = 0  # accepted events, duplicates included
    unique_uuids: int = 0
    duplicates: int = 0  # accepted events whose uuid had been accepted before (any batch)
    rejects: int = 0  # 400 answers
    unauthorized: int = 0  # 401 answers
    faults: int = 0  # injected fault answers
    refused: int = 0  # valid requests refused for Faults.refuse_event_keys (400 or 200/"400")
    max_batch: int = 0  # largest accepted batch
    gzip_requests: int = 0  # requests with a gzip body (Content-Encoding: gzip), any answer
    failed_uuid_requests: int = 0  # valid requests answered 500 for Faults.fail_uuids


@dataclass
class _Answer:
    status: int
    body: dict[str, str]
    retry_after: str | None = None
    events: int = 0  # entries in the body's `data`, for the request log
    odd: world.WorldFault | None = None  # an odd answer, written by sandbox_world


def _vendor_body(code: str, msg: str) -> dict[str, str]:
    try:
        error_code = "SUCCESS" if code == "200" else HTTPStatus(int(code)).name
    except ValueError:
        error_code = "INJECTED_FAULT"
    if code == "400":
        error_code = "INVALID_PARAMS"  # the vendor's name for a 400
    return {"code": code, "errorCode": error_code, "msg": msg}


_OK = _vendor_body("200", "ok")


def _failure_body(code: str) -> dict[str, str]:
    """The body of a random fault whose body code is set (``Faults.failure_code``)."""
    if len(code) == 3 and code.startswith("5") and code.isdigit():
        return {**world.SYSTEM_BUSY, "code": code}
    return _vendor_body(code, "injected fault")


class SandboxState:
    """The one owner of the sandbox's stats, accepted events and fault settings."""

    def __init__(
        self,
        faults: Faults | None = None,
        rng: random.Random | None = None,
        *,
        keep_events: bool = True,
        request_log_size: int = REQUEST_LOG_SIZE,
    ) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.keep_events = keep_events
        self.stats = SandboxStats()
        self._events: list[Event] = []
        self._uuids: set[str] = set()
        self._requests: deque[dict[str, Any]] = deque(maxlen=request_log_size)
        self._faults = Faults()
        self._script: list[ScriptStep] = []
        self._script_pos = 0
        self.faults = faults if faults is not None else Faults()

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """Replace the fault settings; the script starts again from its first entry."""
        self._faults = faults
        self._script = list(faults.steps)
        self._script_pos = 0

    @property
    def script_remaining(self) -> list[ScriptStep]:
        return self._script[self._script_pos :]

    @property
    def events(self) -> list[Event]:
        """Accepted events in arrival order (always empty when ``keep_events`` is False)."""
        return self._events

    @property
    def seen_uuids(self) -> frozenset[str]:
        return frozenset(self._uuids)

    def requests_log(self, since: float | None = None) -> list[dict[str, Any]]:
        """The newest :data:`REQUEST_LOG_SIZE` requests of the import path, oldest first;
        ``since`` keeps those that arrived at or after that ``time.time()``."""
        if since is None:
            return [dict(entry) for entry in self._requests]
        return [dict(entry) for entry in self._requests if entry["t"] >= since]

    def stats_json(self) -> dict[str, int]:
        return asdict(self.stats)

    def reset(self) -> None:
        """Clear stats and accepted events; fault settings and script position are kept."""
        self.stats = SandboxStats()
        self._events = []
        self._uuids = set()
        self._requests.clear()

    def _next_fault(self) -> tuple[_Answer | None, str | None]:
        """Consume this request's fault decision: (the fault's answer, or None for normal
        handling; the Retry-After a passing scripted step puts on the normal answer)."""
        odd = self._faults.world_fault
        if odd is not None:
            code = odd.log_code
            return _Answer(odd.status, {} if code is None else {"code": code}, odd=odd), None
        if self._script_pos < len(self._script):
            step = self._script[self._script_pos]
            self._script_pos += 1
            if step.passes:
                return None, step.retry_after
            body = _vendor_body(step.code or str(step.status), "injected fault")
            return _Answer(step.status, body, step.retry_after), None
        faults = self._faults
        # Draw only when a rate is set, so an idle rng sequence stays reproducible.
        if faults.failure_rate > 0.0 and self.rng.random() < faults.failure_rate:
            status = faults.failure_status
            if faults.failure_code is None:
                body = _vendor_body(str(status), "injected fault")
            else:
                body = _failure_body(faults.failure_code)
            return _Answer(status, body, faults.retry_after), None
        return None, None

    def _log_request(self, arrived: float, answer: _Answer) -> None:
        self._requests.append(
            {
                "t": arrived,
                "status": answer.status,
                "code": answer.body.get("code"),
                "events": answer.events,
                "retry_after": answer.retry_after,
            }
        )

    def record(self, events: list[Event]) -> None:
        stats = self.stats
        stats.accepted_requests += 1
        stats.events += len(events)
        stats.max_batch = max(stats.max_batch, len(events))
        seen = self._uuids
        duplicates = 0
        for event in events:
            uuid = event.get("uuid")
            if uuid is None:
                continue
            if uuid in seen:
                duplicates += 1
            else:
                seen.add(uuid)
        stats.duplicates += duplicates
        stats.unique_uuids = len(seen)
        if self.keep_events:
            self._events.extend(events)

    def _handle(
        self,
        token_ok: bool,
        content_type: str,
        charset: str | None,
        body: bytes,
        arrived: float | None = None,
        *,
        gzipped: bool = False,
        body_error: world.BodyError | None = None,
    ) -> _Answer:
        """Decide the import path's answer and log it; synchronous so no other request
        interleaves. ``arrived`` is the request's ``time.time()`` (default: now). ``body``
        is the decoded body; ``gzipped`` says it came gzip-encoded, ``body_error`` that it
        could not be decoded (a 400 once the token is checked)."""
        arrived = time.time() if arrived is None else arrived
        answer = self._decide(token_ok, content_type, charset, body, gzipped, body_error)
        self._log_request(arrived, answer)
        return answer

    def _decide(
        self,
        token_ok: bool,
        content_type: str,
        charset: str | None,
        body: bytes,
        gzipped: bool = False,
        body_error: world.BodyError | None = None,
    ) -> _Answer:
        self.stats.requests += 1
        if gzipped:
            self.stats.gzip_requests += 1
        fault, retry_after = self._next_fault()
        if fault is not None:
            self.stats.faults += 1
            fault.events = _count_events(body)
            return fault
        answer = self._validate_and_record(token_ok, content_type, charset, body, body_error)
        answer.retry_after = retry_after
        return answer

    def _validate_and_record(
        self,
        token_ok: bool,
        content_type: str,
        charset: str | None,
        body: bytes,
        body_error: world.BodyError | None = None,
    ) -> _Answer:
        if not token_ok:
            self.stats.unauthorized += 1
            answer = _Answer(401, _vendor_body("401", "missing or invalid X-Token"))
            answer.events = _count_events(body)
            return answer
        try:
            if body_error is not None:
                raise ContractError(body_error.path, body_error.reason)
            if content_type != "application/json":
                raise ContractError("Content-Type", "must be application/json")
            if charset is not None and charset.lower() != "utf-8":
                raise ContractError("Content-Type", "charset must be utf-8 when given")
            try:
                parsed = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
            except UnicodeDecodeError:
                raise ContractError("body", "is not UTF-8") from None
            except ValueError:
                raise ContractError("body", "is not valid JSON") from None
            events = validate_request(parsed)
        except ContractError as exc:
            self.stats.rejects += 1
            log.debug("rejected: %s", exc)  # paths and type names only, never values
            return _Answer(400, _vendor_body("400", str(exc)), events=_count_events(body))
        refused = self._refused_index(events)
        if refused is not None:
            self.stats.refused += 1
            refusal = _vendor_body("400", f"data[{refused}].eventKey: refused by the sandbox")
            status = 200 if self._faults.refuse_with_200 else 400
            return _Answer(status, refusal, events=len(events))
        if self._fails_uuid(events):
            self.stats.failed_uuid_requests += 1
            return _Answer(500, dict(world.SYSTEM_BUSY), events=len(events))
        self.record(events)
        return _Answer(200, _OK, events=len(events))

    def _fails_uuid(self, events: list[Event]) -> bool:
        if not self._faults.fail_uuids:
            return False
        uuids = frozenset(self._faults.fail_uuids)
        return any(event.get("uuid") in uuids for event in events)

    def _refused_index(self, events: list[Event]) -> int | None:
        keys = self._faults.refuse_event_keys
        if not keys:
            return None
        for i, event in enumerate(events):
            if event["eventKey"] in keys:
                return i
        return None


def _count_events(body: bytes) -> int:
    """Entries of ``data`` in a body that was not validated (for the request log only)."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 0
    if isinstance(parsed, dict) and isinstance(parsed.get("data"), list):
        return len(parsed["data"])
    return 0


# --------------------------------------------------------------------------- app

STATE_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)


def build_app(
    token: str,
    *,
    path: str = DEFAULT_PATH,
    faults: Faults | None = None,
    rng: random.Random | None = None,
    keep_events: bool = True,
) -> web.Application:
    """The sandbox app; its :class:`SandboxState` is ``app[STATE_KEY]``."""
    state = SandboxState(faults, rng, keep_events=keep_events)
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    app[STATE_KEY] = state

    async def import_events(request: web.Request) -> web.StreamResponse:
        arrived = time.time()
        body, gzipped, body_error = await world.read_body(request, _CLIENT_MAX_SIZE)
        latency_ms = state.faults.latency_ms  # settings as of arrival
        token_ok = request.headers.get("X-Token") == token
        answer = state._handle(
            token_ok,
            request.content_type,
            request.charset,
            body,
            arrived,
            gzipped=gzipped,
            body_error=body_error,
        )
        # After recording: a client that times out here has in fact been accepted, which is
        # exactly the at-least-once duplicate case worth exercising. aiohttp does not cancel
        # a handler whose client went away; the answer then goes nowhere, silently.
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)
        if answer.odd is not None:
            return await answer.odd.write(request)
        headers = {"Retry-After": answer.retry_after} if answer.retry_after is not None else None
        return web.json_response(answer.body, status=answer.status, headers=headers)

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats_json())

    async def get_events(request: web.Request) -> web.Response:
        if not state.keep_events:
            return web.json_response(
                {"error": "events are not kept (keep_events=False)"}, status=409
            )
        return web.json_response(state.events)

    async def get_uuids(request: web.Request) -> web.Response:
        return web.json_response(sorted(state.seen_uuids))

    async def get_requests(request: web.Request) -> web.Response:
        raw = request.query.get("since")
        since: float | None = None
        if raw is not None:
            try:
                since = float(raw)
            except ValueError:
                return web.json_response({"error": "since must be a number"}, status=400)
        return web.json_response(state.requests_log(since))

    async def post_reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response(state.stats_json())

    def faults_json() -> dict[str, Any]:
        return {
            **state.faults.to_json(),
            "script_remaining": [step.to_json() for step in state.script_remaining],
        }

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(faults_json())

    async def post_faults(request: web.Request) -> web.Response:
        try:
            faults = Faults.from_json(json.loads(await request.read() or b"{}"))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        odd = faults.world_fault
        if isinstance(odd, world.GzipBomb):
            await odd.prepare()  # built before it is switched on, not by the first request
        state.faults = faults
        log.info("fault settings replaced: %s", state.faults.to_json())
        return web.json_response(faults_json())

    app.router.add_post(path, import_events)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/events", get_events)
    app.router.add_get("/uuids", get_uuids)
    app.router.add_get("/requests", get_requests)
    app.router.add_post("/reset", post_reset)
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", post_faults)
    return app


class SandboxServer:
    """Serves :func:`build_app` on ``host:port`` (port 0 picks a free one) for ``async with``;
    HTTPS with ``ssl_context`` (e.g. :func:`connector.sandbox_world.server_ssl_context`)."""

    def __init__(
        self,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = DEFAULT_PATH,
        faults: Faults | None = None,
        rng: random.Random | None = None,
        keep_events: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._path = path
        self._ssl_context = ssl_context
        self._app = build_app(token, path=path, faults=faults, rng=rng, keep_events=keep_events)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def state(self) -> SandboxState:
        return self._app[STATE_KEY]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("sandbox server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The full import URL, what the connector's config takes."""
        return self.base_url + self._path

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("sandbox server is already started")
        # No access log: the demo sends thousands of requests; shutdown waits briefly for
        # in-flight (possibly latency-delayed) answers instead of aiohttp's default 60 s.
        # auto_decompress off: the sandbox inflates gzip bodies itself, bounded, and
        # refuses other codings in the vendor's body shape.
        runner = web.AppRunner(
            self._app, access_log=None, shutdown_timeout=1.0, auto_decompress=False
        )
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self._host, self._requested_port, ssl_context=self._ssl_context
            )
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("sandbox event import API listening on %s", self.url)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve(
    host: str,
    port: int,
    token: str,
    faults: Faults,
    path: str = DEFAULT_PATH,
    *,
    keep_events: bool = True,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run the sandbox until cancelled (``event-sink sandbox``); HTTPS with ``ssl_context``."""
    async with SandboxServer(
        token,
        host=host,
        port=port,
        path=path,
        faults=faults,
        keep_events=keep_events,
        ssl_context=ssl_context,
    ):
        await asyncio.Event().wait()


# --------------------------------------------------------------------------- CLI


def _arg_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = convert.__name__  # argparse names the type in its error message
    return parse


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be in 0..1, got {text}")
    return value


def _status(text: str) -> int:
    value = int(text)
    _check_status(value, "status")
    return value


def _event_keys(text: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in text.split(",") if key.strip())
    if not keys:
        raise ValueError("give at least one event key")
    return keys


def _retry_after(text: str) -> str:
    _check_retry_after(text, "Retry-After")
    return text


def _latency(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"must be >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sandbox`` subcommand's flags (dests: host, port, token, path, failure_rate,
    failure_status, latency_ms, script, retry_after, refuse_event_keys, refuse_with_200,
    failure_code, fail_uuids, redirect, html_200, huge_body_mib, gzip_bomb_mib,
    drop_connection)."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--token", required=True, help="the X-Token value to accept")
    parser.add_argument("--path", default=DEFAULT_PATH, help="import path (default: %(default)s)")
    parser.add_argument(
        "--failure-rate",
        type=_arg_type(_rate),
        default=0.0,
        help="probability 0..1 of a random fault once the script is exhausted",
    )
    parser.add_argument(
        "--failure-status",
        type=_arg_type(_status),
        default=503,
        help="HTTP status of random faults (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-ms", type=_arg_type(_latency), default=0.0, help="delay before every answer"
    )
    parser.add_argument(
        "--script",
        type=_arg_type(parse_script),
        default=[],
        help="answers for the first requests, e.g. 503,429@2,200:500,200 "
        "(STATUS[:BODY_CODE][@RETRY_AFTER]; 200 = normal handling)",
    )
    parser.add_argument(
        "--retry-after",
        type=_arg_type(_retry_after),
        default=None,
        help="Retry-After header of random faults, sent verbatim (e.g. 2)",
    )
    parser.add_argument(
        "--refuse-event-keys",
        type=_arg_type(_event_keys),
        default=(),
        metavar="KEY[,KEY...]",
        help="refuse (400) every valid request holding an event with one of these eventKeys",
    )
    parser.add_argument(
        "--refuse-with-200",
        action="store_true",
        help="answer such refusals with HTTP 200 and body code 400 instead of HTTP 400",
    )
    parser.add_argument(
        "--failure-code",
        type=_arg_type(world.parse_code),
        default=None,
        help="body code of random faults (default: the status), e.g. 500 with --failure-status 200",
    )
    parser.add_argument(
        "--fail-uuids",
        type=_arg_type(_event_keys),
        default=(),
        metavar="UUID[,UUID...]",
        help="answer 500 to every valid request holding an event with one of these uuids",
    )
    odd = parser.add_mutually_exclusive_group()
    odd.add_argument(
        "--redirect",
        type=_arg_type(world.parse_redirect),
        default=None,
        metavar="STATUS:URL",
        help="answer every request with this redirect, e.g. 307:http://127.0.0.1:9000/x",
    )
    odd.add_argument(
        "--html-200", action="store_true", help="answer every request 200 with a gateway's HTML"
    )
    odd.add_argument(
        "--huge-body-mib",
        type=_arg_type(world.parse_mib),
        default=0,
        metavar="MIB",
        help="answer every request 200 with MIB MiB of spaces before a code-503 body",
    )
    odd.add_argument(
        "--gzip-bomb-mib",
        type=_arg_type(world.parse_mib),
        default=0,
        metavar="MIB",
        help="answer every request 200 with gzip that inflates to MIB MiB (then code 200)",
    )
    odd.add_argument(
        "--drop-connection",
        action="store_true",
        help="answer every request with headers and 10 bytes of body, then close",
    )


def faults_from_args(ns: argparse.Namespace) -> Faults:
    return Faults(
        failure_rate=ns.failure_rate,
        failure_status=ns.failure_status,
        latency_ms=ns.latency_ms,
        script=ns.script,
        retry_after=ns.retry_after,
        refuse_event_keys=ns.refuse_event_keys,
        refuse_with_200=ns.refuse_with_200,
        failure_code=ns.failure_code,
        fail_uuids=ns.fail_uuids,
        redirect=ns.redirect,
        html_200=ns.html_200,
        huge_body_mib=ns.huge_body_mib,
        gzip_bomb_mib=ns.gzip_bomb_mib,
        drop_connection=ns.drop_connection,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m connector.sandbox``: ``event-sink sandbox``'s flags plus ``--no-keep-events``
    (uuids and counts only: long runs need no event bodies) and the TLS flags of
    :func:`connector.sandbox_world.add_tls_arguments`. Stops on SIGINT or SIGTERM."""
    from connector import logs  # only the standalone entry point configures logging

    parser = argparse.ArgumentParser(
        prog="python -m connector.sandbox",
        description="Serve the strict local stand-in of the event import API.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--no-keep-events",
        dest="keep_events",
        action="store_false",
        help="do not keep accepted event bodies (GET /events answers 409); uuids are kept",
    )
    world.add_tls_arguments(parser)
    ns = parser.parse_args(argv)
    ssl_context = world.ssl_context_from_args(ns, parser)
    logs.configure("INFO", "plain", logs.Redactor([ns.token]))
    faults = faults_from_args(ns)

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        await serve(
            ns.host,
            ns.port,
            ns.token,
            faults,
            ns.path,
            keep_events=ns.keep_events,
            ssl_context=ssl_context,
        )

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        run_async(run())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
