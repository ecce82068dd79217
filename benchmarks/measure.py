"""What the benchmark reads about a process: /proc CPU and memory, CPU sampled over time,
steady-state CPU per delivered event, and quantiles of a Prometheus histogram.

No Kafka, no sandbox: plain functions of /proc and of the numbers handed in, so
:func:`steady_cpu_us_per_event` can be checked by hand on a tiny made-up input.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

CLK_TCK = os.sysconf("SC_CLK_TCK")

#: ``(time.time(), CPU seconds of the process tree)``, oldest first.
CpuSample = tuple[float, float]

# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread, librdkafka's included)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; everything after its ")" is split safely.
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of one process (librdkafka's ``rdk:broker1``, the
    consumer's ``kafka-client_0``, ...): where the CPU goes outside Python."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        name = text.split("(", 1)[1].rsplit(")", 1)[0]
        fields = text.rsplit(")", 1)[1].split()
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def peak_rss_mib(pid: int) -> float:
    """VmHWM of one process, in MiB."""
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
            peaks.append(peak_rss_mib(member))
        except OSError:
            continue
    return max(peaks)


# --------------------------------------------------------------------------- sampling


class CpuSampler:
    """A background thread recording ``(time.time(), process_tree_cpu_seconds(pid))``
    every ``interval_s``, from :meth:`start` (one sample at once) to :meth:`stop` (one
    more sample then). Stop it before stopping the process: a gone process reads 0."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[CpuSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"cpu-{pid}", daemon=True)

    def _sample(self) -> None:
        before = time.time()
        cpu = process_tree_cpu_seconds(self.pid)
        # The reading took a moment (a few /proc files): stamp it with the middle of it.
        self.samples.append(((before + time.time()) / 2, cpu))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> Self:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> list[CpuSample]:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._sample()
        return self.samples

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()


def cpu_at(samples: Sequence[CpuSample], t: float) -> float | None:
    """CPU seconds at ``t``, linear between the samples around it; None outside them."""
    if not samples or t < samples[0][0] or t > samples[-1][0]:
        return None
    index = bisect.bisect_left([when for when, _cpu in samples], t)
    t1, cpu1 = samples[index]
    if t1 == t or index == 0:
        return cpu1
    t0, cpu0 = samples[index - 1]
    return cpu0 + (cpu1 - cpu0) * (t - t0) / (t1 - t0)


def accepted(request: Mapping[str, Any]) -> bool:
    """A request the sandbox took: 200 with body code ``"200"``."""
    return request.get("status") == 200 and request.get("code") == "200"


def steady_cpu_us_per_event(
    samples: Sequence[CpuSample], requests: Iterable[Mapping[str, Any]]
) -> float | None:
    """Steady-state CPU per delivered event, in µs.

    The CPU of the process tree between the arrival of its first and its last accepted
    request (``"t"`` of the sandbox's request log, ``time.time()``; CPU interpolated
    between ``samples``), over the events of the accepted requests after the first up to
    and including the last: start-up, group join and the drain after the last request
    are left out. None with fewer than two accepted requests or outside the samples.
    """
    taken = sorted((r for r in requests if accepted(r)), key=lambda r: float(r["t"]))
    if len(taken) < 2:
        return None
    first, last = cpu_at(samples, float(taken[0]["t"])), cpu_at(samples, float(taken[-1]["t"]))
    events = sum(int(r["events"]) for r in taken[1:])
    if first is None or last is None or events == 0:
        return None
    return (last - first) / events * 1e6


# --------------------------------------------------------------------------- histogram


def histogram_quantiles(
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
