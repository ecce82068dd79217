"""The HTTP client of the event import API: one ``send(batch)`` that decides every event.

``connector.core.classify`` is the one table that reads an answer; here is what each verdict does:

- delivered: done;
- retry (408, 429, 5xx and such body codes, unknown body codes, timeouts, dropped
  connections, bodies too long to read) → capped exponential backoff with full jitter;
  ``Retry-After`` (seconds or an HTTP date) holds **every** sender (one shared gate);
- refused (other 4xx) → the batch is bisected until the refused events stand alone;
  too large (413) → split the same way;
- halt (401, 403, 404, and any 3xx: redirects are never followed) → not the data's
  fault. Every sender stops; one probes with slow backoff (the token is read again on
  every attempt) until the API accepts again.

Retries are unbounded unless a retry budget (``http.retry.max_attempts`` /
``give_up_after_s``) is set: a batch that spent it is bisected, each part tried once, and
the events that still fail are reported refused with reason ``retries_exhausted``. A halt
never spends the budget. ``send`` returns only when every event of the batch is either
delivered or isolated and refused; the caller dead-letters the refused ones (or stops).
Cancellation is the only other way out, and then nothing about the batch is decided.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import aiohttp

from connector.adapters.http_setup import (
    ACCEPT_ENCODING,
    DIRECT,
    MAX_ANSWER_BYTES,
    Proxy,
    UnreadableBody,
    read_bounded,
)
from connector.adapters.rate_limit import RateLimiter
from connector.adapters.send_gate import SendGate
from connector.core.backoff import Backoff
from connector.core.batch import render_body
from connector.core.classify import Outcome, Verdict, classify
from connector.core.records import Batch, EncodedEvent, Events
from connector.metrics import Metrics, status_class

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SendReport:
    """What happened to one batch: everything not in ``refused`` was delivered."""

    refused: list[tuple[EncodedEvent, Outcome]] = field(default_factory=list)
    attempts: int = 0
    budget_spent: bool = False  # the retry budget ran out and the batch was bisected
    requests_delivered: int = 0
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How much retrying one request may do before its batch is bisected; None: no limit.

    Counts retryable answers and the time spent on them (backoff and Retry-After holds
    included), never time spent halted."""

    max_attempts: int | None = None
    give_up_after_s: float | None = None

    def spent(self, attempts: int, spent_s: float) -> bool:
        return (self.max_attempts is not None and attempts >= self.max_attempts) or (
            self.give_up_after_s is not None and spent_s >= self.give_up_after_s
        )


UNLIMITED = RetryBudget()
ONE_ATTEMPT = RetryBudget(max_attempts=1)
# Distinct unknown body codes logged once each; beyond this many, no more are remembered.
_UNKNOWN_CODES_REMEMBERED = 100


@dataclass(frozen=True)
class Endpoint:
    """Where and how requests go: the URL's origin only (redirects are never followed)."""

    url: str
    proxy: Proxy = DIRECT
    tls: ssl.SSLContext | bool = True  # True: the system trust store
    headers: Mapping[str, str] = field(default_factory=dict)
    gzip: bool = False
    max_answer_bytes: int = MAX_ANSWER_BYTES


