"""Profile the connector on a backlog with py-spy and print the top of the profile.

Same set-up as ``run.py`` (one broker, one sandbox answering after ``--latency-ms``, a
backlog of ``--events`` sample events on 6 partitions, the connector's default config),
but one connector run only, sampled by ``py-spy record`` (every process of it, so every
worker with ``--workers``) from its metrics port opening until every offset is committed. Prints the
functions with the most samples, by self time and by inclusive time, the share of the
samples that were idle waits excluded (py-spy does not sample idle threads), and the
CPU the sandbox spent, since it shares the machine.

    .venv/bin/python benchmarks/profile.py --events 200000
    .venv/bin/python benchmarks/profile.py --events 200000 --workers 2
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

import drills  # noqa: E402  (tests/drills.py)
import measure  # noqa: E402  (benchmarks/measure.py: /proc CPU)
import run  # noqa: E402  (benchmarks/run.py: sets up sys.path for drills and connector)
import workloads  # noqa: E402  (benchmarks/workloads.py)

from devtools.kafka import external_or_local  # noqa: E402


def _frame_name(frame: str) -> str:
    # py-spy raw frames read "function (path/to/file.py:line)": keep function and file.
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    marker = "site-packages/"
    short = path.split(marker, 1)[1] if marker in path else Path(path).name
    return f"{function} ({short})"


def top_of_profile(raw: Path, rows: int) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        # The first frame names the process and thread: not a function.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    out = [f"{total} samples"]
    for title, counter in (("self", self_counts), ("inclusive", inclusive)):
        out.append(f"\ntop {rows} by {title} time:")
        for name, count in counter.most_common(rows):
            out.append(f"  {100 * count / total:5.1f}%  {name}")
    return "\n".join(out)


_REPORT = ("--stdio", "-g", "none", "--percent-limit", "0.5")


def perf_report(data: Path, rows: int) -> str:
    """perf's share of samples by shared object, and the top symbols by self time."""
    parts = []
    for sort in ("dso", "dso,sym"):
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--sort", sort, *_REPORT],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        lines = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
        parts.append("\n".join(lines[:rows]))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument(
        "--nonblocking", action="store_true", help="do not pause the process to sample it"
    )
    parser.add_argument("--native", action="store_true", help="also sample native frames (C, Rust)")
    parser.add_argument(
        "--raw", type=Path, help="also keep py-spy's collapsed stacks (or perf's data) here"
    )
    parser.add_argument(
        "--perf",
        action="store_true",
        help="sample with perf (every thread, C, Rust and kernel) instead of py-spy",
    )
    args = parser.parse_args(argv)
    py_spy = Path(sys.executable).parent / "py-spy"

    with (
        tempfile.TemporaryDirectory(prefix="event-sink-profile-") as tmp,
        external_or_local() as kafka,
    ):
        work = Path(tmp)
        bootstrap = kafka.bootstrap_servers
        admin = drills.admin_client(bootstrap)
        sandbox = drills.SandboxProcess(work / "sandbox.log")
        try:
            sandbox.set_faults(latency_ms=args.latency_ms)
            topic = f"profile-{uuid.uuid4().hex[:8]}"
            kafka.create_topic(topic, workloads.PARTITIONS)
            produced = drills.produce_events(bootstrap, topic, args.events, seed=1)
            group = f"profile-{uuid.uuid4().hex[:8]}"
            config = run.connector_run_config(bootstrap, group, topic, sandbox.url, args.workers)
            config_path = drills.write_config(work / "connector.yaml", config)
            sandbox_cpu_before = measure.cpu_seconds(sandbox.pid)
            process = drills.ConnectorProcess(config_path, work / "connector.log")
            raw = args.raw or work / "profile.txt"
            # py-spy cannot attach before the interpreter is up: wait for the metrics port.
            process.metrics_port()
            perf_data, pid = args.raw or work / "perf.data", ("-p", str(process.pid))
            spy = subprocess.Popen(
                (
                    ["perf", "record", "-F", str(args.rate), "-g", "-o", str(perf_data), *pid]
                    if args.perf
                    else [str(py_spy), "record", "--pid", str(process.pid), "--subprocesses"]
                    + ["--rate", str(args.rate), "--format", "raw", "--output", str(raw)]
                    + (["--gil"] if args.gil else [])
                    + (["--nonblocking"] if args.nonblocking else [])
                    + (["--native"] if args.native else [])
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                workloads.wait_committed(
                    admin,
                    bootstrap,
                    group,
                    produced.end_offsets,
                    lambda: process.alive,
                    timeout_s=900,
                )
                wall_s = time.monotonic() - process.started_at
                cpu_s = measure.process_tree_cpu_seconds(process.pid)
                threads = measure.thread_cpu_seconds(process.pid)
            finally:
                spy.send_signal(signal.SIGINT)
                _, spy_err = spy.communicate(timeout=60)
                process.terminate()
                process.close()
            sandbox_cpu = measure.cpu_seconds(sandbox.pid) - sandbox_cpu_before
        finally:
            sandbox.stop()
        print(
            f"{args.events:,} events, {args.workers} worker(s): {wall_s:.1f} s "
            f"({args.events / wall_s:,.0f} events/s); connector CPU {cpu_s:.1f} s, "
            f"sandbox CPU {sandbox_cpu:.1f} s"
        )
        print(
            "CPU by thread: "
            + ", ".join(
                f"{name} {seconds:.1f} s"
                for name, seconds in sorted(threads.items(), key=lambda item: -item[1])
                if seconds >= 0.05
            )
        )
        if args.perf:
            print(perf_report(perf_data, args.rows))
            return 0
        if not raw.exists():
            print(f"py-spy wrote no profile:\n{spy_err.decode(errors='replace')}", file=sys.stderr)
            return 1
        print(top_of_profile(raw, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
