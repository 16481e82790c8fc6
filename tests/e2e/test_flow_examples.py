"""Every example under examples/ applied with kubectl, run by real workers, final status checked."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.flows import Flows, condition, load_example, nodes_by_name, queues_of

Check = Callable[[dict[str, Any], Callable[[str, str], str]], None]


def completed(result: Any = None) -> Check:
    def check(flow: dict[str, Any], key: Callable[[str, str], str]) -> None:
        status = flow["status"]
        assert status["phase"] == "Completed", status
        assert condition(flow, "Completed")["status"] == "True"
        assert condition(flow, "Failed")["status"] == "False"
        assert all(n["state"] == "completed" for n in status["nodes"]), status["nodes"]
        done, total = status["progress"].split("/")
        assert done == total == str(status["totalNodes"])
        if result is not None:
            assert status["result"] == result(key) if callable(result) else result

    return check


def check_basic(flow, key):
    completed(42)(flow, key)
    root = nodes_by_name(flow)["total"]
    assert root["childrenValues"] == [
        {"path": "0.0", "name": "part-a", "key": key("basic-child", "0.0"), "value": 2},
        {"path": "0.1", "name": "part-b", "key": key("basic-child", "0.1"), "value": 40},
    ]


def check_etl(flow, key):
    completed({key("etl-transform", "0.0"): 100})(flow, key)


def check_order(flow, key):
    completed(
        lambda k: {
            k("payments", "0.0"): {"charged": 59.9, "currency": "EUR"},
            k("inventory", "0.1"): {"sku": "BF-42", "reserved": 2},
            k("shipping", "0.2"): {"carrier": "post", "eta": "2d"},
        }
    )(flow, key)


def check_report(flow, key):
    completed(
        lambda k: {
            k("report-sections", "0.0"): "sales: 1.2M",
            k("report-sections", "0.1"): "costs: 0.8M",
            k("report-sections", "0.2"): "3 charts",
        }
    )(flow, key)


def check_map_reduce(flow, key):
    completed(4950)(flow, key)
    assert flow["status"]["progress"] == "101/101"
    assert len(nodes_by_name(flow)["reduce"]["childrenValues"]) == 100


def check_failure_none(flow, key):
    status = flow["status"]
    assert status["phase"] == "Failed"
    failed = condition(flow, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "ChildFailed"
    assert "bad-child" in failed["message"] and "card declined" in failed["message"]
    nodes = nodes_by_name(flow)
    assert nodes["parent"]["state"] == "waiting-children"
    assert nodes["bad-child"]["state"] == "failed"
    assert nodes["bad-child"]["failedReason"] == "card declined"
    assert nodes["good-child"]["state"] == "completed"


def check_fail_parent(flow, key):
    assert flow["status"]["phase"] == "Failed"
    failed = condition(flow, "Failed")
    assert failed["reason"] == "JobFailed"
    assert (
        "caused by job 0.1 (bad-child on queue failures-child): card declined"
        in (failed["message"])
    )
    assert nodes_by_name(flow)["parent"]["state"] == "failed"


def check_ignore(flow, key):
    completed_but_child_failed(flow)
    parent = nodes_by_name(flow)["parent"]
    assert parent["ignoredFailures"] == [ignored_bad_child(key)]
    assert flow["status"]["result"] == {key("failures-child", "0.0"): "ok"}


def check_remove(flow, key):
    completed_but_child_failed(flow)
    parent = nodes_by_name(flow)["parent"]
    assert parent.get("ignoredFailures", []) == []
    assert flow["status"]["result"] == {key("failures-child", "0.0"): "ok"}


def check_continue(flow, key):
    completed_but_child_failed(flow)
    parent = nodes_by_name(flow)["parent"]
    assert parent["ignoredFailures"] == [ignored_bad_child(key)]


def ignored_bad_child(key):
    return {
        "path": "0.1",
        "name": "bad-child",
        "key": key("failures-child", "0.1"),
        "reason": "card declined",
    }


def completed_but_child_failed(flow):
    status = flow["status"]
    assert status["phase"] == "Completed", status
    assert status["progress"] == f"{status['totalNodes']}/{status['totalNodes']}", status
    nodes = nodes_by_name(flow)
    assert nodes["parent"]["state"] == "completed"
    assert nodes["bad-child"]["state"] == "failed"
    assert nodes["bad-child"]["failedReason"] == "card declined"


def check_retries(flow, key):
    completed(1)(flow, key)
    assert nodes_by_name(flow)["flaky"]["attemptsMade"] == 3


def check_etl_retry(flow, key):
    """Before the retry (docs/day-2.md runs the retry): the transform failed, the load waits."""
    status = flow["status"]
    assert status["phase"] == "Failed", status
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["reason"] == "ChildFailed", ready
    nodes = nodes_by_name(flow)
    assert nodes["transform"]["state"] == "failed"
    assert nodes["load"]["state"] == "waiting-children"
    assert {nodes[n]["state"] for n in ("extract-orders", "extract-refunds")} == {"completed"}


EXAMPLES: dict[str, Check] = {
    "basic.yaml": check_basic,
    "nested.yaml": completed(136),
    "etl.yaml": check_etl,
    "etl-retry.yaml": check_etl_retry,
    "order.yaml": check_order,
    "report.yaml": check_report,
    "map-reduce.yaml": check_map_reduce,
    "bulk.yaml": completed([5, 7, 6]),
    "failure-none.yaml": check_failure_none,
    "failure-fail-parent-on-failure.yaml": check_fail_parent,
    "failure-ignore-dependency-on-failure.yaml": check_ignore,
    "failure-remove-dependency-on-failure.yaml": check_remove,
    "failure-continue-parent-on-failure.yaml": check_continue,
    "retries.yaml": check_retries,
}
NODE_EXAMPLES = [
    "basic.yaml",
    "nested.yaml",
    "map-reduce.yaml",
    "failure-none.yaml",
    "failure-ignore-dependency-on-failure.yaml",
    "retries.yaml",
]


def run_example(example, language, operator, workers, flows: Flows, redis_prefix):
    doc = load_example(example, redis_prefix)
    workers.start(language, sorted(queues_of(doc)), redis_prefix)
    created = flows.apply(doc)
    uid = created["metadata"]["uid"]
    flow = flows.wait_at_rest(doc["metadata"]["name"], timeout=90)
    return flow, uid


def key_maker(prefix: str, uid: str) -> Callable[[str, str], str]:
    return lambda queue, path: f"{prefix}:{queue}:bf-{uid}-{path}"


def test_examples_cover_every_file():
    from tests.e2e.flows import EXAMPLES as EXAMPLES_DIR

    assert sorted(p.name for p in EXAMPLES_DIR.glob("*.yaml")) == sorted(EXAMPLES)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_with_python_workers(example, operator, workers, flows, redis_prefix):
    flow, uid = run_example(example, "python", operator, workers, flows, redis_prefix)
    EXAMPLES[example](flow, key_maker(redis_prefix, uid))


@pytest.mark.parametrize("example", NODE_EXAMPLES)
def test_example_with_node_workers(example, operator, workers, flows, redis_prefix):
    flow, uid = run_example(example, "node", operator, workers, flows, redis_prefix)
    EXAMPLES[example](flow, key_maker(redis_prefix, uid))


def _normalized(flow: dict[str, Any], prefix: str) -> dict[str, Any]:
    uid = flow["metadata"]["uid"]
    status = {k: v for k, v in flow["status"].items() if k not in ("submittedAt", "finishedAt")}
    status["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
    ]
    text = repr(status).replace(uid, "UID").replace(prefix, "PREFIX")
    return {"status": re.sub(r"\s+", " ", text)}


def test_python_and_node_workers_produce_the_same_status(operator, workers, flows, redis_prefix):
    py_flow, _ = run_example(
        "failure-ignore-dependency-on-failure.yaml",
        "python",
        operator,
        workers,
        flows,
        redis_prefix,
    )
    workers.stop()
    node_prefix = redis_prefix + "n"
    doc = load_example("failure-ignore-dependency-on-failure.yaml", node_prefix)
    doc["metadata"]["name"] += "-node"
    workers.start("node", sorted(queues_of(doc)), node_prefix)
    flows.apply(doc)
    node_flow = flows.wait(doc["metadata"]["name"], timeout=90)
    assert _normalized(py_flow, redis_prefix) == _normalized(node_flow, node_prefix)
