"""Every metric the connector exposes, defined once on an injected registry.

Names carry the ``event_sink_`` prefix and base units. Labels are bounded: topic,
partition, outcome, reason, stage, code (a status class), kind; never an event key or a
user id. Series whose labels are known up front are created at zero, so a dashboard sees
"0" rather than "no data" before the first event.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from connector import __version__

OUTCOMES = ("delivered", "retry", "refused", "too_large", "auth")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
PAUSE_REASONS = ("backpressure", "auth", "throttle")
REBALANCE_KINDS = ("assign", "revoke", "lost")
COMMIT_OUTCOMES = ("success", "failure")

# The API takes at most 500 events per request.
_BATCH_EVENT_BUCKETS = (1, 10, 50, 100, 200, 300, 400, 499, 500)
_BATCH_BYTE_BUCKETS = (1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 4e6, 8e6)
# Fine below 2 s, where a "p99 under 1 s" objective is read; coarse for backlogs.
_LATENCY_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1, 1.25, 1.5, 2),
    *(2.5, 5, 10, 20, 30, 60, 120, 300, 900, 3600),
)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def status_class(status: int | None) -> str:
    """``2xx``..``5xx`` for an answer, ``error`` when there was none (timeout, refused)."""
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


class BulkHistogram(Collector):
    """A histogram fed a whole batch of observations at once.

    The end-to-end latency is observed for every event: ``Histogram.observe`` takes a
    lock per call (about 1.5 µs), this takes one per batch and a bisect per value.
    Exposed exactly like a ``Histogram`` (``_bucket``, ``_count``, ``_sum``).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(float(bound) for bound in buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # scrapes may come from another thread
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        """Observe each value; negative ones (clock skew) count as 0."""
        bounds, counts, total = self._bounds, self._counts, 0.0
        with self._lock:
            for value in values:
                if value < 0.0:
                    value = 0.0
                counts[bisect.bisect_left(bounds, value)] += 1
                total += value
            self._sum += total

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), float(cumulative)))  # type: ignore[no-untyped-call]
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)


