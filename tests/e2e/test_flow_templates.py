"""Flows from FlowTemplates, end to end: real API server, redis-server, Python and Node workers."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import yaml

from tests.e2e.flows import EXAMPLES, Flows, condition, nodes_by_name
from tests.e2e.operator_proc import OperatorProcess

TEMPLATES = EXAMPLES / "templates"


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((TEMPLATES / name).read_text())


def flow_doc(name: str, template: str, arguments: dict[str, Any], prefix: str) -> dict:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {"templateRef": {"name": template}, "arguments": arguments, "prefix": prefix},
    }


def template_doc(name: str, spec: dict[str, Any]) -> dict:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "FlowTemplate",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(kubectl: Any, namespace: str, doc: dict) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))


def keys(redis_url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return list(client.scan_iter(match=f"{prefix}:*"))
    finally:
        client.close()


def ready_reason(flows: Flows, name: str, reason: str) -> dict[str, Any]:
    def seen(flow: dict[str, Any]) -> bool:
        conditions = (flow.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["reason"] == reason for c in conditions)

    return flows.wait_for(name, seen, f"Ready reason {reason}", timeout=30)


@pytest.mark.parametrize("language", ["python", "node"])
def test_map_reduce_template_fans_out_and_completes(
    language, operator, workers, flows, kubectl, namespace, redis_prefix
):
    apply(kubectl, namespace, example("map-reduce-template.yaml"))
    doc = example("map-reduce.yaml")
    doc["spec"]["prefix"] = redis_prefix
    workers.start(language, ["mapreduce-map", "mapreduce-reduce"], redis_prefix)
    flows.apply(doc)
    flow = flows.wait(doc["metadata"]["name"], timeout=90)
    status = flow["status"]
    assert status["phase"] == "Completed", status["conditions"]
    assert status["result"] == 4950
    assert status["progress"] == "101/101"
    reduce = nodes_by_name(flow)["reduce"]
    assert [v["name"] for v in reduce["childrenValues"]] == [f"map-{i}" for i in range(100)]
    assert [v["value"] for v in reduce["childrenValues"]] == list(range(100))
    record = status["template"]
    assert record["name"] == "map-reduce" and record["digest"].startswith("sha256:")
    assert record["uid"] and record["generation"] == 1


def test_report_template_with_parameters(
    operator, workers, flows, kubectl, namespace, redis_prefix
):
    apply(kubectl, namespace, example("report-template.yaml"))
    doc = example("report.yaml")
    doc["spec"]["prefix"] = redis_prefix
    workers.start("python", ["reports", "report-sections"], redis_prefix)
    flows.apply(doc)
    flow = flows.wait(doc["metadata"]["name"], timeout=90)
    assert flow["status"]["phase"] == "Completed", flow["status"]["conditions"]
    nodes = nodes_by_name(flow)
    assert "assemble-report-2024-05" in nodes
    values = [v["value"] for v in nodes["assemble-report-2024-05"]["childrenValues"]]
    assert values == ["sales: 1.2M", "costs: 0.8M", "3 charts"]


SLOW = {
    "parameters": [{"name": "label", "type": "string", "required": True}],
    "root": {
        "name": "slow-${params.label}",
        "queueName": "tpl",
        "data": {"sleepSeconds": 3, "result": "${params.label}-v1"},
    },
}
EDITED = {
    "parameters": [{"name": "label", "type": "string", "required": True}],
    "root": {
        "name": "edited-${params.label}",
        "queueName": "tpl",
        "data": {"combine": "collect"},
        "children": [{"name": "extra", "queueName": "tpl", "data": {"result": "v2"}}],
    },
}


def test_template_edited_while_a_flow_runs_does_not_change_it(
    operator, workers, flows, kubectl, namespace, redis_prefix
):
    apply(kubectl, namespace, template_doc("slow", SLOW))
    workers.start("python", ["tpl"], redis_prefix)
    flows.apply(flow_doc("first", "slow", {"label": "a"}, redis_prefix))
    running = flows.wait("first", ("Submitted", "Running"), timeout=30)
    recorded = running["status"]["template"]
    apply(kubectl, namespace, template_doc("slow", EDITED))
    first = flows.wait("first", timeout=60)
    assert first["status"]["phase"] == "Completed"
    assert first["status"]["result"] == "a-v1"
    assert first["status"]["totalNodes"] == 1
    assert first["status"]["template"] == recorded  # recorded once, never re-read
    flows.apply(flow_doc("second", "slow", {"label": "b"}, redis_prefix))
    second = flows.wait("second", timeout=60)
    assert second["status"]["phase"] == "Completed"
    assert second["status"]["totalNodes"] == 2
    assert second["status"]["template"]["generation"] == recorded["generation"] + 1
    assert second["status"]["template"]["digest"] != recorded["digest"]


def test_missing_template_waits_then_runs_when_created(
    operator, workers, flows, kubectl, namespace, redis_prefix, redis_url
):
    flows.apply(flow_doc("early", "later", {"label": "z"}, redis_prefix))
    flow = ready_reason(flows, "early", "TemplateNotFound")
    assert "FlowTemplate later does not exist" in condition(flow, "Ready")["message"]
    assert flow["status"]["phase"] == "Pending"
    assert keys(redis_url, redis_prefix) == []
    workers.start("python", ["tpl"], redis_prefix)
    apply(kubectl, namespace, template_doc("later", {**SLOW, "root": {**SLOW["root"]}}))
    done = flows.wait("early", timeout=60)
    assert done["status"]["phase"] == "Completed"
    assert done["status"]["result"] == "z-v1"


@pytest.mark.parametrize(
    ("arguments", "reason", "message"),
    [
        ({}, "InvalidArguments", "parameter 'label' is required"),
        ({"label": 5}, "InvalidArguments", "parameter 'label' must be a string, got number"),
        ({"label": "x", "other": 1}, "InvalidArguments", "unknown parameter 'other'"),
    ],
)
def test_bad_arguments_are_reported_and_nothing_is_submitted(
    arguments, reason, message, operator, flows, kubectl, namespace, redis_prefix, redis_url
):
    apply(kubectl, namespace, template_doc("slow", SLOW))
    flows.apply(flow_doc("bad", "slow", arguments, redis_prefix))
    flow = ready_reason(flows, "bad", reason)
    assert message in condition(flow, "Ready")["message"]
    assert "submittedAt" not in flow["status"] and "template" not in flow["status"]
    assert keys(redis_url, redis_prefix) == []


def test_bad_template_is_reported_and_the_operator_keeps_serving(
    operator, workers, flows, kubectl, namespace, redis_prefix, redis_url
):
    broken = {"root": {"name": "${params.nope}", "queueName": "tpl"}}
    apply(kubectl, namespace, template_doc("broken", broken))
    flows.apply(flow_doc("uses-broken", "broken", {}, redis_prefix))
    flow = ready_reason(flows, "uses-broken", "InvalidTemplate")
    assert "spec.root.name" in condition(flow, "Ready")["message"]
    assert keys(redis_url, redis_prefix) == []
    # Fixing the template wakes the Flow waiting for it.
    workers.start("python", ["tpl"], redis_prefix)
    fixed = {"root": {"name": "fixed", "queueName": "tpl", "data": {"result": "ok"}}}
    apply(kubectl, namespace, template_doc("broken", fixed))
    done = flows.wait("uses-broken", timeout=60)
    assert done["status"]["phase"] == "Completed" and done["status"]["result"] == "ok"


def test_admission_refuses_a_tree_and_a_template_ref_together(kubectl, flow_crds, namespace):
    doc = flow_doc("both", "slow", {}, "bull")
    doc["spec"]["root"] = {"name": "x", "queueName": "q"}
    with pytest.raises(RuntimeError, match="exactly one of root, roots or templateRef"):
        apply(kubectl, namespace, doc)


def test_operator_restart_follows_the_recorded_tree_not_the_edited_template(
    local_cluster,
    redis_server,
    private_namespace,
    tmp_path,
    flow_crds,
    kube_client,
    kubectl,
    workers,
    redis_prefix,
):
    operator = OperatorProcess(
        local_cluster.kubeconfig,
        redis_server.url,
        tmp_path / "op",
        namespaces=[private_namespace],
    )
    try:
        operator.start()
        flows = Flows(kube_client, kubectl, private_namespace)
        apply(kubectl, private_namespace, template_doc("slow", SLOW))
        flows.apply(flow_doc("kept", "slow", {"label": "k"}, redis_prefix))
        submitted = flows.wait("kept", ("Submitted",), timeout=30)  # no workers yet
        operator.stop()
        apply(kubectl, private_namespace, template_doc("slow", EDITED))
        workers.start("python", ["tpl"], redis_prefix)
        operator.start()
        done = flows.wait("kept", timeout=60)
    finally:
        operator.stop()
    assert done["status"]["phase"] == "Completed"
    assert done["status"]["result"] == "k-v1" and done["status"]["totalNodes"] == 1
    assert done["status"]["template"] == submitted["status"]["template"]
