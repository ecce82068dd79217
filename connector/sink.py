"""The HTTP client of the event import API: one ``send(batch)`` that returns once delivered.

``classify`` is the one table that reads an answer. A batch is delivered only on HTTP 200
whose JSON body has ``code == "200"``; everything else is retried by ``send`` itself, with
capped exponential backoff and full jitter, until it is delivered or the caller cancels.
(Dead letters and a finer failure taxonomy come later; until then nothing is skipped.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

import aiohttp

from connector.batch import render_body
from connector.metrics import Metrics, status_class
from connector.records import Batch

log = logging.getLogger(__name__)


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: the same request may succeed later
    REFUSED = "refused"  # the API refused the data (4xx, or 200 with a refusing body code)
    AUTH = "auth"  # not the data's fault: token or endpoint (401/403/404)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str  # short, bounded: safe for logs and metric labels
    status: int | None = None
    code: str | None = None  # the body's `code`, where there was one
    error_code: str | None = None


def classify(status: int, body: bytes) -> Outcome:
    """Decide what one HTTP answer means. Pure; tested row by row."""
    code = error_code = None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        raw_code, raw_error = parsed.get("code"), parsed.get("errorCode")
        code = str(raw_code) if raw_code is not None else None
        error_code = str(raw_error)[:64] if raw_error is not None else None
    if status == 200:
        if code is None:
            return Outcome(Verdict.RETRY, "malformed_body", status)
        if code == "200":
            return Outcome(Verdict.DELIVERED, "ok", status, code, error_code)
        return Outcome(Verdict.REFUSED, "body_code", status, code, error_code)
    if status in (401, 403, 404):
        return Outcome(Verdict.AUTH, f"http_{status}", status, code, error_code)
    if status in (408, 429) or status >= 500:
        return Outcome(Verdict.RETRY, f"http_{status}", status, code, error_code)
    if 400 <= status < 500:
        return Outcome(Verdict.REFUSED, f"http_{status}", status, code, error_code)
    # 1xx/2xx other than 200 (the vendor names 201) and 3xx: not the contract's success.
    return Outcome(Verdict.RETRY, f"http_{status}", status, code, error_code)


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, initial * 2**attempt)]; attempt counts from 0."""
    ceiling = min(max_s, initial_s * (2 ** min(attempt, 62)))
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class SendResult:
    attempts: int
    duration_s: float


class HttpSink:
    """Posts batches to the import URL; safe to call concurrently.

    The session, the token source, the clock-driven sleep and the random source are
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
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._metrics = metrics
        self.auth_failing = False  # the last answer was 401/403/404 and none succeeded since

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
        if outcome.verdict is Verdict.AUTH:
            self.auth_failing = True
        elif outcome.verdict is Verdict.DELIVERED:
            self.auth_failing = False
        return outcome

    async def _post(self, body: bytes) -> Outcome:
        headers = {"Content-Type": "application/json", "X-Token": self._token()}
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                payload = await response.read()
                return classify(response.status, payload)
        except TimeoutError:
            return Outcome(Verdict.RETRY, "timeout")
        except aiohttp.ClientError as exc:
            return Outcome(Verdict.RETRY, f"connection:{type(exc).__name__}")

    async def send(self, batch: Batch) -> SendResult:
        """Deliver one batch, retrying until the API answers 200 with body code "200".

        Returns only once delivered; never raises for an HTTP or network failure (it
        retries with capped exponential backoff and full jitter). Cancellation is the
        only way out without delivery, and then nothing about the batch is resolved.
        """
        body = render_body(self._public_params, batch)
        if self._metrics is not None:
            self._metrics.batch_events.observe(len(batch.events))
            self._metrics.batch_bytes.observe(len(body))
        started = self._monotonic()
        attempt = 0
        while True:
            outcome = await self.attempt(body)
            attempt += 1
            if outcome.verdict is Verdict.DELIVERED:
                return SendResult(attempt, self._monotonic() - started)
            delay = backoff_delay(attempt - 1, self._initial, self._max, self._rng)
            if self._metrics is not None:
                self._metrics.http_retries.labels(outcome.reason).inc()
            level = logging.WARNING if outcome.verdict is Verdict.RETRY else logging.ERROR
            log.log(
                level,
                "batch not delivered (%s), retrying in %.2fs",
                outcome.verdict.value,
                delay,
                extra={
                    "batch_id": batch.batch_id,
                    "batch_size": len(batch.events),
                    "status": outcome.status,
                    "reason": outcome.reason,
                    "body_code": outcome.code,
                    "error_code": outcome.error_code,
                    "attempt": attempt,
                },
            )
            await self._sleep(delay)
