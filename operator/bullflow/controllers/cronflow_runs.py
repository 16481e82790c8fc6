"""A CronFlow's runs in the API: list its Flows, create one, stop or delete one, and whether
the FlowTemplate a run refers to exists. Conflicts and vanished objects are outcomes, not
errors (a second operator, or the user, may have acted first)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from .. import GROUP, VERSION
from ..services.cronflow_policy import CRONFLOW_LABEL, STOP_ANNOTATION, can_stop
from ..storage.kube import KubeApi, ObjectRef


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class CronFlowRuns:
    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube

    async def create(self, ref: ObjectRef, flow: dict[str, Any]) -> dict[str, Any] | None:
        """The created Flow, or None when it exists already (this run was created before)."""
        try:
            created: dict[str, Any] = await self.kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, ref.namespace, "flows", flow
            )
        except ApiException as err:
            if err.status == 409:
                return None
            raise
        return created

    async def replace(self, ref: ObjectRef, flow: dict[str, Any], at: datetime) -> None:
        name = flow["metadata"]["name"]
        if not can_stop(flow):
            await self.delete(ref, name)
            return
        note = f"replaced by cronflow {ref.name} at {_stamp(at)}"
        patch = {"metadata": {"annotations": {STOP_ANNOTATION: note}}}
        try:
            await self.kube.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                ref.namespace,
                "flows",
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as err:
            if err.status != 404:
                raise

    async def delete(self, ref: ObjectRef, name: str) -> None:
        try:
            await self.kube.custom.delete_namespaced_custom_object(
                GROUP, VERSION, ref.namespace, "flows", name
            )
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    async def list(self, ref: ObjectRef) -> list[dict[str, Any]]:
        reply = await self.kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, ref.namespace, "flows", label_selector=f"{CRONFLOW_LABEL}={ref.name}"
        )
        owned = [
            f
            for f in reply.get("items", [])
            if any(o.get("uid") == ref.uid for o in f["metadata"].get("ownerReferences") or [])
        ]
        return owned

    async def template_exists(self, namespace: str, name: str) -> bool:
        try:
            await self.kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "flowtemplates", name
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True
