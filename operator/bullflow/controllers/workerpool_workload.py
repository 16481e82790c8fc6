"""Carry out a WorkerPool turn's Rescale on its workload: spare busy pods, apply the owned
Deployment or set the scale target's replicas, and say so in an Event."""

from __future__ import annotations

import logging

from kubernetes_asyncio.client.exceptions import ApiException

from ..logs import about
from ..services.pod_problems import PodProblem, pod_problem
from ..services.scaling import deletion_costs
from ..services.worker_deployment import ScaleState, deployment_name
from ..services.workerpool_decision import Applied, DeploymentApply, Rescale
from ..storage.kube import KubeApi, ObjectRef
from ..storage.kube_apps import KubeApps
from ..storage.queues import QueueReader
from ..storage.redis_jobs import REDIS_ERRORS

log = logging.getLogger(__name__)


class Workloads:
    """Remembers, per pool, the owned Deployment as last applied (see Applied)."""

    def __init__(self, kube: KubeApi, apps: KubeApps) -> None:
        self.kube = kube
        self.apps = apps
        self._applied: dict[str, Applied] = {}  # by pool uid

    def applied(self, uid: str) -> Applied:
        return self._applied.get(uid) or Applied()

    def forget(self, uid: str) -> None:
        self._applied.pop(uid, None)

    async def rescale(
        self,
        ref: ObjectRef,
        plan: Rescale,
        scale: ScaleState | None,
        activity: tuple[QueueReader, str] | None,
    ) -> ScaleState | None:
        """`scale`: the workload as read; `activity`: where workers report their active jobs
        (reader, prefix), None without Redis. Returns the workload's scale afterwards."""
        if plan.steer_deletion and scale is not None and activity is not None:
            await self._steer_deletion(ref, scale, *activity)
        if plan.deployment is not None:
            scale = await self._apply(ref, plan.deployment)
        elif plan.set_replicas:
            await self.apps.set_replicas(plan.kind, ref.namespace, plan.name, plan.desired)
        if plan.event is not None:
            log.info(
                "WorkerPool %s/%s: scale %s/%s %s -> %s (%s)",
                ref.namespace,
                ref.name,
                plan.kind,
                plan.name,
                plan.current,
                plan.desired,
                plan.reason,
                extra=about(ref.namespace, ref.name),
            )
            await self.kube.event(ref, "Normal", *plan.event)
        return scale

    async def pod_problem(self, namespace: str, selector: str) -> PodProblem | None:
        """Why the workload's pods are not ready, if a container is stuck (an image that
        cannot be pulled, a crash loop); None when they are just starting or cannot be read."""
        if not selector:
            return None
        try:
            pods = await self.apps.pods(namespace, selector)
        except ApiException as err:
            log.debug("pods of %s in %s unreadable: %s", selector, namespace, err.reason)
            return None
        return pod_problem([w for p in pods if not p.deleting for w in p.waiting])

    async def _apply(self, ref: ObjectRef, plan: DeploymentApply) -> ScaleState | None:
        await self.apps.apply_deployment(plan.body)
        fresh = await self.apps.scale("Deployment", ref.namespace, deployment_name(ref.name))
        self._applied[ref.uid] = Applied(plan.digest, fresh.generation if fresh else None)
        if plan.reverts_edit and fresh is not None and fresh.generation != plan.seen_generation:
            await self.kube.event(
                ref,
                "Normal",
                "Reconciled",
                f"Deployment {fresh.name} was edited; restored from the spec",
            )
        return fresh

    async def _steer_deletion(
        self, ref: ObjectRef, scale: ScaleState, reader: QueueReader, prefix: str
    ) -> None:
        """Before a scale-down: pod-deletion-cost = each worker's active jobs, so the
        ReplicaSet controller removes idle workers first (busy ones drain anyway on SIGTERM)."""
        if not scale.selector:
            return
        try:
            pods = [
                p for p in await self.apps.pods(ref.namespace, scale.selector) if not p.deleting
            ]
            active = await reader.activity(prefix, ref.namespace, [p.name for p in pods])
        except REDIS_ERRORS:
            return
        costs = deletion_costs(active, [p.name for p in pods])
        for pod in pods:
            if pod.deletion_cost != str(costs[pod.name]):
                await self.apps.set_deletion_cost(ref.namespace, pod.name, costs[pod.name])
