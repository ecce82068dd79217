"""The HTTP client of the event import API: one ``send(batch)`` that decides every event.

``classify`` is the one table that reads an answer:

- HTTP 200 with body ``code == "200"`` → delivered;
- 408, 429, 5xx, timeouts, connection errors, and a 200 whose body is not the contract's
  JSON (or any other 1xx/2xx/3xx) → retry with capped exponential backoff and full jitter;
  ``Retry-After`` (seconds or an HTTP date) holds **every** sender (one shared gate);
- 400, 422 and a 200 whose body ``code`` refuses the data → refused: the batch is bisected
  until the refused events stand alone; 413 → too large: split the same way;
- 401, 403, 404 → auth: not the data's fault. Every sender stops; one probes with slow
  backoff (the token is read again on every attempt) until the API accepts again.

Config (``http.status_overrides``) may move any status to another verdict.
``send`` returns only when every event of the batch is either delivered or isolated and
refused; the caller dead-letters the refused ones (or stops). Cancellation is the only
other way out, and then nothing about the batch is decided.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import aiohttp

from connector.batch import render_body
from connector.metrics import Metrics, status_class
from connector.records import Batch, EncodedEvent

log = logging.getLogger(__name__)


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: the same request may succeed later
    REFUSED = "refused"  # the API refused the data: bisect, dead-letter the refused events
    TOO_LARGE = "too_large"  # 413: split by size
    AUTH = "auth"  # not the data's fault: token or endpoint (401/403/404); halt and probe


# Verdicts that config may assign to a status.
OVERRIDABLE = {"retry": Verdict.RETRY, "refuse": Verdict.REFUSED, "halt": Verdict.AUTH}


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str  # short, bounded: safe for logs and metric labels
    status: int | None = None
    code: str | None = None  # the body's `code`, where there was one
    error_code: str | None = None
    retry_after_s: float | None = None


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
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


def _default_verdict(status: int) -> Verdict:
    if status in (401, 403, 404):
        return Verdict.AUTH
    if status == 413:
        return Verdict.TOO_LARGE
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    if 400 <= status < 500:
        return Verdict.REFUSED
    # 1xx, 2xx other than 200 (the vendor names 201) and 3xx: not the contract's success.
    return Verdict.RETRY


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    overrides: Mapping[int, Verdict] | None = None,
    now_s: float | None = None,
) -> Outcome:
    """Decide what one HTTP answer means. Pure but for the clock (injectable); tested by row."""
    code = error_code = None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        raw_code, raw_error = parsed.get("code"), parsed.get("errorCode")
        code = str(raw_code)[:16] if raw_code is not None else None
        error_code = str(raw_error)[:64] if raw_error is not None else None
    retry_after = parse_retry_after(
        headers.get("Retry-After"), time.time() if now_s is None else now_s
    )
    if overrides and status in overrides:
        verdict = overrides[status]
        return Outcome(verdict, f"http_{status}", status, code, error_code, retry_after)
    if status == 200:
        if code is None:
            return Outcome(Verdict.RETRY, "malformed_body", status)
        if code == "200":
            return Outcome(Verdict.DELIVERED, "ok", status, code, error_code)
        return Outcome(Verdict.REFUSED, "body_code", status, code, error_code)
    verdict = _default_verdict(status)
    return Outcome(verdict, f"http_{status}", status, code, error_code, retry_after)


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, initial * 2**attempt)]; attempt counts from 0."""
    ceiling = min(max_s, initial_s * (2 ** min(attempt, 62)))
    return rng.uniform(0.0, ceiling)


