"""The Helm chart (helm/event-sink), checked with the real tools.

helm (built from its Go module by scripts/helm-tool, cached; see helm_chart.py) lints and
renders every ``ci/*-values.yaml`` scenario once; kubernetes-validate checks each rendered
object against the Kubernetes schemas, offline; the connector's own ``check-config`` accepts
the config the chart renders, so the chart and the connector cannot drift apart. What the
chart refuses is in test_helm_values.py, its monitoring in test_helm_monitoring.py, the
Dockerfile in test_dockerfile.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import helm_chart
import kubernetes_validate
import pytest
import yaml
from helm_chart import (
    CHART,
    CRD_KINDS,
    FULLNAME,
    KUBE_VERSIONS,
    ROOT,
    SASL_ENV,
    SCENARIOS,
    Rendered,
    container_env,
    rendered,
    run_helm,
    template,
    template_error,
)

# The first test builds helm from source (minutes on a fresh machine); every subprocess here
# has its own timeout, so a hang still fails.
pytestmark = pytest.mark.timeout(1500)
helm = helm_chart.helm  # the session fixture that builds (or finds) the pinned helm
scenario = helm_chart.scenario  # each ci/*-values.yaml, rendered once


def test_every_scenario_of_the_issue_is_there() -> None:
    assert set(SCENARIOS) == {
        "minimal", "full-monitoring", "keda", "existing-secret", "sasl-ssl", "confluent",
        "routes",
    }  # fmt: skip


# --- helm lint, Kubernetes schemas ----------------------------------------------------------


def test_lint_strict(helm: str, scenario: Rendered) -> None:
    proc = run_helm(helm, "lint", "--strict", CHART, "--values", scenario.values_file)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_objects_match_the_kubernetes_schema(scenario: Rendered) -> None:
    errors = []
    for doc in scenario.docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(map(str, exc.path))
                errors.append(f"{doc['kind']} (Kubernetes {version}) at {path}: {exc.message}")
    assert not errors, "\n".join(errors)


# Every scenario: the config, the Service, the Deployment and the `helm test` Pod.
_CORE = {"ConfigMap", "Service", "Deployment", "Pod"}
_DEFAULTS = _CORE | {"ServiceAccount", "Secret", "PodDisruptionBudget"}
EXPECTED_KINDS = {
    "minimal": _DEFAULTS,
    "full-monitoring": _DEFAULTS
    | {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"},
    "keda": _DEFAULTS | {"ScaledObject"},
    "existing-secret": _CORE,  # no Secret, no ServiceAccount, no PDB
    "sasl-ssl": _DEFAULTS,
    "confluent": _DEFAULTS | {"PodMonitor", "NetworkPolicy"},
    "routes": _DEFAULTS | {"NetworkPolicy"},
}


def test_each_scenario_renders_the_objects_it_turns_on(scenario: Rendered) -> None:
    assert set(Counter(doc["kind"] for doc in scenario.docs)) == EXPECTED_KINDS[scenario.name]
    # Two ConfigMaps only with the dashboard: the config and the dashboard.
    configmaps = {doc["metadata"]["name"] for doc in scenario.all("ConfigMap")}
    dashboard = scenario.values.get("grafanaDashboard", {}).get("enabled", False)
    assert configmaps == ({FULLNAME, f"{FULLNAME}-dashboard"} if dashboard else {FULLNAME})


# --- the config, the secrets ----------------------------------------------------------------


ROUTE_SECRETS = "/var/run/secrets/event-sink-routes"


def test_rendered_config_passes_check_config(scenario: Rendered, tmp_path: Path) -> None:
    """The connector itself accepts what the chart renders, with the pod's own overrides."""
    config_file = tmp_path / "config.yaml"
    text = scenario.one("ConfigMap")["data"]["config.yaml"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENT_SINK")}
    if "routes" in scenario.config:
        # Each route names its schema; the routes' secrets become files here.
        text = text.replace("/app/schemas/", f"{ROOT}/schemas/")
        text = text.replace(ROUTE_SECRETS, str(tmp_path / "routes"))
        volumes = {v["name"]: v for v in scenario.pod_spec["volumes"]}
        for mount in scenario.container["volumeMounts"]:
            if mount["mountPath"].startswith(ROUTE_SECRETS):
                folder = tmp_path / "routes" / mount["mountPath"][len(ROUTE_SECRETS) + 1 :]
                folder.mkdir(parents=True)
                for item in volumes[mount["name"]]["secret"]["items"]:
                    (folder / item["path"]).write_text(f"from-secret-{item['key']}")
    else:
        # The image has the schema at /app/schemas; here it is the repository's.
        env["EVENT_SINK__SOURCE__SCHEMA_FILE"] = str(ROOT / "schemas" / "user_behavior_event.avsc")
    config_file.write_text(text, encoding="utf-8")
    for name, var in container_env(scenario).items():
        if name.startswith("EVENT_SINK"):
            env[name] = var.get("value", f"from-secret-{name}")
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "check-config", "--config", str(config_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    effective = yaml.safe_load(proc.stdout)
    values_config = scenario.values["config"]
    assert effective["kafka"]["bootstrap_servers"] == values_config["kafka"]["bootstrap_servers"]
    assert effective["http"]["url"] == values_config["http"]["url"]
    assert effective["metrics"]["port"] == scenario.container["ports"][0]["containerPort"]
    if SASL_ENV in container_env(scenario):
        # The Secret-fed override reached kafka.properties (check-config redacts it).
        assert effective["kafka"]["properties"]["sasl.password"] == "***"


def test_token_is_a_mounted_secret_file(scenario: Rendered) -> None:
    auth = scenario.values["auth"]
    token_file = PurePosixPath(scenario.config["http"]["token_file"])
    mounts = {m["name"]: m for m in scenario.container["volumeMounts"]}
    volumes = {v["name"]: v for v in scenario.pod_spec["volumes"]}
    # A directory mount (no subPath), so kubelet updates the file when the Secret rotates.
    assert mounts["token"]["mountPath"] == str(token_file.parent)
    assert "subPath" not in mounts["token"]
    secret = volumes["token"]["secret"]
    assert secret["secretName"] == auth.get("existingSecret", FULLNAME)
    assert secret["items"] == [{"key": auth.get("tokenKey", "token"), "path": token_file.name}]
    assert "EVENT_SINK_TOKEN" not in container_env(scenario)


def secret_values(scenario: Rendered) -> set[str]:
    values = {
        base64.b64decode(value).decode()
        for doc in scenario.all("Secret")
        for value in doc.get("data", {}).values()
    }
    auth = scenario.values["auth"]
    values |= {auth.get("token", ""), auth.get("kafkaSasl", {}).get("password", "")}
    return values - {""}


def test_no_secret_value_in_any_other_object(scenario: Rendered) -> None:
    secrets = secret_values(scenario)
    if scenario.name != "existing-secret":
        assert secrets, "the scenario should carry a secret to look for"
    for doc in scenario.docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{doc['kind']} {doc['metadata']['name']} contains a secret value"
    for key in scenario.config.get("kafka", {}).get("properties", {}):
        assert not re.search("password|secret", key, re.IGNORECASE), key


def test_sasl_password_and_tls_come_from_secrets(helm: str) -> None:
    sasl = rendered(helm, "sasl-ssl")
    ref = container_env(sasl)[SASL_ENV]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": FULLNAME, "key": "kafka-sasl-password"}
    assert "kafka-sasl-password" in sasl.one("Secret")["data"]
    tls_mount = next(m for m in sasl.container["volumeMounts"] if m["name"] == "kafka-tls")
    tls_volume = next(v for v in sasl.pod_spec["volumes"] if v["name"] == "kafka-tls")
    assert tls_volume["secret"]["secretName"] == "kafka-client-tls"
    properties = sasl.config["kafka"]["properties"]
    for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
        assert properties[key].startswith(tls_mount["mountPath"] + "/")

    existing = rendered(helm, "existing-secret")
    ref = container_env(existing)[SASL_ENV]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "event-sink-credentials", "key": "scram-password"}
    assert not existing.all("Secret")


# --- the Deployment -------------------------------------------------------------------------


def test_pod_is_hardened(scenario: Rendered) -> None:
    pod = scenario.pod_spec
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = scenario.container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = next(m for m in scenario.container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    resources = scenario.container["resources"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_probes_grace_period_and_config_mount(scenario: Rendered) -> None:
    container = scenario.container
    port = scenario.config.get("metrics", {}).get("port", 9400)
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # a slow start: no restart
    drain = scenario.config.get("shutdown", {}).get("drain_timeout_s", 30)
    assert scenario.pod_spec["terminationGracePeriodSeconds"] > drain + 10
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert config_mount["mountPath"] == "/etc/event-sink/config.yaml"  # the image's entrypoint
    service = scenario.one("Service")
    assert service["spec"]["ports"][0]["name"] == "metrics"
    assert service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]


def checksum(docs: list[dict[str, Any]]) -> str:
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    return value


def test_a_config_change_rolls_the_pods(helm: str) -> None:
    minimal = SCENARIOS["minimal"]
    before = checksum(rendered(helm, "minimal").docs)
    assert checksum(template(helm, "--values", minimal)) == before  # deterministic
    assert checksum(template(helm, "--values", minimal, "--set", "podLabels.a=b")) == before
    changed = template(helm, "--values", minimal, "--set", "config.batch.linger_ms=250")
    assert checksum(changed) != before


def test_replicas_only_without_an_autoscaler(helm: str) -> None:
    assert rendered(helm, "minimal").one("Deployment")["spec"]["replicas"] == 1
    for name in ("full-monitoring", "keda"):  # HPA, KEDA
        assert "replicas" not in rendered(helm, name).one("Deployment")["spec"], name


def test_hpa_and_keda_together_fail(helm: str) -> None:
    error = template_error(
        helm,
        "--values",
        SCENARIOS["minimal"],
        "--set",
        "autoscaling.hpa.enabled=true",
        "--set",
        "autoscaling.keda.enabled=true",
    )
    assert "autoscaling.hpa.enabled and autoscaling.keda.enabled are both true" in error
