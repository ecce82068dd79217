"""The sandbox event import API, exercised over real HTTP on loopback."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.sandbox import (
    DEFAULT_PATH,
    REQUEST_LOG_SIZE,
    STATE_KEY,
    ContractError,
    Faults,
    SandboxServer,
    SandboxState,
    ScriptStep,
    add_arguments,
    build_app,
    faults_from_args,
    main,
    parse_script,
    serve,
    validate_request,
)

TOKEN = "s3cret-token"

Body = dict[str, Any]


def event(n: int = 0, **overrides: Any) -> Body:
    ev: Body = {
        "identities": [{"identityValue": f"1888888{n:04d}", "identityType": "phone"}],
        "time": 1605490615673 + n,
        "uuid": f"uuid-{n}",
        "eventKey": "c_buy",
    }
    ev.update(overrides)
    return ev


def batch(n: int = 1, start: int = 0) -> Body:
    return {
        "publicParams": {"isMatching": 1, "matchingType": 1},
        "data": [event(i) for i in range(start, start + n)],
    }


# The vendor's own example, verbatim apart from layout.
VENDOR_EXAMPLE: Body = {
    "publicParams": {"isMatching": True, "matchingType": 1},
    "data": [
        {
            "identities": [{"identityValue": "18888888888", "identityType": "phone"}],
            "time": 1605490615673,
            "uuid": "asd123",
            "eventKey": "c_buy",
            "intid": "jjsfia-fjfoha99-ljflw0h-90dsj",
            "eventargs": {
                "c_goods": "创维洗衣机",
                "c_price": 1420.00,
                "unionid": "d3f4g2ferg3t2ff2g4g2f21f2",
                "title": "下单",
            },
        }
    ],
}


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(TOKEN, rng=random.Random(7)) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    server: SandboxServer,
    body: Any,
    *,
    token: str | None = TOKEN,
) -> tuple[int, Any]:
    headers = {} if token is None else {"X-Token": token}
    async with http.post(server.url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def post_raw(
    http: aiohttp.ClientSession, server: SandboxServer, data: bytes, content_type: str | None
) -> tuple[int, Any]:
    headers = {"X-Token": TOKEN}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with http.post(server.url, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def get(http: aiohttp.ClientSession, server: SandboxServer, path: str) -> Any:
    async with http.get(server.base_url + path) as resp:
        assert resp.status == 200
        return await resp.json()


def assert_vendor_shape(body: Any, code: str, error_code: str) -> None:
    assert set(body) == {"code", "errorCode", "msg"}
    assert body["code"] == code
    assert body["errorCode"] == error_code
    assert isinstance(body["msg"], str)


OK = {"code": "200", "errorCode": "SUCCESS", "msg": "ok"}
EMPTY_STATS = {
    "requests": 0,
    "accepted_requests": 0,
    "events": 0,
    "unique_uuids": 0,
    "duplicates": 0,
    "rejects": 0,
    "unauthorized": 0,
    "faults": 0,
    "refused": 0,
    "max_batch": 0,
    "gzip_requests": 0,
    "failed_uuid_requests": 0,
    "quota_refused": 0,
    "max_queued": 0,
    "max_concurrent": 0,
}


# ------------------------------------------------------------------ acceptance


async def test_valid_batch_is_accepted_and_recorded(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    body = batch(3)
    assert await post(http, sandbox, body) == (200, OK)

    stats = await get(http, sandbox, "/stats")
    assert stats == {
        **EMPTY_STATS,
        "requests": 1,
        "accepted_requests": 1,
        "events": 3,
        "unique_uuids": 3,
        "max_batch": 3,
    }
    assert await get(http, sandbox, "/events") == body["data"]
    assert sandbox.state.seen_uuids == {"uuid-0", "uuid-1", "uuid-2"}


async def test_url_properties(sandbox: SandboxServer) -> None:
    assert sandbox.port > 0
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.port}"
    assert sandbox.url == sandbox.base_url + DEFAULT_PATH


async def test_vendor_example_is_accepted(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    assert await post(http, sandbox, VENDOR_EXAMPLE) == (200, OK)
    assert await get(http, sandbox, "/events") == VENDOR_EXAMPLE["data"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.update(publicParams={}), id="empty-publicParams"),
        pytest.param(lambda b: b["publicParams"].update(isMatching=False), id="isMatching-bool"),
        pytest.param(lambda b: b["publicParams"].update(isMatching=2), id="isMatching-2"),
        pytest.param(lambda b: b["data"][0].pop("time"), id="no-time"),
        pytest.param(lambda b: b["data"][0].pop("uuid"), id="no-uuid"),
        pytest.param(lambda b: b["data"][0].update(time=0), id="time-zero"),
        pytest.param(lambda b: b["data"][0].update(intid=""), id="empty-intid"),
        pytest.param(
            lambda b: b["data"][0].update(eventargs={"a": None, "b": 1, "c": 1.5, "d": True}),
            id="eventargs-null-and-scalars",
        ),
        pytest.param(lambda b: b["data"][0].update(eventargs={}), id="empty-eventargs"),
        pytest.param(
            lambda b: b["data"][0]["identities"][0].update(
                platform="gzh", mpid="wx123", isWeChatEcosystem=True
            ),
            id="mpid-with-flag",
        ),
        pytest.param(
            lambda b: b["data"][0]["identities"][0].update(isWeChatEcosystem=False),
            id="flag-without-mpid",
        ),
        pytest.param(
            lambda b: b["data"][0]["identities"].append(
                {"identityValue": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "identityType": "openid"}
            ),
            id="two-identities",
        ),
    ],
)
async def test_optional_forms_are_accepted(
    sandbox: SandboxServer, http: aiohttp.ClientSession, mutate: Callable[[Body], Any]
) -> None:
    body = batch(1)
    mutate(body)
    assert await post(http, sandbox, body) == (200, OK)
    assert sandbox.state.events == body["data"]


async def test_charset_utf8_is_accepted(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    data = json.dumps(VENDOR_EXAMPLE, ensure_ascii=False).encode()
    status, _ = await post_raw(http, sandbox, data, "application/json; charset=UTF-8")
    assert status == 200


async def test_500_events_is_the_limit(sandbox: SandboxServer, http: aiohttp.ClientSession) -> None:
    assert await post(http, sandbox, batch(500)) == (200, OK)
    status, body = await post(http, sandbox, batch(501))
    assert status == 400
    assert_vendor_shape(body, "400", "INVALID_PARAMS")
    assert body["msg"].startswith("data:")
    assert "at most 500" in body["msg"]

    stats = sandbox.state.stats_json()
    assert stats["max_batch"] == 500
    assert stats["events"] == 500
    assert stats["rejects"] == 1


# ------------------------------------------------------------------ token


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN.upper(), TOKEN + "x"])
async def test_bad_token_is_401(
    sandbox: SandboxServer, http: aiohttp.ClientSession, token: str | None
) -> None:
    status, body = await post(http, sandbox, batch(1), token=token)
    assert status == 401
    assert_vendor_shape(body, "401", "UNAUTHORIZED")
    assert TOKEN not in body["msg"]
    stats = sandbox.state.stats_json()
    assert stats["unauthorized"] == 1
    assert stats["accepted_requests"] == stats["events"] == 0
    assert sandbox.state.events == []


async def test_token_is_checked_before_the_body(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    status, _ = await post_raw(http, sandbox, b"not json", "text/plain")
    assert status == 400
    async with http.post(sandbox.url, data=b"not json") as resp:
        assert resp.status == 401


# ------------------------------------------------------------------ contract violations


def at3(mutate: Callable[[Body], Any]) -> Callable[[Body], Any]:
    """Apply ``mutate`` to data[3], so that paths prove they carry the right index."""
    return lambda b: mutate(b["data"][3])


def ident(mutate: Callable[[Body], Any]) -> Callable[[Body], Any]:
    return lambda b: mutate(b["data"][3]["identities"][0])


VIOLATIONS: list[Any] = [
    # top level
    pytest.param(lambda b: b.pop("publicParams"), "publicParams: required", id="no-publicParams"),
    pytest.param(lambda b: b.update(publicParams=None), "publicParams:", id="null-publicParams"),
    pytest.param(lambda b: b.update(publicParams=[]), "publicParams:", id="publicParams-array"),
    pytest.param(lambda b: b.pop("data"), "data: required", id="no-data"),
    pytest.param(lambda b: b.update(data={}), "data: must be an array", id="data-object"),
    pytest.param(lambda b: b.update(data=[]), "data: must hold 1..500", id="data-empty"),
    pytest.param(lambda b: b.update(extra=1), "extra: unknown field", id="unknown-top-key"),
    # publicParams
    pytest.param(
        lambda b: b["publicParams"].update(matchingType=True),
        "publicParams.matchingType:",
        id="matchingType-bool",
    ),
    pytest.param(
        lambda b: b["publicParams"].update(matchingType="1"),
        "publicParams.matchingType:",
        id="matchingType-string",
    ),
    pytest.param(
        lambda b: b["publicParams"].update(matchingType=3),
        "publicParams.matchingType:",
        id="matchingType-3",
    ),
    pytest.param(
        lambda b: b["publicParams"].update(matchingType=None),
        "publicParams.matchingType: null is not allowed",
        id="matchingType-null",
    ),
    pytest.param(
        lambda b: b["publicParams"].update(isMatching=0),
        "publicParams.isMatching:",
        id="isMatching-0",
    ),
    pytest.param(
        lambda b: b["publicParams"].update(isMatching="true"),
        "publicParams.isMatching:",
        id="isMatching-string",
    ),
    pytest.param(
        lambda b: b["publicParams"].update(mode=1),
        "publicParams.mode: unknown field",
        id="unknown-publicParams-key",
    ),
    # event
    pytest.param(lambda b: b["data"].__setitem__(3, []), "data[3]: must be an object", id="ev-arr"),
    pytest.param(at3(lambda e: e.pop("identities")), "data[3].identities: required", id="no-ids"),
    pytest.param(
        at3(lambda e: e.update(identities=[])),
        "data[3].identities: must hold at least one",
        id="empty-identities",
    ),
    pytest.param(
        at3(lambda e: e.update(identities=None)), "data[3].identities: required", id="null-ids"
    ),
    pytest.param(
        at3(lambda e: e.update(identities={})), "data[3].identities: must be an array", id="ids-obj"
    ),
    pytest.param(at3(lambda e: e.pop("eventKey")), "data[3].eventKey: required", id="no-eventKey"),
    pytest.param(
        at3(lambda e: e.update(eventKey="")),
        "data[3].eventKey: must be a non-empty",
        id="empty-key",
    ),
    pytest.param(
        at3(lambda e: e.update(eventKey=7)), "data[3].eventKey: must be a string", id="int-key"
    ),
    pytest.param(at3(lambda e: e.update(eventKey=None)), "data[3].eventKey:", id="null-eventKey"),
    pytest.param(
        at3(lambda e: e.update(time=True)), "data[3].time: must be an integer", id="time-bool"
    ),
    pytest.param(
        at3(lambda e: e.update(time="1605490615673")),
        "data[3].time: must be an integer",
        id="time-string",
    ),
    pytest.param(
        at3(lambda e: e.update(time=1605490615673.0)),
        "data[3].time: must be an integer",
        id="time-float",
    ),
    pytest.param(at3(lambda e: e.update(time=-1)), "data[3].time: must be epoch", id="time-neg"),
    pytest.param(at3(lambda e: e.update(time=2**63)), "data[3].time: must be epoch", id="time-big"),
    pytest.param(
        at3(lambda e: e.update(time=None)), "data[3].time: null is not allowed", id="time-null"
    ),
    pytest.param(
        at3(lambda e: e.update(uuid="")), "data[3].uuid: must be a non-empty", id="uuid-e"
    ),
    pytest.param(at3(lambda e: e.update(uuid=12)), "data[3].uuid: must be a string", id="uuid-int"),
    pytest.param(at3(lambda e: e.update(uuid=None)), "data[3].uuid: null is not", id="uuid-null"),
    pytest.param(at3(lambda e: e.update(intid=5)), "data[3].intid: must be a string", id="intid-i"),
    pytest.param(at3(lambda e: e.update(intid=None)), "data[3].intid: null is not", id="intid-nul"),
    pytest.param(
        at3(lambda e: e.update(eventargs=[])), "data[3].eventargs: must be an object", id="args-arr"
    ),
    pytest.param(
        at3(lambda e: e.update(eventargs=None)), "data[3].eventargs: null is not", id="args-null"
    ),
    pytest.param(
        at3(lambda e: e.update(eventargs={"c_sku": {"id": 1}})),
        "data[3].eventargs.c_sku: must be a string, number, bool or null",
        id="args-nested-object",
    ),
    pytest.param(
        at3(lambda e: e.update(eventargs={"c sku": [1]})),
        'data[3].eventargs."c sku": must be',
        id="args-list-value-odd-key",
    ),
    pytest.param(at3(lambda e: e.update(appId="x")), "data[3].appId: unknown field", id="ev-unk"),
    # identity
    pytest.param(
        at3(lambda e: e.update(identities=["18888888888"])),
        "data[3].identities[0]: must be an object",
        id="identity-string",
    ),
    pytest.param(
        ident(lambda i: i.pop("identityValue")),
        "data[3].identities[0].identityValue: required",
        id="no-identityValue",
    ),
    pytest.param(
        ident(lambda i: i.update(identityValue=18888888888)),
        "data[3].identities[0].identityValue: must be a string",
        id="identityValue-int",
    ),
    pytest.param(
        ident(lambda i: i.pop("identityType")),
        "data[3].identities[0].identityType: required",
        id="no-identityType",
    ),
    pytest.param(
        ident(lambda i: i.update(identityType=None)),
        "data[3].identities[0].identityType: required",
        id="null-identityType",
    ),
    pytest.param(
        ident(lambda i: i.update(platform=1)),
        "data[3].identities[0].platform: must be a string",
        id="platform-int",
    ),
    pytest.param(
        ident(lambda i: i.update(platform=None)),
        "data[3].identities[0].platform: null is not allowed",
        id="platform-null",
    ),
    pytest.param(
        ident(lambda i: i.update(mpid="wx123")),
        "data[3].identities[0].isWeChatEcosystem: required when mpid is sent",
        id="mpid-without-flag",
    ),
    pytest.param(
        ident(lambda i: i.update(mpid="wx123", isWeChatEcosystem=None)),
        "data[3].identities[0].isWeChatEcosystem: null is not allowed",
        id="mpid-with-null-flag",
    ),
    pytest.param(
        ident(lambda i: i.update(mpid=None, isWeChatEcosystem=True)),
        "data[3].identities[0].mpid: null is not allowed",
        id="mpid-null",
    ),
    pytest.param(
        ident(lambda i: i.update(isWeChatEcosystem=1)),
        "data[3].identities[0].isWeChatEcosystem: must be a bool",
        id="flag-int",
    ),
    pytest.param(
        ident(lambda i: i.update(isWeChatEcosystem="true")),
        "data[3].identities[0].isWeChatEcosystem: must be a bool",
        id="flag-string",
    ),
    pytest.param(
        ident(lambda i: i.update(appid="wx123")),
        "data[3].identities[0].appid: unknown field",
        id="deprecated-appid",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), VIOLATIONS)
async def test_contract_violation_is_400_naming_the_path(
    sandbox: SandboxServer,
    http: aiohttp.ClientSession,
    mutate: Callable[[Body], Any],
    expected: str,
) -> None:
    body = batch(5)
    mutate(body)
    status, answer = await post(http, sandbox, body)
    assert status == 400
    assert_vendor_shape(answer, "400", "INVALID_PARAMS")
    assert answer["msg"].startswith(expected), answer["msg"]
    # A 400 rejects the whole request: the four valid events are not recorded either.
    stats = sandbox.state.stats_json()
    assert stats == {**EMPTY_STATS, "requests": 1, "rejects": 1}
    assert sandbox.state.events == []


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        pytest.param(b"{not json", "application/json", "body: is not valid JSON", id="not-json"),
        pytest.param(b"", "application/json", "body: is not valid JSON", id="empty"),
        pytest.param(b"[1, 2]", "application/json", "body: must be a JSON object", id="array"),
        pytest.param(b"null", "application/json", "body: must be a JSON object", id="null"),
        pytest.param(
            b'{"publicParams": {}, "data": [{"time": NaN}]}',
            "application/json",
            "body: is not valid JSON",
            id="nan",
        ),
        pytest.param(b'{"a": "\xff"}', "application/json", "body: is not UTF-8", id="latin1"),
        pytest.param(
            b"\xef\xbb\xbf" + json.dumps(batch(1)).encode(),
            "application/json",
            "body: is not valid JSON",
            id="utf8-bom",
        ),
        pytest.param(
            json.dumps(batch(1)).encode(), "text/plain", "Content-Type: must be", id="text-plain"
        ),
        pytest.param(json.dumps(batch(1)).encode(), None, "Content-Type: must be", id="no-type"),
        pytest.param(
            json.dumps(batch(1)).encode(),
            "application/json; charset=gbk",
            "Content-Type: charset must be utf-8",
            id="charset-gbk",
        ),
    ],
)
async def test_malformed_body_is_400(
    sandbox: SandboxServer,
    http: aiohttp.ClientSession,
    data: bytes,
    content_type: str | None,
    expected: str,
) -> None:
    status, answer = await post_raw(http, sandbox, data, content_type)
    assert status == 400
    assert_vendor_shape(answer, "400", "INVALID_PARAMS")
    assert answer["msg"].startswith(expected), answer["msg"]
    assert sandbox.state.stats.rejects == 1


# ------------------------------------------------------------------ duplicates


async def test_duplicates_are_counted(sandbox: SandboxServer, http: aiohttp.ClientSession) -> None:
    assert (await post(http, sandbox, batch(3)))[0] == 200  # uuid-0..2
    assert (await post(http, sandbox, batch(3, start=1)))[0] == 200  # uuid-1..3: 2 repeats
    in_batch = batch(2, start=10)
    in_batch["data"].append(event(10))  # a repeat inside one batch counts too
    in_batch["data"].append({k: v for k, v in event(99).items() if k != "uuid"})  # no uuid
    assert (await post(http, sandbox, in_batch))[0] == 200

    stats = await get(http, sandbox, "/stats")
    assert stats["events"] == 10
    assert stats["unique_uuids"] == 6
    assert stats["duplicates"] == 3
    assert stats["max_batch"] == 4
    assert len(await get(http, sandbox, "/events")) == 10


# ------------------------------------------------------------------ faults


async def test_script_answers_in_order_then_records_once(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxServer(TOKEN, faults=Faults(script=[503, 503, 200])) as sandbox:
        body = batch(2)
        for expected in (503, 503):
            status, answer = await post(http, sandbox, body)
            assert status == expected
            assert answer == {
                "code": "503",
                "errorCode": "SERVICE_UNAVAILABLE",
                "msg": "injected fault",
            }
            assert sandbox.state.events == []
        assert await post(http, sandbox, body) == (200, OK)
        assert await post(http, sandbox, batch(1, start=5)) == (200, OK)  # script exhausted

        stats = sandbox.state.stats_json()
        assert stats["requests"] == 4
        assert stats["faults"] == 2
        assert stats["accepted_requests"] == 2
        assert stats["events"] == 3
        assert stats["duplicates"] == 0
        assert sandbox.state.script_remaining == []


async def test_fault_precedes_token_and_validation(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(TOKEN, faults=Faults(script=[500, 500])) as sandbox:
        assert (await post(http, sandbox, batch(1), token="wrong"))[0] == 500
        assert (await post_raw(http, sandbox, b"junk", "text/plain"))[0] == 500
        stats = sandbox.state.stats_json()
        assert stats["faults"] == 2
        assert stats["unauthorized"] == stats["rejects"] == 0


async def test_script_step_with_body_code(http: aiohttp.ClientSession) -> None:
    faults = Faults(script=[ScriptStep(200, "500"), ScriptStep(429), ScriptStep(200, "200")])
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        status, answer = await post(http, sandbox, batch(1))
        # HTTP 200 but a refusing body: the contract says not delivered, so not recorded.
        assert status == 200
        assert_vendor_shape(answer, "500", "INTERNAL_SERVER_ERROR")
        status, answer = await post(http, sandbox, batch(1))
        assert status == 429
        assert_vendor_shape(answer, "429", "TOO_MANY_REQUESTS")
        assert await post(http, sandbox, batch(1)) == (200, OK)
        assert sandbox.state.stats.faults == 2
        assert sandbox.state.stats.events == 1


async def test_failure_rate_one_fails_everything(http: aiohttp.ClientSession) -> None:
    faults = Faults(failure_rate=1.0, failure_status=502)
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        for _ in range(5):
            status, answer = await post(http, sandbox, batch(1))
            assert status == 502
            assert_vendor_shape(answer, "502", "BAD_GATEWAY")
        assert sandbox.state.stats.faults == 5
        assert sandbox.state.events == []


async def test_random_failures_are_reproducible_with_a_seed(http: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        faults = Faults(failure_rate=0.5)
        async with SandboxServer(TOKEN, faults=faults, rng=random.Random(seed)) as sandbox:
            return [(await post(http, sandbox, batch(1)))[0] for _ in range(20)]

    first = await statuses(42)
    assert first == await statuses(42)
    assert set(first) == {200, 503}


async def test_latency_is_applied(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(TOKEN, faults=Faults(latency_ms=150)) as sandbox:
        started = time.monotonic()
        assert (await post(http, sandbox, batch(1)))[0] == 200
        # A lower bound only; 5 ms of slack for the event loop's clock resolution.
        assert time.monotonic() - started >= 0.145


async def test_faults_can_be_replaced_at_runtime(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    assert (await get(http, sandbox, "/faults")) == {
        "failure_rate": 0.0,
        "failure_status": 503,
        "latency_ms": 0.0,
        "script": [],
        "retry_after": None,
        "refuse_event_keys": [],
        "refuse_with_200": False,
        "failure_code": None,
        "redirect": None,
        "html_200": False,
        "huge_body_mib": 0,
        "gzip_bomb_mib": 0,
        "drop_connection": False,
        "fail_uuids": [],
        "quota_events_per_s": None,
        "quota_burst_s": 1.0,
        "slots": None,
        "script_remaining": [],
    }
    new = {"script": [504, {"status": 200, "code": "403"}], "failure_status": 500}
    async with http.post(sandbox.base_url + "/faults", json=new) as resp:
        assert resp.status == 200
        current = await resp.json()
    assert current["script"] == [504, {"status": 200, "code": "403"}]
    assert current["failure_status"] == 500
    assert current["failure_rate"] == 0.0

    assert (await post(http, sandbox, batch(1)))[0] == 504
    assert (await get(http, sandbox, "/faults"))["script_remaining"] == [
        {"status": 200, "code": "403"}
    ]
    status, answer = await post(http, sandbox, batch(1))
    assert (status, answer["code"]) == (200, "403")
    assert await post(http, sandbox, batch(1)) == (200, OK)

    # Replacing, not merging: failure_status falls back to its default, 503.
    async with http.post(sandbox.base_url + "/faults", json={"failure_rate": 1}) as resp:
        assert resp.status == 200
    assert (await post(http, sandbox, batch(1)))[0] == 503


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_rate": 1.5},
        {"failure_rate": True},
        {"failure_status": 99},
        {"failure_status": "503"},
        {"latency_ms": -1},
        {"script": "503,200"},
        {"script": [503, "200"]},
        {"script": [{"code": "500"}]},
        {"script": [{"status": 200, "code": 500}]},
        {"script": [{"status": 429, "retry_after": 2}]},
        {"script": [{"status": 429, "retry_after": ""}]},
        {"script": [{"status": 429, "retry_after": "2\r\nX-Evil: 1"}]},
        {"script": [{"status": 429, "wait": "2"}]},
        {"retry_after": 2},
        {"refuse_event_keys": "c_buy"},
        {"refuse_event_keys": [""]},
        {"refuse_event_keys": [1]},
        {"refuse_with_200": 1},
        {"typo": 1},
        [],
    ],
)
async def test_bad_fault_settings_are_400(
    sandbox: SandboxServer, http: aiohttp.ClientSession, bad: Any
) -> None:
    async with http.post(sandbox.base_url + "/faults", json=bad) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()
    assert sandbox.state.faults == Faults()


async def test_faults_set_in_process_restart_the_script(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    sandbox.state.faults = Faults(script=[503])
    assert (await post(http, sandbox, batch(1)))[0] == 503
    assert (await post(http, sandbox, batch(1)))[0] == 200
    sandbox.state.faults = sandbox.state.faults  # same settings, script starts over
    assert (await post(http, sandbox, batch(1)))[0] == 503


# ------------------------------------------------------------------ refusal by event key


async def test_refused_event_key_refuses_the_whole_request_with_400(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxServer(TOKEN, faults=Faults(refuse_event_keys=("c_bad",))) as sandbox:
        body = batch(5)
        body["data"][3]["eventKey"] = "c_bad"
        body["data"][4]["eventKey"] = "c_bad"
        status, answer = await post(http, sandbox, body)
        assert status == 400
        assert answer == {
            "code": "400",
            "errorCode": "INVALID_PARAMS",
            "msg": "data[3].eventKey: refused by the sandbox",
        }
        assert sandbox.state.events == []
        assert sandbox.state.seen_uuids == frozenset()
        # Requests without a refused key pass as usual.
        assert await post(http, sandbox, batch(2)) == (200, OK)
        stats = sandbox.state.stats_json()
    assert stats == {
        **EMPTY_STATS,
        "requests": 2,
        "accepted_requests": 1,
        "events": 2,
        "unique_uuids": 2,
        "refused": 1,
        "max_batch": 2,
    }


async def test_refusal_inside_a_200(http: aiohttp.ClientSession) -> None:
    faults = Faults(refuse_event_keys=("c_x", "c_buy"), refuse_with_200=True)
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        status, answer = await post(http, sandbox, batch(2))
        assert status == 200
        assert_vendor_shape(answer, "400", "INVALID_PARAMS")
        assert answer["msg"] == "data[0].eventKey: refused by the sandbox"
        assert sandbox.state.stats.refused == 1
        assert sandbox.state.stats.accepted_requests == 0
        assert sandbox.state.events == []


async def test_refusal_comes_after_faults_token_and_contract(http: aiohttp.ClientSession) -> None:
    faults = Faults(refuse_event_keys=("c_buy",), script=[503])
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        assert (await post(http, sandbox, batch(1)))[0] == 503
        assert (await post(http, sandbox, batch(1), token="wrong"))[0] == 401
        broken = batch(2)
        broken["data"][1].pop("identities")
        status, answer = await post(http, sandbox, broken)
        assert status == 400
        assert answer["msg"] == "data[1].identities: required"
        stats = sandbox.state.stats
        assert (stats.faults, stats.unauthorized, stats.rejects, stats.refused) == (1, 1, 1, 0)


async def test_refusal_set_at_runtime_through_post_faults(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    new = {"refuse_event_keys": ["c_buy"], "refuse_with_200": True}
    async with http.post(sandbox.base_url + "/faults", json=new) as resp:
        assert resp.status == 200
        current = await resp.json()
    assert current["refuse_event_keys"] == ["c_buy"]
    assert current["refuse_with_200"] is True
    status, answer = await post(http, sandbox, batch(1))
    assert (status, answer["code"]) == (200, "400")


# ------------------------------------------------------------------ Retry-After


async def post_with_headers(
    http: aiohttp.ClientSession, server: SandboxServer, body: Any
) -> tuple[int, str | None]:
    async with http.post(server.url, json=body, headers={"X-Token": TOKEN}) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Retry-After")


async def test_script_steps_carry_retry_after_verbatim(http: aiohttp.ClientSession) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    faults = Faults(
        script=[
            ScriptStep(429, retry_after="2"),
            ScriptStep(503, retry_after=date),
            ScriptStep(503),
            ScriptStep(200, retry_after="7"),  # passes: the normal answer carries it
        ]
    )
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        answers = [await post_with_headers(http, sandbox, batch(1, start=i)) for i in range(5)]
        assert answers == [(429, "2"), (503, date), (503, None), (200, "7"), (200, None)]
        assert sandbox.state.stats.events == 2


async def test_random_faults_carry_the_configured_retry_after(http: aiohttp.ClientSession) -> None:
    faults = Faults(failure_rate=1.0, failure_status=429, retry_after="1")
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        assert await post_with_headers(http, sandbox, batch(1)) == (429, "1")
        sandbox.state.faults = Faults(retry_after="1")  # no faults: no header on a 200
        assert await post_with_headers(http, sandbox, batch(1)) == (200, None)


async def test_retry_after_in_post_faults_json_form(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    new = {"script": [{"status": 429, "retry_after": "2"}], "retry_after": "5"}
    async with http.post(sandbox.base_url + "/faults", json=new) as resp:
        assert resp.status == 200
        current = await resp.json()
    assert current["script_remaining"] == [{"status": 429, "retry_after": "2"}]
    assert current["retry_after"] == "5"
    assert await post_with_headers(http, sandbox, batch(1)) == (429, "2")


# ------------------------------------------------------------------ request log and uuids


async def test_request_log_records_every_import_request(http: aiohttp.ClientSession) -> None:
    faults = Faults(script=[ScriptStep(429, retry_after="1"), 200, 200, 200])
    async with SandboxServer(TOKEN, faults=faults) as sandbox:
        before = time.time()
        await post(http, sandbox, batch(3))  # 429, 3 events counted although not validated
        await post(http, sandbox, batch(2), token="bad")
        await post(http, sandbox, {"data": []})
        await post(http, sandbox, batch(4))
        after = time.time()
        async with http.get(sandbox.base_url + "/stats") as resp:  # not the import path
            assert resp.status == 200
        log = await get(http, sandbox, "/requests")
    assert [(e["status"], e["code"], e["events"], e["retry_after"]) for e in log] == [
        (429, "429", 3, "1"),
        (401, "401", 2, None),
        (400, "400", 0, None),
        (200, "200", 4, None),
    ]
    times = [e["t"] for e in log]
    assert times == sorted(times)
    assert before <= times[0]
    assert times[-1] <= after


async def test_request_log_since_filter(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    await post(http, sandbox, batch(1))
    await asyncio.sleep(0.05)
    cut = time.time()
    await post(http, sandbox, batch(2, start=1))
    log = await get(http, sandbox, f"/requests?since={cut}")
    assert [e["events"] for e in log] == [2]
    async with http.get(sandbox.base_url + "/requests?since=soon") as resp:
        assert resp.status == 400


def test_request_log_is_bounded() -> None:
    assert REQUEST_LOG_SIZE == 100_000
    state = SandboxState(request_log_size=3)
    body = json.dumps(batch(1)).encode()
    for i in range(5):
        state.handle(True, "application/json", None, body, arrived=float(i))
    assert [e["t"] for e in state.requests_log()] == [2.0, 3.0, 4.0]
    assert state.stats.requests == 5


async def test_uuids_are_listed_unique_even_without_keeping_events(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxServer(TOKEN, keep_events=False) as sandbox:
        await post(http, sandbox, batch(3))
        await post(http, sandbox, batch(3, start=2))
        assert await get(http, sandbox, "/uuids") == [f"uuid-{i}" for i in range(5)]
        async with http.post(sandbox.base_url + "/reset") as resp:
            assert resp.status == 200
        assert await get(http, sandbox, "/uuids") == []
        assert await get(http, sandbox, "/requests") == []


# ------------------------------------------------------------------ a hung endpoint


async def test_client_gone_during_latency_is_recorded_and_leaves_no_error_log(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with SandboxServer(TOKEN, faults=Faults(latency_ms=400)) as sandbox:
        with pytest.raises(TimeoutError):
            async with http.post(
                sandbox.url,
                json=batch(2),
                headers={"X-Token": TOKEN},
                timeout=aiohttp.ClientTimeout(total=0.1),
            ):
                pass
        await asyncio.sleep(0.6)  # the handler wakes up and answers a closed connection
        # Decided and recorded at arrival: the client will send it again (a duplicate).
        assert sandbox.state.stats.unique_uuids == 2
        sandbox.state.faults = Faults(latency_ms=600_000)  # hung
        with pytest.raises(TimeoutError):
            async with http.post(
                sandbox.url,
                json=batch(1, start=5),
                headers={"X-Token": TOKEN},
                timeout=aiohttp.ClientTimeout(total=0.1),
            ):
                pass
        started = time.monotonic()
    assert time.monotonic() - started < 5  # closing does not wait for the hung answer
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert problems == []


async def test_hung_endpoint_switched_at_runtime(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(sandbox.base_url + "/faults", json={"latency_ms": 600_000}) as resp:
        assert resp.status == 200
    with pytest.raises(TimeoutError):
        async with http.post(
            sandbox.url,
            json=batch(1),
            headers={"X-Token": TOKEN},
            timeout=aiohttp.ClientTimeout(total=0.2),
        ):
            pass
    async with http.post(sandbox.base_url + "/faults", json={}) as resp:
        assert resp.status == 200
    assert await post(http, sandbox, batch(1)) == (200, OK)
    assert sandbox.state.stats.duplicates == 1  # the hung request had been recorded


# ------------------------------------------------------------------ control endpoints


async def test_reset_clears_stats_and_events_but_keeps_faults(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    assert (await post(http, sandbox, batch(2)))[0] == 200
    assert (await post(http, sandbox, batch(1), token="bad"))[0] == 401
    sandbox.state.faults = Faults(latency_ms=1)

    async with http.post(sandbox.base_url + "/reset") as resp:
        assert resp.status == 200
        assert await resp.json() == EMPTY_STATS
    assert await get(http, sandbox, "/stats") == EMPTY_STATS
    assert await get(http, sandbox, "/events") == []
    assert sandbox.state.faults == Faults(latency_ms=1)
    # uuids seen before the reset no longer count as duplicates
    assert (await post(http, sandbox, batch(2)))[0] == 200
    assert sandbox.state.stats.duplicates == 0


async def test_stats_add_up(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(TOKEN, faults=Faults(script=[503, 200, 200, 200])) as sandbox:
        await post(http, sandbox, batch(1))
        await post(http, sandbox, batch(1), token="bad")
        await post(http, sandbox, {"data": []})
        await post(http, sandbox, batch(4))
        stats = await get(http, sandbox, "/stats")
    assert stats == {
        "requests": 4,
        "accepted_requests": 1,
        "events": 4,
        "unique_uuids": 4,
        "duplicates": 0,
        "rejects": 1,
        "unauthorized": 1,
        "faults": 1,
        "refused": 0,
        "max_batch": 4,
        "gzip_requests": 0,
        "failed_uuid_requests": 0,
        "quota_refused": 0,
        "max_queued": 0,
        "max_concurrent": 0,
    }


async def test_keep_events_false_counts_without_storing(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(TOKEN, keep_events=False) as sandbox:
        assert (await post(http, sandbox, batch(3)))[0] == 200
        assert (await post(http, sandbox, batch(3)))[0] == 200
        assert sandbox.state.stats.events == 6
        assert sandbox.state.stats.duplicates == 3
        assert sandbox.state.events == []
        async with http.get(sandbox.base_url + "/events") as resp:
            assert resp.status == 409


async def test_custom_path(http: aiohttp.ClientSession) -> None:
    async with SandboxServer(TOKEN, path="/api/import") as sandbox:
        assert sandbox.url.endswith("/api/import")
        assert await post(http, sandbox, batch(1)) == (200, OK)
        async with http.post(
            sandbox.base_url + DEFAULT_PATH, json=batch(1), headers={"X-Token": TOKEN}
        ) as resp:
            assert resp.status == 404


async def test_build_app_exposes_state_by_typed_key() -> None:
    app = build_app(TOKEN, faults=Faults(failure_rate=0.25))
    assert app[STATE_KEY].faults.failure_rate == 0.25


async def test_concurrent_batches_are_all_counted(
    sandbox: SandboxServer, http: aiohttp.ClientSession
) -> None:
    results = await asyncio.gather(
        *(post(http, sandbox, batch(50, start=i * 50)) for i in range(20))
    )
    assert all(r == (200, OK) for r in results)
    stats = sandbox.state.stats_json()
    assert stats["events"] == stats["unique_uuids"] == 1000
    assert stats["duplicates"] == 0


def test_server_properties_need_a_started_server() -> None:
    server = SandboxServer(TOKEN)
    assert server.state.stats.requests == 0  # the state exists before start
    with pytest.raises(RuntimeError):
        _ = server.url


# ------------------------------------------------------------------ serve and CLI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_serve_runs_until_cancelled(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="devtools.sandbox")
    task = asyncio.create_task(serve("127.0.0.1", port, TOKEN, Faults(script=[503])))
    url = f"http://127.0.0.1:{port}{DEFAULT_PATH}"
    for _ in range(200):
        if any(url in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("serve() did not log its URL")
    async with http.post(url, json=batch(1), headers={"X-Token": TOKEN}) as resp:
        assert resp.status == 503
    assert all(TOKEN not in r.getMessage() for r in caplog.records)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(url, json=batch(1), headers={"X-Token": TOKEN}):
            pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="event-sink sandbox")
    add_arguments(p)
    return p


def test_cli_flags_build_faults() -> None:
    ns = parser().parse_args(
        [
            "--port",
            "9000",
            "--token",
            "T",
            "--failure-rate",
            "0.1",
            "--failure-status",
            "500",
            "--latency-ms",
            "25",
            "--script",
            "503, 503,200:500,200",
        ]
    )
    assert (ns.host, ns.port, ns.token, ns.path) == ("127.0.0.1", 9000, "T", DEFAULT_PATH)
    faults = faults_from_args(ns)
    assert faults == Faults(
        failure_rate=0.1,
        failure_status=500,
        latency_ms=25.0,
        script=(503, 503, ScriptStep(200, "500"), 200),
    )


def test_cli_defaults() -> None:
    assert faults_from_args(parser().parse_args(["--token", "T"])) == Faults()


def test_cli_refusal_and_retry_after_flags() -> None:
    ns = parser().parse_args(
        [
            "--token",
            "T",
            "--refuse-event-keys",
            "c_buy, c_view",
            "--refuse-with-200",
            "--retry-after",
            "3",
            "--failure-rate",
            "0.5",
            "--script",
            "429@2,200",
        ]
    )
    assert faults_from_args(ns) == Faults(
        failure_rate=0.5,
        retry_after="3",
        refuse_event_keys=("c_buy", "c_view"),
        refuse_with_200=True,
        script=(ScriptStep(429, retry_after="2"), 200),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--failure-rate", "2"],
        ["--failure-rate", "nan"],
        ["--failure-status", "42"],
        ["--latency-ms", "-5"],
        ["--script", "503,abc"],
        ["--script", "700"],
        ["--script", "200:"],
        ["--script", "429@"],
        ["--retry-after", ""],
        ["--refuse-event-keys", " , "],
        [],  # --token is required
    ],
)
def test_cli_rejects_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    token = [] if argv == [] else ["--token", "T"]
    with pytest.raises(SystemExit):
        parser().parse_args(token + argv)
    assert "error" in capsys.readouterr().err


def test_standalone_entry_point_serves_until_sigterm(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    log_path = tmp_path / "sandbox.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devtools.sandbox",
                "--port",
                "0",
                "--token",
                TOKEN,
                "--no-keep-events",
                "--refuse-event-keys",
                "c_view",
                "--script",
                "429@3",
            ],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            for line in log_path.read_text().splitlines():
                if "listening on " in line:
                    url = line.split("listening on ", 1)[1].strip()
            time.sleep(0.05)
        assert url is not None, log_path.read_text()

        def call(path_or_url: str, body: Any = None) -> tuple[int, Any, str | None]:
            target = path_or_url if path_or_url.startswith("http") else base + path_or_url
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(
                target,
                data=data,
                headers={"X-Token": TOKEN, "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status, json.load(resp), resp.headers.get("Retry-After")
            except urllib.error.HTTPError as err:
                return err.code, json.load(err), err.headers.get("Retry-After")

        base = url[: -len(DEFAULT_PATH)]
        assert call(url, batch(1))[::2] == (429, "3")
        viewed = batch(1)
        viewed["data"][0]["eventKey"] = "c_view"
        assert call(url, viewed)[0] == 400
        assert call(url, batch(2))[0] == 200
        assert call("/uuids")[1] == ["uuid-0", "uuid-1"]
        assert call("/events")[0] == 409  # --no-keep-events
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text()
    assert "Traceback" not in text
    assert TOKEN not in text


def test_main_rejects_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--token", "T", "--refuse-event-keys", ""])
    assert "error" in capsys.readouterr().err


def test_parse_script() -> None:
    assert parse_script("") == []
    assert parse_script("503,200:429") == [ScriptStep(503), ScriptStep(200, "429")]
    assert parse_script("429@2, 200:503@7,200@1") == [
        ScriptStep(429, retry_after="2"),
        ScriptStep(200, "503", "7"),
        ScriptStep(200, retry_after="1"),
    ]


@pytest.mark.parametrize("text", ["429@", "@2", "429@ ", "abc@2"])
def test_parse_script_rejects_bad_retry_after_entries(text: str) -> None:
    with pytest.raises(ValueError, match="bad script entry"):
        parse_script(text)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"failure_rate": -0.1}, "failure_rate"),
        ({"failure_rate": float("nan")}, "failure_rate"),
        ({"failure_status": 600}, "failure_status"),
        ({"failure_status": True}, "failure_status"),
        ({"latency_ms": float("inf")}, "latency_ms"),
        ({"script": [True]}, "script status"),
        ({"script": [99]}, "script status"),
    ],
)
def test_faults_validate_themselves(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Faults(**kwargs)


def test_script_step_code_must_be_non_empty() -> None:
    with pytest.raises(ValueError, match="script code"):
        ScriptStep(200, "")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"retry_after": ""}, "retry_after"),
        ({"retry_after": 5}, "retry_after"),
        ({"retry_after": "5\n"}, "control characters"),
        ({"refuse_event_keys": "c_buy"}, "refuse_event_keys"),
        ({"refuse_event_keys": ("c_buy", "")}, "refuse_event_keys"),
        ({"refuse_with_200": "yes"}, "refuse_with_200"),
    ],
)
def test_new_fault_settings_validate_themselves(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Faults(**kwargs)


def test_faults_json_round_trip_with_every_setting() -> None:
    faults = Faults(
        failure_rate=0.25,
        failure_status=429,
        latency_ms=5,
        script=[503, ScriptStep(429, retry_after="2"), ScriptStep(200, "500", "Wed, 21 Oct")],
        retry_after="1",
        refuse_event_keys=["c_buy"],
        refuse_with_200=True,
        failure_code="OOPS",
        fail_uuids=["uuid-1"],
        gzip_bomb_mib=16,
        quota_events_per_s=250,
        quota_burst_s=0.5,
        slots=4,
    )
    as_json = json.loads(json.dumps(faults.to_json()))
    assert as_json["script"] == [
        503,
        {"status": 429, "retry_after": "2"},
        {"status": 200, "code": "500", "retry_after": "Wed, 21 Oct"},
    ]
    assert Faults.from_json(as_json) == faults
    # The world faults that the first one could not hold (at most one is set at a time).
    for odd in (
        {"redirect": {"status": 308, "location": "https://127.0.0.1:9/x"}},
        {"html_200": True},
        {"huge_body_mib": 3},
        {"drop_connection": True},
    ):
        other = Faults.from_json(odd)
        assert Faults.from_json(json.loads(json.dumps(other.to_json()))) == other
        assert {k: v for k, v in other.to_json().items() if k in odd} == odd


# ------------------------------------------------------------------ validator, property-based

_text = st.text(max_size=12)
_identity = st.fixed_dictionaries(
    {"identityValue": _text, "identityType": st.sampled_from(["openid", "unionid", "phone"])},
    optional={"platform": _text},
) | st.fixed_dictionaries(
    {
        "identityValue": _text,
        "identityType": _text,
        "mpid": _text,
        "isWeChatEcosystem": st.booleans(),
    }
)
_arg_value = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text
_event = st.fixed_dictionaries(
    {"identities": st.lists(_identity, min_size=1, max_size=3), "eventKey": _text.filter(bool)},
    optional={
        "time": st.integers(0, 2**63 - 1),
        "uuid": _text.filter(bool),
        "intid": _text,
        "eventargs": st.dictionaries(_text, _arg_value, max_size=4),
    },
)
_body = st.fixed_dictionaries(
    {
        "publicParams": st.fixed_dictionaries(
            {},
            optional={
                "matchingType": st.sampled_from([1, 2]),
                "isMatching": st.sampled_from([1, 2, True, False]),
            },
        ),
        "data": st.lists(_event, min_size=1, max_size=5),
    }
)


@settings(max_examples=200, deadline=None)
@given(_body)
def test_every_contract_conforming_body_validates(body: Body) -> None:
    # Through JSON, as the server sees it.
    parsed = json.loads(json.dumps(body))
    assert validate_request(parsed) == parsed["data"]


@settings(max_examples=200, deadline=None)
@given(_body, st.data())
def test_dropping_a_required_field_is_rejected(body: Body, data: st.DataObject) -> None:
    broken = copy.deepcopy(body)
    i = data.draw(st.integers(0, len(broken["data"]) - 1))
    key = data.draw(st.sampled_from(["identities", "eventKey"]))
    del broken["data"][i][key]
    with pytest.raises(ContractError) as err:
        validate_request(broken)
    assert err.value.path == f"data[{i}].{key}"
