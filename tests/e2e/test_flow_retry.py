"""Retry of failed flows in place (bullflow.io/retry), end to end: real API server, redis-server,
the operator as a process, Python and Node.js BullMQ workers. Every case counts each job's
executions from BullMQ's own events ("active" is written each time a worker takes a job): a
completed job must not run again."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis

from tests.e2e.flows import Flows, condition, nodes_by_name

# failTimes 1 with one attempt: the job fails its first run and passes once retried (its
# attemptsMade is then 1), with Python and Node workers alike.
FLAKY = {"failTimes": 1}


def executions(redis_url: str, prefix: str, queues: set[str]) -> Counter[str]:
    """How many times a worker took each job (job id -> count)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    seen: Counter[str] = Counter()
    for queue in queues:
        for _, fields in client.xrange(f"{prefix}:{queue}:events"):
            if fields.get("event") == "active":
                seen[fields["jobId"]] += 1
    return seen


def by_path(flow: dict[str, Any], counts: Counter[str]) -> dict[str, int]:
    uid = flow["metadata"]["uid"]
    return {n["path"]: counts[f"bf-{uid}-{n['path']}"] for n in flow["status"]["nodes"]}


def flow_doc(name: str, prefix: str, root: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {"prefix": prefix, "root": root},
    }


def annotate(kubectl: Any, namespace: str, name: str, **values: str) -> None:
    pairs = [f"bullflow.io/{k.replace('_', '-')}={v}" for k, v in values.items()]
    kubectl("annotate", "--overwrite", "-n", namespace, f"flow/{name}", *pairs)


def queues(node: dict[str, Any]) -> set[str]:
    return {node["queueName"]}.union(*(queues(c) for c in node.get("children", [])))


def run_until_failed(flows: Flows, workers: Any, language: str, doc: dict[str, Any]) -> dict:
    workers.start(language, sorted(queues(doc["spec"]["root"])), doc["spec"]["prefix"])
    flows.apply(doc)
    flow = flows.wait(doc["metadata"]["name"], timeout=90)
    assert flow["status"]["phase"] == "Failed", flow["status"]
    return flow


def default_tree() -> dict[str, Any]:
    return {
        "name": "parent",
        "queueName": "rt-parent",
        "data": {"combine": "sum"},
        "children": [
            {"name": "good", "queueName": "rt-child", "data": {"result": 40}},
            {
                "name": "flaky",
                "queueName": "rt-child",
                "data": {**FLAKY, "result": 2},
                "opts": {"attempts": 1},
            },
        ],
    }


@pytest.mark.parametrize("language", ["python", "node"])
def test_retry_failed_child_runs_only_it_then_the_parent(
    language, operator, workers, flows, kubectl, namespace, redis_prefix, redis_server
):
    doc = flow_doc("retry-default", redis_prefix, default_tree())
    failed = run_until_failed(flows, workers, language, doc)
    assert condition(failed, "Failed")["reason"] == "ChildFailed"
    assert nodes_by_name(failed)["parent"]["state"] == "waiting-children"

    annotate(kubectl, namespace, "retry-default", retry="fix-1")
    flow = flows.wait("retry-default", ("Completed",), timeout=90)

    status = flow["status"]
    assert status["result"] == 42
    assert status["lastHandledRetry"] == "fix-1" and status["retryCount"] == 1
    assert status["retries"][0]["nodes"] == ["0.1"]
    retried = condition(flow, "Retried")
    assert retried["status"] == "True" and "fix-1" in retried["message"]
    runs = by_path(flow, executions(redis_server.url, redis_prefix, queues(doc["spec"]["root"])))
    assert runs == {"0": 1, "0.0": 1, "0.1": 2}
    assert nodes_by_name(flow)["flaky"]["attemptsMade"] == 2


def test_retry_with_reset_attempts_and_node_name(
    operator, workers, flows, kubectl, namespace, redis_prefix, redis_server
):
    """reset-attempts: attemptsMade starts again from 0, so failTimes 1 fails the retry too;
    the flow is Failed again and a second token retries it (then with attempts kept)."""
    doc = flow_doc("retry-reset", redis_prefix, default_tree())
    run_until_failed(flows, workers, "python", doc)

    annotate(kubectl, namespace, "retry-reset", retry_nodes="flaky", retry_reset_attempts="true")
    annotate(kubectl, namespace, "retry-reset", retry="b")
    flow = flows.wait_for(
        "retry-reset",
        lambda f: f["status"].get("lastHandledRetry") == "b" and f["status"]["phase"] == "Failed",
        "the reset retry failed again",
        timeout=90,
    )
    assert flow["status"]["retries"][-1] == {
        "value": "b",
        "time": flow["status"]["retries"][-1]["time"],
        "nodes": ["0.1"],
        "resetAttempts": True,
    }
    assert nodes_by_name(flow)["flaky"]["attemptsMade"] == 1

    kubectl(
        "annotate",
        "--overwrite",
        "-n",
        namespace,
        "flow/retry-reset",
        "bullflow.io/retry-reset-attempts-",
        "bullflow.io/retry=c",
    )
    flow = flows.wait("retry-reset", ("Completed",), timeout=90)
    assert flow["status"]["result"] == 42
    runs = by_path(flow, executions(redis_server.url, redis_prefix, queues(doc["spec"]["root"])))
    assert runs["0.0"] == 1 and runs["0"] == 1
    assert runs["0.1"] == 3 and flow["status"]["retryCount"] == 2


