"""A real single-node Apache Kafka broker for tests and the demo.

Kafka's jars come from Maven Central through ``mvn`` and are cached under
``$EVENT_SINK_CACHE/kafka/<version>/libs`` (default ``~/.cache/event-sink``), so only the first
run downloads anything. :class:`LocalKafka` then runs one KRaft node (broker and controller in
one JVM) on free loopback ports, in a temporary directory it removes on exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports NewTopic without marking it public, which mypy --strict
# rejects; cimpl is where the typed class is defined.
from confluent_kafka.cimpl import NewTopic

from connector.runtime import terminate_with_parent

__all__ = [
    "DEPENDENCY_PLUGIN_VERSION",
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "ExternalKafka",
    "KafkaCluster",
    "LocalKafka",
    "Runner",
    "cache_dir",
    "create_topic",
    "external_or_local",
    "kafka_libs",
    "require_tools",
]

KAFKA_VERSION = "4.1.1"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
# kafka_2.13's pom brings log4j-core and slf4j-api 1.7 but no binding between them, so without
# this the broker logs nothing at all. Same log4j version as kafka_2.13 4.1.1 depends on.
LOG4J_VERSION = "2.24.3"

#: Runs a command and returns its result; :func:`kafka_libs` takes one so tests can stub ``mvn``.
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]

_POM_TEMPLATE = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0
                             https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>event-sink.devkafka</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{plugin_version}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""

# Kafka 4 logs through log4j2. Console goes to the process's stdout, which LocalKafka sends
# to server.log, so JVM errors and log lines end up in one file, in order.
_LOG4J2_TEMPLATE = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""

_COMPLETE = ".complete"
_MVN_TAIL_LINES = 40
_LOG_TAIL_LINES = 60


def cache_dir() -> Path:
    """The download cache: ``$EVENT_SINK_CACHE``, else ``~/.cache/event-sink``."""
    configured = os.environ.get("EVENT_SINK_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "event-sink"


def require_tools(*tools: str) -> None:
    """Raise a RuntimeError naming what to install when one of ``tools`` is not on PATH."""
    needs = {"java": "a JDK 17 or newer (java)", "mvn": "Apache Maven (mvn)"}
    missing = [needs.get(tool, tool) for tool in tools if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"the local Kafka broker needs {' and '.join(missing)} on PATH; install it "
            "(on Debian: apt-get install openjdk-17-jdk-headless maven) or set "
            "KAFKA_BOOTSTRAP_SERVERS to use a running broker"
        )


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


def _tail(text: str, lines: int) -> str:
    # Maven 3.8 writes ANSI colour resets even in batch mode; they only garble an error message.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "\n".join(plain.splitlines()[-lines:])


def _pom(version: str) -> str:
    return _POM_TEMPLATE.format(
        kafka_version=version,
        log4j_version=LOG4J_VERSION,
        plugin_version=DEPENDENCY_PLUGIN_VERSION,
    )


def _is_complete(libs: Path, pom: str) -> bool:
    # The marker holds the pom's digest, so a changed pom (say, a new pinned dependency)
    # fetches again instead of reusing jars resolved from the old one.
    marker = libs / _COMPLETE
    return marker.is_file() and marker.read_text().strip() == _digest(pom)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def kafka_libs(
    version: str = KAFKA_VERSION,
    *,
    cache: Path | None = None,
    runner: Runner | None = None,
) -> Path:
    """Return the directory holding Kafka ``version``'s jars, downloading them on first use.

    The jars are fetched with ``mvn dependency:copy-dependencies`` into a temporary directory
    that is renamed into place only once complete, with a ``.complete`` marker inside, so an
    interrupted download is never taken for a finished one. A file lock keeps two processes
    from downloading at once; the second one finds the first one's result.
    """
    base = (cache if cache is not None else cache_dir()) / "kafka" / version
    libs = base / "libs"
    pom = _pom(version)
    if _is_complete(libs, pom):
        return libs
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if _is_complete(libs, pom):  # another process finished while we waited
            return libs
        if runner is None:
            require_tools("mvn")
        for stale in base.glob("fetch-*"):  # left by a killed download; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        _download(version, pom, base, libs, runner or _run)
    return libs


def _download(version: str, pom_text: str, base: Path, libs: Path, runner: Runner) -> None:
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=base) as tmp:
        pom = Path(tmp) / "pom.xml"
        out = Path(tmp) / "libs"
        pom.write_text(pom_text)
        cmd = [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
        ]
        result = runner(cmd)
        if result.returncode != 0:
            raise RuntimeError(
                f"fetching Kafka {version} with Maven failed (exit {result.returncode}): "
                f"{' '.join(cmd)}\n{_tail(result.stdout or '', _MVN_TAIL_LINES)}"
            )
        if not (out / f"kafka_2.13-{version}.jar").is_file():
            raise RuntimeError(f"Maven finished but {out} has no kafka_2.13-{version}.jar")
        (out / _COMPLETE).write_text(_digest(pom_text) + "\n")
        if libs.exists():  # resolved from an older pom, or damaged
            shutil.rmtree(libs)
        out.rename(libs)  # same filesystem, so atomic: libs/ is whole or absent


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


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is picked, so the ports differ. Another process
    # can still take one before Kafka binds it; LocalKafka retries on "Address already in use".
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _random_cluster_id() -> str:
    # What Kafka's Uuid.randomUuid() gives: 16 random bytes, base64url without padding. Kafka
    # rejects the all-zero id, and one starting with "-" would read as a command-line option.
    while True:
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


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
                f"controller port while the broker was stopped\n{self._log_tail()}"
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
            port, controller_port = _free_ports(2)
            self._port = port
            config = self._write_config(run_dir, port, controller_port)
            self._format(libs, run_dir, config)
            self._launch(libs, run_dir, config)
            try:
                self._wait_ready(deadline)
            except _PortTaken:
                self._terminate()
                continue
            self._run_dir, self._config = run_dir, config
            return
        raise RuntimeError(f"Kafka could not bind free loopback ports\n{self._log_tail()}")

    def _java(self, libs: Path, run_dir: Path, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xms{min(256, self._heap_mb)}m",
            f"-Xmx{self._heap_mb}m",
            # Two cores here: a serial collector and no extra JIT tiers start quickest, and a
            # test broker's throughput needs are small.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={run_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={run_dir}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _write_config(self, run_dir: Path, port: int, controller_port: int) -> Path:
        (run_dir / "log4j2.properties").write_text(_LOG4J2_TEMPLATE.format(level=self._log_level))
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Static voters still work in 4.1 and need no --standalone/--initial-controllers
            # at format time.
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(run_dir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # Internal topics default to replication 3 and 50 partitions: one node can hold
            # one replica, and one partition is created much faster than 50 on two cores.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        config = run_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        return config

    def _format(self, libs: Path, run_dir: Path, config: Path) -> None:
        cmd = self._java(
            libs,
            run_dir,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(config),
        )
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
                timeout=self._startup_timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"formatting Kafka storage took over {self._startup_timeout}s"
            ) from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka storage failed (exit {result.returncode})\n"
                f"{_tail(result.stdout, _LOG_TAIL_LINES)}"
            )

    def _launch(self, libs: Path, run_dir: Path, config: Path, *, append: bool = False) -> None:
        log = run_dir / "server.log"
        self._log = log
        # A restart appends, so the log tells the whole story of an outage test.
        with log.open("ab" if append else "wb") as out:  # the child keeps its own descriptor
            if append:
                out.write(b"\n----- event-sink devkafka: broker restarted -----\n")
                out.flush()
            self._process = subprocess.Popen(
                self._java(libs, run_dir, "kafka.Kafka", str(config)),
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
            if admin is None and _accepts(self._port):
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
            f"{self._startup_timeout}s\n{self._log_tail()}"
        )

    def _check_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is None:
            return
        tail = self._log_tail()
        if "Address already in use" in tail:
            raise _PortTaken
        raise RuntimeError(f"Kafka exited with code {code}\n{tail}")

    def _log_tail(self) -> str:
        log = self._log
        if log is None or not log.exists():
            return "(no broker log)"
        text = log.read_text(errors="replace")
        return f"--- last lines of {log} ---\n{_tail(text, _LOG_TAIL_LINES)}"

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


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


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
