"""The sandbox's odd answers (devtools/sandbox/world.py), gzip request bodies (bodies.py),
TLS (tls.py), and the network fixtures of tests/net_fixtures.py: all over real HTTP on
loopback, no Kafka."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import AsyncIterator
from http.client import IncompleteRead
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from drills import TOKEN as DRILL_TOKEN
from drills import SandboxProcess
from net_fixtures import ForwardProxy, PrivateCA, RedirectTarget, private_ca

from devtools.sandbox import (
    STATE_KEY,
    Faults,
    SandboxServer,
    ScriptStep,
    add_arguments,
    bodies,
    build_app,
    faults_from_args,
    main,
    world,
)
from devtools.sandbox.tls import server_ssl_context

TOKEN = "world-token"
MIB = 1024 * 1024
OK = {"code": "200", "errorCode": "SUCCESS", "msg": "ok"}
BUSY = {"code": "500", "errorCode": "SYSTEM_ERROR", "msg": "system busy"}
HEADERS = {"X-Token": TOKEN}


def batch(n: int = 1, start: int = 0) -> dict[str, Any]:
    return {
        "publicParams": {"isMatching": 1},
        "data": [
            {
                "identities": [{"identityValue": f"v{i}", "identityType": "phone"}],
                "uuid": f"uuid-{i}",
                "eventKey": "c_buy",
            }
            for i in range(start, start + n)
        ],
    }


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records that show an error in a server: warnings and up, or any traceback."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return private_ca(tmp_path_factory.mktemp("ca"))


async def set_faults(
    http: aiohttp.ClientSession, sandbox: SandboxServer, **settings: Any
) -> dict[str, Any]:
    async with http.post(sandbox.base_url + "/faults", json=settings) as resp:
        answer: dict[str, Any] = await resp.json()
        assert resp.status == 200, answer
        return answer


async def post(
    http: aiohttp.ClientSession, sandbox: SandboxServer, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    async with http.post(
        sandbox.url, json=batch(1) if body is None else body, headers=HEADERS, **kwargs
    ) as resp:
        return resp.status, await resp.json(content_type=None)


def last_log(sandbox: SandboxServer) -> tuple[Any, ...]:
    entry = sandbox.state.requests_log()[-1]
    return entry["status"], entry["code"], entry["events"]


# ------------------------------------------------------------------ failure_code, fail_uuids


async def test_failure_code_is_the_body_code_of_random_faults(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    await set_faults(http, sandbox, failure_status=200, failure_code="500", failure_rate=1.0)
    assert await post(http, sandbox, batch(2)) == (200, BUSY)
    assert last_log(sandbox) == (200, "500", 2)
    await set_faults(http, sandbox, failure_status=200, failure_code="OOPS", failure_rate=1.0)
    status, body = await post(http, sandbox)
    assert (status, body["code"], body["errorCode"]) == (200, "OOPS", "INJECTED_FAULT")
    await set_faults(http, sandbox, failure_status=503, failure_code="404", failure_rate=1.0)
    status, body = await post(http, sandbox)
    assert (status, body["code"], body["errorCode"]) == (503, "404", "NOT_FOUND")
    assert sandbox.state.stats.faults == 3
    assert sandbox.state.stats.events == 0  # none of them is a delivery
    await set_faults(http, sandbox)
    assert await post(http, sandbox) == (200, OK)


async def test_script_steps_keep_their_own_body_code(http: aiohttp.ClientSession) -> None:
    faults = Faults(script=[ScriptStep(200, "500")], failure_code="OOPS", failure_rate=1.0)
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        assert (await post(http, sandbox))[1]["code"] == "500"
        assert (await post(http, sandbox))[1]["code"] == "OOPS"


async def test_fail_uuids_answers_500_and_records_nothing(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    await set_faults(http, sandbox, fail_uuids=["uuid-3", "uuid-9"])
    assert await post(http, sandbox, batch(5)) == (500, BUSY)  # holds uuid-3
    assert await post(http, sandbox, batch(5)) == (500, BUSY)  # always, not once
    assert last_log(sandbox) == (500, "500", 5)
    assert await post(http, sandbox, batch(3)) == (200, OK)  # uuid-0..2 only
    # The token and the contract are checked first.
    async with http.post(sandbox.url, json=batch(5), headers={"X-Token": "bad"}) as resp:
        assert resp.status == 401
    bad = batch(5)
    bad["data"][0]["eventKey"] = ""
    assert (await post(http, sandbox, bad))[0] == 400
    stats = sandbox.state.stats
    assert stats.failed_uuid_requests == 2
    assert stats.faults == 0
    assert sandbox.state.seen_uuids == {"uuid-0", "uuid-1", "uuid-2"}
    await set_faults(http, sandbox)
    assert await post(http, sandbox, batch(5)) == (200, OK)


async def test_retry_after_http_date_in_the_past_is_sent_verbatim(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    await set_faults(http, sandbox, script=[{"status": 503, "retry_after": past}])
    async with http.post(sandbox.url, json=batch(1), headers=HEADERS) as resp:
        assert resp.status == 503
        assert resp.headers.getall("Retry-After") == [past]
    assert sandbox.state.requests_log()[-1]["retry_after"] == past


# ------------------------------------------------------------------ world faults


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_answers_its_status_and_location(
    sandbox: SandboxServer, http: aiohttp.ClientSession, status: int
) -> None:
    location = "https://127.0.0.1:9/elsewhere?x=1"
    answer = await set_faults(http, sandbox, redirect={"status": status, "location": location})
    assert answer["redirect"] == {"status": status, "location": location}
    for _ in range(2):  # every request while it is set
        async with http.post(
            sandbox.url, json=batch(2), headers=HEADERS, allow_redirects=False
        ) as resp:
            assert resp.status == status
            assert resp.headers["Location"] == location
            assert resp.content_type == "text/html"
            assert "Moved" in await resp.text()
    assert last_log(sandbox) == (status, None, 2)
    assert sandbox.state.stats.faults == 2
    assert sandbox.state.stats.events == 0
    await set_faults(http, sandbox)
    assert await post(http, sandbox) == (200, OK)


async def test_a_client_that_follows_the_redirect_takes_its_token_along(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    with RedirectTarget() as target:
        await set_faults(http, sandbox, redirect={"status": 307, "location": target.url})
        # aiohttp follows redirects by default and keeps custom headers such as X-Token.
        async with http.post(sandbox.url, json=batch(1), headers=HEADERS) as resp:
            assert resp.status == 200
            assert await resp.json() == OK  # "delivered", to a host that is not the API
        assert target.requests == 1
        assert target.tokens_seen == 1
        seen = target.seen[0]
        assert (seen.method, seen.path, seen.token) == ("POST", "/elsewhere", TOKEN)
        assert seen.body_bytes > 0  # 307 keeps the method and the body
    assert sandbox.state.stats.events == 0


def test_redirect_target_from_a_synchronous_test() -> None:
    with RedirectTarget(path="/moved") as target:
        assert target.url == target.origin + "/moved"
        assert target.origin == f"http://127.0.0.1:{target.port}"
        for path, headers in (("/moved", {"X-Token": "t1"}), ("/any/other", {})):
            request = urllib.request.Request(
                target.url.rsplit("/", 1)[0] + path, data=b"{}", headers=headers, method="PUT"
            )
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert json.load(resp) == OK
        assert target.requests == 2
        assert target.tokens_seen == 1
        assert [(s.method, s.path, s.token) for s in target.seen] == [
            ("PUT", "/moved", "t1"),
            ("PUT", "/any/other", None),
        ]
    with pytest.raises(RuntimeError, match="not started"):
        _ = target.url


async def test_html_200(sandbox: SandboxServer, http: aiohttp.ClientSession) -> None:
    await set_faults(http, sandbox, html_200=True)
    async with http.post(sandbox.url, json=batch(3), headers=HEADERS) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        text = await resp.text()
    assert "<html>" in text
    assert "<h1>502 Bad Gateway</h1>" in text
    assert last_log(sandbox) == (200, None, 3)
    assert sandbox.state.stats.events == 0


async def test_world_faults_answer_before_the_token_and_the_script(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxServer(TOKEN, faults=Faults(script=[503], html_200=True)) as sandbox:
        async with http.post(sandbox.url, data=b"junk", headers={"X-Token": "bad"}) as resp:
            assert (resp.status, resp.content_type) == (200, "text/html")
        assert sandbox.state.script_remaining == [ScriptStep(503)]  # not consumed
        assert sandbox.state.stats.unauthorized == 0


async def test_huge_body_is_streamed_with_its_length(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    await set_faults(http, sandbox, huge_body_mib=8)
    async with http.post(sandbox.url, json=batch(2), headers=HEADERS) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        tail = b'{"code":"503","errorCode":"SERVICE_UNAVAILABLE","msg":"busy"}'
        assert resp.content_length == 8 * MIB + len(tail)
        assert "Transfer-Encoding" not in resp.headers
        body = await resp.read()
    assert len(body) == 8 * MIB + len(tail)
    assert body[: 8 * MIB] == b" " * (8 * MIB)
    assert json.loads(body)["code"] == "503"  # whitespace before JSON is still JSON
    assert last_log(sandbox) == (200, "503", 2)
    assert sandbox.state.stats.events == 0


async def test_a_client_that_stops_reading_a_huge_body_leaves_no_error(
    sandbox: SandboxServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="devtools.sandbox")
    await set_faults(http, sandbox, huge_body_mib=1024)
    async with http.post(sandbox.url, json=batch(1), headers=HEADERS) as resp:
        assert resp.content_length == 1024 * MIB + 61
        first = await resp.content.readexactly(MIB)
        assert first == b" " * MIB
        resp.close()  # gone, 1 GiB unread
    deadline = time.monotonic() + 10
    while not any("went away" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the huge body's handler did not end"
        await asyncio.sleep(0.02)
    await set_faults(http, sandbox)
    assert await post(http, sandbox) == (200, OK)
    assert problems(caplog) == []


async def test_gzip_bomb_is_small_on_the_wire_and_inflates_to_spaces(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    async with aiohttp.ClientSession(auto_decompress=False) as raw_http:
        await set_faults(raw_http, sandbox, gzip_bomb_mib=64)  # built here, once
        async with raw_http.post(sandbox.url, json=batch(1), headers=HEADERS) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert resp.headers["Content-Encoding"] == "gzip"
            wire = await resp.read()
            assert resp.content_length == len(wire)
    assert time.monotonic() - started < 30
    assert 64 * MIB / 1100 < len(wire) < 64 * MIB / 900  # about 1/1000 of what it inflates to
    assert wire == world.gzip_bomb(64)  # what aiohttp sent is the cached stream as is
    inflater = zlib.decompressobj(31)
    head = inflater.decompress(wire, MIB)  # bounded, as a careful client does
    assert head == b" " * MIB
    assert not inflater.eof
    # The whole stream, still 1 MiB at a time: only its end is kept.
    total, end, pending = len(head), head[-64:], inflater.unconsumed_tail
    while not inflater.eof:
        chunk = inflater.decompress(pending, MIB)
        pending = inflater.unconsumed_tail
        total += len(chunk)
        end = (end + chunk)[-64:]
    assert total == 64 * MIB + len(b'{"code":"200","errorCode":"SUCCESS","msg":"ok"}')
    assert end.endswith(b'{"code":"200","errorCode":"SUCCESS","msg":"ok"}')
    assert last_log(sandbox) == (200, "200", 1)
    assert sandbox.state.stats.events == 0  # "delivered" by the body, recorded nowhere
    assert problems(caplog) == []


def test_gzip_bombs_are_built_once_per_size() -> None:
    first = world.gzip_bomb(3)
    assert world.gzip_bomb(3) is first
    assert len(gzip.decompress(first)) == 3 * MIB + 47


async def test_dropped_connection_is_a_client_error(
    sandbox: SandboxServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    await set_faults(http, sandbox, drop_connection=True)
    async with http.post(sandbox.url, json=batch(4), headers=HEADERS) as resp:
        assert resp.status == 200
        assert resp.content_length == 60
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    # A blocking client sees it too.
    request = urllib.request.Request(
        sandbox.url,
        data=json.dumps(batch(1)).encode(),
        headers={**HEADERS, "Content-Type": "application/json"},
    )

    def read_blocking() -> bytes:
        with urllib.request.urlopen(request, timeout=10) as raw:
            return bytes(raw.read())

    with pytest.raises(IncompleteRead):
        await asyncio.to_thread(read_blocking)
    assert last_log(sandbox) == (200, None, 1)
    assert sandbox.state.stats.faults == 2
    await set_faults(http, sandbox)
    assert await post(http, sandbox) == (200, OK)
    assert problems(caplog) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"redirect": {"status": 304, "location": "http://127.0.0.1/x"}},
        {"redirect": {"status": 307, "location": "/relative"}},
        {"redirect": {"status": 307, "location": "http://127.0.0.1/a b"}},
        {"redirect": {"status": 307}},
        {"redirect": "http://127.0.0.1/x"},
        {"html_200": "yes"},
        {"drop_connection": 1},
        {"huge_body_mib": -1},
        {"huge_body_mib": 5000},
        {"huge_body_mib": True},
        {"gzip_bomb_mib": 1.5},
        {"html_200": True, "drop_connection": True},
        {"huge_body_mib": 1, "gzip_bomb_mib": 1},
        {"fail_uuids": "uuid-1"},
        {"fail_uuids": [""]},
        {"failure_code": ""},
        {"failure_code": 500},
    ],
)
async def test_bad_world_settings_are_400(
    sandbox: SandboxServer, http: aiohttp.ClientSession, bad: dict[str, Any]
) -> None:
    async with http.post(sandbox.base_url + "/faults", json=bad) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()
    assert sandbox.state.faults == Faults()


# ------------------------------------------------------------------ gzip request bodies


async def post_bytes(
    http: aiohttp.ClientSession, sandbox: SandboxServer, data: bytes, encoding: str | None
) -> tuple[int, Any]:
    headers = {**HEADERS, "Content-Type": "application/json"}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    async with http.post(sandbox.url, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_gzip_request_body_is_accepted_and_recorded(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    body = batch(3)
    data = gzip.compress(json.dumps(body).encode())
    assert await post_bytes(http, sandbox, data, "gzip") == (200, OK)
    assert sandbox.state.events == body["data"]
    # Two members (a streaming compressor may write them) and the x-gzip alias.
    second = batch(2, start=3)
    raw = json.dumps(second).encode()
    two = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    assert await post_bytes(http, sandbox, two, "x-gzip") == (200, OK)
    # aiohttp's own request compression.
    async with http.post(
        sandbox.url, json=batch(1, start=5), headers=HEADERS, compress="gzip"
    ) as resp:
        assert resp.status == 200
    stats = sandbox.state.stats
    assert (stats.gzip_requests, stats.accepted_requests, stats.unique_uuids) == (3, 3, 6)
    assert (await post(http, sandbox))[0] == 200  # plain bodies as before
    assert stats.gzip_requests == 3


async def test_gzip_bodies_are_validated_after_the_token(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    bad = batch(1)
    bad["data"][0]["eventKey"] = 5
    status, answer = await post_bytes(
        http, sandbox, gzip.compress(json.dumps(bad).encode()), "gzip"
    )
    assert (status, answer["msg"]) == (400, "data[0].eventKey: must be a string, got integer")
    async with http.post(
        sandbox.url,
        data=b"not gzip",
        headers={"X-Token": "bad", "Content-Encoding": "gzip", "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 401
    assert sandbox.state.stats.gzip_requests == 2
    assert sandbox.state.stats.unauthorized == 1


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        (b"not gzip at all", "body: is not valid gzip"),
        (gzip.compress(b'{"publicParams":{}}', mtime=0)[:-6], "body: gzip stream is truncated"),
        (gzip.compress(b"{}", mtime=0) + b"junk", "body: is not valid gzip"),
        (b"", "body: gzip stream is truncated"),
    ],
    ids=["not-gzip", "truncated", "trailing-junk", "empty"],
)
async def test_broken_gzip_bodies_are_400(
    sandbox: SandboxServer, http: aiohttp.ClientSession, data: bytes, msg: str
) -> None:
    status, answer = await post_bytes(http, sandbox, data, "gzip")
    assert status == 400
    assert answer == {"code": "400", "errorCode": "INVALID_PARAMS", "msg": msg}
    assert sandbox.state.stats.rejects == 1


async def test_gzip_body_beyond_the_limit_is_400(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    limit = 64 * MIB
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [compressor.compress(b" " * MIB) for _ in range(64)]
    data = b"".join([*parts, compressor.compress(b" "), compressor.flush()])  # limit + 1
    assert len(data) < MIB
    status, answer = await post_bytes(http, sandbox, data, "gzip")
    assert (status, answer["msg"]) == (400, "body: gzip inflates beyond the limit")
    # Exactly at the limit it inflates (and is then only whitespace: not JSON).
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [compressor.compress(b" " * MIB) for _ in range(64)]
    at_limit = b"".join([*parts, compressor.flush()])
    assert len(gzip.decompress(at_limit)) == limit
    status, answer = await post_bytes(http, sandbox, at_limit, "gzip")
    assert (status, answer["msg"]) == (400, "body: is not valid JSON")


def test_gunzip_is_bounded() -> None:
    data = gzip.compress(b"x" * 1000)
    assert bodies.gunzip_bounded(data, 1000) == b"x" * 1000
    with pytest.raises(bodies.BodyError, match="beyond the limit"):
        bodies.gunzip_bounded(data, 999)
    many = gzip.compress(b"") * 65
    with pytest.raises(bodies.BodyError, match="gzip members"):
        bodies.gunzip_bounded(many, 1000)


@pytest.mark.parametrize("encoding", ["br", "zstd", "deflate", "compress", "gzip, br", "GZIP2"])
async def test_unknown_content_encoding_is_refused(
    sandbox: SandboxServer, http: aiohttp.ClientSession, encoding: str
) -> None:
    status, answer = await post_bytes(http, sandbox, json.dumps(batch(1)).encode(), encoding)
    assert status == 400
    assert answer["code"] == "400"
    assert answer["errorCode"] == "INVALID_PARAMS"
    assert answer["msg"].startswith("Content-Encoding: ")
    assert answer["msg"].endswith("is not supported; send gzip or none")
    assert sandbox.state.stats.events == 0
    assert sandbox.state.stats.gzip_requests == 0


@pytest.mark.parametrize("encoding", ["identity", "", " Identity "])
async def test_identity_encoding_is_plain(
    sandbox: SandboxServer, http: aiohttp.ClientSession, encoding: str
) -> None:
    data = json.dumps(batch(1)).encode()
    assert await post_bytes(http, sandbox, data, encoding) == (200, OK)


async def test_gzip_inflated_by_aiohttp_itself_is_not_inflated_twice(
    http: aiohttp.ClientSession,
) -> None:
    """build_app under a runner that keeps aiohttp's own inflating (SandboxServer turns it
    off): the body is decoded once, by aiohttp, and the bound still holds."""
    app = build_app(TOKEN)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/events/import"
    try:
        headers = {**HEADERS, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        data = gzip.compress(json.dumps(batch(2)).encode())
        async with http.post(url, data=data, headers=headers) as resp:
            assert (resp.status, await resp.json()) == (200, OK)
        bomb = gzip.compress(b" " * (64 * MIB + 1))
        async with http.post(url, data=bomb, headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["msg"] == "body: gzip inflates beyond the limit"
        stats = app[STATE_KEY].stats
        assert (stats.gzip_requests, stats.unique_uuids) == (2, 2)
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ TLS


async def test_tls_with_a_private_ca(ca: PrivateCA, caplog: pytest.LogCaptureFixture) -> None:
    async with SandboxServer(TOKEN, ssl_context=ca.server_context()) as sandbox:
        assert sandbox.url.startswith("https://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.post(
                sandbox.url, json=batch(1), headers=HEADERS, ssl=ca.client_context()
            ) as resp:
                assert (resp.status, await resp.json()) == (200, OK)
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with http.post(sandbox.url, json=batch(1), headers=HEADERS):
                    pass
        assert sandbox.state.stats.requests == 1
    assert problems(caplog) == []


async def test_mutual_tls(ca: PrivateCA) -> None:
    server_context = ca.server_context(require_client_cert=True)
    async with SandboxServer(TOKEN, ssl_context=server_context) as sandbox:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                sandbox.url,
                json=batch(1),
                headers=HEADERS,
                ssl=ca.client_context(with_client_cert=True),
            ) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with http.post(
                    sandbox.url, json=batch(1), headers=HEADERS, ssl=ca.client_context()
                ) as resp:
                    await resp.read()
        assert sandbox.state.stats.requests == 1


def test_private_ca_files(ca: PrivateCA) -> None:
    for path in (ca.ca, ca.server_cert, ca.client_cert):
        assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    for path in (ca.server_key, ca.client_key):
        assert "PRIVATE KEY-----" in path.read_text()
    assert {p.name for p in ca.dir.iterdir()} >= {
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    }


def test_sandbox_process_over_https(ca: PrivateCA, tmp_path: Path) -> None:
    sandbox = SandboxProcess(
        tmp_path / "sandbox.log",
        extra_args=ca.sandbox_args(),
        cafile=str(ca.ca),
        faults={"failure_code": "OOPS"},
    )
    try:
        assert sandbox.url.startswith("https://127.0.0.1:")
        assert sandbox.base_url + "/v1/events/import" == sandbox.url
        assert sandbox.set_faults()["failure_code"] is None
        request = urllib.request.Request(
            sandbox.url,
            data=json.dumps(batch(2)).encode(),
            headers={"X-Token": DRILL_TOKEN, "Content-Type": "application/json"},
        )
        context = ca.client_context()
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            assert json.load(resp) == OK
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(request, timeout=10)
        assert sandbox.stats()["unique_uuids"] == 2
        assert sandbox.uuids() == {"uuid-0", "uuid-1"}
        assert sandbox.stop() == 0
    finally:
        sandbox.close()
    assert sandbox.log_problems() == []
    assert "sandbox event import API listening on https://127.0.0.1:" in sandbox.log_text()


def test_odd_answers_leave_no_error_in_the_sandbox_process_log(tmp_path: Path) -> None:
    """The standalone sandbox (what the drills run): clients that give up on a huge body,
    a gzip bomb read raw and a dropped connection leave no traceback in its log."""
    sandbox = SandboxProcess(tmp_path / "sandbox.log", faults={"huge_body_mib": 256})
    try:
        request = urllib.request.Request(
            sandbox.url,
            data=json.dumps(batch(1)).encode(),
            headers={"X-Token": DRILL_TOKEN, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.headers["Content-Length"] == str(256 * MIB + 61)
            assert resp.read(MIB) == b" " * MIB
        sandbox.set_faults(gzip_bomb_mib=16)
        with urllib.request.urlopen(request, timeout=10) as resp:  # urllib does not inflate
            assert resp.headers["Content-Encoding"] == "gzip"
            assert len(resp.read()) == int(resp.headers["Content-Length"])
        sandbox.set_faults(drop_connection=True)
        with urllib.request.urlopen(request, timeout=10) as resp, pytest.raises(IncompleteRead):
            resp.read()
        sandbox.set_faults()
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.load(resp) == OK
        assert sandbox.stats()["faults"] == 3
        assert sandbox.stop() == 0
    finally:
        sandbox.close()
    assert sandbox.log_problems() == []


# ------------------------------------------------------------------ forward proxy


async def test_proxy_relays_a_plain_request(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    with ForwardProxy() as proxy:
        for _ in range(2):
            async with http.post(
                sandbox.url, json=batch(2), headers=HEADERS, proxy=proxy.url
            ) as resp:
                assert (resp.status, await resp.json()) == (200, OK)
                assert resp.headers["Connection"] == "close"

        async def chunks() -> AsyncIterator[bytes]:
            raw = json.dumps(batch(1, start=7)).encode()
            for i in range(0, len(raw), 16):
                yield raw[i : i + 16]

        async with http.post(  # a chunked request body
            sandbox.url,
            data=chunks(),
            headers={**HEADERS, "Content-Type": "application/json"},
            proxy=proxy.url,
        ) as resp:
            assert resp.status == 200
        assert proxy.plain_requests == 3
        assert proxy.connect_tunnels == 0
        assert proxy.targets == [f"127.0.0.1:{sandbox.port}"] * 3
        assert proxy.errors == []
    assert sandbox.state.seen_uuids == {"uuid-0", "uuid-1", "uuid-7"}


async def test_proxy_tunnels_connect_to_the_tls_sandbox(ca: PrivateCA) -> None:
    async with SandboxServer(TOKEN, ssl_context=ca.server_context()) as sandbox:
        with ForwardProxy() as proxy:
            context = ca.client_context()  # one context: aiohttp pools connections by it
            async with aiohttp.ClientSession() as http:
                for _ in range(2):  # the tunnel is kept alive and reused
                    async with http.post(
                        sandbox.url, json=batch(1), headers=HEADERS, proxy=proxy.url, ssl=context
                    ) as resp:
                        assert (resp.status, await resp.json()) == (200, OK)
            assert proxy.connect_tunnels == 1
            assert proxy.plain_requests == 0
            assert proxy.targets == [f"127.0.0.1:{sandbox.port}"]
            assert proxy.errors == []
        assert sandbox.state.stats.accepted_requests == 2


async def test_proxy_requires_its_credentials(ca: PrivateCA, sandbox: SandboxServer) -> None:
    with ForwardProxy(required_auth=("user", "pa:ss")) as proxy:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                sandbox.url, json=batch(1), headers=HEADERS, proxy=proxy.url
            ) as resp:
                assert resp.status == 407
                assert resp.headers["Proxy-Authenticate"].startswith("Basic")
            # A plain request through a proxy carries Proxy-Authorization itself (aiohttp
            # puts proxy_headers on CONNECT requests only).
            wrong = {"Proxy-Authorization": aiohttp.encode_basic_auth("user", "nope")}
            async with http.post(
                sandbox.url, json=batch(1), headers={**HEADERS, **wrong}, proxy=proxy.url
            ) as resp:
                assert resp.status == 407
            right = {"Proxy-Authorization": aiohttp.encode_basic_auth("user", "pa:ss")}
            async with http.post(
                sandbox.url, json=batch(1), headers={**HEADERS, **right}, proxy=proxy.url
            ) as resp:
                assert resp.status == 200
            async with SandboxServer(TOKEN, ssl_context=ca.server_context()) as tls:
                with pytest.raises(aiohttp.ClientHttpProxyError) as info:
                    async with http.post(
                        tls.url, json=batch(1), proxy=proxy.url, ssl=ca.client_context()
                    ):
                        pass
                assert info.value.status == 407
                async with http.post(
                    tls.url,
                    json=batch(1),
                    headers=HEADERS,
                    proxy=proxy.url,
                    proxy_headers=right,
                    ssl=ca.client_context(),
                ) as resp:
                    assert resp.status == 200
        assert proxy.auth_failures == 3
        assert (proxy.plain_requests, proxy.connect_tunnels) == (1, 1)
        assert proxy.errors == []
    assert sandbox.state.stats.requests == 1


def raw_proxy_request(proxy: ForwardProxy, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "head",
    [
        b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n",
        b"GET http://192.0.2.1/x HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n",
        b"GET http://example.invalid:8080/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
    ],
)
def test_proxy_refuses_targets_that_are_not_loopback(head: bytes) -> None:
    # Refused before any lookup or connection: nothing leaves the machine.
    with ForwardProxy() as proxy:
        answer = raw_proxy_request(proxy, head)
        assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert proxy.refused == 1
        assert proxy.targets == []
        assert proxy.errors == []


def test_proxy_refuses_garbage_and_https_absolute_uris() -> None:
    with ForwardProxy() as proxy:
        assert raw_proxy_request(proxy, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        head = b"GET https://127.0.0.1:1/ HTTP/1.1\r\n\r\n"
        assert raw_proxy_request(proxy, head).startswith(b"HTTP/1.1 400 ")
        assert proxy.errors == []


# ------------------------------------------------------------------ CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="event-sink sandbox")
    add_arguments(p)
    return p


def test_cli_world_flags_build_faults() -> None:
    ns = parser().parse_args(
        [
            "--token",
            "T",
            "--failure-code",
            "500",
            "--failure-status",
            "200",
            "--fail-uuids",
            "u1, u2",
            "--redirect",
            "308:https://127.0.0.1:9443/v2",
        ]
    )
    assert faults_from_args(ns) == Faults(
        failure_code="500",
        failure_status=200,
        fail_uuids=("u1", "u2"),
        redirect=world.Redirect(308, "https://127.0.0.1:9443/v2"),
    )
    for flags, expected in (
        (["--html-200"], Faults(html_200=True)),
        (["--huge-body-mib", "16"], Faults(huge_body_mib=16)),
        (["--gzip-bomb-mib", "1024"], Faults(gzip_bomb_mib=1024)),
        (["--drop-connection"], Faults(drop_connection=True)),
    ):
        assert faults_from_args(parser().parse_args(["--token", "T", *flags])) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--html-200", "--drop-connection"],
        ["--huge-body-mib", "1", "--gzip-bomb-mib", "1"],
        ["--redirect", "http://127.0.0.1/x"],
        ["--redirect", "304:http://127.0.0.1/x"],
        ["--redirect", "307:/relative"],
        ["--huge-body-mib", "0"],
        ["--gzip-bomb-mib", "5000"],
        ["--failure-code", ""],
        ["--fail-uuids", ","],
    ],
)
def test_cli_rejects_bad_world_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--token", "T", *argv])
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--tls-cert", "c.pem"], "go together"),
        (["--tls-key", "k.pem"], "go together"),
        (["--tls-client-ca", "ca.pem"], "needs --tls-cert"),
        (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], "cannot load"),
    ],
)
def test_main_rejects_bad_tls_flags(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--token", "T", *argv])
    assert match in capsys.readouterr().err


def test_server_ssl_context_requires_client_certs_with_a_client_ca(ca: PrivateCA) -> None:
    plain = server_ssl_context(str(ca.server_cert), str(ca.server_key))
    assert plain.verify_mode == ssl.CERT_NONE
    mutual = server_ssl_context(str(ca.server_cert), str(ca.server_key), str(ca.ca))
    assert mutual.verify_mode == ssl.CERT_REQUIRED
