"""Benchmark of tracker issue 7: the connector (default config) against a naive baseline.

One broker (a fresh ``LocalKafka``, or ``$KAFKA_BOOTSTRAP_SERVERS``), one sandbox process
answering after ``--latency-ms``. Each repeat produces ``--events`` sample events (same seed,
so the same contents) to a fresh 6-partition topic, then runs, each with a fresh consumer
group and until the broker reports the group's committed offsets at the end offsets:

(a) the connector, ``python -m connector run``, default config but for bootstrap, group,
    topic, url and ``metrics.port: 0`` (and ``workers: N`` for ``--workers N``);
(b) ``benchmarks/baseline_sink.py``, the naive synchronous sink;
(c) with ``--compare-rev REV``, the connector of that git revision ("before"), extracted
    once with ``git archive`` and run with the same config as (a) with one worker.

The order alternates between repeats: in a backlog run a record's end-to-end latency
includes how long it waited on the topic, so whichever runs second would otherwise always
look slower. Figures per run: events/s (process start → all committed), p50/p99
end-to-end latency (connector: estimated from its histogram buckets, linear inside a
bucket; baseline: exact, from every record), peak RSS (VmHWM), CPU seconds (utime + stime
from ``/proc/<pid>/stat``, all threads and processes, read just before stopping) per 100k
events, and the steady-state CPU per event (between the first and the last accepted
request, see ``measure.steady_cpu_us_per_event``). Prints medians and the ratios, and
writes everything to ``benchmarks/results/<UTC date>.json``.

    .venv/bin/python benchmarks/run.py --events 200000 --latency-ms 50 --repeats 3
    .venv/bin/python benchmarks/run.py --quick        # 20,000 events, 1 repeat
    .venv/bin/python benchmarks/run.py --quick --compare-rev 4fdd03d --workers 1
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import drills  # noqa: E402  (tests/drills.py, after the sys.path lines above)
from confluent_kafka.admin import AdminClient  # noqa: E402
from measure import (  # noqa: E402  (benchmarks/measure.py)
    CpuSample,
    CpuSampler,
    cpu_seconds,
    histogram_quantiles,
    peak_rss_mib,
    peak_rss_per_process_mib,
    process_tree_cpu_seconds,
    steady_cpu_us_per_event,
)
from report import RunResult, results_document, summarise, table  # noqa: E402
from revision import before_env, extract_revision, resolve_revision  # noqa: E402
from workloads import PARTITIONS, Workload, backlog, paced, wait_committed  # noqa: E402

from devtools.kafka import external_or_local  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True)
class Bench:
    """What every run shares: the work directory, the broker, the sandbox, the timeout."""

    work: Path
    admin: AdminClient
    bootstrap: str
    sandbox: drills.SandboxProcess  # its url, and its request log for the steady CPU
    timeout_s: float


# --------------------------------------------------------------------------- "before"


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


def _drive(
    bench: Bench,
    pid: int,
    alive: Callable[[], bool],
    started: float,
    group: str,
    workload: Workload,
    members: int,
) -> tuple[int, float, list[CpuSample]]:
    """Feed the process and wait until all is committed, sampling its CPU meanwhile;
    returns the events, the wall time since ``started`` (monotonic) and the samples."""
    with CpuSampler(pid) as sampler:
        end_offsets, events = workload(group, alive, members)
        wait_committed(bench.admin, bench.bootstrap, group, end_offsets, alive, bench.timeout_s)
        wall_s = time.monotonic() - started
    return events, wall_s, sampler.samples


def run_connector(
    bench: Bench,
    topic: str,
    workload: Workload,
    repeat: int,
    *,
    workers: int = 1,
    tree: Path | None = None,
    python_path: bool = False,
) -> RunResult:
    """One connector run; ``tree`` is an extracted old revision to run instead (kind
    "connector-before"), with that directory as cwd and first on PYTHONPATH;
    ``python_path`` runs it with ``source.hot_path: python`` (kind "connector-python")."""
    env: dict[str, str] = {}
    if tree is not None:
        kind = "connector-before"
        env = before_env(tree)
    else:
        kind = "connector" if workers == 1 else f"connector-{workers}w"
    if python_path:
        kind += "-python"
        env["EVENT_SINK__SOURCE__HOT_PATH"] = "python"
    group = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    config = connector_run_config(bench.bootstrap, group, topic, bench.sandbox.url, workers)
    config_path = drills.write_config(bench.work / f"{kind}-{repeat}.yaml", config)
    since = time.time()
    process = drills.ConnectorProcess(
        config_path,
        bench.work / f"{kind}-{repeat}.log",
        env=env or None,
        cwd=tree,
    )
    try:
        alive = lambda: process.alive  # noqa: E731
        events, wall_s, samples = _drive(
            bench, process.pid, alive, process.started_at, group, workload, workers
        )
        cpu_s = process_tree_cpu_seconds(process.pid)
        rss = peak_rss_per_process_mib(process.pid)
        p50, p99 = histogram_quantiles(process.metrics(), "event_sink_end_to_end_latency_seconds")
        steady = steady_cpu_us_per_event(samples, bench.sandbox.requests(since=since))
        code = process.terminate()
        if code != 0:
            raise RuntimeError(f"the connector exited {code}\n{process.describe()}")
    except BaseException:
        print(process.describe(), file=sys.stderr)
        raise
    finally:
        process.close()
    return _result(kind, repeat, events, wall_s, p50, p99, rss, cpu_s, steady)


def run_baseline(bench: Bench, topic: str, workload: Workload, repeat: int) -> RunResult:
    group = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    report = bench.work / f"baseline-{repeat}.json"
    log = bench.work / f"baseline-{repeat}.log"
    argv = [sys.executable, str(BENCH_DIR / "baseline_sink.py"), bench.bootstrap, topic, group]
    argv += [bench.sandbox.url, drills.TOKEN, "--report", str(report)]
    since, started = time.time(), time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        alive = lambda: process.poll() is None  # noqa: E731
        events, wall_s, samples = _drive(bench, process.pid, alive, started, group, workload, 1)
        cpu_s = cpu_seconds(process.pid)
        rss = peak_rss_mib(process.pid)
        steady = steady_cpu_us_per_event(samples, bench.sandbox.requests(since=since))
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
    return _result("baseline", repeat, events, wall_s, p50, p99, rss, cpu_s, steady)


def _result(
    kind: str,
    repeat: int,
    events: int,
    wall_s: float,
    p50: float | None,
    p99: float | None,
    rss: float,
    cpu_s: float,
    steady_us: float | None,
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
        cpu_us_per_event_steady=None if steady_us is None else round(steady_us, 2),
    )


# --------------------------------------------------------------------------- main


def _rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip() and float(part) > 0]


def _workers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
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
        "--python-path",
        action="store_true",
        help="also run the connector on the Python path (source.hot_path: python)",
    )
    parser.add_argument(
        "--skip-baseline",
        action="store_true",
        help="connector runs only (e.g. the 1,000,000-event memory run: the baseline "
        "would take minutes)",
    )
    parser.add_argument(
        "--compare-rev",
        metavar="REV",
        help="also run the connector of this git revision ('before', workers: 1), "
        "extracted with git archive",
    )
    parser.add_argument(
        "--label", default="", help="results go to results/<date>-<label>.json (quick: 'quick')"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeats, args.paced_events = 20_000, 1, 5_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    compare_sha = None if args.compare_rev is None else resolve_revision(args.compare_rev)
    started = datetime.now(UTC)
    results: list[RunResult] = []

    def record(result: RunResult) -> None:
        results.append(result)
        print(f"  {json.dumps(asdict(result))}", flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="event-sink-bench-") as tmp,
        external_or_local() as kafka,
    ):
        work = Path(tmp)
        runners: list[Callable[..., RunResult]] = [] if args.skip_baseline else [run_baseline]
        runners += [functools.partial(run_connector, workers=n) for n in args.workers]
        if args.python_path:
            runners += [
                functools.partial(run_connector, workers=n, python_path=True) for n in args.workers
            ]
        if args.compare_rev is not None:
            package = extract_revision(args.compare_rev, work / "before")
            print(f"before: {args.compare_rev} = {compare_sha}, connector from {package}")
            runners.append(functools.partial(run_connector, tree=work / "before"))
        admin = drills.admin_client(kafka.bootstrap_servers)
        sandbox = drills.SandboxProcess(work / "sandbox.log")
        bench = Bench(work, admin, kafka.bootstrap_servers, sandbox, args.timeout_s)
        try:
            sandbox.set_faults(latency_ms=args.latency_ms)
            for repeat in range(args.repeats):
                topic = f"bench-{repeat}-{uuid.uuid4().hex[:8]}"
                kafka.create_topic(topic, PARTITIONS)
                t0 = time.monotonic()
                produced = drills.produce_events(bench.bootstrap, topic, args.events, seed=1)
                print(
                    f"repeat {repeat + 1}/{args.repeats}: produced {produced.count} events "
                    f"in {time.monotonic() - t0:.1f} s",
                    flush=True,
                )
                # A different order each repeat: in a backlog run a record's latency
                # includes its wait on the topic, so a fixed order would favour the first.
                order = runners[repeat % len(runners) :] + runners[: repeat % len(runners)]
                for runner in order:
                    record(runner(bench, topic, backlog(produced), repeat))
                for rate in args.paced_rates:
                    for runner in order:
                        # A fresh, empty topic: the process joins, then events arrive.
                        paced_topic = f"bench-paced-{repeat}-{uuid.uuid4().hex[:8]}"
                        kafka.create_topic(paced_topic, PARTITIONS)
                        offered = paced(
                            admin, bench.bootstrap, paced_topic, args.paced_events, rate
                        )
                        result = runner(bench, paced_topic, offered, repeat)
                        result.workload = f"paced-{rate:.0f}"
                        record(result)
        finally:
            sandbox.stop()

    summary: dict[str, Any] = {}
    for workload in ["backlog", *(f"paced-{rate:.0f}" for rate in args.paced_rates)]:
        found = summarise(results, workload)
        if found is None:
            continue
        summary[workload] = found
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
        print(table(found["medians"]))
    settings = vars(args) | {"compare_rev_sha": compare_sha, "partitions": PARTITIONS}
    document = results_document(started, settings, summary, results)
    RESULTS_DIR.mkdir(exist_ok=True)
    label = args.label or ("quick" if args.quick else "")
    suffix = f"-{label}" if label else ""
    path = RESULTS_DIR / f"{started.strftime('%Y-%m-%d')}{suffix}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
