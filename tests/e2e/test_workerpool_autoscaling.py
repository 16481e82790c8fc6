"""WorkerPool e2e: backlog autoscaling with real worker processes following the Deployment.

Real apiserver + controller-manager (Deployments -> ReplicaSets -> Pods, garbage collection),
kwok making pods Ready, the harness running one real bullflow-worker per Ready pod, real Redis,
the real operator process. Timings are printed (pytest -s) and bounded leniently.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.workerpool_support import (
    Pools,
    activity,
    add_jobs,
    condition,
    job_counts,
    pool_doc,
    read_exec_log,
    worker_supervisor,
)

PROCESSOR = "tests.e2e.workerpool_processors:sleep_and_count"


def _deployment(name: str) -> str:
    return f"{name}-workers"


def test_burst_scales_up_drains_and_returns_to_zero(
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
    exec_log = tmp_path / "executions.log"
    pools.apply(
        pool_doc(
            "burst",
            ["work"],
            redis_prefix,
            worker={"processor": PROCESSOR, "concurrency": 2, "terminationGracePeriodSeconds": 30},
            scaling={
                "minReplicas": 0,
                "maxReplicas": 5,
                "jobsPerReplica": 10,
                "scaleDownStabilizationSeconds": 5,
                "pollIntervalSeconds": 2,
            },
        )
    )
    dep = _deployment("burst")
    pools.wait_for("the owned Deployment at 0 replicas", lambda: pools.replicas(dep) == 0, 30)
    status = pools.wait_status(
        "burst", lambda s: condition(s, "ScalingActive").get("status") == "True", "ScalingActive"
    )
    assert status["target"] == f"Deployment/{dep}"

    with worker_supervisor(
        local_cluster.kubeconfig,
        namespace,
        "bullflow.io/workerpool=burst",
        {"BULLFLOW_REDIS_URL": redis_url, "BULLFLOW_EXEC_LOG": str(exec_log)},
        tmp_path / "pods",
    ) as sup:
        ids = [f"j{i}" for i in range(100)]
        t0 = time.monotonic()
        add_jobs(redis_url, redis_prefix, "work", [(i, {"seconds": 0.5}) for i in ids])
        pools.wait_for("replicas > 0", lambda: (pools.replicas(dep) or 0) > 0, 10, every=0.05)
        first_replica = time.monotonic() - t0
        pools.wait_for("5 replicas", lambda: pools.replicas(dep) == 5, 10, every=0.05)
        all_replicas = time.monotonic() - t0
        status = pools.wait_status(
            "burst",
            lambda s: condition(s, "ScalingLimited").get("reason") == "TooManyReplicas",
            "ScalingLimited=TooManyReplicas",
            10,
        )
        sup.wait_for_running(5, timeout=30)
        workers_running = time.monotonic() - t0

        pools.wait_for("all jobs executed", lambda: len(read_exec_log(exec_log)) >= 100, 60)
        drained = time.monotonic() - t0
        pools.wait_for("replicas back to 0", lambda: pools.replicas(dep) == 0, 60, every=0.1)
        back_to_zero = time.monotonic() - t0
        sup.wait_for_running(0, timeout=60)

    counts = collections.Counter(read_exec_log(exec_log))
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]
    final = job_counts(redis_url, redis_prefix, "work")
    assert final["completed"] == 100 and final["failed"] == 0, final
    assert all(code == 0 for codes in sup.exit_codes().values() for code in codes), sup.exit_codes()
    status = pools.wait_status(
        "burst",
        lambda s: s.get("replicas") == 0 and s.get("backlog", {}).get("total") == 0,
        "status at 0",
    )
    assert "-> 0" in status["lastScaleReason"]
    print(
        f"\n[workerpool burst] first replica {first_replica:.2f}s, 5 replicas "
        f"{all_replicas:.2f}s, 5 workers running {workers_running:.2f}s, drained "
        f"{drained:.2f}s, back to 0 {back_to_zero:.2f}s (scaleDown window 5s)"
    )


def test_scale_down_during_work_loses_and_repeats_nothing(
    operator: Any,
    local_cluster: Any,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """Replicas drop from 4 to 1 while every worker holds a job: the removed workers finish
    their jobs on SIGTERM (graceful drain), nothing is lost or run twice."""
    pools = Pools(kube_client, kubectl, namespace)
    exec_log = tmp_path / "executions.log"
    pools.apply(
        pool_doc(
            "shrink",
            ["slow"],
            redis_prefix,
            worker={"processor": PROCESSOR, "concurrency": 1, "terminationGracePeriodSeconds": 60},
            scaling={
                "minReplicas": 0,
                "maxReplicas": 4,
                "jobsPerReplica": 1,
                "scaleDownStabilizationSeconds": 0,
                "pollIntervalSeconds": 1,
            },
        )
    )
    dep = _deployment("shrink")
    pools.wait_for("the owned Deployment", lambda: pools.replicas(dep) == 0, 30)
    core = client.CoreV1Api(kube_client)
    with worker_supervisor(
        local_cluster.kubeconfig,
        namespace,
        "bullflow.io/workerpool=shrink",
        {"BULLFLOW_REDIS_URL": redis_url, "BULLFLOW_EXEC_LOG": str(exec_log)},
        tmp_path / "pods",
    ) as sup:
        ids = [f"s{i}" for i in range(8)]
        add_jobs(redis_url, redis_prefix, "slow", [(i, {"seconds": 6}) for i in ids])
        pools.wait_for("4 replicas", lambda: pools.replicas(dep) == 4, 15)
        sup.wait_for_running(4, timeout=30)
        pools.wait_for(
            "4 jobs active", lambda: job_counts(redis_url, redis_prefix, "slow")["active"] == 4, 30
        )
        pools.wait_for(
            "4 workers reporting 1 active job",
            lambda: (
                sorted(activity(redis_url, redis_prefix, namespace, list(sup.running())).values())
                == ["1"] * 4
            ),
            10,
        )
        pools.patch_spec("shrink", {"scaling": {"maxReplicas": 1}})
        pools.wait_for("1 replica", lambda: pools.replicas(dep) == 1, 15)
        costs = {
            p.metadata.name: (p.metadata.annotations or {}).get(
                "controller.kubernetes.io/pod-deletion-cost"
            )
            for p in core.list_namespaced_pod(
                namespace, label_selector="bullflow.io/workerpool=shrink"
            ).items
        }
        pools.wait_for("all 8 jobs executed", lambda: len(read_exec_log(exec_log)) >= 8, 90)
        pools.wait_for("replicas back to 0", lambda: pools.replicas(dep) == 0, 30)
        sup.wait_for_running(0, timeout=60)

    counts = collections.Counter(read_exec_log(exec_log))
    assert set(counts) == set(ids) and max(counts.values()) == 1, counts
    final = job_counts(redis_url, redis_prefix, "slow")
    assert final["completed"] == 8 and final["failed"] == 0, final
    finished = sup.finished()
    killed = {p.pod_name: p.log_text()[-3000:] for p in finished if p.killed}
    assert not killed, f"workers SIGKILLed at the end of their grace period: {killed}"
    assert all(p.exit_code == 0 for p in finished), [(p.pod_name, p.exit_code) for p in finished]
    # Every busy worker got its active-job count as pod-deletion-cost before the scale-down.
    assert costs and all(v == "1" for v in costs.values()), costs


def test_owned_deployment_edits_are_reverted_and_deleted_with_the_pool(
    operator: Any,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_prefix: str,
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    pools.apply(
        pool_doc(
            "owned",
            ["q1", "q2"],
            redis_prefix,
            worker={
                "processor": "bullflow_worker.processors:echo",
                "concurrency": 3,
                "env": [{"name": "EXTRA", "value": "1"}],
                "resources": {"limits": {"memory": "256Mi"}},
                "nodeSelector": {"pool": "workers"},
            },
            scaling={"minReplicas": 1, "maxReplicas": 2},
        )
    )
    dep = _deployment("owned")
    pools.wait_for("the Deployment at 1 replica", lambda: pools.replicas(dep) == 1, 30)
    d = pools.apps.read_namespaced_deployment(dep, namespace)
    pod = d.spec.template.spec
    args = pod.containers[0].args
    assert args[:4] == ["--queue", "q1", "--queue", "q2"]
    assert args[args.index("--concurrency") + 1] == "3"
    assert args[args.index("--prefix") + 1] == redis_prefix
    assert pod.containers[0].readiness_probe.http_get.path == "/readyz"
    assert pod.containers[0].liveness_probe.http_get.path == "/healthz"
    assert pod.node_selector == {"pool": "workers"}
    assert {e.name for e in pod.containers[0].env} >= {"BULLFLOW_REDIS_URL", "EXTRA"}
    assert d.metadata.owner_references[0].kind == "WorkerPool"

    # Hand edits: image, replicas. Both come back.
    kubectl(
        "-n",
        namespace,
        "patch",
        "deployment",
        dep,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil:1"},'
        '{"op":"replace","path":"/spec/replicas","value":2}]',
    )
    pools.wait_for(
        "the edit reverted",
        lambda: (
            (x := pools.apps.read_namespaced_deployment(dep, namespace)).spec.replicas == 1
            and x.spec.template.spec.containers[0].image != "evil:1"
        ),
        15,
    )

    kubectl("-n", namespace, "delete", "workerpool", "owned", "--wait=true")
    pools.wait_for("the Deployment garbage-collected", lambda: pools.replicas(dep) is None, 60)


def test_scale_down_removes_idle_workers_first(
    operator: Any,
    local_cluster: Any,
    kube_client: Any,
    kubectl: Any,
    namespace: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """pod-deletion-cost steering: 3 workers, one long job; when the short jobs are done the
    pool shrinks to 1 and the ReplicaSet removes the two idle pods, not the busy one."""
    pools = Pools(kube_client, kubectl, namespace)
    exec_log = tmp_path / "executions.log"
    pools.apply(
        pool_doc(
            "steer",
            ["mixed"],
            redis_prefix,
            worker={
                "processor": PROCESSOR,
                "concurrency": 1,
                "terminationGracePeriodSeconds": 60,
                # each completed job is a log line at debug: the survivor's log names its job
                "args": ["--log-level", "debug"],
            },
            scaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "jobsPerReplica": 1,
                "scaleDownStabilizationSeconds": 0,
                "pollIntervalSeconds": 1,
            },
        )
    )
    dep = _deployment("steer")
    pools.wait_for("the owned Deployment", lambda: pools.replicas(dep) == 0, 30)
    with worker_supervisor(
        local_cluster.kubeconfig,
        namespace,
        "bullflow.io/workerpool=steer",
        {"BULLFLOW_REDIS_URL": redis_url, "BULLFLOW_EXEC_LOG": str(exec_log)},
        tmp_path / "pods",
    ) as sup:
        add_jobs(
            redis_url,
            redis_prefix,
            "mixed",
            [("long", {"seconds": 15}), ("short1", {"seconds": 3}), ("short2", {"seconds": 3})],
        )
        pools.wait_for("3 replicas", lambda: pools.replicas(dep) == 3, 15)
        sup.wait_for_running(3, timeout=30)
        pools.wait_for(
            "shorts done", lambda: {"short1", "short2"} <= set(read_exec_log(exec_log)), 30
        )
        pools.wait_for("1 replica", lambda: pools.replicas(dep) == 1, 15)
        sup.wait_for_running(1, timeout=60)
        survivor = next(iter(sup.running().values()))
        pools.wait_for("the long job done", lambda: "long" in read_exec_log(exec_log), 30)
        pools.wait_for("replicas back to 0", lambda: pools.replicas(dep) == 0, 30)
        sup.wait_for_running(0, timeout=60)
    assert '"job_id": "long"' in survivor.log_text() and "job completed" in survivor.log_text(), (
        "the busy worker was removed instead of an idle one"
    )
    assert sorted(read_exec_log(exec_log)) == ["long", "short1", "short2"]
    assert all(p.exit_code == 0 and not p.killed for p in sup.finished())
