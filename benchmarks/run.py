"""Benchmark of tracker issue 7: the connector (default config) against a naive baseline.

One broker (a fresh ``LocalKafka``, or ``$KAFKA_BOOTSTRAP_SERVERS``), one sandbox process
answering after ``--latency-ms``. Each repeat produces ``--events`` sample events (same seed,
so the same contents) to a fresh 6-partition topic, then runs, each with a fresh consumer
group and until the broker reports the group's committed offsets at the end offsets:

(a) the connector, ``python -m connector run``, default config but for bootstrap, group,
    topic, url and ``metrics.port: 0``;
(b) ``benchmarks/baseline_sink.py``, the naive synchronous sink.

The order of (a) and (b) alternates between repeats: in a backlog run a record's
end-to-end latency includes how long it waited on the topic, so whichever runs second would
otherwise always look slower. Figures per run: events/s (process start → all committed),
p50/p99 end-to-end latency (connector: estimated from its histogram buckets, linear
inside a bucket; baseline: exact, from every record), peak RSS (VmHWM), CPU seconds
(utime + stime from ``/proc/<pid>/stat``, all threads, read just before stopping) per
100k events. Prints medians and the connector/baseline ratios, and writes everything to
``benchmarks/results/<UTC date>.json``.

    .venv/bin/python benchmarks/run.py --events 200000 --latency-ms 50 --repeats 3
    .venv/bin/python benchmarks/run.py --quick        # 20,000 events, 1 repeat
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import drills  # noqa: E402  (tests/drills.py, after the sys.path lines above)
from confluent_kafka import ConsumerGroupState, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from connector.adapters.avro import load_schema  # noqa: E402
from connector.core.records import TopicPartition  # noqa: E402
from devtools import samples  # noqa: E402
from devtools.kafka import external_or_local  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PARTITIONS = 6
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class RunResult:
    kind: str  # "baseline", "connector" (workers: 1) or "connector-2w" (workers: 2)
    repeat: int
    events: int
    wall_s: float
    events_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    peak_rss_mib: float
    cpu_s: float
    cpu_s_per_100k: float
    workload: str = "backlog"  # or "paced" (events/s there is only the offered rate)


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread, librdkafka's included)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; everything after its ")" is split safely.
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    """The process and every process under it (the workers of ``workers: N``)."""
    found, index = [pid], 0
    while index < len(found):
        member = found[index]
        index += 1
        try:
            children = Path(f"/proc/{member}/task/{member}/children").read_text()
        except OSError:  # exited meanwhile
            continue
        found += [int(child) for child in children.split()]
    return found


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its live descendants."""
    total = 0.0
    for member in descendants(pid):
        try:
            total += cpu_seconds(member)
        except OSError:
            continue
    return total


def peak_rss_per_process_mib(pid: int) -> float:
    """The largest peak RSS of any one process in the tree (the target is per process)."""
    peaks = [0.0]
    for member in descendants(pid):
        try:
            peaks.append(_peak_rss_mib(member))
        except OSError:
            continue
    return max(peaks)


# --------------------------------------------------------------------------- waiting


def wait_committed(
    admin: AdminClient,
    bootstrap: str,
    group: str,
    end_offsets: Mapping[TopicPartition, int],
    alive: Callable[[], bool],
    timeout_s: float,
) -> None:
    # Our own loop rather than drills.wait_committed: a 0.1 s poll keeps the wall time's
    # resolution well below a run's length, and a dead process fails at once.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process for group {group} exited before committing all")
        try:
            got = drills.committed_offsets(bootstrap, group, end_offsets, 5.0, admin=admin)
        except Exception:  # broker busy: not there yet, the deadline decides
            got = {}
        if got == dict(end_offsets):
            return
        time.sleep(0.1)
    raise RuntimeError(f"group {group}: committed offsets did not reach the end in {timeout_s}s")


# --------------------------------------------------------------------------- workloads

#: Called once the process under test started, with its group, an "is it alive" check and
#: how many group members it runs; returns the end offsets to wait for and how many events
#: they hold.
Workload = Callable[[str, Callable[[], bool], int], tuple[Mapping[TopicPartition, int], int]]


def backlog(produced: drills.Produced) -> Workload:
    """The events are on the topic before the process starts."""

    def workload(
        _group: str, _alive: Callable[[], bool], _members: int
    ) -> tuple[Mapping[TopicPartition, int], int]:
        return produced.end_offsets, produced.count

    return workload


