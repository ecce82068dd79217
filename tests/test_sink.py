"""The HTTP client: the classify table, backoff, and retry until delivered over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.adapters.http_sink import HttpSink, SendReport
from connector.core.batch import body_overhead
from connector.core.classify import Verdict, classify, parse_retry_after
from connector.core.records import Batch, EncodedEvent, Events
from devtools.sandbox import Faults, SandboxServer, ScriptStep

OK = b'{"code":"200","errorCode":"SUCCESS","msg":"ok"}'


@pytest.mark.parametrize(
    ("status", "body", "verdict", "reason"),
    [
        (200, OK, Verdict.DELIVERED, "ok"),
        (200, b'{"code":"500","errorCode":"ERR","msg":"x"}', Verdict.RETRY, "body_code_500"),
        (200, b'{"code":200,"errorCode":"SUCCESS","msg":"ok"}', Verdict.DELIVERED, "ok"),
        (200, b"<html>ok</html>", Verdict.RETRY, "malformed_body"),
        (200, b"", Verdict.RETRY, "malformed_body"),
        (200, b'{"code":"400","errorCode":"BAD","msg":"x"}', Verdict.REFUSED, "body_code_400"),
        (200, b'["code"]', Verdict.RETRY, "malformed_body"),
        (201, OK, Verdict.RETRY, "http_201"),
        (204, b"", Verdict.RETRY, "http_204"),
        (302, b"", Verdict.AUTH, "http_302"),
        (
            400,
            b'{"code":"400","errorCode":"INVALID_PARAMS","msg":"x"}',
            Verdict.REFUSED,
            "http_400",
        ),
        (413, b"", Verdict.TOO_LARGE, "http_413"),
        (422, b"", Verdict.REFUSED, "http_422"),
        (401, b'{"code":"401"}', Verdict.AUTH, "http_401"),
        (403, b"", Verdict.AUTH, "http_403"),
        (404, b"", Verdict.AUTH, "http_404"),
        (408, b"", Verdict.RETRY, "http_408"),
        (429, b"", Verdict.RETRY, "http_429"),
        (500, b"", Verdict.RETRY, "http_500"),
        (503, b'{"code":"503"}', Verdict.RETRY, "http_503"),
    ],
)
def test_classify(status: int, body: bytes, verdict: Verdict, reason: str) -> None:
    outcome = classify(status, {}, body, now_s=0.0)
    assert (outcome.verdict, outcome.reason) == (verdict, reason)


def batch_of(count: int) -> Batch:
    events = tuple(
        EncodedEvent(
            "t",
            0,
            i,
            1,
            json.dumps(
                {
                    "identities": [{"identityType": "phone", "identityValue": f"1{i}"}],
                    "uuid": f"u-{i}",
                    "eventKey": "c_buy",
                },
                separators=(",", ":"),
            ).encode(),
        )
        for i in range(count)
    )
    return Batch(0, Events.of(events), 0)


PUBLIC = b'{"isMatching":1,"matchingType":1}'


def make_sink(session: aiohttp.ClientSession, url: str, sleeps: list[float]) -> HttpSink:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return HttpSink(
        session,
        url=url,
        token=lambda: "tok",
        public_params_json=PUBLIC,
        timeout_s=5,
        initial_backoff_s=0.2,
        max_backoff_s=5,
        sleep=fake_sleep,
        rng=random.Random(1),
    )


async def test_send_retries_503_503_then_delivers_once() -> None:
    faults = Faults(script=(503, 503, 200))
    async with SandboxServer("tok", faults=faults) as sandbox, aiohttp.ClientSession() as session:
        sleeps: list[float] = []
        result = await make_sink(session, sandbox.url, sleeps).send(batch_of(3))
        stats = sandbox.state.stats
    assert result.attempts == 3
    assert len(sleeps) == 2
    assert stats.requests == 3
    assert stats.accepted_requests == 1
    assert stats.unique_uuids == 3


async def test_a_refusing_body_code_splits_the_batch_and_both_halves_are_delivered() -> None:
    faults = Faults(script=(ScriptStep(200, "400"), 200))
    async with SandboxServer("tok", faults=faults) as sandbox, aiohttp.ClientSession() as session:
        result = await make_sink(session, sandbox.url, []).send(batch_of(2))
        stats = sandbox.state.stats
    assert result.refused == []
    assert result.attempts == 3
    assert stats.accepted_requests == 2
    assert stats.unique_uuids == 2


async def test_a_wrong_token_is_retried_not_dropped_and_the_token_is_read_per_attempt() -> None:
    tokens = iter(["stale", "stale", "fresh"])
    async with SandboxServer("fresh") as sandbox, aiohttp.ClientSession() as session:
        sleeps: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        sink = HttpSink(
            session,
            url=sandbox.url,
            token=lambda: next(tokens),
            public_params_json=PUBLIC,
            timeout_s=5,
            initial_backoff_s=0.2,
            max_backoff_s=5,
            sleep=fake_sleep,
        )
        result = await sink.send(batch_of(1))
        stats = sandbox.state.stats
    assert result.attempts == 3
    assert stats.unauthorized == 2
    assert stats.unique_uuids == 1


async def test_connection_refused_is_a_retry() -> None:
    async with SandboxServer("tok") as sandbox:
        url = sandbox.url  # the server stops at the end of this block: the port is closed
    async with aiohttp.ClientSession() as session:
        outcome = await make_sink(session, url, []).attempt(b"{}")
    assert outcome.verdict is Verdict.RETRY
    assert outcome.reason.startswith("connection:")


async def test_the_body_is_the_contract_shape() -> None:
    async with SandboxServer("tok") as sandbox, aiohttp.ClientSession() as session:
        batch = batch_of(2)
        sized = Batch(batch.batch_id, batch.events, body_overhead(PUBLIC))
        await make_sink(session, sandbox.url, []).send(sized)
        [first, second] = sandbox.state.events
    assert first["uuid"] == "u-0"
    assert second["uuid"] == "u-1"


@pytest.mark.parametrize(
    ("overrides", "status", "verdict"),
    [
        ({409: Verdict.RETRY}, 409, Verdict.RETRY),
        ({404: Verdict.REFUSED}, 404, Verdict.REFUSED),
        ({500: Verdict.AUTH}, 500, Verdict.AUTH),
        ({409: Verdict.RETRY}, 400, Verdict.REFUSED),  # others keep their default
    ],
)
def test_config_overrides_move_a_status_to_another_verdict(
    overrides: dict[int, Verdict], status: int, verdict: Verdict
) -> None:
    assert classify(status, {}, b"", overrides=overrides, now_s=0.0).verdict is verdict


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Sun, 29 Nov 2026 05:00:10 GMT", 10.0),
        ("Sun, 29 Nov 2026 04:59:00 GMT", 0.0),
        ("soon", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_retry_after_in_seconds_or_an_http_date(header: str, expected: float | None) -> None:
    now = datetime(2026, 11, 29, 5, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(header, now) == expected
    outcome = classify(429, {"Retry-After": header}, b"", now_s=now)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after_s == expected


class FakeTime:
    """A clock that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


