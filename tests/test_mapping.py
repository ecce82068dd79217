"""The declarative mapping: the default one is to_event, the click-stream one is exact,
bad mappings fail at start-up naming the path, and no record makes the transform raise
anything but TransformError."""

from __future__ import annotations

import base64
import decimal
import io
import json
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from avro_strategies import records
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from connector.adapters.avro import AvroDecoder, load_schema
from connector.adapters.json_decoder import JsonDecoder
from connector.config import ConfigError, MappingSettings, Settings, load_settings
from connector.mapping import (
    MappingError,
    compile_mapping,
    default_mapping,
    load_mapping_file,
    sample_record,
)
from connector.mapping.transform import TransformError, encode_event, to_event
from devtools.samples import encode, sample_events
from devtools.sandbox import ContractError, validate_request

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"
CLICK_SCHEMA = ROOT / "schemas" / "clickstream_event.avsc"
CLICK_MAPPING = ROOT / "config" / "mappings" / "clickstream.yaml"


def click_mapping(**changes: Any) -> MappingSettings:
    data = yaml.safe_load(CLICK_MAPPING.read_text())["mapping"]
    data.update(changes)
    return MappingSettings.model_validate(data)


def click(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "click_id": uuid.UUID("6f1c2a9e-8a44-4c4e-9c39-0d6c1b7c2f10"),
        "action": "PURCHASE",
        "occurred_at": 1_700_000_000_123_456,
        "user": {"phone": "18888888888", "wx_openid": None, "wx_unionid": None, "app_id": None},
        "page": "/checkout",
        "price": decimal.Decimal("1420.10"),
        "coupon": None,
        "quantity": 2,
        "session_id": None,
    }
    base.update(overrides)
    return base


def through_avro(schema: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    return AvroDecoder(schema).decode(buffer.getvalue())


# -- the default mapping is today's to_event ------------------------------------------


def test_the_default_mapping_is_the_yaml_file_shipped_in_the_package() -> None:
    shipped = ROOT / "connector" / "mapping" / "user_behavior_event.yaml"
    assert load_mapping_file(shipped) == default_mapping()
    assert default_mapping().uuid == "event_id"
    assert Settings().mapping is None  # unset means the default


def test_the_default_mapping_produces_exactly_what_to_event_does() -> None:
    schema = load_schema(DEFAULT_SCHEMA)
    mapper = compile_mapping(default_mapping(), schema)
    decoder = AvroDecoder(schema)
    samples = list(sample_events(500, seed=4, base_time_ms=1_700_000_000_000))
    samples[0]["event_id"] = ""  # the fallback uuid
    for index, sample in enumerate(samples):
        decoded = decoder.decode(encode(schema, sample))
        fallback = f"t-0-{index}"
        assert mapper.encode(decoded, fallback) == encode_event(to_event(decoded, fallback))
    assert json.loads(mapper.encode(decoder.decode(encode(schema, samples[0])), "t-0-0"))[
        "uuid"
    ] == ("t-0-0")


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
            r"identities\[0\].value: required",
        ),
    ],
)
def test_the_default_mapping_refuses_what_to_event_refuses(
    overrides: dict[str, Any], message: str
) -> None:
    record: dict[str, Any] = {
        "event_id": "evt-1",
        "event_key": "c_buy",
        "event_time": 1,
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
        **overrides,
    }
    mapper = compile_mapping(default_mapping(), load_schema(DEFAULT_SCHEMA))
    with pytest.raises(TransformError, match=message) as info:
        mapper.encode(record, "f")
    with pytest.raises(TransformError):
        to_event(record, "f")
    assert "18888888888" not in str(info.value)


def test_non_finite_numbers_are_refused_naming_eventargs() -> None:
    mapper = compile_mapping(default_mapping(), load_schema(DEFAULT_SCHEMA))
    sample = next(sample_events(1, seed=1, base_time_ms=0))
    sample["properties"] = {"c_price": float("inf")}
    with pytest.raises(TransformError, match="eventargs"):
        mapper.encode(sample, "f")


# -- the click-stream schema: every value exact -----------------------------------------


