"""``workers: N``: N connector processes in one pod, one port for their metrics and health.

Python runs one thread of Python code at a time, so one process uses about one core;
decoding is what costs. With ``workers`` above 1, ``event-sink run`` becomes a supervisor:
it starts N worker processes (``event-sink run`` again, each an ordinary member of the
same consumer group, so Kafka spreads the partitions over them) and serves the
configured metrics port itself:

- ``/metrics`` scrapes every worker (on loopback, a port each picked) and adds the
  series up: counters and histograms are summed; gauges are summed, except the
  per-partition ones, ``paused`` / ``route_halted`` / ``build_info``, the last delivery's
  time and the process start / fd limit / python info, which take the largest value (a partition
  belongs to one worker; during a hand-over two may briefly report it).
  ``event_sink_workers`` says how many workers answered.
- ``/healthz`` and ``/readyz`` are 200 only if every worker says so.

Every guarantee stays per worker: each commits only what it delivered. SIGTERM/SIGINT
is passed to every worker, and the supervisor waits for their drains. If one worker
exits on its own (an error, a kill), the others are stopped the same way and the
supervisor exits with that worker's code, so Kubernetes restarts the pod: nothing is
lost, the uncommitted records are read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from connector.core.checks import Check
from connector.ops.health import HealthServer
from connector.ops.runtime import terminate_with_parent

log = logging.getLogger(__name__)

# Gauges where adding the workers' values up would be wrong: one owner per partition,
# and 0/1 flags. These take the largest value instead.
MAX_GAUGES = frozenset(
    {
        "event_sink_committed_offset",
        "event_sink_consumer_lag",
        "event_sink_pending_records",
        "event_sink_paused",
        "event_sink_route_halted",
        "event_sink_build_info",
        "event_sink_last_delivery_timestamp_seconds",  # the latest of any worker
        "process_start_time_seconds",  # the most recent start
        "process_max_fds",
        "python_info",
    }
)
_SCRAPE_TIMEOUT_S = 5.0
_START_TIMEOUT_S = 120.0
# After the drain timeout and the 10 s a worker gives its final commit, how much longer
# the supervisor waits before it kills a worker that did not stop.
_STOP_MARGIN_S = 15.0
EXIT_WORKER_KILLED = 1


# --------------------------------------------------------------------------- merging


def merge_metrics(texts: Iterable[str]) -> list[Metric]:
    """One set of families from the workers' exposition texts (rules: module doc)."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in merged:
                merged[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            take_max = family.type == "gauge" and family.name in MAX_GAUGES
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in series:
                    series[key] = sample.value
                elif take_max:
                    series[key] = max(series[key], sample.value)
                else:
                    series[key] += sample.value
    for name, family in merged.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(merged.values())


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render_metrics(families: list[Metric], own: CollectorRegistry) -> bytes:
    """The merged families and the supervisor's own metrics, as one exposition text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(own) + generate_latest(registry)


# --------------------------------------------------------------------------- workers


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    port_file: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def worker_argv(
    config: Path | None, index: int, port_file: Path, passthrough: Sequence[str]
) -> list[str]:
    argv = [sys.executable, "-m", "connector", *passthrough, "run"]
    if config is not None:
        argv += ["--config", str(config)]
    return [*argv, "--worker-index", str(index), "--worker-port-file", str(port_file)]


def worker_env(environ: dict[str, str]) -> dict[str, str]:
    """A worker is one ordinary connector: one process, its metrics on a free loopback port."""
    return {
        **environ,
        "EVENT_SINK__WORKERS": "1",
        "EVENT_SINK__METRICS__HOST": "127.0.0.1",
        "EVENT_SINK__METRICS__PORT": "0",
    }


class Supervisor:
    """Starts the workers, serves their merged metrics and health, stops them together."""

    def __init__(
        self,
        count: int,
        *,
        config: Path | None,
        passthrough: Sequence[str],
        host: str,
        port: int,
        stop_timeout_s: float,
        launch: Callable[[list[str], dict[str, str]], subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self._count = count
        self._config = config
        self._passthrough = list(passthrough)
        self._host, self._port = host, port
        self._stop_timeout_s = stop_timeout_s
        self._launch = launch or _launch
        self._workers: list[Worker] = []
        self._registry = CollectorRegistry()
        self._answered = Gauge(
            "event_sink_workers",
            "Worker processes whose metrics this scrape could read (workers: N).",
            registry=self._registry,
        )
        self._session: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> int:
        """Until ``stop`` or a worker's exit; returns the exit code for the supervisor."""
        with tempfile.TemporaryDirectory(prefix="event-sink-workers-") as tmp:
            try:
                for index in range(self._count):
                    port_file = Path(tmp) / f"worker-{index}.port"
                    argv = worker_argv(self._config, index, port_file, self._passthrough)
                    process = self._launch(argv, worker_env(dict(os.environ)))
                    self._workers.append(Worker(index, process, port_file))
                log.info("started %d workers: pids %s", self._count, self._pids())
                timeout = aiohttp.ClientTimeout(total=_SCRAPE_TIMEOUT_S)
                async with aiohttp.ClientSession(timeout=timeout) as self._session:
                    server = HealthServer(
                        self._render,
                        liveness=self._liveness,
                        readiness=self._readiness,
                        host=self._host,
                        port=self._port,
                    )
                    async with server:
                        log.info(
                            "metrics and health of %d workers on port %d", self._count, server.port
                        )
                        code = await self._watch(stop)
            finally:
                codes = await self._stop_all()
        # A worker that did not stop cleanly on request says so in the pod's exit code.
        failed = [c if c > 0 else EXIT_WORKER_KILLED for c in codes if c != 0]
        return code or (failed[0] if failed else 0)

    def _pids(self) -> str:
        return ", ".join(str(worker.process.pid) for worker in self._workers)

    async def _watch(self, stop: asyncio.Event) -> int:
        started = asyncio.get_running_loop().time()
        while not stop.is_set():
            for worker in self._workers:
                code = worker.process.poll()
                if code is not None:
                    log.error(
                        "worker %d (pid %d) exited with %s: stopping the other workers",
                        worker.index,
                        worker.process.pid,
                        _describe_exit(code),
                    )
                    return code if code > 0 else EXIT_WORKER_KILLED
                if worker.port is None:
                    worker.port = _read_port(worker.port_file)
            waiting = [w.index for w in self._workers if w.port is None]
            if waiting and asyncio.get_running_loop().time() - started > _START_TIMEOUT_S:
                log.error("workers %s did not open their metrics port: stopping", waiting)
                return EXIT_WORKER_KILLED
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)
        log.info("stopping %d workers", len(self._workers))
        return 0

    async def _stop_all(self) -> list[int]:
        """SIGTERM every live worker, wait for their drains, kill what outlives them;
        returns the workers' exit codes."""
        for worker in self._workers:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_timeout_s
        for worker in self._workers:
            exited = loop.run_in_executor(None, worker.process.wait)
            try:
                await asyncio.wait_for(asyncio.shield(exited), max(0.0, deadline - loop.time()))
            except TimeoutError:
                log.error("worker %d did not stop in time: killing it", worker.index)
                worker.process.kill()
                await exited
            code = worker.process.returncode
            if code != 0:
                log.warning("worker %d exited with %s", worker.index, _describe_exit(code))
        return [worker.process.returncode for worker in self._workers]

    # -- one port for all -----------------------------------------------------------

    async def _get(self, worker: Worker, path: str) -> tuple[int, str] | None:
        if worker.port is None or self._session is None:
            return None
        try:
            # A worker never redirects; a probe must not follow one anywhere either.
            async with self._session.get(worker.url + path, allow_redirects=False) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _render(self) -> bytes:
        answers = await asyncio.gather(*(self._get(w, "/metrics") for w in self._workers))
        texts = [answer[1] for answer in answers if answer is not None and answer[0] == 200]
        self._answered.set(len(texts))
        missing = len(self._workers) - len(texts)
        if missing:
            log.warning("%d of %d workers did not answer the scrape", missing, len(self._workers))
        return render_metrics(merge_metrics(texts), self._registry)

    async def _checks(self, path: str) -> Check:
        answers = await asyncio.gather(*(self._get(w, path) for w in self._workers))
        return combined_check([w.index for w in self._workers], answers)

    async def _liveness(self) -> Check:
        return await self._checks("/healthz")

    async def _readiness(self) -> Check:
        return await self._checks("/readyz")


