"""Harness of the "never lose an event" drills (tracker issue 3).

A drill runs the connector as a separate process (``python -m connector run --config F``)
against a real broker and the sandbox (also a process: ``python -m devtools.sandbox``),
breaks something, and then counts, by uuid, what was produced, delivered (unique uuids the
sandbox accepted), dead-lettered (records in a DLQ topic) and duplicated. Pass means
``lost == 0``, where ``lost = produced - delivered - dead-lettered``.

Typical use (see ``tests/test_drills.py``)::

    with Drill("kill9", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=6)
        produced = d.produce(topic, 20_000)
        d.start_sandbox(latency_ms=50)
        config = d.config(topic, commit_interval_ms=500, kafka={"max_pending_events": 4000})
        first = d.start_connector(config)
        d.wait_delivered(5_000, watch=[first])
        first.kill()
        second = d.start_connector(config)
        d.wait_committed(produced, watch=[second])
        assert second.terminate() == 0, d.context()
        result = d.result(produced)
    assert result.lost == 0, result.row()

Everything a drill starts is stopped when the ``with`` block ends, whatever happened; logs
stay in ``tmp_path/<drill>/`` and their tails go into assertion messages through
:meth:`Drill.context`. :meth:`Drill.result` prints one row per drill (``pytest -s`` shows
it) and appends it as a JSON line to ``$EVENT_SINK_DRILL_REPORT`` when that is set.

The drill's test process only polls: it reads committed offsets from the broker (never
from the connector), stats and uuids from the sandbox over HTTP, the connector's
``/metrics`` and its peak resident memory (``VmHWM`` of ``/proc/<pid>/status``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from connector.adapters.avro import AvroDecoder, DecodeError, load_schema
from connector.core.records import TopicPartition, fallback_uuid
from devtools import demo, samples
from devtools.kafka import create_topic

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "user_behavior_event.avsc"
TOKEN = "drill-token-0123456789"
REPORT_ENV = "EVENT_SINK_DRILL_REPORT"

# Headers the connector's dead-letter writer puts on each DLQ record (connector/adapters/dlq.py):
# where the record came from. Used to attribute DLQ records whose value does not decode.
DLQ_TOPIC_HEADER = "event-sink.original.topic"
DLQ_PARTITION_HEADER = "event-sink.original.partition"
DLQ_OFFSET_HEADER = "event-sink.original.offset"

#: (topic, partition, offset): how a record without a readable uuid is identified.
Position = tuple[str, int, int]

_LOG_TAIL_LINES = 40
_POLL_S = 0.3


# --------------------------------------------------------------------------- config


def connector_config(
    *,
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    url: str,
    commit_interval_ms: int = 500,
    linger_ms: int = 50,
    max_in_flight: int = 8,
    timeout_s: float = 10.0,
    initial_backoff_ms: int = 100,
    max_backoff_ms: int = 2000,
    drain_timeout_s: float = 30.0,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A connector config for a drill, as plain data (what :func:`write_config` writes).

    ``extra`` holds whole sections or keys to add or override, merged key by key into the
    defaults, e.g. ``{"kafka": {"max_pending_events": 4000}, "dlq": {"topic": "t-dlq"}}``.
    """
    config: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "topics": list(topics),
            "commit_interval_ms": commit_interval_ms,
        },
        "source": {"schema_file": str(SCHEMA)},
        "batch": {"linger_ms": linger_ms},
        "http": {
            "url": url,
            "timeout_s": timeout_s,
            "max_in_flight": max_in_flight,
            "retry": {"initial_backoff_ms": initial_backoff_ms, "max_backoff_ms": max_backoff_ms},
        },
        "metrics": {"host": "127.0.0.1", "port": 0},
        "log": {"format": "json", "level": "INFO"},
        "shutdown": {"drain_timeout_s": drain_timeout_s},
    }
    return _merge(config, extra or {})


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` (see :func:`connector_config`) as YAML; returns ``path``."""
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))
    return path


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> Callable[[], None] | None:
    # If the test process dies without cleaning up, the kernel kills what it started.
    # Fires when the starting *thread* exits: drills start processes from the main thread.
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG

    return set_death_signal


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def catches_signal(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` of its status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


