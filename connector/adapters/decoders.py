"""The decoder ``source.format`` names, built once at start-up."""

from __future__ import annotations

import os

from connector.adapters.avro import AvroDecoder, Decoder, load_schema
from connector.adapters.http_setup import proxy_for
from connector.adapters.json_decoder import JsonDecoder, load_json_schema
from connector.adapters.registry import ConfluentDecoder, RegistryClient
from connector.config import Settings


def registry_client(settings: Settings) -> RegistryClient:
    registry = settings.source.schema_registry
    # The registry goes through the same proxy as the API (http.proxy or the environment).
    proxy = proxy_for(registry.url or "", settings.http.proxy, os.environ)
    return RegistryClient(registry, proxy=proxy)


def decoder_for(settings: Settings) -> Decoder:
    """avro: the local schema; confluent: the local schema as the reader, writer schemas
    from the registry; json: the JSON Schema file."""
    source = settings.source
    if source.format == "json":
        path = source.json_schema_file
        return JsonDecoder(None if path is None else load_json_schema(path), path)
    schema = load_schema(source.schema_file)
    if source.format == "confluent":
        return ConfluentDecoder(schema, registry_client(settings))
    return AvroDecoder(schema)
