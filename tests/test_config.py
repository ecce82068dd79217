"""Config: file + environment overrides, validated once, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from connector.adapters.kafka_source import consumer_config
from connector.config import ConfigError, Settings, load_settings, load_token

EXAMPLE = Path(__file__).parent.parent / "config" / "connector.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_example_file_is_the_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == Settings()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  max_in_flight: 4\n")
    settings = load_settings(
        path,
        environ={
            "EVENT_SINK__HTTP__MAX_IN_FLIGHT": "16",
            "EVENT_SINK__KAFKA__TOPICS": '["a", "b"]',
            "EVENT_SINK__KAFKA__PROPERTIES": '{"security.protocol": "SSL"}',
            "EVENT_SINK__BATCH__LINGER_MS": "50",
            "EVENT_SINK__KAFKA__GROUP_ID": "123",
        },
    )
    assert settings.http.max_in_flight == 16
    assert settings.kafka.topics == ("a", "b")
    assert settings.kafka.properties == {"security.protocol": "SSL"}
    assert settings.batch.linger_ms == 50
    assert settings.kafka.group_id == "123"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("batch:\n  max_events: 501\n", {}, r"batch\.max_events: .*less than or equal to 500"),
        ("batch:\n  max_event: 5\n", {}, r"batch\.max_event: unknown key"),
        ("nope: {}\n", {}, r"nope: unknown key"),
        ("http:\n  timeout_s: -1\n", {}, r"http\.timeout_s"),
        ("http:\n  url: not-a-url\n", {}, r"http\.url"),
        ("kafka:\n  topics: []\n", {}, r"kafka\.topics"),
        (
            "kafka:\n  properties: {enable.auto.commit: true}\n",
            {},
            r"kafka\.properties: .*'enable\.auto\.commit' may not be set",
        ),
        (
            "",
            {"EVENT_SINK__KAFKA__PROPERTIES": '{"enable.auto.offset.store": true}'},
            r"kafka\.properties \(from EVENT_SINK__KAFKA__PROPERTIES\)",
        ),
        ("", {"EVENT_SINK__HTTP__MAX_IN_FLIGHT": "many"}, r"http\.max_in_flight \(from EVENT"),
        ("", {"EVENT_SINK__HTTP__NOPE": "1"}, r"http\.nope \(from EVENT_SINK__HTTP__NOPE\)"),
        ("", {"EVENT_SINK__KAFKA__TOPICS": "[oops"}, r"kafka\.topics .*invalid JSON"),
        ("http:\n  token: abc\n", {}, r"http\.token: the token must not be in the config file"),
        ("- just\n- a list\n", {}, r"top level must be a mapping"),
        ("kafka: [\n", {}, r"not valid YAML"),
    ],
)
def test_bad_config_fails_with_the_key_path(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), environ=environ)


def test_a_single_kafka_property_from_the_environment_is_taken_verbatim() -> None:
    settings = load_settings(None, environ={"EVENT_SINK__KAFKA__PROPERTIES__SASL.PASSWORD": "{s3"})
    assert settings.kafka.properties == {"sasl.password": "{s3"}
    assert settings.secret_values() == ["{s3"]


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_token_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    settings = Settings()
    assert load_token(settings, {"EVENT_SINK_TOKEN": "s3cret"}).get_secret_value() == "s3cret"
    with pytest.raises(ConfigError, match="no API token"):
        load_token(settings, {})
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    with_file = load_settings(write(tmp_path, f"http:\n  token_file: {token_file}\n"), environ={})
    assert load_token(with_file, {"EVENT_SINK_TOKEN": "env"}).get_secret_value() == "from-file"
    token_file.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_token(with_file, {})


def test_redacted_config_hides_secrets() -> None:
    settings = load_settings(
        None,
        environ={
            "EVENT_SINK__KAFKA__PROPERTIES": '{"sasl.password": "hunter2", "sasl.username": "u"}'
        },
    )
    shown = settings.redacted()
    assert shown["kafka"]["properties"] == {"sasl.password": "***", "sasl.username": "u"}
    assert "hunter2" not in repr(shown)


def test_consumer_config_keeps_the_guarantee_settings() -> None:
    settings = load_settings(
        None, environ={"EVENT_SINK__KAFKA__PROPERTIES": '{"fetch.min.bytes": 1}'}
    )
    conf = consumer_config(settings.kafka)
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["fetch.min.bytes"] == 1


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_leaf_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_key_is_documented_in_the_readme_and_the_example() -> None:
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    example = EXAMPLE.read_text()
    keys = _leaf_keys(Settings)
    assert len(keys) >= 20
    undocumented = [key for key in keys if f"| `{key}` |" not in readme]
    assert undocumented == []
    missing = [key for key in keys if f"{key.rsplit('.', 1)[-1]}:" not in example]
    assert missing == []


def test_consumer_tuning_defaults_can_be_overridden() -> None:
    # Fast rebalances (workers joining) and a bounded prefetch are defaults, not rules.
    default = consumer_config(load_settings(None, environ={}).kafka)
    assert default["heartbeat.interval.ms"] == 500
    assert default["queued.max.messages.kbytes"] == 4096
    props = '{"heartbeat.interval.ms": 3000, "queued.max.messages.kbytes": 65536}'
    tuned = consumer_config(
        load_settings(None, environ={"EVENT_SINK__KAFKA__PROPERTIES": props}).kafka
    )
    assert tuned["heartbeat.interval.ms"] == 3000
    assert tuned["queued.max.messages.kbytes"] == 65536


def test_workers_is_a_bounded_top_level_key() -> None:
    assert load_settings(None, environ={}).workers == 1
    assert load_settings(None, environ={"EVENT_SINK__WORKERS": "4"}).workers == 4
    for bad in ("0", "65", "two"):
        with pytest.raises(ConfigError, match="workers"):
            load_settings(None, environ={"EVENT_SINK__WORKERS": bad})


def test_errors_suggest_the_key_meant_check_ports_and_speak_yaml(tmp_path: Path) -> None:
    text = (
        "kafka:\n  topcis: [a]\n  topics: {a: 1}\n"
        "http:\n  url: 'http://api.example:99999/import'\n  rate_limit: {event_per_s: 5}\n"
        "source:\n  schema_registry: {url: 'https://reg:0'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    message = str(caught.value)
    assert "kafka.topcis: unknown key; did you mean 'topics'?" in message
    assert "http.rate_limit.event_per_s: unknown key; did you mean 'events_per_s'?" in message
    assert "http.url: port '99999' is not a TCP port (1..65535)" in message
    assert "source.schema_registry.url: port '0' is not a TCP port" in message
    assert "kafka.topics: Input should be a valid list" in message  # not "tuple"
    assert "tuple" not in message.lower()
    assert "Value error" not in message


def test_an_unknown_key_far_from_any_gets_no_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "kafka:\n  zzzz: 1\n"), environ={})
    assert "kafka.zzzz: unknown key\n" in str(caught.value) + "\n"
    assert "did you mean" not in str(caught.value)


def test_run_refuses_to_start_on_the_built_in_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.ops import cli

    config = write(tmp_path, "batch:\n  linger_ms: 50\n")
    with caplog.at_level("ERROR"):
        code = cli.main(["run", "--config", str(config)])
    assert code == 2
    errors = caplog.text + capsys.readouterr().err
    assert "kafka.bootstrap_servers, kafka.topics, http.url" in errors
    # check-config shows the config anyway, and says what run would refuse.
    assert cli.main(["check-config", "--config", str(config)]) == 0
    assert "warning: http.url is not set; 'run' refuses to start without it" in (
        capsys.readouterr().err
    )