def test_bad_retry_requests_are_refused_and_the_operator_keeps_serving(
    operator, workers, flows, kubectl, namespace, redis_prefix
):
    doc = flow_doc("retry-bad", redis_prefix, default_tree())
    run_until_failed(flows, workers, "python", doc)

    annotate(kubectl, namespace, "retry-bad", retry="x1", retry_nodes="no-such-node")
    flow = flows.wait_for(
        "retry-bad", lambda f: f["status"].get("lastHandledRetry") == "x1", "refusal", 30
    )
    refused = condition(flow, "Retried")
    assert refused["status"] == "False" and refused["reason"] == "RetryRefused"
    assert "no-such-node" in refused["message"] and flow["status"]["phase"] == "Failed"

    annotate(kubectl, namespace, "retry-bad", retry="x2", retry_nodes="good")
    flow = flows.wait_for(
        "retry-bad", lambda f: f["status"].get("lastHandledRetry") == "x2", "refusal", 30
    )
    assert "0.0 (good) is completed" in condition(flow, "Retried")["message"]

    kubectl(
        "annotate",
        "--overwrite",
        "-n",
        namespace,
        "flow/retry-bad",
        "bullflow.io/retry-nodes-",
        "bullflow.io/retry=x3",
    )
    flow = flows.wait("retry-bad", ("Completed",), timeout=90)
    annotate(kubectl, namespace, "retry-bad", retry="x4")
    flow = flows.wait_for(
        "retry-bad", lambda f: f["status"].get("lastHandledRetry") == "x4", "refusal", 30
    )
    assert flow["status"]["phase"] == "Completed"
    assert "Completed" in condition(flow, "Retried")["message"]
    assert flow["status"]["retryCount"] == 1


def fail_parent_tree() -> dict[str, Any]:
    fpof = {"attempts": 1, "failParentOnFailure": True}
    return {
        "name": "root",
        "queueName": "rt-parent",
        "data": {"combine": "collect"},
        "children": [
            {"name": "done", "queueName": "rt-child", "data": {"result": "d"}},
            {
                "name": "mid",
                "queueName": "rt-parent",
                "data": {"combine": "collect"},
                "opts": fpof,
                "children": [
                    {"name": "ok", "queueName": "rt-child", "data": {"result": "o"}},
                    {"name": "bad", "queueName": "rt-child", "data": FLAKY, "opts": fpof},
                ],
            },
        ],
    }


@pytest.mark.parametrize("language", ["python", "node"])
def test_retry_fail_parent_chain_resumes_from_the_failure(
    language, operator, workers, flows, kubectl, namespace, redis_prefix, redis_server
):
    """bad fails mid fails root (failParentOnFailure): the retry sends bad back to wait and
    mid and root back to waiting-children; done and ok do not run again and their values
    still reach their parents."""
    doc = flow_doc("retry-fpof", redis_prefix, fail_parent_tree())
    failed = run_until_failed(flows, workers, language, doc)
    assert condition(failed, "Failed")["reason"] == "JobFailed"

    annotate(kubectl, namespace, "retry-fpof", retry="fix")
    flow = flows.wait_for(
        "retry-fpof",
        lambda f: (
            f["status"].get("lastHandledRetry") == "fix"
            and f["status"]["phase"] in ("Completed", "Failed")
        ),
        "the retried flow finished",
        timeout=90,
    )
    assert flow["status"]["phase"] == "Completed", flow["status"]

    uid = flow["metadata"]["uid"]
    key = lambda queue, path: f"{redis_prefix}:{queue}:bf-{uid}-{path}"  # noqa: E731
    mid_value = {key("rt-child", "0.1.0"): "o", key("rt-child", "0.1.1"): None}
    assert flow["status"]["result"] == {
        key("rt-child", "0.0"): "d",
        key("rt-parent", "0.1"): mid_value,
    }
    assert flow["status"]["retries"][0]["nodes"] == ["0", "0.1", "0.1.1"]
    runs = by_path(flow, executions(redis_server.url, redis_prefix, queues(doc["spec"]["root"])))
    assert runs["0.0"] == 1 and runs["0.1.0"] == 1 and runs["0.1.1"] == 2
    # A parent failed by its child is taken by a worker only to be failed (BullMQ's deferred
    # failure), then once more to run: never a third time.
    assert runs["0.1"] <= 2 and runs["0"] <= 2


def test_retry_failed_root_whose_children_completed_runs_only_the_root(
    operator, workers, flows, kubectl, namespace, redis_prefix, redis_server
):
    root = {
        "name": "root",
        "queueName": "rt-parent",
        "data": {**FLAKY, "combine": "sum"},
        "opts": {"attempts": 1},
        "children": [
            {"name": "a", "queueName": "rt-child", "data": {"result": 1}},
            {"name": "b", "queueName": "rt-child", "data": {"result": 2}},
        ],
    }
    doc = flow_doc("retry-root", redis_prefix, root)
    run_until_failed(flows, workers, "python", doc)
    annotate(kubectl, namespace, "retry-root", retry="again")
    flow = flows.wait("retry-root", ("Completed",), timeout=90)
    assert flow["status"]["result"] == 3
    runs = by_path(flow, executions(redis_server.url, redis_prefix, queues(root)))
    assert runs == {"0": 2, "0.0": 1, "0.1": 1}
