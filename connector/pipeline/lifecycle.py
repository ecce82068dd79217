"""Lifecycle: how a run ends (the drain's outcome, the final commit, leaving the group
within the leave budget), what liveness and readiness say meanwhile, and the progress log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from connector.adapters.dlq import DeadLetterWriter
from connector.adapters.http_sink import HttpSink
from connector.adapters.kafka_source import KafkaSource
from connector.adapters.registry import SchemaGatedSource
from connector.config import ConfigError
from connector.config_routes import DEFAULT_ROUTE
from connector.core.backoff import Backoff
from connector.core.checks import Check
from connector.core.classify import Outcome
from connector.metrics import Metrics
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.delivery import Delivery

log = logging.getLogger(__name__)

# Shutdown: after the drain, the final commit and leaving the group get this long together.
LEAVE_TIMEOUT_S = 10.0
# The consume loop may legitimately stand still while a revoke drains in-flight batches
# (up to shutdown.drain_timeout_s); liveness allows that much and this margin on top.
LIVENESS_MARGIN_S = 60.0


async def verify_dead_letters(
    writer: DeadLetterWriter,
    stop: asyncio.Event,
    health: Health,
    rng: random.Random | None = None,
) -> bool:
    """Before the first record: the dead-letter topic exists and may be written, so a
    missing topic or ACL is not found at the first dead letter. While the brokers do not
    answer it retries with backoff, not ready meanwhile, as consuming does. A topic that
    is missing or not writable stops start-up (ConfigError). False: ``stop`` came first."""
    backoff, rng = Backoff(0.5, 30.0), rng or random.Random()
    health.checking = f"checking the dead-letter topic {writer.topic}"
    attempt = 0
    while not stop.is_set():
        health.turned()
        result = await writer.check()
        if result.fatal is not None:
            raise ConfigError(result.fatal)
        if result.retry is None:
            health.checking = None
            return True
        delay = backoff.delay(attempt, rng)
        attempt += 1
        health.checking = f"the dead-letter topic {writer.topic} is not checked yet"
        log.warning(
            "cannot check dead-letter topic %s (%s); retrying in %.1fs",
            writer.topic,
            result.retry,
            delay,
        )
        with contextlib.suppress(TimeoutError):  # the delay passed, or stop came
            await asyncio.wait_for(stop.wait(), delay)
    return False


async def finish(
    undelivered: int, delivery: Delivery, checkpoint: Checkpoint, source: KafkaSource
) -> bool:
    """After the drain: give up on what is still in flight, commit what was delivered,
    leave the group. False when the brokers did not answer within the leave budget (a
    client call may then still hang in a thread: the process must not wait for it)."""
    if undelivered:
        log.warning(
            "drain timeout: %d batches undelivered; they stay uncommitted and are "
            "delivered again after restart",
            undelivered,
        )
        await delivery.cancel()
    # The broker may be unreachable: neither the final commit nor leaving the group may
    # hold the process past its grace period. What is not committed is delivered again.
    try:
        async with asyncio.timeout(LEAVE_TIMEOUT_S):
            await checkpoint.commit()
            await source.close()
    except TimeoutError:
        log.error(
            "could not commit and leave the group within %.0f s (brokers unreachable?); "
            "stopping anyway: uncommitted records will be delivered again by the next owner",
            LEAVE_TIMEOUT_S,
        )
        return False
    return True


def readiness(
    *,
    failed: bool,
    checking: str | None = None,
    brokers_down: bool,
    registry_down: bool,
    dlq_failing: bool,
    halt_cause: Outcome | None,
    assigned: int,
) -> Check:
    """Ready unless something stops delivery; the reason names what."""
    if failed:
        return Check(False, "stopping on an error")
    if checking is not None:
        return Check(False, checking)
    if brokers_down:
        return Check(False, "Kafka brokers unreachable")
    if registry_down:
        return Check(False, "the schema registry is unreachable")
    if dlq_failing:
        return Check(False, "the dead-letter topic cannot be written")
    if halt_cause is not None:
        if halt_cause.location is not None:
            return Check(
                False,
                f"the endpoint redirects (HTTP {halt_cause.status} to {halt_cause.location}); "
                "redirects are not followed",
            )
        code = f", body code {halt_cause.code}" if halt_cause.code else ""
        got = f"HTTP {halt_cause.status}{code}"
        return Check(False, f"the API refuses the token or the URL (401/403/404: {got})")
    if assigned:
        return Check(True, f"{assigned} partitions assigned")
    return Check(True, "waiting for a partition assignment")


class Health:
    """Liveness (the loop turns) and readiness (nothing stops delivery), from the rooms."""

    def __init__(
        self,
        *,
        delivery: Delivery,
        checkpoint: Checkpoint,
        source: KafkaSource,
        sink: HttpSink,
        dead_letters: DeadLetterWriter | None,
        drain_timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._delivery, self._checkpoint, self._source = delivery, checkpoint, source
        self._sink, self._dead_letters = sink, dead_letters
        self._limit_s = drain_timeout_s + LIVENESS_MARGIN_S
        self._clock = clock
        self._last_turn: float | None = None
        self.checking: str | None = None  # a start-up check under way (not ready)

    def turned(self) -> None:
        """The loop started a turn."""
        self._last_turn = self._clock()

    def liveness(self) -> Check:
        """Alive while the consume loop turns (a revoke's drain may hold it that long)."""
        if self._last_turn is None:
            return Check(True, "starting")
        idle = self._clock() - self._last_turn
        if idle > self._limit_s:
            return Check(False, f"consume loop has not turned for {idle:.0f} s")
        return Check(True, "consume loop running")

    def readiness(self) -> Check:
        source, sink = self._source, self._sink
        return readiness(
            failed=self._delivery.failure is not None,
            checking=self.checking,
            brokers_down=source.brokers_down,
            registry_down=isinstance(source, SchemaGatedSource) and source.registry_down,
            dlq_failing=self._dead_letters is not None and self._dead_letters.failing,
            halt_cause=sink.halt_cause if sink.halted else None,
            assigned=len(self._checkpoint.tracker.assigned()),
        )


def log_progress(metrics: Metrics, *, pending: int, in_flight: int) -> None:
    route = "" if metrics.route == DEFAULT_ROUTE else f" (route {metrics.route})"
    log.info(
        "progress%s: %d consumed, %d delivered, %d dead-lettered, %d pending, %d in flight",
        route,
        metrics.total(metrics.records_consumed),
        metrics.total(metrics.records_delivered),
        metrics.total(metrics.records_dead_lettered),
        pending,
        in_flight,
    )
