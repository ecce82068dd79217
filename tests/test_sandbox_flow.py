"""The sandbox's flow modes (devtools/sandbox/flow.py): the events-per-second quota, the
request slots, and the per-key order of first arrivals (``GET /order``); over real HTTP on
loopback, no Kafka."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from drills import TOKEN as DRILL_TOKEN
from drills import SandboxProcess

from devtools.sandbox import (
    Faults,
    SandboxServer,
    SandboxState,
    ScriptStep,
    add_arguments,
    faults_from_args,
    main,
)
from devtools.sandbox.flow import Slots, TokenBucket

TOKEN = "flow-token"
OK = {"code": "200", "errorCode": "SUCCESS", "msg": "ok"}

Body = dict[str, Any]


class FakeClock:
    """A monotonic clock the test moves by hand (``clock.now += seconds``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ev(uuid: str | None, key: str = "k", *, other_key: str | None = None) -> Body:
    identities = [{"identityValue": key, "identityType": "phone"}]
    if other_key is not None:
        identities.append({"identityValue": other_key, "identityType": "openid"})
    event: Body = {"identities": identities, "eventKey": "c_buy"}
    if uuid is not None:
        event["uuid"] = uuid
    return event


def body_of(*events: Body) -> Body:
    return {"publicParams": {"isMatching": 1}, "data": list(events)}


def batch(n: int, prefix: str = "u") -> Body:
    return body_of(*(ev(f"{prefix}{i}") for i in range(n)))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, server: SandboxServer, body: Any, *, token: str = TOKEN
) -> tuple[int, Any, str | None]:
    async with http.post(server.url, json=body, headers={"X-Token": token}) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def get(http: aiohttp.ClientSession, server: SandboxServer, path: str) -> Any:
    async with http.get(server.base_url + path) as resp:
        assert resp.status == 200
        return await resp.json()


