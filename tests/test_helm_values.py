"""Values the chart refuses: its JSON schema, and the misconfigurations its templates catch
(checked with the real helm)."""

from __future__ import annotations

import subprocess
import sys

import helm_chart
import pytest
from helm_chart import (
    ROOT,
    SCENARIOS,
    template_error,
)

# The first test builds helm from source (minutes on a fresh machine); every subprocess here
# has its own timeout, so a hang still fails.
pytestmark = pytest.mark.timeout(1500)
helm = helm_chart.helm  # the session fixture that builds (or finds) the pinned helm
scenario = helm_chart.scenario  # each ci/*-values.yaml, rendered once


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
