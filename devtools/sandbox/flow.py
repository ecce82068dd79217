"""How fast the sandbox takes requests in: a shared events-per-second quota and request slots.

:class:`TokenBucket` is the quota (``Faults.quota_events_per_s``, ``Faults.quota_burst_s``):
one bucket for all clients together, refilled continuously, from which an accepted request
takes one token per event; the state (:mod:`devtools.sandbox.state`) answers 429 when it
holds too few. :class:`Slots` is the concurrency limit (``Faults.slots``): the server
(:mod:`devtools.sandbox.server`) holds a slot for the whole handling of a request, its
``latency_ms`` included, and a request beyond them waits for one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

__all__ = ["Clock", "FlowStats", "Slots", "TokenBucket"]

Clock = Callable[[], float]  # seconds, monotonic (time.monotonic by default)

# Refill is rate x elapsed in floats: 0.1 s at 10/s may come to 0.9999999999; that is a token.
_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second, at most ``rate * burst_s`` held; starts full."""

    def __init__(self, rate: float, burst_s: float, clock: Clock) -> None:
        self.rate = rate
        self.burst_s = burst_s
        self.capacity = rate * burst_s
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    @property
    def tokens(self) -> float:
        """Tokens held now (refilled up to now)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)  # a clock that steps back refills nothing
        self._last = now
        self._tokens = min(self.capacity, self._tokens + self.rate * elapsed)

    def take(self, count: int) -> bool:
        """Take ``count`` tokens if the bucket holds that many (True); else take none (False)."""
        self._refill()
        if self._tokens + _EPSILON < count:
            return False
        self._tokens = max(0.0, self._tokens - count)
        return True

    def refill(self) -> None:
        """Fill the bucket up (``POST /reset``)."""
        self._tokens = self.capacity
        self._last = self._clock()


class FlowStats(Protocol):
    """The counters :class:`Slots` keeps up to date (fields of ``SandboxStats``)."""

    max_queued: int
    max_concurrent: int


class Slots:
    """Up to ``size`` requests handled at once; the others wait, first come first served.

    The semaphore is created by the first request that needs it, so in the server's own
    loop, and again when ``size`` changes: requests that already wait for or hold a slot of
    the old one keep it, new requests use the new one (so for a moment more than the new
    size may be held). ``stats()`` is where the maxima are written (it changes on reset).
    """

    def __init__(self, stats: Callable[[], FlowStats]) -> None:
        self._stats = stats
        self._size: int | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self.queued = 0  # requests waiting for a slot now
        self.concurrent = 0  # requests holding a slot now

    @contextlib.asynccontextmanager
    async def hold(self, size: int | None) -> AsyncIterator[None]:
        """Hold one of ``size`` slots for the block (no limit when ``size`` is None)."""
        if size is None:
            yield
            return
        if self._semaphore is None or self._size != size:
            self._semaphore, self._size = asyncio.Semaphore(size), size
        semaphore = self._semaphore
        if semaphore.locked():
            self.queued += 1
            stats = self._stats()
            stats.max_queued = max(stats.max_queued, self.queued)
            try:
                await semaphore.acquire()
            finally:
                self.queued -= 1
        else:
            await semaphore.acquire()  # free: returns at once
        self.concurrent += 1
        stats = self._stats()
        stats.max_concurrent = max(stats.max_concurrent, self.concurrent)
        try:
            yield
        finally:
            self.concurrent -= 1
            semaphore.release()
