"""A histogram observed a batch at a time: the end-to-end latency of every event."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class BulkSeries:
    """One label set of a :class:`BulkHistogram`."""

    __slots__ = ("_bounds", "_counts", "_lock", "sum")

    def __init__(self, bounds: list[float], lock: threading.Lock) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._lock = lock
        self.sum = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        """Observe each value; negative ones (clock skew) count as 0."""
        bounds, counts, total = self._bounds, self._counts, 0.0
        with self._lock:
            for value in values:
                if value < 0.0:
                    value = 0.0
                counts[bisect.bisect_left(bounds, value)] += 1
                total += value
            self.sum += total

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_ages(self, stamps_ms: list[int | None], now_ms: float) -> None:
        """``observe_many`` of each stamp's age in seconds, ``(now_ms - stamp) / 1000``;
        a None stamp (the broker gave none) is skipped. By sorting the stamps and one
        bisect per bucket bound, not a Python step per value: a delivered batch observes
        every event. Bounds must be positive (they are: latencies)."""
        stamps = (
            sorted(s for s in stamps_ms if s is not None)
            if None in stamps_ms
            else sorted(cast("list[int]", stamps_ms))
        )
        if not stamps:
            return
        count = len(stamps)
        # The sum, exactly: the ages above 0 are of the stamps before now.
        past = stamps[: bisect.bisect_left(stamps, now_ms)]
        whole_ms = int(now_ms)
        total = ((whole_ms * len(past) - sum(past)) + (now_ms - whole_ms) * len(past)) / 1000
        # Every age lies between these two (the same expression as below): a bound
        # outside them needs no search.
        youngest, oldest_age = (now_ms - stamps[-1]) / 1000, (now_ms - stamps[0]) / 1000
        with self._lock:
            below, counts = 0, self._counts
            for index, bound in enumerate(self._bounds):
                if bound < youngest:
                    upto = 0
                elif bound >= oldest_age:
                    upto = count
                else:
                    # The oldest whole-millisecond stamp whose age, by the very
                    # expression observe_many is given, is at most the bound: rounding
                    # cannot move a value across a bound.
                    oldest = math.ceil(now_ms - bound * 1000)
                    while (now_ms - (oldest - 1)) / 1000 <= bound:
                        oldest -= 1
                    while (now_ms - oldest) / 1000 > bound:
                        oldest += 1
                    upto = count - bisect.bisect_left(stamps, oldest)
                counts[index] += upto - below
                below = upto
            counts[-1] += count - below
            self.sum += total

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts per upper bound, as the text format writes them (under the lock)."""
        cumulative, buckets = 0, []
        for bound, count in zip([*self._bounds, float("inf")], self._counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), float(cumulative)))  # type: ignore[no-untyped-call]
        return buckets


class BulkHistogram(Collector):
    """A histogram fed a whole batch of observations at once.

    The end-to-end latency is observed for every event: ``Histogram.observe`` takes a
    lock per call (about 1.5 µs), this takes one per batch and a bisect per value.
    Exposed exactly like a ``Histogram`` (``_bucket``, ``_count``, ``_sum``), with labels
    when ``labelnames`` are given (then observe through :meth:`labels`).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        registry: CollectorRegistry,
        labelnames: tuple[str, ...] = (),
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._bounds = sorted(float(bound) for bound in buckets)
        self._lock = threading.Lock()  # scrapes may come from another thread
        self._series: dict[tuple[str, ...], BulkSeries] = {}
        if not labelnames:
            self._series[()] = BulkSeries(self._bounds, self._lock)
        registry.register(self)

    def labels(self, *values: str) -> BulkSeries:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {values}")
        with self._lock:
            series = self._series.get(values)
            if series is None:
                series = self._series[values] = BulkSeries(self._bounds, self._lock)
        return series

    def observe_many(self, values: Iterable[float]) -> None:
        self.labels().observe_many(values)

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_ages(self, stamps_ms: list[int | None], now_ms: float) -> None:
        self.labels().observe_ages(stamps_ms, now_ms)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            self._name, self._documentation, labels=list(self._labelnames)
        )
        with self._lock:
            for values, series in self._series.items():
                family.add_metric(list(values), series.buckets(), series.sum)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)
