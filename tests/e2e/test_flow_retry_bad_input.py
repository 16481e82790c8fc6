"""Retry and stop requests the operator cannot apply now or ever, end to end (real API server,
redis-server, operator process, Python workers): Redis down (the request waits with a condition
and is applied exactly once when Redis is back), jobs removed from Redis (removeOnFail), flows
whose jobs never reached Redis (invalid spec, Pending). Every case also checks that the operator
goes on serving another flow meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client

from bullflow.storage.redis_jobs import marker_key
from tests.e2e.flows import Flows, condition
from tests.e2e.operator_proc import WorkerSet
from tests.e2e.test_flow_lifecycle import redis_secret
from tests.e2e.test_flow_retry import (
    annotate,
    by_path,
    default_tree,
    executions,
    flow_doc,
    queues,
    run_until_failed,
)
from tests.harness.process import wait_for
from tests.harness.redis import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own: stopping it disturbs no other test."""
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_workers(own_redis: RedisServer, tmp_path: Path) -> Iterator[WorkerSet]:
    log_dir = tmp_path / "own-workers"
    log_dir.mkdir()
    ws = WorkerSet(own_redis.url, log_dir)
    yield ws
    ws.stop()


def on(connection: dict[str, str], doc: dict[str, Any]) -> dict[str, Any]:
    """The Flow with its Redis from a Secret."""
    doc["spec"]["connection"] = connection
    return doc


def reason_of(flow: dict[str, Any], type_: str) -> str | None:
    conds = (flow.get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conds if c["type"] == type_), None)


def bystander_completes(flows: Flows, workers: WorkerSet, prefix: str, name: str) -> None:
    """Another flow, on the shared Redis, is submitted and completes meanwhile."""
    root = {
        "name": "sum",
        "queueName": "by-q",
        "data": {"combine": "sum"},
        "children": [{"name": "one", "queueName": "by-q", "data": {"result": 1}}],
    }
    workers.start("python", ["by-q"], prefix)
    flows.apply(flow_doc(name, prefix, root))
    flow = flows.wait(name, timeout=60)
    assert flow["status"]["phase"] == "Completed" and flow["status"]["result"] == 1


def redis_view(url: str, prefix: str, queue_names: set[str], uid: str) -> dict[str, Any]:
    """Every key of the flow's jobs and of its queues' state sets, with its content, and the
    submission marker: what a retry could change (event streams and the workers' own
    bookkeeping keys left out)."""
    conn = redis.Redis.from_url(url, decode_responses=True)
    view: dict[str, Any] = {}
    states = ("wait", "waiting-children", "failed", "completed", "active", "prioritized", "delayed")
    for key in conn.scan_iter(f"{prefix}:*"):
        if key.split(":")[1] not in queue_names:
            continue
        if uid not in key and not key.endswith(tuple(f":{s}" for s in states)):
            continue
        kind = conn.type(key)
        if kind == "hash":
            view[key] = conn.hgetall(key)
        elif kind == "zset":
            view[key] = conn.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            view[key] = conn.lrange(key, 0, -1)
        elif kind == "set":
            view[key] = sorted(conn.smembers(key))
        elif kind == "string":
            view[key] = conn.get(key)
    view["marker"] = conn.get(marker_key(prefix, uid))
    assert view["marker"], "the flow's submission marker"
    return view


def test_requests_while_redis_is_down_wait_then_apply_once(
    operator, workers, own_workers, own_redis, flows, kubectl, kube_client, namespace, redis_prefix
):
    connection = redis_secret(kube_client, namespace, own_redis.url)
    retry_doc = on(connection, flow_doc("down-retry", redis_prefix, default_tree()))
    run_until_failed(flows, own_workers, "python", retry_doc)
    stop_root = {
        "name": "root",
        "queueName": "down-parent",
        "children": [{"name": "idle", "queueName": "down-idle"}],  # no worker serves it
    }
    flows.apply(on(connection, flow_doc("down-stop", redis_prefix, stop_root)))
    flows.wait("down-stop", ("Submitted", "Running"), timeout=30)

    own_workers.stop()
    own_redis.stop(keep_data=True)
    annotate(kubectl, namespace, "down-retry", retry="while-down")
    annotate(kubectl, namespace, "down-stop", stop="by tester while down")
    waiting = flows.wait_for(
        "down-retry", lambda f: reason_of(f, "Retried") == "RetryPending", "RetryPending", 30
    )
    message = condition(waiting, "Retried")["message"]
    assert message.startswith("retry 'while-down' waits: Redis at ") and "unreachable" in message
    assert condition(waiting, "Retried")["status"] == "False"
    status = waiting["status"]
    assert status["phase"] == "Failed" and "lastHandledRetry" not in status
    assert "retryCount" not in status and not status.get("retries")
    stopping = flows.wait_for(
        "down-stop", lambda f: reason_of(f, "Stopped") == "StopPending", "StopPending", 30
    )
    assert "unreachable" in condition(stopping, "Stopped")["message"]
    assert "lastHandledStop" not in stopping["status"]
    assert stopping["status"]["phase"] in ("Submitted", "Running")

    bystander_completes(flows, workers, redis_prefix, "down-bystander")
    # Still waiting (nothing applied while Redis is down, however long).
    assert reason_of(flows.get("down-retry"), "Retried") == "RetryPending"

    own_redis.start(keep_data=True)
    own_workers.start("python", sorted(queues(retry_doc["spec"]["root"])), redis_prefix)
    flow = flows.wait("down-retry", ("Completed",), timeout=90)
    assert flow["status"]["result"] == 42
    assert flow["status"]["retryCount"] == 1 and flow["status"]["lastHandledRetry"] == "while-down"
    assert condition(flow, "Retried")["status"] == "True"
    counts = executions(own_redis.url, redis_prefix, queues(retry_doc["spec"]["root"]))
    assert by_path(flow, counts) == {"0": 1, "0.0": 1, "0.1": 2}

    stopped = flows.wait_for(
        "down-stop",
        lambda f: (
            f["status"].get("lastHandledStop") == "by tester while down"
            and f["status"]["phase"] == "Stopped"
        ),
        "the stop applied and the flow Stopped",
        timeout=60,
    )
    assert condition(stopped, "Stopped")["message"] == (
        "stopped (by tester while down): 2 jobs not yet started removed, none was running"
    )
    assert {n["state"] for n in stopped["status"]["nodes"]} == {"removed"}


