"""``source.format: json``: parsing, the schema subset, the mapping checked against it at
start-up, the same events as Avro gives, and a JSON topic on the real broker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest
from drills import SCHEMA, Drill, Produced, _produce, produce_raw, read_topic
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.adapters.avro import AvroDecoder, DecodeError, SchemaError, load_schema
from connector.adapters.json_decoder import JsonDecoder, load_json_schema
from connector.config import ConfigError, load_settings
from connector.config_mapping import MappingSettings
from connector.core.records import fallback_uuid
from connector.mapping import mapper_for
from connector.mapping.schema import MappingError
from connector.mapping.transform import TransformError
from devtools import samples
from devtools.kafka import KafkaCluster

ROOT = Path(__file__).resolve().parent.parent
JSON_SCHEMA = ROOT / "schemas" / "user_behavior_event.schema.json"


@pytest.fixture(scope="module")
def decoder() -> JsonDecoder:
    return JsonDecoder(load_json_schema(JSON_SCHEMA), JSON_SCHEMA)


def event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e-1",
        "event_key": "c_buy",
        "event_time": 1_700_000_000_123,
        "identities": [{"type": "openid", "value": "o-1"}],
        "properties": {"c_price": 12.5, "c_quantity": 3, "c_note": None},
    }
    base.update(overrides)
    return base


def verdict(decoder: JsonDecoder, value: bytes) -> str:
    (got,) = decoder.decode_many([value])
    assert isinstance(got, DecodeError), got
    assert got.stage == "decode"
    return str(got)


def test_a_valid_object_decodes_and_numbers_keep_their_form(decoder: JsonDecoder) -> None:
    (record,) = decoder.decode_many([orjson.dumps(event())])
    assert record == event()
    assert isinstance(record, dict)
    properties = record["properties"]
    assert type(properties["c_quantity"]) is int
    assert type(properties["c_price"]) is float
    long_string = event(event_id="1" * 40)  # 40 digits inside a string are no integer
    assert decoder.decode_many([orjson.dumps(long_string)]) == [long_string]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"event_id": "\xff"}', "not UTF-8"),
        (b'{"event_id": ', "not JSON"),
        (b"[1, 2]", "not a JSON object: an array"),
        (b'"c_buy"', "not a JSON object: a string"),
        (orjson.dumps({k: v for k, v in event().items() if k != "event_key"}),
         "event_key: required, missing"),
        (orjson.dumps(event(event_time="yesterday")), "event_time: a string is not integer"),
        (orjson.dumps(event(identities=[{"type": "openid"}])), "identities[0].value: required"),
        (orjson.dumps(event(interaction_id=7)), "interaction_id: an integer is not string"),
        (json.dumps(event(event_time=2**63)).encode(), "outside the signed 64-bit range"),
        (json.dumps(event(properties={"n": 2**64 + 1})).encode(), "outside the signed 64-bit"),
        (json.dumps(event(properties={"n": -(2**63) - 1})).encode(), "outside the signed 64"),
    ],
)  # fmt: skip
def test_what_is_invalid_at_stage_decode(decoder: JsonDecoder, value: bytes, reason: str) -> None:
    got = verdict(decoder, value)
    assert reason in got
    assert "yesterday" not in got  # the reason names the field and type, never the value


def test_the_mapping_is_checked_against_the_json_schema_at_start(decoder: JsonDecoder) -> None:
    mapper_for(None, decoder.schema)  # the default mapping fits
    wrong = MappingSettings.model_validate(
        {"event_key": "event_kye", "identities": [{"each": "identities", "value": "value",
                                                   "type": "type"}]}
    )  # fmt: skip
    with pytest.raises(MappingError, match="path 'event_kye': the record has no field"):
        mapper_for(wrong, decoder.schema)


def test_unsupported_schemas_and_configs_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"oneOf": []}}}))
    with pytest.raises(SchemaError, match="at /properties/a: oneOf not supported"):
        JsonDecoder(load_json_schema(path), path)
    path.write_text(json.dumps({"type": "array", "items": {}}))
    with pytest.raises(SchemaError, match="the top level must be an object with properties"):
        load_json_schema(path)
    config = tmp_path / "c.yaml"
    config.write_text(f"source: {{json_schema_file: {JSON_SCHEMA}}}\n")
    with pytest.raises(ConfigError, match=r"source\.json_schema_file is set but source\.format"):
        load_settings(config)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_json_and_avro_of_one_record_become_the_same_event(seed: int) -> None:
    """The Python path's two inputs agree: a sample record as Avro and as JSON."""
    avro_schema = load_schema(SCHEMA)
    avro, json_decoder = AvroDecoder(avro_schema), JsonDecoder(load_json_schema(JSON_SCHEMA),
                                                               JSON_SCHEMA)  # fmt: skip
    avro_mapper, json_mapper = mapper_for(None, avro_schema), mapper_for(None, json_decoder.schema)
    for index, record in enumerate(samples.sample_events(5, seed, 1_700_000_000_000)):
        (from_avro,) = avro.decode_many([samples.encode(avro_schema, record)])
        (from_json,) = json_decoder.decode_many([orjson.dumps(record)])
        assert isinstance(from_avro, dict)
        assert isinstance(from_json, dict)
        uuid = fallback_uuid("t", 0, index)
        expected = json.loads(avro_mapper.encode(from_avro, uuid, 1))
        assert json.loads(json_mapper.encode(from_json, uuid, 1)) == expected


