"""NoWorkers: a Flow whose waiting jobs nobody serves says so (also in `kubectl get flows`),
and says so no longer within seconds of a worker connecting or a WorkerPool appearing.

The waiting child is delayed on purpose: until it is due no BullMQ event is written, so the
condition can only clear because the operator noticed the worker (or the WorkerPool) itself.
Real apiserver, real redis-server, real bullflow-worker processes (run by the harness for the
pool's kwok pods); timings are printed (pytest -s) and bounded only as a guard.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.e2e.flows import Flows
from tests.e2e.workerpool_support import Pools, pool_doc, worker_supervisor

DELAY_MS = 20_000
CLEAR_GUARD_SECONDS = 15.0
TERMINAL_COLUMNS = 120


def delayed_flow(name: str, prefix: str, queue: str) -> dict[str, Any]:
    child = {
        "name": "later",
        "queueName": queue,
        "data": {"result": 7},
        "opts": {"delay": DELAY_MS},
    }
    root = {"name": "parent", "queueName": queue, "data": {"combine": "sum"}, "children": [child]}
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {"prefix": prefix, "root": root},
    }


def condition(flow: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (flow.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def says_no_workers(flow: dict[str, Any]) -> bool:
    return condition(flow, "WorkersAvailable").get("status") == "False"


def cleared(flow: dict[str, Any]) -> bool:
    available = condition(flow, "WorkersAvailable").get("status")
    ready = condition(flow, "Ready").get("reason")
    return available is not None and available != "False" and ready != "NoWorkers"


def get_row(kubectl: Any, namespace: str, name: str, *wide: str) -> tuple[str, str]:
    """The header and the row of one Flow in `kubectl get flows` (real kubectl)."""
    lines = kubectl("get", "flows", name, "-n", namespace, *wide).stdout.rstrip("\n").split("\n")
    assert len(lines) == 2, lines
    return lines[0], lines[1]


def wait_no_workers(flows: Flows, kubectl: Any, namespace: str, name: str) -> dict[str, Any]:
    flow = flows.wait_for(name, says_no_workers, "WorkersAvailable=False", timeout=30)
    available = condition(flow, "WorkersAvailable")
    assert available["reason"] == "NoWorkers", available
    ready = condition(flow, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoWorkers"), ready
    header, row = get_row(kubectl, namespace, name)
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert cells["REASON"] == "NoWorkers", (header, row)
    return flow


def wait_cleared(flows: Flows, name: str, since: float, submitted: float) -> float:
    flow = flows.wait_for(name, cleared, "NoWorkers to clear", timeout=CLEAR_GUARD_SECONDS)
    took = time.monotonic() - since
    # Cleared before the delayed child was due: no job event can have done it.
    assert time.monotonic() - submitted < DELAY_MS / 1000, flow["status"]
    later = next(n for n in flow["status"]["nodes"] if n["name"] == "later")
    assert later["state"] == "delayed", flow["status"]["nodes"]
    return took


def test_a_plain_worker_clears_no_workers_within_seconds(
    operator, flows, workers, kubectl, namespace, redis_prefix
):
    name = "no-workers-python-01"  # 20 characters: the width a typical name takes
    submitted = time.monotonic()
    flows.apply(delayed_flow(name, redis_prefix, "nw-plain"))
    wait_no_workers(flows, kubectl, namespace, name)
    header, row = get_row(kubectl, namespace, name, "-o", "wide")
    assert max(len(header), len(row)) <= TERMINAL_COLUMNS, (header, row)

    started = time.monotonic()
    workers.start("python", ["nw-plain"], redis_prefix)  # no WorkerPool
    took = wait_cleared(flows, name, started, submitted)
    print(f"\n[no workers] plain Python worker started -> NoWorkers cleared in {took:.2f}s")

    flow = flows.wait(name, timeout=60)
    status = flow["status"]
    assert status["phase"] == "Completed" and status["progress"] == "2/2", status
    header, row = get_row(kubectl, namespace, name, "-o", "wide")
    assert max(len(header), len(row)) <= TERMINAL_COLUMNS, (header, row)
    assert row.split()[:4] == [name, "Completed", "2/2", "Completed"], row


def test_a_workerpool_clears_no_workers_within_seconds(
    operator,
    flows,
    kube_client,
    kubectl,
    local_cluster,
    namespace,
    redis_url,
    redis_prefix,
    tmp_path: Path,
):
    name = "no-workers-pool"
    submitted = time.monotonic()
    flows.apply(delayed_flow(name, redis_prefix, "nw-pool"))
    wait_no_workers(flows, kubectl, namespace, name)

    pools = Pools(kube_client, kubectl, namespace)
    started = time.monotonic()
    pools.apply(
        pool_doc(
            "nw-pool",
            ["nw-pool"],
            redis_prefix,
            worker={"processor": "bullflow_worker.processors:scripted", "concurrency": 2},
            scaling={"minReplicas": 0, "maxReplicas": 1, "pollIntervalSeconds": 2},
        )
    )
    took = wait_cleared(flows, name, started, submitted)
    print(f"\n[no workers] WorkerPool created -> NoWorkers cleared in {took:.2f}s")

    # The pool scales up when the delayed child is due; the harness runs its pod's worker.
    with worker_supervisor(
        local_cluster.kubeconfig,
        namespace,
        "bullflow.io/workerpool=nw-pool",
        {"BULLFLOW_REDIS_URL": redis_url},
        tmp_path / "pods",
    ):
        flow = flows.wait(name, timeout=90)
    status = flow["status"]
    assert status["phase"] == "Completed" and status["progress"] == "2/2", status