def test_retry_of_jobs_removed_from_redis_is_refused_and_changes_nothing(
    operator, workers, flows, kubectl, kube_client, namespace, redis_prefix, redis_server
):
    tree = default_tree()
    tree["children"][1]["opts"] = {"attempts": 1, "removeOnFail": True}
    doc = flow_doc("gone-retry", redis_prefix, tree)
    failed = run_until_failed(flows, workers, "python", doc)
    uid = failed["metadata"]["uid"]
    # BullMQ's removeOnFail takes the child out of its parent's dependencies too: the parent
    # then runs without it. Compare Redis only once that run is over.
    parent_key = f"{redis_prefix}:rt-parent:bf-{uid}-0"
    conn = redis.Redis.from_url(redis_server.url, decode_responses=True)
    wait_for(lambda: conn.hget(parent_key, "finishedOn"), 30, "the parent's run")
    before = redis_view(redis_server.url, redis_prefix, queues(tree), uid)
    assert not any(key.endswith(f"bf-{uid}-0.1") for key in before), "removeOnFail took it"

    annotate(kubectl, namespace, "gone-retry", retry="hopeless")
    flow = flows.wait_for(
        "gone-retry", lambda f: f["status"].get("lastHandledRetry") == "hopeless", "refusal", 30
    )
    refused = condition(flow, "Retried")
    assert (refused["status"], refused["reason"]) == ("False", "RetryRefused")
    assert "1 job of the flow is no longer in Redis" in refused["message"]
    assert "0.1 (flaky)" in refused["message"] and "delete the Flow" in refused["message"]
    assert flow["status"]["phase"] == "Failed" and "retryCount" not in flow["status"]

    def refusal_events() -> list[Any]:
        # Events are posted after the status write (kopf sends them from a queue): poll.
        events = client.CoreV1Api(kube_client).list_namespaced_event(namespace).items
        return [
            e
            for e in events
            if e.involved_object.name == "gone-retry" and e.reason == "RetryRefused"
        ]

    warnings = wait_for(refusal_events, 20, "the RetryRefused Event")
    assert warnings[0].type == "Warning" and "0.1 (flaky)" in warnings[0].message

    bystander_completes(flows, workers, redis_prefix, "gone-bystander")
    assert redis_view(redis_server.url, redis_prefix, queues(tree), uid) == before
    runs = by_path(flow, executions(redis_server.url, redis_prefix, queues(tree)))
    assert runs == {"0": 1, "0.0": 1, "0.1": 1}


def test_requests_on_flows_never_submitted_are_refused(
    operator, workers, flows, kubectl, namespace, redis_prefix
):
    """An invalid spec (found by the operator, not at admission) and a Flow Pending on a
    missing connection Secret: their jobs are not in Redis, so there is nothing to retry or
    stop; both are refused with a condition, and neither flow is submitted later by it."""
    chain: dict[str, Any] = {"name": "leaf", "queueName": "nv-q", "opts": {"jobId": "x"}}
    for level in range(5):
        chain = {"name": f"n{level}", "queueName": "nv-q", "children": [chain]}
    flows.apply(flow_doc("never-invalid", redis_prefix, chain))
    missing = {"name": "one", "queueName": "nv-q"}
    flows.apply(on({"name": "absent"}, flow_doc("never-pending", redis_prefix, missing)))
    for name, reason in (
        ("never-invalid", "InvalidSpec"),
        ("never-pending", "ConnectionSecretNotFound"),
    ):
        flows.wait_for(name, lambda f, r=reason: reason_of(f, "Ready") == r, reason, 30)
        annotate(kubectl, namespace, name, retry="r1", stop="s1")
        flow = flows.wait_for(
            name,
            lambda f: (
                f["status"].get("lastHandledRetry") == "r1"
                and f["status"].get("lastHandledStop") == "s1"
            ),
            "both refusals",
            30,
        )
        for type_, reason_, kind in (
            ("Retried", "RetryRefused", "retry 'r1'"),
            ("Stopped", "StopRefused", "stop 's1'"),
        ):
            cond = condition(flow, type_)
            assert (cond["status"], cond["reason"]) == ("False", reason_), cond
            assert cond["message"].startswith(f"{kind} refused: the flow is ")
            assert "its jobs are not in Redis" in cond["message"]
        assert "submittedAt" not in flow["status"] and reason_of(flow, "Ready") == reason
    bystander_completes(flows, workers, redis_prefix, "never-bystander")
