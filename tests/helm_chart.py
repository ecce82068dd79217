"""The Helm chart's test helpers: the pinned helm (a session fixture), rendering a
scenario once per session, and what the chart's tests read of the rendered objects.

helm is built from its Go module by scripts/helm-tool and cached; every ``ci/*-values.yaml``
scenario is rendered once, whichever test asks first.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "event-sink"
SCENARIOS = {p.name.removesuffix("-values.yaml"): p for p in sorted(CHART.glob("ci/*-values.yaml"))}
# Chart.yaml's kubeVersion floor, and the newest Kubernetes whose schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.29", "1.37")
# Custom resources: no schema in kubernetes-validate; test_helm.py checks their required fields.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject"}
RELEASE, NAMESPACE = "es", "event-sink"
FULLNAME = f"{RELEASE}-event-sink"
SASL_ENV = "EVENT_SINK__KAFKA__PROPERTIES__SASL.PASSWORD"
HELM_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def helm() -> str:
    """The pinned helm binary, built into $EVENT_SINK_CACHE on first use."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "helm-tool")],
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/helm-tool failed:\n{proc.stderr[-4000:]}"
    return proc.stdout.strip()


def run_helm(helm: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_S,
        check=False,
    )


def template(helm: str, *args: str | Path) -> list[dict[str, Any]]:
    proc = run_helm(helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def template_error(helm: str, *args: str | Path) -> str:
    proc = run_helm(helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args)
    assert proc.returncode != 0, "helm template succeeded but should have failed"
    return proc.stderr


@dataclass
class Rendered:
    name: str
    values_file: Path
    docs: list[dict[str, Any]]

    @property
    def values(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.values_file.read_text(encoding="utf-8"))
        return data

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str = FULLNAME) -> dict[str, Any]:
        found = [doc for doc in self.all(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, got {len(found)}"
        return found[0]

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod_spec["containers"]
        return container

    @property
    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.one("ConfigMap")["data"]["config.yaml"])
        return data


_rendered: dict[str, Rendered] = {}


def rendered(helm: str, name: str) -> Rendered:
    """Each scenario is rendered once per session, whichever test asks first."""
    if name not in _rendered:
        path = SCENARIOS[name]
        _rendered[name] = Rendered(name, path, template(helm, "--values", path))
    return _rendered[name]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, helm: str) -> Rendered:
    return rendered(helm, request.param)


def container_env(scenario: Rendered) -> dict[str, dict[str, Any]]:
    return {env["name"]: env for env in scenario.container.get("env", [])}
