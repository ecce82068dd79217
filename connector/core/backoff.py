"""The one backoff policy: capped exponential with full jitter, for every retry loop
(the API sink, its halt probe, the dead-letter writer, the Schema Registry gate)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry ``n`` (counted from 0) waits a uniform time in ``[0, ceiling(n)]``, where
    ``ceiling(n) = min(max_s, initial_s * 2**n)``. Full jitter spreads retrying senders
    apart, so a recovering endpoint is not hit by all of them at once."""

    initial_s: float
    max_s: float

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < initial ({self.initial_s}) <= max ({self.max_s})")

    def ceiling(self, attempt: int) -> float:
        return min(self.max_s, self.initial_s * 2.0 ** min(max(attempt, 0), 62))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))
