"""``event-sink check-config``: the effective config, and for each route its network, its
sample event and (``--probe``) what it reaches."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml

from connector.adapters.decoders import decoder_for, registry_client
from connector.adapters.http_setup import resolve
from connector.config import ConfigError, Settings, load_token, unset_required
from connector.core.errors import EventSinkError
from connector.core.records import SourceRecord, fallback_uuid
from connector.mapping import mapper_for, sample_record
from connector.mapping.schema import is_any
from connector.mapping.transform import TransformError
from connector.ops import probe
from connector.ops.runtime import run_async
from connector.ops.serve import EXIT_FAILED, EXIT_OK, exit_code, load_checked
from connector.routing import Route, routes_of


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_checked(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    for key in unset_required(settings):
        print(f"warning: {key} is not set; 'run' refuses to start without it", file=sys.stderr)
    routes = routes_of(settings)
    effective = settings.redacted()
    if settings.routes is None:
        _mark_token(settings, effective["http"], "http")
    print(yaml.safe_dump(effective, sort_keys=False), end="")
    for route in routes:
        if settings.routes is not None:
            print(_route_config(route), end="")
        _print_route(route)
    if not args.probe:
        return EXIT_OK
    ok = True
    for route in routes:
        route_settings = route.settings
        is_confluent = route_settings.source.format == "confluent"
        registry = registry_client(route_settings) if is_confluent else None
        try:
            lines = run_async(probe.probe(route_settings, registry, os.environ))
        except EventSinkError as exc:
            print(f"error: route {route.name}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        which = "" if settings.routes is None else f" route {route.name}:"
        print(f"# probe:{which} what this config reaches (no event is sent)")
        for line in lines:
            print(line.render())
        ok = ok and all(line.ok for line in lines)
    return EXIT_OK if ok else EXIT_FAILED


def _mark_token(settings: Settings, http: dict[str, Any], where: str) -> None:
    try:
        load_token(settings)
        http["token"] = "*** (set)"
    except ConfigError as exc:
        print(f"warning: {where}: {exc} (needed by 'run')", file=sys.stderr)


def _route_config(route: Route) -> str:
    """A route's own effective settings: its subscription, source, mapping and the http
    it gets once merged over the top level."""
    data = route.settings.redacted()
    own: dict[str, Any] = {
        "topics" if route.pattern is None else "topic_pattern": (
            data["kafka"]["topics"] if route.pattern is None else route.pattern
        )
    }
    own.update(source=data["source"], mapping=data["mapping"], http=data["http"])
    _mark_token(route.settings, own["http"], f"routes[{route.name}].http")
    text = yaml.safe_dump({route.name: own}, sort_keys=False)
    return f"# route {route.name}: its effective settings\n" + "".join(
        f"#   {line}\n" for line in text.splitlines()
    )


def _print_route(route: Route) -> None:
    settings = route.settings
    network = resolve(settings.http).describe()  # names and sources, never a secret value
    print(f"# the network to http.url: proxy {network['proxy']}; CA {network['ca']}")
    print(f"# the extra headers: {network['headers']}")
    if settings.source.format == "confluent":
        proxy = registry_client(settings).proxy.describe()
        print(f"# the network to the schema registry: proxy {proxy}")
    print(_sample_body(settings), end="")


def _sample_body(settings: Settings) -> str:
    """The mapping applied to a sample record built from the schema: the event it sends."""
    schema = decoder_for(settings).schema
    if is_any(schema):
        return "# JSON without a schema: no sample record (paths are checked per record)\n"
    mapper = mapper_for(settings.mapping, schema)
    record = sample_record(schema, mapper.sample_hints)
    topic = settings.kafka.topics[0]  # a topic_pattern route: the pattern stands in
    headers = tuple((name, f"{name}-sample".encode()) for name in mapper.headers_used)
    message = SourceRecord(topic, 0, 0, b"key-sample", None, 1_700_000_000_000, headers)
    try:
        body = mapper.encode(record, fallback_uuid(topic, 0, 0), 1_700_000_000_000, message)
    except TransformError as exc:
        return f"# the mapping refuses the sample record built from the schema: {exc}\n"
    event = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    schema_file = settings.source.json_schema_file or settings.source.schema_file
    which = (
        "config"
        if settings.mapping is not None
        else "default (connector/mapping/user_behavior_event.yaml)"
    )
    return (
        f"# the {which} mapping applied to a sample record of {schema_file}\n"
        f"# (Kafka position {topic}[0]@0, timestamp 1700000000000, key key-sample"
        f"{''.join(f', header {n}: {n}-sample' for n in mapper.headers_used)}): "
        "one event of data[]\n" + "".join(f"# {line}\n" for line in event.splitlines())
    )
