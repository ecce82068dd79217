"""The chart's custom resources and monitoring: ServiceMonitor, PrometheusRule, ScaledObject,
the Grafana dashboard, the NetworkPolicy, the helm test pod and the NOTES (the real helm)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import helm_chart
import pytest
import yaml
from helm_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Rendered,
    rendered,
    run_helm,
)
from prometheus_client import CollectorRegistry

from connector import metrics

# The first test builds helm from source (minutes on a fresh machine); every subprocess here
# has its own timeout, so a hang still fails.
pytestmark = pytest.mark.timeout(1500)
helm = helm_chart.helm  # the session fixture that builds (or finds) the pinned helm
scenario = helm_chart.scenario  # each ci/*-values.yaml, rendered once


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
