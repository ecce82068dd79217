"""The bulk latency histogram reads exactly like prometheus_client's own Histogram."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from connector.metrics import Metrics
from connector.metrics_bulk import BulkHistogram

BUCKETS = (0.01, 0.05, 0.1, 1, 2.5, 10)


@given(
    st.lists(
        st.lists(st.floats(min_value=-5, max_value=50, allow_nan=False), max_size=20),
        max_size=8,
    )
)
def test_bulk_histogram_exposes_what_histogram_would(batches: list[list[float]]) -> None:
    bulk_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("latency_seconds", "doc", BUCKETS, bulk_registry)
    reference = Histogram("latency_seconds", "doc", buckets=BUCKETS, registry=reference_registry)
    for batch in batches:
        bulk.observe_many(batch)
        for value in batch:
            reference.observe(max(0.0, value))  # the connector clamps clock skew to 0
    expected = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in reference_registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in bulk_registry.collect()
        for sample in family.samples
    }
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(found[key] - value) <= 1e-9 * max(1.0, abs(value)), key


@given(
    st.lists(
        st.lists(
            st.one_of(
                st.none(), st.integers(min_value=1_699_999_000_000, max_value=1_700_000_090_000)
            ),
            max_size=40,
        ),
        max_size=6,
    ),
    st.floats(min_value=1_700_000_000_000, max_value=1_700_000_060_000),
)
def test_observing_ages_counts_what_observing_each_age_would(
    batches: list[list[int | None]], now_ms: float
) -> None:
    # Stamps in the past, at now and in the future (clock skew: 0), some missing.
    by_age, each = CollectorRegistry(), CollectorRegistry()
    ages = BulkHistogram("latency_seconds", "doc", BUCKETS, by_age)
    values = BulkHistogram("latency_seconds", "doc", BUCKETS, each)
    for batch in batches:
        ages.observe_ages(batch, now_ms)
        values.observe_many([(now_ms - stamp) / 1000 for stamp in batch if stamp is not None])

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        return {
            sample.name + str(sample.labels): sample.value
            for family in registry.collect()
            for sample in family.samples
        }

    found, expected = samples(by_age), samples(each)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if key.startswith("latency_seconds_sum"):
            assert abs(found[key] - value) <= 1e-9 * max(1.0, abs(value)), key
        else:
            assert found[key] == value, key


def test_bulk_histogram_text_format_names_the_type_and_the_bounds() -> None:
    registry = CollectorRegistry()
    BulkHistogram("latency_seconds", "From A to B.", (0.5, 1), registry).observe_many([0.7, 3])
    text = generate_latest(registry).decode()
    assert "# TYPE latency_seconds histogram" in text
    assert 'latency_seconds_bucket{le="0.5"} 0.0' in text
    assert 'latency_seconds_bucket{le="1.0"} 1.0' in text
    assert 'latency_seconds_bucket{le="+Inf"} 2.0' in text
    assert "latency_seconds_count 2.0" in text


def test_a_forgotten_partitions_gauge_comes_back_when_set_again() -> None:
    # Labelled children are cached: a removed one must not be handed out again, detached
    # from the registry (its values would silently go nowhere).
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    def lag() -> float | None:
        return registry.get_sample_value(
            "event_sink_consumer_lag", {"route": metrics.route, "topic": "t", "partition": "0"}
        )

    metrics.consumer_lag.labels("t", "0").set(5)
    assert lag() == 5
    metrics.forget_partition("t", 0)
    assert lag() is None
    metrics.consumer_lag.labels("t", "0").set(7)
    assert lag() == 7


def test_an_age_exactly_on_a_bound_counts_in_that_bucket() -> None:
    # le="1.0" holds an age of exactly 1 s, whether it is the batch's youngest, oldest or
    # only one; the same for every bound.
    now = 1_700_000_000_000.0
    for stamps in ([now - 1000], [now - 1000, now - 5000], [now - 10, now - 1000]):
        by_age, each = CollectorRegistry(), CollectorRegistry()
        BulkHistogram("l", "doc", BUCKETS, by_age).observe_ages([int(s) for s in stamps], now)
        BulkHistogram("l", "doc", BUCKETS, each).observe_many([(now - s) / 1000 for s in stamps])
        assert generate_latest(by_age) == generate_latest(each), stamps
