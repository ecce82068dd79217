"""One local broker JVM's files and command lines: its ``server.properties`` and log4j2
config, the ``java`` command of a KRaft node, storage formatting, free loopback ports.

:class:`devtools.kafka.broker.LocalKafka` runs the process; everything here is a function of
its arguments.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from base64 import urlsafe_b64encode
from pathlib import Path
from uuid import uuid4

from devtools.kafka.jars import tail

__all__ = [
    "accepts",
    "format_storage",
    "free_ports",
    "java_command",
    "log_tail",
    "random_cluster_id",
    "write_config",
]

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

_LOG_TAIL_LINES = 60


def free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports."""
    # All sockets stay open until every port is picked, so the ports differ. Another process
    # can still take one before Kafka binds it; LocalKafka retries on "Address already in use".
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def random_cluster_id() -> str:
    """A fresh KRaft cluster id."""
    # What Kafka's Uuid.randomUuid() gives: 16 random bytes, base64url without padding. Kafka
    # rejects the all-zero id, and one starting with "-" would read as a command-line option.
    while True:
        cluster_id = urlsafe_b64encode(uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def java_command(libs: Path, run_dir: Path, heap_mb: int, main: str, *args: str) -> list[str]:
    """The ``java`` command line running ``main`` with Kafka's jars in ``libs``."""
    return [
        "java",
        f"-Xms{min(256, heap_mb)}m",
        f"-Xmx{heap_mb}m",
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


def write_config(run_dir: Path, port: int, controller_port: int, log_level: str) -> Path:
    """Write a single KRaft node's log4j2 config and ``server.properties`` into ``run_dir``
    (the broker on ``port``, its controller on ``controller_port``); return the latter."""
    (run_dir / "log4j2.properties").write_text(_LOG4J2_TEMPLATE.format(level=log_level))
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
        # ACLs work, so a test can deny one topic's WRITE; a resource with no ACL stays open
        # to everyone, as with no authorizer at all.
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "true",
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


def format_storage(libs: Path, run_dir: Path, config: Path, heap_mb: int, timeout: float) -> None:
    """Format the node's storage (``kafka.tools.StorageTool format``) with a fresh cluster id;
    raises RuntimeError with the tool's output's tail if it fails or takes over ``timeout``."""
    cmd = java_command(
        libs,
        run_dir,
        heap_mb,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        random_cluster_id(),
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
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"formatting Kafka storage took over {timeout}s") from exc
    if result.returncode != 0:
        raise RuntimeError(
            f"formatting Kafka storage failed (exit {result.returncode})\n"
            f"{tail(result.stdout, _LOG_TAIL_LINES)}"
        )


def log_tail(log: Path | None) -> str:
    """The last lines of the broker's log, for an error message."""
    if log is None or not log.exists():
        return "(no broker log)"
    text = log.read_text(errors="replace")
    return f"--- last lines of {log} ---\n{tail(text, _LOG_TAIL_LINES)}"
