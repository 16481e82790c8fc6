"""The chart's alert rules and Grafana dashboard, checked with the real promtool.

Rendered with `helm template` (both enabled): the PrometheusRule's groups pass
`promtool check rules`; every dashboard query parses (each becomes a recording rule of a file
promtool checks); `promtool test rules` on synthetic series shows each alert firing when it
should and not before; every metric a query names is one docs/metrics.md documents (which
tests/unit/test_metrics_docs.py keeps equal to the registries)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.tools import Tools, ensure_promtool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bullflow"
DOC = ROOT / "docs" / "metrics.md"
NAMESPACE = "mon"
JOB = "bf-bullflow-metrics"  # the metrics Service's name: the job label of the ServiceMonitor
SEL = f'job="{JOB}",namespace="{NAMESPACE}"'
# Grafana's interval variables are not PromQL; promtool sees what Grafana would send.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_promtool()


@pytest.fixture(scope="module")
def rendered(harness_tools: Tools) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [
            str(harness_tools.helm),
            "template",
            "bf",
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            "1.34.4",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "grafanaDashboard.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = ("PrometheusRule", "ServiceMonitor")
    out = {d["kind"]: d for d in docs if d["kind"] in kinds}
    out["Service"] = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics")
    )
    return out | {
        "dashboard": next(
            d
            for d in docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
        )
    }


@pytest.fixture(scope="module")
def rules_file(
    rendered: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("rules") / "bullflow-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rendered["PrometheusRule"]["spec"]["groups"]}))
    return path


def dashboard(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return json.loads(rendered["dashboard"]["data"]["bullflow.json"])


def dashboard_queries(rendered: dict[str, dict[str, Any]]) -> dict[str, str]:
    """record name -> query, Grafana's variables replaced."""
    queries = {}
    for panel in dashboard(rendered)["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            queries[f"dashboard:panel{panel['id']}:{target['refId']}"] = expr
    return queries


def promtool_run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def documented_metrics() -> set[str]:
    return set(re.findall(r"^### `([a-z_:]+)`$", DOC.read_text(), re.M))


def test_the_rendered_objects(rendered: dict[str, dict[str, Any]]) -> None:
    rule = rendered["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "BullflowFlowsFailing",
        "BullflowRedisUnavailable",
        "BullflowBacklogGrowing",
        "BullflowOperatorDown",
    }
    cm = rendered["dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    # the ConfigMap carries the dashboard file as it is
    assert dashboard(rendered) == json.loads((CHART / "dashboards" / "bullflow.json").read_text())
    # the job the alerts select is the one the ServiceMonitor's scrape gives: without a
    # jobLabel, the prometheus-operator names the job after the Service it scrapes
    assert "jobLabel" not in rendered["ServiceMonitor"]["spec"]
    service = rendered["Service"]
    assert service["metadata"]["name"] == JOB
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_promtool_checks_the_rules(promtool: Path, rules_file: Path) -> None:
    proc = promtool_run(promtool, "check", "rules", str(rules_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 rules found" in proc.stdout


def test_every_dashboard_query_parses(
    promtool: Path, rendered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    queries = dashboard_queries(rendered)
    assert len(queries) >= 10
    rules = [{"record": name, "expr": expr} for name, expr in queries.items()]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = promtool_run(promtool, "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and a broken query would not pass (the check is not vacuous)
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(("}]}]})
    )
    assert promtool_run(promtool, "check", "rules", str(path)).returncode != 0


def test_every_example_in_the_docs_parses(promtool: Path, tmp_path: Path) -> None:
    examples = re.findall(r"- Example:\s*`([^`]+)`", DOC.read_text())
    assert len(examples) == len(documented_metrics())
    rules = [{"record": f"doc:example{i}", "expr": e} for i, e in enumerate(examples)]
    path = tmp_path / "doc-examples.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    proc = promtool_run(promtool, "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_metric_queried_is_documented(
    rendered: dict[str, dict[str, Any]], rules_file: Path
) -> None:
    documented = documented_metrics()
    exprs = list(dashboard_queries(rendered).values())
    exprs += [
        r["expr"] for g in yaml.safe_load(rules_file.read_text())["groups"] for r in g["rules"]
    ]
    used = set()
    for expr in exprs:
        used |= {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"bullflow_\w+", expr)}
    assert used, "no bullflow metric in the queries"
    assert used <= documented, f"not documented: {sorted(used - documented)}"
    panels = " ".join(p["title"].lower() for p in dashboard(rendered)["panels"])
    for topic in (
        "phase",
        "outcome",
        "duration",
        "submissions",
        "status write",
        "redis",
        "backlog",
        "replicas",
        "up",
    ):
        assert topic in panels, topic


def alerts_test_file(rules_file: Path) -> dict[str, Any]:
    """promtool unit tests: each alert fires on synthetic series once its `for` has passed,
    and not on healthy ones."""
    ok = {"severity": "warning"}
    critical = {"severity": "critical"}
    return {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {  # 1 flow in 2 fails: above 10%, for 10m
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'bullflow_flows_finished_total{{{SEL},outcome="failed"}}',
                        "values": "0+1x60",
                    },
                    {
                        "series": f'bullflow_flows_finished_total{{{SEL},outcome="completed"}}',
                        "values": "0+1x60",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "BullflowFlowsFailing", "exp_alerts": []},
                    {
                        "eval_time": "30m",
                        "alertname": "BullflowFlowsFailing",
                        "exp_alerts": [{"exp_labels": ok}],
                    },
                ],
            },
            {  # all completed: nothing fails; the operator is up
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'bullflow_flows_finished_total{{{SEL},outcome="failed"}}',
                        "values": "0x60",
                    },
                    {
                        "series": f'bullflow_flows_finished_total{{{SEL},outcome="completed"}}',
                        "values": "0+5x60",
                    },
                    {"series": f"up{{{SEL}}}", "values": "1x60"},
                ],
                "alert_rule_test": [
                    {"eval_time": "40m", "alertname": "BullflowFlowsFailing", "exp_alerts": []},
                    {"eval_time": "40m", "alertname": "BullflowOperatorDown", "exp_alerts": []},
                ],
            },
            {  # the operator goes down at 10m: fires 5m later
                "interval": "1m",
                "input_series": [{"series": f"up{{{SEL}}}", "values": "1x9 0x30"}],
                "alert_rule_test": [
                    {"eval_time": "12m", "alertname": "BullflowOperatorDown", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "BullflowOperatorDown",
                        "exp_alerts": [{"exp_labels": critical}],
                    },
                ],
            },
            {  # no operator scraped at all (another job only): absent() fires
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{job="other",namespace="{NAMESPACE}"}}', "values": "1x30"}
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "BullflowOperatorDown",
                        "exp_alerts": [{"exp_labels": critical}],
                    },
                ],
            },
            {  # Redis reads fail for 10 minutes
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'bullflow_redis_errors_total{{{SEL},operation="read"}}',
                        "values": "0+6x20",
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "BullflowRedisUnavailable",
                        "exp_alerts": [{"exp_labels": {**critical, "operation": "read"}}],
                    },
                ],
            },
            {  # a queue's backlog grows past 100 and keeps growing
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'bullflow_queue_backlog{{{SEL},redis="redis://r:6379/0",prefix="bull",queue="q",state="waiting"}}',
                        "values": "0+10x120",
                    },
                    {
                        "series": f'bullflow_queue_backlog{{{SEL},redis="redis://r:6379/0",prefix="bull",queue="idle",state="waiting"}}',
                        "values": "500x120",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "100m",
                        "alertname": "BullflowBacklogGrowing",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    **ok,
                                    "redis": "redis://r:6379/0",
                                    "prefix": "bull",
                                    "queue": "q",
                                }
                            }
                        ],
                    },
                ],
            },
        ],
    }


def test_promtool_unit_tests_of_the_alerts(
    promtool: Path, rules_file: Path, tmp_path: Path
) -> None:
    # Annotations are templates of the firing values; promtool compares them verbatim, so the
    # unit tests run on the same rules without them (check rules above parses the templates).
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare = tmp_path / "rules.yaml"
    bare.write_text(yaml.safe_dump({"groups": groups}))
    tests = tmp_path / "alerts_test.yaml"
    tests.write_text(yaml.safe_dump(alerts_test_file(bare)))
    proc = promtool_run(promtool, "test", "rules", str(tests))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