def _launch(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # The workers' logs go where the supervisor's go; if the supervisor is killed, the
    # kernel sends each worker SIGTERM (a clean drain), not an orphaned process.
    return subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=terminate_with_parent()
    )


def _read_port(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def write_port_file(path: Path, port: int) -> None:
    """Called by a worker once its metrics port is open (atomically: never half a number)."""
    partial = path.with_suffix(".partial")
    partial.write_text(f"{port}\n")
    partial.replace(path)


def combined_check(indexes: list[int], answers: list[tuple[int, str] | None]) -> Check:
    """The supervisor's answer from its workers' (status, body): ok only if every worker
    is; the failing ones named; the routes any worker reports halted, listed once each
    (a worker can be ready with some of its routes halted)."""
    failing: list[str] = []
    halted: dict[str, None] = {}  # first-seen order
    for index, answer in zip(indexes, answers, strict=True):
        if answer is None:
            failing.append(f"worker {index}: no answer")
            continue
        status, text = answer
        reason, routes = _read_answer(text)
        halted.update(dict.fromkeys(routes))
        if status != 200:
            failing.append(f"worker {index}: {reason}")
    if failing:
        return Check(False, "; ".join(failing), tuple(halted))
    return Check(True, f"{len(indexes)} workers", tuple(halted))


def _read_answer(text: str) -> tuple[str, list[str]]:
    """A worker's health body: its reason and its halted routes."""
    try:
        body = json.loads(text)
        reason = str(body["reason"])
    except (ValueError, KeyError, TypeError):
        return text[:200], []
    routes = body.get("halted_routes", [])
    return reason, [str(r) for r in routes] if isinstance(routes, list) else []


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
