"""Routes, the config side: how ``routes:`` merge over the top-level keys, what is refused
naming the key, and what check-config prints per route. No broker; the delivery drills are
in test_routes.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from drills import (
    ROOT,
    SCHEMA,
)

from connector.config import ConfigError, load_settings, unset_required
from connector.routing import routes_of

JSON_SCHEMA = ROOT / "schemas" / "user_behavior_event.schema.json"


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path, environ or {})


# -- the config --------------------------------------------------------------------------


def test_without_routes_the_top_level_keys_are_one_route_named_default(tmp_path: Path) -> None:
    settings = _load(tmp_path, "kafka: {topics: [a, b]}\nsource: {format: json}\n")
    (route,) = routes_of(settings)
    assert route.name == "default"
    assert route.settings is settings
    assert route.settings.kafka.topics == ("a", "b")


def test_a_routes_http_is_merged_over_the_top_level_key_by_key(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
kafka: {bootstrap_servers: "b:9092", group_id: g}
http:
  url: "https://api.example/v1/import"
  timeout_s: 5
  public_params: {isMatching: 1, matchingType: 1}
  retry: {max_backoff_ms: 9000, initial_backoff_ms: 50}
  status_overrides: {418: retry}
routes:
  - name: orders
    topics: [shop-orders]
    source: {format: json}
    http:
      url: "https://other.example/v1/import"
      public_params: {matchingType: 2}
      retry: {max_backoff_ms: 1000}
      status_overrides: {}
  - name: behaviour
    topic_pattern: "^user-.*"
""",
    )
    orders, behaviour = routes_of(settings)
    assert (orders.name, orders.settings.kafka.topics) == ("orders", ("shop-orders",))
    assert orders.settings.source.format == "json"
    http = orders.settings.http
    assert http.url == "https://other.example/v1/import"  # scalar: replaced
    assert http.timeout_s == 5  # not named by the route: the top level's
    assert http.public_params == {"isMatching": 1, "matchingType": 2}  # map: merged
    assert (http.retry.max_backoff_ms, http.retry.initial_backoff_ms) == (1000, 50)
    assert http.status_overrides == {418: "retry"}  # an empty map merges nothing in
    assert behaviour.settings.kafka.topics == ("^user-.*",)  # the subscription
    assert behaviour.pattern == "^user-.*"
    assert behaviour.settings.http.url == "https://api.example/v1/import"
    assert behaviour.settings.source.format == "avro"
    assert behaviour.claims("user-clicks")
    assert not behaviour.claims("shop-orders")
    assert unset_required(settings) == []  # topics come from the routes


def test_a_static_member_id_is_made_one_per_route(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
kafka: {properties: {group.instance.id: pod-0}}
routes: [{name: a, topics: [x]}, {name: b, topics: [y]}]
""",
    )
    ids = [r.settings.kafka.properties["group.instance.id"] for r in routes_of(settings)]
    assert ids == ["pod-0-a", "pod-0-b"]


def test_run_needs_each_routes_url_at_one_level_or_the_other(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
kafka: {bootstrap_servers: "b:9092"}
routes:
  - {name: a, topics: [x], http: {url: "https://api.example/v1/import"}}
  - {name: b, topics: [y]}
""",
    )
    assert unset_required(settings) == ["routes[b].http.url"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "routes: [{name: a, topics: [x, y]}, {name: b, topics: [y]}]",
            "topic 'y' is matched by two routes, 'a' and 'b'",
        ),
        (
            "routes: [{name: a, topic_pattern: '^shop-.*'}, {name: b, topics: [shop-eu]}]",
            "topic 'shop-eu' is matched by two routes, 'a' and 'b'",
        ),
        ("source: {format: json}\nroutes: [{name: a, topics: [x]}]", "source: not allowed"),
        ("mapping: {}\nroutes: [{name: a, topics: [x]}]", "mapping: not allowed"),
        ("kafka: {topics: [x]}\nroutes: [{name: a, topics: [y]}]", "kafka.topics: not allowed"),
        ("routes: [{name: a, topics: [x], topcs: [y]}]", "routes.0.topcs: unknown key"),
        ("routes: [{name: a, topics: [x]}, {name: a, topics: [y]}]", "'a' is used twice"),
        ("routes: [{name: Orders, topics: [x]}]", "routes.0.name: String should match"),
        ("routes: [{name: a}]", "set exactly one of topics and topic_pattern"),
        ("routes: [{name: a, topics: [x], topic_pattern: '^x'}]", "exactly one of topics"),
        ("routes: [{name: a, topic_pattern: 'shop-.*'}]", "starts with '^'"),
        ("routes: [{name: a, topic_pattern: '^shop-('}]", "not a valid regular expression"),
        ("routes: []", "give 1 to 64 routes"),
        (
            "dlq: {topic: x-dlq}\nroutes: [{name: a, topic_pattern: '^x.*'}]",
            "routes[a]: matches dlq.topic 'x-dlq'",
        ),
        (
            "routes: [{name: a, topics: [x], http: {url: 'ftp://h'}}]",
            "routes.0.http.url: String should match",
        ),
        (
            "routes: [{name: a, topics: [x], source: {on_tombstone: dlq}}]",
            "routes[a].source.on_tombstone is 'dlq' but dlq.on_invalid is not",
        ),
    ],
)
def test_bad_routes_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert message in str(caught.value)


def test_a_token_in_a_routes_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.http\.token: the token must not be"):
        _load(tmp_path, "routes: [{name: a, topics: [x], http: {token: s3cret}}]")


def test_check_config_prints_each_routes_settings_and_sample_event(tmp_path: Path) -> None:
    token = tmp_path / "orders.token"
    token.write_text("orders-token")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
kafka: {{bootstrap_servers: "b:9092"}}
http: {{url: "https://api.example/v1/events/import", timeout_s: 5}}
routes:
  - name: orders
    topics: [shop-orders]
    source: {{format: json, json_schema_file: "{JSON_SCHEMA}"}}
    http: {{url: "https://orders.example/v1/events/import", token_file: "{token}"}}
  - name: behaviour
    topic_pattern: "^user-.*"
    source: {{schema_file: "{SCHEMA}"}}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENT_SINK")}
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**env, "EVENT_SINK_TOKEN": "shared-token"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "# route orders: its effective settings" in out
    assert "# route behaviour: its effective settings" in out
    assert "#       url: https://orders.example/v1/events/import" in out
    assert "#       timeout_s: 5.0" in out  # merged from the top level
    assert "#     topic_pattern: ^user-.*" in out
    assert out.count("one event of data[]") == 2
    assert "orders-token" not in out
    assert "shared-token" not in out
