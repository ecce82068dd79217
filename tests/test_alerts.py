"""The chart's alerts, checked and unit-tested by the real promtool.

The PrometheusRule of the ``full-monitoring`` scenario is rendered by helm, written as a
Prometheus rule file and given to ``promtool check rules`` (syntax, and the annotation
templates). ``promtool test rules`` then evaluates every alert on synthetic series: each has
a case where it fires, with its exact labels, and one where it does not. promtool is the
pinned one of Debian's prometheus package (scripts/promtool-tool). The unit tests run on a
copy without annotations, because promtool compares rendered annotations as exact strings;
their templates are what ``check rules`` checks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import FULLNAME, NAMESPACE, ROOT, helm, rendered  # noqa: F401  (helm: a fixture)

SEL = f'job="{FULLNAME}", namespace="{NAMESPACE}"'
TEAM = {"team": "data-platform"}  # full-monitoring's additionalAlertLabels
WHO = {"job": FULLNAME, "namespace": NAMESPACE}
DESIRED = f'kube_deployment_spec_replicas{{namespace="{NAMESPACE}", deployment="{FULLNAME}"}}'


@dataclass(frozen=True)
class Case:
    alert: str
    what: str
    series: Mapping[str, str]  # series selector -> promtool values, one sample a minute
    at: str  # eval_time
    fires: list[dict[str, str]] = field(default_factory=list)  # exact labels of each alert


def labels(severity: str, **extra: str) -> dict[str, str]:
    return {**extra, "severity": severity, **TEAM}


R = 'route="default"'
LAG = f'event_sink_consumer_lag{{{SEL}, {R}, topic="t", partition="0", pod="p"}}'
DELIVERED = f'event_sink_records_delivered_total{{{SEL}, {R}, pod="p"}}'
# Two routes: "orders" waits with lag while "default" delivers.
LAG_ORDERS = f'event_sink_consumer_lag{{{SEL}, route="orders", topic="o", partition="0", pod="p"}}'
DELIVERED_ORDERS = f'event_sink_records_delivered_total{{{SEL}, route="orders", pod="p"}}'
PAUSED = f'event_sink_paused{{{SEL}, {R}, pod="p", reason="auth"}}'
DEAD = f'event_sink_records_dead_lettered_total{{{SEL}, {R}, pod="p", stage="deliver", reason="refused"}}'  # noqa: E501
HTTP = f'event_sink_http_requests_total{{{SEL}, pod="p", code="%s"}}'
COMMITS = f'event_sink_offset_commits_total{{{SEL}, pod="p", outcome="failure"}}'
UP = f'up{{{SEL}, instance="10.0.0.1:9400", pod="p"}}'
DOWN = {"namespace": NAMESPACE, "deployment": FULLNAME}

CASES = [
    Case("EventSinkLagGrowing", "lag above minLag, rising for 40 min",
         {LAG: "2000+100x60"}, "40m", [labels("warning", **WHO, topic="t")]),
    Case("EventSinkLagGrowing", "a high but flat lag", {LAG: "5000x60"}, "40m"),
    Case("EventSinkLagGrowing", "a rising lag below minLag", {LAG: "100+1x60"}, "40m"),
    Case("EventSinkNotDelivering", "lag, and the delivered counter flat for 30 min",
         {LAG: "500x40", DELIVERED: "100x40"}, "30m", [labels("critical", **WHO, route="default")]),
    Case("EventSinkNotDelivering", "one route stuck while another delivers",
         {LAG: "500x40", DELIVERED: "100+50x40", LAG_ORDERS: "300x40", DELIVERED_ORDERS: "7x40"},
         "30m", [labels("critical", **WHO, route="orders")]),
    Case("EventSinkNotDelivering", "lag while delivering",
         {LAG: "500x40", DELIVERED: "100+50x40"}, "30m"),
    Case("EventSinkHaltedOnAuth", "paused on auth for 10 min",
         {PAUSED: "1x20"}, "10m", [labels("critical", **WHO, pod="p", route="default")]),
    Case("EventSinkHaltedOnAuth", "not paused", {PAUSED: "0x20"}, "10m"),
    Case("EventSinkDeadLetters", "5 dead letters a minute", {DEAD: "0+5x20"}, "15m",
         [labels("warning", **WHO, route="default", stage="deliver", reason="refused")]),
    Case("EventSinkDeadLetters", "the counter flat", {DEAD: "5x20"}, "15m"),
    Case("EventSinkHigh5xxRatio", "10 % of requests 5xx for 35 min",
         {HTTP % "5xx": "0+10x40", HTTP % "2xx": "0+90x40"}, "35m", [labels("warning", **WHO)]),
    Case("EventSinkHigh5xxRatio", "1 % of requests 5xx",
         {HTTP % "5xx": "0+1x40", HTTP % "2xx": "0+99x40"}, "35m"),
    Case("EventSinkCommitFailures", "a failed commit every minute", {COMMITS: "0+1x40"}, "35m",
         [labels("warning", **WHO)]),
    Case("EventSinkCommitFailures", "no failure for 40 min", {COMMITS: "3x40"}, "35m"),
    Case("EventSinkDown", "no target and no kube-state-metrics", {"unrelated": "1x20"}, "10m",
         [labels("critical", **DOWN)]),
    Case("EventSinkDown", "the target down, 2 replicas wanted",
         {UP: "0x20", DESIRED: "2x20"}, "10m", [labels("critical", **DOWN)]),
    Case("EventSinkDown", "no target, KEDA at 0 replicas", {DESIRED: "0x20"}, "10m"),
    Case("EventSinkDown", "the target up", {UP: "1x20", DESIRED: "1x20"}, "10m"),
    Case("EventSinkDown", "down for less than `for`", {UP: "1x6 0x5", DESIRED: "1x12"}, "9m"),
]  # fmt: skip


@pytest.fixture(scope="module")
def promtool() -> str:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "promtool-tool")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"scripts/promtool-tool failed:\n{proc.stderr[-4000:]}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def groups(helm: str) -> list[dict[str, Any]]:  # noqa: F811  (the fixture)
    rule = rendered(helm, "full-monitoring").one("PrometheusRule")
    found: list[dict[str, Any]] = rule["spec"]["groups"]
    return found


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"]}


def promtool_run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_pass_promtool_check(
    promtool: str, groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    proc = promtool_run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_names(groups))} rules found" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case(groups: list[dict[str, Any]]) -> None:
    assert {case.alert for case in CASES if case.fires} == alert_names(groups)
    assert {case.alert for case in CASES if not case.fires} == alert_names(groups)


def unit_tests(cases: list[Case]) -> dict[str, Any]:
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": f"{case.alert}: {case.what}",
                "interval": "1m",
                "input_series": [
                    {"series": series, "values": values} for series, values in case.series.items()
                ],
                "alert_rule_test": [
                    {
                        "eval_time": case.at,
                        "alertname": case.alert,
                        "exp_alerts": [{"exp_labels": fired} for fired in case.fires],
                    }
                ],
            }
            for case in cases
        ],
    }


def without_annotations(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **group,
            "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]],
        }
        for group in groups
    ]


def test_every_alert_fires_when_it_should_and_only_then(
    promtool: str, groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": without_annotations(groups)}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(unit_tests(CASES), sort_keys=False))
    proc = promtool_run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
    print(f"\npromtool test rules: {len(CASES)} cases: {proc.stdout.strip()}")


def test_a_wrong_expectation_fails_promtool(
    promtool: str, groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The harness can fail: KEDA at zero replicas expected to fire is refused."""
    quiet = next(c for c in CASES if c.alert == "EventSinkDown" and "KEDA" in c.what)
    wrong = Case(quiet.alert, quiet.what, quiet.series, quiet.at, [labels("critical", **DOWN)])
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": without_annotations(groups)}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(unit_tests([wrong]), sort_keys=False))
    proc = promtool_run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout + proc.stderr
