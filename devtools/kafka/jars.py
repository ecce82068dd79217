"""Kafka's jars for the local broker, fetched once from Maven Central and cached.

``mvn dependency:copy-dependencies`` resolves ``org.apache.kafka:kafka_2.13`` (and a log4j
binding) into ``$EVENT_SINK_CACHE/kafka/<version>/libs`` (default ``~/.cache/event-sink``),
so only the first run downloads anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "DEPENDENCY_PLUGIN_VERSION",
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "Runner",
    "cache_dir",
    "kafka_libs",
    "require_tools",
    "tail",
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

_COMPLETE = ".complete"
_MVN_TAIL_LINES = 40


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


def tail(text: str, lines: int) -> str:
    """The last ``lines`` lines of a tool's output, without ANSI colour codes."""
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
                f"{' '.join(cmd)}\n{tail(result.stdout or '', _MVN_TAIL_LINES)}"
            )
        if not (out / f"kafka_2.13-{version}.jar").is_file():
            raise RuntimeError(f"Maven finished but {out} has no kafka_2.13-{version}.jar")
        (out / _COMPLETE).write_text(_digest(pom_text) + "\n")
        if libs.exists():  # resolved from an older pom, or damaged
            shutil.rmtree(libs)
        out.rename(libs)  # same filesystem, so atomic: libs/ is whole or absent