Answer = tuple[int, dict[str, str], bytes]


class ScriptedApi:
    """A real HTTP server on loopback whose answers a test scripts per request."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], Answer]) -> None:
        self.answer = answer
        self.seen: list[tuple[float, int, list[str]]] = []  # (fake time, status, uuids)
        self.clock: Callable[[], float] = lambda: 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(0.01)  # let concurrent senders overlap
        status, headers, payload = self.answer(body["data"])
        self.seen.append((self.clock(), status, [e["uuid"] for e in body["data"]]))
        return web.Response(status=status, headers=headers, body=payload)


@contextlib.asynccontextmanager
async def serve(api: ScriptedApi) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/import", api.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/import"
    finally:
        await runner.cleanup()


def sink_with(session: aiohttp.ClientSession, url: str, fake: FakeTime, **kwargs: Any) -> HttpSink:
    return HttpSink(
        session,
        url=url,
        token=lambda: "tok",
        public_params_json=PUBLIC,
        timeout_s=5,
        initial_backoff_s=0.01,
        max_backoff_s=0.05,
        sleep=fake.sleep,
        monotonic=fake,
        rng=random.Random(3),
        **kwargs,
    )


POISON = {"u-3", "u-11"}


def refuse_poison(events: list[dict[str, Any]]) -> Answer:
    if any(e["uuid"] in POISON for e in events):
        return 400, {}, b'{"code":"400","errorCode":"INVALID_PARAMS","msg":"refused"}'
    return 200, {}, OK


async def test_bisection_isolates_exactly_the_refused_events() -> None:
    api = ScriptedApi(refuse_poison)
    async with serve(api) as url, aiohttp.ClientSession() as session:
        report = await sink_with(session, url, FakeTime()).send(batch_of(16))
    assert sorted(event.offset for event, _ in report.refused) == [3, 11]
    assert all(outcome.status == 400 for _, outcome in report.refused)
    delivered = [u for _, status, uuids in api.seen if status == 200 for u in uuids]
    assert sorted(delivered) == sorted(f"u-{i}" for i in range(16) if f"u-{i}" not in POISON)
    assert len(delivered) == len(set(delivered))  # nothing delivered twice
    # About log2(16) requests around each poison event, not one request per event.
    assert len(api.seen) <= 17


@given(poison=st.sets(st.integers(min_value=0, max_value=39), max_size=6))
@settings(max_examples=25, deadline=None)
def test_bisection_delivers_everything_but_the_poison_in_any_arrangement(
    poison: set[int],
) -> None:
    def answer(events: list[dict[str, Any]]) -> Answer:
        if any(int(e["uuid"][2:]) in poison for e in events):
            return 200, {}, b'{"code":"400","errorCode":"REFUSED","msg":"x"}'
        return 200, {}, OK

    async def scenario() -> tuple[SendReport, ScriptedApi]:
        api = ScriptedApi(answer)
        async with serve(api) as url, aiohttp.ClientSession() as session:
            return await sink_with(session, url, FakeTime()).send(batch_of(40)), api

    report, api = asyncio.run(scenario())
    assert {event.offset for event, _ in report.refused} == poison
    accepted = [
        uuid
        for _, _, uuids in api.seen
        if not any(int(u[2:]) in poison for u in uuids)
        for uuid in uuids
    ]
    assert sorted(accepted) == sorted(f"u-{i}" for i in range(40) if i not in poison)


async def test_retry_after_holds_every_sender_until_the_time_is_up() -> None:
    answers = iter([(429, {"Retry-After": "2"}, b"")])
    api = ScriptedApi(lambda _events: next(answers, (200, {}, OK)))
    fake = FakeTime()
    api.clock = fake
    async with serve(api) as url, aiohttp.ClientSession() as session:
        sink = sink_with(session, url, fake)
        first = asyncio.create_task(sink.send(batch_of(2)))
        while not api.seen:  # the 429 has arrived and set the hold
            await asyncio.sleep(0.01)
        others = [asyncio.create_task(sink.send(batch_of(2))) for _ in range(3)]
        await asyncio.gather(first, *others)
    throttled_at = next(t for t, status, _ in api.seen if status == 429)
    later = [t for t, status, _ in api.seen if status == 200]
    assert len(later) == 4
    assert all(t >= throttled_at + 2.0 for t in later)


async def test_a_hostile_retry_after_is_capped() -> None:
    answers = iter([(503, {"Retry-After": "999999999"}, b"")])
    api = ScriptedApi(lambda _events: next(answers, (200, {}, OK)))
    fake = FakeTime()
    async with serve(api) as url, aiohttp.ClientSession() as session:
        await sink_with(session, url, fake, max_retry_after_s=30).send(batch_of(1))
    assert 30.0 <= fake.now < 31.0


async def test_auth_failure_halts_every_sender_and_one_probes_until_accepted() -> None:
    refusals = iter(range(5))

    def answer(_events: list[dict[str, Any]]) -> Answer:
        if next(refusals, None) is not None:
            return 401, {}, b'{"code":"401","errorCode":"UNAUTHORIZED","msg":"bad token"}'
        return 200, {}, OK

    api = ScriptedApi(answer)
    fake = FakeTime()
    async with serve(api) as url, aiohttp.ClientSession() as session:
        sink = sink_with(session, url, fake, halt_probe_max_s=60)
        first = asyncio.create_task(sink.send(batch_of(1)))
        while not api.seen:
            await asyncio.sleep(0.01)
        assert sink.halted
        others = [asyncio.create_task(sink.send(batch_of(1))) for _ in range(4)]
        reports = await asyncio.gather(first, *others)
    statuses = [status for _, status, _ in api.seen]
    # While halted only the prober sent: five 401s in a row, then everyone delivered.
    assert statuses == [401] * 5 + [200] * 5
    assert not sink.halted
    assert all(report.refused == [] for report in reports)
