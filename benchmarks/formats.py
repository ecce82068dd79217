"""Decode + map + encode CPU per event, Avro against JSON, in one run (the routes issue).

The same sample records (the default schema), encoded once as Avro binary and once as
JSON, go through what ingest does per chunk: the route's decoder (``decode_many``) and the
default mapping (``Mapper.encode``), 1,000 records a chunk as a consume call hands over.
The time is the process's CPU time (``time.process_time``), the best of ``--repeats``.

    .venv/bin/python benchmarks/formats.py --events 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fastavro
import orjson

from connector.adapters.avro import AvroDecoder, Decoder, load_schema
from connector.adapters.json_decoder import JsonDecoder, load_json_schema
from connector.core.records import SourceRecord, fallback_uuid
from connector.mapping import Mapper, mapper_for
from devtools import samples

ROOT = Path(__file__).resolve().parent.parent
AVRO_SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"
JSON_SCHEMA = ROOT / "schemas" / "user_behavior_event.schema.json"
CHUNK = 1000


def _pass(decoder: Decoder, mapper: Mapper, values: Sequence[bytes]) -> float:
    """CPU seconds for one pass over ``values``, chunk by chunk."""
    record = SourceRecord("t", 0, 0, None, None, 0, ())
    uuid: Callable[[], str] = lambda: fallback_uuid("t", 0, 0)  # noqa: E731
    started = time.process_time()
    for start in range(0, len(values), CHUNK):
        chunk = list(values[start : start + CHUNK])
        for decoded in decoder.decode_many(chunk):
            assert type(decoded) is dict
            mapper.encode(decoded, uuid, 0, record)
    return time.process_time() - started


def measure(events: int, repeats: int) -> dict[str, Any]:
    records = list(samples.sample_events(events, 7, 1_700_000_000_000))
    avro_schema = load_schema(AVRO_SCHEMA)

    def avro(record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, avro_schema, record)
        return out.getvalue()

    json_decoder = JsonDecoder(load_json_schema(JSON_SCHEMA), JSON_SCHEMA)
    schemaless = JsonDecoder(None, None)
    avro_decoder = AvroDecoder(avro_schema)
    cases = {
        "avro": (avro_decoder, mapper_for(None, avro_schema), [avro(r) for r in records]),
        "json with schema": (
            json_decoder,
            mapper_for(None, json_decoder.schema),
            [orjson.dumps(r) for r in records],
        ),
        "json without schema": (
            schemaless,
            mapper_for(None, schemaless.schema),
            [orjson.dumps(r) for r in records],
        ),
    }
    best = {name: float("inf") for name in cases}
    for _ in range(repeats):  # interleaved, so a noisy moment hits every case alike
        for name, (decoder, mapper, values) in cases.items():
            best[name] = min(best[name], _pass(decoder, mapper, values))
    return {name: seconds / events * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    figures = measure(args.events, args.repeats)
    base = figures["avro"]
    print(f"decode + map + encode, µs per event (best of {args.repeats}, {args.events} events)")
    for name, us in figures.items():
        print(f"  {name:20s} {us:6.2f} µs  ({us / base:.2f}x Avro)")


if __name__ == "__main__":
    main()
