"""The image: the Dockerfile built with buildah and the connector run inside it.

``scripts/image`` does what a platform team would: ``tools`` installs buildah and mmdebstrap
(apt) when they are missing, ``base`` builds a Debian bookworm root filesystem (Python 3.11)
from Debian's packages, cached outside the repo, and ``build`` builds the Dockerfile on it,
its Python packages coming from the project's cached wheels over loopback. One build, then
the image's own entrypoint delivers events from the test broker to the sandbox, both on the
host's loopback (chroot isolation shares the host's network).

Under ``CI=true`` a container tool that cannot run fails these tests; elsewhere they skip
and say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from drills import TOKEN, ConnectorProcess, Drill, _ChildProcess, connector_config, write_config

from devtools.kafka import KafkaCluster

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "image"
ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the image cannot be built here, and CI never skips it: {why}")
    pytest.skip(why)


def wheel_cache() -> Path:
    """The wheels scripts/dev downloaded for this lock (its lock_hash)."""
    cache = Path(
        os.environ.get("EVENT_SINK_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "event-sink"
    )
    digest = hashlib.sha256(
        (ROOT / "constraints.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    return cache / "wheels" / digest[:16]


def run(argv: Sequence[str], timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), env=ENV, capture_output=True, text=True, timeout=timeout_s, check=False
    )


@dataclass(frozen=True)
class Image:
    name: str
    config: dict[str, Any]  # buildah inspect's OCIv1 config


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    if os.geteuid() != 0:
        unavailable("buildah with chroot isolation and vfs storage runs as root here")
    tools = run([str(SCRIPT), "tools"])
    if tools.returncode != 0:
        unavailable(f"scripts/image tools failed: {tools.stderr.strip()[-2000:]}")
    wheels = wheel_cache()
    if not (wheels / ".complete").exists():
        unavailable(f"no complete wheel cache at {wheels}: run scripts/dev env first")
    base = run([str(SCRIPT), "base"])
    if base.returncode != 0:
        unavailable(f"scripts/image base failed: {base.stderr.strip()[-2000:]}")
    name = f"localhost/event-sink:test-{uuid.uuid4().hex[:8]}"
    build = [str(SCRIPT), "build", "--base", base.stdout.strip(), "--wheels", str(wheels)]
    built = run([*build, "--tag", name])
    assert built.returncode == 0, built.stderr[-4000:]
    try:
        inspected = run(["buildah", "inspect", "--type", "image", name])
        assert inspected.returncode == 0, inspected.stderr
        yield Image(name, json.loads(inspected.stdout)["OCIv1"]["config"])
    finally:
        run(["buildah", "rmi", name])


@pytest.fixture
def container(image: Image) -> Iterator[str]:
    made = run(["buildah", "from", "--quiet", image.name])
    assert made.returncode == 0, made.stderr
    name = made.stdout.strip()
    try:
        yield name
    finally:
        run(["buildah", "rm", name])


def inside(container: str, script: str) -> str:
    """Run ``sh -c script`` in the container as the image's user; its stdout."""
    proc = run(["buildah", "run", container, "--", "sh", "-c", script], timeout_s=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_image_runs_as_a_non_root_user_and_says_what_it_is(image: Image) -> None:
    config = image.config
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["event-sink", "run", "--config", "/etc/event-sink/config.yaml"]
    labels = config["Labels"]
    version = next(
        line.split('"')[1]
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.startswith("version = ")
    )
    assert labels["org.opencontainers.image.version"] == version
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.source"]


def test_the_image_ships_the_product_and_no_installer_or_build_tool(container: str) -> None:
    assert inside(container, "id -u").strip() == "10001"
    found = inside(
        container,
        "python3 -c 'import importlib.util as u; print(*[m for m in "
        '("pip", "setuptools", "wheel", "ensurepip", "devtools", "tests", "benchmarks") '
        "if u.find_spec(m)])'",
    )
    assert found.split() == []
    tools = inside(container, "for t in pip pip3 gcc cc make; do command -v $t; done; true")
    assert tools.split() == []
    assert inside(container, "ls /app").split() == ["schemas"]
    assert "event-sink" in inside(container, "event-sink --help")
    commands = inside(container, "event-sink --help")
    assert "sandbox" not in commands  # dev tooling is not in the image
    assert "demo" not in commands


class ImageConnector(ConnectorProcess):
    """The image's entrypoint under ``buildah run``, the config mounted at
    /etc/event-sink. buildah does not pass signals on under chroot isolation, so
    terminate() signals the connector process inside."""

    def __init__(
        self, container: str, entrypoint: Sequence[str], etc: Path, log_path: Path
    ) -> None:
        self.name = "image"
        self.config_path = etc / "config.yaml"
        argv = ["buildah", "run", "--env", f"EVENT_SINK_TOKEN={TOKEN}"]
        argv += ["--volume", f"{etc}:/etc/event-sink:ro", container, "--", *entrypoint]
        _ChildProcess.__init__(self, argv, log_path, ENV)
        self.peak_rss_bytes = 0
        self._metrics_port = None

    def inner_pid(self) -> int | None:
        """The connector: the deepest descendant of buildah that runs event-sink."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        # buildah run -> buildah-chroot-runtime -> buildah-chroot-exec <command> -> the
        # command: the deepest process running event-sink is the connector.
        found, todo = None, list(children.get(self.pid, []))
        while todo:
            pid = todo.pop()
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(part.endswith(b"/event-sink") for part in cmdline) and b"run" in cmdline:
                found = pid
            todo += children.get(pid, [])
        return found

    def terminate(self, timeout_s: float = 60.0, sig: int = signal.SIGTERM) -> int:
        inner = self.inner_pid()
        if inner is not None and self.alive:
            os.kill(inner, sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def test_the_images_entrypoint_delivers_and_commits(
    image: Image, container: str, kafka: KafkaCluster, tmp_path: Path
) -> None:
    with Drill("image", tmp_path, kafka.bootstrap_servers) as d:
        topic = d.topic(partitions=3)
        produced = d.produce(topic, 3_000, seed=181)
        sandbox = d.start_sandbox(latency_ms=5)
        config = connector_config(
            bootstrap=d.bootstrap, group=d.group, topics=[topic], url=sandbox.url
        )
        del config["source"]  # the image's own schemas/ (the default schema_file)
        etc = d.dir / "etc"
        etc.mkdir(mode=0o755)
        os.chmod(write_config(etc / "config.yaml", config), 0o644)
        connector = ImageConnector(container, image.config["Entrypoint"], etc, d.dir / "image.log")
        d.connectors.append(connector)
        d.first_start = connector.started_at
        d.wait_committed(produced, watch=[connector], timeout_s=180)
        delivered = connector.metric("event_sink_records_delivered_total")
        native = connector.metric("event_sink_hot_path", path="native")
        started = time.monotonic()
        code = connector.terminate()
        result = d.result(produced)
    assert code == 0, connector.describe()
    assert time.monotonic() - started < 60
    assert delivered == produced.count
    # The image carries the native extension built on this host (cargo is here).
    assert native == (1 if shutil.which("cargo") else 0), connector.describe()
    assert result.lost == 0, result.row()
    assert result.delivered == produced.count, result.row()