class Metrics:
    """The connector's metrics. One instance per registry; pass it where it is needed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # One `_created` series per counter and histogram doubles the output for a value no
        # alert or dashboard of ours uses. (The library's switch is process-wide.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        # What a platform team's dashboards expect of any Python service: CPU, memory,
        # file descriptors, start time, interpreter and collector figures.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        p = "event_sink_"
        tp = ("topic", "partition")
        self.records_consumed = Counter(
            p + "records_consumed", "Records read from Kafka.", tp, registry=registry
        )
        self.records_delivered = Counter(
            p + "records_delivered",
            "Records whose batch the API accepted (HTTP 200, body code 200).",
            tp,
            registry=registry,
        )
        self.records_dead_lettered = Counter(
            p + "records_dead_lettered",
            "Records written to the dead-letter topic.",
            ("stage", "reason"),
            registry=registry,
        )
        self.records_failed = Counter(
            p + "records_failed",
            "Records that could not be decoded or mapped.",
            ("stage", "reason"),
            registry=registry,
        )
        self.records_skipped = Counter(
            p + "records_skipped",
            "Records that carry no event and were passed over on purpose, by reason.",
            ("reason",),
            registry=registry,
        )
        self.batches_sent = Counter(
            p + "batches_sent",
            "Batch send attempts, by how the API's answer was classified.",
            ("outcome",),
            registry=registry,
        )
        self.http_requests = Counter(
            p + "http_requests",
            "Requests to the import API, by status class (error: no answer).",
            ("code",),
            registry=registry,
        )
        self.http_retries = Counter(
            p + "http_retries",
            "Requests that will be sent again, by reason.",
            ("reason",),
            registry=registry,
        )
        self.retry_budget_exhausted = Counter(
            p + "retry_budget_exhausted",
            "Batches that spent their retry budget (http.retry.max_attempts or "
            "give_up_after_s) and were bisected, each part tried once.",
            registry=registry,
        )
        self.rate_limit_share = Gauge(
            p + "rate_limit_share",
            "What this member may send per second under http.rate_limit (its share of a "
            "group-wide cap), by unit: events or requests.",
            ("unit",),
            registry=registry,
        )
        self.rate_limit_wait = Counter(
            p + "rate_limit_wait_seconds",
            "Seconds requests waited for rate-limit tokens before being sent (summed).",
            registry=registry,
        )
        self.concurrency_limit = Gauge(
            p + "http_concurrency_limit",
            "Requests that may be in flight now: http.max_in_flight, or the adaptive limit.",
            registry=registry,
        )
        self.http_request_bytes = Counter(
            p + "http_request_bytes",
            "Request body bytes sent to the import API (as sent: compressed when gzip), "
            "retries included.",
            registry=registry,
        )
        self.last_delivery = Gauge(
            p + "last_delivery_timestamp_seconds",
            "Unix time of the last batch the API accepted (0: none yet).",
            registry=registry,
        )
        self.http_in_flight = Gauge(
            p + "http_requests_in_flight", "Requests awaiting an answer.", registry=registry
        )
        self.http_duration = Histogram(
            p + "http_request_duration_seconds",
            "Time from sending a request to its answer.",
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            p + "batch_events", "Events per batch.", buckets=_BATCH_EVENT_BUCKETS, registry=registry
        )
        self.batch_bytes = Histogram(
            p + "batch_bytes",
            "Request body size per batch.",
            buckets=_BATCH_BYTE_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = BulkHistogram(
            p + "end_to_end_latency_seconds",
            "From the record's Kafka timestamp to the API's acceptance.",
            _LATENCY_BUCKETS,
            registry,
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag",
            "End offset minus committed offset, per assigned partition.",
            tp,
            registry=registry,
        )
        self.committed_offset = Gauge(
            p + "committed_offset",
            "The group's committed offset, per assigned partition.",
            tp,
            registry=registry,
        )
        self.pending_records = Gauge(
            p + "pending_records",
            "Records read and not yet delivered, per assigned partition.",
            tp,
            registry=registry,
        )
        self.partitions_assigned = Gauge(
            p + "partitions_assigned", "Partitions assigned to this member.", registry=registry
        )
        self.paused = Gauge(
            p + "paused",
            "1 while consumption is paused, by reason.",
            ("reason",),
            registry=registry,
        )
        self.rebalances = Counter(
            p + "rebalances", "Rebalance events, by kind.", ("kind",), registry=registry
        )
        self.backpressure_pauses = Counter(
            p + "backpressure_pauses",
            "Times consumption started to wait: too many events pending, or the API halted.",
            registry=registry,
        )
        self.commit_duration = Histogram(
            p + "offset_commit_duration_seconds",
            "From sending an offset commit to the broker's answer.",
            buckets=_COMMIT_BUCKETS,
            registry=registry,
        )
        self.dlq_write_failures = Counter(
            p + "dlq_write_failures",
            "Dead-letter write attempts that failed (each is retried; nothing is skipped).",
            registry=registry,
        )
        self.offset_commits = Counter(
            p + "offset_commits", "Offset commits, by outcome.", ("outcome",), registry=registry
        )
        self.build_info = Gauge(
            p + "build_info", "Always 1; the version label.", ("version",), registry=registry
        )
        self.build_info.labels(__version__).set(1)
        self.records_skipped.labels("tombstone")
        for outcome in OUTCOMES:
            self.batches_sent.labels(outcome)
        for code in STATUS_CLASSES:
            self.http_requests.labels(code)
        for reason in PAUSE_REASONS:
            self.paused.labels(reason).set(0)
        for kind in REBALANCE_KINDS:
            self.rebalances.labels(kind)
        for outcome in COMMIT_OUTCOMES:
            self.offset_commits.labels(outcome)

    @staticmethod
    def total(counter: Counter) -> float:
        """A counter's value summed over its labels (the progress log, the demo)."""
        return sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a partition's gauges once it is no longer ours (no stale lag)."""
        for gauge in (self.consumer_lag, self.committed_offset, self.pending_records):
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))
