"""Kubernetes workloads for WorkerPools (kubernetes_asyncio): Deployments, scale, pods, and the
Secret that holds a pool's default Redis URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ..services.connection_secret import SecretState
from ..services.pod_problems import ContainerWaiting
from ..services.worker_deployment import ScaleState
from .kube import KubeApi

FIELD_MANAGER = "bullflow-operator"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


@dataclass(frozen=True)
class PodInfo:
    name: str
    deleting: bool
    deletion_cost: str | None
    waiting: tuple[ContainerWaiting, ...] = ()


class KubeApps:
    def __init__(self, kube: KubeApi) -> None:
        self.apps = client.AppsV1Api(kube.api_client)
        self.core = kube.core

    async def apply_deployment(self, body: dict[str, Any]) -> None:
        """Server-side apply with force: every field we set is ours again; others are kept."""
        meta = body["metadata"]
        await self.apps.patch_namespaced_deployment(  # type: ignore[call-arg]
            meta["name"],
            meta["namespace"],
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    async def scale(self, kind: str, namespace: str, name: str) -> ScaleState | None:
        """The workload's replicas and readiness; None if it does not exist."""
        obj: Any
        try:
            if kind == "StatefulSet":
                obj = await self.apps.read_namespaced_stateful_set(name, namespace)
            else:
                obj = await self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        labels = (obj.spec.selector.match_labels or {}) if obj.spec.selector else {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return ScaleState(
            kind=kind,
            name=name,
            replicas=int(obj.spec.replicas if obj.spec.replicas is not None else 1),
            ready_replicas=int((obj.status and obj.status.ready_replicas) or 0),
            selector=selector,
            generation=obj.metadata.generation,
            uid=obj.metadata.uid,
        )

    async def set_replicas(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """Through the scale subresource: nothing but spec.replicas is touched."""
        body = {"spec": {"replicas": replicas}}
        if kind == "StatefulSet":
            await self.apps.patch_namespaced_stateful_set_scale(name, namespace, body)
        else:
            await self.apps.patch_namespaced_deployment_scale(name, namespace, body)

    async def pods(self, namespace: str, selector: str) -> list[PodInfo]:
        listed = await self.core.list_namespaced_pod(namespace, label_selector=selector)
        return [
            PodInfo(
                name=p.metadata.name,
                deleting=p.metadata.deletion_timestamp is not None,
                deletion_cost=(p.metadata.annotations or {}).get(DELETION_COST),
                waiting=_waiting(p),
            )
            for p in listed.items
        ]

    async def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        body = {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
        try:
            await self.core.patch_namespaced_pod(pod, namespace, body)
        except ApiException as err:
            if err.status != 404:
                raise

    async def secret(self, namespace: str, name: str) -> SecretState | None:
        """The Secret's data and ownership; None if it does not exist."""
        try:
            obj = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return SecretState(
            data=dict(obj.data or {}),
            labels=dict(obj.metadata.labels or {}),
            owner_uids=frozenset(o.uid for o in obj.metadata.owner_references or []),
            resource_version=obj.metadata.resource_version,
        )

    async def create_secret(self, body: dict[str, Any]) -> str:
        """Create it; returns its resourceVersion. A 409 (it appeared meanwhile) is raised."""
        create: Any = self.core.create_namespaced_secret  # it takes a dict body too
        created = await create(body["metadata"]["namespace"], body)
        return str(created.metadata.resource_version)

    async def replace_secret(self, body: dict[str, Any], resource_version: str) -> str:
        """Replace it as it was read (optimistic concurrency: a 409 if it changed meanwhile);
        returns the new resourceVersion."""
        meta = body["metadata"]
        replace: Any = self.core.replace_namespaced_secret  # it takes a dict body too
        replaced = await replace(
            meta["name"],
            meta["namespace"],
            {**body, "metadata": {**meta, "resourceVersion": resource_version}},
        )
        return str(replaced.metadata.resource_version)


def _waiting(pod: Any) -> tuple[ContainerWaiting, ...]:
    statuses = (pod.status and pod.status.container_statuses) or []
    return tuple(
        ContainerWaiting(
            pod.metadata.name, s.name, s.state.waiting.reason or "", s.state.waiting.message or ""
        )
        for s in statuses
        if s.state and s.state.waiting
    )
