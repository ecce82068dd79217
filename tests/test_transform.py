"""Decoded record → API event: the default mapping, omissions, and refusals."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.adapters.avro import AvroDecoder, DecodeError, SchemaError, load_schema
from connector.core.records import fallback_uuid
from connector.mapping.transform import TransformError, encode_event, to_event
from devtools.samples import encode, sample_events

SCHEMA = Path(__file__).parent.parent / "schemas" / "user_behavior_event.avsc"


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "event_key": "c_buy",
        "event_time": 1605490615673,
        "interaction_id": None,
        "identities": [
            {
                "type": "phone",
                "value": "18888888888",
                "platform": None,
                "mpid": None,
                "is_wechat_ecosystem": None,
            }
        ],
        "properties": {},
    }
    base.update(overrides)
    return base


def test_minimal_record_omits_every_null_optional_field() -> None:
    assert to_event(record(), "fallback") == {
        "identities": [{"identityType": "phone", "identityValue": "18888888888"}],
        "time": 1605490615673,
        "uuid": "evt-1",
        "eventKey": "c_buy",
    }


def test_full_record_maps_every_field() -> None:
    event = to_event(
        record(
            interaction_id="jjsfia-fjfoha99",
            identities=[
                {
                    "type": "openid",
                    "value": "o123",
                    "platform": "gzh",
                    "mpid": "wx1",
                    "is_wechat_ecosystem": False,
                }
            ],
            properties={
                "c_goods": "创维洗衣机",
                "c_price": 1420.0,
                "n": 3,
                "ok": True,
                "gone": None,
            },
        ),
        "fallback",
    )
    assert event["intid"] == "jjsfia-fjfoha99"
    assert event["identities"] == [
        {
            "identityType": "openid",
            "identityValue": "o123",
            "platform": "gzh",
            "mpid": "wx1",
            "isWeChatEcosystem": False,
        }
    ]
    # eventargs pass through as they are, a null value included.
    assert event["eventargs"] == {
        "c_goods": "创维洗衣机",
        "c_price": 1420.0,
        "n": 3,
        "ok": True,
        "gone": None,
    }


def test_missing_event_id_gets_a_stable_uuid_from_its_position() -> None:
    uuid = fallback_uuid("events", 3, 42)
    assert to_event(record(event_id=""), uuid)["uuid"] == "events-3-42"
    assert fallback_uuid("events", 3, 42) == uuid


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"identities": []}, "identities: at least one"),
        ({"event_key": ""}, "event_key: required"),
        ({"event_time": -1}, "event_time: must be epoch milliseconds"),
        (
            {
                "identities": [
                    {
                        "type": "openid",
                        "value": "o1",
                        "platform": None,
                        "mpid": "wx1",
                        "is_wechat_ecosystem": None,
                    }
                ]
            },
            r"identities\[0\].is_wechat_ecosystem: required when mpid is set",
        ),
        (
            {
                "identities": [
                    {
                        "type": "phone",
                        "value": "",
                        "platform": None,
                        "mpid": None,
                        "is_wechat_ecosystem": None,
                    }
                ]
            },
            "value: required",
        ),
    ],
)
def test_records_the_api_would_refuse_are_refused_by_name(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(TransformError, match=message) as info:
        to_event(record(**overrides), "fallback")
    assert "18888888888" not in str(info.value)  # never a field's value


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, {"nested": [1.0, math.nan]}], ids=repr
)
def test_non_finite_numbers_have_no_json_form(value: Any) -> None:
    # The JSON encoder (orjson) would write NaN as null: refused, never altered.
    event = to_event(record(properties={"c_price": value}), "fallback")
    with pytest.raises(TransformError, match="eventargs: NaN or an infinite number"):
        encode_event(event)


def test_a_string_that_is_not_unicode_text_is_refused_not_crashed_on() -> None:
    event = to_event(record(properties={"c_goods": "half a pair \ud800"}), "fallback")
    with pytest.raises(TransformError, match="cannot be written as JSON"):
        encode_event(event)


def test_encoding_is_compact_utf8_json() -> None:
    body = encode_event(to_event(record(properties={"c_goods": "创维"}), "f"))
    assert "创维".encode() in body
    assert b", " not in body
    assert json.loads(body)["eventargs"] == {"c_goods": "创维"}


def test_avro_round_trip_keeps_timestamps_as_raw_milliseconds() -> None:
    schema = load_schema(SCHEMA)
    decoder = AvroDecoder(schema)
    original = next(sample_events(1, seed=7, base_time_ms=1_700_000_000_000))
    decoded = decoder.decode(encode(schema, original))
    assert decoded == original
    assert decoded["event_time"] == 1_700_000_000_000


def test_sample_events_all_map_to_valid_events() -> None:
    schema = load_schema(SCHEMA)
    decoder = AvroDecoder(schema)
    for index, sample in enumerate(sample_events(300, seed=1, base_time_ms=1_700_000_000_000)):
        event = to_event(decoder.decode(encode(schema, sample)), fallback_uuid("t", 0, index))
        assert 1 <= len(event["identities"]) <= 3
        assert 3 <= len(event["eventargs"]) <= 8


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "empty message value"),
        (b"", "empty message value"),
        (b"\x00\x00\x00\x00\x01" + b"\x02", "not a record|trailing bytes"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "not a record"),
    ],
)
def test_undecodable_bytes_are_refused(payload: bytes | None, message: str) -> None:
    decoder = AvroDecoder(load_schema(SCHEMA))
    with pytest.raises(DecodeError, match=message):
        decoder.decode(payload)


def test_trailing_bytes_are_refused() -> None:
    schema = load_schema(SCHEMA)
    good = encode(schema, next(sample_events(1, seed=3, base_time_ms=0)))
    with pytest.raises(DecodeError, match="trailing bytes"):
        AvroDecoder(schema).decode(good + b"\x00")


def test_truncated_record_is_refused() -> None:
    schema = load_schema(SCHEMA)
    good = encode(schema, next(sample_events(1, seed=3, base_time_ms=0)))
    rng = random.Random(0)
    cut = rng.randrange(1, len(good) - 1)
    with pytest.raises(DecodeError):
        AvroDecoder(schema).decode(good[:cut])


_GOOD = [
    encode(load_schema(SCHEMA), record)
    for record in sample_events(8, seed=11, base_time_ms=1_700_000_000_000)
]


@st.composite
def message_values(draw: st.DrawFn) -> bytes | None:
    """Good records, and the ways a value goes wrong: cut short, extra bytes, noise, none."""
    good = draw(st.sampled_from(_GOOD))
    kind = draw(st.sampled_from(["good", "good", "cut", "extra", "noise", "empty"]))
    if kind == "cut":
        return good[: draw(st.integers(min_value=1, max_value=len(good) - 1))]
    if kind == "extra":
        return good + draw(st.binary(min_size=1, max_size=8))
    if kind == "noise":
        return draw(st.binary(min_size=1, max_size=64))
    if kind == "empty":
        return draw(st.sampled_from([None, b""]))
    return good


@given(st.lists(message_values(), max_size=12))
def test_decoding_a_chunk_gives_what_decoding_each_value_gives(
    values: list[bytes | None],
) -> None:
    # decode_many reads one joined buffer: a bad value must neither spill into its
    # neighbours nor be judged differently than on its own.
    decoder = AvroDecoder(load_schema(SCHEMA))
    expected: list[Any] = []
    for value in values:
        try:
            expected.append(decoder.decode(value))
        except DecodeError as exc:
            expected.append(("refused", str(exc)))
    found = [
        ("refused", str(got)) if isinstance(got, DecodeError) else got
        for got in decoder.decode_many(values)
    ]
    assert found == expected


def test_bad_schema_files_fail_with_the_file_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.avsc"
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(missing)
    broken = tmp_path / "broken.avsc"
    broken.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_schema(broken)
    wrong = tmp_path / "wrong.avsc"
    wrong.write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}')
    with pytest.raises(SchemaError, match="not a valid Avro schema"):
        load_schema(wrong)


def test_encoded_events_hold_only_their_own_bytes() -> None:
    # Pending events keep their encoded body until delivered (up to max_pending_events of
    # them): orjson's result kept a ~4 KiB buffer per event, ten times the body.
    def rss_mib() -> float:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    event = to_event(record(), "fallback")
    before = rss_mib()
    bodies = [encode_event(event) for _ in range(20_000)]
    grown = rss_mib() - before
    size = len(bodies[0])
    assert grown < 20_000 * size * 3 / 2**20, f"{grown:.1f} MiB for 20,000 bodies of {size} B"
