"""The results of the benchmark: one :class:`RunResult` per run, medians per kind and
workload, and the printed table with its ratio columns (over the baseline, and the
one-worker connector over the "before" revision)."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass
class RunResult:
    # "baseline", "connector" (workers: 1), "connector-2w" (workers: 2),
    # "connector-before" (--compare-rev, workers: 1); "-python" (--python-path) appended
    # for a run on the Python path
    kind: str
    repeat: int
    events: int
    wall_s: float
    events_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    peak_rss_mib: float
    cpu_s: float
    cpu_s_per_100k: float
    cpu_us_per_event_steady: float | None = None  # first → last accepted request
    workload: str = "backlog"  # or "paced" (events/s there is only the offered rate)


# --------------------------------------------------------------------------- report

METRICS = (
    ("events_per_s", "events/s", "{:,.0f}"),
    ("latency_p50_s", "e2e latency p50 (s)", "{:.3f}"),
    ("latency_p99_s", "e2e latency p99 (s)", "{:.3f}"),
    ("peak_rss_mib", "peak RSS (MiB)", "{:.1f}"),
    ("cpu_s_per_100k", "CPU s / 100k events", "{:.2f}"),
    ("cpu_us_per_event_steady", "CPU µs / event (steady)", "{:.1f}"),
)


def medians(results: Sequence[RunResult], kind: str, workload: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, _label, _fmt in METRICS:
        values = [getattr(r, key) for r in results if r.kind == kind and r.workload == workload]
        present = [v for v in values if v is not None]
        out[key] = statistics.median(present) if present else None
    return out


KINDS = (
    "baseline",
    "connector-before",
    "connector",
    "connector-python",
    "connector-2w",
    "connector-2w-python",
)
LABELS = {
    "baseline": "baseline",
    "connector-before": "before",
    "connector": "1 worker",
    "connector-python": "1w python",
    "connector-2w": "2 workers",
    "connector-2w-python": "2w python",
}


def _ratio_columns(kinds: list[str]) -> list[tuple[str, str, str]]:
    """(header, numerator, denominator): every connector kind over the baseline, and the
    one-worker connector over the "before" one."""
    out = [(f"{LABELS[k]} / b", k, "baseline") for k in kinds if k != "baseline"]
    out = out if "baseline" in kinds else []
    if "connector" in kinds and "connector-before" in kinds:
        out.append(("1 worker / before", "connector", "connector-before"))
    if "connector" in kinds and "connector-python" in kinds:
        out.append(("native / python", "connector", "connector-python"))
    return out


def table(columns: Mapping[str, Mapping[str, float | None]]) -> str:
    """Medians per kind, then the ratio columns of :func:`_ratio_columns`."""

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else fmt.format(value)

    kinds = [kind for kind in KINDS if kind in columns]
    over = _ratio_columns(kinds)
    widths = [len(header) + 3 for header, _c, _b in over]
    header = f"{'median':<25}" + "".join(f"{LABELS[k]:>11}" for k in kinds)
    header += "".join(f"{h:>{w}}" for (h, _c, _b), w in zip(over, widths, strict=True))
    rows = [header]
    for key, label, fmt in METRICS:
        row = f"{label:<25}" + "".join(f"{cell(columns[k][key], fmt):>11}" for k in kinds)
        for (_header, kind, base), width in zip(over, widths, strict=True):
            c, b = columns[kind][key], columns[base][key]
            row += f"{'-' if c is None or not b else f'{c / b:.2f}':>{width}}"
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


def summarise(results: Sequence[RunResult], workload: str) -> dict[str, Any] | None:
    """Medians per kind of one workload, their ratios over the baseline and, with a
    "before" run, the connector kinds' ratios over it; None if nothing ran."""
    columns = {kind: medians(results, kind, workload) for kind in KINDS}
    columns = {k: v for k, v in columns.items() if any(x is not None for x in v.values())}
    if not columns:
        return None
    out: dict[str, Any] = {"medians": columns}
    for name, base in (
        ("ratio_over_baseline", "baseline"),
        ("ratio_over_before", "connector-before"),
    ):
        if base in columns:
            out[name] = {
                kind: ratios(values, columns[base])
                for kind, values in columns.items()
                if kind != base and kind.startswith("connector")
            }
    return out


# The run's flags that the results file records (with the partitions and the "before" sha).
SETTINGS = (
    "events", "repeats", "latency_ms", "partitions", "quick", "paced_events", "paced_rates",
    "workers", "skip_baseline", "compare_rev", "compare_rev_sha", "python_path",
)  # fmt: skip


def results_document(
    started: datetime,
    arguments: Mapping[str, Any],
    summary: Mapping[str, Any],
    results: Sequence[RunResult],
) -> dict[str, Any]:
    """What results/<date>.json holds: the machine, the settings, the medians, every run."""
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {key: arguments[key] for key in SETTINGS},
        "medians": dict(summary),
        "runs": [asdict(r) for r in results],
        "notes": [
            "backlog run: end-to-end latency includes the time records waited on the topic",
            "connector latency: estimated from histogram buckets; baseline: exact",
            "cpu_us_per_event_steady: process tree CPU between its first and last accepted "
            "request, over the events accepted after the first",
        ],
    }
