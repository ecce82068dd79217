"""A token bucket whose grants are first come, first served. Pure: time is passed in.

The bucket holds at most ``rate * burst_s`` tokens and starts full. ``reserve`` takes a
request's tokens at once, into debt if there are not enough, and says how long the
request must wait before it is sent: until the debt is paid back at ``rate``. A later
request sees the earlier ones' debt, so it never goes first; and a request larger than
the whole bucket is not starved, it only waits longer (the virtual-scheduling form of a
token bucket, as in GCRA).
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        if rate <= 0 or burst_s <= 0:
            raise ValueError("rate and burst_s must be positive")
        self._rate = rate
        self._burst_s = burst_s
        self._tokens = rate * burst_s
        self._at = now

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> float:
        return self._rate * self._burst_s

    def reserve(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens; returns the seconds to wait before sending (0: at once)."""
        self._refill(now)
        self._tokens -= cost
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def set_rate(self, rate: float, now: float) -> None:
        """A new rate from now on (the member's share changed). What was granted so far
        keeps its wait; the bucket's fill is capped to the new capacity."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._refill(now)
        self._rate = rate
        self._tokens = min(self._tokens, self.capacity)

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self._rate)
            self._at = now
