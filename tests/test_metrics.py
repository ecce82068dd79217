"""The bulk latency histogram reads exactly like prometheus_client's own Histogram."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

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


def test_bulk_histogram_text_format_names_the_type_and_the_bounds() -> None:
    registry = CollectorRegistry()
    BulkHistogram("latency_seconds", "From A to B.", (0.5, 1), registry).observe_many([0.7, 3])
    text = generate_latest(registry).decode()
    assert "# TYPE latency_seconds histogram" in text
    assert 'latency_seconds_bucket{le="0.5"} 0.0' in text
    assert 'latency_seconds_bucket{le="1.0"} 1.0' in text
    assert 'latency_seconds_bucket{le="+Inf"} 2.0' in text
    assert "latency_seconds_count 2.0" in text
