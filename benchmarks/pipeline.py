"""The connector's per-event work inside the process, stage by stage, without Kafka or
HTTP: where the CPU goes after decode (issue 16).

The same 20,000 default-schema records as ``native_codec.py``, as confluent_kafka's own
``Message`` objects (what the consumer hands over), in consume chunks of 1,000 over 6
partitions, through the stages the loop runs, each timed on its own:

- ``decode+map``: the native path's ``NativeChunk.messages`` (or, with ``--python-path``,
  the SourceRecords of ``KafkaSource.consume`` decoded and mapped by ``python_path``);
- ``track``: ``OffsetTracker.track_run`` per run;
- ``events``: ``ingest_runs`` (or ``ingest``'s ``collect``), the runs of events;
- ``batch``: ``Batcher.add_runs``, 500 events a batch;
- ``render``: ``render_body``, each batch's request body;
- ``settle``: ``delivery.settled``, the latency histogram and ``Receipt.resolve``, as a
  delivered batch does.

The collector is tuned as the connector tunes it (``tune_gc``), and everything one chunk
makes stays alive until its batches are settled, as in the connector. Figures are CPU µs
per event, the median over the repeats.

    .venv/bin/python benchmarks/pipeline.py [--events 20000] [--repeats 5] [--python-path]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from prometheus_client import CollectorRegistry

from connector.adapters.avro import AvroDecoder, load_schema
from connector.adapters.native import Fallback, native_chunk_for
from connector.core.batch import Batcher, render_body
from connector.core.offsets import OffsetTracker
from connector.core.records import EventRun, TopicPartition, record_of
from connector.mapping import mapper_for
from connector.metrics import Metrics
from connector.ops.runtime import tune_gc
from connector.pipeline.delivery import settled
from connector.pipeline.ingest import collect, ingest_runs, python_path
from devtools import samples

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"
CHUNK = 1_000  # kafka.consume_max_messages' default
PARTITIONS = 6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python-path", action="store_true", help="the Python path instead")
    args = parser.parse_args()
    schema = load_schema(SCHEMA)
    values = [
        samples.encode(schema, event)
        for event in samples.sample_events(args.events, 7, 1_700_000_000_000)
    ]
    native = native_chunk_for(schema, None)
    if isinstance(native, Fallback) and not args.python_path:
        print(f"native path unavailable: {native.reason}", file=sys.stderr)
        return 1
    decoder, mapper = AvroDecoder(schema), mapper_for(None, schema)
    metrics = Metrics(CollectorRegistry())
    tune_gc()
    runs: list[Counter[str]] = []
    for _ in range(args.repeats):
        spent: Counter[str] = Counter()
        tracker = OffsetTracker()
        tracker.assign([("events", p) for p in range(PARTITIONS)])
        batcher = Batcher(
            max_events=500,
            max_bytes=4_000_000,
            linger_s=0.2,
            overhead_bytes=40,
            clock=time.monotonic,
        )
        for messages in _chunks(values):
            if args.python_path:
                with timed(spent, "decode+map"):
                    records = [record_of(m) for m in messages]
                    outcomes = python_path(records, decoder.decode_many, mapper.encode)
                with timed(spent, "track"):
                    runs_of: dict[TopicPartition, list[int]] = {}
                    for record in records:
                        runs_of.setdefault((record.topic, record.partition), []).append(
                            record.offset
                        )
                    receipts = {tp: tracker.track_run(tp, o) for tp, o in runs_of.items()}
                with timed(spent, "events"):
                    got = collect(records, receipts, outcomes, "skip")
            else:
                assert not isinstance(native, Fallback)
                with timed(spent, "decode+map"):
                    chunk_runs, _ = native.messages(messages)
                with timed(spent, "track"):
                    receipts = {
                        (r.topic, r.partition): tracker.track_run((r.topic, r.partition), r.offsets)
                        for r in chunk_runs
                    }
                with timed(spent, "events"):
                    got = ingest_runs(chunk_runs, receipts)
            with timed(spent, "batch"):
                batches = batcher.add_runs(p for p in got.parts if isinstance(p, EventRun))
            for batch in batches:
                with timed(spent, "render"):
                    render_body(b"{}", batch.events)
                with timed(spent, "settle"):
                    _settle(batch.events, metrics)
        assert tracker.pending == len(values) % 500, tracker.pending  # all but the open batch
        runs.append(spent)
    total = 0.0
    path = "Python path" if args.python_path else "native path"
    print(f"{args.events} records of {SCHEMA.name}, chunks of {CHUNK}, {path}; CPU µs per event")
    for stage in runs[0]:
        micros = statistics.median(run[stage] for run in runs) / args.events * 1e6
        total += micros
        print(f"  {stage:12s} {micros:6.2f}")
    print(f"  {'total':12s} {total:6.2f}")
    return 0


@contextlib.contextmanager
def timed(spent: Counter[str], stage: str) -> Iterator[None]:
    """Adds the CPU time of the block to ``spent[stage]``."""
    start = time.process_time()
    yield
    spent[stage] += time.process_time() - start


def _chunks(values: list[bytes]) -> list[list[Any]]:
    """Consume chunks as the consumer hands them over: runs of one partition."""
    out = []
    for start in range(0, len(values), CHUNK):
        chunk = values[start : start + CHUNK]
        run = len(chunk) // 2  # two partitions per chunk, in turns
        out.append(
            [
                Message(
                    topic="events",
                    partition=(start // CHUNK * 2 + i // run) % PARTITIONS,
                    offset=start + i,
                    key=None,
                    value=value,
                    timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_000),
                    headers=None,
                )
                for i, value in enumerate(chunk)
            ]
        )
    return out


def _settle(events: Any, metrics: Metrics) -> None:
    by_receipt, timestamps = settled(events, set())
    metrics.end_to_end_latency.observe_ages(timestamps, time.time() * 1000)
    for receipt, offsets in by_receipt.items():
        receipt.resolve(offsets)


if __name__ == "__main__":
    raise SystemExit(main())
