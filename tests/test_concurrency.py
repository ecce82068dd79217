"""Adaptive concurrency (AIMD): grows while the API keeps up, backs off on back pressure."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from connector.core.classify import Outcome, Verdict
from connector.core.concurrency import AdaptiveLimit, AimdSettings, is_back_pressure
from connector.pipeline.slots import Slots


class Api:
    """Drives a controller: one round of requests per window, at the current limit (so the
    limit is reached), each answered after ``rtt``; the clock carries on across calls."""

    def __init__(self, controller: AdaptiveLimit) -> None:
        self.controller = controller
        self.now = 0.0

    def windows(self, rtts: list[float], *, back_pressure: bool = False) -> list[int]:
        controller, limits = self.controller, []
        for rtt in rtts:
            sent = controller.limit
            for in_flight in range(1, sent + 1):
                controller.started(in_flight)
            self.now += rtt
            for _ in range(sent):
                limit = controller.answered(
                    None if back_pressure else rtt, back_pressure=back_pressure, now=self.now
                )
            limits.append(limit)
        return limits


def test_a_steady_api_lets_the_limit_grow_by_one_per_window_up_to_the_maximum() -> None:
    limits = Api(AdaptiveLimit(AimdSettings(initial=1, maximum=8))).windows([0.05] * 20)
    assert limits[:3] == [1, 2, 3]  # the first window only sets the reference
    assert max(limits) == 8
    assert limits[-1] == 8


def test_back_pressure_multiplies_the_limit_down_once_per_window() -> None:
    api = Api(AdaptiveLimit(AimdSettings(initial=1, maximum=32)))
    api.windows([0.05] * 40)
    assert api.controller.limit == 32
    limits = api.windows([0.05] * 5, back_pressure=True)
    assert limits == [28, 25, 22, 19, 17]  # floor(limit * 0.9), once per window


def test_a_slower_api_is_a_decrease_too() -> None:
    api = Api(AdaptiveLimit(AimdSettings(initial=8, maximum=8)))
    api.windows([0.050, 0.052, 0.049, 0.051, 0.050, 0.050])
    before = api.controller.limit
    limits = api.windows([0.5])
    assert limits[-1] < before


@given(
    initial=st.integers(1, 16),
    steps=st.lists(
        st.tuples(st.floats(0.001, 2.0), st.booleans(), st.integers(0, 20)), max_size=100
    ),
)
def test_the_limit_stays_within_one_and_the_maximum(
    initial: int, steps: list[tuple[float, bool, int]]
) -> None:
    controller = AdaptiveLimit(AimdSettings(initial=initial, maximum=16))
    now = 0.0
    for rtt, pressure, started in steps:
        for in_flight in range(1, started + 1):
            controller.started(in_flight)
        now += rtt
        assert 1 <= controller.answered(rtt, back_pressure=pressure, now=now) <= 16


def test_what_counts_as_back_pressure() -> None:
    def retry(status: int | None, code: str | None = None, reason: str = "x") -> Outcome:
        return Outcome(Verdict.RETRY, reason, status, code)

    assert is_back_pressure(retry(429))
    assert is_back_pressure(retry(503))
    assert is_back_pressure(retry(200, "500", "body_code_500"))
    assert is_back_pressure(retry(None, None, "timeout"))
    assert is_back_pressure(retry(None, None, "connection:ClientConnectorError"))
    assert not is_back_pressure(retry(200, None, "malformed_body"))  # not the load
    assert not is_back_pressure(Outcome(Verdict.DELIVERED, "ok", 200, "200"))
    assert not is_back_pressure(Outcome(Verdict.REFUSED, "http_400", 400))


async def test_slots_hold_requests_beyond_the_adaptive_limit() -> None:
    slots = Slots(4, adaptive=AdaptiveLimit(AimdSettings(initial=1, maximum=4)))
    entered: list[int] = []

    async def batch(number: int, hold: asyncio.Event) -> None:
        async with slots:
            entered.append(number)
            await hold.wait()

    first_done, second_done = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(batch(1, first_done))
    second = asyncio.create_task(batch(2, second_done))
    await asyncio.sleep(0.05)
    assert entered == [1]  # the limit is 1: the second batch waits for the slot
    first_done.set()
    await first
    await asyncio.sleep(0.05)
    assert entered == [1, 2]
    second_done.set()
    await second
    assert Slots(2).limit == 2  # fixed: max_in_flight
