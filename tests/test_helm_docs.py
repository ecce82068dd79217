"""The chart's README: its values table is what helm-docs (pinned, built from its Go module
by scripts/helm-docs-tool) makes of values.yaml today."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART_README = ROOT / "helm" / "event-sink" / "README.md"


def test_the_chart_readme_is_generated_from_values_yaml() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "chart-docs"), "--check"],
        capture_output=True,
        text=True,
        timeout=1400,  # the first run builds helm-docs
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_the_values_table_documents_what_a_user_sets() -> None:
    text = CHART_README.read_text(encoding="utf-8")
    for key in ("image.repository", "image.digest", "registry.url", "podMonitor.enabled",
                "prometheusRule.alerts.down.for", "extraObjects", "resources"):  # fmt: skip
        assert f"| {key} |" in text, key