def _wait_joined(
    admin: AdminClient, group: str, topic: str, alive: Callable[[], bool], members: int
) -> None:
    # Paced events must not wait for the group join, or their latency would include it.
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and alive():
        try:
            description = admin.describe_consumer_groups([group], request_timeout=5.0)[group]
            found = description.result(timeout=10.0)
            assigned = {
                (tp.topic, tp.partition)
                for member in found.members
                for tp in (member.assignment.topic_partitions if member.assignment else [])
            }
            # Every member in, every partition owned, each member with some: a rebalance
            # still to come (a second worker joining) would otherwise land mid-run.
            owners = [m for m in found.members if m.assignment and m.assignment.topic_partitions]
            if (
                found.state == ConsumerGroupState.STABLE
                and len(assigned) == PARTITIONS
                and len(owners) == members
            ):
                return
        except Exception:  # the group does not exist yet: not joined
            pass
        time.sleep(0.1)
    raise RuntimeError(f"group {group} did not join topic {topic} within 60 s")


def paced(admin: AdminClient, bootstrap: str, topic: str, count: int, rate: float) -> Workload:
    """Produce ``count`` events at ``rate`` per second once the process owns every
    partition: a load it can keep up with, so latency is the pipeline's, not the queue's."""

    def workload(
        group: str, alive: Callable[[], bool], members: int
    ) -> tuple[Mapping[TopicPartition, int], int]:
        _wait_joined(admin, group, topic, alive, members)
        schema = load_schema(drills.SCHEMA)
        # linger.ms 5: the record timestamp (CreateTime, set at produce()) stays close to the
        # moment it reaches the broker, so the producer adds little to the latency measured.
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        end_offsets: dict[TopicPartition, int] = {}

        def delivered(error: Any, message: Any) -> None:
            if error is None:
                key = (message.topic(), message.partition())
                end_offsets[key] = max(end_offsets.get(key, 0), message.offset() + 1)

        chunk = max(1, int(rate / 100))  # 100 chunks a second: smooth enough
        started = time.monotonic()
        base_ms = int(time.time() * 1000)
        for index, record in enumerate(samples.sample_events(count, 2, base_ms)):
            if index % chunk == 0:
                # Sleep until this chunk is due: a steady offered rate, not bursts.
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                producer.poll(0)
            producer.produce(topic, value=samples.encode(schema, record), on_delivery=delivered)
        if producer.flush(60) or sum(end_offsets.values()) != count:
            raise RuntimeError("paced producing failed")
        return end_offsets, count

    return workload


# --------------------------------------------------------------------------- histogram


