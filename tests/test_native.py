"""The native path's contract for a chunk: events, tombstones and rejections in order, the
consumer's messages in runs of one partition, the fallback uuid, exact decimals, and
malformed input that never crashes, hangs or raises out of the extension (which routes run
native is in test_native_paths.py).

Where the extension is not installed these tests skip with the reason, except under
``CI=true``, where a missing extension (or cargo to build it) fails them.
"""

from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_strategies import (
    MAPPINGS,
    SCHEMAS,
    as_message,
    encode,
    mutated,
    require_extension,
)

from connector.adapters.native import (
    TOMBSTONE,
    NativeChunk,
    Rejected,
    native_chunk_for,
)
from connector.core.errors import Stage
from connector.core.records import UUID_HEADER, SourceRecord

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = SCHEMAS["user_behavior_event.avsc"]
CLICKS = SCHEMAS["clickstream_event.avsc"]


@pytest.fixture
def ext() -> types.ModuleType:
    return require_extension()


def default_chunk() -> NativeChunk:
    chunk = native_chunk_for(DEFAULT, None)
    assert isinstance(chunk, NativeChunk), chunk
    return chunk


def event(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "e-1",
        "event_key": "c_buy",
        "event_time": 1_700_000_000_123,
        "interaction_id": None,
        "identities": [{"type": "openid", "value": "o-1", "platform": None, "mpid": None,
                        "is_wechat_ecosystem": None}],
        "properties": {"sku": "A-1", "n": 3, "price": 9.5, "gift": True, "none": None},
    }  # fmt: skip
    record.update(overrides)
    return record


def message(value: bytes | None, offset: int = 7, **kw: Any) -> SourceRecord:
    topic, partition = kw.pop("topic", "orders"), kw.pop("partition", 2)
    return SourceRecord(topic, partition, offset, None, value, 1, kw.pop("headers", ()))


# -- what a chunk gives -----------------------------------------------------------------


def test_a_chunk_gives_events_tombstones_and_rejections_in_order(ext: types.ModuleType) -> None:
    chunk = default_chunk()
    good = encode(DEFAULT, event())
    no_key = encode(DEFAULT, event(event_key=""))
    got = chunk([message(good, 1), message(None, 2), message(good[:-3], 3), message(no_key, 4)])
    assert json.loads(got[0]) == {
        "identities": [{"identityType": "openid", "identityValue": "o-1"}],
        "time": 1_700_000_000_123,
        "uuid": "e-1",
        "eventKey": "c_buy",
        "eventargs": {"sku": "A-1", "n": 3, "price": 9.5, "gift": True, "none": None},
    }
    assert got[1] is TOMBSTONE
    assert isinstance(got[2], Rejected)
    assert (got[2].stage, got[2].kind) == (Stage.DECODE, "undecodable")
    assert got[3] == Rejected(
        Stage.TRANSFORM, "unmappable", "event_key: required, a non-empty string"
    )


def test_the_fallback_uuid_is_the_records_position_or_its_replay_header(
    ext: types.ModuleType,
) -> None:
    chunk = default_chunk()
    nameless = encode(DEFAULT, event(event_id=""))
    replayed = ((UUID_HEADER, b""), ("x", b"1"), (UUID_HEADER, b"orders-0-3"))
    got = chunk(
        [
            message(nameless, 41, topic="shop.orders", partition=5),
            message(nameless, 42, headers=replayed),
            message(nameless, 43, headers=((UUID_HEADER, b"\xff\xfe"),)),  # not UTF-8
        ]
    )
    uuids = [json.loads(body)["uuid"] for body in got if isinstance(body, bytes)]
    assert uuids == ["shop.orders-5-41", "orders-0-3", "\ufffd\ufffd"]
    assert not chunk.deferred


