"""Adaptive concurrency: how many requests may be in flight, by AIMD on the API's answers,
the way Vector's adaptive request concurrency (ARC) does. Pure: time is passed in.

Answers are gathered in windows one mean round-trip time long. At a window's end:
- the limit grows by 1 if it was reached during the window, no answer signalled back
  pressure, and the window's mean RTT is at or below the moving mean;
- it is multiplied by ``decrease_ratio`` (rounded down, at least 1) on back pressure (429,
  any 5xx status or body code, a timeout, a connection error) or when the window's RTT is
  above the moving mean + ``rtt_deviation_scale`` standard deviations (and 1 % of it).
The moving mean and variance are exponentially weighted (``ewma_alpha``). Only delivered
answers are RTT measurements.

ARC alone reads only changes of the RTT, so behind an API that queues what it cannot take at
once the limit creeps far above the API's capacity: each +1 raises the RTT a little, the
moving mean follows, and a slow rise never exceeds mean + k sigma. The queueing guard adds
a floor, Vegas-style: the lowest RTT of the windows in which the limit was reached (a
window's mean, not the moving mean, which starts high while connections open). The part of
a window's RTT above the floor is time spent queueing at the API: the limit grows only while
it is at most ``queue_tolerance`` of the floor, and it decreases when it is above twice
that. So that a lasting change of the API's own latency is learnt, the floor is measured
again every ``probe_interval_s``: the limit is halved, held for a few windows while the
queue drains, and the floor restarts from what those windows measure. At a limit of 1 the
floor follows the RTT at once: a single request does not queue behind our own.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.core.classify import Outcome, Verdict


@dataclass(frozen=True)
class AimdSettings:
    initial: int = 1
    maximum: int = 8
    decrease_ratio: float = 0.9
    rtt_deviation_scale: float = 2.5
    ewma_alpha: float = 0.4
    queue_tolerance: float | None = 0.3  # None: ARC alone, no queueing guard
    probe_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.initial <= self.maximum:
            raise ValueError("the initial limit must be within 1..maximum")
        if not 0 < self.decrease_ratio < 1 or not 0 < self.ewma_alpha < 1:
            raise ValueError("decrease_ratio and ewma_alpha must be within (0, 1)")
        if self.rtt_deviation_scale <= 0:
            raise ValueError("rtt_deviation_scale must be positive")
        if self.queue_tolerance is not None and self.queue_tolerance <= 0:
            raise ValueError("queue_tolerance must be positive")
        if self.probe_interval_s <= 0:
            raise ValueError("probe_interval_s must be positive")


# Windows a probe holds the halved limit: the first drains what queued at the old limit, the
# rest measure the floor.
_PROBE_WINDOWS = 3


def is_back_pressure(outcome: Outcome) -> bool:
    """429, any 5xx (HTTP status or an HTTP 200's body code), a timeout, no connection."""
    if outcome.verdict is not Verdict.RETRY:
        return False
    status, code = outcome.status, outcome.code or ""
    if status == 429 or (status is not None and 500 <= status <= 599):
        return True
    if (len(code) == 3 and code.startswith("5")) or code == "429":
        return True
    return outcome.reason == "timeout" or outcome.reason.startswith("connection:")


class AdaptiveLimit:
    def __init__(self, settings: AimdSettings) -> None:
        self._settings = settings
        self.limit = settings.initial
        self._mean: float | None = None  # moving mean of the windows' RTT
        self._variance = 0.0
        self._next_update = 0.0
        self._window_sum = 0.0
        self._window_count = 0
        self._back_pressure = False
        self._reached = False
        self.floor: float | None = None  # the queueing guard's reference RTT
        self._next_probe: float | None = None
        self._probing = 0  # windows of the current probe left

    def started(self, in_flight: int) -> None:
        """A request went out; ``in_flight`` now, counted by the slots (their one owner)."""
        if in_flight >= self.limit:
            self._reached = True

    def answered(self, rtt_s: float | None, *, back_pressure: bool, now: float) -> int:
        """One answer (an attempt: a retry is one too): its RTT if it was a delivery, and
        whether it signalled back pressure. Returns the limit from now on.

        Windows close on answers, not on finished requests: a batch retried through a storm
        of 429s holds its slot the whole time, and the limit must fall meanwhile."""
        if back_pressure:
            self._back_pressure = True
        if rtt_s is not None:
            self._window_sum += rtt_s
            self._window_count += 1
        current = self._window_sum / self._window_count if self._window_count else None
        if self._mean is None:
            if current is not None:  # the first measurement: the reference starts here
                self._mean = current
                self._next_update = now + current
                self._next_probe = now + self._settings.probe_interval_s
                self._reset()
            return self.limit
        if now < self._next_update:
            return self.limit
        reached = self._reached
        if self._probing:
            self._probing -= 1
        else:
            self._manage(current)
        if current is not None:
            self._update_moving(current)
            if reached and self._probing < _PROBE_WINDOWS - 1:
                self.floor = current if self.floor is None else min(self.floor, current)
        self._next_update = now + self._mean
        self._probe(now)
        self._reset()
        return self.limit

    def _probe(self, now: float) -> None:
        """Every probe_interval_s: halve the limit and measure the floor again."""
        settings = self._settings
        if settings.queue_tolerance is None or self._next_probe is None:
            return
        if now >= self._next_probe:
            self._next_probe = now + settings.probe_interval_s
            self.limit = max(1, self.limit // 2)
            self.floor = None
            self._probing = _PROBE_WINDOWS

    def _manage(self, current: float | None) -> None:
        settings, mean = self._settings, self._mean
        assert mean is not None
        # At least 1 % of the mean: a near-constant RTT must not trigger on rounding.
        threshold = max(self._variance**0.5 * settings.rtt_deviation_scale, 0.01 * mean)
        tolerance = 1e-9 * mean  # float rounding of an equal RTT is not "slower"
        queued = self._queued(current)
        share = settings.queue_tolerance or 0.0
        if (
            self.limit < settings.maximum
            and self._reached
            and not self._back_pressure
            and current is not None
            and current <= mean + tolerance
            and queued <= share
        ):
            self.limit += 1
        elif self.limit > 1 and (
            self._back_pressure
            or (current is not None and current > mean + threshold)
            or queued > 2 * share
        ):
            self.limit = max(1, int(self.limit * settings.decrease_ratio))
        elif self.limit == 1 and queued > 2 * share:
            # One request in flight does not queue behind ours: the API itself is slower.
            self.floor = current

    def _queued(self, current: float | None) -> float:
        """The share of the window's RTT above the floor: time spent queueing at the API.
        0 when there is no guard or nothing to compare."""
        if self._settings.queue_tolerance is None or self.floor is None or current is None:
            return 0.0
        return current / self.floor - 1 - 1e-9

    def _update_moving(self, point: float) -> None:
        assert self._mean is not None
        alpha = self._settings.ewma_alpha
        difference = point - self._mean
        increment = alpha * difference
        self._mean += increment
        self._variance = (1 - alpha) * (self._variance + difference * increment)

    def _reset(self) -> None:
        self._window_sum, self._window_count = 0.0, 0
        self._back_pressure = self._reached = False