def test_the_click_stream_mapping_maps_every_value_exactly() -> None:
    schema = load_schema(CLICK_SCHEMA)
    mapper = compile_mapping(load_mapping_file(CLICK_MAPPING), schema)
    record = through_avro(
        schema,
        click(
            user={"phone": "18888888888", "wx_openid": "o-1", "wx_unionid": "u-1", "app_id": "wx9"},
            coupon="SPRING",
            session_id="s-1",
        ),
    )
    body = mapper.encode(record, "t-0-0")
    assert body == (
        b'{"identities":[{"identityType":"phone","identityValue":"18888888888"},'
        b'{"identityType":"openid","identityValue":"o-1","platform":"miniprogram",'
        b'"mpid":"wx9","isWeChatEcosystem":true},'
        b'{"identityType":"unionid","identityValue":"u-1"}],'
        b'"time":1700000000123,"uuid":"6f1c2a9e-8a44-4c4e-9c39-0d6c1b7c2f10",'
        b'"eventKey":"c_buy","intid":"s-1","eventargs":{"c_page":"/checkout",'
        b'"c_price":1420.10,"c_coupon":"SPRING","c_quantity":2}}'
    )
    validate_request({"publicParams": {}, "data": [json.loads(body)]})


def test_click_stream_nulls_are_omitted_and_unmapped_actions_get_the_default() -> None:
    schema = load_schema(CLICK_SCHEMA)
    mapper = compile_mapping(load_mapping_file(CLICK_MAPPING), schema)
    record = through_avro(
        schema,
        click(
            action="SHARE",
            price=None,
            user={"phone": None, "wx_openid": "o-1", "wx_unionid": None, "app_id": None},
        ),
    )
    event = json.loads(mapper.encode(record, "t-0-0"))
    assert event["eventKey"] == "c_other"
    assert event["identities"] == [
        {
            "identityType": "openid",
            "identityValue": "o-1",
            "platform": "miniprogram",
            "isWeChatEcosystem": True,
        }
    ]
    assert event["eventargs"] == {"c_page": "/checkout", "c_quantity": 2}
    assert "intid" not in event


def test_a_click_without_any_identity_is_refused() -> None:
    schema = load_schema(CLICK_SCHEMA)
    mapper = compile_mapping(load_mapping_file(CLICK_MAPPING), schema)
    empty = {"phone": None, "wx_openid": None, "wx_unionid": None, "app_id": "wx9"}
    with pytest.raises(TransformError, match="identities: at least one"):
        mapper.encode(through_avro(schema, click(user=empty)), "f")


def test_an_unmapped_value_is_refused_when_the_policy_is_dead_letter() -> None:
    schema = load_schema(CLICK_SCHEMA)
    lookup = {"path": "action", "lookup": {"PURCHASE": "c_buy"}}
    mapper = compile_mapping(click_mapping(event_key=lookup), schema)
    assert json.loads(mapper.encode(click(), "f"))["eventKey"] == "c_buy"
    with pytest.raises(TransformError, match=r"action: value not in mapping\.event_key\.lookup"):
        mapper.encode(click(action="VIEW"), "f")


def test_time_uuid_and_constants_from_other_sources() -> None:
    schema = load_schema(CLICK_SCHEMA)
    mapper = compile_mapping(
        click_mapping(
            time={"source": "kafka_timestamp"},
            uuid={"source": "position"},
            event_key={"const": "c_click"},
            intid={"const": "campaign-7"},
        ),
        schema,
    )
    event = json.loads(mapper.encode(click(), "topic-1-9", timestamp_ms=1_600_000_000_000))
    assert event["time"] == 1_600_000_000_000
    assert event["uuid"] == "topic-1-9"
    assert event["eventKey"] == "c_click"
    assert event["intid"] == "campaign-7"
    assert "time" not in json.loads(mapper.encode(click(), "t-1-9", timestamp_ms=None))


