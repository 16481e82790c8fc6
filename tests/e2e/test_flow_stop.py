"""Stop of a running flow (bullflow.io/stop), end to end: jobs not started are removed from
Redis, the running one finishes, the flow ends Stopped; then a retry runs the removed jobs."""

from __future__ import annotations

from typing import Any

import redis

from tests.e2e.flows import condition, nodes_by_name
from tests.e2e.test_flow_retry import annotate, by_path, executions, flow_doc, queues


def stoppable_tree() -> dict[str, Any]:
    """A root waiting for three children: one completes at once, one runs for a few seconds
    (active at the stop), one waits on a queue no worker serves until the test starts one."""
    return {
        "name": "root",
        "queueName": "st-parent",
        "data": {"combine": "sum"},
        "children": [
            {"name": "quick", "queueName": "st-child", "data": {"result": 1}},
            {"name": "slow", "queueName": "st-child", "data": {"sleepSeconds": 4, "result": 10}},
            {"name": "later", "queueName": "st-idle", "data": {"result": 100}},
        ],
    }


def start_and_stop(flows, workers, kubectl, namespace, prefix, name) -> dict[str, Any]:
    doc = flow_doc(name, prefix, stoppable_tree())
    workers.start("python", ["st-child", "st-parent"], prefix)
    flows.apply(doc)
    flows.wait_for(
        name,
        lambda f: (
            {"slow": "active", "quick": "completed"}.items()
            <= {n["name"]: n["state"] for n in (f.get("status") or {}).get("nodes", [])}.items()
        ),
        "slow active and quick completed",
        timeout=60,
    )
    annotate(kubectl, namespace, name, stop="by tester at 2026-12-03T10:00:00Z")
    stopping = flows.wait_for(
        name,
        lambda f: f["status"].get("lastHandledStop") == "by tester at 2026-12-03T10:00:00Z",
        "the stop handled",
        timeout=30,
    )
    assert stopping["status"]["phase"] in ("Running", "Stopped"), stopping["status"]
    return flows.wait(name, ("Stopped",), timeout=60)


def test_stop_removes_jobs_not_started_and_lets_the_running_one_finish(
    operator, workers, flows, kubectl, namespace, redis_prefix, redis_server
):
    flow = start_and_stop(flows, workers, kubectl, namespace, redis_prefix, "stop-run")
    stopped = condition(flow, "Stopped")
    assert stopped["status"] == "True"
    assert stopped["message"] == (
        "stopped (by tester at 2026-12-03T10:00:00Z): 2 jobs not yet started removed, "
        "1 running job left to finish"
    )
    assert condition(flow, "Ready")["status"] == "False"
    assert condition(flow, "Failed")["status"] == "False"
    states = {n["name"]: n["state"] for n in flow["status"]["nodes"]}
    assert states == {
        "root": "removed",
        "quick": "completed",
        "slow": "completed",
        "later": "removed",
    }
    client = redis.Redis.from_url(redis_server.url)
    uid = flow["metadata"]["uid"]
    assert not client.exists(f"{redis_prefix}:st-parent:bf-{uid}-0")
    assert not client.exists(f"{redis_prefix}:st-idle:bf-{uid}-0.2")
    assert nodes_by_name(flow)["slow"]["returnValue"] == 10

    annotate(kubectl, namespace, "stop-run", stop="again")
    flow = flows.wait_for(
        "stop-run", lambda f: f["status"].get("lastHandledStop") == "again", "refusal", 30
    )
    assert flow["status"]["phase"] == "Stopped"
    assert condition(flow, "Stopped")["message"].startswith("stopped (by tester")


def test_stop_of_a_finished_flow_is_refused(
    operator, workers, flows, kubectl, namespace, redis_prefix
):
    doc = flow_doc("stop-done", redis_prefix, {"name": "one", "queueName": "st-child"})
    workers.start("python", ["st-child"], redis_prefix)
    flows.apply(doc)
    flows.wait("stop-done", ("Completed",), timeout=60)
    annotate(kubectl, namespace, "stop-done", stop="late")
    flow = flows.wait_for(
        "stop-done", lambda f: f["status"].get("lastHandledStop") == "late", "refusal", 30
    )
    refused = condition(flow, "Stopped")
    assert refused["status"] == "False" and refused["reason"] == "StopRefused"
    assert "Completed" in refused["message"] and flow["status"]["phase"] == "Completed"


def test_retry_after_stop_runs_only_the_removed_jobs(
    operator, workers, flows, kubectl, namespace, redis_prefix, redis_server
):
    """The retry adds the removed jobs again under the same ids; the children the stop let
    finish (or that had completed) are not run again and their values reach the parent."""
    start_and_stop(flows, workers, kubectl, namespace, redis_prefix, "stop-retry")
    workers.start("python", ["st-idle"], redis_prefix)
    annotate(kubectl, namespace, "stop-retry", retry="resume")
    flow = flows.wait("stop-retry", ("Completed",), timeout=60)
    assert flow["status"]["result"] == 111
    assert flow["status"]["retries"][0]["nodes"] == ["0", "0.2"]
    assert condition(flow, "Stopped")["status"] == "False"
    runs = by_path(flow, executions(redis_server.url, redis_prefix, queues(stoppable_tree())))
    assert runs == {"0": 1, "0.0": 1, "0.1": 1, "0.2": 1}