class _ChildProcess:
    """A child process whose stderr goes to a file (post-mortem), stopped on exit."""

    name = "process"

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
    ) -> None:
        self.log_path = log_path
        self.started_at = time.monotonic()
        # Truncated: a reused directory must not show the previous run's lines (the
        # sandbox's "listening on" above all). The child keeps its own descriptor.
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(argv),
                cwd=ROOT if cwd is None else cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=_die_with_parent(),
            )
        self.exited_after_s: float | None = None  # signal to exit, set by terminate()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def describe(self, lines: int = _LOG_TAIL_LINES) -> str:
        state = "running" if self.alive else f"exit code {self.returncode}"
        return (
            f"--- {self.name} (pid {self.pid}, {state}), last lines of {self.log_path} ---\n"
            f"{self.log_tail(lines)}"
        )

    def terminate(self, timeout_s: float = 60.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code (SIGKILL after
        ``timeout_s``, then the code is -9). ``exited_after_s`` says how long it took."""
        if self.alive:
            sent = time.monotonic()
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.exited_after_s = time.monotonic() - sent
        return self.process.wait()

    def kill(self) -> int:
        """SIGKILL, at once; returns the exit code (-9)."""
        if self.alive:
            self.process.kill()
        return self.process.wait()

    def close(self) -> None:
        """Make sure the process is gone (SIGKILL if need be)."""
        self.kill()


class SandboxProcess(_ChildProcess):
    """The sandbox as a separate process, controlled over HTTP.

    Started with ``--no-keep-events`` (uuids and counts only), so 200,000 events cost it
    little memory. ``faults`` are set through ``POST /faults`` once it listens.
    ``extra_args`` go on its command line (e.g. ``--tls-cert F --tls-key K``: then ``url``
    is ``https://...``); ``cafile`` is the CA the control calls trust over HTTPS.
    """

    name = "sandbox"

    def __init__(
        self,
        log_path: Path,
        *,
        token: str = TOKEN,
        faults: Mapping[str, Any] | None = None,
        startup_timeout_s: float = 30.0,
        extra_args: Sequence[str] = (),
        cafile: str | None = None,
        keep_events: bool = False,
    ) -> None:
        argv = [sys.executable, "-m", "devtools.sandbox", "--port", "0", "--token", token]
        if not keep_events:
            argv.append("--no-keep-events")
        self._ssl_context = None if cafile is None else ssl.create_default_context(cafile=cafile)
        super().__init__([*argv, *extra_args], log_path, os.environ)
        self.url = self._wait_url(startup_timeout_s)  # the import URL, for the config
        self.base_url = "/".join(self.url.split("/", 3)[:3])  # http(s)://127.0.0.1:PORT
        if faults:
            self.set_faults(**faults)

    def _wait_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log_text().splitlines():
                if "listening on " in line:
                    return line.split("listening on ", 1)[1].strip()
            if not self.alive:
                break
            time.sleep(0.05)
        self.close()
        raise AssertionError(f"the sandbox did not say where it listens\n{self.describe()}")

    def _call(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(
                request, timeout=timeout_s, context=self._ssl_context
            ) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"sandbox {method} {path}: {err.code} {err.read()!r}") from None

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault settings (``POST /faults``; unnamed settings take defaults),
        e.g. ``set_faults(latency_ms=50, failure_rate=1.0)``; returns what is now set."""
        result: dict[str, Any] = self._call("POST", "/faults", settings)
        return result

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = self._call("GET", "/stats")
        return result

    def events(self) -> list[dict[str, Any]]:
        """Every accepted event, in arrival order (started with ``keep_events``)."""
        result: list[dict[str, Any]] = self._call("GET", "/events", timeout_s=120.0)
        return result

    def uuids(self) -> set[str]:
        """Every uuid the sandbox accepted (unique)."""
        return set(self._call("GET", "/uuids", timeout_s=120.0))

    def order(self) -> dict[str, list[str]]:
        """Per key (the first identity's value), accepted uuids in first-arrival order."""
        result: dict[str, list[str]] = self._call("GET", "/order", timeout_s=120.0)
        return result

    def requests(self, since: float | None = None) -> list[dict[str, Any]]:
        """The request log: ``{"t", "status", "code", "events", "retry_after"}`` per POST."""
        query = "" if since is None else f"?since={since!r}"
        result: list[dict[str, Any]] = self._call("GET", "/requests" + query, timeout_s=120.0)
        return result

    def log_problems(self) -> list[str]:
        """Log lines that show an error in the sandbox itself (tracebacks, aiohttp errors)."""
        markers = ("Traceback", "Error handling request", " ERROR ", "Task exception")
        return [line for line in self.log_text().splitlines() if any(m in line for m in markers)]

    def stop(self) -> int:
        return self.terminate(timeout_s=30.0)


class ConnectorProcess(_ChildProcess):
    """``python -m connector run --config F``, with ``EVENT_SINK_TOKEN`` set."""

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        *,
        name: str = "connector",
        token: str = TOKEN,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.config_path = config_path
        full_env = {**os.environ, "EVENT_SINK_TOKEN": token, **(env or {})}
        argv = [sys.executable, "-m", "connector", "run", "--config", str(config_path)]
        super().__init__(argv, log_path, full_env, cwd=cwd)
        self.peak_rss_bytes = 0  # the largest VmHWM seen so far
        self._metrics_port: int | None = None

    # -- memory ------------------------------------------------------------------

    def _status_kib(self, field_name: str) -> int | None:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
        return int(match.group(1)) if match else None  # a zombie has no memory lines

    def sample(self) -> None:
        """Read the process's peak resident memory (VmHWM) while it is alive.

        VmHWM is the kernel's own high-water mark, so one read late in the run sees the
        peak; the wait helpers call this on every poll, and terminate/kill once more first.
        """
        if self.alive:
            hwm = self._status_kib("VmHWM")
            if hwm is not None:
                self.peak_rss_bytes = max(self.peak_rss_bytes, hwm * 1024)

    def rss_bytes(self) -> int | None:
        """Resident memory now (VmRSS), None once the process is gone."""
        kib = self._status_kib("VmRSS")
        return None if kib is None else kib * 1024

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / 2**20

    def terminate(self, timeout_s: float = 60.0, sig: int = signal.SIGTERM) -> int:
        # The first ~30 ms of a process are the interpreter's own start-up, before the
        # connector's first handler: a signal then is Python's default death, not
        # something the connector can answer. A drill that stops a process it has just
        # started (nothing left to do) waits that moment out.
        deadline = time.monotonic() + 30
        while self.alive and not catches_signal(self.pid, sig) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.sample()
        return super().terminate(timeout_s, sig)

    def kill(self) -> int:
        self.sample()
        return super().kill()

    # -- logs and metrics ----------------------------------------------------------

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (others, if any, skipped)."""
        out = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def metrics_port(self, timeout_s: float = 30.0) -> int:
        """The port of ``/metrics``, from the log line "metrics and health on port N"."""
        deadline = time.monotonic() + timeout_s
        while self._metrics_port is None:
            for record in self.log_records():
                if "worker" in record:  # under `workers: N`, the supervisor's port counts
                    continue
                msg = record.get("msg", "")
                match = re.fullmatch(r"metrics and health (?:of \d+ workers )?on port (\d+)", msg)
                if match:
                    self._metrics_port = int(match.group(1))
                    break
            else:
                if not self.alive or time.monotonic() > deadline:
                    raise AssertionError(f"no metrics port in the log\n{self.describe()}")
                time.sleep(0.1)
        return self._metrics_port

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``: (name, sorted label pairs) → value."""
        url = f"http://127.0.0.1:{self.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
        return out

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, pairs), value in self.metrics().items()
            if sample == name and wanted <= set(pairs)
        )

    def consumed_by_partition(self, topic: str) -> dict[int, int]:
        """``event_sink_records_consumed_total`` per partition of ``topic``."""
        out: dict[int, int] = {}
        for (sample, pairs), value in self.metrics().items():
            labels = dict(pairs)
            if sample == "event_sink_records_consumed_total" and labels.get("topic") == topic:
                out[int(labels["partition"])] = int(value)
        return out


