"""The one backoff policy, bounds first: every retry loop of the project waits by it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.backoff import Backoff


@given(
    initial=st.floats(min_value=0.001, max_value=10),
    spread=st.floats(min_value=1, max_value=1000),
    attempt=st.integers(min_value=-5, max_value=10_000),
    seed=st.integers(),
)
def test_a_delay_is_within_zero_and_the_capped_exponential_ceiling(
    initial: float, spread: float, attempt: int, seed: int
) -> None:
    backoff = Backoff(initial, initial * spread)
    ceiling = backoff.ceiling(attempt)
    assert ceiling == min(initial * spread, initial * 2.0 ** min(max(attempt, 0), 62))
    assert 0.0 <= backoff.delay(attempt, random.Random(seed)) <= ceiling <= backoff.max_s


def test_full_jitter_spans_the_range_and_the_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.2, 30.0)
    assert [backoff.ceiling(n) for n in range(10)] == [0.2 * 2**n for n in range(8)] + [30, 30]
    rng = random.Random(0)
    delays = [backoff.delay(5, rng) for _ in range(200)]
    assert min(delays) < 6.4 * 0.1  # not "equal jitter": waits near zero happen
    assert max(delays) > 6.4 * 0.9
    with pytest.raises(ValueError, match="initial"):
        Backoff(5, 1)
