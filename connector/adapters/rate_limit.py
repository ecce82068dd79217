"""The rate cap every sender of the process shares (``http.rate_limit``).

Each request waits for its tokens before it is sent, never after: one token per event
from the events bucket, one from the requests bucket, whichever is set. Grants are first
come, first served (see :mod:`connector.core.ratelimit`). With ``scope: group`` the
pipeline sets this member's share of the cap on every rebalance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from connector.config_http import RateLimitSettings
from connector.core.ratelimit import TokenBucket
from connector.metrics import Metrics

_UNITS = ("events", "requests")


class RateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.enabled:
            raise ValueError("http.rate_limit sets no rate")
        self._clock, self._sleep, self._metrics = clock, sleep, metrics
        now = clock()
        caps = dict(zip(_UNITS, (settings.events_per_s, settings.requests_per_s), strict=True))
        self._caps = {unit: cap for unit, cap in caps.items() if cap is not None}
        self._buckets = {
            unit: TokenBucket(cap, settings.burst_s, now) for unit, cap in self._caps.items()
        }
        self.share = 1.0  # of the configured caps: this member's part of the group's
        self._show()

    def rate(self, unit: str) -> float | None:
        """What this member may send per second now (events or requests)."""
        bucket = self._buckets.get(unit)
        return None if bucket is None else bucket.rate

    async def acquire(self, events: int) -> None:
        """Wait until a request of ``events`` events may be sent."""
        now = self._clock()
        wait = 0.0
        for unit, bucket in self._buckets.items():
            wait = max(wait, bucket.reserve(events if unit == "events" else 1, now))
        if wait > 0:
            if self._metrics is not None:
                self._metrics.rate_limit_wait.inc(wait)
            await self._sleep(wait)

    def set_share(self, share: float) -> None:
        """This member may send ``share`` (0 < share ≤ 1) of the configured caps."""
        if not 0 < share <= 1:
            raise ValueError(f"a share must be within (0, 1], not {share}")
        now = self._clock()
        self.share = share
        for unit, bucket in self._buckets.items():
            bucket.set_rate(self._caps[unit] * share, now)
        self._show()

    def _show(self) -> None:
        if self._metrics is not None:
            for unit, bucket in self._buckets.items():
                self._metrics.rate_limit_share.labels(unit).set(bucket.rate)
