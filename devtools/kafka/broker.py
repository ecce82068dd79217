"""A real single-node Apache Kafka broker for tests and the demo, or an external one.

:class:`LocalKafka` runs one KRaft node (broker and controller in one JVM) on free loopback
ports, in a temporary directory it removes on exit, with Kafka's jars from
:func:`devtools.kafka.jars.kafka_libs`. :func:`external_or_local` picks
``$KAFKA_BOOTSTRAP_SERVERS`` when it is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports NewTopic without marking it public, which mypy --strict
# rejects; cimpl is where the typed class is defined.
from confluent_kafka.cimpl import NewTopic

from connector.ops.runtime import terminate_with_parent
from devtools.kafka.jars import KAFKA_VERSION, kafka_libs, require_tools
from devtools.kafka.jvm import (
    accepts,
    format_storage,
    free_ports,
    java_command,
    log_tail,
    write_config,
)

__all__ = ["ExternalKafka", "KafkaCluster", "LocalKafka", "create_topic", "external_or_local"]


class KafkaCluster(Protocol):
    """What tests and the demo need from a broker, local or external."""

    @property
    def bootstrap_servers(self) -> str: ...

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None: ...


def create_topic(
    bootstrap_servers: str,
    name: str,
    partitions: int = 1,
    replication: int = 1,
    *,
    timeout: float = 30.0,
) -> None:
    """Create a topic and wait until metadata shows a leader for each of its partitions.

    Waiting for leaders means a producer or consumer started right after does not race the
    controller and hit UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    deadline = time.monotonic() + timeout
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[name].result(timeout=timeout)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"topic {name!r} has no leader for every partition after {timeout}s")
        try:
            metadata = admin.list_topics(topic=name, timeout=min(remaining, 5.0))
        except KafkaException:  # a metadata request timed out; the deadline decides
            continue
        topic = metadata.topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.error is None and p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        time.sleep(0.05)


