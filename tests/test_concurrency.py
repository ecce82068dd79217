"""Adaptive concurrency (AIMD): grows while the API keeps up, backs off on back pressure."""

from __future__ import annotations

import asyncio
import statistics

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


def queue_windows(
    controller: AdaptiveLimit, *, seconds: float, slots: int, base: float
) -> list[int]:
    """An API that handles ``slots`` requests at once and queues the rest: at a limit L the
    RTT is ``base`` x max(1, L / slots). Returns the limit after each window."""
    api, limits = Api(controller), []
    while api.now < seconds:
        rtt = base * max(1.0, controller.limit / slots)
        limits += api.windows([rtt])
    return limits


def test_behind_an_api_that_queues_the_limit_settles_near_its_slots() -> None:
    limits = queue_windows(
        AdaptiveLimit(AimdSettings(initial=1, maximum=32)), seconds=300, slots=4, base=0.05
    )
    settled = limits[len(limits) // 3 :]
    assert 4 <= statistics.median(settled) <= 8, sorted(set(settled))
    assert max(settled) <= 8  # a queue above 0.3 x the floor stops growth, above 0.6 x shrinks


def test_without_the_queueing_guard_arc_creeps_to_the_maximum() -> None:
    settings = AimdSettings(initial=1, maximum=32, queue_tolerance=None)
    limits = queue_windows(AdaptiveLimit(settings), seconds=120, slots=4, base=0.05)
    assert min(limits[len(limits) // 2 :]) > 2 * 4  # above 2K: what the guard is for


def test_a_lasting_rise_of_the_apis_own_latency_is_learnt() -> None:
    controller = AdaptiveLimit(AimdSettings(initial=1, maximum=16, probe_interval_s=60))
    api = Api(controller)
    api.windows([0.05] * 40)
    assert controller.limit == 16
    # The API is 4x slower now, whatever we send: read as queueing, the limit falls to 1,
    # where the floor follows the RTT; then it grows back (well before the probe at 60 s).
    slower = api.windows([0.2] * 60)
    assert min(slower) == 1
    assert controller.floor is not None
    assert controller.floor > 0.15
    assert slower[-1] == 16
    assert api.now < 15


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
