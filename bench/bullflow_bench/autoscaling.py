"""5. Autoscaling: a burst of `as_jobs` jobs into an empty queue served by a WorkerPool at 0.

Measured (per run, from the jobs added): to the Deployment's first desired-replica change, to
desired at target, to Ready replicas at target, to one worker running per Ready pod, to every job
executed, and from drained back to 0 replicas; duplicate executions. Pods are kwok's; one real
bullflow-worker runs per Ready pod (tests/harness/pods.py). The baseline is KEDA's documented
defaults (`KEDA`: its polling interval, the HPA's sync period, its cooldown), not measured."""

from __future__ import annotations

import collections
import math
import time
from types import ModuleType
from typing import Any

from .common import short_id
from .env import BenchEnv
from .params import Params
from .rows import row
from .stats import over_runs

KEDA = {
    "polling_interval_s": 30,
    "hpa_sync_period_s": 15,
    "cooldown_period_s": 300,
    "hpa_scale_down_stabilization_s": 300,
}
DEPLOYMENT = "burst-workers"
PARAMS = (
    "as_jobs",
    "as_job_seconds",
    "as_max_replicas",
    "as_jobs_per_replica",
    "as_poll_seconds",
    "as_down_stabilization_seconds",
    "as_repeats",
)
METRICS = (
    "to_desired_change_s",
    "to_desired_target_s",
    "to_ready_target_s",
    "zero_after_drained_s",
)


def autoscaling(env: BenchEnv, prm: Params) -> dict[str, Any]:
    """Scenario 5 (sync code): `as_repeats` runs, each with its own WorkerPool."""
    try:
        from tests.e2e import workerpool_support as support
    except ImportError as err:
        return {"status": "skipped", "reason": f"WorkerPool support missing: {err}", "rows": []}
    spaces = env.namespaces("as", prm.as_repeats)
    env.start_operator("as")
    api = env.cluster.api_client()
    runs: list[dict[str, Any]] = []
    try:
        for r in range(prm.as_repeats):
            runs.append(one_run(env, prm, support, api, spaces[r], r))
    finally:
        api.close()
        env.stop_operator()
    return summary(prm, runs)


def one_run(
    env: BenchEnv, prm: Params, support: ModuleType, api: Any, ns: str, r: int
) -> dict[str, Any]:
    """A WorkerPool at 0 replicas, then the burst, timed until it is back at 0."""
    sid = short_id()
    prefix = f"ba{r}{sid}"
    pools = support.Pools(api, lambda *a, **k: _kubectl(env, *a, **k), ns)
    exec_log = env.workdir / f"exec-as-{sid}.log"
    pools.apply(pool(support, prm, prefix))
    pools.wait_for("Deployment at 0", lambda: pools.replicas(DEPLOYMENT) == 0, 60)
    target = min(prm.as_max_replicas, math.ceil(prm.as_jobs / prm.as_jobs_per_replica))
    with support.worker_supervisor(
        env.cluster.kubeconfig,
        ns,
        "bullflow.io/workerpool=burst",
        {"BULLFLOW_REDIS_URL": env.redis_url, "BULLFLOW_EXEC_LOG": str(exec_log)},
        env.workdir / "logs" / f"as-{r}",
    ) as sup:
        times = time_burst(env, prm, support, pools, sup, prefix, exec_log, target)
    executed = collections.Counter(support.read_exec_log(exec_log))
    return {
        "jobs": prm.as_jobs,
        "target_replicas": target,
        **times,
        "zero_after_drained_s": times["back_to_zero_s"] - times["drained_s"],
        "duplicates": sum(c - 1 for c in executed.values() if c > 1),
    }


def pool(support: ModuleType, prm: Params, prefix: str) -> dict[str, Any]:
    """The WorkerPool: min 0 replicas, the run's scaling parameters, a sleeping processor."""
    return support.pool_doc(
        "burst",
        ["burst"],
        prefix,
        worker={
            "processor": "tests.e2e.workerpool_processors:sleep_and_count",
            "concurrency": 10,
            "terminationGracePeriodSeconds": 30,
        },
        scaling={
            "minReplicas": 0,
            "maxReplicas": prm.as_max_replicas,
            "jobsPerReplica": prm.as_jobs_per_replica,
            "pollIntervalSeconds": prm.as_poll_seconds,
            "scaleDownStabilizationSeconds": prm.as_down_stabilization_seconds,
        },
    )


