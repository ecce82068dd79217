"""The sandbox event import API, exercised over real HTTP on loopback."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.sandbox import (
    DEFAULT_PATH,
    STATE_KEY,
    ContractError,
    Faults,
    SandboxServer,
    ScriptStep,
    add_arguments,
    build_app,
    faults_from_args,
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
    "max_batch": 0,
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
        "max_batch": 4,
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
    caplog.set_level(logging.INFO, logger="connector.sandbox")
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
        [],  # --token is required
    ],
)
def test_cli_rejects_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    token = [] if argv == [] else ["--token", "T"]
    with pytest.raises(SystemExit):
        parser().parse_args(token + argv)
    assert "error" in capsys.readouterr().err


def test_parse_script() -> None:
    assert parse_script("") == []
    assert parse_script("503,200:429") == [ScriptStep(503), ScriptStep(200, "429")]


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
