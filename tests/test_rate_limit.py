"""The rate cap: waits before sending, counts every request, shares follow partitions."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from test_sink import PUBLIC, batch_of

from connector.adapters.http_sink import HttpSink
from connector.adapters.rate_limit import RateLimiter
from connector.config import ConfigError, load_settings
from connector.config_http import RateLimitSettings
from connector.metrics import Metrics
from connector.pipeline.share import GroupShare
from devtools.sandbox import Faults, SandboxServer


class Clock:
    """A fake monotonic clock that the fake sleep moves on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(clock: Clock, metrics: Metrics | None = None, **caps: float) -> RateLimiter:
    return RateLimiter(RateLimitSettings(**caps), metrics=metrics, clock=clock, sleep=clock.sleep)


async def test_a_request_waits_for_its_tokens_before_it_goes() -> None:
    clock, metrics = Clock(), Metrics(CollectorRegistry())
    cap = limiter(clock, metrics, events_per_s=1000)
    await cap.acquire(600)  # the bucket starts full (1 s of the rate)
    await cap.acquire(600)  # 200 short: 0.2 s at 1,000 a second
    assert clock.sleeps == [pytest.approx(0.2)]
    assert metrics.registry.get_sample_value(
        "event_sink_rate_limit_wait_seconds_total", {"route": "default"}
    ) == pytest.approx(0.2)
    assert metrics.registry.get_sample_value(
        "event_sink_rate_limit_share", {"route": "default", "unit": "events"}
    ) == pytest.approx(1000)


async def test_the_requests_cap_counts_requests_whatever_their_size() -> None:
    clock = Clock()
    cap = limiter(clock, requests_per_s=2, burst_s=0.5)  # one request of burst
    for _ in range(3):
        await cap.acquire(500)
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


async def test_retries_take_tokens_too() -> None:
    # Two 503s then the 200: three requests, each waits for its token before it is sent.
    clock = Clock()
    cap = limiter(clock, requests_per_s=1, burst_s=1)
    async with (
        SandboxServer("tok", faults=Faults(script=(503, 503, 200))) as sandbox,
        aiohttp.ClientSession() as session,
    ):
        sink = HttpSink(
            session,
            url=sandbox.url,
            token=lambda: "tok",
            public_params_json=PUBLIC,
            timeout_s=5,
            initial_backoff_s=0.01,
            max_backoff_s=0.01,
            limiter=cap,
            sleep=clock.sleep,
            monotonic=clock,
            rng=random.Random(1),
        )
        report = await sink.send(batch_of(3))
    assert report.attempts == 3
    # The backoff sleeps are at most 0.01 s: the rest is the cap's 1 request a second.
    cap_waits = [s for s in clock.sleeps if s > 0.01]
    assert len(cap_waits) == 2
    assert sum(cap_waits) == pytest.approx(2 - sum(s for s in clock.sleeps if s <= 0.01))


async def test_a_group_member_takes_its_partitions_share_of_the_cap() -> None:
    clock, metrics = Clock(), Metrics(CollectorRegistry())
    cap = limiter(clock, metrics, events_per_s=900, requests_per_s=30)
    counts = {"a": 4, "b": 2}

    async def partition_count(topics: Sequence[str]) -> int | None:
        return sum(counts[t] for t in topics)

    share = GroupShare(cap, ["a", "b"], partition_count)
    await share.rebalanced(2)  # 2 of 6 partitions
    assert cap.rate("events") == pytest.approx(300)
    assert cap.rate("requests") == pytest.approx(10)
    assert metrics.registry.get_sample_value(
        "event_sink_rate_limit_share", {"route": "default", "unit": "events"}
    ) == pytest.approx(300)
    await share.rebalanced(0)  # everything revoked: the share stays until the next one
    assert cap.rate("events") == pytest.approx(300)
    await share.rebalanced(6)
    assert cap.rate("events") == pytest.approx(900)


async def test_an_unknown_partition_count_keeps_the_share() -> None:
    clock = Clock()
    cap = limiter(clock, events_per_s=900)

    async def unknown(_topics: Sequence[str]) -> int | None:
        return None

    await GroupShare(cap, ["a"], unknown).rebalanced(3)
    assert cap.share == 1.0


def test_the_config_refuses_a_rate_that_is_not_positive(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("http:\n  rate_limit:\n    events_per_s: 0\n")
    with pytest.raises(ConfigError, match="events_per_s"):
        load_settings(path, environ={})
    path.write_text("http:\n  rate_limit:\n    requests_per_s: 5\n")
    settings = load_settings(path, environ={})
    assert settings.http.rate_limit.scope == "group"
    assert settings.http.rate_limit.enabled