# --------------------------------------------------------------------------- broker


def readyz(port: int) -> tuple[int, str]:
    """The status of ``/readyz`` on ``port`` and the reason it gives."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())["reason"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["reason"]


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def committed_offsets(
    bootstrap: str,
    group: str,
    tps: Iterable[TopicPartition],
    timeout_s: float = 10.0,
    *,
    admin: AdminClient | None = None,
) -> dict[TopicPartition, int]:
    """The group's committed offsets as the broker reports them (partitions without one
    left out). Raises KafkaException when the broker does not answer in time. Pass an
    ``admin`` client when polling: a new client per call is slow and noisy."""
    admin = admin if admin is not None else admin_client(bootstrap)
    request = ConsumerGroupTopicPartitions(group, [KafkaTopicPartition(t, p) for t, p in tps])
    future = admin.list_consumer_group_offsets([request], request_timeout=timeout_s)[group]
    found = future.result(timeout=timeout_s + 5)
    return {(tp.topic, tp.partition): tp.offset for tp in found.topic_partitions if tp.offset >= 0}


@dataclass
class Produced:
    """What a drill put on the source topic, and how each record is recognised later."""

    topic: str
    end_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    uuids: set[str] = field(default_factory=set)  # records with a uuid (sample event_id)
    positions: set[Position] = field(default_factory=set)  # records without one (undecodable)

    @property
    def count(self) -> int:
        return len(self.uuids) + len(self.positions)

    def _advance(self, end_offsets: Mapping[TopicPartition, int]) -> None:
        for tp, end in end_offsets.items():
            self.end_offsets[tp] = max(self.end_offsets.get(tp, 0), end)


def produce_events(
    bootstrap: str, topic: str, count: int, *, seed: int = 1, into: Produced | None = None
) -> Produced:
    """Produce ``count`` sample events (``devtools.demo.produce_samples``); their uuids are
    the samples' ``event_id``s, regenerated from the seed (they do not depend on time)."""
    produced = into if into is not None else Produced(topic)
    end = demo.produce_samples(bootstrap, topic, count, seed, load_schema(SCHEMA))
    ids = {record["event_id"] for record in samples.sample_events(count, seed, 0)}
    if len(ids) != count or ids & produced.uuids:
        raise ValueError(f"seed {seed} gives uuids already produced; use another seed")
    produced.uuids |= ids
    produced._advance(end)
    return produced


