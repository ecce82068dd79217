"""The chart's wiring beyond the basics: the Schema Registry, extra containers and objects,
the PodMonitor, the dashboard's uid per release, the CPU request per worker, Artifact Hub.

Helpers and the session's `helm` fixture come from helm_chart (rendered once per session).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
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
    NAMESPACE,
    ROOT,
    SCENARIOS,
    container_env,
    rendered,
    run_helm,
    template,
    template_error,
)

pytestmark = pytest.mark.timeout(1500)
helm = helm_chart.helm  # the session fixture that builds (or finds) the pinned helm
_MINIMAL = ["--values", str(SCENARIOS["minimal"])]


def kube_errors(docs: list[dict[str, Any]]) -> list[str]:
    """Every schema error of the built-in kinds, against the oldest and newest Kubernetes."""
    errors = []
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{doc['kind']} ({version}) at {list(exc.path)}: {exc.message}")
    return errors


def one(docs: list[dict[str, Any]], kind: str, name: str = FULLNAME) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


# --- the Schema Registry ----------------------------------------------------------------------


def test_confluent_reads_the_registry_with_credentials_from_the_secret(helm: str) -> None:
    confluent = rendered(helm, "confluent")
    registry = confluent.values["registry"]
    assert confluent.config["source"]["format"] == "confluent"
    assert confluent.config["source"]["schema_registry"]["url"] == registry["url"]
    assert confluent.config["source"]["schema_registry"]["timeout_s"] == 5  # the user's key stays
    env = container_env(confluent)
    refs = {
        name: env[name]["valueFrom"]["secretKeyRef"]
        for name in (
            "EVENT_SINK__SOURCE__SCHEMA_REGISTRY__USERNAME",
            "EVENT_SINK_REGISTRY_PASSWORD",
        )
    }
    assert refs == {
        "EVENT_SINK__SOURCE__SCHEMA_REGISTRY__USERNAME": {
            "name": "schema-registry-credentials",
            "key": "api-key",
        },
        "EVENT_SINK_REGISTRY_PASSWORD": {
            "name": "schema-registry-credentials",
            "key": "api-secret",
        },
    }
    assert "EVENT_SINK_REGISTRY_TOKEN" not in env
    # Egress: brokers, API, the registry on its own port and peers, DNS.
    egress = confluent.one("NetworkPolicy")["spec"]["egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in egress] == [
        [9092, 9093], [443], [8081], [53, 53]
    ]  # fmt: skip
    assert egress[2]["to"] == confluent.values["networkPolicy"]["registry"]["to"]
    # Without a registry there is no registry rule (the full-monitoring policy).
    full = rendered(helm, "full-monitoring").one("NetworkPolicy")["spec"]["egress"]
    assert [8081] not in [sorted(p["port"] for p in rule["ports"]) for rule in full]


def test_registry_bearer_token_replaces_basic_auth(helm: str) -> None:
    docs = template(helm, "--values", SCENARIOS["confluent"], "--set", "registry.tokenKey=token")
    env = {e["name"]: e for e in containers(docs)["event-sink"]["env"]}
    assert env["EVENT_SINK_REGISTRY_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "schema-registry-credentials",
        "key": "token",
    }
    assert not {
        "EVENT_SINK_REGISTRY_PASSWORD",
        "EVENT_SINK__SOURCE__SCHEMA_REGISTRY__USERNAME",
    } & set(env)


def test_anonymous_registry_needs_no_secret(helm: str) -> None:
    docs = template(helm, "--values", SCENARIOS["confluent"], "--set", "registry.existingSecret=")
    assert not any(
        e["name"].startswith("EVENT_SINK_REGISTRY") or "SCHEMA_REGISTRY" in e["name"]
        for e in containers(docs)["event-sink"].get("env", [])
    )


_CONFLUENT = ["--set", "config.source.format=confluent"]
_USERNAME = ["--set", "config.source.schema_registry.username=u"]
_REGISTRY_MISCONFIGURATIONS = {
    "confluent-without-url": (
        [*_MINIMAL, *_CONFLUENT],
        "config.source.format is confluent: set registry.url",
    ),
    "url-without-confluent": (
        [*_MINIMAL, "--set", "registry.url=http://registry:8081"],
        'registry.url is set but config.source.format is "avro"',
    ),
    "url-in-config": (
        [*_MINIMAL, *_CONFLUENT, "--set", "config.source.schema_registry.url=http://r:8081"],
        "config.source.schema_registry.url is set by the chart: use registry.url",
    ),
    "username-in-config": (
        [*_MINIMAL, *_CONFLUENT, "--set", "registry.url=http://r:8081", *_USERNAME],
        "config.source.schema_registry.username is set by the chart",
    ),
    "secret-without-url": (
        [*_MINIMAL, "--set", "registry.existingSecret=s"],
        "registry.existingSecret is set but registry.url is not",
    ),
    "secret-without-keys": (
        ["--values", str(SCENARIOS["confluent"]), "--set", "registry.usernameKey="],
        "registry.existingSecret needs usernameKey and passwordKey (basic auth) or tokenKey",
    ),
}


@pytest.mark.parametrize("case", sorted(_REGISTRY_MISCONFIGURATIONS))
def test_chart_refuses_registry_misconfiguration(helm: str, case: str) -> None:
    args, expected = _REGISTRY_MISCONFIGURATIONS[case]
    assert expected in template_error(helm, *args)


# --- routes: each its own token and registry secret -------------------------------------------

_ROUTE_SECRETS = "/var/run/secrets/event-sink-routes"


def test_routes_get_their_own_secrets_as_files(helm: str) -> None:
    routes = rendered(helm, "routes")
    config = routes.config
    assert "topics" not in config["kafka"]  # the chart's default gives way to the routes'
    assert "source" not in config
    orders, behaviour = config["routes"]
    assert orders["http"]["token_file"] == f"{_ROUTE_SECRETS}/orders/token/token"
    assert orders["http"]["url"] == "https://orders.api.example.com/v1/events/import"
    assert "token_file" not in behaviour.get("http", {})  # the top level's (auth's) token
    registry = behaviour["source"]["schema_registry"]
    assert registry == {
        "url": "http://schema-registry.kafka.svc:8081",
        "username_file": f"{_ROUTE_SECRETS}/user_behaviour/registry/username",
        "password_file": f"{_ROUTE_SECRETS}/user_behaviour/registry/password",
    }
    volumes = {v["name"]: v for v in routes.pod_spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in routes.container["volumeMounts"]}
    # By index in the sorted names: a route name may hold "_", a volume name may not.
    assert mounts["route-0-token"] == f"{_ROUTE_SECRETS}/orders/token"
    assert mounts["route-1-registry"] == f"{_ROUTE_SECRETS}/user_behaviour/registry"
    assert volumes["route-0-token"]["secret"]["secretName"] == "orders-api-token"
    assert volumes["route-0-token"]["secret"]["items"] == [{"key": "token", "path": "token"}]
    assert volumes["route-1-registry"]["secret"]["items"] == [
        {"key": "api-key", "path": "username"},
        {"key": "api-secret", "path": "password"},
    ]
    assert not [name for name in container_env(routes) if "REGISTRY" in name]
    # A route reading a registry opens the registry's egress.
    egress = routes.one("NetworkPolicy")["spec"]["egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in egress] == [
        [9092, 9093], [443], [443, 8081], [53, 53]
    ]  # fmt: skip


def test_a_routes_registry_bearer_token_is_one_file(helm: str) -> None:
    docs = template(
        helm,
        "--values",
        SCENARIOS["routes"],
        "--set",
        "routeSecrets.user_behaviour.registry.tokenKey=bearer",
    )
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    registry = config["routes"][1]["source"]["schema_registry"]
    assert registry["token_file"] == f"{_ROUTE_SECRETS}/user_behaviour/registry/token"
    assert "username_file" not in registry
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["route-1-registry"]["secret"]["items"] == [{"key": "bearer", "path": "token"}]


_ROUTES = ["--values", str(SCENARIOS["routes"])]
_ROUTE_MISCONFIGURATIONS = {
    "topics-next-to-routes": (
        [*_ROUTES, "--set", "config.kafka.topics={a}"],
        "config.kafka.topics is set next to config.routes",
    ),
    "source-next-to-routes": (
        [*_ROUTES, "--set", "config.source.format=json"],
        "config.source is set next to config.routes",
    ),
    "unknown-route": (
        [*_ROUTES, "--set", "routeSecrets.payments.token.existingSecret=p"],
        "routeSecrets.payments names no route of config.routes",
    ),
    "secrets-without-routes": (
        [*_MINIMAL, "--set", "routeSecrets.orders.token.existingSecret=p"],
        "routeSecrets is set but config.routes is not",
    ),
    "route-token-file": (
        [*_ROUTES, "--set", "config.routes[0].http.token_file=/t"],
        "config.routes[0].http.token_file is set by the chart",
    ),
    "registry-on-json": (
        [*_ROUTES, "--set", "routeSecrets.orders.registry.existingSecret=r"],
        "routeSecrets.orders.registry is set but config.routes[0].source.format is not confluent",
    ),
    "top-level-registry": (
        [*_ROUTES, "--set", "registry.url=http://r:8081"],
        "registry.url is for a config without routes",
    ),
    "registry-keys-by-hand": (
        [*_ROUTES, "--set", "config.routes[1].source.schema_registry.username=u"],
        "config.routes[1].source.schema_registry.username is set by the chart",
    ),
}


@pytest.mark.parametrize("case", sorted(_ROUTE_MISCONFIGURATIONS))
def test_chart_refuses_route_misconfiguration(helm: str, case: str) -> None:
    args, expected = _ROUTE_MISCONFIGURATIONS[case]
    assert expected in template_error(helm, *args)


# --- extraEnvFrom, initContainers, sidecars, extraObjects ---------------------------------------

_EXTRAS = """
extraEnvFrom:
  - configMapRef: {name: event-sink-overrides}