class SendGate:
    """What every sender to the endpoint shares: the Retry-After hold and the auth halt.

    While throttled, nobody sends until the time is up. While halted, only one sender
    (the prober) sends; the others wait, and one of them takes over probing if the prober
    goes away (its batch was cancelled by a revoke or shutdown).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        poll_s: float = 0.2,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s
        self._throttle_until = 0.0
        self.halted = False
        self._prober: object | None = None

    def throttled(self) -> bool:
        return self._clock() < self._throttle_until

    def throttle(self, seconds: float) -> None:
        self._throttle_until = max(self._throttle_until, self._clock() + seconds)

    async def wait(self, sender: object) -> None:
        """Return when ``sender`` may send."""
        while True:
            if self.halted and self._prober is not sender:
                if self._prober is None:
                    self._prober = sender  # the prober went away: take over
                    continue
                await self._sleep(self._poll_s)
                continue
            remaining = self._throttle_until - self._clock()
            if remaining > 0:
                await self._sleep(remaining)
                continue
            return

    def halt(self, sender: object) -> None:
        if not self.halted:
            self.halted = True
            self._prober = sender

    def reopen(self) -> None:
        self.halted = False
        self._prober = None

    def leave(self, sender: object) -> None:
        if self._prober is sender:
            self._prober = None


@dataclass(slots=True)
class SendReport:
    """What happened to one batch: everything not in ``refused`` was delivered."""

    refused: list[tuple[EncodedEvent, Outcome]] = field(default_factory=list)
    attempts: int = 0
    requests_delivered: int = 0
    duration_s: float = 0.0


class HttpSink:
    """Posts batches to the import URL; safe to call concurrently.

    The session, the token source, the clock, the sleep and the random source are
    injected so that tests drive them.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        token: Callable[[], str],
        public_params_json: bytes,
        timeout_s: float,
        initial_backoff_s: float,
        max_backoff_s: float,
        halt_probe_max_s: float = 60.0,
        max_retry_after_s: float = 300.0,
        overrides: Mapping[int, Verdict] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._session = session
        self._url = url
        self._token = token
        self._public_params = public_params_json
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._initial = initial_backoff_s
        self._max = max_backoff_s
        self._halt_probe_max = halt_probe_max_s
        self._max_retry_after = max_retry_after_s
        self._overrides = dict(overrides or {})
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._metrics = metrics
        self.gate = SendGate(monotonic, sleep)

    @property
    def halted(self) -> bool:
        """The API refuses the token or the URL: every sender is holding."""
        return self.gate.halted

    async def attempt(self, body: bytes) -> Outcome:
        """One POST; transport failures become a RETRY outcome, never an exception."""
        metrics = self._metrics
        if metrics is not None:
            metrics.http_in_flight.inc()
        started = self._monotonic()
        try:
            outcome = await self._post(body)
        finally:
            if metrics is not None:
                metrics.http_in_flight.dec()
        if metrics is not None:
            metrics.http_duration.observe(self._monotonic() - started)
            metrics.http_requests.labels(status_class(outcome.status)).inc()
            metrics.batches_sent.labels(outcome.verdict.value).inc()
        return outcome

    async def _post(self, body: bytes) -> Outcome:
        headers = {"Content-Type": "application/json", "X-Token": self._token()}
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                payload = await response.read()
                return classify(
                    response.status, response.headers, payload, overrides=self._overrides
                )
        except TimeoutError:
            return Outcome(Verdict.RETRY, "timeout")
        except aiohttp.ClientError as exc:
            return Outcome(Verdict.RETRY, f"connection:{type(exc).__name__}")

    async def send(self, batch: Batch) -> SendReport:
        """Deliver a batch; isolate and return the events the API refuses.

        Retries transient failures forever (capped exponential backoff, full jitter,
        Retry-After honoured for every sender). A refused or too-large request is split in
        halves, each sent on its own, down to single events; a refused single event is
        reported, never dropped. Raises nothing for HTTP or network failures.
        """
        report = SendReport()
        started = self._monotonic()
        if self._metrics is not None:
            self._metrics.batch_events.observe(len(batch.events))
            self._metrics.batch_bytes.observe(batch.size_bytes)
        pending: list[Sequence[EncodedEvent]] = [batch.events]
        while pending:
            events = pending.pop()
            outcome = await self._decide(batch.batch_id, events, report)
            if outcome.verdict is Verdict.DELIVERED:
                report.requests_delivered += 1
            elif len(events) == 1:
                report.refused.append((events[0], outcome))
            else:
                middle = len(events) // 2
                # A stack: the first half goes out first, keeping order within a batch.
                pending.append(events[middle:])
                pending.append(events[:middle])
        report.duration_s = self._monotonic() - started
        return report

    async def _decide(
        self, batch_id: int, events: Sequence[EncodedEvent], report: SendReport
    ) -> Outcome:
        """Send these events until the answer is delivered, refused or too large."""
        body = render_body(self._public_params, events)
        attempt = 0
        me = object()  # this request's identity at the gate
        try:
            while True:
                await self.gate.wait(me)
                outcome = await self.attempt(body)
                attempt += 1
                report.attempts += 1
                verdict = outcome.verdict
                if verdict is Verdict.DELIVERED:
                    if self.gate.halted:
                        log.info("the API accepts again: resuming every sender")
                        self.gate.reopen()
                    return outcome
                if verdict in (Verdict.REFUSED, Verdict.TOO_LARGE):
                    if self.gate.halted:
                        self.gate.reopen()  # the API answered about the data: auth is fine
                    self._log(logging.WARNING, "request refused, splitting", outcome, events,
                              batch_id, attempt)  # fmt: skip
                    return outcome
                if verdict is Verdict.AUTH:
                    if not self.gate.halted:
                        log.error(
                            "the API refuses the token or the URL (HTTP %s): every sender "
                            "stops, probing with slow backoff; nothing is dropped",
                            outcome.status,
                        )
                    self.gate.halt(me)
                    delay = backoff_delay(attempt, 1.0, self._halt_probe_max, self._rng)
                else:
                    delay = backoff_delay(attempt - 1, self._initial, self._max, self._rng)
                    if outcome.retry_after_s is not None:
                        hold = min(outcome.retry_after_s, self._max_retry_after)
                        self.gate.throttle(hold)
                        delay = max(delay, hold)
                if self._metrics is not None:
                    self._metrics.http_retries.labels(outcome.reason).inc()
                self._log(logging.WARNING, f"request not delivered, retrying in {delay:.2f}s",
                          outcome, events, batch_id, attempt)  # fmt: skip
                await self._sleep(delay)
        finally:
            self.gate.leave(me)

    @staticmethod
    def _log(
        level: int,
        message: str,
        outcome: Outcome,
        events: Sequence[EncodedEvent],
        batch_id: int,
        attempt: int,
    ) -> None:
        log.log(
            level,
            message,
            extra={
                "batch_id": batch_id,
                "batch_size": len(events),
                "status": outcome.status,
                "reason": outcome.reason,
                "body_code": outcome.code,
                "error_code": outcome.error_code,
                "attempt": attempt,
            },
        )