def _produce(
    bootstrap: str, topic: str, values: Sequence[bytes | None], partition: int | None
) -> list[Position]:
    """Produce ``values``; returns their positions in the order of ``values``."""
    positions: list[Position | None] = [None] * len(values)
    failures: list[str] = []

    def reporter(index: int) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failures.append(error.str())
            else:
                part, offset = message.partition(), message.offset()
                if part is None or offset is None:
                    failures.append("a delivery report without a position")
                else:
                    positions[index] = (topic, part, offset)

        return delivered

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for index, value in enumerate(values):
        kwargs: dict[str, Any] = {"on_delivery": reporter(index)}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, value=value, **kwargs)
    remaining = producer.flush(60)
    done = [position for position in positions if position is not None]
    if remaining or failures or len(done) != len(values):
        raise RuntimeError(f"producing failed: {remaining} undelivered, errors {failures[:3]}")
    return done


def produce_records(
    bootstrap: str,
    produced: Produced,
    records: Sequence[Mapping[str, Any]],
    *,
    partition: int | None = None,
) -> list[Position]:
    """Produce records of the schema (e.g. unmappable ones); each counts by its
    ``event_id``, or by the connector's fallback uuid when that is empty."""
    schema = load_schema(SCHEMA)
    values = [samples.encode(schema, dict(record)) for record in records]
    positions = _produce(bootstrap, produced.topic, values, partition)
    for (topic, part, offset), record in zip(positions, records, strict=True):
        event_id = record.get("event_id") or fallback_uuid(topic, part, offset)
        produced.uuids.add(str(event_id))
    produced._advance({(t, p): o + 1 for t, p, o in positions})
    return positions


