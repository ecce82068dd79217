"""The token bucket: first come first served, never above the rate, never starving."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.ratelimit import TokenBucket

requests = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=2.0),  # gap since the previous request, s
        st.integers(min_value=1, max_value=2_000),  # events (tokens) of the request
    ),
    min_size=1,
    max_size=200,
)


def schedule(
    rate: float, burst_s: float, arrivals: list[tuple[float, int]]
) -> list[tuple[float, float, int]]:
    """(arrival, send time, cost) of each request, in arrival order."""
    bucket = TokenBucket(rate, burst_s, now=0.0)
    now, out = 0.0, []
    for gap, cost in arrivals:
        now += gap
        out.append((now, now + bucket.reserve(cost, now), cost))
    return out


@given(
    rate=st.floats(min_value=1, max_value=10_000),
    burst_s=st.floats(min_value=0.05, max_value=5),
    arrivals=requests,
)
def test_grants_keep_arrival_order_and_never_exceed_rate_plus_burst(
    rate: float, burst_s: float, arrivals: list[tuple[float, int]]
) -> None:
    sent = schedule(rate, burst_s, arrivals)
    sends = [send for _, send, _ in sent]
    assert sends == sorted(sends)  # first come, first served: nobody overtakes
    assert all(send >= arrival for arrival, send, _ in sent)  # waits before, never after
    granted = 0.0
    for _, send, cost in sent:
        granted += cost
        # Everything sent by then fits in a full bucket plus what the rate refilled.
        assert granted <= rate * burst_s + rate * send + 1e-6 * granted


@given(
    rate=st.floats(min_value=1, max_value=10_000),
    burst_s=st.floats(min_value=0.05, max_value=5),
    arrivals=requests,
)
def test_no_request_waits_longer_than_the_debt_ahead_of_it(
    rate: float, burst_s: float, arrivals: list[tuple[float, int]]
) -> None:
    # A request larger than the bucket goes into debt and waits for it; it is never
    # starved by smaller ones, and its wait is bounded by what arrived before it.
    sent = schedule(rate, burst_s, arrivals)
    queued = 0.0
    last_arrival = 0.0
    for arrival, send, cost in sent:
        queued = max(0.0, queued - (arrival - last_arrival) * rate) + cost
        last_arrival = arrival
        assert send - arrival <= queued / rate + 1e-9


def test_a_steady_overload_is_sent_at_the_rate() -> None:
    # 1,000 events/s offered for 60 s against a 500 events/s cap with a 1 s burst.
    sent = schedule(500, 1.0, [(0.1, 100)] * 600)
    last = sent[-1][1]
    # The first arrives at 0.1 s with the bucket full; the rest comes at 500 a second.
    assert last == pytest.approx(0.1 + (600 * 100 - 500) / 500, rel=1e-9)


def test_a_new_rate_applies_from_then_on() -> None:
    bucket = TokenBucket(100, 1.0, now=0.0)
    assert bucket.reserve(100, 0.0) == 0.0  # the full bucket
    bucket.set_rate(50, 0.0)  # half the share: capacity 50
    assert bucket.capacity == 50
    assert bucket.reserve(50, 0.0) == pytest.approx(1.0)  # 50 tokens at 50/s
    with pytest.raises(ValueError, match="positive"):
        bucket.set_rate(0, 1.0)