def test_the_consumers_messages_come_back_in_runs_of_one_partition(
    ext: types.ModuleType,
) -> None:
    chunk = default_chunk()
    good = encode(DEFAULT, event())
    nameless = encode(DEFAULT, event(event_id=""))
    failed = Message(error=KafkaError(KafkaError._UNKNOWN_TOPIC), topic="gone", partition=0)
    messages = [
        as_message(message(good, 7, partition=1)),
        as_message(message(None, 8, partition=1)),
        failed,
        as_message(message(good[:-3], 9, partition=1)),
        as_message(message(nameless, 3, partition=2)),
        as_message(message(nameless, 4, topic="other", partition=2)),
        as_message(message(nameless, 10, headers=((UUID_HEADER, b"o-0-1"),), partition=1)),
    ]
    runs, errors = chunk.messages(messages)
    assert errors == [failed]  # for the source to report: no record in it
    assert [(r.topic, r.partition, r.offsets, r.others) for r in runs] == [
        ("orders", 1, [7, 8, 9], [1, 2]),
        ("orders", 2, [3], []),
        ("other", 2, [4], []),
        ("orders", 1, [10], []),
    ]
    first = runs[0]
    assert first.messages == [messages[0], messages[1], messages[3]]
    assert first.outcomes[1] is TOMBSTONE
    assert isinstance(first.outcomes[2], Rejected)  # decided by the Python path
    assert first.outcomes[2].stage == Stage.DECODE
    uuids = [json.loads(run.outcomes[0])["uuid"] for run in runs[1:]]  # type: ignore[arg-type]
    assert uuids == ["orders-2-3", "other-2-4", "o-0-1"]
    assert runs[0].timestamps == [1, 1, 1]
    untimed = Message(topic="t", partition=0, offset=1, value=good, timestamp=(0, -1))
    assert chunk.messages([untimed])[0][0].timestamps == [None]


def test_a_message_of_another_type_is_read_through_its_own_methods(
    ext: types.ModuleType,
) -> None:
    # confluent_kafka's own Message is read through its type's methods; any other type
    # (a subclass, a stand-in) must be asked by name, so its overrides count.
    class Replayed(Message):
        def value(self) -> bytes:
            return encode(DEFAULT, event(event_id="from-the-override"))

        def offset(self) -> int:
            return 41

    stale = encode(DEFAULT, event(event_id="from-the-constructor"))
    plain = Message(topic="t", partition=0, offset=40, value=stale, timestamp=(1, 5))
    replayed = Replayed(topic="t", partition=0, offset=99, value=stale, timestamp=(1, 5))
    runs, errors = default_chunk().messages([plain, replayed])
    assert errors == []
    assert [run.offsets for run in runs] == [[40, 41]]
    uuids = [json.loads(outcome)["uuid"] for outcome in runs[0].outcomes]  # type: ignore[arg-type]
    assert uuids == ["from-the-constructor", "from-the-override"]