class ExternalKafka:
    """A broker someone else runs; nothing is started or stopped."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap_servers = bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        """The ``host:port[,host:port...]`` list clients connect to."""
        return self._bootstrap_servers

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        """Create ``name`` and wait until every partition has a leader."""
        create_topic(self._bootstrap_servers, name, partitions, replication)


class LocalKafka:
    """A single-node KRaft Kafka broker (broker and controller in one JVM) on loopback.

    Use it as a context manager: entering fetches the jars if needed, formats storage in a
    fresh temporary directory, starts the JVM and waits until the broker answers metadata
    requests and its group coordinator is up; leaving stops that JVM (SIGTERM, then SIGKILL
    after ``stop_timeout``) and removes the directory. A broker that does not come up within
    ``startup_timeout`` raises RuntimeError with the tail of its log.

    Inside the ``with``, :meth:`stop_broker` and :meth:`start_broker` take the broker down and
    bring the same one back (same ports, same storage: topics, messages and committed offsets
    survive), for tests of a broker outage. ``bootstrap_servers`` stays valid while it is down.
    """

    def __init__(
        self,
        *,
        version: str = KAFKA_VERSION,
        libs: Path | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        heap_mb: int = 512,
        log_level: str = "INFO",
    ) -> None:
        self._version = version
        self._libs = libs
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._heap_mb = heap_mb
        self._log_level = log_level
        self._tmp: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log: Path | None = None
        # What start_broker() needs to launch the same broker again.
        self._resolved_libs: Path | None = None
        self._run_dir: Path | None = None
        self._config: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT`` of the running broker."""
        if self._port is None:
            raise RuntimeError("LocalKafka is not running; use it as a context manager")
        return f"127.0.0.1:{self._port}"

    @property
    def log_path(self) -> Path:
        """The broker's log file (stdout and stderr of the JVM); gone after exit."""
        if self._tmp is None or self._log is None:
            raise RuntimeError("LocalKafka is not running; use it as a context manager")
        return self._log

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        """Create ``name`` and wait until every partition has a leader."""
        create_topic(self.bootstrap_servers, name, partitions, replication)

    @property
    def broker_running(self) -> bool:
        """True while the broker's JVM runs (False after :meth:`stop_broker`)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker JVM's process id, None while stopped."""
        return self._process.pid if self.broker_running and self._process is not None else None

    def stop_broker(self, *, kill: bool = False) -> None:
        """Stop the broker's JVM and keep its storage and ports, for :meth:`start_broker`.

        By default a controlled shutdown (SIGTERM; SIGKILL after ``stop_timeout``), as a
        rolling restart does; ``kill=True`` sends SIGKILL at once, as a crash would. Returns
        once the process is gone. Stopping a stopped broker does nothing.
        """
        self._require_started()
        process = self._process
        if process is None:
            return
        if kill:
            self._process = None
            if process.poll() is None:
                process.kill()
            process.wait()
        else:
            self._terminate()

    def start_broker(self) -> None:
        """Start the broker stopped by :meth:`stop_broker` again: same ports, same storage.

        Waits, like entering does, until it answers metadata requests and its group
        coordinator is up; raises RuntimeError with its log's tail if it does not within
        ``startup_timeout``, or if another process took one of its ports meanwhile.
        Call it from a thread that lives as long as the broker should (the main thread,
        not a short-lived worker): the JVM gets SIGTERM when the starting thread exits.
        """
        self._require_started()
        if self.broker_running:
            raise RuntimeError("the broker is already running")
        assert self._resolved_libs is not None
        assert self._run_dir is not None
        assert self._config is not None
        deadline = time.monotonic() + self._startup_timeout
        self._launch(self._resolved_libs, self._run_dir, self._config, append=True)
        try:
            self._wait_ready(deadline)
        except _PortTaken:
            self._terminate()
            raise RuntimeError(
                f"Kafka could not restart: another process took port {self._port} or its "
                f"controller port while the broker was stopped\n{log_tail(self._log)}"
            ) from None
        except BaseException:
            self._terminate()
            raise

    def _require_started(self) -> None:
        if self._tmp is None or self._config is None:
            raise RuntimeError("LocalKafka is not running; use it as a context manager")

    def __enter__(self) -> Self:
        require_tools("java")
        libs = self._libs if self._libs is not None else kafka_libs(self._version)
        self._tmp = Path(tempfile.mkdtemp(prefix="event-sink-kafka-"))
        try:
            self._start(libs)
        except BaseException:
            self._stop()
            raise
        self._resolved_libs = libs
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _start(self, libs: Path) -> None:
        assert self._tmp is not None
        deadline = time.monotonic() + self._startup_timeout
        # A picked port can be taken by someone else before the JVM binds it; that shows up as
        # an early exit with "Address already in use", and fresh ports fix it.
        for attempt in range(3):
            run_dir = self._tmp / f"run{attempt}"
            run_dir.mkdir()
            port, controller_port = free_ports(2)
            self._port = port
            config = write_config(run_dir, port, controller_port, self._log_level)
            format_storage(libs, run_dir, config, self._heap_mb, self._startup_timeout)
            self._launch(libs, run_dir, config)
            try:
                self._wait_ready(deadline)
            except _PortTaken:
                self._terminate()
                continue
            self._run_dir, self._config = run_dir, config
            return
        raise RuntimeError(f"Kafka could not bind free loopback ports\n{log_tail(self._log)}")

    def _launch(self, libs: Path, run_dir: Path, config: Path, *, append: bool = False) -> None:
        log = run_dir / "server.log"
        self._log = log
        # A restart appends, so the log tells the whole story of an outage test.
        with log.open("ab" if append else "wb") as out:  # the child keeps its own descriptor
            if append:
                out.write(b"\n----- event-sink devkafka: broker restarted -----\n")
                out.flush()
            self._process = subprocess.Popen(
                java_command(libs, run_dir, self._heap_mb, "kafka.Kafka", str(config)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=run_dir,
                preexec_fn=terminate_with_parent(),
            )

    def _wait_ready(self, deadline: float) -> None:
        assert self._port is not None
        admin: AdminClient | None = None
        answered = False
        while time.monotonic() < deadline:
            self._check_alive()
            # A plain TCP probe first: librdkafka would log every refused connection.
            if admin is None and accepts(self._port):
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
            if admin is not None:
                try:
                    if not answered:
                        answered = bool(admin.list_topics(timeout=2.0).brokers)
                    if answered:
                        # The first consumer group makes the broker create __consumer_offsets,
                        # and librdkafka then waits ~3 s before asking for the coordinator
                        # again. Doing that here keeps the first test's group join fast.
                        group = admin.describe_consumer_groups(
                            ["event-sink-devkafka-warmup"], request_timeout=2.0
                        )
                        group["event-sink-devkafka-warmup"].result(timeout=5.0)
                        return
                except (KafkaException, TimeoutError):
                    pass  # not ready yet; the deadline decides
            time.sleep(0.1)
        raise RuntimeError(
            f"Kafka did not answer on {self.bootstrap_servers} within "
            f"{self._startup_timeout}s\n{log_tail(self._log)}"
        )

    def _check_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is None:
            return
        tail = log_tail(self._log)
        if "Address already in use" in tail:
            raise _PortTaken
        raise RuntimeError(f"Kafka exited with code {code}\n{tail}")

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _stop(self) -> None:
        try:
            self._terminate()
        finally:
            self._port = None
            self._run_dir = self._config = self._resolved_libs = None
            tmp, self._tmp = self._tmp, None
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


class _PortTaken(Exception):
    pass


@contextlib.contextmanager
def external_or_local(*, startup_timeout: float = 60.0) -> Iterator[KafkaCluster]:
    """Yield the broker at ``$KAFKA_BOOTSTRAP_SERVERS`` if set, else a fresh :class:`LocalKafka`.

    ``startup_timeout`` applies to the local broker only.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield ExternalKafka(external)
        return
    with LocalKafka(startup_timeout=startup_timeout) as kafka:
        yield kafka