def time_burst(
    env: BenchEnv,
    prm: Params,
    support: ModuleType,
    pools: Any,
    sup: Any,
    prefix: str,
    exec_log: Any,
    target: int,
) -> dict[str, float]:
    """Add every job at once; seconds from then to each step of scaling up, draining and
    scaling back to 0."""

    def ready() -> int:
        d = pools.apps.read_namespaced_deployment(DEPLOYMENT, pools.namespace)
        return int(d.status.ready_replicas or 0)

    def replicas() -> int | None:
        return pools.replicas(DEPLOYMENT)

    jobs = [(f"j{i}", {"seconds": prm.as_job_seconds}) for i in range(prm.as_jobs)]
    t0 = time.monotonic()
    support.add_jobs(env.redis_url, prefix, "burst", jobs)
    t_added = time.monotonic() - t0
    pools.wait_for("replicas > 0", lambda: (replicas() or 0) > 0, 120, every=0.05)
    t_desired = time.monotonic() - t0
    pools.wait_for("replicas at target", lambda: replicas() == target, 120, every=0.05)
    t_desired_target = time.monotonic() - t0
    pools.wait_for("ready at target", lambda: ready() >= target, 120, every=0.05)
    t_ready = time.monotonic() - t0
    sup.wait_for_running(target, timeout=60)
    t_running = time.monotonic() - t0
    pools.wait_for(
        "all jobs executed",
        lambda: len(support.read_exec_log(exec_log)) >= prm.as_jobs,
        600,
        every=0.1,
    )
    t_drained = time.monotonic() - t0
    pools.wait_for(
        "replicas back to 0",
        lambda: replicas() == 0,
        600 + prm.as_down_stabilization_seconds,
        every=0.1,
    )
    return {
        "add_s": t_added,
        "to_desired_change_s": t_desired,
        "to_desired_target_s": t_desired_target,
        "to_ready_target_s": t_ready,
        "to_workers_running_s": t_running,
        "drained_s": t_drained,
        "back_to_zero_s": time.monotonic() - t0,
    }


def summary(prm: Params, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs beside KEDA's defaults."""
    metrics = {key: over_runs(runs, key) for key in METRICS}
    keda_first = KEDA["polling_interval_s"]
    keda_target = KEDA["polling_interval_s"] + KEDA["hpa_sync_period_s"]
    rows = [
        row(
            "burst → desired replicas change",
            metrics["to_desired_change_s"]["p50"],
            "s",
            target=f"KEDA default: up to {keda_first} s (avg ~{keda_first // 2} s)",
        ),
        row(
            "burst → desired at target",
            metrics["to_desired_target_s"]["p50"],
            "s",
            target=f"KEDA+HPA: up to ~{keda_target} s",
        ),
        row("burst → Ready replicas at target", metrics["to_ready_target_s"]["p50"], "s"),
        row(
            "drained → back to 0",
            metrics["zero_after_drained_s"]["p50"],
            "s",
            target=f"KEDA cooldown: {KEDA['cooldown_period_s']} s after the last activity",
        ),
    ]
    return {
        "status": "ok",
        "params": {k: getattr(prm, k) for k in PARAMS},
        "runs": runs,
        "metrics": metrics,
        "keda_defaults": KEDA,
        "rows": rows,
        "notes": [
            f"{prm.as_jobs} jobs ({prm.as_job_seconds:g} s each) added at once to an empty queue;"
            f" WorkerPool min 0, max {prm.as_max_replicas}, {prm.as_jobs_per_replica} jobs per "
            f"replica, poll {prm.as_poll_seconds} s, scale-down stabilization "
            f"{prm.as_down_stabilization_seconds} s. Pods are kwok's; one real bullflow-worker "
            "runs per Ready pod (tests/harness/pods.py).",
            "KEDA figures are its documented defaults (pollingInterval 30 s, cooldownPeriod "
            "300 s, HPA --horizontal-pod-autoscaler-sync-period 15 s, HPA scale-down "
            "stabilization 300 s), not measurements.",
        ],
    }


def _kubectl(env: BenchEnv, *args: str, input: str | None = None, **_: Any) -> str:
    return env.kubectl(*args, input=input)