# Invalid UTF-8 where decoders differ most: truncated sequences, overlongs, surrogates,
# code points past U+10FFFF (Python's "replace" and Rust's from_utf8_lossy must agree).
_TRICKY = st.sampled_from(
    [b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff",
     b"\x80", b"a", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xe0\x80\xaf", b"\xf8\x88\x80\x80\x80"]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(
    topic=st.text(min_size=1, max_size=20),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    headers=st.lists(
        st.tuples(
            st.sampled_from([UUID_HEADER, "other"]),
            st.one_of(
                st.none(), st.binary(max_size=8), st.lists(_TRICKY, max_size=4).map(b"".join)
            ),
        ),
        max_size=3,
    ).map(tuple),
)
def test_the_fallback_uuid_is_derived_as_python_derives_it(
    topic: str, partition: int, offset: int, headers: tuple[tuple[str, bytes | None], ...]
) -> None:
    require_extension()
    record = SourceRecord(
        topic, partition, offset, None, encode(DEFAULT, event(event_id="")), 0, headers
    )
    (body,) = default_chunk()([record])
    assert isinstance(body, bytes)
    assert json.loads(body)["uuid"] == record.fallback_uuid()


def test_decimals_keep_their_exact_digits(ext: types.ModuleType) -> None:
    import decimal

    chunk = native_chunk_for(CLICKS, MAPPINGS["clickstream.yaml"][1])
    assert isinstance(chunk, NativeChunk)
    click = {"click_id": "8f0f3c59-0d1e-4c53-9a4e-2b8f3a3e7c11", "action": "SHARE",
             "occurred_at": 1_700_000_000_123_999, "page": "/p",
             "user": {"phone": "1", "wx_openid": None, "wx_unionid": None, "app_id": None},
             "price": decimal.Decimal("12.30"), "coupon": None, "quantity": 2,
             "session_id": "s"}  # fmt: skip
    (body,) = chunk([message(encode(CLICKS, click))])
    assert isinstance(body, bytes)
    assert b'"c_price":12.30' in body  # not 12.3, not a string
    assert json.loads(body)["time"] == 1_700_000_000_123  # micros → millis
    assert json.loads(body)["eventKey"] == "c_other"  # SHARE is not in the table
    assert not chunk.deferred


def test_a_map_with_a_repeated_key_keeps_the_first_place_and_the_last_value(
    ext: types.ModuleType,
) -> None:
    chunk = default_chunk()
    head = encode(DEFAULT, event(properties={}))[:-1]  # the record without its empty map
    # One block of three entries: "a" → "1", "b" → "2", "a" → "3" (union branch 1: string).
    entries = b"\x06" + b"\x02a\x02\x021" + b"\x02b\x02\x022" + b"\x02a\x02\x023" + b"\x00"
    (body,) = chunk([message(head + entries)])
    assert isinstance(body, bytes)
    assert body.endswith(b'"eventargs":{"a":"3","b":"2"}}')


# -- malformed input: never a crash, a hang or an exception ------------------------------


@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_and_mutated_bytes_never_raise_out_of_the_extension(
    mapping: str, data: st.DataObject
) -> None:
    require_extension()
    schema_name, settings_ = MAPPINGS[mapping]
    chunk = native_chunk_for(SCHEMAS[schema_name], settings_)
    assert isinstance(chunk, NativeChunk)
    values = data.draw(
        st.lists(
            st.one_of(
                st.binary(max_size=200),
                st.just(encode(DEFAULT, event())).flatmap(mutated),
            ),
            max_size=8,
        )
    )
    n = len(values)
    raw = chunk.plan.run(
        values, ["t"] * n, [0] * n, list(range(n)), [None] * n, [None] * n, [()] * n
    )
    assert all(type(outcome) in (bytes, str) for outcome in raw)


def test_huge_counts_and_lengths_are_refused_at_once(ext: types.ModuleType) -> None:
    chunk = default_chunk()
    head = encode(DEFAULT, event(identities=[], properties={}))[:-2]
    hostile = [
        head + b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # identities: 2^63 - 1 items
        head + b"\x00" + b"\xfe\xff\xff\xff\x0f",  # a map of 2^31 entries in 5 bytes
        b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01" + b"x" * 10,  # a string of 2^63 bytes
        head + b"\x01\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # an 11-byte varint
        os.urandom(1 << 20),  # a megabyte of noise
    ]
    n = len(hostile)
    start = time.perf_counter()
    raw = chunk.plan.run(
        hostile, ["t"] * n, [0] * n, list(range(n)), [None] * n, [None] * n, [()] * n
    )
    assert time.perf_counter() - start < 1.0
    assert all(type(outcome) is str for outcome in raw), raw


def test_what_is_not_bytes_is_deferred_and_ragged_lists_are_refused(ext: types.ModuleType) -> None:
    chunk = default_chunk()
    good = encode(DEFAULT, event(event_id=""))
    raw = chunk.plan.run([bytearray(good), good], ["t", 3], [0, 0], [0, 1], [None, None],
                         [None, None], [(), ()])  # fmt: skip
    assert raw == ["input: a value that is not bytes", "input: a topic that is not a str"]
    with pytest.raises(ValueError, match="one entry per value"):
        chunk.plan.run([good], [], [], [], [], [], [])


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
def test_doubles_are_written_as_orjson_writes_them(numbers: list[float]) -> None:
    """On the default mapping (orjson's path) an event is byte-equal, doubles included."""
    require_extension()
    chunk = default_chunk()
    record = message(encode(DEFAULT, event(properties={str(i): v for i, v in enumerate(numbers)})))
    (body,) = chunk([record])
    assert body == chunk.python_path(record)
