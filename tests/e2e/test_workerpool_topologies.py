"""WorkerPool e2e on a Redis Cluster: the pool's spec.connection names a Secret holding a
redis+cluster:// URL, the operator reads the backlog on the Cluster, scales the Deployment up,
the workers (one real bullflow-worker per kwok-Ready pod, see workerpool_support) take the same
URL, complete every job once, and the pool returns to zero.

Real apiserver + controller-manager + kwok, the real operator, a real 3-master + 3-replica
Redis Cluster (tests/harness/topology_fixtures.py)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue

from tests.e2e.topology_support import prefix_for, put_secret
from tests.e2e.workerpool_support import (
    Pools,
    condition,
    pool_doc,
    read_exec_log,
    worker_supervisor,
)
from tests.harness.redis_topologies import RedisClusterTopology

PROCESSOR = "tests.e2e.workerpool_processors:sleep_and_count"


def _slot_master(cluster: RedisClusterTopology, prefix: str) -> aioredis.Redis:
    """A plain client to the master owning the prefix's slot: the producer's side (redis-py's
    cluster pipeline refuses the EVALSHAs bullmq's addBulk queues; every key is in that slot)."""
    node = cluster.master_for(prefix)
    return aioredis.Redis(
        host="127.0.0.1", port=node.port, password=cluster.password, decode_responses=True
    )


def _add_jobs(cluster: RedisClusterTopology, prefix: str, queue: str, ids: list[str]) -> None:
    async def run() -> None:
        client = _slot_master(cluster, prefix)
        q = Queue(queue, {"connection": client, "prefix": prefix})
        try:
            await q.addBulk(
                [{"name": "job", "data": {"seconds": 0.2}, "opts": {"jobId": i}} for i in ids]
            )
        finally:
            await q.close()
            await client.aclose()

    asyncio.run(run())


def _completed(cluster: RedisClusterTopology, prefix: str, queue: str) -> int:
    async def run() -> int:
        client = _slot_master(cluster, prefix)
        try:
            return int(await client.zcard(f"{prefix}:{queue}:completed"))
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_pool_on_a_cluster_scales_up_on_backlog_and_its_workers_complete_the_jobs(
    operator: Any,
    local_cluster: Any,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_cluster: RedisClusterTopology,
    tmp_path: Path,
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    prefix = prefix_for(redis_cluster)
    connection = put_secret(kube_client, namespace, redis_cluster.url)
    exec_log = tmp_path / "executions.log"
    pools.apply(
        pool_doc(
            "cl",
            ["work"],
            prefix,
            connection=connection,
            worker={"processor": PROCESSOR, "concurrency": 2, "terminationGracePeriodSeconds": 30},
            scaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "jobsPerReplica": 10,
                "scaleDownStabilizationSeconds": 5,
                "pollIntervalSeconds": 2,
            },
        )
    )
    dep = "cl-workers"
    pools.wait_for("the owned Deployment at 0 replicas", lambda: pools.replicas(dep) == 0, 60)
    pools.wait_status(
        "cl", lambda s: condition(s, "ScalingActive").get("status") == "True", "ScalingActive"
    )
    # The workers get the URL from the user's Secret, never as a plain value.
    deployment = pools.apps.read_namespaced_deployment(dep, namespace)
    env = {e.name: e for e in deployment.spec.template.spec.containers[0].env}
    ref = env["BULLFLOW_REDIS_URL"].value_from.secret_key_ref
    assert (ref.name, ref.key) == (connection["name"], connection["key"])
    assert env["BULLFLOW_REDIS_URL"].value is None

    with worker_supervisor(
        local_cluster.kubeconfig,
        namespace,
        "bullflow.io/workerpool=cl",
        {"BULLFLOW_REDIS_URL": redis_cluster.url, "BULLFLOW_EXEC_LOG": str(exec_log)},
        tmp_path / "pods",
    ) as sup:
        ids = [f"j{i}" for i in range(40)]
        _add_jobs(redis_cluster, prefix, "work", ids)
        pools.wait_for("replicas > 0", lambda: (pools.replicas(dep) or 0) > 0, 60, every=0.1)
        pools.wait_status(
            "cl",
            lambda s: s.get("backlog", {}).get("total", 0) > 0 or s.get("replicas", 0) > 0,
            "the backlog read from the Cluster",
        )
        pools.wait_for(
            "every job completed", lambda: _completed(redis_cluster, prefix, "work") == 40, 120
        )
        pools.wait_for("replicas back to 0", lambda: pools.replicas(dep) == 0, 90)
        sup.wait_for_running(0, timeout=60)

    counts = collections.Counter(read_exec_log(exec_log))
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    assert all(code == 0 for codes in sup.exit_codes().values() for code in codes), sup.exit_codes()
    status = pools.wait_status(
        "cl",
        lambda s: s.get("replicas") == 0 and s.get("backlog", {}).get("total") == 0,
        "status at 0",
    )
    assert "-> 0" in status["lastScaleReason"]