class HttpSink:
    """Posts batches to the import URL; safe to call concurrently.

    The session, the token source, the clocks, the sleep and the random source are
    injected so that tests drive them.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str | Endpoint,
        token: Callable[[], str],
        public_params_json: bytes,
        timeout_s: float,
        initial_backoff_s: float,
        max_backoff_s: float,
        halt_probe_max_s: float = 60.0,
        max_retry_after_s: float = 300.0,
        overrides: Mapping[int, Verdict] | None = None,
        body_overrides: Mapping[str, Verdict] | None = None,
        budget: RetryBudget = UNLIMITED,
        limiter: RateLimiter | None = None,
        observer: Callable[[float, Outcome], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._session = session
        self._endpoint = url if isinstance(url, Endpoint) else Endpoint(url)
        self._token = token
        self._public_params = public_params_json
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._backoff = Backoff(initial_backoff_s, max(initial_backoff_s, max_backoff_s))
        self._probe_backoff = Backoff(1.0, max(1.0, halt_probe_max_s))
        self._max_retry_after = max_retry_after_s
        self._overrides = dict(overrides or {})
        self._body_overrides = dict(body_overrides or {})
        self._budget = budget
        self._limiter = limiter
        self._observer = observer  # told every answer and its RTT (adaptive concurrency)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._metrics = metrics
        self._unknown_codes = _UnknownCodes()
        self.gate = SendGate(monotonic, sleep)
        self.halt_cause: Outcome | None = None  # the answer that halted the senders

    @property
    def halted(self) -> bool:
        """The API refuses the token or the URL (or redirects): every sender is holding."""
        return self.gate.halted

    async def attempt(self, body: bytes) -> Outcome:
        """One POST; transport failures become a RETRY outcome, never an exception."""
        metrics = self._metrics
        if metrics is not None:
            metrics.http_in_flight.inc()
            metrics.http_request_bytes.inc(len(body))
        started = self._monotonic()
        try:
            outcome = await self._post(body)
        finally:
            if metrics is not None:
                metrics.http_in_flight.dec()
        rtt = self._monotonic() - started
        if self._observer is not None:
            self._observer(rtt, outcome)
        if metrics is not None:
            metrics.http_duration.observe(rtt)
            metrics.http_requests.labels(status_class(outcome.status)).inc()
            metrics.batches_sent.labels(outcome.verdict.value).inc()
        if outcome.reason == "body_code_unknown":
            self._unknown_codes.note(outcome)
        return outcome

    async def _post(self, body: bytes) -> Outcome:
        endpoint = self._endpoint
        headers = {
            **endpoint.headers,
            "Content-Type": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
            "X-Token": self._token(),
        }
        if endpoint.gzip:
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,  # the token and the data go to this origin only
                auto_decompress=False,  # read_bounded inflates, within its bound
                proxy=endpoint.proxy.url,
                proxy_headers=endpoint.proxy.headers,
                ssl=endpoint.tls,
            ) as response:
                try:
                    payload = await read_bounded(response, endpoint.max_answer_bytes)
                except UnreadableBody:
                    response.close()
                    return Outcome(Verdict.RETRY, "body_encoding", response.status)
                if payload is None:
                    response.close()  # not drained: the rest of the stream is never read
                return classify(
                    response.status,
                    response.headers,
                    payload,
                    now_s=self._wall_clock(),
                    overrides=self._overrides,
                    body_overrides=self._body_overrides,
                )
        except TimeoutError:
            return Outcome(Verdict.RETRY, "timeout")
        except aiohttp.ClientError as exc:
            return Outcome(Verdict.RETRY, f"connection:{type(exc).__name__}")

    def render(self, events: Events) -> bytes:
        """The request body for these events (compressed when ``http.compression`` says so)."""
        body = render_body(self._public_params, events)
        if self._endpoint.gzip:
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)
            body = packer.compress(body) + packer.flush()
        return body

    async def send(self, batch: Batch) -> SendReport:
        """Deliver a batch; isolate and return the events the API refuses.

        Retries transient failures (capped exponential backoff, full jitter, Retry-After
        honoured for every sender), forever unless a retry budget is set. A refused or
        too-large request is split in halves, each sent on its own, down to single
        events; so is a request that spent its retry budget, whose parts get one attempt
        each. A refused single event is reported, never dropped. Raises nothing for HTTP
        or network failures.
        """
        report = SendReport()
        started = self._monotonic()
        if self._metrics is not None:
            self._metrics.batch_events.observe(len(batch.events))
            self._metrics.batch_bytes.observe(batch.size_bytes)
        pending: list[tuple[Events, RetryBudget]] = [(batch.events, self._budget)]
        while pending:
            events, budget = pending.pop()
            outcome, spent = await self._decide(batch.batch_id, events, report, budget)
            if outcome.verdict is Verdict.DELIVERED:
                report.requests_delivered += 1
                continue
            if spent:
                if not report.budget_spent:
                    report.budget_spent = True
                    if self._metrics is not None:
                        self._metrics.retry_budget_exhausted.inc()
                outcome = replace(outcome, verdict=Verdict.REFUSED, reason="retries_exhausted")
                budget = ONE_ATTEMPT
            if len(events) == 1:
                report.refused.append((events[0], outcome))
            else:
                middle = len(events) // 2
                # A stack: the first half goes out first, keeping order within a batch.
                pending.append((events[middle:], budget))
                pending.append((events[:middle], budget))
        report.duration_s = self._monotonic() - started
        return report

    async def _decide(
        self,
        batch_id: int,
        events: Events,
        report: SendReport,
        budget: RetryBudget,
    ) -> tuple[Outcome, bool]:
        """Send these events until the answer is delivered, refused or too large, or the
        budget is spent (then the second item is True and the outcome is the last answer)."""
        body = self.render(events)
        attempt = retryable = 0
        spent_s = 0.0
        me = object()  # this request's identity at the gate
        clock = self._monotonic
        try:
            while True:
                waited_from, halted_before = clock(), self.gate.halted
                await self.gate.wait(me)
                if not (halted_before or self.gate.halted):
                    spent_s += clock() - waited_from  # a Retry-After hold counts; a halt not
                if self._limiter is not None:
                    # Every request takes tokens, retries and probes too: the vendor counts
                    # them all. After the gate, so a Retry-After hold does not use them up.
                    await self._limiter.acquire(len(events))
                sent_at = clock()
                outcome = await self.attempt(body)
                attempt += 1
                report.attempts += 1
                verdict = outcome.verdict
                if verdict is Verdict.DELIVERED:
                    self._reopen()
                    return outcome, False
                if verdict in (Verdict.REFUSED, Verdict.TOO_LARGE):
                    self._reopen()  # the API answered about the data: the endpoint is fine
                    _log_answer(logging.WARNING, "request refused, splitting", outcome, events,
                              batch_id, attempt)  # fmt: skip
                    return outcome, False
                if verdict is Verdict.AUTH:
                    self._halt(me, outcome)
                    delay = self._probe_backoff.delay(attempt, self._rng)
                else:
                    retryable += 1
                    spent_s += clock() - sent_at
                    delay = self._backoff.delay(retryable - 1, self._rng)
                    if outcome.retry_after_s is not None:
                        hold = min(outcome.retry_after_s, self._max_retry_after)
                        self.gate.throttle(hold)
                        delay = max(delay, hold)
                    if budget.spent(retryable, spent_s + delay):
                        return outcome, True
                    spent_s += delay
                if self._metrics is not None:
                    self._metrics.http_retries.labels(outcome.reason).inc()
                _log_answer(logging.WARNING, f"request not delivered, retrying in {delay:.2f}s",
                          outcome, events, batch_id, attempt)  # fmt: skip
                await self._sleep(delay)
        finally:
            self.gate.leave(me)

    def _reopen(self) -> None:
        if self.gate.halted:
            log.info("the API accepts again: resuming every sender")
            self.gate.reopen()
            self.halt_cause = None

    def _halt(self, me: object, outcome: Outcome) -> None:
        if not self.gate.halted:
            self.halt_cause = outcome
            _log_halt(outcome)
        self.gate.halt(me)


def _log_halt(outcome: Outcome) -> None:
    if outcome.location is not None:
        log.error(
            "the endpoint redirects (HTTP %s to %s); redirects are never followed, "
            "so the token and the data stay with http.url's origin: every sender "
            "stops, probing with slow backoff; nothing is dropped. Fix http.url.",
            outcome.status,
            outcome.location,
        )
    else:
        log.error(
            "the API refuses the token or the URL (HTTP %s%s): every sender stops, "
            "probing with slow backoff; nothing is dropped",
            outcome.status,
            f", body code {outcome.code}" if outcome.status == 200 else "",
        )


class _UnknownCodes:
    """Logs each distinct unknown body code once; remembers at most a bounded number."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def note(self, outcome: Outcome) -> None:
        code = outcome.code if outcome.code is not None else "(missing)"
        if code in self._seen or len(self._seen) >= _UNKNOWN_CODES_REMEMBERED:
            return
        self._seen.add(code)
        log.warning(
            "the API answered HTTP 200 with body code %r, which is not a three-digit status: "
            "retrying (an unknown code is no proof that the data is bad); set "
            "http.body_code_overrides to decide otherwise",
            code,
            extra={"body_code": code, "error_code": outcome.error_code},
        )


def _log_answer(
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