def test_iso_string_times_become_epoch_milliseconds() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Iso",
            "fields": [
                {"name": "at", "type": ["null", "string"]},
                {"name": "phone", "type": "string"},
            ],
        }
    )
    mapping = MappingSettings.model_validate(
        {
            "event_key": {"const": "c_x"},
            "time": "at",
            "identities": [{"value": "phone", "type": {"const": "phone"}}],
        }
    )
    mapper = compile_mapping(mapping, schema)
    at = {"at": "2020-11-16T01:36:55.673Z", "phone": "1"}
    assert json.loads(mapper.encode(at, "f"))["time"] == 1605490615673
    naive = {"at": "2020-11-16T09:36:55.673+08:00", "phone": "1"}
    assert json.loads(mapper.encode(naive, "f"))["time"] == 1605490615673
    assert "time" not in json.loads(mapper.encode({"at": None, "phone": "1"}, "f"))
    with pytest.raises(TransformError, match="at: not an ISO 8601 time"):
        mapper.encode({"at": "yesterday", "phone": "1"}, "f")


def test_eventargs_values_are_converted_faithfully() -> None:
    raw_schema = {
        "type": "record",
        "name": "Rich",
        "fields": [
            {"name": "phone", "type": "string"},
            {"name": "blob", "type": "bytes"},
            {
                "name": "at",
                "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
            },
            {
                "name": "cart",
                "type": {
                    "type": "record",
                    "name": "Cart",
                    "fields": [
                        {
                            "name": "total",
                            "type": {
                                "type": "fixed",
                                "name": "Money",
                                "size": 8,
                                "logicalType": "decimal",
                                "precision": 18,
                                "scale": 4,
                            },
                        },
                        {"name": "skus", "type": {"type": "array", "items": "string"}},
                    ],
                },
            },
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "extra", "type": {"type": "map", "values": ["null", "bytes", "double"]}},
        ],
    }
    path = Path(__file__).parent / "_rich.avsc"
    try:
        path.write_text(json.dumps(raw_schema))
        schema = load_schema(path)
    finally:
        path.unlink()
    mapping = MappingSettings.model_validate(
        {
            "event_key": {"const": "c_x"},
            "identities": [{"value": "phone", "type": {"const": "phone"}}],
            "eventargs": {
                "map": "extra",
                "pick": {"blob": "blob", "at": "at", "cart": "cart", "day": "day"},
            },
        }
    )
    mapper = compile_mapping(mapping, schema)
    record = through_avro(
        schema,
        {
            "phone": "1",
            "blob": b"\x00\xffhi",
            "at": 1_700_000_000_123_999,
            "cart": {"total": decimal.Decimal("0.1000"), "skus": ["a", "b"]},
            "day": 19675,
            "extra": {"n": None, "b": b"\x01", "d": 0.5},
        },
    )
    body = mapper.encode(record, "f")
    assert b'"total":0.1000' in body  # the decimal's own digits, not a float's
    args = json.loads(body, parse_float=decimal.Decimal)["eventargs"]
    assert args == {
        "n": None,
        "b": base64.b64encode(b"\x01").decode(),
        "d": decimal.Decimal("0.5"),
        "blob": base64.b64encode(b"\x00\xffhi").decode(),
        "at": 1_700_000_000_123,
        "cart": {"total": decimal.Decimal("0.1000"), "skus": ["a", "b"]},
        "day": "2023-11-14",
    }


