"""The HTTP client: the classify table, backoff, and retry until delivered over real HTTP."""

from __future__ import annotations

import json
import random

import aiohttp
import pytest

from connector.batch import body_overhead
from connector.records import Batch, EncodedEvent
from connector.sandbox import Faults, SandboxServer, ScriptStep
from connector.sink import HttpSink, Verdict, backoff_delay, classify

OK = b'{"code":"200","errorCode":"SUCCESS","msg":"ok"}'


@pytest.mark.parametrize(
    ("status", "body", "verdict", "reason"),
    [
        (200, OK, Verdict.DELIVERED, "ok"),
        (200, b'{"code":"500","errorCode":"ERR","msg":"x"}', Verdict.REFUSED, "body_code"),
        (200, b'{"code":200,"errorCode":"SUCCESS","msg":"ok"}', Verdict.DELIVERED, "ok"),
        (200, b"<html>ok</html>", Verdict.RETRY, "malformed_body"),
        (200, b"", Verdict.RETRY, "malformed_body"),
        (200, b'["code"]', Verdict.RETRY, "malformed_body"),
        (201, OK, Verdict.RETRY, "http_201"),
        (204, b"", Verdict.RETRY, "http_204"),
        (302, b"", Verdict.RETRY, "http_302"),
        (
            400,
            b'{"code":"400","errorCode":"INVALID_PARAMS","msg":"x"}',
            Verdict.REFUSED,
            "http_400",
        ),
        (413, b"", Verdict.REFUSED, "http_413"),
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
    outcome = classify(status, body)
    assert (outcome.verdict, outcome.reason) == (verdict, reason)


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    rng = random.Random(0)
    for attempt in range(40):
        ceiling = min(30.0, 0.2 * 2**attempt)
        delays = [backoff_delay(attempt, 0.2, 30.0, rng) for _ in range(50)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spans the range, it is not a constant


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
    return Batch(0, events, 0)


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


async def test_a_refusing_body_code_is_not_delivered() -> None:
    faults = Faults(script=(ScriptStep(200, "500"), 200))
    async with SandboxServer("tok", faults=faults) as sandbox, aiohttp.ClientSession() as session:
        result = await make_sink(session, sandbox.url, []).send(batch_of(2))
        stats = sandbox.state.stats
    assert result.attempts == 2
    assert stats.accepted_requests == 1


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
