"""WorkerPool e2e helpers: apply pools, read their workloads, run pod processes, add jobs."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bullmq import Queue
from kubernetes import client

from bullflow import GROUP, VERSION
from tests.e2e.flows import BullflowObjects
from tests.e2e.operator_proc import ROOT
from tests.harness.pods import PodProcessSupervisor, _container_env, _expand

WORKER_BIN = str(Path(sys.executable).with_name("bullflow-worker"))


def pool_doc(name: str, queues: Sequence[str], prefix: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"queues": list(queues), "prefix": prefix, **spec},
    }


class Pools(BullflowObjects):
    plural = "workerpools"

    def __init__(self, api: client.ApiClient, kubectl: Any, namespace: str) -> None:
        super().__init__(api, kubectl, namespace)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workerpools", name, {"spec": spec}
        )

    def replicas(self, deployment: str) -> int | None:
        """spec.replicas of a Deployment (None if it does not exist)."""
        try:
            dep = self.apps.read_namespaced_deployment(deployment, self.namespace)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return int(dep.spec.replicas or 0)

    def wait_for(
        self, what: str, predicate: Callable[[], Any], timeout: float = 60, every: float = 0.1
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(every)

    def wait_status(
        self, name: str, predicate: Callable[[dict[str, Any]], Any], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> Any:
            nonlocal last
            last = self.get(name).get("status") or {}
            return predicate(last)

        try:
            self.wait_for(what, check, timeout)
        except AssertionError as err:
            raise AssertionError(f"{err}; status: {last}") from None
        return last


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def worker_supervisor(
    kubeconfig: Path, namespace: str, selector: str, env: dict[str, str], log_dir: Path
) -> PodProcessSupervisor:
    """One real bullflow-worker per Ready pod, from the pod's own command and args.

    Two local adaptations (every pod shares this host): the `bullflow-worker` entrypoint is the
    venv's script, and the HTTP port is 0 (any free port) instead of the container's 8080.
    The Redis URL comes from `env` (the supervisor does not resolve secretKeyRef).
    """

    def command_for_pod(pod: Any) -> list[str]:
        container = pod.spec.containers[0]
        cenv = _container_env(pod, container)
        argv = [_expand(a, cenv) for a in [*(container.command or []), *(container.args or [])]]
        if argv and argv[0] == "bullflow-worker":
            argv[0] = WORKER_BIN
        if "--http-port" in argv:
            argv[argv.index("--http-port") + 1] = "0"
        return argv

    return PodProcessSupervisor(
        kubeconfig,
        namespace,
        selector,
        extra_env={"PYTHONPATH": str(ROOT), **env},
        command_for_pod=command_for_pod,
        log_dir=log_dir,
        cwd=ROOT,
        restart_on_exit=False,
    )


def add_jobs(
    redis_url: str,
    prefix: str,
    queue: str,
    jobs: list[tuple[str, dict[str, Any]]],
) -> None:
    """Add jobs (id, data) with Python bullmq, as any producer would."""

    async def run() -> None:
        q = Queue(queue, {"connection": redis_url, "prefix": prefix})
        try:
            await q.addBulk(
                [{"name": "job", "data": data, "opts": {"jobId": job_id}} for job_id, data in jobs]
            )
        finally:
            await q.close()

    asyncio.run(run())


def job_counts(redis_url: str, prefix: str, queue: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        q = Queue(queue, {"connection": redis_url, "prefix": prefix})
        try:
            return dict(await q.getJobCounts("completed", "failed", "wait", "active", "delayed"))
        finally:
            await q.close()

    return asyncio.run(run())


def read_exec_log(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def activity(redis_url: str, prefix: str, namespace: str, pods: list[str]) -> dict[str, str]:
    """What each worker reported under its --activity-key (missing: not reported)."""
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [f"{prefix}:bullflow:activity:{namespace}:{p}" for p in pods]
        return {p: v for p, v in zip(pods, r.mget(keys) if keys else [], strict=True) if v}
    finally:
        r.close()