# -- a bad mapping fails at start-up, naming the path -----------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"time": "occured_at"}, r"mapping.time: path 'occured_at': the record has no field"),
        ({"uuid": "user.id"}, r"mapping.uuid: path 'user.id': user has no field 'id'"),
        ({"intid": "page.x"}, r"mapping.intid: path 'page.x': page is a string, not a record"),
        ({"time": "action"}, r"mapping.time: path 'action' is an enum; time needs int or long"),
        ({"time": "quantity"}, None),  # a long: epoch milliseconds, fine
        ({"uuid": "quantity"}, r"mapping.uuid: path 'quantity' is a long; uuid needs string"),
        ({"event_key": "price"}, r"mapping.event_key: path 'price' is a nullable bytes"),
        (
            {"event_key": {"path": "action", "lookup": {"BUY": "c_buy"}}},
            r"mapping.event_key.lookup: BUY not a symbol of the enum at 'action'",
        ),
        (
            {"event_key": {"path": "quantity", "lookup": {"one": "c_one"}}},
            r"mapping.event_key.lookup: key 'one' is a str, but 'quantity' is a long",
        ),
        (
            {"identities": [{"value": "user.phone", "type": {"const": True}}]},
            r"mapping.identities\[0\].type: the constant must be a str",
        ),
        (
            {"identities": [{"value": "user", "type": {"const": "phone"}}]},
            r"mapping.identities\[0\].value: path 'user' is a record",
        ),
        (
            {"identities": [{"value": "user.phone", "type": {"const": "p"}, "mpid": "page"}]},
            r"mapping.identities\[0\].is_wechat_ecosystem: required when mpid is mapped",
        ),
        (
            {"identities": [{"each": "user", "value": "phone", "type": {"const": "p"}}]},
            r"mapping.identities\[0\].each: path 'user' is a record; each needs array",
        ),
        (
            {
                "identities": [
                    {
                        "value": "user.phone",
                        "type": {"const": "p"},
                        "is_wechat_ecosystem": "user.app_id",
                    }
                ]
            },
            r"identities\[0\].is_wechat_ecosystem: path 'user.app_id' is a nullable string; "
            "isWeChatEcosystem needs boolean",
        ),
        ({"eventargs": {"map": "user"}}, r"mapping.eventargs.map: path 'user' is a record"),
        (
            {"eventargs": {"pick": {"c_x": "user.nope"}}},
            r"mapping.eventargs.pick.c_x: path 'user.nope': user has no field 'nope'",
        ),
    ],
)
def test_each_wrong_path_or_type_fails_naming_it(changes: dict[str, Any], message: str) -> None:
    schema = load_schema(CLICK_SCHEMA)
    if message is None:
        compile_mapping(click_mapping(**changes), schema)
        return
    with pytest.raises(MappingError, match=message):
        compile_mapping(click_mapping(**changes), schema)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"event_key": "action"}, r"mapping.identities: Field required"),
        ({"identities": [{"value": "a", "type": "b"}]}, r"mapping.event_key: Field required"),
        (
            {"event_key": "a", "identities": []},
            r"mapping.identities: .*at least 1",
        ),
        (
            {"event_key": "a b", "identities": [{"value": "a", "type": "b"}]},
            r"mapping.event_key.*should match pattern",
        ),
        (
            {"event_key": "a", "identities": [{"value": "a"}]},
            r"mapping.identities.0.type: Field required",
        ),
        (
            {
                "event_key": {"path": "a", "lookup": {"X": "y"}, "unmapped": "default"},
                "identities": [{"value": "a", "type": "b"}],
            },
            r"set 'default' exactly when 'unmapped' is 'default'",
        ),
        (
            {"event_key": "a", "identities": [{"value": "a", "type": "b", "plaform": "x"}]},
            r"mapping.identities.0.plaform: unknown key",
        ),
        (
            {"event_key": "a", "time": {"source": "position"}, "identities": []},
            r"mapping.time",
        ),
    ],
)
def test_a_malformed_mapping_section_fails_with_the_key_path(
    tmp_path: Path, mapping: dict[str, Any], message: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"mapping": mapping}))
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_no_mapping_with_another_schema_fails_at_start_up() -> None:
    with pytest.raises(MappingError, match=r"mapping\.event_key: path 'event_key'"):
        compile_mapping(default_mapping(), load_schema(CLICK_SCHEMA))


def test_a_mapping_error_is_a_config_error() -> None:
    assert issubclass(MappingError, ConfigError)
    with pytest.raises(ValidationError):
        MappingSettings.model_validate({"event_key": "a", "identities": [], "extra": 1})


# -- property: a valid event or a TransformError, nothing else ---------------------------


