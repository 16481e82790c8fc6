"""A WorkerPool's loop survives an error nobody planned for: a real Redis error that is not a
connection failure (WRONGTYPE on a queue key) makes its turns fail; it says so once per turn
(log line, ReconcileError condition, bullflow_task_failures_total{task="workerpool-loop"}),
backs off, and scales again as soon as the key is sane."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import redis

from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.workerpool_support import Pools, add_jobs, condition, pool_doc

WORKER = {"processor": "bullflow_worker.processors:echo"}


def loop_failures(operator: OperatorProcess) -> float:
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.search(r'^bullflow_task_failures_total\{task="workerpool-loop"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_workerpool_loop_survives_a_redis_error_and_scales_after_it(
    operator: OperatorProcess,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    pools.apply(
        pool_doc(
            "sturdy",
            ["sq"],
            redis_prefix,
            worker=WORKER,
            scaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "jobsPerReplica": 1,
                "pollIntervalSeconds": 1,
                "scaleDownStabilizationSeconds": 1,
            },
        )
    )
    pools.wait_status(
        "sturdy",
        lambda s: condition(s, "ScalingActive").get("status") == "True" and s.get("replicas") == 0,
        "scaling active at 0",
        30,
    )
    failures_before = loop_failures(operator)

    # The fault: the queue's wait list is a string, so BullMQ's getCounts script fails with
    # WRONGTYPE, an error the loop has no branch for.
    r = redis.Redis.from_url(redis_url)
    try:
        r.set(f"{redis_prefix}:sq:wait", "not-a-list")
        status = pools.wait_status(
            "sturdy",
            lambda s: condition(s, "Ready").get("reason") == "ReconcileError",
            "ReconcileError",
            30,
        )
        assert "WRONGTYPE" in condition(status, "Ready")["message"], status
        pools.wait_for(
            "a second failed turn", lambda: loop_failures(operator) >= failures_before + 2
        )
        r.delete(f"{redis_prefix}:sq:wait")
    finally:
        r.close()

    # The loop carries on: new work scales the pool up.
    add_jobs(redis_url, redis_prefix, "sq", [(f"j{i}", {}) for i in range(3)])
    status = pools.wait_status(
        "sturdy",
        lambda s: (
            s.get("replicas") == 3 and condition(s, "Ready").get("reason") != "ReconcileError"
        ),
        "scaled to 3 after the error",
        60,
    )
    assert pools.replicas("sturdy-workers") == 3
    assert condition(status, "ScalingActive")["status"] == "True", status
    lines = [
        line
        for line in operator.log_text().splitlines()
        if f"WorkerPool {namespace}/sturdy: reconcile failed (" in line
    ]
    assert lines and all("WRONGTYPE" in line for line in lines), lines
    assert "(1 in a row), retrying in 1s" in lines[0], lines[0]