def produce_tombstones(bootstrap: str, produced: Produced, count: int) -> list[Position]:
    """Produce ``count`` null values: they carry no event, so they count neither as
    delivered nor as lost; only the end offsets move (they must be committed)."""
    positions = _produce(bootstrap, produced.topic, [None] * count, None)
    produced._advance({(t, p): o + 1 for t, p, o in positions})
    return positions


def produce_raw(
    bootstrap: str, produced: Produced, values: Sequence[bytes], *, partition: int | None = None
) -> list[Position]:
    """Produce raw values (e.g. ``b"not avro"``); each counts by its position, so only a
    DLQ record naming that position accounts for it."""
    positions = _produce(bootstrap, produced.topic, values, partition)
    produced.positions.update(positions)
    produced._advance({(t, p): o + 1 for t, p, o in positions})
    return positions


@dataclass
class DeadLetters:
    """What a DLQ topic holds, attributed to the produced records."""

    records: int = 0
    uuids: set[str] = field(default_factory=set)  # values that decode: their event_id
    positions: set[Position] = field(default_factory=set)  # the others: headers' position
    unattributed: int = 0  # neither decodable nor carrying a position


def read_dead_letters(bootstrap: str, dlq_topic: str, timeout_s: float = 60.0) -> DeadLetters:
    """Read the whole DLQ topic (0 records if it does not exist).

    DLQ records keep the original value bytes: decodable ones count by ``event_id`` (or
    the connector's fallback uuid, from the position headers, when it is empty), the
    others by the position in the ``event-sink.original.*`` headers.
    """
    out = DeadLetters()
    decoder = AvroDecoder(load_schema(SCHEMA))
    for _partition, _offset, value, headers in read_topic(bootstrap, dlq_topic, timeout_s):
        out.records += 1
        found = {name: raw for name, raw in headers}
        position = _header_position(found)
        try:
            event_id = str(decoder.decode(value or b"").get("event_id") or "")
        except DecodeError:
            event_id = ""
            decoded = False
        else:
            decoded = True
        if decoded and not event_id and position is not None:
            event_id = fallback_uuid(*position)
        if event_id:
            out.uuids.add(event_id)
        elif position is not None:
            out.positions.add(position)
        else:
            out.unattributed += 1
    return out