def _histogram_quantiles(
    metrics: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> tuple[float | None, float | None]:
    """p50 and p99 from a Prometheus histogram's cumulative buckets, interpolated linearly
    inside the bucket (what ``histogram_quantile`` does): an estimate, not exact."""
    buckets: list[tuple[float, float]] = []
    for (sample, pairs), value in metrics.items():
        if sample == name + "_bucket":
            buckets.append((float(dict(pairs)["le"]), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None, None
    total = buckets[-1][1]

    def quantile(q: float) -> float:
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank:
                if bound == float("inf"):
                    return lower_bound  # above the last finite bucket: its bound, at least
                share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
                return lower_bound + (bound - lower_bound) * share
            lower_bound, lower_count = bound, count
        return lower_bound

    return quantile(0.50), quantile(0.99)


# --------------------------------------------------------------------------- one run


def connector_run_config(
    bootstrap: str, group: str, topic: str, url: str, workers: int = 1
) -> dict[str, Any]:
    """The default config: only what must be set, the metrics port (free, to read the
    latency histogram) and the number of workers. Not drills.connector_config: that one
    tunes batching and retries."""
    config: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group, "topics": [topic]},
        "http": {"url": url},
        "metrics": {"port": 0},
    }
    if workers != 1:
        config["workers"] = workers
    return config


def run_connector(
    work: Path,
    admin: AdminClient,
    bootstrap: str,
    topic: str,
    workload: Workload,
    url: str,
    repeat: int,
    timeout_s: float,
    workers: int = 1,
) -> RunResult:
    group = f"bench-connector-{uuid.uuid4().hex[:8]}"
    config = connector_run_config(bootstrap, group, topic, url, workers)
    config_path = drills.write_config(work / f"connector-{repeat}.yaml", config)
    process = drills.ConnectorProcess(config_path, work / f"connector-{repeat}.log")
    try:
        end_offsets, events = workload(group, lambda: process.alive, workers)
        wait_committed(admin, bootstrap, group, end_offsets, lambda: process.alive, timeout_s)
        wall_s = time.monotonic() - process.started_at
        cpu_s = process_tree_cpu_seconds(process.pid)
        rss = peak_rss_per_process_mib(process.pid)
        p50, p99 = _histogram_quantiles(process.metrics(), "event_sink_end_to_end_latency_seconds")
        code = process.terminate()
        if code != 0:
            raise RuntimeError(f"the connector exited {code}\n{process.describe()}")
    except BaseException:
        print(process.describe(), file=sys.stderr)
        raise
    finally:
        process.close()
    kind = "connector" if workers == 1 else f"connector-{workers}w"
    return _result(kind, repeat, events, wall_s, p50, p99, rss, cpu_s)


def run_baseline(
    work: Path,
    admin: AdminClient,
    bootstrap: str,
    topic: str,
    workload: Workload,
    url: str,
    repeat: int,
    timeout_s: float,
) -> RunResult:
    group = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    report = work / f"baseline-{repeat}.json"
    log = work / f"baseline-{repeat}.log"
    argv = [sys.executable, str(BENCH_DIR / "baseline_sink.py")]
    argv += [bootstrap, topic, group, url, drills.TOKEN, "--report", str(report)]
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        end_offsets, events = workload(group, lambda: process.poll() is None, 1)
        wait_committed(
            admin, bootstrap, group, end_offsets, lambda: process.poll() is None, timeout_s
        )
        wall_s = time.monotonic() - started
        cpu_s = cpu_seconds(process.pid)
        rss = _peak_rss_mib(process.pid)
        process.terminate()
        code = process.wait(timeout=60)
        if code != 0:
            raise RuntimeError(f"the baseline exited {code}\n{log.read_text()[-3000:]}")
    except BaseException:
        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    summary = json.loads(report.read_text())
    p50, p99 = summary["latency_p50_s"], summary["latency_p99_s"]
    return _result("baseline", repeat, events, wall_s, p50, p99, rss, cpu_s)


def _result(
    kind: str,
    repeat: int,
    events: int,
    wall_s: float,
    p50: float | None,
    p99: float | None,
    rss: float,
    cpu_s: float,
) -> RunResult:
    return RunResult(
        kind=kind,
        repeat=repeat,
        events=events,
        wall_s=round(wall_s, 3),
        events_per_s=round(events / wall_s, 1),
        latency_p50_s=None if p50 is None else round(p50, 4),
        latency_p99_s=None if p99 is None else round(p99, 4),
        peak_rss_mib=round(rss, 1),
        cpu_s=round(cpu_s, 2),
        cpu_s_per_100k=round(cpu_s / events * 100_000, 2),
    )


# --------------------------------------------------------------------------- report

METRICS = (
    ("events_per_s", "events/s", "{:,.0f}"),
    ("latency_p50_s", "e2e latency p50 (s)", "{:.3f}"),
    ("latency_p99_s", "e2e latency p99 (s)", "{:.3f}"),
    ("peak_rss_mib", "peak RSS (MiB)", "{:.1f}"),
    ("cpu_s_per_100k", "CPU s / 100k events", "{:.2f}"),
)


def medians(results: list[RunResult], kind: str, workload: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, _label, _fmt in METRICS:
        values = [getattr(r, key) for r in results if r.kind == kind and r.workload == workload]
        present = [v for v in values if v is not None]
        out[key] = statistics.median(present) if present else None
    return out


KINDS = ("baseline", "connector", "connector-2w")
LABELS = {"baseline": "baseline", "connector": "1 worker", "connector-2w": "2 workers"}


def table(columns: Mapping[str, Mapping[str, float | None]]) -> str:
    """Medians per kind, then each connector kind over the baseline."""

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else fmt.format(value)

    kinds = [kind for kind in KINDS if kind in columns]
    over = [kind for kind in kinds if kind != "baseline" and "baseline" in columns]
    header = f"{'median':<22}" + "".join(f"{LABELS[k]:>12}" for k in kinds)
    header += "".join(f"{LABELS[k] + ' / b':>16}" for k in over)
    rows = [header]
    for key, label, fmt in METRICS:
        row = f"{label:<22}" + "".join(f"{cell(columns[k][key], fmt):>12}" for k in kinds)
        for kind in over:
            c, b = columns[kind][key], columns["baseline"][key]
            row += f"{'-' if c is None or not b else f'{c / b:.2f}':>16}"
        rows.append(row)
    return "\n".join(rows)


def ratios(
    connector: Mapping[str, float | None], baseline: Mapping[str, float | None]
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, _label, _fmt in METRICS:
        c, b = connector[key], baseline[key]
        out[key] = None if c is None or not b else round(c / b, 3)
    return out


# --------------------------------------------------------------------------- main


def _rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip() and float(part) > 0]


def _workers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 events, 1 repeat")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per run")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=[1, 2],
        help="connector runs, by workers: N (comma-separated; default 1,2)",
    )
    parser.add_argument(
        "--paced-rates",
        type=_rates,
        default=[2000.0, 10000.0],
        help="events/s offered in the paced runs (comma-separated; empty skips them)",
    )
    parser.add_argument("--paced-events", type=int, default=20_000)
    parser.add_argument(
        "--skip-baseline",
        action="store_true",
        help="connector runs only (e.g. the 1,000,000-event memory run: the baseline "
        "would take minutes)",
    )
    parser.add_argument(
        "--label", default="", help="results go to results/<date>-<label>.json (quick: 'quick')"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeats, args.paced_events = 20_000, 1, 5_000

    started = datetime.now(UTC)
    results: list[RunResult] = []
    with (
        tempfile.TemporaryDirectory(prefix="event-sink-bench-") as tmp,
        external_or_local() as kafka,
    ):
        work = Path(tmp)
        bootstrap = kafka.bootstrap_servers
        admin = drills.admin_client(bootstrap)
        sandbox = drills.SandboxProcess(work / "sandbox.log")
        runners: list[Callable[..., RunResult]] = [] if args.skip_baseline else [run_baseline]
        runners += [functools.partial(run_connector, workers=n) for n in args.workers]
        try:
            sandbox.set_faults(latency_ms=args.latency_ms)
            for repeat in range(args.repeats):
                topic = f"bench-{repeat}-{uuid.uuid4().hex[:8]}"
                kafka.create_topic(topic, PARTITIONS)
                t0 = time.monotonic()
                produced = drills.produce_events(bootstrap, topic, args.events, seed=1)
                print(
                    f"repeat {repeat + 1}/{args.repeats}: produced {produced.count} events "
                    f"in {time.monotonic() - t0:.1f} s",
                    flush=True,
                )
                # A different order each repeat: in a backlog run a record's latency
                # includes its wait on the topic, so a fixed order would favour the first.
                order = runners[repeat % len(runners) :] + runners[: repeat % len(runners)]
                for runner in order:
                    result = runner(
                        work,
                        admin,
                        bootstrap,
                        topic,
                        backlog(produced),
                        sandbox.url,
                        repeat,
                        args.timeout_s,
                    )
                    results.append(result)
                    print(f"  {json.dumps(asdict(result))}", flush=True)
                for rate in args.paced_rates:
                    for runner in order:
                        # A fresh, empty topic: the process joins, then events arrive.
                        paced_topic = f"bench-paced-{repeat}-{uuid.uuid4().hex[:8]}"
                        kafka.create_topic(paced_topic, PARTITIONS)
                        offered = paced(admin, bootstrap, paced_topic, args.paced_events, rate)
                        result = runner(
                            work,
                            admin,
                            bootstrap,
                            paced_topic,
                            offered,
                            sandbox.url,
                            repeat,
                            args.timeout_s,
                        )
                        result.workload = f"paced-{rate:.0f}"
                        results.append(result)
                        print(f"  {json.dumps(asdict(result))}", flush=True)
        finally:
            sandbox.stop()

    summary: dict[str, Any] = {}
    workloads = ["backlog", *(f"paced-{rate:.0f}" for rate in args.paced_rates)]
    for workload in workloads:
        columns = {kind: medians(results, kind, workload) for kind in KINDS}
        columns = {k: v for k, v in columns.items() if any(x is not None for x in v.values())}
        if not columns:
            continue
        summary[workload] = {
            "medians": columns,
            "ratio_over_baseline": {
                kind: ratios(values, columns["baseline"])
                for kind, values in columns.items()
                if kind != "baseline" and "baseline" in columns
            },
        }
        print()
        if workload == "backlog":
            print(f"backlog: {args.events:,} events on the topic before each process starts")
        else:
            print(
                f"{workload}: {args.paced_events:,} events offered at "
                f"{workload.split('-')[1]}/s after the group joined (events/s here is only "
                "the offered rate over the run)"
            )
        print(
            f"{args.repeats} repeat(s), sandbox latency {args.latency_ms} ms, "
            f"{os.cpu_count()} cores"
        )
        print(table(columns))
    document: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "events": args.events,
            "repeats": args.repeats,
            "latency_ms": args.latency_ms,
            "partitions": PARTITIONS,
            "quick": args.quick,
            "paced_events": args.paced_events,
            "paced_rates": args.paced_rates,
            "workers": args.workers,
            "skip_baseline": args.skip_baseline,
        },
        "medians": summary,
        "runs": [asdict(r) for r in results],
        "notes": [
            "backlog run: end-to-end latency includes the time records waited on the topic",
            "connector latency: estimated from histogram buckets; baseline: exact",
        ],
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    label = args.label or ("quick" if args.quick else "")
    suffix = f"-{label}" if label else ""
    path = RESULTS_DIR / f"{started.strftime('%Y-%m-%d')}{suffix}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
