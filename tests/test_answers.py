"""Reading the API's answers right: body codes, redirects, bounded bodies, the retry budget.

The servers here are real HTTP on loopback, answering as gateways and busy vendors do.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from test_sink import OK, PUBLIC, FakeTime, batch_of

from connector.adapters.http_setup import MAX_ANSWER_BYTES, make_session
from connector.adapters.http_sink import Endpoint, HttpSink, RetryBudget
from connector.core.classify import Verdict, classify, origin, three_digit
from connector.metrics import Metrics


def body(code: object, error_code: str = "X", msg: str = "m") -> bytes:
    return json.dumps({"code": code, "errorCode": error_code, "msg": msg}).encode()


# -- the table, row by row ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "answer", "verdict", "reason"),
    [
        (200, body("200"), Verdict.DELIVERED, "ok"),
        (200, body(200), Verdict.DELIVERED, "ok"),
        (200, body("500"), Verdict.RETRY, "body_code_500"),
        (200, body("503"), Verdict.RETRY, "body_code_503"),
        (200, body("429"), Verdict.RETRY, "body_code_429"),
        (200, body("408"), Verdict.RETRY, "body_code_408"),
        (200, body("401"), Verdict.AUTH, "body_code_401"),
        (200, body("403"), Verdict.AUTH, "body_code_403"),
        (200, body("404"), Verdict.AUTH, "body_code_404"),
        (200, body("302"), Verdict.AUTH, "body_code_302"),
        (200, body("400"), Verdict.REFUSED, "body_code_400"),
        (200, body("422"), Verdict.REFUSED, "body_code_422"),
        (200, body("413"), Verdict.TOO_LARGE, "body_code_413"),
        (200, body("201"), Verdict.RETRY, "body_code_201"),
        (200, body("40001"), Verdict.RETRY, "body_code_unknown"),
        (200, body("OOPS"), Verdict.RETRY, "body_code_unknown"),
        (200, body(" 200"), Verdict.RETRY, "body_code_unknown"),
        (200, body("2OO"), Verdict.RETRY, "body_code_unknown"),
        (200, body(None), Verdict.RETRY, "body_code_unknown"),
        (200, b'{"errorCode":"SUCCESS"}', Verdict.RETRY, "body_code_unknown"),
        (200, body(True), Verdict.RETRY, "body_code_unknown"),
        (200, b"<html><body>502 Bad Gateway</body></html>", Verdict.RETRY, "malformed_body"),
        (200, None, Verdict.RETRY, "body_too_large"),
        (301, b"", Verdict.AUTH, "http_301"),
        (307, b"", Verdict.AUTH, "http_307"),
        (308, b"", Verdict.AUTH, "http_308"),
        # Any other HTTP status is read by itself, whatever its body says.
        (500, body("200"), Verdict.RETRY, "http_500"),
        (400, body("500"), Verdict.REFUSED, "http_400"),
        (201, body("200"), Verdict.RETRY, "http_201"),
    ],
)
def test_an_answer_is_classed_by_its_status_and_a_200_by_its_body_code(
    status: int, answer: bytes | None, verdict: Verdict, reason: str
) -> None:
    outcome = classify(status, {}, answer, now_s=0.0)
    assert (outcome.verdict, outcome.reason) == (verdict, reason)


def test_error_code_and_msg_are_kept_cut_for_logs_and_dead_letters() -> None:
    outcome = classify(200, {}, body("400", "E" * 100, "field x: " + "v" * 1000), now_s=0)
    assert outcome.error_code == "E" * 64
    assert outcome.message is not None
    assert len(outcome.message) == 256
    assert outcome.code == "400"


def test_body_code_overrides_have_the_last_word() -> None:
    overrides = {"OOPS": Verdict.REFUSED, "500": Verdict.AUTH}
    assert classify(200, {}, body("OOPS"), now_s=0, body_overrides=overrides).verdict is (
        Verdict.REFUSED
    )
    assert classify(200, {}, body("500"), now_s=0, body_overrides=overrides).verdict is (
        Verdict.AUTH
    )
    # Only a 200's body is read for codes: another status keeps its own verdict.
    assert classify(503, {}, body("OOPS"), now_s=0, body_overrides=overrides).verdict is (
        Verdict.RETRY
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://evil.example:8443/steal?token=abc", "https://evil.example:8443"),
        ("http://127.0.0.1/x", "http://127.0.0.1:80"),
        ("HTTPS://Host.Example/a#b", "https://host.example:443"),
        ("/relative/path?q=1", "(relative)"),
        ("http://[::1]:9/p", "http://[::1]:9"),
        ("http://host:99999/", "(unparsable)"),
    ],
)
def test_a_redirect_target_is_reduced_to_its_origin(url: str, expected: str) -> None:
    assert origin(url) == expected


def test_only_exact_three_digit_codes_are_numbers() -> None:
    fullwidth = "\uff15\uff10\uff10"  # "500" in fullwidth digits: str.isdigit() says yes
    codes = ("500", 500, "5000", "50", fullwidth, False, 99)
    assert [three_digit(c) for c in codes] == [500, 500, None, None, None, None, None]


# -- over real HTTP -----------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/import"
    finally:
        await runner.cleanup()


def sink_for(
    session: aiohttp.ClientSession, url: str | Endpoint, fake: FakeTime, **kwargs: Any
) -> HttpSink:
    return HttpSink(
        session,
        url=url,
        token=lambda: "tok-secret",
        public_params_json=PUBLIC,
        timeout_s=5,
        initial_backoff_s=0.01,
        max_backoff_s=0.05,
        sleep=fake.sleep,
        monotonic=fake,
        rng=random.Random(3),
        **kwargs,
    )


class Recorder:
    """An 'other host': answers every request 200 with a success body and records it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None, int]] = []  # method, X-Token, body bytes

    async def handle(self, request: web.Request) -> web.Response:
        data = await request.read()
        self.requests.append((request.method, request.headers.get("X-Token"), len(data)))
        return web.Response(body=OK, content_type="application/json")


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_never_followed_and_halts_with_one_line_naming_its_origin(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = Recorder()
    answers: list[int] = []

    async with serve(elsewhere.handle) as other_url:
        target = other_url.replace("/import", "/collect?key=hidden")

        async def redirecting(request: web.Request) -> web.Response:
            await request.read()
            if len(answers) < 3:
                answers.append(status)
                return web.Response(status=status, headers={"Location": target}, text="Moved")
            answers.append(200)
            return web.Response(body=OK, content_type="application/json")

        async with serve(redirecting) as url, make_session(4) as session:
            sink = sink_for(session, url, FakeTime())
            with caplog.at_level(logging.INFO, logger="connector.adapters.http_sink"):
                report = await sink.send(batch_of(3))
    assert elsewhere.requests == []  # not one request, so not one token, went elsewhere
    assert answers == [status, status, status, 200]
    assert report.refused == []  # delivered once the endpoint answered itself
    halts = [r.getMessage() for r in caplog.records if "redirects" in r.getMessage()]
    assert len(halts) == 1
    port = other_url.split(":")[2].split("/")[0]
    assert f"HTTP {status} to http://127.0.0.1:{port}" in halts[0]
    assert "hidden" not in caplog.text
    assert "collect" not in caplog.text


async def test_halted_by_a_redirect_the_sink_says_so() -> None:
    async def redirecting(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://other.example/x")

    async with serve(redirecting) as url, make_session(2) as session:
        fake = FakeTime()
        sink = sink_for(session, url, fake)
        task = asyncio.create_task(sink.send(batch_of(1)))
        while not sink.halted:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sink.halt_cause is not None
    assert sink.halt_cause.location == "https://other.example:443"


async def test_a_long_body_is_not_read_whole_and_its_connection_is_closed() -> None:
    served: list[bool] = []  # per answer: did the server get to write it all?

    async def huge(request: web.Request) -> web.StreamResponse:
        await request.read()
        tail = body("503")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 256 * 2**20 + len(tail)
        await response.prepare(request)
        chunk = b" " * (256 * 1024)
        try:
            for _ in range(256 * 4):
                await response.write(chunk)
            await response.write(tail)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            served.append(False)  # the client hung up: what a bounded reader does
            return response
        served.append(True)
        return response

    async with serve(huge) as url, make_session(2) as session:
        sink = sink_for(session, url, FakeTime())
        outcome = await sink.attempt(sink.render(batch_of(1).events))
        await asyncio.sleep(0.2)
    assert (outcome.verdict, outcome.reason) == (Verdict.RETRY, "body_too_large")
    assert served == [False]  # the server could not finish: the client hung up


def gzip_of_blanks(mib: int, tail: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * 2**20
    return (
        b"".join(packer.compress(block) for _ in range(mib))
        + packer.compress(tail)
        + (packer.flush())
    )


async def test_a_compression_bomb_is_inflated_only_up_to_the_bound() -> None:
    bomb = gzip_of_blanks(1024, OK)  # 1 GiB of blanks, then a "delivered" body
    assert len(bomb) < 2 * 2**20

    async def bomber(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    async with serve(bomber) as url, make_session(2) as session:
        sink = sink_for(session, url, FakeTime())
        outcome = await sink.attempt(sink.render(batch_of(1).events))
    assert (outcome.verdict, outcome.reason) == (Verdict.RETRY, "body_too_large")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity"])
async def test_a_compressed_answer_within_the_bound_is_read(encoding: str) -> None:
    payload = {"gzip": gzip.compress(OK), "deflate": zlib.compress(OK), "identity": OK}[encoding]

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=payload,
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )

    async with serve(answer) as url, make_session(2) as session:
        sink = sink_for(session, url, FakeTime())
        outcome = await sink.attempt(sink.render(batch_of(1).events))
    assert outcome.verdict is Verdict.DELIVERED


async def test_an_answer_just_at_the_bound_is_read_and_one_byte_more_is_not() -> None:
    sizes = iter([MAX_ANSWER_BYTES, MAX_ANSWER_BYTES + 1])

    async def padded(request: web.Request) -> web.Response:
        await request.read()
        size = next(sizes)
        return web.Response(
            body=b" " * (size - len(OK)) + OK, headers={"Content-Type": "application/json"}
        )

    async with serve(padded) as url, make_session(2) as session:
        sink = sink_for(session, url, FakeTime())
        first = await sink.attempt(sink.render(batch_of(1).events))
        second = await sink.attempt(sink.render(batch_of(1).events))
    assert first.verdict is Verdict.DELIVERED
    assert second.reason == "body_too_large"


async def test_an_unknown_content_encoding_is_a_retry_not_a_delivery() -> None:
    async def brotli(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            body=OK, headers={"Content-Type": "application/json", "Content-Encoding": "br"}
        )

    async with serve(brotli) as url, make_session(2) as session:
        sink = sink_for(session, url, FakeTime())
        outcome = await sink.attempt(sink.render(batch_of(1).events))
    assert (outcome.verdict, outcome.reason) == (Verdict.RETRY, "body_encoding")


async def test_an_unknown_body_code_is_retried_and_logged_once_per_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codes = iter(["OOPS", "OOPS", "40001", "OOPS", "200"])

    async def odd(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body(next(codes)), content_type="application/json")

    async with serve(odd) as url, make_session(2) as session:
        with caplog.at_level(logging.WARNING, logger="connector.adapters.http_sink"):
            report = await sink_for(session, url, FakeTime()).send(batch_of(2))
    assert report.refused == []
    assert report.attempts == 5
    notes = [r for r in caplog.records if "not a three-digit status" in r.getMessage()]
    assert sorted(r.getMessage().split("body code ")[1].split(",")[0] for r in notes) == [
        "'40001'",
        "'OOPS'",
    ]


async def test_gzip_requests_carry_the_same_body_compressed() -> None:
    seen: list[tuple[str | None, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Content-Encoding"), await request.read()))
        return web.Response(body=OK, content_type="application/json")

    async with serve(record) as url, make_session(2) as session:
        plain = sink_for(session, url, FakeTime())
        packed = sink_for(session, Endpoint(url, gzip=True), FakeTime())
        await plain.send(batch_of(3))
        await packed.send(batch_of(3))
    # aiohttp's server inflates a gzip request body before the handler reads it.
    assert seen[0] == (None, seen[1][1])
    assert seen[1][0] == "gzip"


# -- the retry budget -----------------------------------------------------------------------


def failing_for(bad: set[str], answer: bytes = body("500", "SYSTEM_ERROR", "busy")) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        data = await request.json()
        if any(e["uuid"] in bad for e in data["data"]):
            return web.Response(body=answer, content_type="application/json")
        return web.Response(body=OK, content_type="application/json")

    return handle


@pytest.mark.parametrize("budget", [RetryBudget(max_attempts=4), RetryBudget(give_up_after_s=2.0)])
async def test_a_spent_budget_dead_letters_only_the_event_that_still_fails(
    budget: RetryBudget,
) -> None:
    metrics = Metrics(CollectorRegistry())
    async with serve(failing_for({"u-5"})) as url, make_session(2) as session:
        sink = sink_for(session, url, FakeTime(), budget=budget, metrics=metrics)
        report = await sink.send(batch_of(16))
    assert [event.offset for event, _ in report.refused] == [5]
    [(_, outcome)] = report.refused
    assert outcome.reason == "retries_exhausted"
    assert (outcome.status, outcome.code, outcome.error_code) == (200, "500", "SYSTEM_ERROR")
    assert report.budget_spent
    assert (
        metrics.registry.get_sample_value(
            "event_sink_retry_budget_exhausted_total", {"route": "default"}
        )
        == 1
    )


async def test_without_a_budget_a_failing_batch_is_retried_not_split() -> None:
    requests: list[int] = []
    handler = failing_for({"u-1"})

    async def counting(request: web.Request) -> web.Response:
        requests.append(1)
        if len(requests) > 30:
            return web.Response(body=OK, content_type="application/json")
        return await handler(request)

    async with serve(counting) as url, make_session(2) as session:
        report = await sink_for(session, url, FakeTime()).send(batch_of(8))
    assert report.refused == []
    assert report.requests_delivered == 1
    assert len(requests) == 31  # one request each time: a busy vendor bisects nothing


async def test_a_halt_never_spends_the_budget() -> None:
    answers = iter([401] * 6)

    async def outage(request: web.Request) -> web.Response:
        await request.read()
        status = next(answers, 200)
        return web.Response(status=status, body=OK if status == 200 else body(str(status)))

    async with serve(outage) as url, make_session(2) as session:
        fake = FakeTime()
        sink = sink_for(session, url, fake, budget=RetryBudget(max_attempts=1, give_up_after_s=1))
        report = await sink.send(batch_of(4))
    assert report.refused == []
    assert report.attempts == 7
    assert fake.now > 1  # the probes waited longer than the budget's time; it still held


async def test_retry_after_holds_count_toward_the_time_budget() -> None:
    async def throttling(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=429, headers={"Retry-After": "30"}, body=body("429"))

    async with serve(throttling) as url, make_session(2) as session:
        fake = FakeTime()
        sink = sink_for(session, url, fake, budget=RetryBudget(give_up_after_s=100))
        report = await sink.send(batch_of(1))
    assert [o.reason for _, o in report.refused] == ["retries_exhausted"]
    assert 60 <= fake.now <= 100  # about three holds of 30 s, never past the budget


async def test_the_sandbox_accepts_the_connectors_gzip_bodies() -> None:
    from devtools.sandbox import SandboxServer

    async with SandboxServer("tok-secret") as sandbox, make_session(2) as session:
        sink = sink_for(session, Endpoint(sandbox.url, gzip=True), FakeTime())
        report = await sink.send(batch_of(50))
        stats = sandbox.state.stats
    assert report.refused == []
    assert report.attempts == 1
    assert (stats.gzip_requests, stats.unique_uuids) == (1, 50)