@pytest.mark.parametrize("with_schema", [True, False], ids=["schema", "no-schema"])
def test_a_json_topic_delivers_and_dead_letters_exactly_the_bad_records(
    kafka: KafkaCluster, tmp_path: Path, with_schema: bool
) -> None:
    """Invalid JSON, a non-object, a missing event_key and a 65-bit integer: with the
    schema all four fail decoding; without it the missing event_key fails the mapping."""
    with Drill("json", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        dlq = d.topic(partitions=1, stem="dlq")
        records = list(samples.sample_events(600, 201, 1_700_000_000_000))
        produced = Produced(topic)
        good = _produce(d.bootstrap, topic, [orjson.dumps(r) for r in records], None)
        produced._advance({(t, p): o + 1 for t, p, o in good})
        bad = [b'{"event_id": "x", ', b"[1, 2, 3]", orjson.dumps(event(event_key=None)),
               json.dumps(event(event_time=2**64)).encode()]  # fmt: skip
        bad_positions = produce_raw(d.bootstrap, produced, bad)
        sandbox = d.start_sandbox(latency_ms=2)
        source = {"format": "json"}
        if with_schema:
            source["json_schema_file"] = str(JSON_SCHEMA)
        config = d.config(topic, source=source, dlq={"topic": dlq, "on_invalid": "dlq"})
        connector = d.start_connector(config)
        d.wait_committed(produced, watch=[connector])  # every offset, the bad ones too
        assert connector.terminate() == 0, d.context()
        delivered = sandbox.uuids()
        letters = list(read_topic(d.bootstrap, dlq))
    assert delivered == {str(r["event_id"]) for r in records}
    found = set()
    for _partition, _offset, value, headers in letters:
        named = dict(headers)
        missing_key = value == bad[2]
        expected_stage = b"transform" if missing_key and not with_schema else b"decode"
        assert named["event-sink.stage"] == expected_stage
        position = (
            (named["event-sink.original.topic"] or b"").decode(),
            int(named["event-sink.original.partition"] or b""),
            int(named["event-sink.original.offset"] or b""),
        )
        found.add(position)
        assert value == bad[bad_positions.index(position)]  # the original bytes
    assert found == set(bad_positions)
    assert len(letters) == 4


# -- JSON without a schema: paths are checked per record ---------------------------------


@pytest.fixture(scope="module")
def schemaless() -> JsonDecoder:
    return JsonDecoder(None, None)


def test_without_a_schema_any_object_decodes_but_not_the_rest(schemaless: JsonDecoder) -> None:
    anything = {"whatever": [1, {"x": None}], "n": 2.5}
    assert schemaless.decode_many([orjson.dumps(anything)]) == [anything]
    assert "not a JSON object: an array" in verdict(schemaless, b"[1]")
    assert "signed 64-bit" in verdict(schemaless, json.dumps({"n": 2**70}).encode())
    assert "not UTF-8" in verdict(schemaless, b'{"a": "\xff"}')


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({k: v for k, v in event().items() if k != "event_key"}, "event_key: required"),
        (event(event_key=7), "event_key: an integer where enum or string is needed"),
        (event(identities=[{"type": "openid"}]), "identities[0].value: required, missing"),
        (event(identities="o-1"), "identities: a string where array is needed"),
        (event(identities=[{"type": "openid", "value": ["o"]}]), "value: an array where"),
        (event(event_time="yesterday"), "event_time: not an ISO 8601 time"),
        (event(event_time=-5), "event_time: must be epoch milliseconds"),
        (event(properties=[1]), "properties: an array where map is needed"),
    ],
)  # fmt: skip
def test_without_a_schema_what_the_api_needs_is_checked_per_record(
    schemaless: JsonDecoder, record: dict[str, object], reason: str
) -> None:
    mapper = mapper_for(None, schemaless.schema)  # the default mapping compiles on anything
    (decoded,) = schemaless.decode_many([orjson.dumps(record)])
    assert isinstance(decoded, dict)
    with pytest.raises(TransformError, match=re.escape(reason)):
        mapper.encode(decoded, "fallback", None)


def test_without_a_schema_optional_fields_are_omitted_and_times_may_be_iso(
    schemaless: JsonDecoder,
) -> None:
    mapper = mapper_for(None, schemaless.schema)
    record = event(event_time="2023-11-14T22:13:20.123Z")
    del record["properties"]
    (decoded,) = schemaless.decode_many([orjson.dumps(record)])
    assert isinstance(decoded, dict)
    got = json.loads(mapper.encode(decoded, "fallback", None))
    assert got == {
        "identities": [{"identityType": "openid", "identityValue": "o-1"}],
        "time": 1_700_000_000_123,
        "uuid": "e-1",
        "eventKey": "c_buy",
    }


def test_without_a_schema_a_lookup_takes_keys_of_any_json_type(schemaless: JsonDecoder) -> None:
    settings = MappingSettings.model_validate(
        {"event_key": {"path": "code", "lookup": {5: "c_buy", "x": "c_view"}},
         "identities": [{"value": "user", "type": {"const": "user_id"}}]}
    )  # fmt: skip
    mapper = mapper_for(settings, schemaless.schema)
    keys = [json.loads(mapper.encode({"code": code, "user": "u"}, "f", None))["eventKey"]
            for code in (5, "x")]  # fmt: skip
    assert keys == ["c_buy", "c_view"]
    with pytest.raises(TransformError, match=r"value not in mapping\.event_key\.lookup"):
        mapper.encode({"code": 6, "user": "u"}, "f", None)