def _property(schema_path: Path, mapping: MappingSettings) -> Any:
    schema = load_schema(schema_path)
    mapper = compile_mapping(mapping, schema)
    decoder = AvroDecoder(schema)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records(schema))
    def check(record: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        decoded = decoder.decode(buffer.getvalue())
        body = b""
        try:
            body = mapper.encode(decoded, "topic-0-1", 1_700_000_000_000)
        except TransformError as exc:
            reason = str(exc)
        else:
            reason = ""
        if reason:
            return  # dead-lettered with this reason (it names a field)
        event = json.loads(body)
        try:
            validate_request({"publicParams": {"isMatching": 1}, "data": [event]})
        except ContractError as exc:  # pragma: no cover - the failure this test looks for
            raise AssertionError(f"mapped to an invalid event: {exc}") from None

    return check


def test_any_default_schema_record_maps_to_a_valid_event_or_a_transform_error() -> None:
    _property(DEFAULT_SCHEMA, default_mapping())()


def test_any_click_stream_record_maps_to_a_valid_event_or_a_transform_error() -> None:
    _property(CLICK_SCHEMA, load_mapping_file(CLICK_MAPPING))()


def test_the_sample_record_of_each_schema_maps_to_a_valid_event() -> None:
    for schema_path, mapping in (
        (DEFAULT_SCHEMA, default_mapping()),
        (CLICK_SCHEMA, load_mapping_file(CLICK_MAPPING)),
    ):
        schema = load_schema(schema_path)
        mapper = compile_mapping(mapping, schema)
        record = through_avro(schema, sample_record(schema, mapper.sample_hints))
        event = json.loads(mapper.encode(record, "t-0-0"))
        validate_request({"publicParams": {}, "data": [event]})


def test_check_config_shows_the_event_the_mapping_produces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.ops import cli

    config = tmp_path / "clicks.yaml"
    mapping = yaml.safe_load(CLICK_MAPPING.read_text())
    config.write_text(yaml.safe_dump({"source": {"schema_file": str(CLICK_SCHEMA)}, **mapping}))
    assert cli.main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["mapping"]["uuid"] == "click_id"  # still YAML: comments
    shown = json.loads(
        "\n".join(
            line[2:]
            for line in out.splitlines()
            if line.startswith("# ")
            and not line.startswith("# the ")
            and not line.startswith("# (")
        )
    )
    validate_request({"publicParams": {}, "data": [shown]})
    assert shown["eventKey"] in {"c_view", "c_click", "c_add_cart", "c_buy"}
    assert shown["time"] == 1_700_000_000_123  # the sample's timestamp-micros, in ms
    assert shown["eventargs"]["c_price"] == 12345.67

    mapping["mapping"]["identities"][0]["value"] = "user.phon"
    config.write_text(yaml.safe_dump({"source": {"schema_file": str(CLICK_SCHEMA)}, **mapping}))
    assert cli.main(["check-config", "--config", str(config)]) == 2
    assert "mapping.identities[0].value: path 'user.phon'" in capsys.readouterr().err


def test_a_null_item_of_an_each_array_gives_no_identity() -> None:
    """Items of a nullable record: a null item is skipped, as a null path is (it used to
    raise AttributeError out of the mapping and stop the connector with a traceback)."""
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "key", "type": "string"},
                {
                    "name": "ids",
                    "type": {
                        "type": "array",
                        "items": [
                            "null",
                            {
                                "type": "record",
                                "name": "Id",
                                "fields": [{"name": "v", "type": "string"}],
                            },
                        ],
                    },
                },
            ],
        }
    )
    mapping = MappingSettings.model_validate(
        {
            "event_key": {"const": "c_view"},
            "identities": [{"each": "ids", "value": "v", "type": {"const": "t"}}],
        }
    )
    mapper = compile_mapping(mapping, schema)
    record = {"key": "k", "ids": [{"v": "a"}, None, {"v": "b"}]}
    event = json.loads(mapper.encode(record, lambda: "u", 0))
    assert event["identities"] == [
        {"identityType": "t", "identityValue": "a"},
        {"identityType": "t", "identityValue": "b"},
    ]


def test_without_a_schema_an_each_item_that_is_no_object_is_invalid() -> None:
    mapping = MappingSettings.model_validate(
        {
            "event_key": {"const": "c_view"},
            "identities": [{"each": "ids", "value": "v", "type": {"const": "t"}}],
        }
    )
    mapper = compile_mapping(mapping, JsonDecoder(None, None).schema)
    with pytest.raises(TransformError, match=r"ids\[1\]: a string where an object is needed"):
        mapper.encode({"ids": [{"v": "a"}, "b"]}, lambda: "u", 0)
