"""Decode + map + encode alone, per event: the Python path against the native path, on the
same 20,000 records of the default schema, in the same run (issue 16).

    .venv/bin/python benchmarks/native_codec.py [--events 20000] [--chunk 500] [--repeats 7]

The Python path is what ingest runs per consume chunk: ``AvroDecoder.decode_many`` (the
compiled reader), then ``Mapper.encode`` per record. The native path is
``NativeChunk(records)`` on the same chunks (the extension's ``Plan.run`` plus making the
columns it is handed), and ``Plan.run`` alone on prepared columns. Every event of both paths is
checked equal first. Figures are the median over the repeats, in CPU µs per event; no
broker, no HTTP: the stage alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from connector.adapters.avro import AvroDecoder, load_schema
from connector.adapters.native import Fallback, native_chunk_for
from connector.adapters.native import columns as native_columns
from connector.core.records import SourceRecord
from connector.mapping import mapper_for
from devtools import samples

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=500, help="records per consume chunk")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    schema = load_schema(SCHEMA)
    records = [
        SourceRecord("events", i % 6, i, None, samples.encode(schema, event), 1_700_000_000_000)
        for i, event in enumerate(samples.sample_events(args.events, 7, 1_700_000_000_000))
    ]
    chunks = [records[i : i + args.chunk] for i in range(0, len(records), args.chunk)]
    decoder = AvroDecoder(schema)
    mapper = mapper_for(None, schema)
    native = native_chunk_for(schema, None)
    if isinstance(native, Fallback):
        print(f"native path unavailable: {native.reason}", file=sys.stderr)
        return 1

    def python_path() -> list[bytes]:
        out: list[bytes] = []
        for chunk in chunks:
            decoded = decoder.decode_many([r.value for r in chunk])
            for record, value in zip(chunk, decoded, strict=True):
                assert isinstance(value, dict)
                out.append(mapper.encode(value, record.fallback_uuid, record.timestamp_ms, record))
        return out

    def native_path() -> list[bytes]:
        out: list[bytes] = []
        for chunk in chunks:
            out.extend(body for body in native(chunk) if isinstance(body, bytes))
        return out

    columns = [native_columns(chunk) for chunk in chunks]
    plan = native.plan

    def native_run_only() -> list[bytes]:
        out: list[bytes] = []
        for column in columns:
            out.extend(plan.run(*column))
        return out

    reference = python_path()
    if native_path() != reference or native_run_only() != reference:
        print("the paths disagree on an event", file=sys.stderr)
        return 1
    sizes = sum(len(r.value or b"") for r in records) / len(records)
    print(
        f"{args.events} records of {SCHEMA.name} ({sizes:.0f} bytes each), chunks of {args.chunk}"
    )
    print(f"every event byte-equal on both paths; {sum(native.deferred.values())} deferred")
    figures = {
        "python (decode_many + Mapper.encode)": _per_event(python_path, args),
        "native (NativeChunk on SourceRecords)": _per_event(native_path, args),
        "native (Plan.run on columns)": _per_event(native_run_only, args),
    }
    base = figures["python (decode_many + Mapper.encode)"]
    for name, micros in figures.items():
        print(f"  {name:40s} {micros:7.2f} µs/event   {base / micros:5.1f}x")
    return 0


def _per_event(run: Callable[[], list[bytes]], args: argparse.Namespace) -> float:
    times = []
    for _ in range(args.repeats):
        # CPU time of this process: what the stage costs, less exposed to other load on
        # the machine than the wall clock (the runs are single-threaded).
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    events: int = args.events
    return statistics.median(times) / events * 1e6


if __name__ == "__main__":
    raise SystemExit(main())
