"""BENCHMARK BASELINE, NOT THE CONNECTOR: the naive synchronous sink of tracker issue 7.

"The obvious synchronous sink": a ``confluent_kafka.Consumer`` poll loop (consumer group,
auto commit off), fastavro schemaless decode with the parsed schema, the connector's own
record → event mapping (``connector.mapping.transform.to_event``), batches of 500, ``json.dumps`` of
the body, one blocking POST at a time with the ``X-Token`` header, and on HTTP 200 with body
``code == "200"`` a synchronous commit; anything else retries the same batch after a short
sleep. The issue names ``requests.post``; ``requests`` is not a dependency of this project
(and none may be added), so the POST is ``urllib.request`` from the standard library, which
is the same one-blocking-request-at-a-time model.

It exists only so ``benchmarks/run.py`` has something to compare the connector with. It has
no dead letters, no backpressure, no rebalance handling beyond what the consumer does.

Run as a process::

    python benchmarks/baseline_sink.py BOOTSTRAP TOPIC GROUP URL TOKEN [--report FILE]

SIGTERM or SIGINT stops it after the current batch. At exit it writes one JSON line (to
stdout and to ``--report`` if given): events delivered, batches, retries and the end-to-end
latency p50/p99 in seconds, from each record's Kafka timestamp to the moment its batch's
200 arrived, computed exactly from every delivered record.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any, cast

import fastavro
from confluent_kafka import Consumer, Message

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.adapters.avro import load_schema  # noqa: E402  (after the sys.path line above)
from connector.core.records import fallback_uuid  # noqa: E402
from connector.mapping.transform import to_event  # noqa: E402

SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"
BATCH_SIZE = 500
# A partial batch is sent once polling has been idle this long (the end of the backlog).
IDLE_FLUSH_S = 0.05
RETRY_SLEEP_S = 0.2
PUBLIC_PARAMS = {"isMatching": 1, "matchingType": 1}  # the connector's default

_stopping = False


def _stop(_signum: int, _frame: FrameType | None) -> None:
    global _stopping
    _stopping = True


def _post(url: str, token: str, body: bytes) -> bool:
    """One blocking POST; True only for HTTP 200 with body ``code == "200"``."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Token": token},
    )
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:
            if response.status != 200:
                return False
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False  # HTTPError (non-2xx) is a URLError; timeouts are OSErrors
    return isinstance(answer, dict) and answer.get("code") == "200"


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def run(bootstrap: str, topic: str, group: str, url: str, token: str) -> dict[str, Any]:
    schema = load_schema(SCHEMA)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    latencies: list[float] = []
    delivered = batches = retries = 0
    batch: list[Message] = []

    def send(messages: list[Message]) -> None:
        nonlocal delivered, batches, retries
        events = []
        for message in messages:
            # A consumed message always has a value and a position; the casts say so to mypy.
            value = cast(bytes, message.value())
            record = cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(value), schema))
            fallback = fallback_uuid(
                cast(str, message.topic()),
                cast(int, message.partition()),
                cast(int, message.offset()),
            )
            events.append(to_event(record, fallback))
        body = json.dumps({"publicParams": PUBLIC_PARAMS, "data": events}).encode()
        # Retry the same batch until it is accepted (or we are told to stop: then the batch
        # stays uncommitted, which is what at-least-once allows).
        while not _post(url, token, body):
            retries += 1
            if _stopping:
                return
            time.sleep(RETRY_SLEEP_S)
        accepted_ms = time.time() * 1000
        for message in messages:
            _kind, timestamp_ms = message.timestamp()
            latencies.append((accepted_ms - timestamp_ms) / 1000)
        # Synchronous commit of the consumer's positions: exactly what this batch consumed.
        consumer.commit(asynchronous=False)
        delivered += len(messages)
        batches += 1

    try:
        while not _stopping:
            message = consumer.poll(IDLE_FLUSH_S if batch else 1.0)
            if message is None:
                if batch:
                    send(batch)
                    batch = []
                continue
            if message.error() is not None:
                continue  # e.g. partition EOF notices; a naive sink just goes on
            batch.append(message)
            if len(batch) >= BATCH_SIZE:
                send(batch)
                batch = []
    finally:
        consumer.close()
    latencies.sort()
    return {
        "delivered": delivered,
        "batches": batches,
        "retries": retries,
        "latency_p50_s": _percentile(latencies, 0.50),
        "latency_p99_s": _percentile(latencies, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--report", type=Path, help="also write the final JSON line here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    summary = run(args.bootstrap, args.topic, args.group, args.url, args.token)
    line = json.dumps(summary)
    print(line, flush=True)
    if args.report is not None:
        args.report.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