async def control(
    http: aiohttp.ClientSession, server: SandboxServer, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.post(server.base_url + path, json=body) as resp:
        return resp.status, await resp.json()


# ------------------------------------------------------------------ quota


def assert_quota_refusal(answer: tuple[int, Any, str | None]) -> None:
    status, body, retry_after = answer
    assert (status, retry_after) == (429, "1")
    assert set(body) == {"code", "errorCode", "msg"}
    assert (body["code"], body["errorCode"]) == ("429", "TOO_MANY_REQUESTS")


async def test_quota_refuses_over_the_rate_and_accepts_after_refill(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    faults = Faults(quota_events_per_s=10, quota_burst_s=1.0)
    async with SandboxServer(TOKEN, faults=faults, clock=clock) as sandbox:
        assert (await post(http, sandbox, batch(6, "a")))[:2] == (200, OK)  # 10 -> 4 tokens
        assert_quota_refusal(await post(http, sandbox, batch(5, "b")))
        # The refused request took nothing: exactly the 4 left still go through.
        assert (await post(http, sandbox, batch(4, "c")))[0] == 200
        assert_quota_refusal(await post(http, sandbox, batch(1, "d")))

        clock.now += 0.3  # 3 tokens, continuously refilled
        assert_quota_refusal(await post(http, sandbox, batch(4, "e")))
        assert (await post(http, sandbox, batch(3, "e")))[0] == 200
        clock.now += 0.05
        assert_quota_refusal(await post(http, sandbox, batch(1, "f")))  # half a token
        clock.now += 0.05
        assert (await post(http, sandbox, batch(1, "f")))[0] == 200

        clock.now += 3600  # refills up to N x burst only
        assert (await post(http, sandbox, batch(10, "g")))[0] == 200
        assert_quota_refusal(await post(http, sandbox, batch(1, "h")))

        stats = await get(http, sandbox, "/stats")
        assert stats["quota_refused"] == 5
        assert stats["faults"] == 0
        assert (stats["requests"], stats["accepted_requests"]) == (10, 5)
        assert stats["events"] == 6 + 4 + 3 + 1 + 10
        uuids = sandbox.state.seen_uuids
        assert not any(u.startswith(("b", "d", "h")) for u in uuids)  # refused: not recorded
        log = [(r["status"], r["code"], r["retry_after"]) for r in sandbox.state.requests_log()]
        assert log[1] == (429, "429", "1")


async def test_quota_burst_sets_the_bucket_size(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    faults = Faults(quota_events_per_s=100, quota_burst_s=0.05)  # holds 5 events
    async with SandboxServer(TOKEN, faults=faults, clock=clock) as sandbox:
        assert_quota_refusal(await post(http, sandbox, batch(6)))
        assert (await post(http, sandbox, batch(5)))[0] == 200
        clock.now += 0.02
        assert (await post(http, sandbox, batch(2, "x")))[0] == 200


async def test_token_and_contract_come_before_the_quota(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    faults = Faults(quota_events_per_s=2)
    async with SandboxServer(TOKEN, faults=faults, clock=clock) as sandbox:
        assert (await post(http, sandbox, batch(2), token="wrong"))[0] == 401
        assert (await post(http, sandbox, {"data": []}))[0] == 400
        refused = Faults(quota_events_per_s=2, refuse_event_keys=["c_buy"])
        sandbox.state.faults = refused  # same quota: the bucket is kept, not refilled
        assert (await post(http, sandbox, batch(2)))[0] == 400
        sandbox.state.faults = faults
        # None of them took a token: the whole bucket is still there.
        assert (await post(http, sandbox, batch(2)))[0] == 200
        assert (await post(http, sandbox, batch(3, "x"), token="wrong"))[0] == 401  # not 429
        assert_quota_refusal(await post(http, sandbox, batch(1, "y")))
        assert sandbox.state.stats.quota_refused == 1


async def test_scripted_faults_answer_before_the_quota_and_take_no_tokens(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    faults = Faults(quota_events_per_s=1, script=[503, ScriptStep(200)])
    async with SandboxServer(TOKEN, faults=faults, clock=clock) as sandbox:
        assert (await post(http, sandbox, batch(1)))[0] == 503
        # A passing step without Retry-After leaves the quota's own on its answer.
        assert (await post(http, sandbox, batch(1)))[0] == 200
        assert_quota_refusal(await post(http, sandbox, batch(1, "x")))


async def test_quota_set_at_runtime_starts_full_and_reset_refills(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with SandboxServer(TOKEN, clock=clock) as sandbox:
        assert (await post(http, sandbox, batch(50)))[0] == 200  # no quota by default
        assert sandbox.state.quota_tokens is None
        status, shown = await control(
            http, sandbox, "/faults", {"quota_events_per_s": 3, "quota_burst_s": 2}
        )
        assert status == 200
        assert (shown["quota_events_per_s"], shown["quota_burst_s"]) == (3.0, 2.0)
        assert (await get(http, sandbox, "/faults"))["quota_events_per_s"] == 3.0
        assert (await post(http, sandbox, batch(6, "a")))[0] == 200
        assert_quota_refusal(await post(http, sandbox, batch(1, "b")))

        assert (await control(http, sandbox, "/reset"))[1]["quota_refused"] == 0
        assert sandbox.state.quota_tokens == 6.0
        assert (await post(http, sandbox, batch(6, "c")))[0] == 200

        # Another rate starts a full bucket of its own; {} switches the quota off.
        await control(http, sandbox, "/faults", {"quota_events_per_s": 4})
        assert sandbox.state.quota_tokens == 4.0
        await control(http, sandbox, "/faults", {})
        assert (await post(http, sandbox, batch(100, "d")))[0] == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"quota_events_per_s": 0},
        {"quota_events_per_s": -5},
        {"quota_events_per_s": True},
        {"quota_events_per_s": "10"},
        {"quota_events_per_s": 0.5},  # holds less than one event with burst 1
        {"quota_events_per_s": 10, "quota_burst_s": 0.01},
        {"quota_burst_s": 0},
        {"quota_burst_s": None},
        {"slots": 0},
        {"slots": 1.5},
        {"slots": True},
        {"slots": "2"},
    ],
)
async def test_bad_flow_settings_are_400(http: aiohttp.ClientSession, bad: Body) -> None:
    async with SandboxServer(TOKEN) as sandbox:
        status, answer = await control(http, sandbox, "/faults", bad)
        assert status == 400
        assert "error" in answer
        assert sandbox.state.faults == Faults()


def test_token_bucket_ignores_a_clock_that_steps_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 1, clock)
    assert bucket.take(10)
    clock.now -= 5
    assert not bucket.take(1)
    clock.now += 5.1
    assert bucket.take(1)


# ------------------------------------------------------------------ slots


async def test_slots_queue_requests_and_hold_through_latency(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxServer(TOKEN, faults=Faults(slots=2, latency_ms=200)) as sandbox:

        async def timed(i: int) -> tuple[int, float]:
            started = time.monotonic()
            status = (await post(http, sandbox, batch(1, f"r{i}-")))[0]
            return status, time.monotonic() - started

        started = time.monotonic()
        results = await asyncio.gather(*(timed(i) for i in range(6)))
        elapsed = time.monotonic() - started
        assert all(status == 200 for status, _ in results)
        # 6 requests through 2 slots of 200 ms: 3 rounds (10 ms of slack for the clock).
        assert elapsed >= 0.59
        assert max(seconds for _, seconds in results) >= 0.59  # a client waited for 3 rounds
        stats = await get(http, sandbox, "/stats")
        assert stats["max_concurrent"] == 2
        assert stats["max_queued"] >= 4
        assert stats["accepted_requests"] == 6
        assert (sandbox.state.slots.queued, sandbox.state.slots.concurrent) == (0, 0)

        assert (await control(http, sandbox, "/reset"))[1]["max_queued"] == 0


async def test_slots_changed_through_post_faults_apply_to_new_requests(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxServer(TOKEN, faults=Faults(slots=1, latency_ms=100)) as sandbox:
        await asyncio.gather(*(post(http, sandbox, batch(1, f"a{i}-")) for i in range(2)))
        assert sandbox.state.stats.max_concurrent == 1
        status, shown = await control(http, sandbox, "/faults", {"slots": 3, "latency_ms": 100})
        assert (status, shown["slots"]) == (200, 3)
        assert (await get(http, sandbox, "/faults"))["slots"] == 3
        await control(http, sandbox, "/reset")
        results = await asyncio.gather(*(post(http, sandbox, batch(1, f"b{i}-")) for i in range(6)))
        assert all(r[0] == 200 for r in results)
        stats = sandbox.state.stats
        assert (stats.max_concurrent, stats.max_queued) == (3, 3)


async def test_slots_count_waiters_and_holders() -> None:
    state = SandboxState()
    slots: Slots = state.slots
    gate = asyncio.Event()
    held: list[int] = []

    async def hold(i: int, size: int) -> None:
        async with slots.hold(size):
            held.append(i)
            await gate.wait()

    tasks = [asyncio.create_task(hold(i, 2)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert (slots.concurrent, slots.queued, sorted(held)) == (2, 1, [0, 1])
    # A new size makes a new semaphore: the next request does not wait behind the old one.
    newcomer = asyncio.create_task(hold(3, 3))
    await asyncio.sleep(0.01)
    assert (slots.concurrent, slots.queued, held[-1]) == (3, 1, 3)
    gate.set()
    await asyncio.gather(*tasks, newcomer)
    assert sorted(held) == [0, 1, 2, 3]
    assert (slots.concurrent, slots.queued) == (0, 0)
    assert (state.stats.max_concurrent, state.stats.max_queued) == (3, 1)

    async with slots.hold(None):  # no limit: nothing counted
        assert slots.concurrent == 0


# ------------------------------------------------------------------ per-key order


async def test_order_lists_first_arrivals_per_key(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(TOKEN, keep_events=False) as sandbox:
        first = body_of(ev("a1", "A"), ev("b1", "B"), ev("a2", "A", other_key="B"))
        again = body_of(ev("b2", "B"), ev("a1", "A"), ev(None, "A"), ev("a3", "A"))
        assert (await post(http, sandbox, first))[0] == 200
        assert (await post(http, sandbox, again))[0] == 200
        # Not accepted: not in the order.
        assert (await post(http, sandbox, body_of(ev("a9", "A")), token="bad"))[0] == 401
        assert (await post(http, sandbox, body_of({**ev("a8", "A"), "time": -1})))[0] == 400

        expected = {"A": ["a1", "a2", "a3"], "B": ["b1", "b2"]}
        assert await get(http, sandbox, "/order") == expected
        assert sandbox.state.order == expected
        assert sandbox.state.stats.duplicates == 1

        assert (await control(http, sandbox, "/reset"))[0] == 200
        assert await get(http, sandbox, "/order") == {}
        assert (await post(http, sandbox, body_of(ev("a2", "A"), ev("a1", "A"))))[0] == 200
        assert await get(http, sandbox, "/order") == {"A": ["a2", "a1"]}


async def test_order_skips_requests_the_quota_refuses(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    faults = Faults(quota_events_per_s=2, fail_uuids=["z1"])
    async with SandboxServer(TOKEN, faults=faults, clock=clock) as sandbox:
        assert (await post(http, sandbox, body_of(ev("k1"), ev("k2"))))[0] == 200
        assert (await post(http, sandbox, body_of(ev("k3"))))[0] == 429
        assert (await post(http, sandbox, body_of(ev("z1"))))[0] == 500
        clock.now += 1
        assert (await post(http, sandbox, body_of(ev("k4"), ev("k3"))))[0] == 200
        assert await get(http, sandbox, "/order") == {"k": ["k1", "k2", "k4", "k3"]}


# ------------------------------------------------------------------ command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="event-sink sandbox")
    add_arguments(p)
    return p


def test_cli_flow_flags() -> None:
    ns = parser().parse_args(
        ["--token", "T", "--quota-events-per-s", "250", "--quota-burst-s", "0.5", "--slots", "4"]
    )
    assert faults_from_args(ns) == Faults(quota_events_per_s=250, quota_burst_s=0.5, slots=4)
    defaults = faults_from_args(parser().parse_args(["--token", "T"]))
    assert (defaults.quota_events_per_s, defaults.quota_burst_s, defaults.slots) == (None, 1, None)


_BAD_FLAGS = ["--quota-events-per-s=0", "--quota-events-per-s=nan", "--quota-burst-s=-1"]


@pytest.mark.parametrize("flag", [*_BAD_FLAGS, "--slots=0", "--slots=two"])
def test_cli_rejects_bad_flow_flags(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--token", "T", flag])
    assert "error" in capsys.readouterr().err


def test_main_rejects_a_bucket_smaller_than_one_event(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["--token", "T", "--quota-events-per-s", "2", "--quota-burst-s", "0.25"])
    assert exc_info.value.code == 2
    assert "quota_events_per_s * quota_burst_s" in capsys.readouterr().err


def test_standalone_sandbox_takes_the_flow_flags(tmp_path: Path) -> None:
    # drills.SandboxProcess runs `python -m devtools.sandbox --no-keep-events ...`.
    flags = ["--quota-events-per-s", "3", "--quota-burst-s", "1", "--slots", "2"]
    sandbox = SandboxProcess(tmp_path / "sandbox.log", extra_args=flags)
    try:

        def send(body: Body) -> tuple[int, str | None]:
            headers = {"X-Token": DRILL_TOKEN, "Content-Type": "application/json"}
            request = urllib.request.Request(sandbox.url, json.dumps(body).encode(), headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    return resp.status, resp.headers.get("Retry-After")
            except urllib.error.HTTPError as err:
                return err.code, err.headers.get("Retry-After")

        shown = sandbox._call("GET", "/faults")  # as the flags set them
        assert (shown["quota_events_per_s"], shown["quota_burst_s"], shown["slots"]) == (3, 1, 2)
        assert send(body_of(ev("s1", "S"), ev("t1", "T"), ev("s2", "S"))) == (200, None)
        assert send(body_of(ev("s3", "S"), ev("s4", "S"))) == (429, "1")
        stats = sandbox.stats()
        assert (stats["quota_refused"], stats["max_concurrent"]) == (1, 1)
        assert sandbox._call("GET", "/order") == {"S": ["s1", "s2"], "T": ["t1"]}
        assert sandbox.log_problems() == []
    finally:
        sandbox.close()
