"""Flows created together: the operator submits them in shared transactions (group commit), and
each is still added exactly once, with its own marker, and run by real Node.js and Python
workers. Real apiserver, real redis-server, real BullMQ workers."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis as redis_sync
from kubernetes import client

from bullflow import GROUP, VERSION
from bullflow.storage.redis_jobs import marker_key
from tests.e2e.flows import Flows
from tests.harness.bullmq_events import added_events

FLOWS = 30


def summing_flow(name: str, prefix: str) -> dict[str, Any]:
    """A parent on `bp` (the Node.js worker) summing two children on `bc` (the Python one)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {
            "prefix": prefix,
            "deletionPolicy": "Orphan",
            "root": {
                "name": "sum",
                "queueName": "bp",
                "data": {"combine": "sum"},
                "children": [
                    {"name": "one", "queueName": "bc", "data": {"result": 1}},
                    {"name": "two", "queueName": "bc", "data": {"result": 2}},
                ],
            },
        },
    }


def added_and_duplicated(url: str, prefix: str) -> tuple[Counter[str], Counter[str]]:
    seen = added_events(url, prefix, ("bp", "bc"))
    return seen.added, seen.duplicated


def test_flows_created_together_are_each_added_once_and_run_by_node_and_python_workers(
    operator, flows: Flows, kube_client, namespace, redis_server, redis_prefix, workers
):
    custom = client.CustomObjectsApi(kube_client)
    names = [f"burst-{i:02d}" for i in range(FLOWS)]

    def create(name: str) -> str:
        body = summing_flow(name, redis_prefix)
        made = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "flows", body)
        return str(made["metadata"]["uid"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        uids = dict(zip(names, pool.map(create, names), strict=True))
    for name in names:
        flows.wait(name, phases=("Submitted",), timeout=60)

    workers.start("node", ["bp"], redis_prefix)
    workers.start("python", ["bc"], redis_prefix)
    for name in names:
        flow = flows.wait(name, timeout=60)
        assert flow["status"]["phase"] == "Completed", flow["status"]
        assert flow["status"]["result"] == 3

    added, duplicated = added_and_duplicated(redis_server.url, redis_prefix)
    expected = {f"bf-{uid}-{path}" for uid in uids.values() for path in ("0", "0.0", "0.1")}
    assert set(added) == expected
    assert set(added.values()) == {1}  # each job added once
    assert not duplicated  # and never submitted a second time
    r = redis_sync.Redis.from_url(redis_server.url)
    try:
        assert all(r.exists(marker_key(redis_prefix, uid)) for uid in uids.values())
    finally:
        r.close()