def _header_position(headers: Mapping[str, bytes | None]) -> Position | None:
    try:
        topic = (headers[DLQ_TOPIC_HEADER] or b"").decode()
        partition = int(headers[DLQ_PARTITION_HEADER] or b"")
        offset = int(headers[DLQ_OFFSET_HEADER] or b"")
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return (topic, partition, offset) if topic else None


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 60.0
) -> Iterator[tuple[int, int, bytes | None, list[tuple[str, bytes | None]]]]:
    """Every record of ``topic`` from the beginning to the high watermarks at the call:
    (partition, offset, value, headers). Nothing if the topic does not exist."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"drill-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            return
        todo: dict[int, int] = {}
        for partition in info.partitions:
            low, high = consumer.get_watermark_offsets(
                KafkaTopicPartition(topic, partition), timeout=10
            )
            if high > low:
                todo[partition] = high
        if not todo:
            return
        # -2 is OFFSET_BEGINNING: the low watermark, whatever retention removed.
        consumer.assign([KafkaTopicPartition(topic, p, -2) for p in todo])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} did not reach the end: left {todo}")
            for message in consumer.consume(1000, timeout=0.5):
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition is None or offset is None:
                    continue
                raw_headers = message.headers() or []
                pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
                headers = [
                    (name, value.encode() if isinstance(value, str) else value)
                    for name, value in pairs
                ]
                yield partition, offset, message.value(), headers
                if partition in todo and offset + 1 >= todo[partition]:
                    del todo[partition]
    finally:
        consumer.close()


# --------------------------------------------------------------------------- results


@dataclass
class DrillResult:
    """The figures of one drill. ``lost`` is what neither arrived nor was dead-lettered."""

    drill: str
    produced: int
    delivered: int  # produced records whose uuid the sandbox accepted (unique)
    dlq: int  # records in the DLQ topic (0 when there is none)
    duplicates: int  # accepted events whose uuid had been accepted before (sandbox stats)
    lost: int
    seconds: float  # first connector start to the end (all committed, or the drill's end)
    lost_sample: list[str] = field(default_factory=list)  # a few lost uuids/positions
    extra: dict[str, Any] = field(default_factory=dict)  # drill-specific figures

    def row(self) -> str:
        extra = "".join(f", {key} {value}" for key, value in self.extra.items())
        lost = f"{self.lost}" + (f" e.g. {self.lost_sample}" if self.lost else "")
        return (
            f"drill {self.drill}: produced {self.produced}, delivered {self.delivered}, "
            f"dlq {self.dlq}, duplicates {self.duplicates}, lost {lost}, "
            f"{self.seconds:.1f} s{extra}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "drill": self.drill,
            "produced": self.produced,
            "delivered": self.delivered,
            "dlq": self.dlq,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "seconds": round(self.seconds, 2),
            "lost_sample": self.lost_sample,
            **self.extra,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def count_results(
    drill: str,
    produced: Produced,
    sandbox: SandboxProcess,
    *,
    bootstrap: str,
    seconds: float,
    dlq_topic: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> DrillResult:
    """Count by uuid: lost = produced - delivered - dead-lettered."""
    accepted = sandbox.uuids()
    stats = sandbox.stats()
    dead = read_dead_letters(bootstrap, dlq_topic) if dlq_topic else DeadLetters()
    lost_uuids = produced.uuids - accepted - dead.uuids
    lost_positions = produced.positions - dead.positions
    lost = sorted(lost_uuids) + [f"{t}[{p}]@{o}" for t, p, o in sorted(lost_positions)]
    figures = dict(extra or {})
    unexpected = len(accepted - produced.uuids)
    if unexpected:  # uuids nobody produced: a mapping bug, worth seeing in the row
        figures["unexpected_uuids"] = unexpected
    if dead.unattributed:
        figures["dlq_unattributed"] = dead.unattributed
    return DrillResult(
        drill=drill,
        produced=produced.count,
        delivered=len(accepted & produced.uuids),
        dlq=dead.records,
        duplicates=stats["duplicates"],
        lost=len(lost),
        seconds=seconds,
        lost_sample=lost[:5],
        extra=figures,
    )


def report(result: DrillResult) -> None:
    """Print the row and append it to ``$EVENT_SINK_DRILL_REPORT`` (JSON lines) if set."""
    print(result.row())
    target = os.environ.get(REPORT_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(result.to_json()) + "\n")


# --------------------------------------------------------------------------- waiting


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    watch: Sequence[ConnectorProcess] = (),
    poll_s: float = _POLL_S,
    context: Callable[[], str] | None = None,
) -> float:
    """Poll ``condition`` every ``poll_s`` until true; returns the seconds it took.

    On every poll each watched connector's memory is sampled, and one that exited fails
    the wait at once. A deadline passed fails with ``context()`` (log tails) appended.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        for process in watch:
            process.sample()
        if condition():
            return time.monotonic() - started
        for process in watch:
            if not process.alive:
                detail = context() if context else process.describe()
                raise AssertionError(
                    f"{process.name} exited ({process.returncode}) while waiting for {what}\n"
                    f"{detail}"
                )
        if time.monotonic() > deadline:
            detail = context() if context else "\n".join(p.describe() for p in watch)
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{detail}")
        time.sleep(poll_s)


