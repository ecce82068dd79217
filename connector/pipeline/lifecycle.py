"""Lifecycle: how a run ends (the drain's outcome, the final commit, leaving the group
within the leave budget) and what readiness says about it meanwhile."""

from __future__ import annotations

import asyncio
import logging

from connector.adapters.kafka_source import KafkaSource
from connector.core.checks import Check
from connector.core.classify import Outcome
from connector.pipeline.checkpoint import Checkpoint
from connector.pipeline.delivery import Delivery

log = logging.getLogger(__name__)

# Shutdown: after the drain, the final commit and leaving the group get this long together.
LEAVE_TIMEOUT_S = 10.0


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
    brokers_down: bool,
    registry_down: bool,
    dlq_failing: bool,
    halt_cause: Outcome | None,
    assigned: int,
) -> Check:
    """Ready unless something stops delivery; the reason names what."""
    if failed:
        return Check(False, "stopping on an error")
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
