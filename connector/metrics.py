"""Every metric the connector exposes, defined once on an injected registry.

Names carry the ``event_sink_`` prefix and base units. Labels are bounded: topic,
partition, outcome, reason, stage, code (a status class), kind; never an event key or a
user id. Series whose labels are known up front are created at zero, so a dashboard sees
"0" rather than "no data" before the first event.
"""

from __future__ import annotations

import contextlib
from typing import Generic, TypeVar

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

from connector import __version__
from connector.config_routes import DEFAULT_ROUTE
from connector.metrics_bulk import BulkHistogram

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


class MetricFamilies:
    """Every metric family, declared once per registry. Each carries ``route`` as its
    first label (bounded: the config's routes); :class:`Metrics` is one route's view."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # One `_created` series per counter and histogram doubles the output for a value no
        # alert or dashboard of ours uses. (The library's switch is process-wide.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        # What a platform team's dashboards expect of any Python service: CPU, memory,
        # file descriptors, start time, interpreter and collector figures.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        p = "event_sink_"
        tp = ("route", "topic", "partition")
        r = ("route",)
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
            ("route", "stage", "reason"),
            registry=registry,
        )
        self.records_failed = Counter(
            p + "records_failed",
            "Records that could not be decoded or mapped.",
            ("route", "stage", "reason"),
            registry=registry,
        )
        self.records_skipped = Counter(
            p + "records_skipped",
            "Records that carry no event and were passed over on purpose, by reason.",
            ("route", "reason"),
            registry=registry,
        )
        self.batches_sent = Counter(
            p + "batches_sent",
            "Batch send attempts, by how the API's answer was classified.",
            ("route", "outcome"),
            registry=registry,
        )
        self.http_requests = Counter(
            p + "http_requests",
            "Requests to the import API, by status class (error: no answer).",
            ("route", "code"),
            registry=registry,
        )
        self.http_retries = Counter(
            p + "http_retries",
            "Requests that will be sent again, by reason.",
            ("route", "reason"),
            registry=registry,
        )
        self.retry_budget_exhausted = Counter(
            p + "retry_budget_exhausted",
            "Batches that spent their retry budget (http.retry.max_attempts or "
            "give_up_after_s) and were bisected, each part tried once.",
            r,
            registry=registry,
        )
        self.rate_limit_share = Gauge(
            p + "rate_limit_share",
            "What this member may send per second under http.rate_limit (its share of a "
            "group-wide cap), by unit: events or requests.",
            ("route", "unit"),
            registry=registry,
        )
        self.rate_limit_wait = Counter(
            p + "rate_limit_wait_seconds",
            "Seconds requests waited for rate-limit tokens before being sent (summed).",
            r,
            registry=registry,
        )
        self.concurrency_limit = Gauge(
            p + "http_concurrency_limit",
            "Requests that may be in flight now: http.max_in_flight, or the adaptive limit.",
            r,
            registry=registry,
        )
        self.http_request_bytes = Counter(
            p + "http_request_bytes",
            "Request body bytes sent to the import API (as sent: compressed when gzip), "
            "retries included.",
            r,
            registry=registry,
        )
        self.last_delivery = Gauge(
            p + "last_delivery_timestamp_seconds",
            "Unix time of the last batch the API accepted (0: none yet).",
            r,
            registry=registry,
        )
        self.http_in_flight = Gauge(
            p + "http_requests_in_flight", "Requests awaiting an answer.", r, registry=registry
        )
        self.http_duration = Histogram(
            p + "http_request_duration_seconds",
            "Time from sending a request to its answer.",
            buckets=_REQUEST_BUCKETS,
            labelnames=r,
            registry=registry,
        )
        self.batch_events = Histogram(
            p + "batch_events",
            "Events per batch.",
            buckets=_BATCH_EVENT_BUCKETS,
            labelnames=r,
            registry=registry,
        )
        self.batch_bytes = Histogram(
            p + "batch_bytes",
            "Request body size per batch.",
            buckets=_BATCH_BYTE_BUCKETS,
            labelnames=r,
            registry=registry,
        )
        self.end_to_end_latency = BulkHistogram(
            p + "end_to_end_latency_seconds",
            "From the record's Kafka timestamp to the API's acceptance.",
            _LATENCY_BUCKETS,
            registry,
            labelnames=r,
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
            p + "partitions_assigned", "Partitions assigned to this member.", r, registry=registry
        )
        self.paused = Gauge(
            p + "paused",
            "1 while consumption is paused, by reason.",
            ("route", "reason"),
            registry=registry,
        )
        self.rebalances = Counter(
            p + "rebalances", "Rebalance events, by kind.", ("route", "kind"), registry=registry
        )
        self.backpressure_pauses = Counter(
            p + "backpressure_pauses",
            "Times consumption started to wait: too many events pending, or the API halted.",
            r,
            registry=registry,
        )
        self.commit_duration = Histogram(
            p + "offset_commit_duration_seconds",
            "From sending an offset commit to the broker's answer.",
            buckets=_COMMIT_BUCKETS,
            labelnames=r,
            registry=registry,
        )
        self.dlq_write_failures = Counter(
            p + "dlq_write_failures",
            "Dead-letter write attempts that failed (each is retried; nothing is skipped).",
            r,
            registry=registry,
        )
        self.offset_commits = Counter(
            p + "offset_commits",
            "Offset commits, by outcome.",
            ("route", "outcome"),
            registry=registry,
        )
        self.hot_path = Gauge(
            p + "hot_path",
            "1 for the path that decodes and maps the route's records: native (the "
            "compiled extension) or python.",
            ("route", "path"),
            registry=registry,
        )
        self.route_halted = Gauge(
            p + "route_halted",
            "1 while the route cannot deliver (readiness fails for it: the API refuses "
            "the token, the brokers, registry or dead-letter topic are away), else 0.",
            r,
            registry=registry,
        )
        self.build_info = Gauge(
            p + "build_info", "Always 1; the version label.", ("version",), registry=registry
        )
        self.build_info.labels(__version__).set(1)


M = TypeVar("M", Counter, Gauge, Histogram)


class Labelled(Generic[M]):
    """A family seen from one route: ``labels(...)`` takes the labels after ``route``."""

    __slots__ = ("_children", "family", "route")

    def __init__(self, family: M, route: str) -> None:
        self.family: M = family
        self.route = route
        # prometheus_client's labels() takes a lock and builds the key on every call (a
        # few µs, per batch and request); its children are stable until removed.
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.family.labels(self.route, *values)
        return child

    def remove(self, *values: str) -> None:
        self._children.pop(values, None)
        self.family.remove(self.route, *values)


class Metrics:
    """One route's metrics (``route`` is the label's value). ``Metrics(registry)`` declares
    the families on the registry; :meth:`for_route` gives another route's view of them."""

    def __init__(
        self,
        registry: CollectorRegistry,
        route: str = DEFAULT_ROUTE,
        families: MetricFamilies | None = None,
    ) -> None:
        self.registry = registry
        self.route = route
        if families is None:
            families = MetricFamilies(registry)
        self._families = families
        self.records_consumed = Labelled(families.records_consumed, route)
        self.records_delivered = Labelled(families.records_delivered, route)
        self.records_dead_lettered = Labelled(families.records_dead_lettered, route)
        self.records_failed = Labelled(families.records_failed, route)
        self.records_skipped = Labelled(families.records_skipped, route)
        self.batches_sent = Labelled(families.batches_sent, route)
        self.http_requests = Labelled(families.http_requests, route)
        self.http_retries = Labelled(families.http_retries, route)
        self.rate_limit_share = Labelled(families.rate_limit_share, route)
        self.consumer_lag = Labelled(families.consumer_lag, route)
        self.committed_offset = Labelled(families.committed_offset, route)
        self.pending_records = Labelled(families.pending_records, route)
        self.paused = Labelled(families.paused, route)
        self.rebalances = Labelled(families.rebalances, route)
        self.offset_commits = Labelled(families.offset_commits, route)
        self.retry_budget_exhausted = families.retry_budget_exhausted.labels(route)
        self.rate_limit_wait = families.rate_limit_wait.labels(route)
        self.concurrency_limit = families.concurrency_limit.labels(route)
        self.http_request_bytes = families.http_request_bytes.labels(route)
        self.last_delivery = families.last_delivery.labels(route)
        self.http_in_flight = families.http_in_flight.labels(route)
        self.http_duration = families.http_duration.labels(route)
        self.batch_events = families.batch_events.labels(route)
        self.batch_bytes = families.batch_bytes.labels(route)
        self.end_to_end_latency = families.end_to_end_latency.labels(route)
        self.partitions_assigned = families.partitions_assigned.labels(route)
        self.backpressure_pauses = families.backpressure_pauses.labels(route)
        self.commit_duration = families.commit_duration.labels(route)
        self.dlq_write_failures = families.dlq_write_failures.labels(route)
        self.hot_path = Labelled(families.hot_path, route)
        self.route_halted = families.route_halted.labels(route)
        self.records_skipped.labels("tombstone")
        self.route_halted.set(0)
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

    def for_route(self, route: str) -> Metrics:
        """Another route's view of the same families (one registry, one /metrics)."""
        return Metrics(self.registry, route, self._families)

    def total(self, counter: Labelled[Counter] | Counter) -> float:
        """A counter's value for this route, summed over its other labels (the progress
        log, the demo)."""
        if isinstance(counter, Labelled):
            samples = (
                sample
                for metric in counter.family.collect()
                for sample in metric.samples
                if sample.labels.get("route") == self.route
            )
        else:
            samples = (sample for metric in counter.collect() for sample in metric.samples)
        return float(sum(sample.value for sample in samples if sample.name.endswith("_total")))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a partition's gauges once it is no longer ours (no stale lag)."""
        for gauge in (self.consumer_lag, self.committed_offset, self.pending_records):
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))