initContainers:
  - name: wait-for-api
    image: busybox:1.36
    command: [sh, -c, 'echo {{ include "event-sink.fullname" . }}']
sidecars:
  - name: log-shipper
    image: fluent-bit:3.0
    args: [--tag, "{{ .Release.Name }}"]
extraObjects:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: '{{ include "event-sink.fullname" . }}-extra'
    data:
      namespace: "{{ .Release.Namespace }}"
  - |
    apiVersion: v1
    kind: ServiceAccount
    metadata:
      name: {{ .Release.Name }}-from-a-string
"""


def test_extra_containers_env_from_and_objects(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "extras.yaml"
    values.write_text(_EXTRAS, encoding="utf-8")
    docs = template(helm, *_MINIMAL, "--values", values)
    assert not kube_errors(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert list(containers(docs)) == ["event-sink", "log-shipper"]  # the connector stays first
    assert containers(docs)["log-shipper"]["args"] == ["--tag", helm_chart.RELEASE]  # tpl
    (init,) = pod["initContainers"]
    assert init["command"][-1] == f"echo {FULLNAME}"
    assert containers(docs)["event-sink"]["envFrom"] == [
        {"configMapRef": {"name": "event-sink-overrides"}}
    ]
    extra = one(docs, "ConfigMap", f"{FULLNAME}-extra")
    assert extra["data"] == {"namespace": NAMESPACE}
    one(docs, "ServiceAccount", f"{helm_chart.RELEASE}-from-a-string")
    # None of it by default.
    minimal = rendered(helm, "minimal")
    assert "initContainers" not in minimal.pod_spec
    assert "envFrom" not in minimal.container
    assert len(minimal.pod_spec["containers"]) == 1


# --- PodMonitor, ServiceMonitor -------------------------------------------------------------


def test_pod_monitor_scrapes_the_pods_as_job_fullname(helm: str) -> None:
    confluent = rendered(helm, "confluent")
    monitor = confluent.one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "monitoring"  # podMonitor.namespace
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    pod_labels = confluent.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}  # the pods' namespace
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == confluent.container["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True
    assert re.fullmatch(r"[0-9]+s", endpoint["interval"])
    # The series carry job="<full name>", what the PrometheusRule's default selector expects.
    assert {"targetLabel": "job", "replacement": FULLNAME} in endpoint["relabelings"]
    assert not confluent.all("ServiceMonitor")


def test_service_monitor_namespace_and_honor_labels(helm: str) -> None:
    args = ["--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.namespace=monitoring"]
    docs = template(helm, *_MINIMAL, *args, "--set", "serviceMonitor.honorLabels=true")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    default = one(
        template(helm, *_MINIMAL, "--set", "serviceMonitor.enabled=true"), "ServiceMonitor"
    )
    assert default["metadata"]["namespace"] == NAMESPACE
    assert default["spec"]["endpoints"][0]["honorLabels"] is False


def test_service_monitor_and_pod_monitor_together_fail(helm: str) -> None:
    args = ["--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"]
    error = template_error(helm, *_MINIMAL, *args)
    assert "serviceMonitor.enabled and podMonitor.enabled are both true" in error


# --- the dashboard, the CPU request, Chart.yaml -----------------------------------------------


def dashboard(helm: str, release: str, namespace: str) -> dict[str, Any]:
    proc = run_helm(
        helm, "template", release, CHART, "--namespace", namespace, *_MINIMAL,
        "--set", "grafanaDashboard.enabled=true",
        "--show-only", "templates/grafana-dashboard.yaml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = yaml.safe_load(yaml.safe_load(proc.stdout)["data"]["event-sink.json"])
    return data


def test_dashboard_uid_is_unique_per_release(helm: str) -> None:
    long_name = "team.a-release-name-well-beyond-forty-characters-uid"  # dots are allowed
    releases = [("es", "event-sink"), ("es", "staging"), ("other", "event-sink")]
    boards = {
        (release, ns): dashboard(helm, release, ns)
        for release, ns in [*releases, (long_name, "event-sink")]
    }
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids), uids
    for uid in uids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), uid  # Grafana's limit
    assert dashboard(helm, "es", "event-sink")["uid"] == boards["es", "event-sink"]["uid"]
    assert len({board["title"] for board in boards.values()}) == len(boards)
    assert "event-sink/es-event-sink" in boards["es", "event-sink"]["title"]


def cpu_request(docs: list[dict[str, Any]]) -> str:
    value: str = containers(docs)["event-sink"]["resources"]["requests"]["cpu"]
    return value


def test_cpu_request_is_one_core_per_worker(helm: str) -> None:
    assert cpu_request(rendered(helm, "minimal").docs) == "1000m"
    assert cpu_request(template(helm, *_MINIMAL, "--set", "config.workers=3")) == "3000m"
    explicit = ["--set", "config.workers=3", "--set", "resources.requests.cpu=250m"]
    assert cpu_request(template(helm, *_MINIMAL, *explicit)) == "250m"
    assert cpu_request(rendered(helm, "full-monitoring").docs) == "500m"  # the scenario's own
    # The memory request and limit stay as given.
    resources = rendered(helm, "minimal").container["resources"]
    assert resources["requests"]["memory"] == "256Mi"
    assert resources["limits"] == {"memory": "512Mi"}


def test_chart_yaml_has_artifact_hub_annotations() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    annotations = chart["annotations"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert annotations["artifacthub.io/license"] == pyproject["project"]["license"]
    changes = yaml.safe_load(annotations["artifacthub.io/changes"])
    assert changes
    kinds = {"added", "changed", "deprecated", "removed", "fixed", "security"}
    for change in changes:
        assert set(change) <= {"kind", "description", "links"}, change
        assert change["kind"] in kinds
        assert change["description"].strip()
    assert annotations["artifacthub.io/containsSecurityUpdates"] in {"true", "false"}


def test_pass_through_schemas_are_the_floor_versions() -> None:
    """scripts/chart-schema pins the Kubernetes schema of the chart's oldest version."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    props = schema["properties"]
    for key in ("podSecurityContext", "securityContext", "resources", "livenessProbe"):
        assert f"Kubernetes {KUBE_VERSIONS[0]} " in props[key]["description"], key
        assert props[key]["additionalProperties"] is False, key
    assert props["sidecars"]["items"]["required"] == ["name"]