def wait_committed(
    bootstrap: str,
    group: str,
    end_offsets: Mapping[TopicPartition, int],
    *,
    timeout_s: float,
    watch: Sequence[ConnectorProcess] = (),
    context: Callable[[], str] | None = None,
    admin: AdminClient | None = None,
) -> float:
    """Wait until the group's committed offsets, read from the broker, equal
    ``end_offsets`` for every partition. A broker that does not answer (say, while it
    restarts) is just not there yet."""
    last: dict[TopicPartition, int] = {}
    client = admin if admin is not None else admin_client(bootstrap)

    def reached() -> bool:
        nonlocal last
        try:
            last = committed_offsets(bootstrap, group, end_offsets, timeout_s=5.0, admin=client)
        except (KafkaException, TimeoutError):
            return False
        return last == dict(end_offsets)

    def detail() -> str:
        behind = {
            f"{t}[{p}]": f"{last.get((t, p))}/{end}"
            for (t, p), end in sorted(end_offsets.items())
            if last.get((t, p)) != end
        }
        text = f"committed/end where they differ: {behind}"
        return f"{text}\n{context()}" if context else text

    return wait_until(
        reached,
        timeout_s=timeout_s,
        what="committed offsets to reach the end offsets",
        watch=watch,
        poll_s=0.4,
        context=detail,
    )


# --------------------------------------------------------------------------- a drill


