"""The sandbox's state: its counters, the accepted events and uuids, the per-key arrival
order, the request log, the fault settings with the script's position, the quota's bucket
and the request slots.

:meth:`SandboxState.handle` decides the import path's answer to one request, in the order
the package's docstring gives (faults, token, body, contract, refusals, failing uuids,
quota), and records what was accepted; it is synchronous, so no other request interleaves.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any

from devtools.sandbox import world
from devtools.sandbox.bodies import BodyError
from devtools.sandbox.contract import ContractError, Event, check_request
from devtools.sandbox.faults import Faults, ScriptStep
from devtools.sandbox.flow import Clock, Slots, TokenBucket

__all__ = ["REQUEST_LOG_SIZE", "Answer", "SandboxState", "SandboxStats"]

log = logging.getLogger("devtools.sandbox")

REQUEST_LOG_SIZE = 100_000  # entries kept by GET /requests (the newest)


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
    quota_refused: int = 0  # requests answered 429 by Faults.quota_events_per_s
    max_queued: int = 0  # most requests waiting for one of Faults.slots at once
    max_concurrent: int = 0  # most requests holding one of Faults.slots at once


@dataclass
class Answer:
    """The import path's answer to one request; ``odd``, when set, is written instead."""

    status: int
    body: dict[str, str]
    retry_after: str | None = None
    events: int = 0  # entries in the body's `data`, for the request log
    odd: world.WorldFault | None = None  # an odd answer, written by world.py


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
    """The one owner of the sandbox's stats, accepted events and fault settings.

    ``clock`` (default :func:`time.monotonic`) is what the quota's bucket refills by; tests
    pass their own. ``slots`` is held by the server around each import request.
    """

    def __init__(
        self,
        faults: Faults | None = None,
        rng: random.Random | None = None,
        *,
        keep_events: bool = True,
        request_log_size: int = REQUEST_LOG_SIZE,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.keep_events = keep_events
        self.clock = clock
        self.stats = SandboxStats()
        self.slots = Slots(lambda: self.stats)
        self._events: list[Event] = []
        self._uuids: set[str] = set()
        self._order: dict[str, list[str]] = {}
        self._bucket: TokenBucket | None = None
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
        """Replace the fault settings; the script starts again from its first entry, and the
        quota's bucket starts full when the quota is switched on or changed."""
        self._faults = faults
        self._script = list(faults.steps)
        self._script_pos = 0
        rate, burst = faults.quota_events_per_s, faults.quota_burst_s
        bucket = self._bucket
        if rate is None:
            self._bucket = None
        elif bucket is None or (bucket.rate, bucket.burst_s) != (rate, burst):
            self._bucket = TokenBucket(rate, burst, self.clock)

    @property
    def quota_tokens(self) -> float | None:
        """Tokens the quota's bucket holds now (None when the quota is off)."""
        return None if self._bucket is None else self._bucket.tokens

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

    @property
    def order(self) -> dict[str, list[str]]:
        """Per key (the first identity's ``identityValue``), the uuids of accepted events in
        the order they were first accepted (kept even when events are not)."""
        return self._order

    def requests_log(self, since: float | None = None) -> list[dict[str, Any]]:
        """The newest :data:`REQUEST_LOG_SIZE` requests of the import path, oldest first;
        ``since`` keeps those that arrived at or after that ``time.time()``."""
        if since is None:
            return [dict(entry) for entry in self._requests]
        return [dict(entry) for entry in self._requests if entry["t"] >= since]

    def stats_json(self) -> dict[str, int]:
        return asdict(self.stats)

    def reset(self) -> None:
        """Clear stats, accepted events, uuids, the order and the request log, and fill the
        quota's bucket up; fault settings and script position are kept."""
        self.stats = SandboxStats()
        self._events = []
        self._uuids = set()
        self._order = {}
        self._requests.clear()
        if self._bucket is not None:
            self._bucket.refill()

    def _next_fault(self) -> tuple[Answer | None, str | None]:
        """Consume this request's fault decision: (the fault's answer, or None for normal
        handling; the Retry-After a passing scripted step puts on the normal answer)."""
        odd = self._faults.world_fault
        if odd is not None:
            code = odd.log_code
            return Answer(odd.status, {} if code is None else {"code": code}, odd=odd), None
        if self._script_pos < len(self._script):
            step = self._script[self._script_pos]
            self._script_pos += 1
            if step.passes:
                return None, step.retry_after
            body = _vendor_body(step.code or str(step.status), "injected fault")
            return Answer(step.status, body, step.retry_after), None
        faults = self._faults
        # Draw only when a rate is set, so an idle rng sequence stays reproducible.
        if faults.failure_rate > 0.0 and self.rng.random() < faults.failure_rate:
            status = faults.failure_status
            if faults.failure_code is None:
                body = _vendor_body(str(status), "injected fault")
            else:
                body = _failure_body(faults.failure_code)
            return Answer(status, body, faults.retry_after), None
        return None, None

    def _log_request(self, arrived: float, answer: Answer) -> None:
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
        order = self._order
        duplicates = 0
        for event in events:
            uuid = event.get("uuid")
            if uuid is None:
                continue
            if uuid in seen:
                duplicates += 1
            else:
                seen.add(uuid)
                key = event["identities"][0]["identityValue"]
                keyed = order.get(key)
                if keyed is None:
                    order[key] = [uuid]
                else:
                    keyed.append(uuid)
        stats.duplicates += duplicates
        stats.unique_uuids = len(seen)
        if self.keep_events:
            self._events.extend(events)

    def handle(
        self,
        token_ok: bool,
        content_type: str,
        charset: str | None,
        body: bytes,
        arrived: float | None = None,
        *,
        gzipped: bool = False,
        body_error: BodyError | None = None,
    ) -> Answer:
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
        body_error: BodyError | None = None,
    ) -> Answer:
        self.stats.requests += 1
        if gzipped:
            self.stats.gzip_requests += 1
        fault, retry_after = self._next_fault()
        if fault is not None:
            self.stats.faults += 1
            fault.events = _count_events(body)
            return fault
        answer = self._validate_and_record(token_ok, content_type, charset, body, body_error)
        if retry_after is not None:  # a passing step's Retry-After goes on whatever answers
            answer.retry_after = retry_after
        return answer

    def _validate_and_record(
        self,
        token_ok: bool,
        content_type: str,
        charset: str | None,
        body: bytes,
        body_error: BodyError | None = None,
    ) -> Answer:
        if not token_ok:
            self.stats.unauthorized += 1
            answer = Answer(401, _vendor_body("401", "missing or invalid X-Token"))
            answer.events = _count_events(body)
            return answer
        try:
            if body_error is not None:
                raise ContractError(body_error.path, body_error.reason)
            events = check_request(content_type, charset, body)
        except ContractError as exc:
            self.stats.rejects += 1
            log.debug("rejected: %s", exc)  # paths and type names only, never values
            return Answer(400, _vendor_body("400", str(exc)), events=_count_events(body))
        refused = self._refused_index(events)
        if refused is not None:
            self.stats.refused += 1
            refusal = _vendor_body("400", f"data[{refused}].eventKey: refused by the sandbox")
            status = 200 if self._faults.refuse_with_200 else 400
            return Answer(status, refusal, events=len(events))
        if self._fails_uuid(events):
            self.stats.failed_uuid_requests += 1
            return Answer(500, dict(world.SYSTEM_BUSY), events=len(events))
        if self._bucket is not None and not self._bucket.take(len(events)):
            self.stats.quota_refused += 1
            quota = _vendor_body("429", "events per second quota exceeded")
            return Answer(429, quota, retry_after="1", events=len(events))
        self.record(events)
        return Answer(200, _OK, events=len(events))

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
