"""WorkerPool e2e: scaleTargetRef (a user Deployment of Node.js BullMQ workers) and Redis
outages (fallbackReplicas, condition, recovery) on a private redis-server."""

from __future__ import annotations

import base64
import collections
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.operator_proc import NODE_WORKER, ROOT
from tests.e2e.workerpool_support import (
    Pools,
    add_jobs,
    condition,
    job_counts,
    pool_doc,
)
from tests.harness.pods import PodProcessSupervisor
from tests.harness.redis import RedisServer


def node_deployment(name: str, queue: str, prefix: str, redis_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"team": "payments"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "node-worker",
                            "image": "example.com/node-worker:1",
                            "command": [
                                "node",
                                str(NODE_WORKER),
                                "--queue",
                                queue,
                                "--prefix",
                                prefix,
                                "--redis-url",
                                redis_url,
                                "--concurrency",
                                "5",
                            ],
                        }
                    ],
                },
            },
        },
    }


def test_scale_target_ref_scales_node_workers(
    operator: Any,
    local_cluster: Any,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    apps = client.AppsV1Api(kube_client)
    apps.create_namespaced_deployment(
        namespace, node_deployment("node-workers", "nodeq", redis_prefix, redis_url)
    )
    before = apps.read_namespaced_deployment("node-workers", namespace)
    pools.apply(
        pool_doc(
            "node",
            ["nodeq"],
            redis_prefix,
            scaleTargetRef={"name": "node-workers"},
            scaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "jobsPerReplica": 10,
                "scaleDownStabilizationSeconds": 3,
                "pollIntervalSeconds": 1,
            },
        )
    )
    pools.wait_status(
        "node",
        lambda s: (
            s.get("target") == "Deployment/node-workers"
            and condition(s, "ScalingActive").get("status") == "True"
        ),
        "target seen",
    )
    with PodProcessSupervisor(
        local_cluster.kubeconfig,
        namespace,
        "app=node-workers",
        log_dir=tmp_path / "pods",
        cwd=ROOT,
        restart_on_exit=False,
    ) as sup:
        t0 = time.monotonic()
        add_jobs(
            redis_url,
            redis_prefix,
            "nodeq",
            [(f"n{i}", {"sleepSeconds": 0.2, "result": i}) for i in range(60)],
        )
        pools.wait_for("replicas up", lambda: pools.replicas("node-workers") == 3, 10, every=0.05)
        scaled_up = time.monotonic() - t0
        sup.wait_for_running(3, timeout=30)
        pools.wait_for(
            "60 jobs completed",
            lambda: job_counts(redis_url, redis_prefix, "nodeq")["completed"] == 60,
            60,
        )
        pools.wait_for("replicas back to 0", lambda: pools.replicas("node-workers") == 0, 30)
        back_to_zero = time.monotonic() - t0
        sup.wait_for_running(0, timeout=60)
    assert job_counts(redis_url, redis_prefix, "nodeq")["failed"] == 0
    after = apps.read_namespaced_deployment("node-workers", namespace)
    # Only replicas were touched: template, labels and annotations are the user's.
    assert after.spec.template == before.spec.template
    assert after.metadata.annotations.get("team") == "payments"
    assert not after.metadata.owner_references
    print(
        f"\n[workerpool node] 3 replicas after {scaled_up:.2f}s, back to 0 after "
        f"{back_to_zero:.2f}s"
    )

    # A missing target is reported, not crashed on.
    pools.patch_spec("node", {"scaleTargetRef": {"name": "nope"}})
    pools.wait_status(
        "node",
        lambda s: condition(s, "Ready").get("reason") == "ScaleTargetNotFound",
        "ScaleTargetNotFound",
        15,
    )


def test_redis_outage_uses_fallback_replicas_and_recovers(
    operator: Any,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    with RedisServer(tmp_path / "redis") as private:
        client.CoreV1Api(kube_client).create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": "redis"},
                "data": {"url": base64.b64encode(private.url.encode()).decode()},
            },
        )
        pools.apply(
            pool_doc(
                "outage",
                ["oq"],
                redis_prefix,
                connection={"name": "redis"},
                worker={"processor": "bullflow_worker.processors:echo"},
                scaling={
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "fallbackReplicas": 2,
                    "scaleDownStabilizationSeconds": 2,
                    "pollIntervalSeconds": 1,
                },
            )
        )
        dep = "outage-workers"
        pools.wait_status(
            "outage",
            lambda s: (
                condition(s, "ScalingActive").get("status") == "True" and s.get("replicas") == 0
            ),
            "scaling active at 0",
        )
        d = client.AppsV1Api(kube_client).read_namespaced_deployment(dep, namespace)
        url_env = next(
            e for e in d.spec.template.spec.containers[0].env if e.name == "BULLFLOW_REDIS_URL"
        )
        assert url_env.value_from.secret_key_ref.name == "redis"

        private.stop()
        status = pools.wait_status(
            "outage",
            lambda s: (
                condition(s, "ScalingActive").get("reason") == "RedisUnavailable"
                and s.get("replicas") == 2
            ),
            "fallback replicas",
            30,
        )
        assert "fallbackReplicas 2" in condition(status, "ScalingActive")["message"]
        assert pools.replicas(dep) == 2

        private.start()
        status = pools.wait_status(
            "outage",
            lambda s: (
                condition(s, "ScalingActive").get("status") == "True" and s.get("replicas") == 0
            ),
            "recovered and back to 0",
            60,
        )
        assert pools.replicas(dep) == 0
        events = (
            client.CoreV1Api(kube_client)
            .list_namespaced_event(namespace, field_selector="involvedObject.name=outage")
            .items
        )
        reasons = collections.Counter(e.reason for e in events)
        assert reasons["ScaledUp"] >= 1 and reasons["ScaledDown"] >= 1, reasons
