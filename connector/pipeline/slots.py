"""The slots of in-flight batches: ``http.max_in_flight`` of them (``concurrency: fixed``),
or as many as the adaptive limit allows now (``concurrency: adaptive``, AIMD on the API's
answers: see connector/core/concurrency.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

from connector.core.classify import Outcome, Verdict
from connector.core.concurrency import AdaptiveLimit, is_back_pressure
from connector.metrics import Metrics


class Slots:
    def __init__(
        self,
        maximum: int,
        *,
        adaptive: AdaptiveLimit | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._maximum = maximum
        self._adaptive = adaptive
        self._metrics = metrics
        self._clock = clock
        self._used = 0
        self._free = asyncio.Condition()
        self._show()

    @property
    def limit(self) -> int:
        return self._adaptive.limit if self._adaptive is not None else self._maximum

    async def __aenter__(self) -> None:
        async with self._free:
            await self._free.wait_for(lambda: self._used < self.limit)
            self._used += 1
        if self._adaptive is not None:
            self._adaptive.started(self._used)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        async with self._free:
            self._used -= 1
            self._free.notify_all()  # the limit may have grown: every waiter looks again

    def observe(self, rtt_s: float, outcome: Outcome) -> None:
        """Every answer of the API (the sink's observer): the adaptive limit learns from it."""
        if self._adaptive is not None:
            delivered = outcome.verdict is Verdict.DELIVERED
            before = self._adaptive.limit
            self._adaptive.answered(
                rtt_s if delivered else None,
                back_pressure=is_back_pressure(outcome),
                now=self._clock(),
            )
            if self._adaptive.limit != before:
                self._show()

    def _show(self) -> None:
        if self._metrics is not None:
            self._metrics.concurrency_limit.set(self.limit)