class Drill:
    """One drill's processes, files and figures; everything started is stopped on exit.

    Files go to ``tmp_path/<name>/``: ``<connector>.yaml``, ``<connector>.log`` (the
    connector's stderr, JSON lines) and ``sandbox.log``.
    """

    def __init__(self, name: str, tmp_path: Path, bootstrap: str) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.dir = tmp_path / name
        self.dir.mkdir(parents=True, exist_ok=True)
        suffix = uuid.uuid4().hex[:8]
        self.group = f"drill-{name}-{suffix}"
        self._suffix = suffix
        self.sandbox: SandboxProcess | None = None
        self.connectors: list[ConnectorProcess] = []
        self.first_start: float | None = None
        self.finished_at: float | None = None  # set by wait_committed when it succeeds
        self.admin = admin_client(bootstrap)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for process in self.connectors:
            process.close()
        if self.sandbox is not None:
            self.sandbox.stop()

    # -- set-up ------------------------------------------------------------------------

    def topic(self, partitions: int = 6, stem: str = "events") -> str:
        """Create a fresh topic (and wait until every partition has a leader)."""
        name = f"drill-{self.name}-{stem}-{self._suffix}"
        create_topic(self.bootstrap, name, partitions)
        return name

    def produce(self, topic: str, count: int, *, seed: int = 1) -> Produced:
        return produce_events(self.bootstrap, topic, count, seed=seed)

    def start_sandbox(
        self, *, extra_args: Sequence[str] = (), cafile: str | None = None, **faults: Any
    ) -> SandboxProcess:
        """Start the sandbox with these fault settings (``POST /faults`` keys);
        ``extra_args`` and ``cafile`` as :class:`SandboxProcess` takes them (HTTPS)."""
        if self.sandbox is not None:
            raise RuntimeError("the drill's sandbox is already started")
        self.sandbox = SandboxProcess(
            self.dir / "sandbox.log", faults=faults, extra_args=extra_args, cafile=cafile
        )
        return self.sandbox

    def config(
        self,
        topic: str | Sequence[str],
        *,
        name: str = "connector",
        **settings: Any,
    ) -> Path:
        """Write a connector config for this drill's group and sandbox; ``settings`` are
        :func:`connector_config`'s keywords, plus sections (``kafka={...}``, ``dlq={...}``)
        merged into the result."""
        if self.sandbox is None:
            raise RuntimeError("start the sandbox first: the config needs its URL")
        topics = [topic] if isinstance(topic, str) else list(topic)
        keywords = set(connector_config.__code__.co_varnames) - {"extra"}
        plain = {k: v for k, v in settings.items() if k in keywords}
        sections = {k: v for k, v in settings.items() if k not in keywords}
        config = connector_config(
            bootstrap=self.bootstrap,
            group=self.group,
            topics=topics,
            url=self.sandbox.url,
            extra=sections,
            **plain,
        )
        return write_config(self.dir / f"{name}.yaml", config)

    def start_connector(
        self, config: Path, *, env: Mapping[str, str] | None = None
    ) -> ConnectorProcess:
        """Start ``python -m connector run --config config``; the n-th is named ``c<n>``."""
        name = f"c{len(self.connectors) + 1}"
        process = ConnectorProcess(config, self.dir / f"{name}.log", name=name, env=env)
        self.connectors.append(process)
        if self.first_start is None:
            self.first_start = process.started_at
        return process

    # -- waiting -----------------------------------------------------------------------

    def context(self) -> str:
        """Tails of every log of this drill, for assertion messages."""
        parts = [process.describe() for process in self.connectors]
        if self.sandbox is not None:
            parts.append(self.sandbox.describe(15))
            with contextlib.suppress(Exception):
                parts.append(f"sandbox stats: {self.sandbox.stats()}")
        return "\n".join(parts)

    def wait_delivered(
        self, unique: int, *, timeout_s: float = 120.0, watch: Sequence[ConnectorProcess] = ()
    ) -> float:
        """Wait until the sandbox has accepted at least ``unique`` distinct uuids."""
        sandbox = self._sandbox()
        return wait_until(
            lambda: sandbox.stats()["unique_uuids"] >= unique,
            timeout_s=timeout_s,
            what=f"{unique} unique uuids at the sandbox",
            watch=watch,
            context=self.context,
        )

    def wait_committed(
        self,
        produced: Produced,
        *,
        timeout_s: float = 180.0,
        watch: Sequence[ConnectorProcess] = (),
    ) -> float:
        """Wait until the broker says the group committed every partition's end offset."""
        took = wait_committed(
            self.bootstrap,
            self.group,
            produced.end_offsets,
            timeout_s=timeout_s,
            watch=watch,
            context=self.context,
            admin=self.admin,
        )
        self.finished_at = time.monotonic()
        return took

    def committed(self, produced: Produced) -> dict[TopicPartition, int]:
        """The group's committed offsets on the broker, now."""
        return committed_offsets(self.bootstrap, self.group, produced.end_offsets, admin=self.admin)

    # -- figures -----------------------------------------------------------------------

    def result(
        self,
        produced: Produced,
        *,
        dlq_topic: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> DrillResult:
        """Count, print and report this drill's figures (see :func:`count_results`).

        Memory of the connector processes is added as ``peak_rss_mib`` (the largest).
        """
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        seconds = end - (self.first_start if self.first_start is not None else end)
        figures = dict(extra or {})
        peaks = [p.peak_rss_bytes for p in self.connectors if p.peak_rss_bytes]
        if peaks and "peak_rss_mib" not in figures:
            figures["peak_rss_mib"] = round(max(peaks) / 2**20, 1)
        result = count_results(
            self.name,
            produced,
            self._sandbox(),
            bootstrap=self.bootstrap,
            seconds=seconds,
            dlq_topic=dlq_topic,
            extra=figures,
        )
        report(result)
        return result

    def _sandbox(self) -> SandboxProcess:
        if self.sandbox is None:
            raise RuntimeError("the drill has no sandbox")
        return self.sandbox
